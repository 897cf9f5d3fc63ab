"""timm_vit_ref.py - PyTorch reference for timm VisionTransformer towers and
open_clip's TimmModel wrapper, with the checkpoint names of both.

Written from the semantics of the code MoVA bundles (TempleX98/MoVA at 9c33cb4,
timm/models/vision_transformer.py and open_clip/timm_model.py), in our own
words and without importing timm:
  * VisionTransformer: PatchEmbed (Conv2d patch x patch, bias unless
    pre_norm), cls_token [1, 1, d] and reg_token [1, R, d] in front, pos_embed
    added after the concat (or to the patches only with no_embed_class),
    norm_pre (pre_norm), Blocks (norm1 -> fused qkv -> softmax(q k^T dh^-0.5) v
    -> proj [* ls1.gamma]; norm2 -> fc1 -> act -> fc2 [* ls2.gamma]), then
    `norm` unless fc_norm is used (fc_norm=None means global_pool == 'avg').
    LayerNorm eps 1e-6 (partial(nn.LayerNorm, eps=1e-6)) unless given.
  * forward_features = norm(blocks(...)), all tokens: what MoVA's patched
    VisionTransformer.forward returns.
  * forward_head: 'token' -> x[:, 0], 'avg' -> mean of the patch tokens, then
    fc_norm; open_clip TimmModel.head: Dropout then Linear(d, embed_dim,
    bias=proj_bias) named head.proj.
  * OpenClipLike: the state-dict layout of an open_clip CLIP/CustomTextCLIP
    with a timm vision tower: visual.trunk.*, visual.head.proj.weight, and a
    text tower plus logit_scale (random, unused) beside it.

`mut` (a set of strings) switches on deliberate mistakes; the parity script
requires each to move the outputs far past the tolerance.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def act_fn(name, mut):
    if "gelu_tanh" in mut and name == "gelu":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    raise ValueError(name)


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim, bias):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch, bias=bias)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)   # [B, N, d], row-major grid


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads, self.dh = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = ((q * self.dh ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    def __init__(self, dim, init):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden, act):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, init_values, eps, act):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=0,
                 global_pool="token", embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
                 qkv_bias=True, init_values=None, class_token=True, no_embed_class=False,
                 reg_tokens=0, pre_norm=False, fc_norm=None, eps=1e-6, act="gelu", mut=()):
        super().__init__()
        use_fc_norm = global_pool == "avg" if fc_norm is None else fc_norm
        if "eps" in mut:
            eps = 1e-5 if eps != 1e-5 else 1e-6
        a = act_fn(act, mut)
        self.global_pool, self.no_embed_class, self.mut = global_pool, no_embed_class, mut
        self.num_prefix_tokens = (1 if class_token else 0) + reg_tokens
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, bias=not pre_norm)
        n = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        rows = n if no_embed_class else n + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, rows, embed_dim) * 0.02)
        self.norm_pre = nn.LayerNorm(embed_dim, eps=eps) if pre_norm else nn.Identity()
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias,
                                            init_values, eps, a) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=eps) if not use_fc_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(embed_dim, eps=eps) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _pos_embed(self, x):
        pre = []
        if self.cls_token is not None:
            pre.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.reg_token is not None:
            pre.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:
            x = x + self.pos_embed
            return torch.cat(pre + [x], dim=1) if pre else x
        if pre:
            x = torch.cat(pre + [x], dim=1)
        return x + self.pos_embed

    def hidden_states(self, x):
        """[after norm_pre, after block 1, ..., after block L] (before `norm`)."""
        x = self.norm_pre(self._pos_embed(self.patch_embed(x)))
        out = [x]
        for b in self.blocks:
            x = b(x)
            out.append(x)
        return out

    def forward_features(self, x):
        h = self.hidden_states(x)[-1]
        return h if "no_final_norm" in self.mut else self.norm(h)

    def forward_head(self, x):
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens:].mean(dim=1)
        elif self.global_pool:
            x = x[:, 0]
        return self.fc_norm(x)


class TimmModel(nn.Module):
    """open_clip TimmModel with proj='linear' (trunk + head.drop + head.proj)."""

    def __init__(self, trunk, embed_dim, proj_bias=False):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Sequential()
        self.head.add_module("drop", nn.Dropout(0.0))
        self.head.add_module("proj", nn.Linear(trunk.pos_embed.shape[-1], embed_dim,
                                               bias=proj_bias))

    def outputs(self, x):
        """What vtok encode writes: hidden_states, last_hidden_state (MoVA's
        patched trunk.forward = forward_features), pooler_output (the trunk's
        forward_head) and image_embeds (the unpatched TimmModel.forward)."""
        hs = self.trunk.hidden_states(x)
        last = self.trunk.forward_features(x)
        pooled = self.trunk.forward_head(last)
        return {"hidden_states": hs, "last_hidden_state": last, "pooler_output": pooled,
                "image_embeds": self.head(pooled)}


class TextStub(nn.Module):
    """Stands in for BiomedCLIP's HF text tower: tensors the vision loader must ignore."""

    def __init__(self, d=16):
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.embeddings = nn.Module()
        self.transformer.embeddings.word_embeddings = nn.Embedding(30, d)
        self.proj = nn.Sequential(nn.Linear(d, 2 * d, bias=False), nn.GELU(),
                                  nn.Linear(2 * d, d, bias=False))


class OpenClipLike(nn.Module):
    def __init__(self, visual):
        super().__init__()
        self.visual = visual
        self.text = TextStub()
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))


def randomize(model, gen, small=()):
    """Weights large enough that a wrong eps, activation or order shows.
    Names starting with an entry of `small` get std 3e-3 (LayerNorm then sees a
    variance near eps)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            last = name.split(".")[-1]
            if any(name.startswith(s) for s in small):
                p.copy_(torch.randn(p.shape, generator=gen) * 3e-3)
            elif last == "bias":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            elif last == "gamma":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif p.ndim == 1 and "norm" in name:
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 0:
                pass
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(fan_in)))
    return model
