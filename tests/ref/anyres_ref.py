"""LLaVA-NeXT "anyres" and SliME's slicing, as the official code does them
(PIL calls for every image step), plus LLaVA-NeXT's feature merge.

Read from haotian-liu/LLaVA llava/mm_utils.py (select_best_resolution,
resize_and_pad_image, divide_to_patches, get_anyres_image_grid_shape,
process_anyres_image) and llava/model/llava_arch.py (unpad_image and the
mm_patch_merge_type branch of prepare_inputs_labels_for_multimodal, v1.6;
spec mova-slime-llava.md 1.5), and yfzhang114/SliME llava/mm_utils.py:48-95
(select_best_resolution_uhd). Written out here because neither repository is
installable; the image operations are Pillow's own.
"""
import math

import torch
from PIL import Image


def select_best_resolution(original_size, possible_resolutions):
    original_width, original_height = original_size
    best_fit = None
    max_effective_resolution = 0
    min_wasted_resolution = float("inf")
    for width, height in possible_resolutions:
        scale = min(width / original_width, height / original_height)
        downscaled_width, downscaled_height = int(original_width * scale), int(original_height * scale)
        effective_resolution = min(downscaled_width * downscaled_height, original_width * original_height)
        wasted_resolution = (width * height) - effective_resolution
        if effective_resolution > max_effective_resolution or (
                effective_resolution == max_effective_resolution and wasted_resolution < min_wasted_resolution):
            max_effective_resolution = effective_resolution
            min_wasted_resolution = wasted_resolution
            best_fit = (width, height)
    return best_fit


def select_best_resolution_uhd(original_size, unit, max_slices=6):
    """SliME: the candidate grids come from factor pairs of the area in units."""
    w0, h0 = original_size
    scale = math.ceil(w0 * h0 / (unit * unit))
    if scale > max_slices:
        scale = max_slices
    elif scale == 1:
        scale = 2

    def factorize(n):
        return [(i / (n / i), i, n // i) for i in range(1, n + 1) if n % i == 0]

    ms = [scale, scale + 1] if scale <= 2 else [scale - 1, scale, scale + 1]
    cands = []
    for m in ms:
        cands += [(ws * unit, hs * unit) for _, ws, hs in factorize(m)]
    return select_best_resolution(original_size, cands)


def resize_and_pad_image(image, target_resolution):
    original_width, original_height = image.size
    target_width, target_height = target_resolution
    scale_w = target_width / original_width
    scale_h = target_height / original_height
    if scale_w < scale_h:
        new_width = target_width
        new_height = min(math.ceil(original_height * scale_w), target_height)
    else:
        new_height = target_height
        new_width = min(math.ceil(original_width * scale_h), target_width)
    resized_image = image.resize((new_width, new_height))
    new_image = Image.new("RGB", (target_width, target_height), (0, 0, 0))
    new_image.paste(resized_image, ((target_width - new_width) // 2, (target_height - new_height) // 2))
    return new_image


def divide_to_patches(image, patch_size):
    patches = []
    width, height = image.size
    for i in range(0, height, patch_size):
        for j in range(0, width, patch_size):
            patches.append(image.crop((j, i, j + patch_size, i + patch_size)))
    return patches


def tiles(image, best, crop, base):
    """process_anyres_image's PIL images: [squashed base] + crops."""
    padded = resize_and_pad_image(image, best)
    return [image.resize((base, base))] + divide_to_patches(padded, crop)


def unpad_image(tensor, original_size):
    original_width, original_height = original_size
    current_height, current_width = tensor.shape[1:]
    original_aspect_ratio = original_width / original_height
    current_aspect_ratio = current_width / current_height
    if original_aspect_ratio > current_aspect_ratio:
        scale_factor = current_width / original_width
        new_height = int(original_height * scale_factor)
        padding = (current_height - new_height) // 2
        return tensor[:, padding:current_height - padding, :]
    scale_factor = current_height / original_height
    new_width = int(original_width * scale_factor)
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding:current_width - padding]


def merge(image_feature, grid, image_size, merge_type, newline, anyres_max=0):
    """One image's projected tiles [1 + gw*gh, p*p, C] -> its tokens; the later
    LLaVA-NeXT repo's maxpool2x2 / anyres_max_N / nobase as its llava_arch.py
    has them (spec 1.6)."""
    if merge_type == "flat":
        return image_feature.flatten(0, 1)
    if image_feature.shape[0] > 1:
        base_image_feature = image_feature[0]
        image_feature = image_feature[1:]
        height = width = int(round(base_image_feature.shape[0] ** 0.5))
        num_patch_width, num_patch_height = grid
        image_feature = image_feature.view(num_patch_height, num_patch_width, height, width, -1)
        if "maxpool2x2" in merge_type:
            image_feature = image_feature.permute(4, 0, 2, 1, 3).contiguous()
            image_feature = image_feature.flatten(1, 2).flatten(2, 3)
            image_feature = torch.nn.functional.max_pool2d(image_feature, 2)
            image_feature = image_feature.flatten(1, 2).transpose(0, 1)
        elif "unpad" in merge_type and anyres_max:
            unit = image_feature.shape[2]
            image_feature = image_feature.permute(4, 0, 2, 1, 3).contiguous()
            image_feature = image_feature.flatten(1, 2).flatten(2, 3)
            image_feature = unpad_image(image_feature, image_size)
            c, h, w = image_feature.shape
            times = math.sqrt(h * w / (anyres_max * unit ** 2))
            if times > 1.1:
                image_feature = torch.nn.functional.interpolate(
                    image_feature[None], [int(h // times), int(w // times)], mode="bilinear")[0]
            image_feature = torch.cat((image_feature, newline[:, None, None].expand(
                *image_feature.shape[:-1], 1)), dim=-1)
            image_feature = image_feature.flatten(1, 2).transpose(0, 1)
        elif "unpad" in merge_type:
            image_feature = image_feature.permute(4, 0, 2, 1, 3).contiguous()
            image_feature = image_feature.flatten(1, 2).flatten(2, 3)
            image_feature = unpad_image(image_feature, image_size)
            image_feature = torch.cat((image_feature, newline[:, None, None].expand(
                *image_feature.shape[:-1], 1)), dim=-1)
            image_feature = image_feature.flatten(1, 2).transpose(0, 1)
        else:
            image_feature = image_feature.permute(0, 2, 1, 3, 4).contiguous().flatten(0, 3)
        if "nobase" in merge_type:
            return image_feature
        return torch.cat((base_image_feature, image_feature), dim=0)
    image_feature = image_feature[0]
    if "unpad" in merge_type:
        image_feature = torch.cat((image_feature, newline[None]), dim=0)
    return image_feature
