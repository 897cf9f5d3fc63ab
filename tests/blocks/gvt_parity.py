"""gvt_parity.py - GVT's blocks in C (tests/blocks/gvt_blocks.c) vs the PyTorch
references of tests/ref/eva_ref.py on tiny random models saved with torch.save
under the official tensor names.

Cases: EVA-02 (GVT tower geometry, every hidden state), LAVIS EVA ViT-g (one
block fewer than the checkpoint, every hidden state), ViT-g with a position
table from another grid (LAVIS interpolate_pos_embed, nested {"model": ...}
checkpoint), and the Perceiver resampler. Pass: max|c - ref| / max|ref| <= 1e-5
for every output. Each case also runs deliberate mistakes through the
reference (wrong RoPE layout, missing sub-LN, wrong eps, tanh GELU, ...) and
requires each to miss by more than 10x the tolerance, so the test can fail.
A checkpoint with tensors removed must be refused with all of them named.

usage: gvt_parity.py --tool build/gvt_blocks --work DIR
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import eva_ref as R  # noqa: E402

TOL = 1e-5
MUT_MIN = 10 * TOL  # tanh-GELU, the subtlest mistake, misses by ~1.5e-4


def rel(a, e):
    return float(np.abs(a - e).max() / np.abs(e).max())


class Run:
    def __init__(self, tool, work):
        self.tool, self.work, self.failed = tool, work, []

    def path(self, name):
        return os.path.join(self.work, name)

    def c(self, kind, weights, prefix, cfg, x, name, extra=(), expect_fail=False):
        cfg_path, in_path, out_path = (self.path(f"{name}.{s}") for s in ("json", "in.npy",
                                                                           "out.npy"))
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        np.save(in_path, x.numpy().astype(np.float32))
        cmd = [self.tool, kind, "--weights", weights, "--prefix", prefix, "--config", cfg_path,
               "--in", in_path, "--out", out_path, *extra]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if expect_fail:
            return p
        if p.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
        return np.load(out_path)

    def check(self, what, err, ok):
        print(f"  {what:52s} {err:.3e}  {'ok' if ok else 'FAIL'}")
        if not ok:
            self.failed.append(what)


def mutants(run, label, build, state, ref_fn, c_out, muts):
    """Each mistake, run through the reference, must be far from the C output."""
    for m in muts:
        model = build({m})
        # the RoPE tables are buffers in the state dict: keep the mutant's own
        model.load_state_dict({k: v for k, v in state.items() if "rope.freqs" not in k},
                              strict=False)
        with torch.no_grad():
            mo = ref_fn(model, m)
        err = max(rel(c_out[i], mo[i]) for i in range(len(mo)))
        run.check(f"{label} detects '{m}' (must be > {MUT_MIN:g})", err, err > MUT_MIN)


def eva02_model(mut=()):
    return R.EVAVisionTransformer(70, 14, 64, 3, 4, 2.6667, subln=True, swiglu=True, rope=True,
                                  pt_hw_seq_len=16, intp_freq=True, gvt_extras=True, mut=mut)


def vit_g_model(mut=(), depth=4, img=56, pos_grid=None):
    return R.EVAVisionTransformer(img, 14, 72, depth, 4, 4.3637, mut=mut, pos_grid=pos_grid)


def perceiver_model(mut=()):
    return R.PerceiverResampler(dim=64, depth=2, dim_head=24, heads=4, num_latents=8,
                                num_media_embeds=1, ff_mult=4, mut=mut)


def small_embed(model, gen):
    """Token embeddings with a variance near LayerNorm's eps, so that eps matters."""
    R.randomize(model, gen, small=("patch_embed", "cls_token", "pos_embed"))
    with torch.no_grad():
        w = model.patch_embed.proj.weight
        w.copy_(torch.randn(w.shape, generator=gen) * 1.2e-4)
    return model


def pixels(gen, n_side):
    x = torch.randn(2, 3, n_side, n_side, generator=gen)
    x[1] *= 30.0  # image 1: large activations; image 0: small, eps-sensitive
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    run = Run(a.tool, a.work)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    fast = ["--threads", "2", "--pack"]

    # ---- one GVT-style checkpoint: visual_encoder.*, ln_vision.*, perceiver.*, llm_proj.*
    eva = small_embed(eva02_model(), gen)
    per = R.randomize(perceiver_model(), gen, small=("latents", "media_pos_emb"))
    gvt = {f"visual_encoder.{k}": v for k, v in eva.state_dict().items()}
    gvt.update({f"perceiver.{k}": v for k, v in per.state_dict().items()})
    gvt["ln_vision.weight"], gvt["ln_vision.bias"] = torch.ones(64), torch.zeros(64)
    gvt["llm_proj.weight"], gvt["llm_proj.bias"] = torch.randn(96, 64), torch.zeros(96)
    gvt_path = run.path("gvt_tiny.pth")
    torch.save(gvt, gvt_path)

    # ---- EVA-02
    print("EVA-02 (width 64, 4 heads, 3 layers, patch 14, image 70, rope pt 16 / grid 5)")
    cfg = {"variant": "eva02", "image_size": 70, "patch_size": 14, "width": 64, "layers": 3,
           "heads": 4, "mlp_ratio": 2.6667}
    px = pixels(gen, 70)
    with torch.no_grad():
        ref = [h.numpy() for h in eva.hidden_states(px)]
    for extra, tag in ((fast, "2 threads, packed"), (["--threads", "1"], "1 thread")):
        out = run.c("eva", gvt_path, "visual_encoder.", cfg, px, "eva02", extra + ["--layers", "all"])
        for i, r in enumerate(ref):
            e = rel(out[i], r)
            run.check(f"eva02 hidden_states[{i}] ({tag})", e, e <= TOL)
    last = run.c("eva", gvt_path, "visual_encoder.", cfg, px, "eva02_last", fast)
    e = rel(last, ref[-1])
    run.check("eva02 output (no --layers) == last hidden", e, e <= TOL)
    mutants(run, "eva02", eva02_model, eva.state_dict(),
            lambda m, _: [h.numpy() for h in m.hidden_states(px)], out,
            ["rope_halves", "rope_swap_axes", "rope_no_intp", "no_rope", "no_inner_attn_ln",
             "no_ffn_ln", "swiglu_swap", "k_bias", "eps"])

    # ---- EVA ViT-g (LAVIS): checkpoint with 4 blocks, model with 3 (SEED drops the last)
    print("EVA ViT-g (width 72, 4 heads, 3 of 4 blocks, patch 14, image 56)")
    g = small_embed(vit_g_model(), gen)
    g_path = run.path("eva_vit_g_tiny.pth")
    torch.save(g.state_dict(), g_path)   # LAVIS eva_vit_g.pth: a plain state dict, no prefix
    cfg = {"variant": "eva_vit_g", "image_size": 56, "patch_size": 14, "width": 72,
           "layers": 3, "heads": 4, "mlp_ratio": 4.3637}
    px = pixels(gen, 56)
    with torch.no_grad():
        ref = [h.numpy() for h in g.hidden_states(px, n_blocks=3)]
    out = run.c("eva", g_path, "", cfg, px, "vit_g", fast + ["--layers", "all"])
    for i, r in enumerate(ref):
        e = rel(out[i], r)
        run.check(f"vit_g hidden_states[{i}]", e, e <= TOL)
    mutants(run, "vit_g", vit_g_model, g.state_dict(),
            lambda m, mu: [h.numpy() for h in m.hidden_states(px, n_blocks=3)], out,
            ["gelu_tanh", "eps"])  # a k bias cancels in softmax without RoPE: not testable
    with torch.no_grad():
        all4 = g.hidden_states(px)[-1].numpy()
    e = rel(out[-1], all4)
    run.check(f"vit_g detects 'all 4 blocks' (must be > {MUT_MIN:g})", e, e > MUT_MIN)

    # ---- ViT-g with a 5x5 position table at 4x4 patches, nested {"model": {...}}
    print("EVA ViT-g, pos_embed 5x5 -> 4x4 (interpolate_pos_embed), 2 blocks")
    gi = small_embed(vit_g_model(depth=2, pos_grid=5), gen)
    gi_path = run.path("seed_tiny.pth")
    torch.save({"model": {f"visual_encoder.{k}": v for k, v in gi.state_dict().items()}},
               gi_path)
    cfg = {"variant": "eva_vit_g", "image_size": 56, "width": 72, "layers": 2, "heads": 4}
    with torch.no_grad():
        ref = [h.numpy() for h in gi.hidden_states(px)]
    out = run.c("eva", gi_path, "model.visual_encoder.", cfg, px, "vit_g_interp",
                fast + ["--layers", "all"])
    for i, r in enumerate(ref):
        e = rel(out[i], r)
        run.check(f"vit_g_interp hidden_states[{i}]", e, e <= TOL)

    # ---- Perceiver resampler (prefix perceiver. in the GVT-style file)
    print("Perceiver (dim 64, depth 2, 4 heads x 24, 8 latents, 26 media tokens)")
    cfg = {"dim": 64, "depth": 2, "dim_head": 24, "heads": 4, "num_latents": 8}
    x = torch.randn(2, 26, 64, generator=gen)
    x[0] *= 3e-3
    with torch.no_grad():
        ref = per(x).numpy()
    for extra, tag in ((fast, "2 threads, packed"), (["--threads", "1"], "1 thread")):
        out = run.c("perceiver", gvt_path, "perceiver.", cfg, x, "perceiver", extra)
        e = rel(out, ref)
        run.check(f"perceiver output ({tag})", e, e <= TOL)
    mutants(run, "perceiver", perceiver_model, per.state_dict(),
            lambda m, _: [m(x).numpy()], [out],
            ["kv_media_only", "no_media_pos", "gelu_tanh", "eps"])

    # ---- missing tensors are all named
    sd = {f"perceiver.{k}": v for k, v in per.state_dict().items()
          if k not in ("layers.1.0.to_kv.weight", "norm.bias")}
    bad = run.path("perceiver_missing.pth")
    torch.save(sd, bad)
    p = run.c("perceiver", bad, "perceiver.", cfg, x, "perceiver_missing", expect_fail=True)
    ok = (p.returncode == 1 and "2 tensors missing" in p.stderr and
          "perceiver.layers.1.0.to_kv.weight" in p.stderr and "perceiver.norm.bias" in p.stderr)
    print(f"  perceiver missing tensors -> {p.stderr.strip()}")
    run.check("perceiver names every missing tensor", float(p.returncode), ok)

    # ---- EVA load errors: a missing q/v bias, a RoPE grid that cannot match, a bad variant
    sd = {k: v for k, v in g.state_dict().items() if k != "blocks.1.attn.v_bias"}
    bad = run.path("vit_g_missing.pth")
    torch.save(sd, bad)
    cfg = {"variant": "eva_vit_g", "image_size": 56, "width": 72, "layers": 3, "heads": 4}
    for name, path, prefix, c, want in (
            ("vit_g missing v_bias", bad, "", cfg, "blocks.1.attn.v_bias"),
            ("eva02 rope grid 16 vs 5 without intp_freq", gvt_path, "visual_encoder.",
             {"image_size": 70, "width": 64, "layers": 3, "heads": 4, "mlp_ratio": 2.6667,
              "intp_freq": False}, "RoPE table is 16x16"),
            ("unknown variant", gvt_path, "visual_encoder.", {"variant": "eva03"}, "eva03")):
        p = run.c("eva", path, prefix, c, px if "vit_g" in name else torch.zeros(1, 3, 70, 70),
                  "eva_bad", expect_fail=True)
        print(f"  {name} -> {p.stderr.strip()}")
        run.check(f"refused: {name}", float(p.returncode), p.returncode == 1 and want in p.stderr)

    if run.failed:
        print("FAILED:", ", ".join(run.failed))
        return 1
    print("all GVT block checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
