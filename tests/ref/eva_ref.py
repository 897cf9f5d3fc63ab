"""eva_ref.py - PyTorch references for GVT's visual blocks, with the official names.

Written from the semantics of the released code (not copied):
  * EVA-CLIP EVAVisionTransformer as GVT builds it (TencentARC/GVT
    gvt/gvt/modules/visual_modules/eva.py): subln (separate q/k/v_proj,
    inner_attn_ln, ffn_ln), naiveswiglu (w1/w2/w3), q_bias/v_bias without a k
    bias, VisionRotaryEmbeddingFast on the patch tokens, abs pos-emb with CLS,
    forward_features(return_all_features=True) = every token, no final norm.
  * LAVIS eva_vit_g (AILab-CVC/SEED v1 models/eva_vit.py): fused qkv with
    cat(q_bias, 0, v_bias), exact GELU MLP fc1/fc2, no final norm; built with
    one block fewer than the checkpoint (strict=False); interpolate_pos_embed
    when the checkpoint table has another grid.
  * PerceiverResampler (GVT visual_modules/perceiver.py, lucidrains'
    flamingo-pytorch).

`mut` (a set of strings) switches on deliberate mistakes; the parity script
checks that each of them moves the result far past the tolerance, so the test
can fail. Runs on Debian's torch 1.13 without einops.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- RoPE --

def rotate_half(x, mut=()):
    if "rope_halves" in mut:  # GPT-NeoX layout: halves instead of interleaved pairs
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)
    x = x.reshape(*x.shape[:-1], -1, 2)
    x1, x2 = x.unbind(dim=-1)
    return torch.stack((-x2, x1), dim=-1).reshape(*x.shape[:-2], -1)


class VisionRotaryEmbeddingFast(nn.Module):
    def __init__(self, dim, pt_seq_len, ft_seq_len=None, theta=10000, mut=()):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
        if ft_seq_len is None:
            ft_seq_len = pt_seq_len
        if "rope_no_intp" in mut:
            t = torch.arange(ft_seq_len).float()
        else:
            t = torch.arange(ft_seq_len) / ft_seq_len * pt_seq_len
        freqs = torch.einsum("..., f -> ... f", t, freqs)
        freqs = freqs.repeat_interleave(2, dim=-1)          # '... n -> ... (n r)', r = 2
        n = freqs.shape[0]
        rows = freqs[:, None, :].expand(n, n, freqs.shape[-1])
        cols = freqs[None, :, :].expand(n, n, freqs.shape[-1])
        if "rope_swap_axes" in mut:
            rows, cols = cols, rows
        freqs = torch.cat((rows, cols), dim=-1)
        self.register_buffer("freqs_cos", freqs.cos().view(-1, freqs.shape[-1]))
        self.register_buffer("freqs_sin", freqs.sin().view(-1, freqs.shape[-1]))
        self.mut = mut

    def forward(self, t):
        return t * self.freqs_cos + rotate_half(t, self.mut) * self.freqs_sin


# ---------------------------------------------------------------- EVA --

class SwiGLU(nn.Module):
    def __init__(self, dim, hidden, subln, eps, mut):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps) if subln else nn.Identity()
        self.w3 = nn.Linear(hidden, dim)
        self.mut = mut

    def forward(self, x):
        a, b = self.w1(x), self.w2(x)
        if "swiglu_swap" in self.mut:
            a, b = b, a
        h = F.silu(a) * b
        if "no_ffn_ln" not in self.mut:
            h = self.ffn_ln(h)
        return self.w3(h)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, subln, eps, mut):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps) if subln else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.mut = mut

    def forward(self, x):
        h = self.fc1(x)
        h = F.gelu(h, approximate="tanh") if "gelu_tanh" in self.mut else F.gelu(h)
        return self.fc2(self.ffn_ln(h))


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias, subln, rope, eps, mut):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.subln = subln
        if subln:
            self.q_proj = nn.Linear(dim, dim, bias=False)
            self.k_proj = nn.Linear(dim, dim, bias=False)
            self.v_proj = nn.Linear(dim, dim, bias=False)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.inner_attn_ln = nn.LayerNorm(dim, eps=eps) if subln else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope  # shared module: its buffers appear under every block, as in eva.py
        self.mut = mut

    def forward(self, x):
        B, N, C = x.shape
        H = self.heads
        if self.subln:
            q = F.linear(x, self.q_proj.weight, self.q_bias)
            k = F.linear(x, self.k_proj.weight, self.v_bias if "k_bias" in self.mut else None)
            v = F.linear(x, self.v_proj.weight, self.v_bias)
            q, k, v = (t.reshape(B, N, H, -1).permute(0, 2, 1, 3) for t in (q, k, v))
        else:
            bias = None
            if self.q_bias is not None:
                kb = self.v_bias if "k_bias" in self.mut else torch.zeros_like(self.v_bias)
                bias = torch.cat((self.q_bias, kb, self.v_bias))
            qkv = F.linear(x, self.qkv.weight, bias)
            qkv = qkv.reshape(B, N, 3, H, -1).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        if self.rope is not None and "no_rope" not in self.mut:
            q = torch.cat((q[:, :, :1], self.rope(q[:, :, 1:])), dim=-2)
            k = torch.cat((k[:, :, :1], self.rope(k[:, :, 1:])), dim=-2)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        if "no_inner_attn_ln" not in self.mut:
            x = self.inner_attn_ln(x)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, qkv_bias, subln, swiglu, rope, eps, mut):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias, subln, rope, eps, mut)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        mlp = SwiGLU if swiglu else Mlp
        self.mlp = mlp(dim, hidden, subln, eps, mut)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class EVAVisionTransformer(nn.Module):
    """EVA-CLIP / LAVIS ViT; `gvt_extras` adds the unused fc_norm/head of GVT's tower."""

    def __init__(self, img_size, patch_size, dim, depth, heads, mlp_ratio, qkv_bias=True,
                 subln=False, swiglu=False, rope=False, pt_hw_seq_len=16, intp_freq=True,
                 eps=1e-6, gvt_extras=False, pos_grid=None, mut=()):
        super().__init__()
        eps = 1e-5 if "eps" in mut else eps
        grid = img_size // patch_size
        pos_grid = pos_grid or grid
        self.patch_embed = PatchEmbed(patch_size, 3, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_grid * pos_grid + 1, dim))
        self.grid = grid
        if rope:
            self.rope = VisionRotaryEmbeddingFast(dim // heads // 2, pt_hw_seq_len,
                                                  grid if intp_freq else None, mut=mut)
        else:
            self.rope = None
        hidden = int(dim * mlp_ratio)
        self.blocks = nn.ModuleList([
            Block(dim, heads, hidden, qkv_bias, subln, swiglu, self.rope, eps, mut)
            for _ in range(depth)])
        if gvt_extras:
            self.fc_norm = nn.LayerNorm(dim, eps=eps)
            self.head = nn.Linear(dim, 10)
        self.mut = mut

    def pos_table(self):
        """LAVIS interpolate_pos_embed: bicubic resize of the patch rows at load."""
        pe = self.pos_embed
        n = int(round(math.sqrt(pe.shape[1] - 1)))
        if n == self.grid:
            return pe
        d = pe.shape[-1]
        tok = pe[:, 1:].reshape(1, n, n, d).permute(0, 3, 1, 2)
        tok = F.interpolate(tok, size=(self.grid, self.grid), mode="bicubic", align_corners=False)
        return torch.cat((pe[:, :1], tok.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)

    def hidden_states(self, x, n_blocks=None):
        """[embeddings, output of block 0, ...]; the last one is forward_features(x, True)."""
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.pos_table()
        out = [x]
        for blk in self.blocks[:n_blocks]:
            x = blk(x)
            out.append(x)
        return out


# ----------------------------------------------------------- Perceiver --

class PerceiverAttention(nn.Module):
    def __init__(self, dim, dim_head, heads, eps, mut):
        super().__init__()
        self.scale = dim_head ** -0.5
        self.heads = heads
        inner = dim_head * heads
        self.norm_media = nn.LayerNorm(dim, eps=eps)
        self.norm_latents = nn.LayerNorm(dim, eps=eps)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.mut = mut

    def forward(self, x, latents):            # x [b, t, n, d], latents [b, t, m, d]
        x = self.norm_media(x)
        latents = self.norm_latents(latents)
        q = self.to_q(latents)
        kv_in = x if "kv_media_only" in self.mut else torch.cat((x, latents), dim=-2)
        k, v = self.to_kv(kv_in).chunk(2, dim=-1)

        def heads(t):                          # 'b t n (h d) -> b h t n d'
            b, tt, n, _ = t.shape
            return t.reshape(b, tt, n, self.heads, -1).permute(0, 3, 1, 2, 4)
        q, k, v = heads(q) * self.scale, heads(k), heads(v)
        sim = torch.einsum("...id,...jd->...ij", q, k)
        sim = sim - sim.amax(dim=-1, keepdim=True).detach()
        out = torch.einsum("...ij,...jd->...id", sim.softmax(dim=-1), v)
        b, h, tt, n, d = out.shape
        return self.to_out(out.permute(0, 2, 3, 1, 4).reshape(b, tt, n, h * d))


def FeedForward(dim, mult, eps, mut):
    act = nn.GELU(approximate="tanh") if "gelu_tanh" in mut else nn.GELU()
    inner = int(dim * mult)
    return nn.Sequential(nn.LayerNorm(dim, eps=eps), nn.Linear(dim, inner, bias=False), act,
                         nn.Linear(inner, dim, bias=False))


class PerceiverResampler(nn.Module):
    def __init__(self, dim, depth, dim_head=64, heads=8, num_latents=64, num_media_embeds=4,
                 ff_mult=4, mut=()):
        super().__init__()
        eps = 1e-6 if "eps" in mut else 1e-5
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.media_pos_emb = nn.Parameter(torch.randn(num_media_embeds, 1, dim))
        self.layers = nn.ModuleList([
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads, eps, mut),
                           FeedForward(dim, ff_mult, eps, mut)])
            for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mut = mut

    def forward(self, x):
        if x.ndim == 3:
            x = x[:, None]                       # 'b n d -> b 1 n d'
        if "no_media_pos" not in self.mut:
            x = x + self.media_pos_emb[: x.shape[1]]
        latents = self.latents[None, None].expand(x.shape[0], x.shape[1], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents).squeeze(1)


# ------------------------------------------------------- random weights --

def randomize(model, gen, small=()):
    """Weights large enough that a wrong eps, activation or order shows.
    Names matching a prefix in `small` get std 3e-3 (so that the LayerNorm
    after them sees a variance near eps)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(name.startswith(s) for s in small):
                p.copy_(torch.randn(p.shape, generator=gen) * 3e-3)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            elif p.ndim == 1 and ("norm" in name or "_ln" in name or name.split(".")[-2].isdigit()):
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=gen))   # LayerNorm weight
            elif p.ndim == 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)         # q_bias / v_bias
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(fan_in)))
    return model
