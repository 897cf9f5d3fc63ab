"""A CLIP-format tokenizer.json made here (no CLIP tokenizer ships with the
npm packages), with the structure of openai/clip-vit-base-patch32's file:

  normalizer     Sequence[NFC, Replace(Regex \\s+ -> " "), Lowercase]
  pre_tokenizer  Sequence[Split(CLIP regex, Removed, invert), ByteLevel(no prefix space)]
  model          BPE, end_of_word_suffix "</w>", continuing_subword_prefix "",
                 unk_token <|endoftext|>
  post_processor RobertaProcessing(<|startoftext|> $A <|endoftext|>)
  decoder        ByteLevel

The vocabulary is CLIP's layout: the 256 byte-level characters, the same
with "</w>", the merged pieces, then <|startoftext|> and <|endoftext|>. The
merges are learned here by plain BPE training (most frequent pair first,
ties by first occurrence) over the words of the given strings, pre-tokenized
as CLIP does, so that real words merge into whole pieces.

Used by tests/text/check_tok.py (tokenizer parity) and
tests/ref/clip_text_ref.py (the tiny CLIP model's tokenizer).
"""
import collections
import re
import unicodedata

CLIP_RX = ("<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|"
           "[\\p{N}]|[^\\s\\p{L}\\p{N}]+")
CLIP_RX_PLAIN = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _words(strings):
    """Approximate CLIP pre-tokenization for training only (ASCII-ish
    classes through Python's re; the result only has to be plausible)."""
    b2u = bytes_to_unicode()
    pat = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.UNICODE)
    out = []
    for s in strings:
        s = re.sub(r"\s+", " ", unicodedata.normalize("NFC", s)).lower()
        for w in pat.findall(s):
            out.append("".join(b2u[b] for b in w.encode("utf-8")))
    return out


def learn_merges(counts, words, n_merges, mergeable=None):
    """Plain BPE training: n_merges times, merge the most frequent adjacent
    pair (ties: the pair seen first) in every word. counts: word -> count;
    words: word -> its symbols (updated in place); mergeable(a, b) may veto
    a pair. Returns the merges in order."""
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        first = {}
        for w, syms in words.items():
            for a, b in zip(syms, syms[1:]):
                if mergeable is None or mergeable(a, b):
                    pairs[(a, b)] += counts[w]
                    first.setdefault((a, b), len(first))
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], -first[p]))
        merges.append(best)
        a, b = best
        for w, syms in words.items():
            i, out = 0, []
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[w] = out
    return merges


def make_clip_tokenizer(strings, n_merges=400, literals=True, normalized=True):
    """(tokenizer.json dict, tokenizer_config.json dict)."""
    b2u = bytes_to_unicode()
    chars = [b2u[b] for b in range(256)]
    vocab = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    counts = collections.Counter(_words(strings))
    words = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in counts}
    merges = learn_merges(counts, words, n_merges)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    bos, eos = len(vocab), len(vocab) + 1
    vocab["<|startoftext|>"] = bos
    vocab["<|endoftext|>"] = eos
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": normalized, "special": True}
             for i, c in ((bos, "<|startoftext|>"), (eos, "<|endoftext|>"))]
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_RX if literals else CLIP_RX_PLAIN},
             "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False if not literals else True}]},
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eos],
                           "cls": ["<|startoftext|>", bos], "trim_offsets": False,
                           "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<|endoftext|>",
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": ["%s %s" % m for m in merges]},
    }
    cfg = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
           "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
           "model_max_length": 77, "do_lower_case": True, "errors": "replace",
           "add_prefix_space": False, "tokenizer_class": "CLIPTokenizer"}
    return tok, cfg
