"""The Pix2Struct vision encoder in PyTorch, written from transformers
src/transformers/models/pix2struct/modeling_pix2struct.py (read at commit
8e1f1a8; MoVA pins 4.37.2, whose vision classes compute the same):
Pix2StructLayerNorm (T5 RMS norm: variance of x in float32 without the mean,
x * rsqrt(variance + eps), then weight *), Pix2StructVisionEmbeddings
(patch_projection of columns 2.., row / column nn.Embedding indexed by the
.long() of columns 0 and 1, summed left to right), Pix2StructVisionAttention
(query / key / value / output without bias, heads of d_kv, scores q k^T
with no scaling; the 2-D mask becomes a bias 0 / finfo.min through
position_bias = 1 - mask and masked_fill(== 1, min), scores clamped at min,
softmax in float32), Pix2StructVisionMlp (wo(act(wi_0 h) * wi_1 h), act
ACT2FN[dense_act_fn]: gelu_new is the tanh form), Pix2StructVisionLayer
(pre-norm residual blocks), Pix2StructVisionModel.forward (default mask
(flattened_patches.sum(-1) != 0).float(), final layernorm). Dropout and
head masks are inference no-ops and left out. Parameter names are those of
Pix2StructVisionModel (a Pix2StructForConditionalGeneration checkpoint
prefixes them with "encoder.").
"""
import math

import torch
from torch import nn


def act_fn(name):
    if name == "gelu_new":  # transformers activations.py NewGELUActivation
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) *
                                                      (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "gelu":
        return nn.functional.gelu
    if name == "relu":
        return torch.relu
    raise ValueError(name)


class RmsNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.patch_projection = nn.Linear(c["patch_embed_hidden_size"], c["hidden_size"])
        self.row_embedder = nn.Embedding(c["seq_len"], c["hidden_size"])
        self.column_embedder = nn.Embedding(c["seq_len"], c["hidden_size"])

    def forward(self, fp):
        rows, cols = fp[:, :, 0].long(), fp[:, :, 1].long()
        e = self.patch_projection(fp[:, :, 2:])
        return e + self.row_embedder(rows) + self.column_embedder(cols)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.d_kv = c["num_attention_heads"], c["d_kv"]
        inner = self.heads * self.d_kv
        self.query = nn.Linear(c["hidden_size"], inner, bias=False)
        self.key = nn.Linear(c["hidden_size"], inner, bias=False)
        self.value = nn.Linear(c["hidden_size"], inner, bias=False)
        self.output = nn.Linear(inner, c["hidden_size"], bias=False)
        self.keep_weights = False
        self.weights = None

    def split(self, t):
        B, T, _ = t.shape
        return t.view(B, T, self.heads, self.d_kv).transpose(1, 2)

    def forward(self, h, mask):
        B, T, _ = h.shape
        q, k, v = self.split(self.query(h)), self.split(self.key(h)), self.split(self.value(h))
        scores = torch.matmul(q, k.transpose(3, 2))
        bias = torch.zeros((1, self.heads, T, T), dtype=scores.dtype) + mask[:, None, None, :]
        bias = 1 - bias
        scores += bias.masked_fill(bias == 1, torch.finfo(scores.dtype).min)
        scores = torch.max(scores, torch.tensor(torch.finfo(scores.dtype).min))
        w = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
        if self.keep_weights:
            self.weights = w
        o = torch.matmul(w, v).transpose(1, 2).contiguous().view(B, T, -1)
        return self.output(o)


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wi_0 = nn.Linear(c["hidden_size"], c["d_ff"], bias=False)
        self.wi_1 = nn.Linear(c["hidden_size"], c["d_ff"], bias=False)
        self.wo = nn.Linear(c["d_ff"], c["hidden_size"], bias=False)
        self.act = act_fn(c["dense_act_fn"])

    def forward(self, h):
        return self.wo(self.act(self.wi_0(h)) * self.wi_1(h))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.mlp = Mlp(c)
        self.pre_mlp_layer_norm = RmsNorm(c["hidden_size"], c["layer_norm_eps"])
        self.pre_attention_layer_norm = RmsNorm(c["hidden_size"], c["layer_norm_eps"])

    def forward(self, x, mask):
        x = self.attention(self.pre_attention_layer_norm(x), mask) + x
        return self.mlp(self.pre_mlp_layer_norm(x)) + x


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])


DEFAULTS = dict(hidden_size=768, patch_embed_hidden_size=768, d_ff=2048, d_kv=64,
                num_attention_heads=12, num_hidden_layers=12, layer_norm_eps=1e-6,
                dense_act_fn="gelu_new", seq_len=4096)


class VisionModel(nn.Module):
    """Pix2StructVisionModel: flattened_patches [B, L, 2 + P] -> last_hidden_state."""

    def __init__(self, **cfg):
        super().__init__()
        c = dict(DEFAULTS, **cfg)
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.layernorm = RmsNorm(c["hidden_size"], c["layer_norm_eps"])

    def forward(self, fp, attention_mask=None):
        if attention_mask is None:
            attention_mask = (fp.sum(dim=-1) != 0).float()
        x = self.embeddings(fp)
        for layer in self.encoder.layer:
            x = layer(x, attention_mask)
        return self.layernorm(x)
