#!/usr/bin/env python3
"""Parity of vtok's batches of sequences (vt_llm_forward_batch and the public
vtok_llm_*_batch API) with transformers' left-padded batched generate(),
re-written in torch in tests/ref/llama_ref.py (Model.forward_batch /
generate_batch: explicit attention_mask and position_ids = cumsum(mask) - 1,
pads set to 1, the 4D finfo.min mask), through tests/blocks/llm_batch_run.

    llm_batch_parity.py --tool build/llm_batch_run --work DIR

Each case: a batch of prompts of different lengths (tiny random HF folders,
hidden 64, vocab 300): the logits and every hidden state of every real
position within max|c - ref| / max|ref| <= 1e-5 (one prefill call of the
internal API), the last-position logits through the public API, and greedy
continuations identical to the reference's batched generate() and, except
where dynamic NTK scales the batch from its longest sequence, to each
sequence generated alone (vtok_llm_ctx_new + vtok_llm_generate, and the
reference without padding). Models: LLaMA GQA, Qwen2 (q/k/v bias, tied),
rope linear, llama3, dynamic below and past max_position_embeddings; ids
mixed with inputs_embeds rows; a batch longer than one prefill call (column
chunks); n_seq 1. Errors: n_seq 0 and too large, an empty sequence, a
sequence longer than the context, an id outside the vocabulary, decoding
past the context.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import llama_ref  # noqa: E402

TOL = 1e-5
failures = []


def rel(a, e):
    return float(np.max(np.abs(a - e)) / max(np.max(np.abs(e)), 1e-30))


def check(name, ok, detail=""):
    print("%-64s %s %s" % (name, "ok  " if ok else "FAIL", detail))
    if not ok:
        failures.append(name)


def run(tool, args, expect_fail=False):
    p = subprocess.run([tool] + args, capture_output=True, text=True)
    if expect_fail:
        return p
    if p.returncode != 0:
        raise RuntimeError("llm_batch_run failed: %s" % p.stderr.strip())
    return p


def write_tokenizer(folder, vocab):
    """A minimal tokenizer.json (BPE, one piece per id, no merges): the public
    API loads one with the model; these tests give ids, never text."""
    tok = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
           "post_processor": None, "decoder": None,
           "model": {"type": "BPE", "vocab": {"<t%d>" % i: i for i in range(vocab)},
                     "merges": []}}
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok, f)


class Case:
    def __init__(self, work, name, cfg, seed):
        self.dir = os.path.join(work, name)
        self.name = name
        self.cfg = cfg
        self.sd = llama_ref.make_weights(cfg, seed)
        llama_ref.write_model(self.dir, cfg, self.sd)
        write_tokenizer(self.dir, cfg["vocab_size"])

    def ref(self):
        return llama_ref.Model(self.cfg, self.sd)

    def path(self, f):
        return os.path.join(self.dir, f)


def save_prompts(case, lens, seed, rows=None):
    """Random ids per sequence -> files; rows = (seq, positions): those
    positions take random embedding rows (ids there -200: not read)."""
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, case.cfg["vocab_size"], (n,), generator=g) for n in lens]
    extra, paths = [], []
    r = None
    if rows:
        k, pos = rows
        pos = torch.tensor(pos)
        ids[k][pos] = -200
        r = torch.randn(len(pos), case.cfg["hidden_size"], generator=g)
        np.save(case.path("rows.npy"), r.numpy())
        np.save(case.path("rpos.npy"), pos.numpy().astype(np.int64))
        extra = ["--rows-seq", str(k), "--embeds", case.path("rows.npy"),
                 "--embed-pos", case.path("rpos.npy")]
    for i, t in enumerate(ids):
        p = case.path("ids%d.npy" % i)
        np.save(p, t.numpy().astype(np.int64))
        paths.append(p)
    m = case.ref()
    x = []
    for i, t in enumerate(ids):
        if rows and i == rows[0]:
            x.append(m.embed(t, r, torch.tensor(rows[1])))
        else:
            x.append(m.embed(t))
    return ",".join(paths), extra, x


def batch_case(tool, case, lens, seed, gen=10, rows=None, alone=True, threads=2,
               internal=True, label=""):
    name = "%s %s%s" % (case.name, "/".join(str(n) for n in lens), label)
    ids, extra, x = save_prompts(case, lens, seed, rows)
    B, T = len(lens), max(lens)
    with torch.no_grad():
        prefill, hidden, mask, want = case.ref().generate_batch(x, gen)
        alone_ref = [case.ref().greedy(xi, gen) for xi in x]
    check("%s reference: pad rows finite (eager softmax of finfo.min rows)" % name,
          bool(torch.isfinite(prefill).all()))
    real = mask.bool().numpy()
    if internal:
        run(tool, ["--model", case.dir, "--ids", ids, "--logits", case.path("logits.npy"),
                   "--hidden", case.path("hidden.npy"), "--gen", str(gen),
                   "--gen-out", case.path("gen.npy"), "--threads", str(threads)] + extra)
        lg = np.load(case.path("logits.npy"))
        hd = np.load(case.path("hidden.npy"))
        r = rel(lg[real], prefill.numpy()[real])
        check("%s logits of every real position" % name, lg.shape == tuple(prefill.shape)
              and r <= TOL, "rel %.2e" % r)
        rs = [rel(hd[i][real], hidden[i].numpy()[real]) for i in range(hidden.shape[0])]
        check("%s hidden[0..%d] of real positions" % (name, hidden.shape[0] - 1),
              hd.shape == tuple(hidden.shape) and max(rs) <= TOL, "max rel %.2e" % max(rs))
        got = np.load(case.path("gen.npy")).tolist()
        check("%s greedy %d, internal == batched generate()" % (name, gen), got == want,
              "" if got == want else "got %s want %s" % (got, want))
    args = ["--model", case.dir, "--ids", ids, "--api", "1", "--last", case.path("last.npy"),
            "--gen", str(gen), "--gen-out", case.path("gen_api.npy"),
            "--threads", str(threads)] + extra
    if alone:
        args += ["--alone", case.path("alone.npy")]
    # vtok_llm_generate_batch: sequences stop at different steps (the id
    # sequence 0 makes third, when B > 1; sequence 1's callback at its 4th)
    stop = want[0][2] if B > 1 and gen > 3 else -1
    cb_stop = 4 if B > 1 and gen > 4 else 0
    args += ["--gen-batch", case.path("gen_batch.npy"), "--stop-id", str(stop),
             "--cb-stop", str(cb_stop)]
    run(tool, args)
    last = np.load(case.path("last.npy"))
    r = rel(last, prefill[:, -1].numpy())
    check("%s API last-position logits" % name, r <= TOL, "rel %.2e" % r)
    got = np.load(case.path("gen_api.npy")).tolist()
    check("%s greedy %d, API == batched generate()" % (name, gen), got == want,
          "" if got == want else "got %s want %s" % (got, want))
    exp = []
    for i, w in enumerate(want):
        k = w.index(stop) + 1 if stop in w else len(w)
        k = min(k, cb_stop) if i == 1 and cb_stop else k
        exp.append(w[:k] + [-1] * (len(w) - k))
    got = np.load(case.path("gen_batch.npy")).tolist()
    check("%s vtok_llm_generate_batch (stop id %d, seq 1 stops at %d) == batched generate()"
          % (name, stop, cb_stop), got == exp, "" if got == exp else "got %s want %s" % (got, exp))
    if alone:
        check("%s reference: batched == each alone" % name, want == alone_ref,
              "" if want == alone_ref else "batched %s alone %s" % (want, alone_ref))
        got = np.load(case.path("alone.npy")).tolist()
        check("%s greedy %d, each alone (vtok_llm_generate) == batch" % (name, gen),
              got == want, "" if got == want else "got %s want %s" % (got, want))
    return x, prefill


def dynamic_sensitivity(case, x, prefill, seq):
    """Past max_position_embeddings the batch's scaling (from its longest
    sequence) moves a short sequence's logits by far more than TOL against
    that sequence alone: the test sees the batch-wide rule."""
    with torch.no_grad():
        alone, _, _ = case.ref().forward(x[seq])
    n = x[seq].shape[0]
    d = rel(alone.numpy(), prefill[seq, -n:].numpy())
    check("sensitivity: %s sequence %d batched vs alone" % (case.name, seq), d > 10 * TOL,
          "rel %.2e" % d)


def error_cases(tool, case):
    def expect(name, args, words):
        p = run(tool, ["--model", case.dir, "--api", "1"] + args, expect_fail=True)
        msg = p.stderr.strip()
        ok = p.returncode != 0 and msg.count("\n") == 0 and all(w in msg for w in words)
        check("error: " + name, ok, msg[:150])

    g = torch.Generator().manual_seed(77)
    paths = []
    for i, n in enumerate((6, 11, 4)):
        paths.append(case.path("e%d.npy" % i))
        np.save(paths[-1], torch.randint(0, 300, (n,), generator=g).numpy().astype(np.int64))
    ids = ",".join(paths)
    expect("n_seq 0", ["--ids", ids, "--n-seq", "0"], ["1 to 4096 sequences", "not 0"])
    expect("n_seq too large", ["--ids", ids, "--n-seq", "100000"],
           ["1 to 4096 sequences", "not 100000"])
    np.save(case.path("empty.npy"), np.zeros((0,), dtype=np.int64))
    expect("an empty sequence", ["--ids", ",".join([paths[0], case.path("empty.npy"),
                                                     paths[2]])],
           ["sequence 1 is empty"])
    expect("a sequence longer than the context", ["--ids", ids, "--ctx", "8"],
           ["sequence 1:", "11 new", "context of 8"])
    np.save(case.path("bad.npy"), np.array([3, 300, 4], dtype=np.int64))
    expect("an id outside the vocabulary", ["--ids", ",".join([paths[0], case.path("bad.npy")])],
           ["sequence 1:", "id 300"])
    expect("decoding past the context", ["--ids", ids, "--ctx", "13", "--gen", "5",
                                         "--gen-out", case.path("g.npy")],
           ["sequence 1:", "13 positions held + 1 new", "context of 13"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(1)
    cfg = llama_ref.make_config
    W, tool = a.work, a.tool

    gqa = Case(W, "llama_gqa", cfg(layers=3, kv_heads=2), 1)
    batch_case(tool, gqa, (11, 5, 8), 200, gen=12)
    batch_case(tool, gqa, (9, 14, 6), 201, gen=8, rows=(1, [2, 3, 4, 5]),
               label=" + rows")
    batch_case(tool, gqa, (9,), 202, gen=8, label=" n_seq 1")

    qw = Case(W, "qwen2_tied", cfg("qwen2", kv_heads=2, tie_word_embeddings=True), 7)
    batch_case(tool, qw, (7, 13, 4), 203, gen=10)

    lin = Case(W, "rope_linear", cfg(rope_scaling={"type": "linear", "factor": 2.0},
                                     rope_theta=5000.0), 3)
    batch_case(tool, lin, (9, 14, 6), 204)

    l3 = Case(W, "rope_llama3", cfg(max_pos=256, rope_theta=500000.0,
                                    rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                  "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 64}), 5)
    batch_case(tool, l3, (12, 21, 7), 205)

    # dynamic within max_position_embeddings: no scaling, each alone the same
    dyn_lo = Case(W, "rope_dynamic_short", cfg(max_pos=64, rope_scaling={
        "rope_type": "dynamic", "factor": 4.0}), 4)
    batch_case(tool, dyn_lo, (12, 5, 9), 206, gen=8)
    # past it: the batch scales from its longest sequence (prefill 20 > 16,
    # then every decode step), not each sequence from its own length
    dyn = Case(W, "rope_dynamic", cfg(max_pos=16, rope_scaling={"rope_type": "dynamic",
                                                                 "factor": 4.0}), 4)
    x, prefill = batch_case(tool, dyn, (20, 9, 14), 207, gen=8, alone=False)
    dynamic_sensitivity(dyn, x, prefill, 1)

    # more rows than one call of the public API (512): column chunks
    big = Case(W, "llama_long", cfg(max_pos=256, kv_heads=2), 8)
    batch_case(tool, big, (200, 171, 190), 208, gen=4, internal=False, label=" (chunks)")

    error_cases(tool, gqa)

    if failures:
        print("FAILED: %d: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all llm batch parity checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
