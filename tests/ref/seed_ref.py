#!/usr/bin/env python3
"""PyTorch reference for SEED's tokenizer connectors (vtok parity tests).

Written from the semantics of AILab-CVC/SEED branch v1 (models/Qformer_casual.py,
models/visual_tokenizer.py, models/quantize_semantic.py, models/vit.py), with
the official module names so that state_dict() keys are those of the released
causal_qformer.pth / seed_tokenizer.pth:

    ln_vision.*, query_tokens, Qformer.bert.embeddings.{LayerNorm.*, position_ids},
    Qformer.bert.encoder.layer.N.{attention, crossattention (N % freq == 0)}.
        {self.{query,key,value}, output.{dense, LayerNorm}}.*,
    Qformer.bert.encoder.layer.N.{intermediate_query.dense, output_query.{dense, LayerNorm}}.*,
    encode_task_layer.{0,2}.*, quantize.embedding.weight, decode_task_layer.{0,2}.*,
    pos_embed_text, blocks_text.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*,
    reverse_tokens, Reverse_Qformer.bert.*, distill_text_proj.*

Only the query path of the Q-Former exists (SEED sets the text-branch
`intermediate` / `output`, word/position embeddings and `cls` to None).
Dropout is identity (eval). The causal mask is built as BertModel does it:
extended = (1 - tril(ones)) * -10000, added to scores / sqrt(dh).

make_tiny(...) builds a tiny random model whose weight scales make a wrong
LayerNorm eps, GELU variant or mask visible (see _init_sensitive), and
save(model, path) writes it as torch.save({"model": state_dict}) like the
released files.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- BERT layers

class Cfg:
    """The BertConfig fields the Q-Former uses (bert-base-uncased defaults)."""

    def __init__(self, **kw):
        self.hidden_size = 768
        self.num_attention_heads = 12
        self.intermediate_size = 3072
        self.layer_norm_eps = 1e-12
        self.hidden_act = "gelu"
        self.encoder_width = 1408
        self.cross_attention_freq = 2
        self.num_hidden_layers = 12
        self.max_position_embeddings = 512
        for k, v in kw.items():
            setattr(self, k, v)


def act_fn(name):
    if name == "gelu":
        return lambda x: F.gelu(x)                      # erf form (ACT2FN["gelu"])
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    raise ValueError(name)


class BertSelfAttention(nn.Module):
    def __init__(self, c, is_cross):
        super().__init__()
        self.h = c.num_attention_heads
        self.dh = c.hidden_size // c.num_attention_heads
        kv_in = c.encoder_width if is_cross else c.hidden_size
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(kv_in, c.hidden_size)
        self.value = nn.Linear(kv_in, c.hidden_size)

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dh).permute(0, 2, 1, 3)

    def forward(self, h, mask=None, enc=None):
        src = h if enc is None else enc
        k = self.split(self.key(src))
        v = self.split(self.value(src))
        q = self.split(self.query(h))
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
        if mask is not None:
            s = s + mask
        p = nn.Softmax(dim=-1)(s)
        ctx = torch.matmul(p, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.shape[0], ctx.shape[1], -1)


class BertSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x, res):
        return self.LayerNorm(self.dense(x) + res)


class BertAttention(nn.Module):
    def __init__(self, c, is_cross=False):
        super().__init__()
        self.self = BertSelfAttention(c, is_cross)
        self.output = BertSelfOutput(c)

    def forward(self, h, mask=None, enc=None):
        return self.output(self.self(h, mask, enc), h)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = act_fn(c.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x, res):
        return self.LayerNorm(self.dense(x) + res)


class BertLayer(nn.Module):
    def __init__(self, c, i):
        super().__init__()
        self.attention = BertAttention(c)
        self.has_cross = i % c.cross_attention_freq == 0
        if self.has_cross:
            self.crossattention = BertAttention(c, is_cross=True)
        self.intermediate_query = BertIntermediate(c)
        self.output_query = BertOutput(c)

    def forward(self, h, mask, enc):
        h = self.attention(h, mask)
        if self.has_cross:
            # encoder mask = all ones -> (1 - 1) * -10000 = 0: no mask
            h = self.crossattention(h, None, enc)
        return self.output_query(self.intermediate_query(h), h)


class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        # a persistent int64 buffer in the released files; the C loader must skip it
        self.register_buffer("position_ids",
                             torch.arange(c.max_position_embeddings).expand((1, -1)))

    def forward(self, query_embeds):
        return self.LayerNorm(query_embeds)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c, i) for i in range(c.num_hidden_layers)])


class BertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)

    def forward(self, query_embeds, enc, causal):
        h = self.embeddings(query_embeds)
        b, t, _ = h.shape
        mask = None
        if causal:
            # get_extended_attention_mask with is_casual: lower-triangular ones,
            # then (1 - m) * -10000, broadcast over heads
            ids = torch.arange(t)
            m = (ids[None, None, :].repeat(b, t, 1) <= ids[None, :, None]).to(h.dtype)
            mask = (1.0 - m[:, None, :, :]) * -10000.0
        for layer in self.encoder.layer:
            h = layer(h, mask, enc)
        return h


class BertLMHeadModel(nn.Module):
    """Only .bert survives in SEED (cls = None)."""

    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c)


# ------------------------------------------------------------- timm ViT block

class Mlp(nn.Module):
    def __init__(self, d, hidden, act):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.scale = (d // heads) ** -0.5
        self.qkv = nn.Linear(d, 3 * d, bias=True)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, d, heads, mlp_ratio=4.0, eps=1e-6, act="gelu"):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, heads)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, int(d * mlp_ratio), act_fn(act))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# ------------------------------------------------------------------ quantizer

class VectorQuantizer2(nn.Module):
    """legacy=True, remap=None: plain squared-L2 argmin, no normalisation."""

    def __init__(self, n_e, e_dim):
        super().__init__()
        self.n_e, self.e_dim = n_e, e_dim
        self.embedding = nn.Embedding(n_e, e_dim)

    def forward(self, z):
        zf = z.reshape(-1, self.e_dim)
        w = self.embedding.weight
        d = torch.sum(zf ** 2, dim=1, keepdim=True) + torch.sum(w ** 2, dim=1) - \
            2 * torch.einsum('bd,dn->bn', zf, w.t())
        idx = torch.argmin(d, dim=1)
        return self.embedding(idx).view(z.shape), idx.view(z.shape[:-1])


# -------------------------------------------------------------- the tokenizer

class SEEDTokenizerRef(nn.Module):
    """SEEDVisualTokenizer without the ViT: ln_vision -> causal Q-Former ->
    encode_task_layer -> quantize; ids -> decode_task_layer -> blocks_text ->
    Reverse Q-Former -> distill_text_proj."""

    def __init__(self, qcfg, rcfg, n_query=32, n_reverse=77, e_dim=32, n_embed=8192,
                 depth=4, block_heads=12, mlp_ratio=4.0, block_eps=1e-6, proj_dim=768,
                 causal=None, reverse_causal=None, block_act="gelu", ln_vision_eps=1e-5):
        super().__init__()
        d = qcfg.hidden_size
        self.ln_vision = nn.LayerNorm(qcfg.encoder_width, eps=ln_vision_eps)
        self.Qformer = BertLMHeadModel(qcfg)
        self.query_tokens = nn.Parameter(torch.zeros(1, n_query, d))
        self.quantize = VectorQuantizer2(n_embed, e_dim)
        self.encode_task_layer = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, e_dim))
        self.decode_task_layer = nn.Sequential(nn.Linear(e_dim, e_dim), nn.Tanh(),
                                               nn.Linear(e_dim, d))
        self.pos_embed_text = nn.Parameter(torch.zeros(1, n_query, d))
        self.blocks_text = nn.ModuleList([Block(d, block_heads, mlp_ratio, block_eps, block_act)
                                          for _ in range(depth)])
        self.Reverse_Qformer = BertLMHeadModel(rcfg)
        self.reverse_tokens = nn.Parameter(torch.zeros(1, n_reverse, rcfg.hidden_size))
        self.distill_text_proj = nn.Linear(rcfg.hidden_size, proj_dim)
        # BertModel.forward: is_casual = query_embeds.shape[1] == 32
        self.causal = (n_query == 32) if causal is None else causal
        self.reverse_causal = (n_reverse == 32) if reverse_causal is None else reverse_causal

    def qformer(self, image_embeds, ln_vision=True):
        x = self.ln_vision(image_embeds) if ln_vision else image_embeds
        q = self.query_tokens.expand(x.shape[0], -1, -1)
        return self.Qformer.bert(q, x, self.causal)

    def encode(self, causal_embeds):
        return self.quantize(self.encode_task_layer(causal_embeds))[1]

    def argmin(self, z):
        return self.quantize(z)[1]

    def detok(self, ids):
        quant = self.quantize.embedding(ids)
        u = self.decode_task_layer(quant) + self.pos_embed_text.repeat(ids.shape[0], 1, 1)
        for blk in self.blocks_text:
            u = blk(u)
        r = self.Reverse_Qformer.bert(self.reverse_tokens.expand(ids.shape[0], -1, -1), u,
                                      self.reverse_causal)
        return self.distill_text_proj(r)


# ------------------------------------------------------------------ tiny models

def _linear(l, in_scale, out_scale, g):
    """Weights so that inputs of size ~in_scale give outputs of size ~out_scale."""
    std = out_scale / (in_scale * math.sqrt(l.in_features))
    l.weight.data = torch.randn(l.weight.shape, generator=g) * std
    if l.bias is not None:
        l.bias.data = torch.randn(l.bias.shape, generator=g) * out_scale * 0.3


def _norm(n, scale, g):
    n.weight.data = scale * (0.5 + torch.rand(n.weight.shape, generator=g))
    n.bias.data = scale * 0.3 * torch.randn(n.bias.shape, generator=g)


R = 1e-2   # residual-stream size: LayerNorm inputs have variance ~1e-4, so eps matters


def _init_bert(bert, g):
    """Post-LN BERT: every LayerNorm output (the residual) ~R; attention
    logits O(1); FFN pre-activations ~2 (GELU variants differ there)."""
    _norm(bert.embeddings.LayerNorm, R, g)
    for layer in bert.encoder.layer:
        atts = [(layer.attention, R)]
        if layer.has_cross:
            atts.append((layer.crossattention, None))
        for att, kv_scale in atts:
            s = att.self
            _linear(s.query, R, 1.0, g)
            _linear(s.key, kv_scale or R, 1.0, g)
            _linear(s.value, kv_scale or R, R, g)
            _linear(att.output.dense, R, R, g)
            _norm(att.output.LayerNorm, R, g)
        _linear(layer.intermediate_query.dense, R, 2.0, g)
        _linear(layer.output_query.dense, 1.0, R, g)
        _norm(layer.output_query.LayerNorm, R, g)


def make_tiny(seed=0, d=64, heads=4, ffn=128, enc_width=48, layers=4, rlayers=None,
              n_query=8, n_reverse=77, e_dim=16, n_embed=64, depth=2, proj_dim=48,
              causal=True, eps=1e-12, act="gelu", block_eps=1e-6, block_act="gelu",
              reverse_causal=None, enc_scale=1.0, ln_vision_eps=1e-5):
    """A tiny SEEDTokenizerRef with sensitive random weights. enc_scale is the
    size of the image embeddings the cross-attention keys see (after ln_vision)."""
    g = torch.Generator().manual_seed(seed)
    qcfg = Cfg(hidden_size=d, num_attention_heads=heads, intermediate_size=ffn,
               encoder_width=enc_width, num_hidden_layers=layers, layer_norm_eps=eps,
               hidden_act=act)
    rcfg = Cfg(hidden_size=d, num_attention_heads=heads, intermediate_size=ffn,
               encoder_width=d, num_hidden_layers=rlayers or (4 if n_reverse != 32 else 12),
               layer_norm_eps=eps, hidden_act=act)
    m = SEEDTokenizerRef(qcfg, rcfg, n_query, n_reverse, e_dim, n_embed, depth, heads, 4.0,
                         block_eps, proj_dim, causal, reverse_causal, block_act, ln_vision_eps)
    with torch.no_grad():
        _norm(m.ln_vision, enc_scale, g)
        m.query_tokens.data = torch.randn(m.query_tokens.shape, generator=g) * R
        _init_bert(m.Qformer.bert, g)
        # cross-attention keys/values read the image embeddings (size enc_scale)
        for layer in m.Qformer.bert.encoder.layer:
            if layer.has_cross:
                _linear(layer.crossattention.self.key, enc_scale, 1.0, g)
                _linear(layer.crossattention.self.value, enc_scale, R, g)
        _linear(m.encode_task_layer[0], R, 1.5, g)
        _linear(m.encode_task_layer[2], 0.8, 1.0, g)
        m.quantize.embedding.weight.data = torch.randn(n_embed, e_dim, generator=g) * 0.5
        _linear(m.decode_task_layer[0], 0.5, 1.5, g)
        _linear(m.decode_task_layer[2], 0.8, R, g)
        m.pos_embed_text.data = torch.randn(m.pos_embed_text.shape, generator=g) * R
        for b in m.blocks_text:   # pre-LN: residual ~R, LN outputs ~1
            _norm(b.norm1, 1.0, g)
            _linear(b.attn.qkv, 1.0, 1.0, g)
            _linear(b.attn.proj, 1.0, R, g)
            _norm(b.norm2, 1.0, g)
            _linear(b.mlp.fc1, 1.0, 2.0, g)
            _linear(b.mlp.fc2, 1.0, R, g)
        m.reverse_tokens.data = torch.randn(m.reverse_tokens.shape, generator=g) * R
        _init_bert(m.Reverse_Qformer.bert, g)
        _linear(m.distill_text_proj, R, 1.0, g)
    return m.eval()


def save(model, path, drop=()):
    """torch.save({"model": state_dict}) like causal_qformer.pth / seed_tokenizer.pth;
    keys in drop are left out (to test missing-tensor reports)."""
    sd = {k: v for k, v in model.state_dict().items() if k not in drop}
    torch.save({"model": sd}, path)
