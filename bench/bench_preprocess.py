#!/usr/bin/env python3
"""Decode + preprocess throughput: vtok vs Pillow + the HF CLIP image processor.

Same JPEG files, same preprocessor_config.json (CLIP: shortest edge 224,
bicubic, center crop 224, rescale, normalize), one process each, single
thread. Runs are interleaved; prints images/s (median of --rounds) for
Pillow+HF (tests/image/check_processor.py's faithful re-implementation of
the slow HF processor; transformers itself is not installable here), vtok
(bit-exact) and vtok --fast (libjpeg-turbo DCT-domain downscaling, not
bit-exact: its difference from the exact path is reported too).

    /usr/bin/python3 bench/bench_preprocess.py --vtok build/vtok
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "image"))
import check_processor as cp  # noqa: E402


def make_jpegs(d, n, w, h, seed):
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        p = os.path.join(d, f"{w}x{h}_{i:03d}.jpg")
        if not os.path.exists(p):
            # smooth content plus texture, like a photo (pure noise would favour no one)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            base = np.stack([np.sin(xx / (17 + i)) * 80 + 128, np.cos(yy / 23) * 70 + 120,
                             (xx + yy) / (w + h) * 200 + 20], -1)
            a = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(p, quality=90)
        files.append(p)
    return files


def time_pillow(cfg, files, out):
    t = time.perf_counter()
    x = np.stack([cp.hf_reference(cfg, f) for f in files])
    np.save(out, x)
    return time.perf_counter() - t


def time_vtok(vtok, model, files, out, fast):
    cmd = [vtok, "preprocess", "--model", model, *files, "--out", out] + (["--fast"] if fast else [])
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", default="build/vtok")
    ap.add_argument("--work", default="/tmp/vtok-bench-preprocess")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    cfg = cp.CONFIGS["clip"]
    model = os.path.join(a.work, "clip")
    os.makedirs(model, exist_ok=True)
    with open(os.path.join(model, "preprocessor_config.json"), "w") as f:
        json.dump(cfg, f)
    sets = {"640x480": make_jpegs(a.work, 48, 640, 480, 1),
            "1920x1080": make_jpegs(a.work, 12, 1920, 1080, 2)}
    print("| images | Pillow+HF img/s | vtok img/s | vtok --fast img/s | vtok/Pillow | fast/Pillow "
          "| fast vs exact max abs |")
    print("|---|---|---|---|---|---|---|")
    for name, files in sets.items():
        tp, tv, tf = [], [], []
        outs = [os.path.join(a.work, f"{k}.npy") for k in ("pil", "vtok", "fast")]
        for _ in range(a.rounds):
            tp.append(time_pillow(cfg, files, outs[0]))
            tv.append(time_vtok(a.vtok, model, files, outs[1], False))
            tf.append(time_vtok(a.vtok, model, files, outs[2], True))
        pil, ex, fa = (np.load(o) for o in outs)
        assert np.array_equal(pil, ex), "vtok exact path differs from Pillow+HF"
        n = len(files)
        rp, rv, rf = (n / statistics.median(t) for t in (tp, tv, tf))
        print(f"| {n} x {name} JPEG | {rp:.1f} | {rv:.1f} | {rf:.1f} | {rv / rp:.2f}x | "
              f"{rf / rp:.2f}x | {np.abs(fa - ex).max():.3f} |", flush=True)


if __name__ == "__main__":
    main()
