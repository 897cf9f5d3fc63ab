#!/usr/bin/env python3
"""MoVA's SAM experts (src/models/sam.c) vs tests/ref/sam_ref.py, the
original ImageEncoderViT (TempleX98/MoVA vision_experts/vary/sam.py) in torch,
on tiny random configurations with the real structure:
  vary-like   grid 9 (144 px), window 4 (padded to 12), global [1, 3], net_2
              (stride 2 on an odd grid: 5 x 5), tensors under a MoVA prefix
  samh-like   grid 10, window 3 (padded to 12), global [2, 5], no net_2
  no-pad      grid 8, window 4 (no padding), net_2 in the file but turned off
              by use_output_conv false (and applied by default)
  big-window  grid 5, window 7 (one window, mostly padding), 3 heads
The options are derived from the weights (window, global blocks, heads,
net_2), and given explicitly once; the runner's summary line must report
them. max|a-e| / max|e| <= 1e-5. Bad inputs: a missing tensor is named,
global_attn_indexes that contradict the rel_pos tables, a preset whose size
differs from the weights, an unknown option - each a clear error.

    sam_parity.py --tool build/sam_run
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
import safetensors_io as sio  # noqa: E402
import sam_ref as SR  # noqa: E402

PREFIX = "model.vision_tower.vision_tower_2."


def randomise(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("pos_embed") or "rel_pos" in n:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                base = 1.0 if n.endswith("weight") else 0.0  # norms' weights near 1
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    return m


def run(tool, wpath, x, cfg="-", base="", wd="."):
    np.save(os.path.join(wd, "in.npy"), x)
    out = os.path.join(wd, "out.npy")
    if os.path.exists(out):
        os.remove(out)
    p = subprocess.run([tool, wpath, os.path.join(wd, "in.npy"), out, cfg, base],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = np.load(out) if p.returncode == 0 else None
    return p.returncode, p.stdout.decode().strip(), p.stderr.decode().strip(), got


def rel(got, exp):
    return float(np.max(np.abs(got - exp)) / np.max(np.abs(exp)))


CASES = [
    # name, model kwargs, prefix, expected summary fragment
    ("vary-like", dict(img_size=144, embed_dim=64, depth=4, num_heads=4, out_chans=32,
                       window_size=4, global_attn_indexes=(1, 3), use_output_conv=True,
                       out2_chans=48),
     PREFIX, "depth 4 width 64 heads 4 window 4 global 1,3 in 144 out 25 x 48"),
    ("samh-like", dict(img_size=160, embed_dim=48, depth=6, num_heads=3, out_chans=32,
                       window_size=3, global_attn_indexes=(2, 5), use_output_conv=False),
     "", "depth 6 width 48 heads 3 window 3 global 2,5 in 160 out 100 x 32"),
    ("no-pad", dict(img_size=128, embed_dim=32, depth=2, num_heads=2, out_chans=16,
                    window_size=4, global_attn_indexes=(1,), use_output_conv=True),
     "", "depth 2 width 32 heads 2 window 4 global 1 in 128 out 16 x 32"),
    ("big-window", dict(img_size=80, embed_dim=48, depth=2, num_heads=3, out_chans=16,
                        window_size=7, global_attn_indexes=(0,), use_output_conv=False),
     "", "depth 2 width 48 heads 3 window 7 global 0 in 80 out 25 x 16"),
]


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    fails = 0

    def check(ok, msg):
        nonlocal fails
        fails += not ok
        print(("ok   " if ok else "FAIL ") + msg)

    with tempfile.TemporaryDirectory() as wd:
        for ci, (name, kw, prefix, summary) in enumerate(CASES):
            m = randomise(SR.ImageEncoderViT(**kw).eval(), 10 + ci)
            sd = {prefix + k: v.contiguous() for k, v in m.state_dict().items()}
            wpath = os.path.join(wd, name + ".safetensors")
            sio.write_file(wpath, sd)
            g = torch.Generator().manual_seed(100 + ci)
            x = torch.randn(1, 3, kw["img_size"], kw["img_size"], generator=g)
            exp = m(x)[0].numpy()
            rc, so, se, got = run(a.tool, wpath, x[0].numpy(), "-", prefix, wd)
            if rc:
                check(False, "%s: %s" % (name, se))
                continue
            check(so == summary, "%s: options from the weights: %s" % (name, so))
            err = rel(got, exp)
            check(got.shape == exp.shape and err <= 1e-5,
                  "%s %s rel %.2e" % (name, list(got.shape), err))
            if name == "vary-like":
                cfg = '{"window_size": 4, "global_attn_indexes": [1, 3], "num_heads": 4, ' \
                      '"use_output_conv": true}'
                rc, so, se, got = run(a.tool, wpath, x[0].numpy(), cfg, prefix, wd)
                ok = rc == 0 and rel(got, exp) <= 1e-5
                check(ok, "vary-like, options given explicitly: %s" % (
                    se or "rel %.2e" % rel(got, exp)))
                # the rel-pos terms and the window padding matter to what is checked
                m0 = SR.ImageEncoderViT(**kw).eval()
                m0.load_state_dict(m.state_dict())
                for blk in m0.blocks:
                    blk.attn.rel_pos_h.zero_()
                    blk.attn.rel_pos_w.zero_()
                print("info vary-like: zero rel-pos tables move the output by rel %.2e"
                      % rel(m0(x)[0].numpy(), exp))
                # bad inputs
                bad = dict(sd)
                del bad[PREFIX + "blocks.2.mlp.lin1.weight"]
                bpath = os.path.join(wd, "bad.safetensors")
                sio.write_file(bpath, bad)
                rc, so, se, _ = run(a.tool, bpath, x[0].numpy(), "-", prefix, wd)
                check(rc != 0 and "blocks.2.mlp.lin1.weight" in se,
                      "missing tensor named: %s" % se)
                for cfg, want in (('{"global_attn_indexes": [0]}', "rel_pos_h"),
                                  ('{"preset": "vit_b"}', "preset vit_b"),
                                  ('{"window": 4}', "unknown option"),
                                  ('{"preset": "vit_x"}', "expected one of")):
                    rc, so, se, _ = run(a.tool, wpath, x[0].numpy(), cfg, prefix, wd)
                    check(rc != 0 and want in se, "refused %s: %s" % (cfg, se))
            if name == "no-pad":
                m.use_output_conv = False
                exp2 = m(x)[0].numpy()
                rc, so, se, got = run(a.tool, wpath, x[0].numpy(), '{"use_output_conv": false}',
                                      prefix, wd)
                ok = rc == 0 and got.shape == exp2.shape and rel(got, exp2) <= 1e-5
                check(ok, "no-pad, net_2 off: %s" % (se or "%s rel %.2e" % (
                    list(got.shape), rel(got, exp2))))
    print("%d failure(s)" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
