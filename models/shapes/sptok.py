"""A SentencePiece-style BPE tokenizer trained here, written as the
tokenizer.json that LLaMA-2 / Mistral releases ship (and that vtok reads):

  normalizer     Sequence[Prepend("\u2581"), Replace(" " -> "\u2581")]
  pre_tokenizer  null
  model          BPE, byte_fallback, fuse_unk, unk "<unk>"
  post_processor TemplateProcessing: "<s>" $A
  decoder        Sequence[Replace("\u2581" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0)]
  vocabulary     <unk> <s> </s>, <0x00>..<0xFF>, then pieces (Mistral's order)

Merges are learned by plain BPE (most frequent pair first, ties by first
occurrence) inside "words" that start at each U+2581, so no merge ever spans
two words; characters outside the base alphabet (newline, anything not
printable ASCII) stay out of the merges and encode as byte-fallback tokens.

encode() follows Hugging Face `tokenizers` for such a file: the added tokens
split the text first; each remaining segment is normalized on its own
(Prepend on a non-empty segment), then merged by lowest rank.
"""
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "text"))
from clip_tok import learn_merges  # noqa: E402

SP = "\u2581"
SPECIAL = ["<unk>", "<s>", "</s>"]
ALPHABET = [chr(c) for c in range(0x20, 0x7F) if chr(c) != " "]


def _normalize(seg):
    return SP + seg.replace(" ", SP) if seg else ""


def _words(norm):
    out, cur = [], ""
    for ch in norm:
        if ch == SP and cur:
            out.append(cur)
            cur = ""
        cur += ch
    if cur:
        out.append(cur)
    return out


def _segments(text):
    """Split on the added tokens: [(is_special, piece)]."""
    out, i, start = [], 0, 0
    while i < len(text):
        hit = next((s for s in SPECIAL if text.startswith(s, i)), None)
        if hit:
            if i > start:
                out.append((False, text[start:i]))
            out.append((True, hit))
            i += len(hit)
            start = i
        else:
            i += 1
    if start < len(text):
        out.append((False, text[start:]))
    return out


class SPTokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.inv = {i: p for p, i in vocab.items()}
        self.rank = {tuple(m): r for r, m in enumerate(merges)}
        self.merges = merges

    @classmethod
    def train(cls, texts, n_merges):
        counts = collections.Counter()
        for t in texts:
            for special, seg in _segments(t):
                if not special:
                    counts.update(_words(_normalize(seg)))
        base = set(ALPHABET) | {SP}
        words = {w: list(w) for w in counts}
        merges = learn_merges(counts, words, n_merges,
                              lambda a, b: all(ch in base for ch in a + b))
        vocab = {s: i for i, s in enumerate(SPECIAL)}
        for b in range(256):
            vocab["<0x%02X>" % b] = len(vocab)
        for ch in [SP] + ALPHABET:
            vocab.setdefault(ch, len(vocab))
        for a, b in merges:
            vocab.setdefault(a + b, len(vocab))
        return cls(vocab, merges)

    def _bpe(self, word):
        syms = list(word)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.rank.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        ids = []
        for s in syms:
            if s in self.vocab:
                ids.append(self.vocab[s])
            else:  # byte fallback
                ids.extend(self.vocab["<0x%02X>" % b] for b in s.encode("utf-8"))
        return ids

    def encode(self, text, bos=True):
        ids = [self.vocab["<s>"]] if bos else []
        for special, seg in _segments(text):
            if special:
                ids.append(self.vocab[seg])
            else:
                for w in _words(_normalize(seg)):
                    ids.extend(self._bpe(w))
        return ids

    def decode(self, ids):
        out, pend = [], b""
        for i in ids:
            p = self.inv[i]
            if p in SPECIAL:
                continue
            if p.startswith("<0x") and len(p) == 6:
                pend += bytes([int(p[3:5], 16)])
                continue
            if pend:
                out.append(pend.decode("utf-8", "replace"))
                pend = b""
            out.append(p.replace(SP, " "))
        if pend:
            out.append(pend.decode("utf-8", "replace"))
        s = "".join(out)
        return s[1:] if s.startswith(" ") else s

    def tokenizer_json(self):
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, s in enumerate(SPECIAL)]
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": SP},
                {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
            "pre_tokenizer": None,
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                        {"Sequence": {"id": "B", "type_id": 1}}],
                               "special_tokens": {"<s>": {"id": "<s>", "ids": [1],
                                                          "tokens": ["<s>"]}}},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": SP}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                      "vocab": self.vocab, "merges": ["%s %s" % m for m in self.merges]},
        }

    @staticmethod
    def tokenizer_config():
        return {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
                "clean_up_tokenization_spaces": False, "legacy": False,
                "model_max_length": 512, "tokenizer_class": "LlamaTokenizer",
                "padding_side": "right"}
