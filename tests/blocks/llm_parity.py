#!/usr/bin/env python3
"""Parity of vtok's decoder LLM runtime (src/models/llama.c) with the PyTorch
reference tests/ref/llama_ref.py, through tests/blocks/llm_run.

    llm_parity.py --tool build/llm_run --work DIR

Cases (tiny random HF folders, hidden 64, heads 4, vocab 300, intermediate 172):
  llama GQA (kv 2, 3 layers, 2 threads), llama MHA with attention_bias and
  mlp_bias, rope_scaling linear, dynamic (prompt longer than
  max_position_embeddings, so the NTK update runs; then decode steps past it),
  llama3 (wavelengths in all three bands), mistral, qwen2 (q/k/v bias, tied
  embeddings, sharded with an index json); inputs_embeds and ids mixed with
  embedding rows; prefill in two parts and token by token vs one prefill
  (KV cache); greedy continuation of 16 tokens with a KV cache.
  Logits and every hidden state: max|c - ref| / max|ref| <= 1e-5.
Errors (one line, exit status 1): missing tensors (all named), unknown
model_type, unknown architecture, prompt longer than max_position_embeddings,
an id outside the vocabulary.
"""

import argparse
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
    print("%-58s %s %s" % (name, "ok  " if ok else "FAIL", detail))
    if not ok:
        failures.append(name)


def run(tool, args, expect_fail=False):
    p = subprocess.run([tool] + args, capture_output=True, text=True)
    if expect_fail:
        return p
    if p.returncode != 0:
        raise RuntimeError("llm_run failed: %s" % p.stderr.strip())
    return p


def compare(name, c, ref):
    r = rel(c, ref)
    check(name, r <= TOL, "rel %.2e" % r)


def compare_hidden(name, c, ref):
    rs = [rel(c[i], ref[i]) for i in range(ref.shape[0])]
    check(name + " hidden[0..%d]" % (ref.shape[0] - 1), c.shape == ref.shape and max(rs) <= TOL,
          "max rel %.2e" % max(rs))


class Case:
    def __init__(self, work, name, cfg, seed, n_shards=1):
        self.dir = os.path.join(work, name)
        self.name = name
        self.cfg = cfg
        self.sd = llama_ref.make_weights(cfg, seed)
        llama_ref.write_model(self.dir, cfg, self.sd, n_shards)

    def ref(self):
        return llama_ref.Model(self.cfg, self.sd)

    def path(self, f):
        return os.path.join(self.dir, f)


def prompt_case(tool, case, T, seed, threads=1, split=(), embeds=None, gen=0):
    """Full prefill of T random ids: all logits + hidden; optional splits."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, case.cfg["vocab_size"], (T,), generator=g)
    np.save(case.path("ids.npy"), ids.numpy().astype(np.int64))
    m = case.ref()
    with torch.no_grad():
        logits, hidden, _ = m.forward(m.embed(ids))
    args = ["--model", case.dir, "--ids", case.path("ids.npy"), "--all", "1",
            "--logits", case.path("logits.npy"), "--hidden", case.path("hidden.npy"),
            "--threads", str(threads)]
    run(tool, args)
    compare("%s T=%d logits" % (case.name, T), np.load(case.path("logits.npy")), logits.numpy())
    compare_hidden("%s T=%d" % (case.name, T), np.load(case.path("hidden.npy")), hidden.numpy())
    for k in split:
        run(tool, args + ["--split", str(k)])
        compare("%s prefill %d + %d decode steps logits" % (case.name, k, T - k),
                np.load(case.path("logits.npy")), logits.numpy())
        compare_hidden("%s prefill %d + %d decode steps" % (case.name, k, T - k),
                       np.load(case.path("hidden.npy")), hidden.numpy())
    # the last position's logits alone
    run(tool, ["--model", case.dir, "--ids", case.path("ids.npy"),
               "--logits", case.path("last.npy"), "--threads", str(threads)])
    compare("%s last-position logits" % case.name, np.load(case.path("last.npy")),
            logits[-1].numpy())
    if gen:
        with torch.no_grad():
            want = case.ref().greedy(case.ref().embed(ids), gen)
        run(tool, ["--model", case.dir, "--ids", case.path("ids.npy"), "--gen", str(gen),
                   "--gen-out", case.path("gen.npy"), "--threads", str(threads)])
        got = np.load(case.path("gen.npy")).tolist()
        check("%s greedy %d tokens" % (case.name, gen), got == want,
              "" if got == want else "got %s want %s" % (got, want))


def embeds_cases(tool, case, T, seed):
    g = torch.Generator().manual_seed(seed)
    H = case.cfg["hidden_size"]
    emb = torch.randn(T, H, generator=g)
    np.save(case.path("emb.npy"), emb.numpy())
    m = case.ref()
    with torch.no_grad():
        logits, hidden, _ = m.forward(emb)
    run(tool, ["--model", case.dir, "--embeds", case.path("emb.npy"), "--all", "1",
               "--logits", case.path("logits.npy"), "--hidden", case.path("hidden.npy")])
    compare("%s inputs_embeds logits" % case.name, np.load(case.path("logits.npy")),
            logits.numpy())
    compare_hidden("%s inputs_embeds" % case.name, np.load(case.path("hidden.npy")),
                   hidden.numpy())
    # ids with positions 3..8 replaced by given rows (image rows in an MLLM);
    # the ids there are out of range on purpose: they are not read
    ids = torch.randint(0, case.cfg["vocab_size"], (T,), generator=g)
    pos = torch.arange(3, 9)
    ids[pos] = -200
    rows = torch.randn(len(pos), H, generator=g)
    np.save(case.path("ids.npy"), ids.numpy().astype(np.int64))
    np.save(case.path("rows.npy"), rows.numpy())
    np.save(case.path("pos.npy"), pos.numpy().astype(np.int64))
    with torch.no_grad():
        logits, hidden, _ = m.forward(m.embed(ids, rows, pos))
    args = ["--model", case.dir, "--ids", case.path("ids.npy"), "--embeds", case.path("rows.npy"),
            "--embed-pos", case.path("pos.npy"), "--all", "1",
            "--logits", case.path("logits.npy"), "--hidden", case.path("hidden.npy")]
    run(tool, args)
    compare("%s ids + embedding rows logits" % case.name, np.load(case.path("logits.npy")),
            logits.numpy())
    compare_hidden("%s ids + embedding rows" % case.name, np.load(case.path("hidden.npy")),
                   hidden.numpy())
    run(tool, args + ["--split", "5"])  # the rows cross the prefill / decode boundary
    compare("%s ids + rows, prefill 5 + steps logits" % case.name,
            np.load(case.path("logits.npy")), logits.numpy())


def pack_case(tool, case, T, seed):
    """Linears packed at load (vt_llm_pack f32) give the same results; bf16 runs."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, case.cfg["vocab_size"], (T,), generator=g)
    np.save(case.path("ids.npy"), ids.numpy().astype(np.int64))
    m = case.ref()
    with torch.no_grad():
        logits, hidden, _ = m.forward(m.embed(ids))
    args = ["--model", case.dir, "--ids", case.path("ids.npy"), "--all", "1",
            "--logits", case.path("logits.npy"), "--hidden", case.path("hidden.npy"),
            "--split", "8", "--threads", "2"]
    run(tool, args + ["--dtype", "f32"])
    compare("%s packed f32 logits" % case.name, np.load(case.path("logits.npy")), logits.numpy())
    compare_hidden("%s packed f32" % case.name, np.load(case.path("hidden.npy")), hidden.numpy())
    run(tool, args + ["--dtype", "bf16"])
    r = rel(np.load(case.path("logits.npy")), logits.numpy())
    check("%s bf16 weights run (loose: rel < 5e-2)" % case.name, r < 5e-2, "rel %.2e" % r)


def error_cases(tool, work):
    def expect(name, args, words):
        p = run(tool, args, expect_fail=True)
        msg = p.stderr.strip()
        ok = p.returncode != 0 and msg.count("\n") == 0 and all(w in msg for w in words)
        check("error: " + name, ok, msg[:150])

    cfg = llama_ref.make_config(layers=2)
    c = Case(work, "err_missing", cfg, 50)
    sd = dict(c.sd)
    del sd["model.layers.1.mlp.up_proj.weight"]
    del sd["model.norm.weight"]
    llama_ref.write_model(c.dir, cfg, sd)
    np.save(c.path("ids.npy"), np.arange(5, dtype=np.int64))
    expect("missing tensors named", ["--model", c.dir, "--ids", c.path("ids.npy")],
           ["model.layers.1.mlp.up_proj.weight", "model.norm.weight", "2 tensors missing"])

    c = Case(work, "err_type", llama_ref.make_config(), 51)
    c.cfg["model_type"] = "gpt2"
    llama_ref.write_model(c.dir, c.cfg, c.sd)
    np.save(c.path("ids.npy"), np.arange(5, dtype=np.int64))
    expect("unknown model_type", ["--model", c.dir, "--ids", c.path("ids.npy")],
           ["model_type 'gpt2'"])
    c.cfg["model_type"] = "llama"
    c.cfg["architectures"] = ["LlamaForSequenceClassification"]
    llama_ref.write_model(c.dir, c.cfg, c.sd)
    expect("unknown architecture", ["--model", c.dir, "--ids", c.path("ids.npy")],
           ["LlamaForSequenceClassification"])
    c.cfg["architectures"] = ["LlamaForCausalLM"]
    c.cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 2.0}
    llama_ref.write_model(c.dir, c.cfg, c.sd)
    expect("unsupported rope_type", ["--model", c.dir, "--ids", c.path("ids.npy")],
           ["rope_type 'yarn'"])

    c = Case(work, "err_len", llama_ref.make_config(max_pos=16), 52)
    np.save(c.path("ids.npy"), np.arange(17, dtype=np.int64))
    expect("prompt longer than max_position_embeddings",
           ["--model", c.dir, "--ids", c.path("ids.npy")], ["17 tokens", "16 positions"])
    np.save(c.path("ids.npy"), np.arange(10, dtype=np.int64))
    expect("prompt + split past KV capacity",
           ["--model", c.dir, "--ids", c.path("ids.npy"), "--split", "4", "--ctx", "8"],
           ["KV capacity of 8"])
    np.save(c.path("bad.npy"), np.array([1, 2, 300, 4], dtype=np.int64))
    expect("id outside the vocabulary", ["--model", c.dir, "--ids", c.path("bad.npy")],
           ["token id 300", "[0, 300)"])
    np.save(c.path("bad.npy"), np.array([1, -1, 4], dtype=np.int64))
    expect("negative id", ["--model", c.dir, "--ids", c.path("bad.npy")], ["token id -1"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(1)
    cfg = llama_ref.make_config
    W = a.work

    gqa = Case(W, "llama_gqa", cfg(layers=3, kv_heads=2), 1)
    prompt_case(a.tool, gqa, 23, 100, threads=2, split=(9, 1), gen=16)
    embeds_cases(a.tool, gqa, 14, 101)
    pack_case(a.tool, gqa, 23, 110)

    mha = Case(W, "llama_mha_bias", cfg(kv_heads=4, attention_bias=True, mlp_bias=True), 2)
    prompt_case(a.tool, mha, 19, 102, split=(7,), gen=16)

    lin = Case(W, "rope_linear", cfg(rope_scaling={"type": "linear", "factor": 2.0},
                                     rope_theta=5000.0), 3)
    prompt_case(a.tool, lin, 20, 103)

    # dynamic: prompt 24 > max_position_embeddings 16 (the NTK update runs);
    # greedy decoding continues past it, recomputing inv_freq at each step
    dyn = Case(W, "rope_dynamic", cfg(max_pos=16, rope_scaling={"rope_type": "dynamic",
                                                                 "factor": 4.0}), 4)
    prompt_case(a.tool, dyn, 24, 104, gen=16)
    prompt_case(a.tool, dyn, 12, 105, gen=16)  # short prompt, decode crosses 16

    l3 = Case(W, "rope_llama3", cfg(max_pos=256, rope_theta=500000.0,
                                    rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                  "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 64}), 5)
    prompt_case(a.tool, l3, 21, 106, split=(10,), gen=16)

    mis = Case(W, "mistral", cfg("mistral", kv_heads=2, sliding_window=64), 6)
    prompt_case(a.tool, mis, 18, 107, gen=16)

    qw = Case(W, "qwen2_tied_sharded", cfg("qwen2", kv_heads=2, tie_word_embeddings=True), 7,
              n_shards=2)
    prompt_case(a.tool, qw, 17, 108, split=(6,), gen=16)
    embeds_cases(a.tool, qw, 12, 109)

    # The tolerance must see each rope variant: the reference without the
    # case's rope_scaling moves the logits by far more than TOL.
    for case, T in ((lin, 20), (dyn, 24), (l3, 21)):
        plain = dict(case.cfg)
        del plain["rope_scaling"]
        ids = torch.arange(T) % case.cfg["vocab_size"]
        with torch.no_grad():
            m0, m1 = llama_ref.Model(plain, case.sd), case.ref()
            d = rel(m0.forward(m0.embed(ids))[0].numpy(), m1.forward(m1.embed(ids))[0].numpy())
        check("sensitivity: %s vs default rope" % case.name, d > 10 * TOL, "rel %.2e" % d)

    error_cases(a.tool, W)

    if failures:
        print("FAILED: %d: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all llm parity checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
