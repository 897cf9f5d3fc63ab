#!/usr/bin/env python3
"""PyTorch reference of transformers' LLaMA-family decoders (LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM) for vtok's parity tests
(src/models/llama.c). transformers itself is not installable here, so this
follows its modeling code step by step with torch's own building blocks
(src/transformers/models/llama/modeling_llama.py and
src/transformers/modeling_rope_utils.py, read at commit 0044e3b):

  * LlamaRMSNorm: float32, x * rsqrt(mean(x^2) + eps), weight * that;
  * RoPE inv_freq per ROPE_INIT_FUNCTIONS (default, linear, dynamic, llama3),
    freqs = inv_freq @ positions (float32), cat(freqs, freqs), cos/sin times
    attention_scaling; rotate_half (halves); dynamic NTK state as
    LlamaRotaryEmbedding._dynamic_frequency_update;
  * attention: repeat_kv, q k^T / sqrt(head_dim) + causal mask (finfo.min),
    softmax in float32, @ v (the eager path);
  * MLP down(silu(gate(x)) * up(x)); hidden states as output_hidden_states.

Tiny random models are written as HF folders (config.json + safetensors,
optionally sharded) with the official tensor names.
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

DEFAULTS = {  # LlamaConfig / MistralConfig / Qwen2Config defaults used here
    "llama": {"attention_bias": False, "mlp_bias": False, "o_bias": False},
    "mistral": {"attention_bias": False, "mlp_bias": False, "o_bias": False},
    "qwen2": {"attention_bias": True, "mlp_bias": False, "o_bias": False},
}

ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
        "qwen2": "Qwen2ForCausalLM"}


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def biases(cfg):
    d = dict(DEFAULTS[cfg["model_type"]])
    if cfg["model_type"] == "llama":
        d["attention_bias"] = d["o_bias"] = bool(cfg.get("attention_bias", False))
        d["mlp_bias"] = bool(cfg.get("mlp_bias", False))
    return d


def rope_type(cfg):
    rs = cfg.get("rope_scaling")
    if not rs:
        return "default"
    return rs.get("rope_type", rs.get("type", "default"))


# ---- RoPE (modeling_rope_utils.py) ----

def _default_inv_freq(base, dim):
    # 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def inv_freq_init(cfg, seq_len=None):
    """(inv_freq, attention_factor) as rope_init_fn(config, device, seq_len)."""
    dim = head_dim(cfg)
    base = cfg.get("rope_theta", 10000.0)
    t = rope_type(cfg)
    rs = cfg.get("rope_scaling") or {}
    if t == "default":
        return _default_inv_freq(base, dim), 1.0
    if t == "linear":
        inv = _default_inv_freq(base, dim)
        inv /= rs["factor"]
        return inv, 1.0
    if t == "dynamic":
        mpe = cfg["max_position_embeddings"]
        factor = rs["factor"]
        seq_len = seq_len if seq_len is not None and seq_len > mpe else mpe
        base = base * ((factor * seq_len / mpe) - (factor - 1)) ** (dim / (dim - 2))
        return _default_inv_freq(base, dim), 1.0
    if t == "llama3":
        inv = _default_inv_freq(base, dim)
        factor = rs["factor"]
        low_ff, high_ff = rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl = old / low_ff
        high_wl = old / high_ff
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low_ff) / (high_ff - low_ff)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(medium, smoothed, inv_l), 1.0
    raise ValueError("rope type %s" % t)


class Rotary:
    """LlamaRotaryEmbedding with its dynamic state."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.type = rope_type(cfg)
        self.inv_freq, self.scaling = inv_freq_init(cfg)
        self.original = self.inv_freq
        self.cached = cfg["max_position_embeddings"]
        self.orig_max = cfg["max_position_embeddings"]

    def _dynamic_update(self, position_ids):
        """_dynamic_frequency_update: seq_len = torch.max(position_ids) + 1 over
        the whole tensor (every sequence of a batch, pads included)."""
        if self.type == "dynamic":
            seq_len = torch.max(position_ids) + 1  # a tensor: float32 math below
            if seq_len > self.cached:
                self.inv_freq, self.scaling = inv_freq_init(self.cfg, seq_len=seq_len)
                self.cached = seq_len
            if seq_len < self.orig_max and self.cached > self.orig_max:
                self.inv_freq = self.original
                self.cached = self.orig_max

    def batch(self, position_ids):
        """cos, sin [B, T, head_dim] for position_ids [B, T] (LlamaRotaryEmbedding.forward:
        inv_freq expanded over the batch @ position_ids, in float32)."""
        self._dynamic_update(position_ids)
        B = position_ids.shape[0]
        inv = self.inv_freq[None, :, None].float().expand(B, -1, 1)
        pos = position_ids[:, None, :].float()
        freqs = (inv @ pos).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.scaling, emb.sin() * self.scaling

    def __call__(self, position_ids):
        self._dynamic_update(position_ids)
        inv = self.inv_freq[None, :, None].float()
        pos = position_ids[None, None, :].float()
        freqs = (inv @ pos).transpose(1, 2)[0]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.scaling, emb.sin() * self.scaling


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x, w, eps):
    x = x.to(torch.float32)
    var = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(var + eps)
    return w * x


def linear(x, sd, name, bias):
    return F.linear(x, sd[name + ".weight"], sd[name + ".bias"] if bias else None)


class Model:
    def __init__(self, cfg, sd):
        self.cfg, self.sd = cfg, sd
        self.b = biases(cfg)
        self.rotary = Rotary(cfg)

    def embed(self, ids=None, embeds=None, embed_pos=None):
        if ids is None:
            return embeds.clone()
        e = self.sd["model.embed_tokens.weight"]
        x = torch.zeros(len(ids), e.shape[1])
        keep = torch.ones(len(ids), dtype=torch.bool)
        if embed_pos is not None:
            keep[embed_pos] = False
        x[keep] = e[ids[keep]]
        if embed_pos is not None:
            x[embed_pos] = embeds
        return x

    def forward(self, x, past=None):
        """x [T, hidden] new rows after `past` (list of (k, v) per layer or
        None). Returns logits [T, vocab], hidden states, new past."""
        cfg, sd, b = self.cfg, self.sd, self.b
        T = x.shape[0]
        p0 = 0 if past is None else past[0][0].shape[1]
        H, nh, nkv, dh = (cfg["hidden_size"], cfg["num_attention_heads"],
                          cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
                          head_dim(cfg))
        eps = cfg.get("rms_norm_eps", 1e-6)
        pos = torch.arange(p0, p0 + T)
        cos, sin = self.rotary(pos)
        mask = torch.full((T, p0 + T), torch.finfo(torch.float32).min)
        mask = torch.triu(mask, diagonal=p0 + 1)
        hidden = []
        new_past = []
        h = x
        L = cfg["num_hidden_layers"]
        for i in range(L):
            hidden.append(h)
            p = "model.layers.%d." % i
            xn = rms_norm(h, sd[p + "input_layernorm.weight"], eps)
            q = linear(xn, sd, p + "self_attn.q_proj", b["attention_bias"])
            k = linear(xn, sd, p + "self_attn.k_proj", b["attention_bias"])
            v = linear(xn, sd, p + "self_attn.v_proj", b["attention_bias"])
            q = q.view(T, nh, dh).transpose(0, 1)
            k = k.view(T, nkv, dh).transpose(0, 1)
            v = v.view(T, nkv, dh).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if past is not None:
                k = torch.cat((past[i][0], k), dim=1)
                v = torch.cat((past[i][1], v), dim=1)
            new_past.append((k, v))
            # repeat_kv: [kv, n_rep] -> consecutive query heads share one K/V head
            rep = nh // nkv
            kr = k[:, None].expand(nkv, rep, *k.shape[1:]).reshape(nh, -1, dh)
            vr = v[:, None].expand(nkv, rep, *v.shape[1:]).reshape(nh, -1, dh)
            w = torch.matmul(q, kr.transpose(1, 2)) / math.sqrt(dh)
            w = w + mask
            w = F.softmax(w, dim=-1, dtype=torch.float32)
            a = torch.matmul(w, vr).transpose(0, 1).reshape(T, nh * dh)
            h = h + linear(a, sd, p + "self_attn.o_proj", b["o_bias"])
            xn = rms_norm(h, sd[p + "post_attention_layernorm.weight"], eps)
            g = linear(xn, sd, p + "mlp.gate_proj", b["mlp_bias"])
            u = linear(xn, sd, p + "mlp.up_proj", b["mlp_bias"])
            h = h + linear(F.silu(g) * u, sd, p + "mlp.down_proj", b["mlp_bias"])
        h = rms_norm(h, sd["model.norm.weight"], eps)
        hidden.append(h)
        lm = sd["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else \
            sd["lm_head.weight"]
        return F.linear(h, lm), torch.stack(hidden), new_past

    def greedy(self, x, n):
        """n greedy tokens after rows x, with a KV cache as generate() does."""
        logits, _, past = self.forward(x)
        out = []
        for _ in range(n):
            t = int(torch.argmax(logits[-1]))
            out.append(t)
            if len(out) == n:
                break
            logits, _, past = self.forward(self.embed(torch.tensor([t])), past)
        return out


    # ---- left-padded batches (generate() with an attention_mask) ----

    def forward_batch(self, x, attention_mask, position_ids, past=None):
        """x [B, T, hidden] new rows, attention_mask [B, past + T] (1 real, 0 pad),
        position_ids [B, T], past as returned (per layer (k, v) [B, kv, past, dh]).
        LlamaModel.forward with the eager attention: the 4D mask of
        _prepare_4d_causal_attention_mask_with_cache_position (finfo.min where
        causal or padding masks; a row whose keys are all masked gets a uniform
        softmax over finfo.min scores: finite). Returns logits [B, T, vocab],
        hidden [L + 1, B, T, hidden], new past."""
        cfg, sd, b = self.cfg, self.sd, self.b
        B, T, _ = x.shape
        P = 0 if past is None else past[0][0].shape[2]
        nh, nkv, dh = (cfg["num_attention_heads"],
                       cfg.get("num_key_value_heads") or cfg["num_attention_heads"], head_dim(cfg))
        eps = cfg.get("rms_norm_eps", 1e-6)
        cos, sin = self.rotary.batch(position_ids)
        cos, sin = cos[:, None], sin[:, None]  # unsqueeze_dim=1
        mn = torch.finfo(torch.float32).min
        cache_position = torch.arange(P, P + T)
        target = attention_mask.shape[-1]
        causal = torch.full((T, target), mn)
        if T != 1:
            causal = torch.triu(causal, diagonal=1)
        causal *= torch.arange(target) > cache_position.reshape(-1, 1)
        causal = causal[None, None].expand(B, 1, -1, -1).clone()
        padding = (causal + attention_mask[:, None, None, :].to(causal.dtype)) == 0
        mask = causal.masked_fill(padding, mn)
        hidden, new_past, h = [], [], x
        for i in range(cfg["num_hidden_layers"]):
            hidden.append(h)
            p = "model.layers.%d." % i
            xn = rms_norm(h, sd[p + "input_layernorm.weight"], eps)
            q = linear(xn, sd, p + "self_attn.q_proj", b["attention_bias"])
            k = linear(xn, sd, p + "self_attn.k_proj", b["attention_bias"])
            v = linear(xn, sd, p + "self_attn.v_proj", b["attention_bias"])
            q = q.view(B, T, nh, dh).transpose(1, 2)
            k = k.view(B, T, nkv, dh).transpose(1, 2)
            v = v.view(B, T, nkv, dh).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if past is not None:
                k = torch.cat((past[i][0], k), dim=2)
                v = torch.cat((past[i][1], v), dim=2)
            new_past.append((k, v))
            rep = nh // nkv
            kr = k[:, :, None].expand(B, nkv, rep, *k.shape[2:]).reshape(B, nh, -1, dh)
            vr = v[:, :, None].expand(B, nkv, rep, *v.shape[2:]).reshape(B, nh, -1, dh)
            w = torch.matmul(q, kr.transpose(2, 3)) / math.sqrt(dh)
            w = w + mask
            w = F.softmax(w, dim=-1, dtype=torch.float32)
            a = torch.matmul(w, vr).transpose(1, 2).reshape(B, T, nh * dh)
            h = h + linear(a, sd, p + "self_attn.o_proj", b["o_bias"])
            xn = rms_norm(h, sd[p + "post_attention_layernorm.weight"], eps)
            g = linear(xn, sd, p + "mlp.gate_proj", b["mlp_bias"])
            u = linear(xn, sd, p + "mlp.up_proj", b["mlp_bias"])
            h = h + linear(F.silu(g) * u, sd, p + "mlp.down_proj", b["mlp_bias"])
        h = rms_norm(h, sd["model.norm.weight"], eps)
        hidden.append(h)
        lm = sd["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else \
            sd["lm_head.weight"]
        return F.linear(h, lm), torch.stack(hidden), new_past

    def generate_batch(self, rows, n, pad_id=0):
        """Greedy generate() of a left-padded batch: rows = one [n_i, hidden]
        tensor per sequence (inputs_embeds; ids through embed()). The prompt is
        left-padded to the longest with pad_id's embedding and attention_mask
        0; position_ids = attention_mask.cumsum(-1) - 1 with the pads set to 1
        (GenerationMixin.prepare_inputs_for_generation), the last column on
        each later step, the mask growing by a 1 per step.
        Returns (prefill logits [B, T, vocab], hidden, attention_mask, new ids [B][n])."""
        B, T = len(rows), max(r.shape[0] for r in rows)
        H = rows[0].shape[1]
        x = self.embed(torch.full((B * T,), pad_id)).view(B, T, H).clone()
        mask = torch.zeros(B, T, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, T - r.shape[0]:] = r
            mask[i, T - r.shape[0]:] = 1

        def positions(m):
            pos = m.long().cumsum(-1) - 1
            pos.masked_fill_(m == 0, 1)
            return pos

        logits, hidden, past = self.forward_batch(x, mask, positions(mask))
        prefill = logits
        out = [[] for _ in range(B)]
        for step in range(n):
            t = torch.argmax(logits[:, -1], dim=-1)
            for i in range(B):
                out[i].append(int(t[i]))
            if step + 1 == n:
                break
            mask = torch.cat((mask, torch.ones(B, 1, dtype=torch.long)), dim=1)
            logits, _, past = self.forward_batch(self.embed(t)[:, None], mask,
                                                 positions(mask)[:, -1:], past)
        return prefill, hidden, mask[:, :T], out


def make_config(model_type="llama", hidden=64, layers=2, heads=4, kv_heads=2, vocab=300,
                inter=172, max_pos=128, **extra):
    cfg = {"architectures": [ARCH[model_type]], "model_type": model_type,
           "hidden_size": hidden, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads,
           "vocab_size": vocab, "intermediate_size": inter,
           "max_position_embeddings": max_pos, "rms_norm_eps": 1e-6,
           "hidden_act": "silu", "torch_dtype": "float32"}
    cfg.update(extra)
    return cfg


def make_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    H, nh, dh = cfg["hidden_size"], cfg["num_attention_heads"], head_dim(cfg)
    nkv = cfg.get("num_key_value_heads") or nh
    I, V = cfg["intermediate_size"], cfg["vocab_size"]
    b = biases(cfg)

    def w(o, i):
        return torch.randn(o, i, generator=g) / math.sqrt(i)

    def vec(n, base=0.0, s=0.1):
        return base + s * torch.randn(n, generator=g)

    sd = {"model.embed_tokens.weight": torch.randn(V, H, generator=g)}
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        sd[p + "input_layernorm.weight"] = vec(H, 1.0)
        sd[p + "post_attention_layernorm.weight"] = vec(H, 1.0)
        for n, o, k, hb in (("self_attn.q_proj", nh * dh, H, b["attention_bias"]),
                            ("self_attn.k_proj", nkv * dh, H, b["attention_bias"]),
                            ("self_attn.v_proj", nkv * dh, H, b["attention_bias"]),
                            ("self_attn.o_proj", H, nh * dh, b["o_bias"]),
                            ("mlp.gate_proj", I, H, b["mlp_bias"]),
                            ("mlp.up_proj", I, H, b["mlp_bias"]),
                            ("mlp.down_proj", H, I, b["mlp_bias"])):
            sd[p + n + ".weight"] = w(o, k)
            if hb:
                sd[p + n + ".bias"] = vec(o)
    sd["model.norm.weight"] = vec(H, 1.0)
    if not cfg.get("tie_word_embeddings"):
        sd["lm_head.weight"] = w(V, H) * 4.0  # spread logits: greedy far from ties
    return sd


def write_model(folder, cfg, sd, n_shards=1):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    safetensors_io.write_model(folder, {k: v.contiguous() for k, v in sd.items()}, n_shards)
