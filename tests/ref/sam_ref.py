"""The SAM image encoder as MoVA uses it, in PyTorch, for the parity test.

Re-implements, with the checkpoint's tensor names, the semantics of
TempleX98/MoVA mova/model/vision_experts/vary/sam.py (ImageEncoderViT, Block,
Attention, window_partition / window_unpartition, get_rel_pos,
add_decomposed_rel_pos, PatchEmbed, LayerNorm2d, MLPBlock; itself a copy of
facebookresearch/segment-anything segment_anything/modeling/image_encoder.py
plus the `net_2` output conv of Vary). Line numbers are that file's at
MoVA@9c33cb4. Sizes are parameters so that tiny configurations keep the real
structure (windows with padding, global blocks, the neck, net_2); the
released ones are build_sam_vit_b / build_sam_vit_h below.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.Module):
    """Channel LayerNorm of a [B, C, H, W] map, eps 1e-6 (:43-55)."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    """lin2(GELU(lin1(x))), nn.GELU's exact form (:25-38)."""

    def __init__(self, d, d_ff):
        super().__init__()
        self.lin1 = nn.Linear(d, d_ff)
        self.lin2 = nn.Linear(d_ff, d)

    def forward(self, x):
        return self.lin2(F.gelu(self.lin1(x)))


def rel_table(rel_pos, n):
    """get_rel_pos (:350-380) for q_size == k_size == n: the table resized
    linearly to 2 n - 1 rows if needed, then row (qi - ki + n - 1) per pair."""
    L = 2 * n - 1
    if rel_pos.shape[0] != L:
        rel_pos = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1),
                                size=L, mode="linear").reshape(-1, L).permute(1, 0)
    idx = torch.arange(n)[:, None] - torch.arange(n)[None, :] + (n - 1)
    return rel_pos[idx]  # [n, n, C]


class Attention(nn.Module):
    """qkv (bias), scores (q * scale) k^T plus decomposed rel-pos terms from
    the unscaled q, softmax, proj (:243-298, :383-419)."""

    def __init__(self, d, heads, rel_size):
        super().__init__()
        self.heads = heads
        hd = d // heads
        self.scale = hd ** -0.5
        self.qkv = nn.Linear(d, 3 * d, bias=True)
        self.proj = nn.Linear(d, d)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size - 1, hd))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size - 1, hd))

    def forward(self, x):
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.heads, H * W, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        Rh = rel_table(self.rel_pos_h, H)
        Rw = rel_table(self.rel_pos_w, W)
        rq = q.reshape(B * self.heads, H, W, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, Rh)
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, Rw)
        attn = (attn.view(-1, H, W, H, W) + rel_h[:, :, :, :, None]
                + rel_w[:, :, :, None, :]).view(-1, H * W, H * W)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).view(B, self.heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(x)


def window_partition(x, ws):
    """Zero-pad [B, H, W, C] to multiples of ws and cut ws x ws windows (:301-322)."""
    B, H, W, C = x.shape
    ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    Hp, Wp = H + ph, W + pw
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, C), (Hp, Wp)


def window_unpartition(win, ws, pad_hw, hw):
    """Windows back to [B, Hp, Wp, C], cropped to [B, H, W, C] (:325-347)."""
    Hp, Wp = pad_hw
    H, W = hw
    B = win.shape[0] // (Hp * Wp // ws // ws)
    x = win.view(B, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, Hp, Wp, -1)[:, :H, :W, :].contiguous()


class Block(nn.Module):
    """x += attn(norm1 x) (windowed when window > 0); x += mlp(norm2 x) (:177-240)."""

    def __init__(self, d, heads, mlp_ratio, window, grid):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, heads, grid if window == 0 else window)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = MLPBlock(d, int(d * mlp_ratio))
        self.window = window

    def forward(self, x):
        res = x
        x = self.norm1(x)
        if self.window > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window)
        x = self.attn(x)
        if self.window > 0:
            x = window_unpartition(x, self.window, pad_hw, (H, W))
        x = res + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, p, cin, d):
        super().__init__()
        self.proj = nn.Conv2d(cin, d, kernel_size=p, stride=p)

    def forward(self, x):
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """patch embed + pos_embed, blocks, neck (1x1, LN2d, 3x3, LN2d), net_2
    (3x3 stride 2) when use_output_conv; returns [B, tokens, C] (:59-174)."""

    def __init__(self, img_size=1024, patch_size=16, in_chans=3, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, out_chans=256, window_size=14,
                 global_attn_indexes=(2, 5, 8, 11), use_output_conv=True, out2_chans=None):
        super().__init__()
        G = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, G, G, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio,
                  0 if i in global_attn_indexes else window_size, G) for i in range(depth))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans))
        self.use_output_conv = use_output_conv
        if use_output_conv:  # Conv2d(256, 512, 3, 2, 1, bias=False) in the original (:152)
            self.net_2 = nn.Conv2d(out_chans, out2_chans or 2 * out_chans, kernel_size=3,
                                   stride=2, padding=1, bias=False)

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.neck(x.permute(0, 3, 1, 2))
        if self.use_output_conv:
            x = self.net_2(x)
        B, C, H, W = x.shape
        return x.reshape(B, C, H * W).permute(0, 2, 1).contiguous()


def build_sam_vit_b():
    """Vary-base (:457-465, _build_sam :488-514)."""
    return ImageEncoderViT(1024, 16, 3, 768, 12, 12, 4.0, 256, 14, (2, 5, 8, 11), True, 512)


def build_sam_vit_h():
    """SAM-huge as MoVA builds it (:477-485): no net_2."""
    return ImageEncoderViT(1024, 16, 3, 1280, 32, 16, 4.0, 256, 14, (7, 15, 23, 31), False)
