#!/usr/bin/env python3
"""The Pix2Struct vision encoder (src/models/p2s_enc.c) vs tests/ref/p2s_enc_ref.py
(transformers' Pix2StructVisionModel semantics) on tiny random models with the
real structure, every output row compared (MoVA keeps the padding rows):

  A  hidden 64, 4 heads x d_kv 16, 3 layers, 16 x 16 x 3 patches (rows of 770),
     gelu_new, options from a whole Pix2StructConfig (vision_config read
     leniently), tensors under "encoder." as in google/pix2struct-large:
       25 real rows + 5 padding rows (the kept keys are a prefix);
       30 real rows (no padding);
       a real-looking row in the middle whose values sum to exactly 0 (masked:
       the kept keys are compacted);
       all rows zero, and rows that are not zero but sum to 0 (no key kept:
       uniform attention over every row);
  B  hidden 64, 4 heads x d_kv 24 (inner 96 != hidden), 2 layers, 4 x 4 x 3
     patches, erf gelu, eps 1e-5, options as a plain object, no prefix;
  C  no options (d_kv 64 and the heads from the weights), hidden 128, 2 heads,
     2 layers, 2025 rows of which 44 x 44 = 1936 real: MoVA's rounding case.
Each: max|a-e| / max|e| <= 1e-5, and the same on the padding rows alone.
The masking rule itself (finfo.min bias + clamp): in the reference every
masked key's softmax weight is exactly 0 for every query row, padded query
rows included, so leaving the masked keys out is exact; and the mask
matters (the output with no mask differs). Bad inputs: a missing tensor is
named, three missing are all named, an id beyond seq_len, an unknown option,
heads x d_kv not matching the weights.

    p2s_enc_parity.py --tool build/p2s_enc_run
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
import p2s_enc_ref as R  # noqa: E402
import safetensors_io as sio  # noqa: E402

FAILS = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        FAILS.append(msg)


def make_model(seed, **cfg):
    torch.manual_seed(seed)
    m = R.VisionModel(**cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    d_kv = m.encoder.layer[0].attention.d_kv
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif n.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embedder" in n:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:  # Linears: 1 / sqrt(fan_in); query also 1 / sqrt(d_kv) (Mesh TF init)
                s = p.shape[1] ** -0.5 * (d_kv ** -0.5 if n.endswith("query.weight") else 1.0)
                p.copy_(s * torch.randn(p.shape, generator=g))
    return m


def patches(L, rows, cols, P, seed):
    """Processor-like rows: ids (1-based) then P values; rows past rows * cols are zero."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(L, 2 + P)
    for i in range(rows * cols):
        x[i, 0], x[i, 1] = i // cols + 1, i % cols + 1
        x[i, 2:] = torch.randn(P, generator=g)
    return x


def run(tool, wd, model, base, cfg, x, extra=None, drop=()):
    sd = {base + k: v.contiguous() for k, v in model.state_dict().items() if k not in drop}
    if extra:
        sd.update(extra)
    wpath = os.path.join(wd, "w.safetensors")
    sio.write_file(wpath, sd)
    cpath = "-"
    if cfg is not None:
        cpath = os.path.join(wd, "cfg.json")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
    xp, op = os.path.join(wd, "x.npy"), os.path.join(wd, "out.npy")
    np.save(xp, x.numpy())
    if os.path.exists(op):
        os.remove(op)
    p = subprocess.run([tool, wpath, cpath, base, xp, op], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    return p.returncode, p.stderr.decode(), (np.load(op) if p.returncode == 0 else None)


@torch.no_grad()
def compare(tool, wd, name, model, base, cfg, x, n_real):
    exp = model(x[None])[0].numpy()
    rc, err, got = run(tool, wd, model, base, cfg, x)
    if rc:
        check(False, "%s: %s" % (name, err.strip()))
        return
    scale = float(np.max(np.abs(exp)))
    e_all = float(np.max(np.abs(got - exp))) / scale
    pad = got.shape[0] > n_real and n_real >= 0
    e_pad = float(np.max(np.abs(got[n_real:] - exp[n_real:]))) / scale if pad else 0.0
    check(got.shape == exp.shape and e_all <= 1e-5 and e_pad <= 1e-5,
          "%-44s %s rel %.2e%s" % (name, list(got.shape), e_all,
                                   ", padding rows %.2e" % e_pad if pad else ""))


@torch.no_grad()
def check_mask_rule(name, model, x):
    """The reference's own numbers: masked keys get weight exactly 0 from
    every query (padded ones too), and the mask changes the output."""
    mask = (x.sum(-1) != 0)
    attn = model.encoder.layer[0].attention
    attn.keep_weights = True
    y = model(x[None])[0]
    w = attn.weights[0]  # [heads, L, L]
    attn.keep_weights = False
    masked = w[:, :, ~mask]
    worst = float(masked.abs().max()) if masked.numel() else 0.0
    pad_q = w[:, ~mask, :][:, :, mask].sum(-1) if (~mask).any() else torch.ones(1)
    check(worst == 0.0 and float((pad_q - 1).abs().max()) < 1e-6,
          "%s: masked keys' weights exactly %g (all %d queries), padded queries' "
          "weights sum to 1 over the %d kept keys" % (name, worst, x.shape[0], int(mask.sum())))
    y1 = model(x[None], torch.ones(1, x.shape[0]))[0]
    d = float((y1 - y).abs().max() / y.abs().max())
    check(d > 1e-3, "%s: the mask matters (no-mask output differs by %.2e)" % (name, d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    tool = ap.parse_args().tool
    with tempfile.TemporaryDirectory() as wd:
        # ---- A: a whole Pix2StructConfig, "encoder." prefix ----
        ca = dict(hidden_size=64, num_attention_heads=4, d_kv=16, num_hidden_layers=3, d_ff=96,
                  patch_embed_hidden_size=768, seq_len=64, layer_norm_eps=1e-6,
                  dense_act_fn="gelu_new")
        ma = make_model(10, **ca)
        cfg_a = {"model_type": "pix2struct", "is_vqa": False,
                 "text_config": {"model_type": "pix2struct_text_model", "d_model": 32},
                 "vision_config": dict(ca, model_type="pix2struct_vision_model",
                                       dropout_rate=0.0, patch_size=16, projection_dim=768,
                                       initializer_range=0.02)}
        P = 768
        x = patches(30, 5, 5, P, 1)
        check_mask_rule("A 25 real + 5 padding", ma, x)
        compare(tool, wd, "A 25 real + 5 padding rows", ma, "encoder.", cfg_a, x, 25)
        compare(tool, wd, "A 30 real rows", ma, "encoder.", cfg_a, patches(30, 5, 6, P, 2), 30)
        x = patches(30, 5, 5, P, 3)
        x[7] = 0  # a real-looking row whose values sum to exactly 0 (any order)
        x[7, 0], x[7, 1], x[7, 2], x[7, 3], x[7, 4] = 2, 3, -5, 0.25, -0.25
        check_mask_rule("A zero-sum row 7", ma, x)
        compare(tool, wd, "A zero-sum row 7 (keys compacted)", ma, "encoder.", cfg_a, x, 25)
        compare(tool, wd, "A all rows zero (uniform attention)", ma, "encoder.", cfg_a,
                torch.zeros(12, 2 + P), 0)
        x = torch.zeros(12, 2 + P)
        g = torch.Generator().manual_seed(4)
        for i in range(12):
            a = torch.randint(-16, 16, (P // 2 - 1,), generator=g).float() / 8
            x[i, 0], x[i, 1], x[i, 2] = 1, i + 1, -(i + 2)
            x[i, 3:3 + a.numel()], x[i, 3 + a.numel():3 + 2 * a.numel()] = a, -a
        ok = bool(((x.sum(-1) == 0) & (x.abs().sum(-1) > 0)).all())
        compare(tool, wd, "A nonzero rows summing to 0 (uniform)" + ("" if ok else " BAD"),
                ma, "encoder.", cfg_a, x, 0)

        # ---- B: inner != hidden, plain options, no prefix ----
        cb = dict(hidden_size=64, num_attention_heads=4, d_kv=24, num_hidden_layers=2, d_ff=80,
                  patch_embed_hidden_size=48, seq_len=50, layer_norm_eps=1e-5,
                  dense_act_fn="gelu")
        mb = make_model(20, **cb)
        cfg_b = {"d_kv": 24, "num_attention_heads": 4, "layer_norm_eps": 1e-5,
                 "dense_act_fn": "gelu"}
        compare(tool, wd, "B inner 96 != hidden 64, 25 + 5 padding", mb, "", cfg_b,
                patches(30, 5, 5, 48, 5), 25)

        # ---- C: no options; MoVA's 44 x 44 grid in 2025 rows ----
        cc = dict(hidden_size=128, num_attention_heads=2, d_kv=64, num_hidden_layers=2, d_ff=160,
                  patch_embed_hidden_size=768, seq_len=64)
        mc = make_model(30, **cc)
        x = patches(2025, 44, 44, 768, 6)
        check_mask_rule("C 1936 real + 89 padding", mc, x)
        compare(tool, wd, "C 2025 rows, 44 x 44 real, no options", mc,
                "model.vision_tower.vision_tower_4.", None, x, 1936)

        # ---- bad inputs ----
        x = patches(30, 5, 5, P, 1)
        drop = ["encoder.layer.1.mlp.wi_1.weight"]
        rc, err, _ = run(tool, wd, ma, "encoder.", cfg_a, x, drop=drop)
        check(rc == 1 and "encoder.layer.1.mlp.wi_1.weight" in err and "missing" in err,
              "missing tensor named: %s" % err.strip())
        drop = ["encoder.layer.0.attention.key.weight", "embeddings.row_embedder.weight",
                "layernorm.weight"]
        rc, err, _ = run(tool, wd, ma, "encoder.", cfg_a, x, drop=drop)
        check(rc == 1 and "3 tensors missing" in err and all(d in err for d in drop),
              "three missing tensors named: %s" % err.strip())
        xb = x.clone()
        xb[3, 0] = 64
        rc, err, _ = run(tool, wd, ma, "encoder.", cfg_a, xb)
        check(rc == 1 and "row 3" in err, "row id beyond seq_len refused: %s" % err.strip())
        rc, err, _ = run(tool, wd, ma, "encoder.", {"d_kv": 16, "num_heads": 4}, x)
        check(rc == 1 and "num_heads" in err, "unknown option refused: %s" % err.strip())
        rc, err, _ = run(tool, wd, ma, "encoder.", {"num_attention_heads": 5, "d_kv": 16}, x)
        check(rc == 1 and "attention.query.weight" in err and "[80, 64]" in err,
              "heads x d_kv vs the weights: %s" % err.strip())
        rc, err, _ = run(tool, wd, ma, "encoder.", {"d_kv": 48}, x)  # 64 outputs, d_kv 48
        check(rc == 1 and "num_attention_heads x d_kv" in err,
              "d_kv not dividing the weights: %s" % err.strip())
        rc, err, _ = run(tool, wd, ma, "encoder.", None, x)  # d_kv 64 default: 1 head
        check(rc == 0, "no options on a 64-wide model loads (1 head of 64)")
    print("%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
