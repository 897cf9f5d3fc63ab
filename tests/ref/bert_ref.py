"""PyTorch reference of Hugging Face BertModel and its WordPiece tokenizer, for
tests/blocks/bert_parity.py.

Model: follows transformers src/transformers/models/bert/modeling_bert.py
(functions named, since line numbers move):
  BertEmbeddings.forward   emb = word_embeddings(ids) + token_type_embeddings(0);
                           emb += position_embeddings(arange(T)); LayerNorm(eps)
  BertSelfAttention        scores = q k^T / math.sqrt(head_size); softmax; @ v
                           (eager path; no mask for one unpadded sequence)
  BertSelfOutput           LayerNorm(dense(ctx) + input)
  BertIntermediate         ACT2FN[hidden_act](dense(h))  (gelu = erf form,
                           gelu_new = tanh form, relu)
  BertOutput               LayerNorm(dense(x) + h)
  BertPooler               tanh(dense(h[:, 0]))
Tensor names are BertModel's ("embeddings.word_embeddings.weight", ...);
write_model can prefix them with "bert." as BertForPreTraining /
BertForMaskedLM checkpoints (bert-large-uncased as released) store them, and
adds that head's own tensors ("cls.predictions...") which an encoder ignores.

Tokenizer: write_tokenizer writes a tokenizer.json shaped like
bert-base-uncased's (BertNormalizer lowercase, BertPreTokenizer, WordPiece
"##", TemplateProcessing [CLS] $A [SEP], WordPiece decoder). encode() is a
Python port of what tokenizers (the Rust library) does with such a file:
normalizers/bert.rs (clean_text, handle_chinese_chars, strip_accents
following lowercase, lowercase), pre_tokenizers/bert.rs (split on
whitespace, isolate punctuation), models/wordpiece (greedy longest match
first, max_input_chars_per_word -> unk), added special tokens matched in the
raw text first, then the template.
"""

import json
import math
import os
import sys
import unicodedata

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# ---- model ----


def make_config(vocab_size, hidden=64, layers=2, heads=4, inter=96, max_pos=40, act="gelu",
                eps=1e-12, type_vocab=2):
    return {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab_size,
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": inter, "max_position_embeddings": max_pos,
            "hidden_act": act, "layer_norm_eps": eps, "type_vocab_size": type_vocab,
            "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "pad_token_id": 0}


def make_weights(cfg, seed, pooler=True):
    """Random BertModel state dict (unprefixed names), float32."""
    g = torch.Generator().manual_seed(seed)
    H, I = cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape, s=0.2):
        return (torch.randn(*shape, generator=g) * s).float()

    sd = {
        "embeddings.word_embeddings.weight": r(cfg["vocab_size"], H, s=1.0),
        "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], H, s=0.5),
        "embeddings.token_type_embeddings.weight": r(cfg["type_vocab_size"], H, s=0.5),
        "embeddings.LayerNorm.weight": 1.0 + r(H, s=0.1),
        "embeddings.LayerNorm.bias": r(H, s=0.1),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            sd[p + "attention.self.%s.weight" % n] = r(H, H, s=1.0 / math.sqrt(H))
            sd[p + "attention.self.%s.bias" % n] = r(H, s=0.1)
        sd[p + "attention.output.dense.weight"] = r(H, H, s=1.0 / math.sqrt(H))
        sd[p + "attention.output.dense.bias"] = r(H, s=0.1)
        sd[p + "attention.output.LayerNorm.weight"] = 1.0 + r(H, s=0.1)
        sd[p + "attention.output.LayerNorm.bias"] = r(H, s=0.1)
        sd[p + "intermediate.dense.weight"] = r(I, H, s=1.0 / math.sqrt(H))
        sd[p + "intermediate.dense.bias"] = r(I, s=0.1)
        sd[p + "output.dense.weight"] = r(H, I, s=1.0 / math.sqrt(I))
        sd[p + "output.dense.bias"] = r(H, s=0.1)
        sd[p + "output.LayerNorm.weight"] = 1.0 + r(H, s=0.1)
        sd[p + "output.LayerNorm.bias"] = r(H, s=0.1)
    if pooler:
        sd["pooler.dense.weight"] = r(H, H, s=1.0 / math.sqrt(H))
        sd["pooler.dense.bias"] = r(H, s=0.1)
    return sd


def write_model(folder, cfg, sd, prefix="", fmt="safetensors", gamma_beta=False):
    """config.json + weights. prefix "bert.": the pre-training checkpoint's
    layout, with its MLM head tensors added. fmt "bin": pytorch_model.bin
    (zip), "bin_legacy": the pre-1.6 torch format. gamma_beta: LayerNorm
    parameters named as in TF-converted checkpoints (bert-base-uncased's
    "LayerNorm.gamma" / "LayerNorm.beta"), which transformers renames at load."""
    os.makedirs(folder, exist_ok=True)
    for fn in ("model.safetensors", "pytorch_model.bin"):
        if os.path.exists(os.path.join(folder, fn)):
            os.remove(os.path.join(folder, fn))
    c = dict(cfg)
    def rename(k):
        if gamma_beta and ".LayerNorm." in k:
            return k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                            "LayerNorm.beta")
        return k

    t = {prefix + rename(k): v.contiguous() for k, v in sd.items()}
    if prefix:
        c["architectures"] = ["BertForPreTraining"]
        H = cfg["hidden_size"]
        t["cls.predictions.bias"] = torch.zeros(cfg["vocab_size"])
        t["cls.predictions.transform.dense.weight"] = torch.zeros(H, H)
        t["cls.predictions.transform.LayerNorm.weight"] = torch.ones(H)
        t["cls.seq_relationship.weight"] = torch.zeros(2, H)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    if fmt in ("bin", "bin_legacy"):
        torch.save(t, os.path.join(folder, "pytorch_model.bin"),
                   _use_new_zipfile_serialization=fmt == "bin")
    else:
        safetensors_io.write_file(os.path.join(folder, "model.safetensors"), t)


def _act(name, x):
    if name in ("gelu", "gelu_python"):
        return torch.nn.functional.gelu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return torch.nn.functional.gelu(x, approximate="tanh")
    if name == "relu":
        return torch.relu(x)
    raise ValueError(name)


class Model:
    def __init__(self, cfg, sd):
        self.c = cfg
        self.sd = sd

    def lin(self, x, name):
        return torch.nn.functional.linear(x, self.sd[name + ".weight"], self.sd[name + ".bias"])

    def ln(self, x, name):
        H = self.c["hidden_size"]
        return torch.nn.functional.layer_norm(x, (H,), self.sd[name + ".weight"],
                                              self.sd[name + ".bias"],
                                              self.c["layer_norm_eps"])

    @torch.no_grad()
    def forward(self, ids):
        """ids: list of ints -> (last_hidden_state [T, H], pooler [H] or None)."""
        c, sd = self.c, self.sd
        ids = torch.tensor(ids, dtype=torch.long)
        T, H, nh = len(ids), c["hidden_size"], c["num_attention_heads"]
        dh = H // nh
        emb = sd["embeddings.word_embeddings.weight"][ids]
        emb = emb + sd["embeddings.token_type_embeddings.weight"][torch.zeros(T, dtype=torch.long)]
        emb += sd["embeddings.position_embeddings.weight"][torch.arange(T)]
        h = self.ln(emb, "embeddings.LayerNorm")
        for i in range(c["num_hidden_layers"]):
            p = "encoder.layer.%d." % i
            q = self.lin(h, p + "attention.self.query").view(T, nh, dh).transpose(0, 1)
            k = self.lin(h, p + "attention.self.key").view(T, nh, dh).transpose(0, 1)
            v = self.lin(h, p + "attention.self.value").view(T, nh, dh).transpose(0, 1)
            s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)
            ctx = torch.matmul(torch.softmax(s, dim=-1), v).transpose(0, 1).reshape(T, H)
            h = self.ln(self.lin(ctx, p + "attention.output.dense") + h,
                        p + "attention.output.LayerNorm")
            x = _act(c["hidden_act"], self.lin(h, p + "intermediate.dense"))
            h = self.ln(self.lin(x, p + "output.dense") + h, p + "output.LayerNorm")
        pooled = None
        if "pooler.dense.weight" in sd:
            pooled = torch.tanh(self.lin(h[0], "pooler.dense"))
        return h, pooled


def poolings(h, pooled):
    """CLS, pooler, mean (sentence-transformers' mask-weighted mean, mask all ones)."""
    mask = torch.ones(h.shape[0], 1)
    mean = (h * mask).sum(0) / torch.clamp(mask.sum(0), min=1e-9)
    return {"cls": h[0], "pooler": pooled, "mean": mean}


# ---- tokenizer ----

WORDS = ["hello", "world", "what", "is", "in", "the", "image", "a", "cat", "dog", "on", "mat",
         "un", "run", "cafe", "deja", "vu", "question", "answer", "which", "color", "red",
         "blue", "green", "how", "many", "people", "are", "there", "picture", "of", "and",
         "to", "it", "this", "that", "photo", "left", "right", "side", "token", "model",
         "vision", "expert", "text", "encoder", "bert", "large", "uncased", "!", "?", ",", "."]
SUBWORDS = ["##aff", "##able", "##ning", "##s", "##ed", "##ing", "##er", "##ly", "##est",
            "##ion", "##ness", "##ful"]


def make_vocab():
    """A few hundred tokens: specials, characters, ## characters, words, subwords."""
    v = list(SPECIALS)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    for ch in chars + punct + ["\u4e2d", "\u6587", "\u00e9"]:
        if ch not in v:
            v.append(ch)
    for ch in chars:
        v.append("##" + ch)
    for w in WORDS + SUBWORDS:
        if w not in v:
            v.append(w)
    # fill with two-letter pieces so the vocabulary is a few hundred long
    for a in "aeiou":
        for b in "nrstlmdcgp":
            for p in (a + b, "##" + a + b):
                if p not in v:
                    v.append(p)
    return v


def tokenizer_json(vocab):
    ids = {t: i for i, t in enumerate(vocab)}
    added = [{"id": ids[t], "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for t in SPECIALS]
    cls, sep = ids["[CLS]"], ids["[SEP]"]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids},
    }


def write_tokenizer(folder, vocab):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(vocab), f, ensure_ascii=False, indent=1)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 512, "cls_token": "[CLS]",
                   "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
                   "mask_token": "[MASK]", "tokenizer_class": "BertTokenizer"}, f)


def _is_control(ch):
    # normalizers/bert.rs is_control: \t \n \r are whitespace, not control
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Co")


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or
            0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF or
            0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_punct(ch):
    return (ch.isascii() and not ch.isalnum() and ch.isprintable() and ch != " ") or \
        unicodedata.category(ch).startswith("P")


def _normalize(s):
    out = []
    for ch in s:  # clean_text
        if ch == "\0" or ch == "\ufffd" or _is_control(ch):
            continue
        out.append(" " if _is_whitespace(ch) else ch)
    s = "".join(out)
    s = "".join(" %s " % ch if _is_chinese(ord(ch)) else ch for ch in s)
    # strip_accents None follows lowercase: NFD, drop nonspacing marks, lower
    s = "".join(ch for ch in unicodedata.normalize("NFD", s) if unicodedata.category(ch) != "Mn")
    return s.lower()


def _pretok(s):
    words, cur = [], ""
    for ch in s:
        if _is_whitespace(ch):
            if cur:
                words.append(cur)
            cur = ""
        elif _is_punct(ch):
            if cur:
                words.append(cur)
            words.append(ch)
            cur = ""
        else:
            cur += ch
    if cur:
        words.append(cur)
    return words


def _wordpiece(word, ids, unk, max_chars=100):
    if len(word) > max_chars:
        return [unk]
    out, start = [], 0
    while start < len(word):
        end, cur = len(word), None
        while start < end:
            sub = word[start:end]
            if start > 0:
                sub = "##" + sub
            if sub in ids:
                cur = ids[sub]
                break
            end -= 1
        if cur is None:
            return [unk]
        out.append(cur)
        start = end
    return out


def encode(vocab, text, add_special=True):
    """ids of text as tokenizers gives them for tokenizer_json(vocab)."""
    ids = {t: i for i, t in enumerate(vocab)}
    unk = ids["[UNK]"]
    body, i, seg = [], 0, ""

    def flush(seg):
        for w in _pretok(_normalize(seg)):
            body.extend(_wordpiece(w, ids, unk))

    while i < len(text):
        hit = next((t for t in SPECIALS if text.startswith(t, i)), None)
        if hit:
            flush(seg)
            seg = ""
            body.append(ids[hit])
            i += len(hit)
        else:
            seg += text[i]
            i += 1
    flush(seg)
    if add_special:
        return [ids["[CLS]"]] + body + [ids["[SEP]"]]
    return body


def encode_truncated(vocab, text, max_len):
    """tokenizer(text, truncation=True, max_length=max_len): the text's ids cut
    from the right so that with [CLS] and [SEP] there are max_len."""
    body = encode(vocab, text, add_special=False)[:max_len - 2]
    ids = {t: i for i, t in enumerate(vocab)}
    return [ids["[CLS]"]] + body + [ids["[SEP]"]]
