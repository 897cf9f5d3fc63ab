#!/usr/bin/env python3
"""Write the committed seeds of the fuzz_json and fuzz_model targets.

    tests/fuzz/make_seeds.py      (re)writes tests/fuzz/regress-{json,model}/seed-*

regress-model/seed-<family>: [u16 config length][flags][config.json][weights]
(see fuzz_model.c) for a tiny random tower of each family vtok loads (hidden
8, 1 layer, 2 heads, 16x16 image, 8x8 patches, F16 weights; flags = encode,
f32), the CLIP one also as a torch.save zip and in bf16/int8. They load and
encode, so the fuzzer starts from models that work. Tiny random weights come
from tests/ref/hf_vision.py (the reference towers with Hugging Face names).

regress-json/seed-*: [selector byte][JSON] (see fuzz_json.c): the tiny-clip
config.json, the committed preprocessor configs plus SigLIP/DINOv2/pad
variants, and the shipped recipes (recipes/*.json).

Crash reproducers found later go into the same folders as crash-<what>.
"""

import io
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import hf_vision as hv  # noqa: E402
import safetensors_io as sio  # noqa: E402

SMALL = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
             num_channels=3, image_size=16, patch_size=8)
CONFIGS = {
    "clip": dict(SMALL, model_type="clip_vision_model", projection_dim=4,
                 architectures=["CLIPVisionModelWithProjection"]),
    "siglip": dict(SMALL, model_type="siglip_vision_model", architectures=["SiglipVisionModel"]),
    "dinov2": dict({k: v for k, v in SMALL.items() if k != "intermediate_size"},
                   model_type="dinov2", mlp_ratio=2, architectures=["Dinov2Model"]),
    "vit": dict(SMALL, model_type="vit", architectures=["ViTModel"]),
    "blip2": dict(SMALL, model_type="blip_2_vision_model", architectures=["Blip2VisionModel"]),
}


def st_bytes(tensors):
    path = os.path.join(HERE, ".seed.safetensors")
    sio.write_file(path, tensors)
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


def model_seed(cfg, weights, flags):
    c = json.dumps(cfg, separators=(",", ":")).encode()
    return struct.pack("<HB", len(c), flags) + c + weights


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main():
    torch.manual_seed(0)
    mdir = os.path.join(HERE, "regress-model")
    for fam, cfg in CONFIGS.items():
        model = hv.build_model(cfg)
        sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
              if not k.endswith("position_ids")}
        write(mdir, "seed-" + fam, model_seed(cfg, st_bytes(sd), 4))
        if fam == "clip":
            b = io.BytesIO()
            torch.save(sd, b)
            write(mdir, "seed-clip-torch-zip", model_seed(cfg, b.getvalue(), 4))
            write(mdir, "seed-clip-bf16", model_seed(cfg, st_bytes(sd), 4 | 1))
            write(mdir, "seed-clip-int8", model_seed(cfg, st_bytes(sd), 4 | 2))

    jdir = os.path.join(HERE, "regress-json")
    with open(os.path.join(REPO, "models", "tiny-clip", "config.json"), "rb") as f:
        write(jdir, "seed-config-tiny-clip", b"\x00" + f.read())
    for name, rel in (("tiny-clip", "models/tiny-clip/preprocessor_config.json"),
                      ("tiny-llava", "models/tiny-llava/clip-vit-large-patch14-336/"
                                     "preprocessor_config.json")):
        with open(os.path.join(REPO, rel), "rb") as f:
            write(jdir, "seed-proc-" + name, b"\x01" + f.read())
    procs = {
        "siglip": {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
                   "size": {"height": 16, "width": 16}, "resample": 3, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True,
                   "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
        "dinov2": {"image_processor_type": "BitImageProcessor", "do_resize": True,
                   "size": {"shortest_edge": 20}, "do_center_crop": True,
                   "crop_size": {"height": 16, "width": 16}, "resample": 3,
                   "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
                   "image_std": [0.229, 0.224, 0.225]},
        "pad": {"image_processor_type": "CLIPImageProcessor", "do_pad": True,
                "size": {"shortest_edge": 16}, "crop_size": 16, "do_center_crop": True},
    }
    for name, p in procs.items():
        write(jdir, "seed-proc-" + name, b"\x01" + json.dumps(p).encode())
    rdir = os.path.join(REPO, "recipes")
    for fn in sorted(os.listdir(rdir)):
        if fn.endswith(".json"):
            with open(os.path.join(rdir, fn), "rb") as f:
                write(jdir, "seed-recipe-" + fn[:-5], b"\x02" + f.read())
    print("wrote seeds to %s and %s" % (mdir, jdir))


if __name__ == "__main__":
    main()
