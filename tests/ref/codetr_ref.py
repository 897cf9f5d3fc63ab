"""MoVA's Co-DETR expert in PyTorch, written from the official code
(TempleX98/MoVA@9c33cb4 mova/model/vision_experts/codetr/vit.py: ViT02,
Block, Attention, SwiGLU, VisionRotaryEmbeddingFast, window_partition /
window_unpartition, get_abs_pos, LayerNorm2d, _build_codetr; line numbers
below are that file's). einops is not installable here, so rotate_half and
the table layout are written with reshapes.

Names follow the module's state dict: patch_embed.proj, pos_embed,
rope_win / rope_glb .freqs_{cos,sin} (persistent buffers; every block's
attn.rope is one of the two, so the state dict repeats them under
blocks.N.attn.rope), blocks.N.{norm1, attn.{q_proj, k_proj, v_proj, q_bias,
v_bias, proj}, norm2, mlp.{w1, w2, ffn_ln, w3}}, out_norm, neck.{0,1,3,4}.

The official forward hard-codes the two resizes (1280 nearest at :715, 37
bilinear at :731); here they are img_size and out_size so that a tiny
configuration keeps the real structure. build_codetr_vit_l() gives the
released sizes (:752-779).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """channels_first LayerNorm2d (:27-51): mean and biased variance over C."""

    def __init__(self, C, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.bias = nn.Parameter(torch.zeros(C))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def rotate_half(x):
    """(:71-75) pairs (2i, 2i+1) -> (-x[2i+1], x[2i])."""
    x = x.reshape(*x.shape[:-1], -1, 2)
    a, b = x.unbind(dim=-1)
    return torch.stack((-b, a), dim=-1).reshape(*x.shape[:-2], -1)


class Rope(nn.Module):
    """VisionRotaryEmbeddingFast(dim, pt_seq_len, ft_seq_len) (:77-117)."""

    def __init__(self, dim, pt_seq_len, ft_seq_len, theta=10000):
        super().__init__()
        freqs = 1. / (theta ** (torch.arange(0, dim, 2)[:(dim // 2)].float() / dim))
        t = torch.arange(ft_seq_len) / ft_seq_len * pt_seq_len
        freqs = torch.einsum('..., f -> ... f', t, freqs).repeat_interleave(2, dim=-1)  # (ft, dim)
        n = ft_seq_len
        freqs = torch.cat([freqs[:, None, :].expand(n, n, dim),
                           freqs[None, :, :].expand(n, n, dim)], dim=-1)           # (ft, ft, 2 dim)
        self.register_buffer("freqs_cos", freqs.cos().view(-1, 2 * dim))
        self.register_buffer("freqs_sin", freqs.sin().view(-1, 2 * dim))

    def forward(self, t):
        return t * self.freqs_cos + rotate_half(t) * self.freqs_sin


class SwiGLU(nn.Module):
    """(:290-314) with subln=True."""

    def __init__(self, d, hidden, eps):
        super().__init__()
        self.w1 = nn.Linear(d, hidden)
        self.w2 = nn.Linear(d, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps)
        self.w3 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Attention(nn.Module):
    """(:317-388) with xattn=False and a rope module (use_lsj=True)."""

    def __init__(self, d, heads, rope):
        super().__init__()
        self.num_heads = heads
        self.scale = (d // heads) ** -0.5
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(d))
        self.v_bias = nn.Parameter(torch.zeros(d))
        self.rope = rope
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        B, H, W, C = x.shape
        x = x.reshape(B, H * W, C)
        N = H * W
        q = F.linear(x, self.q_proj.weight, self.q_bias)
        k = F.linear(x, self.k_proj.weight, None)
        v = F.linear(x, self.v_proj.weight, self.v_bias)
        q, k, v = (t.reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3) for t in (q, k, v))
        q = self.rope(q)
        k = self.rope(k)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(x).view(B, H, W, C)


def window_partition(x, ws):
    """(:183-203): zero padding at the bottom / right, windows row-major."""
    B, H, W, C = x.shape
    ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    Hp, Wp = H + ph, W + pw
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, C), (Hp, Wp)


def window_unpartition(win, ws, pad_hw, hw):
    """(:206-225)."""
    Hp, Wp = pad_hw
    H, W = hw
    B = win.shape[0] // (Hp * Wp // ws // ws)
    x = win.view(B, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, Hp, Wp, -1)[:, :H, :W, :].contiguous()


class Block(nn.Module):
    """(:391-464)."""

    def __init__(self, d, heads, hidden, window, rope, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, heads, rope)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = SwiGLU(d, hidden, eps)
        self.window_size = window

    def forward(self, x):
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


def get_abs_pos(abs_pos, hw):
    """(:228-256) with has_cls_token=True."""
    h, w = hw
    abs_pos = abs_pos[:, 1:]
    size = int(math.sqrt(abs_pos.shape[1]))
    if size != h or size != w:
        p = F.interpolate(abs_pos.reshape(1, size, size, -1).permute(0, 3, 1, 2), size=(h, w),
                          mode="bicubic", align_corners=False)
        return p.permute(0, 2, 3, 1)
    return abs_pos.reshape(1, h, w, -1)


class CoDETRViT(nn.Module):
    """ViT02 (:467-736) as _build_codetr configures it."""

    def __init__(self, img_size=1280, pretrain_img_size=1280, patch=16, d=1024, depth=24,
                 heads=16, mlp_ratio=4 * 2 / 3, window=16, window_blocks=None, out_chans=256,
                 out_size=37, pt_hw_seq_len=16, eps=1e-6):
        super().__init__()
        if window_blocks is None:  # :749
            window_blocks = list(range(0, 5)) + list(range(6, 11)) + list(range(12, 17)) + \
                list(range(18, 23))
        self.img_size, self.out_size = img_size, out_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, patch, stride=patch)
        n = (pretrain_img_size // patch) ** 2 + 1
        self.pos_embed = nn.Parameter(torch.zeros(1, n, d))
        half = d // heads // 2
        self.rope_win = Rope(half, pt_hw_seq_len, window)
        self.rope_glb = Rope(half, pt_hw_seq_len, img_size // patch)
        self.blocks = nn.ModuleList(
            Block(d, heads, int(d * mlp_ratio), window if i in window_blocks else 0,
                  self.rope_win if i in window_blocks else self.rope_glb, eps)
            for i in range(depth))
        self.out_norm = nn.LayerNorm(d)  # eps 1e-5 (:603)
        self.neck = nn.Sequential(
            nn.Conv2d(d, out_chans, 1, bias=False), LayerNorm2d(out_chans), nn.GELU(),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))

    def forward(self, x):
        """x (B, 3, S, S) -> (B, out_size^2, out_chans) (:713-736)."""
        x = F.interpolate(x.float(), size=(self.img_size, self.img_size), mode="nearest")
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)
        x = x + get_abs_pos(self.pos_embed, (x.shape[1], x.shape[2]))
        for blk in self.blocks:
            x = blk(x)
        x = self.neck(self.out_norm(x).permute(0, 3, 1, 2))
        if self.out_size:
            x = F.interpolate(x.float(), size=(self.out_size, self.out_size), mode="bilinear")
        B, C, H, W = x.shape
        return x.reshape(B, C, H * W).permute(0, 2, 1).contiguous()


def build_codetr_vit_l():
    """The released module's sizes (_build_codetr :752-779)."""
    return CoDETRViT()
