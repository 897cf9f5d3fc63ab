#!/usr/bin/env python3
"""Make the committed demo model and input (deterministic; needs torch + numpy + Pillow).

    models/make_demo.py            (re)writes the files below next to this script

models/tiny-clip/        a small random CLIPVisionModelWithProjection as a
                         Hugging Face folder: config.json (class defaults
                         quick_gelu / layer_norm_eps 1e-5 left out, as HF
                         configs often do), model.safetensors (F16 weights),
                         preprocessor_config.json.
                         hidden 64, 4 layers, 4 heads, MLP 256, patch 8,
                         image 64 (64 patches + CLS = 65 tokens), projection 32.
models/sample.jpg        the same picture as a 160x120 JPEG (for --image)
models/sample_pixels.npy float32 [1, 3, 64, 64]: a synthetic RGB picture
                         (gradient sky, sun, hills, a house) drawn with
                         Pillow, scaled to [0, 1] and normalized with the CLIP
                         mean/std, channels first -- what CLIPImageProcessor
                         would hand to the model for a 64x64 image.
"""

import json
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import hf_vision as hv  # noqa: E402
import safetensors_io as sio  # noqa: E402

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SIZE = 64

CONFIG = {
    "architectures": ["CLIPVisionModelWithProjection"],
    "model_type": "clip_vision_model",
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_channels": 3,
    "image_size": SIZE,
    "patch_size": 8,
    "projection_dim": 32,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "attention_dropout": 0.0,
    "torch_dtype": "float16",
    "transformers_version": "4.57.1",
}

PREPROCESSOR = {
    "crop_size": {"height": SIZE, "width": SIZE},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": CLIP_MEAN,
    "image_processor_type": "CLIPImageProcessor",
    "image_std": CLIP_STD,
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": SIZE},
}


@torch.no_grad()
def init_like_hf(model, seed=20240607):
    """CLIP-style init (CLIPPreTrainedModel._init_weights scales), seeded,
    with non-trivial LayerNorm/bias values so every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    c = model.vtok_config
    d, nl = c.hidden_size, c.num_hidden_layers

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    emb = model.vision_model.embeddings
    normal(emb.class_embedding, d ** -0.5)
    normal(emb.patch_embedding.weight, 0.02)
    normal(emb.position_embedding.weight, 0.02)
    for layer in model.vision_model.encoder.layers:
        a = layer.self_attn
        for lin in (a.q_proj, a.k_proj, a.v_proj):
            normal(lin.weight, d ** -0.5 * (2 * nl) ** -0.5 * 4)
        normal(a.out_proj.weight, d ** -0.5)
        normal(layer.mlp.fc1.weight, (2 * d) ** -0.5)
        normal(layer.mlp.fc2.weight, d ** -0.5 * (2 * nl) ** -0.5)
        for lin in (a.q_proj, a.k_proj, a.v_proj, a.out_proj, layer.mlp.fc1, layer.mlp.fc2):
            normal(lin.bias, 0.02)
    for ln in [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]:
        ln.weight.copy_(1 + torch.randn(ln.weight.shape, generator=g) * 0.1)
        normal(ln.bias, 0.02)
    normal(model.visual_projection.weight, d ** -0.5)


def sample_image():
    img = Image.new("RGB", (SIZE, SIZE))
    px = img.load()
    for y in range(SIZE):
        for x in range(SIZE):
            px[x, y] = (90 + y, 140 + y // 2, 230 - y // 3)  # sky gradient
    dr = ImageDraw.Draw(img)
    dr.ellipse((44, 6, 58, 20), fill=(255, 220, 60))                      # sun
    dr.polygon([(0, 44), (20, 30), (40, 42), (64, 28), (64, 64), (0, 64)], fill=(60, 140, 60))  # hills
    dr.rectangle((12, 36, 30, 54), fill=(200, 80, 60))                     # house
    dr.polygon([(10, 37), (21, 26), (32, 37)], fill=(120, 40, 30))         # roof
    dr.rectangle((18, 44, 23, 54), fill=(70, 40, 20))                      # door
    return img


def main():
    model = hv.build_model(CONFIG)
    init_like_hf(model)
    tensors = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
    out = os.path.join(HERE, "tiny-clip")
    os.makedirs(out, exist_ok=True)
    sio.write_model(out, tensors, 1)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)
        f.write("\n")

    arr = np.asarray(sample_image(), dtype=np.float32) / 255.0          # HWC in [0, 1]
    arr = (arr - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    pix = np.ascontiguousarray(arr.transpose(2, 0, 1)[None], dtype=np.float32)
    np.save(os.path.join(HERE, "sample_pixels.npy"), pix)
    # The same scene as a 4:3 JPEG, for the demo's image path (decode, resize, crop).
    sample_image().resize((160, 120), Image.BICUBIC).save(
        os.path.join(HERE, "sample.jpg"), quality=90)

    m = hv.load_model_dir(out)
    ref = hv.run(m, pix)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    print("models/tiny-clip: %d bytes of weights; image_embeds[0, :4] = %s"
          % (size, np.array2string(ref["image_embeds"][0, :4], precision=5)))


if __name__ == "__main__":
    main()
