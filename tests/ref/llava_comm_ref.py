"""PyTorch references of the recipe connectors vtok runs (src/recipes/).

LLaVA-1.5 (haotian-liu/LLaVA):
  llava/model/multimodal_encoder/clip_encoder.py  CLIPVisionTower.feature_select:
      image_features = image_forward_outs.hidden_states[self.select_layer]
      'patch'     -> image_features[:, 1:]      (CLS dropped)
      'cls_patch' -> image_features             (all tokens)
  llava/model/multimodal_projector/builder.py  build_vision_projector:
      'linear'       -> nn.Linear(mm_hidden_size, hidden_size)
      '^mlp(\\d+)x_gelu$' -> Sequential(Linear(mm_hidden, hidden), GELU(),
                                       [Linear(hidden, hidden), GELU()] ...,
                                       Linear(hidden, hidden))
      checkpoint keys model.mm_projector.{0,2}.{weight,bias} (mm_projector.bin);
      llava-hf: multi_modal_projector.linear_{1,2}.
  The vision tower is HF CLIPVisionModel (hf_vision.py), hidden_states as HF.

COMM (Jiang et al. 2023; code not released -- vtok's documented defaults,
docs/RECIPES.md; every option below is a recipe option):
  v1 = sum_i a_i Linear_i(LN_i(clip.hidden_states[i][:, 1:]))   i = 1..L (all)
  v2 = sum_j b_j Linear_j(LN_j(dino.hidden_states[j][:, 1:]))   j = last 6
  out = projector(cat([v1, MLP(v2)], dim=-1))
  module names = vtok's tensor names: clip_merge.layers.{k}.norm / .linear,
  clip_merge.scales, dino_merge.*, dino_mlp.{0,2}, projector.weight/bias.
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_vision as hv  # noqa: E402

ACTS = {"gelu": lambda x: F.gelu(x), "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "quick_gelu": hv.quick_gelu, "relu": F.relu, "silu": F.silu}


def mlp_depth(kind):
    if kind == "identity":
        return 0
    if kind == "linear":
        return 1
    assert kind.startswith("mlp") and kind.endswith("x_gelu"), kind
    return int(kind[3:-6])


class Projector(nn.Module):
    """build_vision_projector as an nn.Sequential (Linear at indices 0, 2, 4, ...).
    `bare=True` with depth 1 is a plain nn.Linear (tensor names weight/bias)."""

    def __init__(self, kind, d_in, d_hidden, d_out, act="gelu", bare=False):
        super().__init__()
        self.depth = mlp_depth(kind)
        self.act = act
        self.bare = bare and self.depth == 1
        if self.bare:
            self.lin = nn.Linear(d_in, d_out)
            return
        mods = []
        for i in range(self.depth):
            a = d_in if i == 0 else d_hidden
            b = d_out if i == self.depth - 1 else d_hidden
            mods.append(nn.Linear(a, b))
            if i < self.depth - 1:
                mods.append(nn.Identity())  # GELU slot (no parameters)
        self.seq = nn.ModuleList(mods)

    def state(self, prefix):
        sd = self.lin.state_dict() if self.bare else self.seq.state_dict()
        return {prefix + k: v for k, v in sd.items()}

    def forward(self, x):
        if self.depth == 0:
            return x
        if self.bare:
            return self.lin(x)
        for i, m in enumerate(self.seq):
            x = ACTS[self.act](x) if i % 2 else m(x)
        return x


class LLNMerge(nn.Module):
    """LLN-Layerscale: out = sum_k s_k * Linear_k(LN_k(x_k)) (options as lln.h)."""

    def __init__(self, K, d_in, d_out, order="ln_linear", shared=False, scale_norm="none",
                 eps=1e-5, bias=True):
        super().__init__()
        self.K, self.order, self.shared, self.scale_norm = K, order, shared, scale_norm
        d_ln = d_in if order == "ln_linear" else d_out
        n = 1 if shared else K
        self.norms = nn.ModuleList([nn.LayerNorm(d_ln, eps=eps) for _ in range(n)])
        self.linears = nn.ModuleList([nn.Linear(d_in, d_out, bias=bias) for _ in range(n)])
        self.scales = nn.Parameter(torch.ones(K))

    def state(self, prefix):
        out = {prefix + "scales": self.scales.detach()}
        for k in range(len(self.norms)):
            p = prefix + ("" if self.shared else "layers.%d." % k)
            for nm, t in self.norms[k].state_dict().items():
                out[p + "norm." + nm] = t
            for nm, t in self.linears[k].state_dict().items():
                out[p + "linear." + nm] = t
        return out

    def forward(self, xs):
        s = self.scales
        if self.scale_norm == "softmax":
            s = torch.softmax(s.double(), 0).to(xs[0].dtype)
        elif self.scale_norm == "sum":
            s = s / s.sum()
        out = 0
        for k, x in enumerate(xs):
            i = 0 if self.shared else k
            if self.order == "ln_linear":
                y = self.linears[i](self.norms[i](x))
            else:
                y = self.norms[i](self.linears[i](x))
            out = out + s[k] * y
        return out


def hidden_index(i, L):
    return i if i >= 0 else L + 1 + i


@torch.no_grad()
def llava(clip_model, pixels, projector, select_layer=-2, select_feature="patch"):
    """Stages of the llava connector: vit, select, projector (numpy)."""
    x = torch.as_tensor(np.asarray(pixels))
    hs = clip_model(x)["hidden_states"]
    vit = hs[select_layer]
    sel = vit[:, 1:] if select_feature == "patch" else vit
    return {"vit": vit.numpy(), "select": sel.numpy(), "projector": projector(sel).numpy()}


@torch.no_grad()
def comm(clip_model, dino_model, pixels, parts, opts):
    """Stages of the comm connector (numpy). parts: dict of modules
    clip_merge, dino_merge (LLNMerge), dino_mlp, projector (Projector)."""
    x = torch.as_tensor(np.asarray(pixels))
    hc = clip_model(x)["hidden_states"]
    hd = dino_model(x)["hidden_states"]
    Lc, Ld = len(hc) - 1, len(hd) - 1
    cl = opts.get("clip_layers", "all")
    cl = list(range(1, Lc + 1)) if cl == "all" else cl
    dl = opts.get("dino_layers", list(range(-min(6, Ld), 0)))
    skip = 0 if opts.get("select_feature", "patch") == "cls_patch" else 1
    cs = [hc[hidden_index(i, Lc)][:, skip:] for i in cl]
    ds = [hd[hidden_index(j, Ld)][:, skip:] for j in dl]
    if opts.get("dino_final_norm", False):
        ds = [dino_model.layernorm(t) for t in ds]
    v1 = parts["clip_merge"](cs)
    v2 = parts["dino_merge"](ds)
    m2 = parts["dino_mlp"](v2)
    cat = torch.cat([v1, m2], dim=1 if opts.get("concat", "channel") == "token" else -1)
    out = parts["projector"](cat)
    res = {"clip": torch.stack([hc[hidden_index(i, Lc)] for i in cl]),
           "dino": torch.stack([hd[hidden_index(j, Ld)] for j in dl]),
           "clip_select": torch.stack(cs), "dino_select": torch.stack(ds),
           "clip_merge": v1, "dino_merge": v2, "dino_mlp": m2, "concat": cat, "projector": out}
    return {k: v.numpy() for k, v in res.items()}
