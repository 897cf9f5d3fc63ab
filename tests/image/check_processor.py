#!/usr/bin/env python3
"""`vtok preprocess` vs the Hugging Face image processors, bit for bit.

transformers is not installable here, so the reference below re-implements
the "slow" processors' steps with the same libraries and dtypes they use
(transformers image_processing_clip.py / image_transforms.py):
  convert("RGB") -> [LLaVA pad_to_square with int(mean*255)] -> PIL resize
  (shortest edge: int(size * long / short)) -> center_crop ((H-h)//2, zero
  pad with ceil) -> rescale (float64 multiply, cast to float32) ->
  normalize (float32 (x - mean) / std) -> CHW;
and torchvision's Resize((h, w)) + ToTensor (float32 x / 255) + Normalize for
vtok's TorchvisionImageProcessor (GVT, SEED).

    /usr/bin/python3 tests/image/check_processor.py --vtok build/vtok --work DIR
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
INET_MEAN = [0.485, 0.456, 0.406]
INET_STD = [0.229, 0.224, 0.225]

# name -> preprocessor_config.json (as the released checkpoints ship them, or legacy forms)
CONFIGS = {
    "clip": {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
             "size": {"shortest_edge": 224}, "resample": 3, "do_center_crop": True,
             "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
             "rescale_factor": 0.00392156862745098, "do_normalize": True,
             "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True},
    "clip336_legacy": {"feature_extractor_type": "CLIPFeatureExtractor", "size": 336,
                       "crop_size": 336, "do_center_crop": True, "do_normalize": True,
                       "do_resize": True, "resample": 3, "image_mean": CLIP_MEAN,
                       "image_std": CLIP_STD},
    "dinov2": {"image_processor_type": "BitImageProcessor", "do_resize": True,
               "size": {"shortest_edge": 256}, "resample": 3, "do_center_crop": True,
               "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
               "rescale_factor": 0.00392156862745098, "do_normalize": True,
               "image_mean": INET_MEAN, "image_std": INET_STD, "do_convert_rgb": True},
    "siglip": {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
               "size": {"height": 224, "width": 224}, "resample": 3, "do_rescale": True,
               "rescale_factor": 0.00392156862745098, "do_normalize": True,
               "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    "vit": {"image_processor_type": "ViTImageProcessor", "do_resize": True,
            "size": {"height": 224, "width": 224}, "resample": 2, "do_rescale": True,
            "rescale_factor": 0.00392156862745098, "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    "blip": {"image_processor_type": "BlipImageProcessor", "do_resize": True,
             "size": {"height": 384, "width": 384}, "resample": 3, "do_rescale": True,
             "rescale_factor": 0.00392156862745098, "do_normalize": True,
             "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True},
    "llava15": {"image_processor_type": "LlavaImageProcessor", "do_pad": True,
                "do_resize": True, "size": {"shortest_edge": 336}, "resample": 3,
                "do_center_crop": True, "crop_size": {"height": 336, "width": 336},
                "do_rescale": True, "rescale_factor": 0.00392156862745098,
                "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD},
    "big_crop": {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 20},
                 "crop_size": {"height": 32, "width": 24}, "resample": 1},
    # SAM (image_processing_sam.py): longest side to longest_edge (int(x * scale + 0.5)),
    # PIL BILINEAR on uint8, rescale, normalize, then 0.0 padding at the bottom / right
    "sam": {"image_processor_type": "SamImageProcessor", "do_resize": True,
            "size": {"longest_edge": 1024}, "resample": 2, "do_rescale": True,
            "rescale_factor": 0.00392156862745098, "do_normalize": True,
            "image_mean": INET_MEAN, "image_std": INET_STD, "do_pad": True,
            "pad_size": {"height": 1024, "width": 1024}, "do_convert_rgb": True},
    "sam_small": {"image_processor_type": "SamImageProcessor", "size": {"longest_edge": 48},
                  "pad_size": {"height": 56, "width": 64}},
    "sam_nopad": {"image_processor_type": "SamImageProcessor", "size": {"longest_edge": 40},
                  "do_pad": False},
    "gvt_seed": {"image_processor_type": "TorchvisionImageProcessor",
                 "size": {"height": 224, "width": 224}, "resample": 3,
                 "image_mean": CLIP_MEAN, "image_std": CLIP_STD},
}


def hf_reference(cfg, path):
    return hf_reference_image(cfg, Image.open(path).convert("RGB"))


def hf_reference_image(cfg, img):
    """The processor on an RGB PIL image (hf_reference's body)."""
    kind = cfg.get("image_processor_type") or cfg.get("feature_extractor_type")
    square_default = kind not in ("CLIPImageProcessor", "CLIPFeatureExtractor",
                                  "LlavaImageProcessor", "BitImageProcessor")
    sam = kind == "SamImageProcessor"
    mean = cfg.get("image_mean", INET_MEAN if sam else CLIP_MEAN)
    std = cfg.get("image_std", INET_STD if sam else CLIP_STD)
    if cfg.get("do_pad") and not sam:
        w, h = img.size
        if w != h:
            bg = tuple(int(x * 255) for x in mean)
            n = max(w, h)
            res = Image.new(img.mode, (n, n), bg)
            res.paste(img, (0, (n - h) // 2) if w > h else ((n - w) // 2, 0))
            img = res
    size = cfg.get("size", 224)
    if isinstance(size, int):
        size = {"height": size, "width": size} if square_default else {"shortest_edge": size}
    if cfg.get("do_resize", True):
        w, h = img.size
        if "shortest_edge" in size:
            s = size["shortest_edge"]
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(s * long / short)
            oh, ow = (new_long, s) if w <= h else (s, new_long)
        elif "longest_edge" in size:  # SamImageProcessor._get_preprocess_shape
            scale = size["longest_edge"] * 1.0 / max(h, w)
            oh, ow = int(h * scale + 0.5), int(w * scale + 0.5)
        else:
            oh, ow = size["height"], size["width"]
        img = img.resize((ow, oh), resample=cfg.get("resample", 2 if sam else 3))
    a = np.array(img)  # uint8 HWC
    crop = cfg.get("crop_size", 224)
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    if cfg.get("do_center_crop", kind in ("CLIPImageProcessor", "CLIPFeatureExtractor",
                                          "LlavaImageProcessor", "BitImageProcessor")):
        a = a.transpose(2, 0, 1)
        H, W = a.shape[1:]
        ch, cw = crop["height"], crop["width"]
        top, left = (H - ch) // 2, (W - cw) // 2
        if top >= 0 and left >= 0 and top + ch <= H and left + cw <= W:
            a = a[:, top:top + ch, left:left + cw]
        else:
            nh, nw = max(ch, H), max(cw, W)
            na = np.zeros((3, nh, nw), dtype=a.dtype)
            tp, lp = math.ceil((nh - H) / 2), math.ceil((nw - W) / 2)
            na[:, tp:tp + H, lp:lp + W] = a
            top += tp
            left += lp
            a = na[:, max(0, top):min(nh, top + ch), max(0, left):min(nw, left + cw)]
        a = a.transpose(1, 2, 0)
    if kind == "TorchvisionImageProcessor":
        import torch
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(torch.float32).div(255)
        m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        s = torch.tensor(std, dtype=torch.float32)[:, None, None]
        return t.sub_(m).div_(s).numpy()
    x = a
    if cfg.get("do_rescale", True):
        x = (x.astype(np.float64) * cfg.get("rescale_factor", 1 / 255)).astype(np.float32)
    if cfg.get("do_normalize", True):
        x = x.astype(np.float32)
        x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    if sam and cfg.get("do_pad", True):  # np.pad bottom / right with 0.0, after normalize
        ps = cfg.get("pad_size", {"height": 1024, "width": 1024})
        x = np.pad(x, ((0, ps["height"] - x.shape[0]), (0, ps["width"] - x.shape[1]), (0, 0)))
    return x.transpose(2, 0, 1).astype(np.float32)


def make_images(d):
    rng = np.random.default_rng(7)
    out = []
    sizes = [(1, 1), (97, 61), (61, 97), (3000, 17), (17, 300), (224, 224), (640, 480),
             (333, 500), (20, 20)]
    for i, (w, h) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 7 + yy * 3) % 256, (xx * yy) % 256, (yy * 11) % 256], -1)
        noise = rng.integers(0, 64, size=(h, w, 3))
        a = ((base + noise) % 256).astype(np.uint8)
        p = os.path.join(d, f"img{i}_{w}x{h}.png")
        Image.fromarray(a).save(p)
        out.append(p)
    g = os.path.join(d, "gray.png")
    Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8), "L").save(g)
    j = os.path.join(d, "photo.jpg")
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(j, quality=90)
    return out + [g, j]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    imgs = make_images(a.work)
    fails = cases = 0
    for name, cfg in CONFIGS.items():
        d = os.path.join(a.work, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f)
        for img in imgs:
            cases += 1
            out = os.path.join(d, "px.npy")
            r = subprocess.run([a.vtok, "preprocess", "--model", d, img, "--out", out],
                               capture_output=True, text=True)
            try:
                exp = hf_reference(cfg, img)[None]
            except ValueError as e:  # e.g. SAM's longest-edge resize of a 1-pixel-high image
                if r.returncode == 0 or not r.stderr.strip():
                    print(f"FAIL {name} {os.path.basename(img)}: the reference refuses it ({e}); "
                          f"vtok must too, with a message")
                    fails += 1
                continue
            if r.returncode != 0:
                print(f"FAIL {name} {os.path.basename(img)}: {r.stderr.strip()}")
                fails += 1
                continue
            got = np.load(out)
            if got.shape != exp.shape:
                print(f"FAIL {name} {os.path.basename(img)}: shape {got.shape} != {exp.shape}")
                fails += 1
            elif not np.array_equal(got, exp):
                diff = np.abs(got - exp)
                print(f"FAIL {name} {os.path.basename(img)}: {np.count_nonzero(diff)} values "
                      f"differ, max {diff.max():.3g}")
                fails += 1
        # a batch of differently sized images through one processor with a fixed output size
        if "crop_size" in cfg or "height" in cfg.get("size", {}) or "pad_size" in cfg:
            out = os.path.join(d, "batch.npy")
            ok_imgs = []
            for p in imgs:  # four images the processor takes
                try:
                    hf_reference(cfg, p)
                    ok_imgs.append(p)
                except ValueError:
                    pass
            ok_imgs = ok_imgs[:4]
            r = subprocess.run([a.vtok, "preprocess", "--model", d, *ok_imgs, "--out", out],
                               capture_output=True, text=True)
            cases += 1
            exp = np.stack([hf_reference(cfg, p) for p in ok_imgs])
            if r.returncode != 0 or not np.array_equal(np.load(out), exp):
                print(f"FAIL {name} batch: {r.stderr.strip()}")
                fails += 1
    # encode --image runs the same preprocessing as preprocess + encode --pixels.
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "tiny-clip")
    img = os.path.join(model, "..", "sample.jpg")
    px = os.path.join(a.work, "sample_px.npy")
    o1, o2 = os.path.join(a.work, "enc_img"), os.path.join(a.work, "enc_px")
    runs = [[a.vtok, "preprocess", "--model", model, img, "--out", px],
            [a.vtok, "encode", "--model", model, "--image", img, "--out", o1],
            [a.vtok, "encode", "--model", model, "--pixels", px, "--out", o2]]
    cases += 1
    if any(subprocess.run(r, capture_output=True).returncode for r in runs) or not all(
            np.array_equal(np.load(os.path.join(o1, f)), np.load(os.path.join(o2, f)))
            for f in ("last_hidden_state.npy", "pooler_output.npy", "image_embeds.npy")):
        print("FAIL encode --image differs from preprocess + encode --pixels")
        fails += 1
    exp = hf_reference(json.load(open(os.path.join(model, "preprocessor_config.json"))), img)
    cases += 1
    if not np.array_equal(np.load(px)[0], exp):
        print("FAIL tiny-clip preprocessing of models/sample.jpg")
        fails += 1
    print(f"{cases - fails}/{cases} preprocessing cases bit-exact")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
