#!/usr/bin/env python3
"""Parity of vtok's BERT text encoder (src/models/bert.c, the vtok_bert_* API)
with the PyTorch reference tests/ref/bert_ref.py, through tests/blocks/bert_run
and `vtok embed-text`.

    bert_parity.py --tool build/bert_run --cli build/vtok --work DIR [--node node]

Cases (tiny random BertModel folders, hidden 64, heads 4, intermediate 96,
vocab ~400 WordPiece tokens, 40 positions):
  unprefixed BertModel names in model.safetensors; "bert."-prefixed
  BertForPreTraining names (with the MLM head's tensors) in pytorch_model.bin,
  zip and legacy (pre-1.6) format, the legacy one with TF-style LayerNorm
  gamma / beta names (as bert-base/large-uncased are released);
  hidden_act gelu / gelu_new / relu, layer_norm_eps 1e-5 vs 1e-12; no pooler;
  2 threads; several texts (punctuation, accents, CJK, [MASK] in the text,
  unknown words, empty text = [CLS] [SEP]); ids given directly; a text longer
  than the context truncated as tokenizer(truncation=True, max_length=40);
  repeated encodes on one context (arena reuse); bf16 weights (loose).
  last_hidden_state, CLS, pooler and mean: max|c - ref| / max|ref| <= 1e-5.
Ids: equal to the Python port of the tokenizer, and to the `tokenizers`
library (Rust, through its Node binding in tests/text/node_modules) when it is
installed (`make npm-deps`); otherwise that cross-check is skipped, saying so.
Errors (one line, exit status 1): missing tensors (all named), a wrong shape
(named), a text longer than the context without truncation, a missing
tokenizer.json, pooler pooling without a pooler, unknown model_type,
unsupported position_embedding_type, ids outside the vocabulary.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import bert_ref  # noqa: E402

TOL = 1e-5
failures = []

TEXTS = [
    "Hello, world! What is in the image?",
    "How many people are there on the left side of the picture?",
    "Unaffable running cafés: déjà vu!!",
    "The \u4e2d\u6587 text [MASK] token, and the RED cat.",
    "qwxz zzyzx 12345 @#$ tab\there\nnewline snow\u2603man " + "x" * 120 + " ok",
    "",
]
LONG = " ".join(["which color is the dog on the mat"] * 12)


def rel(a, e):
    return float(np.max(np.abs(a - e)) / max(np.max(np.abs(e)), 1e-30))


def check(name, ok, detail=""):
    print("%-64s %s %s" % (name, "ok  " if ok else "FAIL", detail))
    if not ok:
        failures.append(name)


def compare(name, c, ref):
    ok = c.shape == ref.shape
    r = rel(c, ref) if ok else float("inf")
    check(name, ok and r <= TOL, "rel %.2e" % r if ok else "shape %s vs %s" % (c.shape,
                                                                                 ref.shape))


def run(args, expect_fail=False):
    p = subprocess.run(args, capture_output=True, text=True)
    if not expect_fail and p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (os.path.basename(args[0]), p.stderr.strip()))
    return p


class Case:
    def __init__(self, work, name, vocab, seed, prefix="", fmt="safetensors", pooler=True,
                 gamma_beta=False, **cfg_kw):
        self.dir = os.path.join(work, name)
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        self.name = name
        self.vocab = vocab
        self.cfg = bert_ref.make_config(len(vocab), **cfg_kw)
        self.sd = bert_ref.make_weights(self.cfg, seed, pooler=pooler)
        self.pooler = pooler
        bert_ref.write_model(self.dir, self.cfg, self.sd, prefix, fmt, gamma_beta)
        bert_ref.write_tokenizer(self.dir, vocab)
        self.out = os.path.join(self.dir, "out")
        os.makedirs(self.out, exist_ok=True)

    def path(self, f):
        return os.path.join(self.dir, f)


def text_case(tool, case, label, text, want_ids, extra=(), tol_name=None, loose=None):
    """Run bert_run on text; compare ids and every output with the reference."""
    with open(case.path("text.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    run([tool, "--model", case.dir, "--text-file", case.path("text.txt"), "--out", case.out]
        + list(extra))
    got = np.load(os.path.join(case.out, "ids.npy")).tolist()
    check("%s %s: ids (%d)" % (case.name, label, len(want_ids)), got == want_ids,
          "" if got == want_ids else "got %s want %s" % (got[:12], want_ids[:12]))
    if got != want_ids:
        return
    h, pooled = bert_ref.Model(case.cfg, case.sd).forward(want_ids)
    ref = bert_ref.poolings(h, pooled)
    outs = [("last_hidden_state", h.unsqueeze(0)), ("cls", ref["cls"]), ("mean", ref["mean"])]
    if case.pooler:
        outs.append(("pooler", ref["pooler"]))
    for n, e in outs:
        c = np.load(os.path.join(case.out, n + ".npy"))
        if loose:
            r = rel(c, e.numpy())
            check("%s %s: %s (loose: rel < %g)" % (case.name, label, n, loose), r < loose,
                  "rel %.2e" % r)
        else:
            compare("%s %s: %s" % (case.name, label, n), c, e.numpy())


def ids_case(tool, case, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(case.vocab), (17,), generator=g).tolist()
    np.save(case.path("ids.npy"), np.array(ids, dtype=np.int64))
    run([tool, "--model", case.dir, "--ids", case.path("ids.npy"), "--out", case.out,
         "--threads", "2"])
    h, pooled = bert_ref.Model(case.cfg, case.sd).forward(ids)
    compare("%s ids given: last_hidden_state" % case.name,
            np.load(os.path.join(case.out, "last_hidden_state.npy")), h.unsqueeze(0).numpy())
    if case.pooler:
        compare("%s ids given: pooler" % case.name,
                np.load(os.path.join(case.out, "pooler.npy")), pooled.numpy())
    # the whole context (T = max_position_embeddings)
    T = case.cfg["max_position_embeddings"]
    ids = torch.randint(0, len(case.vocab), (T,), generator=g).tolist()
    np.save(case.path("ids.npy"), np.array(ids, dtype=np.int64))
    run([tool, "--model", case.dir, "--ids", case.path("ids.npy"), "--out", case.out])
    h, _ = bert_ref.Model(case.cfg, case.sd).forward(ids)
    compare("%s ids, full context of %d" % (case.name, T),
            np.load(os.path.join(case.out, "last_hidden_state.npy")), h.unsqueeze(0).numpy())


def cli_cases(cli, case, text, want_ids):
    h, pooled = bert_ref.Model(case.cfg, case.sd).forward(want_ids)
    ref = bert_ref.poolings(h, pooled)
    for pool in ("cls", "pooler", "mean"):
        f = case.path("cli_%s.npy" % pool)
        run([cli, "embed-text", "--model", case.dir, "--text", text, "--pool", pool, "--out", f])
        compare("cli embed-text --pool %s --out" % pool, np.load(f), ref[pool].numpy())
    p = run([cli, "embed-text", "--model", case.dir, "--text", text, "--pool", "mean", "--json",
             "--hidden", case.path("cli_h.npy")])
    try:
        j = json.loads(p.stdout)
        ok = j["ids"] == want_ids and j["tokens"] == len(want_ids) and j["pooling"] == "mean"
        compare("cli embed-text --json embedding", np.array(j["embedding"], dtype=np.float32),
                ref["mean"].numpy())
    except (ValueError, KeyError) as e:
        ok = False
        print(e)
    check("cli embed-text --json ids/tokens/pooling", ok)
    compare("cli embed-text --hidden", np.load(case.path("cli_h.npy")), h.unsqueeze(0).numpy())
    p = run([cli, "embed-text", "--model", case.dir, "--text", text])
    vals = np.array([float(x) for x in p.stdout.split()], dtype=np.float32)
    compare("cli embed-text printed vector (cls)", vals, ref["cls"].numpy())


def rust_ids(node, work, vocab, texts):
    """ids from the tokenizers library (Node binding), or None if not installed."""
    nm = os.path.join(HERE, "..", "text", "node_modules", "tokenizers")
    if not os.path.isdir(nm) or not shutil.which(node):
        return None
    d = os.path.join(work, "rust_tok")
    bert_ref.write_tokenizer(d, vocab)
    corpus = os.path.join(d, "corpus.json")
    with open(corpus, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    p = run([node, os.path.join(HERE, "..", "text", "tok_ref_rust.mjs"), d, corpus])
    return [r["ids"] for r in json.loads(p.stdout)]


def error_cases(tool, cli, work, vocab):
    def expect(name, args, words, prog=None):
        p = run([prog or tool] + args, expect_fail=True)
        msg = p.stderr.strip()
        ok = p.returncode != 0 and msg.count("\n") == 0 and all(w in msg for w in words)
        check("error: " + name, ok, msg[:160])

    c = Case(work, "err_missing", vocab, 60, prefix="bert.")
    sd = dict(c.sd)
    del sd["encoder.layer.1.intermediate.dense.weight"]
    del sd["embeddings.LayerNorm.bias"]
    bert_ref.write_model(c.dir, c.cfg, sd, "bert.")
    with open(c.path("t.txt"), "w") as f:
        f.write("hello")
    base = ["--model", c.dir, "--text-file", c.path("t.txt"), "--out", c.out]
    expect("missing tensors named", base,
           ["bert.encoder.layer.1.intermediate.dense.weight", "bert.embeddings.LayerNorm.bias",
            "2 tensors missing"])
    sd = dict(c.sd)
    sd["encoder.layer.0.attention.self.key.weight"] = torch.zeros(64, 32)
    bert_ref.write_model(c.dir, c.cfg, sd)
    expect("wrong shape named", base, ["encoder.layer.0.attention.self.key.weight", "[64, 32]"])
    bert_ref.write_model(c.dir, c.cfg, c.sd)
    with open(c.path("t.txt"), "w") as f:
        f.write(LONG)
    expect("text longer than the context", base, ["max_position_embeddings", "40"])
    expect("text longer than the context (cli)",
           ["embed-text", "--model", c.dir, "--text", LONG], ["max_position_embeddings"], cli)
    np.save(c.path("bad_ids.npy"), np.array([2, len(vocab) + 5, 3], dtype=np.int64))
    expect("id outside the vocabulary",
           ["--model", c.dir, "--ids", c.path("bad_ids.npy"), "--out", c.out],
           ["outside the vocabulary"])
    os.remove(c.path("tokenizer.json"))
    expect("missing tokenizer.json", base, ["tokenizer.json"])
    bert_ref.write_tokenizer(c.dir, vocab)

    c = Case(work, "err_nopool", vocab, 61, pooler=False)
    expect("pooler pooling without a pooler",
           ["embed-text", "--model", c.dir, "--text", "hello", "--pool", "pooler"],
           ["no pooler"], cli)
    c.cfg["model_type"] = "roberta"
    bert_ref.write_model(c.dir, c.cfg, c.sd)
    expect("unknown model_type", ["embed-text", "--model", c.dir, "--text", "hi"],
           ["model_type 'roberta'"], cli)
    c.cfg["model_type"] = "bert"
    c.cfg["position_embedding_type"] = "relative_key"
    bert_ref.write_model(c.dir, c.cfg, c.sd)
    expect("unsupported position_embedding_type",
           ["embed-text", "--model", c.dir, "--text", "hi"], ["relative_key"], cli)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--node", default="node")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    vocab = bert_ref.make_vocab()

    py_ids = [bert_ref.encode(vocab, t) for t in TEXTS + [LONG]]
    rust = rust_ids(a.node, a.work, vocab, TEXTS + [LONG])
    if rust is None:
        print("(tokenizers not installed in tests/text/node_modules: `make npm-deps` to "
              "cross-check the Python tokenizer port; skipped)")
    else:
        for t, p, r in zip(TEXTS + [LONG], py_ids, rust):
            check("python tokenizer port == tokenizers: %r" % t[:30], p == r,
                  "" if p == r else "py %s rust %s" % (p, r))

    cases = [
        Case(a.work, "plain", vocab, 1),
        Case(a.work, "prefixed_bin", vocab, 2, prefix="bert.", fmt="bin_legacy",
             gamma_beta=True),
        Case(a.work, "gelu_new_eps", vocab, 3, prefix="bert.", fmt="bin", act="gelu_new",
             eps=1e-5, layers=3),
        Case(a.work, "relu_nopool", vocab, 4, act="relu", pooler=False),
    ]
    for c in cases:
        for i, t in enumerate(TEXTS):
            text_case(a.tool, c, "text %d" % i, t, py_ids[i],
                      extra=("--threads", "2") if i % 2 else ())
    c = cases[0]
    text_case(a.tool, c, "long text truncated", LONG,
              bert_ref.encode_truncated(vocab, LONG, c.cfg["max_position_embeddings"]),
              extra=("--truncate", "1"))
    text_case(a.tool, c, "repeated encodes", TEXTS[1], py_ids[1], extra=("--repeat", "3"))
    text_case(a.tool, cases[1], "bf16 weights", TEXTS[0], py_ids[0], extra=("--dtype", "bf16"),
              loose=5e-2)
    for c in cases[:2]:
        ids_case(a.tool, c, 7)
    cli_cases(a.cli, cases[1], TEXTS[0], py_ids[0])
    error_cases(a.tool, a.cli, a.work, vocab)

    if failures:
        print("%d FAILED: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
