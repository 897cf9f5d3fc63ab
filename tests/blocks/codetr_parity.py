#!/usr/bin/env python3
"""MoVA's Co-DETR expert (src/models/codetr.c) vs tests/ref/codetr_ref.py,
the official ViT02 + neck (TempleX98/MoVA mova/model/vision_experts/codetr/
vit.py), on random weights in three configurations that keep the real
structure:
  tiny      width 64, 4 heads, 4 blocks (0, 2 windowed; 1, 3 global), window 4
            on a 13 x 13 grid (padded to 16 x 16), input 160 nearest-resized to
            208, out 7 x 7, neck 32
  posresize width 48, 2 heads, 2 blocks (0 global, 1 windowed), window 5
            (13 -> 15), a 12 x 12 position table resized bicubic to 13 x 13, no
            input resize, out 16 x 16 (bilinear up), under the prefix MoVA
            stores it with (model.vision_tower.vision_tower_3.)
  released  MoVA's geometry with a narrow tower: input 1024 nearest to 1280,
            80 x 80 grid, window 16, a global block (RoPE positions
            arange(80) / 80 * 16), out 37 x 37; img_size / in_size / out_size /
            window_size left at the C defaults
each max|a-e| / max|e| <= 1e-5. Also, in Python: torch's nearest index rule
(src = min(floor(dst * (float)in / out), in - 1) in float32) against
F.interpolate itself for 1024 -> 1280 and the test sizes; the C RoPE table
rule against the official float32 buffers (window 16 and grid 80 at head
width 64, and the test sizes); that the window / global split moves the
output. Bad inputs: a missing tensor is named, a RoPE buffer that does not
fit window_size is refused, an unknown option and a wrong input size are
refused.

    codetr_parity.py --tool build/codetr_run
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
import codetr_ref as CR  # noqa: E402
import safetensors_io as sio  # noqa: E402

TOL = 1e-5


def randomize(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n == "pos_embed":
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                norm = n.endswith("weight") and ("norm" in n or "ln" in n or "neck" in n)
                p.copy_((1.0 if norm else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan ** 0.5)
    return g


def run_tool(tool, wpath, cfg, x, wd, base=None):
    cpath = "-"
    if cfg is not None:
        cpath = os.path.join(wd, "cfg.json")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
    xpath, opath = os.path.join(wd, "x.npy"), os.path.join(wd, "out.npy")
    np.save(xpath, x)
    args = [tool, wpath, cpath, xpath, opath] + ([base] if base is not None else [])
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode:
        return None, p.stderr.decode().strip()
    return np.load(opath), ""


CASES = [
    # name, model kwargs, in_size, C options, base prefix
    ("tiny", dict(img_size=208, pretrain_img_size=208, d=64, depth=4, heads=4, window=4,
                  window_blocks=[0, 2], out_chans=32, out_size=7), 160,
     dict(num_heads=4, window_size=4, window_block_indexes=[0, 2], img_size=208, in_size=160,
          out_size=7), ""),
    ("posresize", dict(img_size=208, pretrain_img_size=192, d=48, depth=2, heads=2, window=5,
                       window_blocks=[1], out_chans=16, out_size=16), 208,
     dict(num_heads=2, window_size=5, window_block_indexes=[1], img_size=208, in_size=208,
          out_size=16), "model.vision_tower.vision_tower_3."),
    ("released", dict(d=32, depth=2, heads=2, window_blocks=[0], out_chans=16), 1024,
     dict(num_heads=2, window_block_indexes=[0]), ""),
]


@torch.no_grad()
def check_cases(tool, wd):
    fails = 0
    for k, (name, kw, S, cfg, base) in enumerate(CASES):
        m = CR.CoDETRViT(**kw).eval()
        g = randomize(m, 10 + k)
        sd = {base + n: t.contiguous() for n, t in m.state_dict().items()}
        wpath = os.path.join(wd, name + ".safetensors")
        sio.write_file(wpath, sd)
        x = torch.randn(1, 3, S, S, generator=g)
        exp = m(x)[0].numpy()
        got, err_msg = run_tool(tool, wpath, cfg, x[0].numpy(), wd, base or None)
        if got is None:
            print("FAIL %-9s: %s" % (name, err_msg))
            fails += 1
            continue
        err = float(np.max(np.abs(got - exp)) / np.max(np.abs(exp)))
        ok = got.shape == exp.shape and err <= TOL
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "%-9s out %s rel %.2e" % (name, list(got.shape), err))
        if name == "tiny":  # the window / global split is visible in the output
            for blk in m.blocks:
                blk.window_size, blk.attn.rope = 0, m.rope_glb
            d = float(np.max(np.abs(m(x)[0].numpy() - exp)) / np.max(np.abs(exp)))
            ok = d > 1e-3
            fails += not ok
            print(("ok   " if ok else "FAIL ") + "sensitivity: all-global vs windowed %.2e" % d)
    return fails


def check_nearest():
    """F.interpolate(mode='nearest', size=...) picks src = min(floor(dst * s), in - 1), with s =
    (float)in / out and the product in float32 (what codetr.c's patch im2col reads)."""
    fails = 0
    for n_in, n_out in ((1024, 1280), (160, 208), (208, 208), (100, 1280), (1280, 1024),
                        (1000, 1280), (640, 1280)):
        x = torch.arange(n_in, dtype=torch.float32).view(1, 1, 1, n_in).expand(1, 1, 2, n_in)
        ref = F.interpolate(x, size=(2, n_out), mode="nearest")[0, 0, 0].numpy().astype(np.int64)
        s = np.float32(n_in) / np.float32(n_out)
        rule = np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * s).astype(np.int64),
                          n_in - 1)
        ok = np.array_equal(ref, rule)
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "nearest index rule %d -> %d" % (n_in, n_out))
    return fails


def rope_rule(ft, pt, dh, theta=10000.0):
    """codetr.c rope_table in numpy (float32 steps, cos / sin in double)."""
    half, nf = dh // 2, dh // 4
    e = np.float32(np.arange(nf) * 2) / np.float32(half)
    f = np.float32(1.0) / np.power(theta, e.astype(np.float64)).astype(np.float32)
    t = (np.arange(ft, dtype=np.float32) / np.float32(ft)) * np.float32(pt)
    ang = np.repeat(t[:, None] * f[None, :], 2, axis=1)  # (ft, half) float32
    rows = np.broadcast_to(ang[:, None, :], (ft, ft, half))
    cols = np.broadcast_to(ang[None, :, :], (ft, ft, half))
    a = np.concatenate([rows, cols], axis=-1).reshape(-1, dh).astype(np.float64)
    return np.cos(a).astype(np.float32), np.sin(a).astype(np.float32)


def check_rope():
    fails = 0
    for ft, dh in ((16, 64), (80, 64), (4, 16), (13, 16), (5, 24), (80, 16)):
        r = CR.Rope(dh // 2, 16, ft)
        c, s = rope_rule(ft, 16, dh)
        err = max(float(np.max(np.abs(c - r.freqs_cos.numpy()))),
                  float(np.max(np.abs(s - r.freqs_sin.numpy()))))
        ok = err <= 1e-6
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "rope table ft %d head %d vs torch: max diff %.1e"
              % (ft, dh, err))
    return fails


@torch.no_grad()
def check_bad(tool, wd):
    fails = 0
    name, kw, S, cfg, _ = CASES[0]
    m = CR.CoDETRViT(**kw).eval()
    randomize(m, 5)
    sd = {n: t.contiguous() for n, t in m.state_dict().items()}
    x = np.zeros((3, S, S), np.float32)

    def expect(label, tensors, opts, inp, needle):
        wpath = os.path.join(wd, "bad.safetensors")
        sio.write_file(wpath, tensors)
        got, msg = run_tool(tool, wpath, opts, inp, wd)
        ok = got is None and needle in msg
        print(("ok   " if ok else "FAIL ") + "bad input, %s: %s" % (label, msg or "accepted"))
        return not ok

    missing = dict(sd)
    del missing["blocks.1.mlp.w3.weight"]
    fails += expect("missing tensor", missing, cfg, x, "blocks.1.mlp.w3.weight")
    fails += expect("window_size vs rope_win", sd, dict(cfg, window_size=8), x,
                    "freqs_cos is [16, 16], not [64, 16]")
    fails += expect("unknown option", sd, dict(cfg, windowsize=4), x, "windowsize")
    fails += expect("input size", sd, cfg, np.zeros((3, S + 1, S + 1), np.float32), "[3, 160, 160]")
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    fails = check_nearest() + check_rope()
    with tempfile.TemporaryDirectory() as wd:
        fails += check_cases(a.tool, wd)
        fails += check_bad(a.tool, wd)
    print("codetr parity: %s" % ("FAIL (%d)" % fails if fails else "ok"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
