#!/usr/bin/env python3
"""Make the committed tiny LLaVA-1.5-layout model (deterministic; needs torch + numpy).

    models/make_tiny_llava.py      (re)writes models/tiny-llava/ next to this script

models/tiny-llava/ is laid out as the shipped `llava-1.5` recipe expects of a
real model folder, at toy size (random weights, no meaning):
    clip-vit-large-patch14-336/   a CLIPVisionModel HF folder: hidden 64, 3 layers,
                                  4 heads, MLP 256, patch 8, image 64 (64 patches +
                                  CLS), F16 safetensors, CLIPImageProcessor config
                                  (shortest edge 64, crop 64; the recipe adds do_pad)
    mm_projector.bin              torch.save of LLaVA's projector keys
                                  model.mm_projector.{0,2}.{weight,bias}: mlp2x_gelu
                                  64 -> 96 -> 96 (F16)
so `vtok run --recipe llava-1.5 --model models/tiny-llava --image models/sample.jpg`
gives 64 tokens of width 96. Under 1 MB in all.
"""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import hf_vision as hv  # noqa: E402
import safetensors_io as sio  # noqa: E402

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CONFIG = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
          "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3,
          "num_attention_heads": 4, "num_channels": 3, "image_size": 64, "patch_size": 8,
          "torch_dtype": "float16"}
PREPROCESSOR = {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
                "size": {"shortest_edge": 64}, "resample": 3, "do_center_crop": True,
                "crop_size": {"height": 64, "width": 64}, "do_rescale": True,
                "rescale_factor": 0.00392156862745098, "do_normalize": True,
                "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True}
D_LLM = 96


@torch.no_grad()
def main():
    g = torch.Generator().manual_seed(20250101)
    model = hv.build_model(CONFIG)
    for name, p in model.named_parameters():  # CLIP-like scales, non-trivial norms
        if "layer_norm" in name or "layrnorm" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.02 * torch.randn(p.shape, generator=g) * (8 if "proj.weight" in name or "fc" in name else 1))
    out = os.path.join(HERE, "tiny-llava")
    clip_dir = os.path.join(out, "clip-vit-large-patch14-336")
    os.makedirs(clip_dir, exist_ok=True)
    sio.write_model(clip_dir, {k: v.to(torch.float16) for k, v in model.state_dict().items()}, 1)
    with open(os.path.join(clip_dir, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    with open(os.path.join(clip_dir, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)
        f.write("\n")
    d = CONFIG["hidden_size"]
    proj = {"model.mm_projector.0.weight": torch.randn(D_LLM, d, generator=g) * d ** -0.5,
            "model.mm_projector.0.bias": torch.randn(D_LLM, generator=g) * 0.1,
            "model.mm_projector.2.weight": torch.randn(D_LLM, D_LLM, generator=g) * D_LLM ** -0.5,
            "model.mm_projector.2.bias": torch.randn(D_LLM, generator=g) * 0.1}
    torch.save({k: v.to(torch.float16) for k, v in proj.items()}, os.path.join(out, "mm_projector.bin"))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    print("models/tiny-llava: %d bytes" % total)


if __name__ == "__main__":
    main()
