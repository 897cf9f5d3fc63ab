#!/usr/bin/python3
"""CLIP text tower + zero-shot parity: vtok (tests/blocks/clip_text_run and
`vtok zeroshot`) vs the PyTorch reference tests/ref/clip_text_ref.py on a
tiny random CLIPModel folder with a CLIP-format tokenizer.json.

  - ids: equal to Hugging Face tokenizers' (Rust, tests/text/tok_ref_rust.mjs)
    when node and the npm packages are there, else to the ids vtok printed
    (then only the float checks bind);
  - last_hidden_state, pooler_output, text_embeds (get_text_features) of each
    text within max|a-e|/max|e| <= 1e-5; EOS position as the reference;
  - `vtok zeroshot --json`: label probabilities = softmax of
    logits_per_image within 1e-5 (image features from `vtok preprocess`
    pixels), sorted highest first;
  - bad input: a text over 77 tokens is refused unless --truncate (then the
    ids are HF truncation's), a missing text_model tensor is named, a
    vision-only folder says "no text tower".

  clip_text_parity.py --tool build/clip_text_run --vtok build/vtok --work DIR [--node node]
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
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import clip_text_ref as ref  # noqa: E402
import safetensors_io  # noqa: E402

TEXTS = ["a photo of a cat", "A Photo of a DOG!", "", "two  cats\tsleeping\non a sofa",
         "don't panic: it's 42", "an astronaut riding a horse on the moon",
         "x<|endoftext|>y", "\u00e9t\u00e9 \u00e0 Z\u00fcrich \u03a3\u0391\u03a3 \U0001F600",
         "zzzzqqqq unknown words everywhere"]
LONG = " ".join(["cat"] * 90)
FAILS = []


def check(name, ok, detail=""):
    print("%-52s %s%s" % (name, "ok" if ok else "FAIL", (" " + detail) if detail else ""))
    if not ok:
        FAILS.append(name)


def rel(a, e):
    a = np.asarray(a, np.float64)
    e = np.asarray(e, np.float64)
    if a.shape != e.shape:
        return float("inf")
    return float(np.max(np.abs(a - e)) / max(np.max(np.abs(e)), 1e-30))


def run(cmd, expect_ok=True):
    p = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8")
    if expect_ok and p.returncode != 0:
        sys.exit("FAIL: %s exited %d:\n%s" % (" ".join(cmd), p.returncode, p.stderr[-2000:]))
    return p


def rust_ids(node, model, texts, work):
    """tokenizers' ids with special tokens, or None without node / npm deps."""
    nm = os.path.join(ROOT, "tests", "text", "node_modules", "tokenizers")
    if not node or not os.path.isdir(nm):
        return None
    corpus = os.path.join(work, "texts_rust.json")
    with open(corpus, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    p = run([node, os.path.join(ROOT, "tests", "text", "tok_ref_rust.mjs"), model, corpus])
    return [r["ids"] for r in json.loads(p.stdout)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--node", default=shutil.which("node"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(1)
    for act in ("quick_gelu", "gelu"):
        model = os.path.join(a.work, "clip-" + act)
        m = ref.make_model(model, seed=1 if act == "gelu" else 0, act=act)
        out = os.path.join(a.work, "out-" + act)
        os.makedirs(out, exist_ok=True)
        texts_path = os.path.join(a.work, "texts.json")
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(TEXTS, f)
        got = json.loads(run([a.tool, model, texts_path, out]).stdout)
        rids = rust_ids(a.node, model, TEXTS, a.work)
        if rids is None:
            print("(node / tests/text npm packages missing: ids checked against vtok's own)")
        for i, (s, g) in enumerate(zip(TEXTS, got)):
            if "error" in g:
                check("%s text %d runs" % (act, i), False, g["error"])
                continue
            ids = g["ids"]
            if rids is not None:
                check("%s text %d ids = tokenizers" % (act, i), ids == rids[i],
                      "" if ids == rids[i] else "%s vs %s" % (ids, rids[i]))
            t = torch.tensor(ids)[None]
            with torch.no_grad():
                last, pooled, emb = m.get_text_features(t)
            r = max(rel(np.load(os.path.join(out, "last_%d.npy" % i)), last[0]),
                    rel(np.load(os.path.join(out, "pooled_%d.npy" % i)), pooled[0]),
                    rel(np.load(os.path.join(out, "embeds_%d.npy" % i)), emb[0]))
            eos = ids.index(m.text_model.eos_token_id)
            check("%s text %d features (eos at %d)" % (act, i, eos),
                  r <= 1e-5 and g["eos_pos"] == eos, "rel %.2e" % r)

        # zero-shot through the CLI
        img = os.path.join(ROOT, "models", "sample.jpg")
        px_path = os.path.join(a.work, "px.npy")
        run([a.vtok, "preprocess", "--model", model, img, "--out", px_path])
        px = torch.from_numpy(np.load(px_path))
        labels = ["a cat", "a dog", "a bird on a tree", "a red car"]
        tmpl = "a photo of {}"
        p = run([a.vtok, "zeroshot", "--model", model, "--image", img, "--labels",
                 ",".join(labels), "--template", tmpl, "--json", "--threads", "2"])
        res = json.loads(p.stdout)["labels"]
        ids = [torch.tensor(m.text_model and json.loads(run(
            [a.tool, model, write(a.work, [tmpl.replace("{}", l)]), out]).stdout)[0]["ids"])
            for l in labels]
        with torch.no_grad():
            probs = torch.softmax(m.logits_per_image(px, ids)[0], dim=-1).numpy()
        order = sorted(range(len(labels)), key=lambda k: -probs[k])
        got_p = {r_["label"]: r_["prob"] for r_ in res}
        e = max(abs(got_p[labels[k]] - probs[k]) for k in range(len(labels)))
        check("%s zeroshot probabilities" % act, e <= 1e-5, "max abs diff %.2e" % e)
        check("%s zeroshot order" % act, [r_["label"] for r_ in res] == [labels[k] for k in order])

    model = os.path.join(a.work, "clip-quick_gelu")
    # too long: refused by default, HF truncation with --truncate
    lp = write(a.work, [LONG])
    g = json.loads(run([a.tool, model, lp, out]).stdout)[0]
    check("long text refused", "error" in g and "77" in g.get("error", ""), g.get("error", ""))
    g = json.loads(run([a.tool, model, lp, out, "--truncate"]).stdout)[0]
    full = json.loads(run([a.tool, model, write(a.work, [" ".join(["cat"] * 10)]), out]).stdout)[0]
    cat = full["ids"][1]
    want = [full["ids"][0]] + [cat] * 75 + [full["ids"][-1]]
    check("long text --truncate = HF truncation", g.get("ids") == want)
    p = run([a.vtok, "zeroshot", "--model", model, "--image",
             os.path.join(ROOT, "models", "sample.jpg"), "--labels", LONG], expect_ok=False)
    check("zeroshot long label: one-line error", p.returncode != 0 and "77" in p.stderr
          and p.stderr.count("\n") == 1, p.stderr.strip())
    # a missing text tensor is named
    bad = os.path.join(a.work, "clip-missing")
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(model, bad)
    t = safetensors_io.read_model(bad)
    t = {k: torch.from_numpy(np.array(v)) if not torch.is_tensor(v) else v for k, v in t.items()}
    del t["text_model.encoder.layers.1.mlp.fc2.weight"]
    safetensors_io.write_model(bad, t)
    p = run([a.tool, bad, lp, out], expect_ok=False)
    check("missing text tensor named", p.returncode != 0 and
          "text_model.encoder.layers.1.mlp.fc2.weight" in p.stderr, p.stderr.strip())
    # a vision-only folder
    p = run([a.vtok, "zeroshot", "--model", os.path.join(ROOT, "models", "tiny-clip"), "--image",
             os.path.join(ROOT, "models", "sample.jpg"), "--labels", "a,b"], expect_ok=False)
    check("vision-only folder: no text tower", p.returncode != 0 and "no text tower" in p.stderr,
          p.stderr.strip())
    if FAILS:
        sys.exit("FAIL: %d checks: %s" % (len(FAILS), ", ".join(FAILS[:8])))
    print("clip text parity: ok")


def write(work, texts):
    p = os.path.join(work, "texts_%d.json" % (abs(hash(tuple(texts))) % 100000))
    with open(p, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    return p


if __name__ == "__main__":
    main()
