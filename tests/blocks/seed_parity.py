#!/usr/bin/env python3
"""Parity of vtok's SEED connector blocks (src/connectors/{qformer,vq,seed_detok}.c)
with the PyTorch reference tests/ref/seed_ref.py, through tests/blocks/seed_blocks.

    seed_parity.py --tool build/seed_blocks --work DIR

Cases (tiny random models saved as torch.save({"model": sd}), prefix "model."):
  qformer  causal 8 queries + ln_vision as input_norm; 32 queries with the
           defaults (12 layers, causal by the 32-query rule); 8 queries with no
           'causal' key (bidirectional by the same rule); 1 and 2 threads
  vq       encode layer + argmin on Q-Former outputs: ids identical (inputs
           checked to have no near-ties), plus deliberate ties: two equal
           codebook rows -> the lower index, NaN -> first index (torch.argmin)
  detok    ids -> 77 generation embeddings, 8 and 32 code tokens
  errors   every missing tensor named in one message; a shape error; an id
           outside the codebook
Floats: max|c - ref| / max|ref| <= 1e-5. The reference itself is checked
against float64 (<= 1e-6) and for sensitivity: a wrong LayerNorm eps, GELU
variant or mask must move it by more than 1e-4 (10x TOL), so the tolerance catches
each of them.
"""

import argparse
import copy
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import seed_ref  # noqa: E402

TOL = 1e-5
F64_TOL = 1e-6
SENS_MIN = 1e-4    # 10x TOL, as tests/ref/make_models.py: GELU erf vs tanh moves ~1.5e-4
GAP_MIN = 1e-3      # nearest vs second-nearest code distance, relative

failures = []
report = []


def rel(a, e):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    return float(np.max(np.abs(a - e)) / max(np.max(np.abs(e)), 1e-30))


def check(cond, msg):
    report.append(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


class Runner:
    def __init__(self, tool, work):
        self.tool, self.work = tool, work

    def path(self, name):
        return os.path.join(self.work, name)

    def run(self, mode, weights, cfg, x, threads=1, expect_fail=False):
        cpath = self.path("cfg.json")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
        xin, out = self.path("in.npy"), self.path("out.npy")
        np.save(xin, x)
        if os.path.exists(out):
            os.remove(out)
        p = subprocess.run([self.tool, mode, "--weights", weights, "--prefix", "model.",
                            "--config", cpath, "--in", xin, "--out", out,
                            "--threads", str(threads)], capture_output=True, text=True)
        if expect_fail:
            # error paths must be clean too (ASan/UBSan builds report on stderr)
            check("Sanitizer" not in p.stderr and "runtime error" not in p.stderr,
                  f"{mode}: error path without sanitizer reports")
            return p.returncode, p.stderr
        if p.returncode != 0:
            raise RuntimeError(f"seed_blocks {mode} failed: {p.stderr.strip()}")
        return np.load(out)


def qcfg(n_query, **kw):
    c = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
         "encoder_width": 48, "num_query_tokens": n_query}
    c.update(kw)
    return c


DETOK_CFG = {"hidden_size": 64, "codebook_embed_dim": 16, "n_embed": 64, "blocks_depth": 2,
             "blocks_num_heads": 4, "proj_dim": 48, "reverse_qformer": {"intermediate_size": 128}}
VQ_CFG = {"hidden_size": 64, "codebook_embed_dim": 16, "n_embed": 64}


def sensitivity(name, base, variants):
    for label, out in variants:
        r = rel(out, base)
        check(r > SENS_MIN, f"{name}: reference moves {r:.2e} with {label} (> {SENS_MIN:g})")


def ref64(model, fn):
    """fn(model, dtype) -> output; float32 vs float64 run of the same weights."""
    m64 = copy.deepcopy(model).double()
    return fn(model, torch.float32), fn(m64, torch.float64)


def margin_ok(z, codebook):
    """Every row's nearest code beats the second by GAP_MIN relative (float64)."""
    z = z.reshape(-1, codebook.shape[1]).astype(np.float64)
    d = ((z[:, None, :] - codebook[None].astype(np.float64)) ** 2).sum(-1)
    s = np.sort(d, axis=1)
    gap = (s[:, 1] - s[:, 0]) / np.maximum(s[:, 1], 1e-30)
    return float(gap.min())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(1)
    R = Runner(a.tool, a.work)
    g = torch.Generator().manual_seed(1234)

    # ------------------------------------------------------------- Q-Former
    cases = [
        # name, make_tiny kwargs, config, input scale, ln_vision
        ("causal8+ln_vision", dict(seed=1, n_query=8, layers=4, causal=True),
         qcfg(8, num_hidden_layers=4, causal=True, input_norm="ln_vision"), seed_ref.R, True),
        ("defaults32", dict(seed=2, n_query=32, layers=12, causal=None),
         qcfg(32), 1.0, False),
        ("bidir8", dict(seed=3, n_query=8, layers=3, causal=None),
         qcfg(8, num_hidden_layers=3), 1.0, False),
    ]
    models = {}
    for name, kw, cfg, scale, use_ln in cases:
        m = seed_ref.make_tiny(**kw)
        wpath = R.path(f"qformer_{name}.pth")
        seed_ref.save(m, wpath)
        models[name] = (m, wpath)
        x = (torch.randn(2, 17, 48, generator=g) * scale)
        with torch.no_grad():
            e32, e64 = ref64(m, lambda mm, dt: mm.qformer(x.to(dt), use_ln).numpy())
            check(rel(e32, e64) <= F64_TOL, f"qformer {name}: reference f32 vs f64 {rel(e32, e64):.2e}")
            variants = [("eps 1e-6", seed_ref.make_tiny(**{**kw, "eps": 1e-6})),
                        ("eps 1e-5", seed_ref.make_tiny(**{**kw, "eps": 1e-5})),
                        ("gelu tanh", seed_ref.make_tiny(**{**kw, "act": "gelu_pytorch_tanh"})),
                        ("mask flipped", seed_ref.make_tiny(**{**kw, "causal": not m.causal}))]
            if use_ln:
                variants.append(("ln_vision eps 1e-6",
                                 seed_ref.make_tiny(**{**kw, "ln_vision_eps": 1e-6})))
            sensitivity(f"qformer {name}", e32,
                        [(lbl, v.qformer(x, use_ln).numpy()) for lbl, v in variants])
        for threads in (1, 2):
            c = R.run("qformer", wpath, cfg, x.numpy(), threads)
            check(c.shape == e32.shape, f"qformer {name}: shape {c.shape}")
            r = rel(c, e32)
            check(r <= TOL, f"qformer {name} threads {threads}: max rel err {r:.2e}")

    # ------------------------------------------------------------------ VQ
    for name in ("causal8+ln_vision", "defaults32"):
        m, wpath = models[name]
        x = torch.randn(2, 17, 48, generator=g) * (seed_ref.R if name.endswith("ln_vision") else 1)
        with torch.no_grad():
            emb = m.qformer(x, name.endswith("ln_vision"))
            z = m.encode_task_layer(emb).numpy()
            ids = m.encode(emb).numpy()
        cb = m.quantize.embedding.weight.detach().numpy()
        gap = margin_ok(z, cb)
        check(gap > GAP_MIN, f"vq {name}: inputs have no near-ties (min gap {gap:.2e})")
        c = R.run("vq", wpath, VQ_CFG, emb.numpy())
        check(c.dtype == np.int64 and c.shape == ids.shape, f"vq {name}: int64 {c.shape}")
        nd = int((c != ids).sum())
        check(nd == 0, f"vq {name}: {ids.size} ids, {nd} differ")
        c = R.run("argmin", wpath, VQ_CFG, z)
        check(np.array_equal(c, ids), f"vq argmin {name}: ids identical")

    # deliberate ties through the whole path: codebook rows 12 and 50 = z of token (0, 3)
    m, _ = models["causal8+ln_vision"]
    x = torch.randn(2, 17, 48, generator=g) * seed_ref.R
    with torch.no_grad():
        emb = m.qformer(x, True)
        z = m.encode_task_layer(emb)
        m.quantize.embedding.weight[12] = z[0, 3]
        m.quantize.embedding.weight[50] = z[0, 3]
        ids = m.encode(emb).numpy()
    tpath = R.path("vq_tie.pth")
    seed_ref.save(m, tpath)
    check(ids[0, 3] == 12, f"vq tie: torch.argmin picks the lower index ({ids[0, 3]})")
    c = R.run("vq", tpath, VQ_CFG, emb.numpy())
    check(c[0, 3] == 12 and np.array_equal(c, ids), f"vq tie: C picks {c[0, 3]}, all ids equal")
    # the quantiser alone: equal rows, exact hits, a NaN row
    with torch.no_grad():
        cbk = m.quantize.embedding.weight
        cbk[7] = cbk[33]
        zt = torch.stack([cbk[50], cbk[33], torch.full((16,), float("nan")), cbk[7] * 1.001,
                          torch.zeros(16)]).reshape(1, 5, 16)
        ids = m.argmin(zt).numpy()
    seed_ref.save(m, tpath)
    c = R.run("argmin", tpath, VQ_CFG, zt.numpy())
    check(np.array_equal(c, ids) and ids[0, 0] == 12 and ids[0, 1] == 7 and ids[0, 2] == 0,
          f"vq argmin ties/NaN: C {c.tolist()} torch {ids.tolist()}")

    # --------------------------------------------------------------- detok
    for name, ntok in (("causal8+ln_vision", 8), ("defaults32", 32)):
        m, wpath = models[name]
        ids = torch.randint(0, 64, (2, ntok), generator=g)
        ids[0, 0], ids[1, -1] = 0, 63
        cfg = dict(DETOK_CFG, num_query_tokens=ntok)
        kw = dict(cases[0][1] if ntok == 8 else cases[1][1])
        with torch.no_grad():
            e32, e64 = ref64(m, lambda mm, dt: mm.detok(ids).numpy())
            check(rel(e32, e64) <= F64_TOL, f"detok {name}: reference f32 vs f64 {rel(e32, e64):.2e}")
            variants = [("block eps 1e-5", {"block_eps": 1e-5}),
                        ("block eps 1e-12", {"block_eps": 1e-12}),
                        ("block gelu tanh", {"block_act": "gelu_pytorch_tanh"}),
                        ("reverse eps 1e-6", {"eps": 1e-6}),
                        ("reverse causal", {"reverse_causal": True})]
            outs = []
            for lbl, over in variants:
                # (eps also changes the causal Q-Former, which detok does not use)
                v = seed_ref.make_tiny(**{**kw, **over})
                outs.append((lbl, v.detok(ids).numpy()))
            sensitivity(f"detok {name}", e32, outs)
        c = R.run("detok", wpath, cfg, ids.numpy())
        check(c.shape == e32.shape, f"detok {name}: shape {c.shape}")
        r = rel(c, e32)
        check(r <= TOL, f"detok {name}: max rel err {r:.2e}")

    # -------------------------------------------------------------- errors
    m, _ = models["causal8+ln_vision"]
    drop = ["query_tokens", "Qformer.bert.encoder.layer.2.crossattention.self.key.weight",
            "Qformer.bert.encoder.layer.3.output_query.LayerNorm.bias",
            "Reverse_Qformer.bert.encoder.layer.1.attention.output.dense.bias",
            "blocks_text.1.mlp.fc2.weight", "decode_task_layer.0.bias"]
    bpath = R.path("broken.pth")
    seed_ref.save(m, bpath, drop=drop)
    x = np.zeros((1, 17, 48), np.float32)
    rc, err = R.run("qformer", bpath, qcfg(8, num_hidden_layers=4), x, expect_fail=True)
    check(rc == 1 and "3 tensors missing" in err and all(d in err for d in drop[:3]),
          f"qformer missing tensors all named: {err.strip()}")
    rc, err = R.run("detok", bpath, dict(DETOK_CFG, num_query_tokens=8),
                    np.zeros((1, 8), np.int64), expect_fail=True)
    check(rc == 1 and all(d in err for d in drop[3:]),
          f"detok missing tensors all named: {err.strip()}")
    # a whole layer gone: the message lists what fits and counts the rest
    layer3 = [k for k in m.state_dict() if k.startswith("Qformer.bert.encoder.layer.3.")]
    seed_ref.save(m, bpath, drop=layer3)
    rc, err = R.run("qformer", bpath, qcfg(8, num_hidden_layers=4), x, expect_fail=True)
    check(rc == 1 and f"{len(layer3)} tensors missing" in err and " more" in err and
          len(err) < 600, f"qformer many missing: {err.strip()}")
    rc, err = R.run("qformer", models["causal8+ln_vision"][1], qcfg(8, encoder_width=40), x,
                    expect_fail=True)
    check(rc == 1 and "shape" in err and "crossattention.self.key.weight" in err,
          f"qformer shape error: {err.strip()}")
    rc, err = R.run("detok", models["causal8+ln_vision"][1], dict(DETOK_CFG, num_query_tokens=8),
                    np.full((1, 8), 64, np.int64), expect_fail=True)
    check(rc == 1 and "outside [0, 64)" in err, f"detok bad id: {err.strip()}")

    print("\n".join(report))
    if failures:
        print(f"seed_parity: {len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print(f"seed_parity: all {len(report)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
