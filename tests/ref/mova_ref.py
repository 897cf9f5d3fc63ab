"""MoVA's MoV-Adapter in PyTorch, written from the official code
(TempleX98/MoVA mova/model/multimodal_projector/builder.py: Attention with
2-D RoPE (VisionRotaryEmbeddingFast), SwiGLU, AdapterBlock, MoVAdapter) and
from timm's RegNet bottleneck that MoVA's RegStage builds (regnet.py
Bottleneck: 1x1 conv + LayerNorm2d + SiLU, depthwise 3x3 + LayerNorm2d +
SiLU, squeeze-excitation with SiLU and a sigmoid gate, 1x1 conv +
LayerNorm2d, identity shortcut; LayerNorm2d eps 1e-5 as timm's
LayerNormAct2d, spec 8). timm and einops are not installable, so both are
written out; the BERT text feature is an input (BERT itself is
tests/ref/bert_ref.py). Names follow the state dict of MoVA's
model.mm_projector: pos_embed, blocks.I.{cross_attn.E, norm1.E, norm2.E,
self_attn, norm3, norm4, mlp, gate}, downsample.{0,2}.b1.*, mlp.{0,2}.
Heads are width // 64: the RoPE table fixes 64-wide heads.
"""
import torch
import torch.nn.functional as F
from torch import nn


def rotate_half(x):
    x = x.reshape(*x.shape[:-1], -1, 2)
    x1, x2 = x.unbind(dim=-1)
    return torch.stack((-x2, x1), dim=-1).reshape(*x.shape[:-2], -1)


class Rope(nn.Module):
    """VisionRotaryEmbeddingFast(dim=32, pt_seq_len=R, ft_seq_len=R)."""

    def __init__(self, R, dim=32, theta=10000):
        super().__init__()
        freqs = 1. / (theta ** (torch.arange(0, dim, 2)[:(dim // 2)].float() / dim))
        t = torch.arange(R) / R * R
        freqs = torch.einsum('..., f -> ... f', t, freqs)
        freqs = freqs.repeat_interleave(2, dim=-1)                      # (R, 32)
        freqs = torch.cat([freqs[:, None, :].expand(R, R, dim), freqs[None, :, :].expand(R, R, dim)],
                          dim=-1)                                       # (R, R, 64)
        self.register_buffer("freqs_cos", freqs.cos().view(-1, 2 * dim))
        self.register_buffer("freqs_sin", freqs.sin().view(-1, 2 * dim))

    def forward(self, t):
        return t * self.freqs_cos + rotate_half(t) * self.freqs_sin


class Attention(nn.Module):
    def __init__(self, dim, value_dim, R):
        super().__init__()
        self.num_heads = dim // 64
        self.scale = 64 ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(value_dim, dim, bias=False)
        self.v_proj = nn.Linear(value_dim, dim, bias=False)
        self.inner_attn_ln = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        self.rope = Rope(R)

    def forward(self, x, value):
        B, N, C = x.shape
        N_ = value.shape[1]
        q = self.q_proj(x).reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3)
        k = self.k_proj(value).reshape(B, N_, self.num_heads, -1).permute(0, 2, 1, 3)
        v = self.v_proj(value).reshape(B, N_, self.num_heads, -1).permute(0, 2, 1, 3)
        q = self.rope(q).type_as(v)
        k = self.rope(k).type_as(v)
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(self.inner_attn_ln(x))


class SwiGLU(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.w1 = nn.Linear(d, hidden)
        self.w2 = nn.Linear(d, hidden)
        self.ffn_ln = nn.LayerNorm(hidden)
        self.w3 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class AdapterBlock(nn.Module):
    def __init__(self, d, expert_channels, d_text, R, topk):
        super().__init__()
        self.topk = topk
        self.num_experts = len(expert_channels)
        self.cross_attn = nn.ModuleList([Attention(d, c, R) for c in expert_channels])
        self.norm1 = nn.ModuleList([nn.LayerNorm(d) for _ in expert_channels])
        self.norm2 = nn.ModuleList([nn.LayerNorm(c) for c in expert_channels])
        self.mlp = SwiGLU(d, int(d * 8 / 3))
        self.self_attn = Attention(d, d, R)
        self.norm3 = nn.LayerNorm(d)
        self.norm4 = nn.LayerNorm(d)
        self.gate = nn.Sequential(nn.Linear(d_text + d, d), nn.GELU(),
                                  nn.Linear(d, len(expert_channels)))

    def forward(self, x, value, text_feat, routing_mask, routing_weight_mask, routing_binary_weight):
        B = x.shape[0]
        router_logits = self.gate(torch.cat([text_feat, x.mean(1)], dim=-1))
        w = F.softmax(router_logits.float() + routing_weight_mask, dim=-1, dtype=torch.float)
        self.last_probs = w.detach().clone()  # for the tests' margin checks
        _, sel = torch.topk(w, self.topk, dim=-1)
        self.last_sel = sel.detach().clone()
        w = w * F.one_hot(sel, num_classes=self.num_experts).sum(1)
        w = (w / w.sum(1).unsqueeze(1)).to(x.dtype)
        result = []
        for k, feat in enumerate(value):
            if B == 1 and routing_mask[0][k] == 0:
                result.append(torch.zeros_like(x))
            else:
                result.append(self.cross_attn[k](self.norm1[k](x), self.norm2[k](feat)))
        result = torch.sum(torch.stack(result, dim=1) * w.unsqueeze(-1).unsqueeze(-1), dim=1)
        result = result * routing_binary_weight.unsqueeze(-1).unsqueeze(-1)
        x = x + result
        x = x + self.self_attn(self.norm3(x), self.norm3(x))
        return x + self.mlp(self.norm4(x))


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class ConvNorm(nn.Module):
    def __init__(self, cin, cout, k, groups=1, eps=1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)
        self.bn = LayerNorm2d(cout, eps=eps)

    def forward(self, x):
        return self.bn(self.conv(x))


class SE(nn.Module):
    def __init__(self, c, rd):
        super().__init__()
        self.fc1 = nn.Conv2d(c, rd, 1)
        self.fc2 = nn.Conv2d(rd, c, 1)

    def forward(self, x):
        s = F.silu(self.fc1(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.fc2(s))


class Bottleneck(nn.Module):
    def __init__(self, c, se_ratio=0.25):
        super().__init__()
        self.conv1 = ConvNorm(c, c, 1)
        self.conv2 = ConvNorm(c, c, 3, groups=c)
        self.se = SE(c, int(round(c * se_ratio)))
        self.conv3 = ConvNorm(c, c, 1)

    def forward(self, x):
        y = F.silu(self.conv1(x))
        y = F.silu(self.conv2(y))
        y = self.conv3(self.se(y))
        return y + x


class RegStage(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.b1 = Bottleneck(c)

    def forward(self, x):
        return self.b1(x)


class MoVAdapter(nn.Module):
    def __init__(self, d, d_llm, expert_channels, d_text, R, topk=3, blocks=3):
        super().__init__()
        self.d, self.R = d, R
        self.expert_channels = expert_channels
        self.num_experts = len(expert_channels)
        self.blocks = nn.ModuleList([AdapterBlock(d, expert_channels, d_text, R, topk)
                                     for _ in range(blocks)])
        self.mlp = nn.Sequential(nn.Linear(d, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))
        self.pos_embed = nn.Parameter(torch.zeros(1, R * R, d))
        self.downsample = nn.Sequential(RegStage(d), nn.AdaptiveAvgPool2d((R // 2, R // 2)),
                                        RegStage(d))

    def forward(self, x, value, text_feat, routing_weights):
        residual = x
        x = x + self.pos_embed
        routing_mask = routing_weights
        routing_weight_mask = (1 - routing_weights).float() * (-1e6)
        bw = routing_weights.mean(-1)
        bw = torch.where(bw > 0, torch.ones_like(bw), torch.zeros_like(bw))
        for blk in self.blocks:
            x = blk(x, value, text_feat, routing_mask, routing_weight_mask, bw)
        x = (x + residual) / 2
        B, L, C = x.shape
        x = x.transpose(1, 2).reshape(B, C, self.R, self.R)
        x = self.downsample(x)
        x = x.reshape(B, C, -1).transpose(1, 2)
        return self.mlp(x)
