#!/usr/bin/env python3
"""Encoder speed: vtok vs PyTorch (Debian python3-torch) on the same work.

Builds random-weight CLIP vision towers (ViT-B/16-224, ViT-L/14-336) as HF
folders under --cache, then for each model and thread count alternates
`vtok bench` and bench/peers_torch.py runs (interleaved rounds, so machine
noise hits both alike) and prints median ms/image and the speed ratio.

    /usr/bin/python3 bench/bench_encoders.py --vtok build/vtok [--rounds 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import safetensors_io as sio  # noqa: E402

MODELS = {
    # name: (hidden, layers, heads, mlp, patch, image)
    "b16": (768, 12, 12, 3072, 16, 224),
    "l14": (1024, 24, 16, 4096, 14, 336),
}


def make_clip(path, hidden, layers, heads, mlp, patch, image):
    """A CLIPVisionModel folder with random float32 weights (HF tensor names)."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(0)
    grid = image // patch
    t = {}

    def rnd(*shape, s=0.02):
        return (rng.standard_normal(shape, dtype=np.float32) * s).astype(np.float32)

    p = "vision_model."
    t[p + "embeddings.patch_embedding.weight"] = rnd(hidden, 3, patch, patch)
    t[p + "embeddings.class_embedding"] = rnd(hidden)
    t[p + "embeddings.position_embedding.weight"] = rnd(grid * grid + 1, hidden)
    for n in ("pre_layrnorm", "post_layernorm"):
        t[p + n + ".weight"] = np.ones(hidden, np.float32)
        t[p + n + ".bias"] = np.zeros(hidden, np.float32)
    for i in range(layers):
        b = f"{p}encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            t[b + n + ".weight"] = np.ones(hidden, np.float32)
            t[b + n + ".bias"] = np.zeros(hidden, np.float32)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[b + "self_attn." + n + ".weight"] = rnd(hidden, hidden)
            t[b + "self_attn." + n + ".bias"] = rnd(hidden)
        t[b + "mlp.fc1.weight"] = rnd(mlp, hidden)
        t[b + "mlp.fc1.bias"] = rnd(mlp)
        t[b + "mlp.fc2.weight"] = rnd(hidden, mlp)
        t[b + "mlp.fc2.bias"] = rnd(hidden)
    entries = [(k, "F32", list(v.shape), v.tobytes()) for k, v in sorted(t.items())]
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(sio.build_file_bytes(entries, {"format": "pt"}))
    cfg = {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"],
           "hidden_size": hidden, "intermediate_size": mlp, "num_hidden_layers": layers,
           "num_attention_heads": heads, "patch_size": patch, "image_size": image}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vtok", default="build/vtok")
    ap.add_argument("--cache", default=os.path.join(HERE, ".models"))
    ap.add_argument("--models", default="b16,l14")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-backend", default="mkldnn",
                    help="eager (Debian's generic BLAS: very slow) or mkldnn (oneDNN)")
    a = ap.parse_args()

    rows = []
    for name in a.models.split(","):
        path = os.path.join(a.cache, "clip-" + name)
        make_clip(path, *MODELS[name])
        for th in [int(x) for x in a.threads.split(",")]:
            ours, theirs = [], []
            for _ in range(a.rounds):
                r = run_json([a.vtok, "bench", "--model", path, "--threads", str(th),
                              "--iters", str(a.iters)])
                ours.append(r["ms_per_image"])
                if not a.no_torch:
                    r = run_json([sys.executable, os.path.join(HERE, "peers_torch.py"),
                                  "--model", name, "--threads", str(th), "--iters",
                                  str(a.iters), "--backend", a.torch_backend, "--json"])
                    theirs.append(r["median_ms"])
            mo = statistics.median(ours)
            mt = statistics.median(theirs) if theirs else float("nan")
            rows.append((name, th, mo, mt))
            print(f"{name:4s} threads={th}  vtok {mo:9.1f} ms/img   torch-{a.torch_backend} {mt:9.1f} ms/img"
                  f"   torch/vtok {mt / mo:5.2f}x", flush=True)
    print(f"\n| model | threads | vtok f32 ms/img | torch ({a.torch_backend}) f32 ms/img | torch/vtok |")
    print("|---|---|---|---|---|")
    for name, th, mo, mt in rows:
        print(f"| {name} | {th} | {mo:.1f} | {mt:.1f} | {mt / mo:.2f} |")


if __name__ == "__main__":
    main()
