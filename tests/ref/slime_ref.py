"""SliME's connector in PyTorch, module for module as the official code has it
(yfzhang114/SliME: llava/model/multimodal_resampler/sampler.py Resampler and
get_abs_pos; multimodal_projector/builder.py GatedBlock; multimodal_resampler/
builder.py TextGuidedRouterCosine, TextGuidedSampler; llava_arch.py
encode_images and get_pure_text_embedding), in eval mode (no noise), with
the sizes as arguments so tiny models can use them (the release: 1024 wide,
576 / 144 queries, heads = width // 128). State-dict names match the
release's (mm_projector.*, sampler.post_qformer.*).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float32)
    omega /= embed_dim / 2.
    omega = 1. / 10000 ** omega
    pos = pos.reshape(-1)
    out = np.einsum('m,d->md', pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def get_abs_pos(abs_pos, tgt_size, round_half=True):
    src_size = int(math.sqrt(abs_pos.size(0)))
    dtype = abs_pos.dtype if round_half else torch.float32
    return F.interpolate(abs_pos.float().reshape(1, src_size, src_size, -1).permute(0, 3, 1, 2),
                         size=(tgt_size[0], tgt_size[1]), mode="bicubic",
                         align_corners=False).permute(0, 2, 3, 1).flatten(0, 2).to(dtype=dtype)


class Resampler(nn.Module):
    def __init__(self, grid_size, embed_dim, num_heads, eps=1e-6):
        super().__init__()
        self.num_queries = grid_size ** 2
        self.grid_size = grid_size
        self.pos_embed = nn.Parameter(torch.from_numpy(
            get_2d_sincos_pos_embed(embed_dim, grid_size)).to(torch.float16)).requires_grad_(False)
        self.query = nn.Parameter(torch.zeros(self.num_queries, embed_dim))
        self.kv_proj = nn.Identity()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)
        self.ln_q = nn.LayerNorm(embed_dim, eps=eps)
        self.ln_kv = nn.LayerNorm(embed_dim, eps=eps)
        self.ln_post = nn.LayerNorm(embed_dim, eps=eps)
        self.proj = nn.Identity()
        self.round_half = True  # tests turn the float16 rounding of pos_k off (sensitivity)

    def forward(self, x, tgt_size=(24, 24)):
        mark = len(x.shape) <= 2
        if mark:
            x = x.unsqueeze(0)
        if x.shape[1] != tgt_size[0] * tgt_size[1]:
            tgt_size = (int(math.sqrt(x.shape[1])), int(math.sqrt(x.shape[1])))
        pos_embed = get_abs_pos(self.pos_embed.detach(), tgt_size, self.round_half)
        x = self.kv_proj(x)
        x = self.ln_kv(x).permute(1, 0, 2)
        N = x.shape[1]
        q = self.ln_q(self.query)
        out = self.attn(q.unsqueeze(1).repeat(1, N, 1) + self.pos_embed.unsqueeze(1),
                        x + pos_embed.unsqueeze(1), x)[0]
        x = self.ln_post(out.permute(1, 0, 2))
        x = self.proj(x)
        return x if not mark else x.squeeze()


class GatedBlock(nn.Module):
    def __init__(self, mm_hidden, hidden, heads, target=576, learnable_gated=-1):
        super().__init__()
        self.target_sequence_length = target
        self.attn = Resampler(int(math.sqrt(target)), mm_hidden, heads)
        self.projection = nn.Sequential(nn.Linear(mm_hidden, hidden), nn.GELU(),
                                        nn.Linear(hidden, hidden))
        self.expert_ffn = [self.projection, self.attn]
        self.num_experts = 2
        self.w_gate = nn.Parameter(torch.zeros(mm_hidden, 2, dtype=torch.bfloat16))
        self.w_noise = nn.Parameter(torch.zeros(mm_hidden, 2, dtype=torch.bfloat16))
        self.register_buffer("mean", torch.tensor([0.0], dtype=torch.bfloat16))
        self.register_buffer("std", torch.tensor([1.0], dtype=torch.bfloat16))
        self.learnable_gated = learnable_gated
        self.k = 2

    def gating(self, x):
        logits = torch.softmax(x @ self.w_gate.to(x.dtype), 1)
        top_logits, top_indices = logits.topk(min(self.k + 1, self.num_experts), dim=1)
        top_k_logits = top_logits[:, :self.k]
        top_k_gates = top_k_logits / (top_k_logits.sum(1, keepdim=True) + 1e-6)
        return torch.zeros_like(logits).scatter(1, top_indices[:, :self.k], top_k_gates)

    def forward(self, x):
        if x.shape[0] != self.target_sequence_length and x.shape[1] != self.target_sequence_length:
            return self.projection(x)
        mark = len(x.shape) <= 2
        if mark:
            x = x.unsqueeze(0)
        N, C, D = x.shape
        outs = [self.projection(x)] + [self.projection(self.expert_ffn[i](x))
                                       for i in range(1, self.num_experts)]
        if self.learnable_gated >= 0:
            o = outs[self.learnable_gated]
            return o.squeeze(0) if mark else o
        gates = self.gating(x.reshape(N * C, D)).reshape(N, C, -1)
        output = torch.matmul(torch.stack(outs, dim=-1), gates.unsqueeze(-1)).squeeze(-1)
        return output.squeeze(0) if mark else output


def select(local_f, text_embedding, attn_mask, topp, temp):
    """TextGuidedRouterCosine + TextGuidedSampler.forward (eval): the scores,
    the kept indices (ascending) and the kept rows."""
    sim = F.cosine_similarity(local_f.unsqueeze(1), text_embedding.unsqueeze(0), dim=-1)
    sim = sim.masked_fill((attn_mask == False).unsqueeze(0), float(0)).sum(dim=-1)  # noqa: E712
    probs = F.softmax(sim / temp, dim=-1)
    sorted_probs, sorted_indices = torch.sort(probs, descending=True, stable=True)
    cumulative = torch.cumsum(sorted_probs, dim=0)
    selected = (cumulative <= topp).nonzero(as_tuple=True)[0]
    if selected.numel() < sorted_indices.numel():
        selected = sorted_indices[:selected.numel() + 1]
    selected, _ = selected.sort(descending=False)
    margin = float(torch.min(torch.abs(cumulative - topp)))
    return sim, selected, local_f[selected], margin


@torch.no_grad()
def encode(feats, grids, gated, post_qformer, text_embeds, n_image_tokens, sep_row, topp, temp):
    """encode_images for one prompt: feats [tiles, t, d] (CLIP hidden_states[-2]
    patch rows of every image's tiles), grids [(gw, gh)] per image; the text
    rows of get_pure_text_embedding (prompt without image positions) plus one
    zero row per image token, mask 0 there. Returns per image its stages."""
    text = torch.cat([text_embeds, torch.zeros(n_image_tokens, text_embeds.shape[1])])
    mask = torch.cat([torch.ones(text_embeds.shape[0]), torch.zeros(n_image_tokens)]).bool()
    g = post_qformer.grid_size
    out, first = [], 0
    for gw, gh in grids:
        k = 1 + gw * gh
        imgs = feats[first:first + k]
        first += k
        glob = gated(imgs[0])
        lq = post_qformer(imgs[1:])
        loc = gated(lq)
        raster = loc.view(gh, gw, g, g, -1).permute(0, 2, 1, 3, 4).contiguous().flatten(0, 3)
        scores, kept, rows, margin = select(raster, text, mask, topp, temp)
        tokens = torch.cat([glob, sep_row[None], rows])
        out.append({"global": glob, "local_q": lq, "local": loc, "scores": scores,
                    "kept": kept, "tokens": tokens, "margin": margin})
    return out
