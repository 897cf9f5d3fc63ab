"""PyTorch reference of the Hugging Face vision encoders that vtok runs.

Plain torch re-implementation (transformers is not available here) of the
forward pass of the transformers classes below, with the SAME module and
parameter names, so that ``state_dict()`` keys equal the tensor names of
released checkpoints.  Only inference semantics (eval mode, no dropout, no
drop-path, no masking) are reproduced.  The attention is the "eager" path:
softmax(Q K^T * scale) V, scale = head_dim ** -0.5 for every family (HF's
default SDPA path computes the same function).

Common output contract (``forward`` returns a dict):
    last_hidden_state  [B, T, D]
    pooler_output      [B, D]       only for families/configs that have one
    image_embeds       [B, P]       only for models with an image projection
    hidden_states      list of L+1 tensors [B, T, D] in HF indexing:
                       hidden_states[0] = the input of the first encoder layer,
                       hidden_states[i] = the output of layer i (1-based),
                       hidden_states[L] = output of the last layer BEFORE any
                       final norm (HF: tie_last_hidden_states=False for all of
                       these vision models).

Not executed against transformers itself (it cannot be installed here): the
semantics below were re-derived from reading the transformers sources, and
the float32 reference is checked against a float64 run of the same code.

Attention softmax: HF's eager path computes softmax in float32 (BLIP-2 in the
input dtype); all runs here are float32 or float64, so this is moot.

Activations (transformers/activations.py, ACT2FN):
    "gelu"              exact erf GELU (nn.functional.gelu)
    "gelu_pytorch_tanh" nn.functional.gelu(approximate="tanh")
    "gelu_new"          0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (same function as tanh GELU)
    "gelu_fast"         0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x^2)))
    "quick_gelu"        x * sigmoid(1.702 x)
    "relu", "silu"/"swish"
All LayerNorms are nn.LayerNorm(D, eps=config.layer_norm_eps), biased var.

Per family (file = src/transformers/models/<dir>/modeling_<dir>.py and the
matching configuration_<dir>.py, huggingface/transformers main, 2025):

CLIP  (clip/modeling_clip.py; CLIPVisionConfig defaults: hidden 768,
      inter 3072, layers 12, heads 12, image 224, patch 32,
      hidden_act "quick_gelu", layer_norm_eps 1e-5, projection_dim 512)
    embeddings: Conv2d(3, D, p, stride p, bias=False) -> flatten -> prepend
      class_embedding [D] -> + position_embedding.weight [N+1, D]
      (the position_ids buffer is non-persistent in current HF; older
      checkpoints still contain vision_model.embeddings.position_ids int64).
    hidden_states[0] = pre_layrnorm(embeddings)   (sic: "pre_layrnorm").
    layer: x += out_proj(attn(layer_norm1(x))); x += fc2(act(fc1(layer_norm2(x)))).
    last_hidden_state = encoder output, NOT normalized.
    pooler_output = post_layernorm(last_hidden_state[:, 0]).
    CLIPVisionModelWithProjection: image_embeds = visual_projection(pooler_output)
      (Linear no bias, out = vision projection_dim).  HF's output object of
      this class has no pooler_output field; we still export the vision
      tower's pooler_output (the vector image_embeds is projected from).
    CLIPModel: image_embeds = get_image_features() = visual_projection(pooler)
      with the TOP-LEVEL projection_dim (vision_config.projection_dim is
      ignored); NOT L2-normalized (CLIPModel.forward normalizes, we don't).
    Non-native sizes need interpolate_pos_encoding=True (default False ->
      HF raises); interpolation = bicubic, size=(H//p, W//p),
      align_corners=False, no antialias, no dtype cast.

SigLIP (siglip/modeling_siglip.py; SiglipVisionConfig defaults: hidden 768,
      inter 3072, layers 12, heads 12, image 224, patch 16,
      hidden_act "gelu_pytorch_tanh", layer_norm_eps 1e-6)
    embeddings: Conv2d(3, D, p, stride p, bias=True) + position_embedding
      [N, D]; NO class token.  hidden_states[0] = embeddings.
    layers as CLIP (q/k/v/out_proj, layer_norm1/2, mlp.fc1/fc2).
    last_hidden_state = post_layernorm(encoder output)  (all tokens).
    pooler_output = head(last_hidden_state) when the head exists:
      HF builds it unless the config has an attribute vision_use_head that is
      false (SiglipVisionConfig has no such field by default -> head on;
      PaliGemma-style configs write "vision_use_head": false).
      head = SiglipMultiheadAttentionPoolingHead:
        probe [1,1,D] (repeated over batch) is the query, last_hidden_state
        the key and value of torch.nn.MultiheadAttention(D, heads,
        batch_first=True): params head.attention.in_proj_weight [3D, D]
        (rows q|k|v), in_proj_bias [3D], out_proj.weight/bias;
        h = attn; h = h + mlp(layernorm(h)) (head.layernorm, head.mlp.fc1/fc2
        with config hidden_act); pooler_output = h[:, 0].
    SiglipModel: same tower under vision_model.*; get_image_features() is the
      pooler_output (no projection), so no image_embeds is exported.

DINOv2 (dinov2/modeling_dinov2.py; Dinov2Config defaults: hidden 768,
      layers 12, heads 12, mlp_ratio 4, hidden_act "gelu",
      layer_norm_eps 1e-6, image 224, patch 14, qkv_bias True,
      layerscale_value 1.0, use_swiglu_ffn False, use_mask_token True)
    embeddings: projection Conv2d(bias) -> prepend cls_token [1,1,D] ->
      + interpolate_pos_encoding(position_embeddings [1, N+1, D]).
      Position interpolation is ALWAYS on: skipped iff (#patches == N and
      H == W); else patch rows reshaped to [1, D, s, s] (s = sqrt N),
      F.interpolate(float32, scale_factor=((H//p + 0.1) / s, (W//p + 0.1) / s),
      mode="bicubic", align_corners=False) -- the official DINOv2 rule
      (interpolate_offset 0.1; transformers until 2024) and vtok's default --
      or, with config.json "vtok_pos_interpolation": "size", size=(H//p, W//p)
      as current transformers main; no antialias; cast back, CLS row
      unchanged. With scale_factor torch maps source coordinates with 1/scale,
      not s/(H//p), and a same-grid resize (H != W) is not the identity.
      The conv floors: H//p x W//p patches, remainder pixels ignored.
      mask_token [1, D] exists in checkpoints but is unused for inference.
    layer: x = x + layer_scale1(attn(norm1(x))); x = x + layer_scale2(mlp(norm2(x)))
      layer_scale = elementwise * lambda1 [D].
      mlp: fc1 (D -> int(D*mlp_ratio)) -> act -> fc2, or SwiGLU
      (use_swiglu_ffn): h = int(D*mlp_ratio); h = (int(h*2/3)+7)//8*8;
      weights_in D->2h; x1, x2 = chunk(2) (x1 = first h rows);
      weights_out(silu(x1) * x2).
    last_hidden_state = layernorm(encoder output); pooler_output =
      last_hidden_state[:, 0] (no extra op).
  Dinov2WithRegisters (dinov2_with_registers/modeling_dinov2_with_registers.py;
      defaults as DINOv2 but patch 16, layer_norm_eps 1e-6, num_register_tokens 4)
    token order: [CLS, register_tokens (R), patches]; position embeddings are
      added to CLS+patches BEFORE the registers are inserted (registers get no
      position embedding).  Interpolation: F.interpolate(float32,
      size=(H//p, W//p), mode="bicubic", align_corners=False, antialias=True)
      (official *_reg hub models: interpolate_offset 0 -> size=; with
      "vtok_pos_interpolation": "scale_offset" the scale_factor call above
      with antialias=True)
      -- NOTE antialias=True, which (in PyTorch) is a different kernel even
      when upsampling: the separable AA filter with the cubic coefficient
      a = -0.5 (PIL style) and weights renormalised at the borders, versus
      a = -0.75 with clamped border indices for antialias=False.
      Same skip rule (#patches == N and H == W).

ViT (vit/modeling_vit.py; ViTConfig defaults: hidden 768, layers 12,
      heads 12, inter 3072, hidden_act "gelu", layer_norm_eps 1e-12,
      image 224, patch 16, qkv_bias True, pooler_output_size = hidden,
      pooler_act "tanh")
    embeddings: cls_token + patch projection (Conv2d bias) + position_embeddings
      [1, N+1, D]; hidden_states[0] = embeddings.
    layer: x = x + attention.output.dense(attn(layernorm_before(x)));
      x = x + output.dense(act(intermediate.dense(layernorm_after(x)))).
    last_hidden_state = layernorm(encoder output); pooler_output =
      tanh(pooler.dense(last_hidden_state[:, 0])) (ViTModel default
      add_pooling_layer=True; ViTForImageClassification checkpoints have
      no pooler and a "vit." prefix).  Non-native sizes: as CLIP (needs
      interpolate_pos_encoding=True; bicubic size=, no antialias).

DeiT (deit/modeling_deit.py; DeiTConfig defaults as ViT: hidden 768, layers 12,
      heads 12, inter 3072, hidden_act "gelu", layer_norm_eps 1e-12,
      image 224, patch 16, qkv_bias True, encoder_stride 16,
      pooler_output_size = hidden, pooler_act "tanh")
    embeddings: patch projection (Conv2d bias) -> prepend [cls_token,
      distillation_token] (token order CLS, DIST, patches) -> +
      position_embeddings [1, N+2, D] over ALL tokens (both prefix tokens
      have a position row); hidden_states[0] = embeddings.
      Non-native sizes: as ViT (interpolate_pos_encoding=True; the first
      two rows are kept, the patch rows bicubic size=, no antialias).
    layers, final layernorm and pooler exactly as ViT (DeiTLayer etc. are
      "Copied from" ViT): pooler_output = tanh(pooler.dense(
      last_hidden_state[:, 0])) when the model has a pooler.
    Released checkpoints (facebook/deit-*-distilled-*) are
      DeiTForImageClassificationWithTeacher: the model under "deit.",
      heads cls_classifier / distillation_classifier (ignored here).  That
      HF class itself builds DeiTModel(add_pooling_layer=False); we model
      what DeiTModel.from_pretrained() of such a folder computes (prefix
      stripped, pooler used when deit.pooler.* tensors are present), which
      is what vtok runs.  Our DeiTForImageClassificationWithTeacher
      therefore always has the pooler: its checkpoints must carry
      deit.pooler.dense.* (the generated parity model does).

ViT-MAE (vit_mae/modeling_vit_mae.py; ViTMAEConfig defaults as ViT plus
      mask_ratio 0.75)
    Released checkpoints are ViTMAEForPreTraining: encoder under "vit.",
      decoder under "decoder." (ignored).  Used here as a feature extractor:
      HF ViTMAEModel always randomly masks and shuffles; we run it with
      mask_ratio forced to 0.0 and noise = arange(num_patches) so argsort is
      the identity: all patches kept, in raster order (equivalent to calling
      HF with noise=torch.arange(N).expand(B, N) and config.mask_ratio=0).
    embeddings: patches + position_embeddings[:, 1:]; then CLS =
      cls_token + position_embeddings[:, :1] prepended.  The table is stored
      in the checkpoint (fixed 2-D sin-cos in real models) and is read from
      the file, as HF does.
    layers as ViT; last_hidden_state = layernorm(encoder output); no pooler.

BLIP-2 vision (blip_2/modeling_blip_2.py; Blip2VisionConfig defaults:
      hidden 1408, inter 6144, layers 39, heads 16, image 224, patch 14,
      hidden_act "gelu", layer_norm_eps 1e-6, qkv_bias True)
    embeddings: class_embedding [1,1,D], patch_embedding Conv2d(bias),
      position_embedding [1, N+1, D] (a Parameter, not an nn.Embedding).
    attention: self_attn.qkv Linear(D, 3D, bias=False) with bias
      cat(q_bias, zeros, v_bias) (k has no bias); q,k,v split as
      reshape(B, T, 3, heads, hd); output self_attn.projection (Linear+bias).
      (Some transformers 4.4x versions register the concatenated vector as
      self_attn.qkv.bias instead; released checkpoints use q_bias/v_bias.)
    layer: x = x + attn(layer_norm1(x)); x = x + mlp(layer_norm2(x)).
      (layer_norm1/2 use config.layer_norm_eps in current HF; early BLIP-2
      code, transformers ~4.27, built them with nn.LayerNorm's default 1e-5
      while post_layernorm used the config value.)
    last_hidden_state = post_layernorm(encoder output);
    pooler_output = post_layernorm(last_hidden_state[:, 0]) -- the same
      LayerNorm applied a SECOND time to the already-normalised CLS row.
    Blip2ForConditionalGeneration / Blip2Model: same tower under
      "vision_model."; config nested in vision_config (model_type "blip-2").
"""

import json
import math
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


# ----------------------------------------------------------------- activations


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x):
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


ACT2FN = {
    "gelu": F.gelu,
    "gelu_python": lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "quick_gelu": quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


class Act(nn.Module):
    """Activation by name; the name can be swapped (sensitivity tests)."""

    def __init__(self, name):
        super().__init__()
        if name not in ACT2FN:
            raise ValueError("unsupported hidden_act %r" % (name,))
        self.name = name

    def forward(self, x):
        return ACT2FN[self.name](x)


def eager_attention(q, k, v, scale):
    """q, k, v: [B, H, T, hd]. Returns [B, T, H*hd]."""
    w = torch.matmul(q, k.transpose(-1, -2)) * scale
    w = torch.softmax(w, dim=-1)
    o = torch.matmul(w, v)
    b, h, t, hd = o.shape
    return o.transpose(1, 2).reshape(b, t, h * hd)


def split_heads(x, heads):
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


# ----------------------------------------------------------------------- CLIP


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embed_dim = c.hidden_size
        self.image_size = c.image_size
        self.patch_size = c.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(c.hidden_size))
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, bias=False)
        self.num_patches = (c.image_size // c.patch_size) ** 2
        self.num_positions = self.num_patches + 1
        self.position_embedding = nn.Embedding(self.num_positions, c.hidden_size)
        self.register_buffer("position_ids", torch.arange(self.num_positions).expand((1, -1)), persistent=False)

    def interpolate_pos_encoding(self, embeddings, height, width):
        num_patches = embeddings.shape[1] - 1
        pos = self.position_embedding.weight.unsqueeze(0)
        num_positions = pos.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embedding(self.position_ids)
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        dim = embeddings.shape[-1]
        s = int(num_positions ** 0.5)
        patch_pos = patch_pos.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(height // self.patch_size, width // self.patch_size),
                                  mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        b, _, h, w = pixel_values.shape
        if not interpolate_pos_encoding and (h != self.image_size or w != self.image_size):
            raise ValueError("Input image size (%d*%d) doesn't match model (%d*%d)."
                             % (h, w, self.image_size, self.image_size))
        x = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1)
        if interpolate_pos_encoding:
            return x + self.interpolate_pos_encoding(x, h, w)
        return x + self.position_embedding(self.position_ids)


class CLIPAttention(nn.Module):
    """Also SiglipAttention (identical structure and names)."""

    def __init__(self, c):
        super().__init__()
        d = c.hidden_size
        self.num_heads = c.num_attention_heads
        self.head_dim = d // self.num_heads
        if self.head_dim * self.num_heads != d:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        self.scale = self.head_dim ** -0.5
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):
        q = split_heads(self.q_proj(x), self.num_heads)
        k = split_heads(self.k_proj(x), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        return self.out_proj(eager_attention(q, k, v, self.scale))


class CLIPMLP(nn.Module):
    """Also SiglipMLP and Blip2MLP."""

    def __init__(self, c):
        super().__init__()
        self.activation_fn = Act(c.hidden_act)
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        return self.fc2(self.activation_fn(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    """Also SiglipEncoderLayer."""

    def __init__(self, c):
        super().__init__()
        self.self_attn = CLIPAttention(c)
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = CLIPMLP(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        x = x + self.mlp(self.layer_norm2(x))
        return x


class CLIPEncoder(nn.Module):
    """Also SiglipEncoder / Blip2Encoder (attribute `layers`)."""

    def __init__(self, c, layer_cls=CLIPEncoderLayer):
        super().__init__()
        self.layers = nn.ModuleList([layer_cls(c) for _ in range(c.num_hidden_layers)])

    def forward(self, x):
        hs = [x]
        for layer in self.layers:
            x = layer(x)
            hs.append(x)
        return x, hs


class CLIPVisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embeddings = CLIPVisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.encoder = CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        x = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        x = self.pre_layrnorm(x)
        last, hs = self.encoder(x)
        pooled = self.post_layernorm(last[:, 0, :])
        return {"last_hidden_state": last, "pooler_output": pooled, "hidden_states": hs}


class CLIPVisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = CLIPVisionTransformer(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.vision_model(pixel_values, interpolate_pos_encoding)


class CLIPVisionModelWithProjection(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = CLIPVisionTransformer(c)
        self.visual_projection = nn.Linear(c.hidden_size, c.projection_dim, bias=False)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        out = self.vision_model(pixel_values, interpolate_pos_encoding)
        out["image_embeds"] = self.visual_projection(out["pooler_output"])
        return out


class CLIPModel(nn.Module):
    """Vision side of CLIPModel (text tower tensors are ignored when loading)."""

    def __init__(self, c):
        super().__init__()
        self.vision_model = CLIPVisionTransformer(c)
        self.visual_projection = nn.Linear(c.hidden_size, c.projection_dim, bias=False)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        out = self.vision_model(pixel_values, interpolate_pos_encoding)
        out["image_embeds"] = self.visual_projection(out["pooler_output"])  # get_image_features
        return out


# --------------------------------------------------------------------- SigLIP


class SiglipVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.image_size = c.image_size
        self.patch_size = c.patch_size
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size)
        self.num_patches = (c.image_size // c.patch_size) ** 2
        self.num_positions = self.num_patches
        self.position_embedding = nn.Embedding(self.num_positions, c.hidden_size)
        self.register_buffer("position_ids", torch.arange(self.num_positions).expand((1, -1)), persistent=False)

    def interpolate_pos_encoding(self, embeddings, height, width):
        num_patches = embeddings.shape[1]
        num_positions = self.position_embedding.weight.shape[0]
        if num_patches == num_positions and height == width:
            return self.position_embedding(self.position_ids)
        pos = self.position_embedding.weight.unsqueeze(0)
        dim = embeddings.shape[-1]
        s = int(num_positions ** 0.5)
        pos = pos.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(height // self.patch_size, width // self.patch_size),
                            mode="bicubic", align_corners=False)
        return pos.permute(0, 2, 3, 1).reshape(1, -1, dim)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        _, _, h, w = pixel_values.shape
        x = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        if interpolate_pos_encoding:
            return x + self.interpolate_pos_encoding(x, h, w)
        if x.shape[1] != self.num_positions or h != w:
            raise ValueError("Input image size (%d*%d) doesn't match model (%d*%d)."
                             % (h, w, self.image_size, self.image_size))
        return x + self.position_embedding(self.position_ids)


class SiglipMultiheadAttentionPoolingHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.attention = nn.MultiheadAttention(c.hidden_size, c.num_attention_heads, batch_first=True)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = CLIPMLP(c)

    def forward(self, hidden_state):
        b = hidden_state.shape[0]
        probe = self.probe.repeat(b, 1, 1)
        h = self.attention(probe, hidden_state, hidden_state, need_weights=False)[0]
        h = h + self.mlp(self.layernorm(h))
        return h[:, 0]


class SiglipVisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embeddings = SiglipVisionEmbeddings(c)
        self.encoder = CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.use_head = bool(getattr(c, "vision_use_head", True))
        if self.use_head:
            self.head = SiglipMultiheadAttentionPoolingHead(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        x = self.embeddings(pixel_values, interpolate_pos_encoding)
        last, hs = self.encoder(x)
        last = self.post_layernorm(last)
        out = {"last_hidden_state": last, "hidden_states": hs}
        if self.use_head:
            out["pooler_output"] = self.head(last)
        return out


class SiglipVisionModel(nn.Module):
    """SiglipVisionModel and the vision side of SiglipModel (same prefix)."""

    def __init__(self, c):
        super().__init__()
        self.vision_model = SiglipVisionTransformer(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.vision_model(pixel_values, interpolate_pos_encoding)


# ------------------------------------------------------- DINOv2 (+ registers)


class Dinov2PatchEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_channels = c.num_channels
        self.num_patches = (c.image_size // c.patch_size) ** 2
        self.projection = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size)

    def forward(self, pixel_values):
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError("Expected %d channels, got %d" % (self.num_channels, pixel_values.shape[1]))
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class Dinov2Embeddings(nn.Module):
    def __init__(self, c, registers=False):
        super().__init__()
        self.config = c
        self.registers = registers
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        if registers or c.use_mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, c.hidden_size))
        if registers:
            self.register_tokens = nn.Parameter(torch.zeros(1, c.num_register_tokens, c.hidden_size))
        self.patch_embeddings = Dinov2PatchEmbeddings(c)
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.patch_embeddings.num_patches + 1, c.hidden_size))
        self.patch_size = c.patch_size
        # interpolation variant: registers -> antialias=True (HF and the official
        # *_reg hub models); the source-coordinate rule from config.json
        # "vtok_pos_interpolation" (vtok's key), by default the official one:
        # scale_factor with interpolate_offset 0.1 for DINOv2, size= for registers.
        self.interp_antialias = registers
        self.interp_rule = getattr(c, "vtok_pos_interpolation", None) or \
            ("size" if registers else "scale_offset")
        if self.interp_rule not in ("scale_offset", "size"):
            raise ValueError("vtok_pos_interpolation must be scale_offset or size, not %r" % (self.interp_rule,))

    def interpolate_pos_encoding(self, embeddings, height, width):
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        cls_pos = self.position_embeddings[:, :1]
        patch_pos = self.position_embeddings[:, 1:]
        dim = embeddings.shape[-1]
        nh, nw = height // self.patch_size, width // self.patch_size
        s = int(num_positions ** 0.5)
        patch_pos = patch_pos.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        target_dtype = patch_pos.dtype
        # HF interpolates in float32 ("at torch.float32 precision"); in our
        # float64 accuracy runs we keep float64 so the check stays meaningful.
        work = patch_pos if patch_pos.dtype == torch.float64 else patch_pos.to(torch.float32)
        if self.interp_rule == "scale_offset":
            # The official call, not a re-derivation: facebookresearch/dinov2
            # dinov2/models/vision_transformer.py (112792f) lines 195-209 with
            # interpolate_offset=0.1:
            #   sx = float(w0 + self.interpolate_offset) / M   (w0 = rows: x is B,C,"w","h")
            #   sy = float(h0 + self.interpolate_offset) / M
            #   nn.functional.interpolate(..., mode="bicubic",
            #       antialias=self.interpolate_antialias, scale_factor=(sx, sy))
            # (transformers v4.40 modeling_dinov2.py: the same doubles as
            # float((nh + 0.1) / math.sqrt(N)), align_corners=False, no antialias.)
            m = int(math.sqrt(num_positions))
            assert num_positions == m * m
            sx = float(nh + 0.1) / m
            sy = float(nw + 0.1) / m
            work = F.interpolate(work, mode="bicubic", antialias=self.interp_antialias,
                                 scale_factor=(sx, sy), align_corners=False)
        elif self.interp_antialias:
            work = F.interpolate(work, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        else:
            work = F.interpolate(work, size=(nh, nw), mode="bicubic", align_corners=False)
        if work.shape[-2] != nh or work.shape[-1] != nw:
            raise ValueError("Width or height does not match with the interpolated position embeddings")
        patch_pos = work.to(target_dtype).permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, pixel_values):
        b, _, h, w = pixel_values.shape
        x = self.patch_embeddings(pixel_values.to(self.patch_embeddings.projection.weight.dtype))
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, h, w)
        if self.registers:
            x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
        return x


class ViTSelfAttention(nn.Module):
    """ViTSelfAttention / Dinov2SelfAttention / ViTMAESelfAttention."""

    def __init__(self, c):
        super().__init__()
        self.num_attention_heads = c.num_attention_heads
        self.attention_head_size = c.hidden_size // c.num_attention_heads
        if self.attention_head_size * self.num_attention_heads != c.hidden_size:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        self.scaling = self.attention_head_size ** -0.5
        self.query = nn.Linear(c.hidden_size, c.hidden_size, bias=c.qkv_bias)
        self.key = nn.Linear(c.hidden_size, c.hidden_size, bias=c.qkv_bias)
        self.value = nn.Linear(c.hidden_size, c.hidden_size, bias=c.qkv_bias)

    def forward(self, x):
        q = split_heads(self.query(x), self.num_attention_heads)
        k = split_heads(self.key(x), self.num_attention_heads)
        v = split_heads(self.value(x), self.num_attention_heads)
        return eager_attention(q, k, v, self.scaling)


class ViTSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x):
        return self.dense(x)


class ViTAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = ViTSelfAttention(c)
        self.output = ViTSelfOutput(c)

    def forward(self, x):
        return self.output(self.attention(x))


class Dinov2LayerScale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lambda1 = nn.Parameter(c.layerscale_value * torch.ones(c.hidden_size))

    def forward(self, x):
        return x * self.lambda1


class Dinov2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        hidden = int(c.hidden_size * c.mlp_ratio)
        self.fc1 = nn.Linear(c.hidden_size, hidden)
        self.activation = Act(c.hidden_act)
        self.fc2 = nn.Linear(hidden, c.hidden_size)

    def forward(self, x):
        return self.fc2(self.activation(self.fc1(x)))


def swiglu_hidden(hidden_size, mlp_ratio):
    h = int(hidden_size * mlp_ratio)
    return (int(h * 2 / 3) + 7) // 8 * 8


class Dinov2SwiGLUFFN(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = swiglu_hidden(c.hidden_size, c.mlp_ratio)
        self.weights_in = nn.Linear(c.hidden_size, 2 * h)
        self.weights_out = nn.Linear(h, c.hidden_size)

    def forward(self, x):
        x1, x2 = self.weights_in(x).chunk(2, dim=-1)
        return self.weights_out(F.silu(x1) * x2)


class Dinov2Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.attention = ViTAttention(c)
        self.layer_scale1 = Dinov2LayerScale(c)
        self.norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = Dinov2SwiGLUFFN(c) if c.use_swiglu_ffn else Dinov2MLP(c)
        self.layer_scale2 = Dinov2LayerScale(c)

    def forward(self, x):
        x = self.layer_scale1(self.attention(self.norm1(x))) + x
        x = self.layer_scale2(self.mlp(self.norm2(x))) + x
        return x


class ViTStyleEncoder(nn.Module):
    """Dinov2Encoder / ViTEncoder / ViTMAEEncoder (attribute `layer`)."""

    def __init__(self, c, layer_cls):
        super().__init__()
        self.layer = nn.ModuleList([layer_cls(c) for _ in range(c.num_hidden_layers)])

    def forward(self, x):
        hs = [x]
        for layer in self.layer:
            x = layer(x)
            hs.append(x)
        return x, hs


class Dinov2Model(nn.Module):
    def __init__(self, c, registers=False):
        super().__init__()
        self.config = c
        self.embeddings = Dinov2Embeddings(c, registers=registers)
        self.encoder = ViTStyleEncoder(c, Dinov2Layer)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values, interpolate_pos_encoding=True):
        x = self.embeddings(pixel_values)
        last, hs = self.encoder(x)
        seq = self.layernorm(last)
        return {"last_hidden_state": seq, "pooler_output": seq[:, 0, :], "hidden_states": hs}


class Dinov2WithRegistersModel(Dinov2Model):
    def __init__(self, c):
        super().__init__(c, registers=True)


# ------------------------------------------------------------ ViT / ViT-MAE


class ViTPatchEmbeddings(Dinov2PatchEmbeddings):
    pass


class ViTEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.patch_embeddings = ViTPatchEmbeddings(c)
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.patch_embeddings.num_patches + 1, c.hidden_size))
        self.patch_size = c.patch_size
        self.image_size = c.image_size

    def interpolate_pos_encoding(self, embeddings, height, width):
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        cls_pos, patch_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        dim = embeddings.shape[-1]
        s = int(num_positions ** 0.5)
        patch_pos = patch_pos.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(height // self.patch_size, width // self.patch_size),
                                  mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        b, _, h, w = pixel_values.shape
        if not interpolate_pos_encoding and (h != self.image_size or w != self.image_size):
            raise ValueError("Input image size (%d*%d) doesn't match model (%d*%d)."
                             % (h, w, self.image_size, self.image_size))
        x = self.patch_embeddings(pixel_values)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        if interpolate_pos_encoding:
            return x + self.interpolate_pos_encoding(x, h, w)
        return x + self.position_embeddings


class ViTIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.intermediate_act_fn = Act(c.hidden_act)

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))


class ViTOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x, residual):
        return self.dense(x) + residual


class ViTLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = ViTAttention(c)
        self.intermediate = ViTIntermediate(c)
        self.output = ViTOutput(c)
        self.layernorm_before = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        x = self.attention(self.layernorm_before(x)) + x
        return self.output(self.intermediate(self.layernorm_after(x)), x)


class ViTPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.pooler_output_size)
        self.activation = Act(c.pooler_act) if c.pooler_act != "tanh" else nn.Tanh()

    def forward(self, x):
        return self.activation(self.dense(x[:, 0]))


class ViTModel(nn.Module):
    def __init__(self, c, add_pooling_layer=True):
        super().__init__()
        self.config = c
        self.embeddings = ViTEmbeddings(c)
        self.encoder = ViTStyleEncoder(c, ViTLayer)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.pooler = ViTPooler(c) if add_pooling_layer else None

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        x = self.embeddings(pixel_values, interpolate_pos_encoding)
        last, hs = self.encoder(x)
        seq = self.layernorm(last)
        out = {"last_hidden_state": seq, "hidden_states": hs}
        if self.pooler is not None:
            out["pooler_output"] = self.pooler(seq)
        return out


# -------------------------------------------------------------------- DeiT


class DeiTEmbeddings(nn.Module):
    """[CLS, distillation, patches] + position_embeddings [1, N+2, D] (all tokens)."""

    def __init__(self, c):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.patch_embeddings = ViTPatchEmbeddings(c)
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.patch_embeddings.num_patches + 2, c.hidden_size))
        self.patch_size = c.patch_size
        self.image_size = c.image_size

    def interpolate_pos_encoding(self, embeddings, height, width):
        num_patches = embeddings.shape[1] - 2
        num_positions = self.position_embeddings.shape[1] - 2
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        prefix_pos, patch_pos = self.position_embeddings[:, :2], self.position_embeddings[:, 2:]
        dim = embeddings.shape[-1]
        s = int(num_positions ** 0.5)
        patch_pos = patch_pos.reshape(1, s, s, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(height // self.patch_size, width // self.patch_size),
                                  mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((prefix_pos, patch_pos), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        b, _, h, w = pixel_values.shape
        if not interpolate_pos_encoding and (h != self.image_size or w != self.image_size):
            raise ValueError("Input image size (%d*%d) doesn't match model (%d*%d)."
                             % (h, w, self.image_size, self.image_size))
        x = self.patch_embeddings(pixel_values)
        x = torch.cat((self.cls_token.expand(b, -1, -1), self.distillation_token.expand(b, -1, -1), x), dim=1)
        if interpolate_pos_encoding:
            return x + self.interpolate_pos_encoding(x, h, w)
        return x + self.position_embeddings


class DeiTModel(nn.Module):
    """DeiTModel: ViTModel with DeiTEmbeddings (layers/layernorm/pooler as ViT)."""

    def __init__(self, c, add_pooling_layer=True):
        super().__init__()
        self.config = c
        self.embeddings = DeiTEmbeddings(c)
        self.encoder = ViTStyleEncoder(c, ViTLayer)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.pooler = ViTPooler(c) if add_pooling_layer else None

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        x = self.embeddings(pixel_values, interpolate_pos_encoding)
        last, hs = self.encoder(x)
        seq = self.layernorm(last)
        out = {"last_hidden_state": seq, "hidden_states": hs}
        if self.pooler is not None:
            out["pooler_output"] = self.pooler(seq)
        return out


class DeiTForImageClassificationWithTeacher(nn.Module):
    """Released layout: model under "deit." (WITH the pooler, see the module
    docstring); cls_classifier.* / distillation_classifier.* are ignored."""

    def __init__(self, c):
        super().__init__()
        self.deit = DeiTModel(c, add_pooling_layer=True)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.deit(pixel_values, interpolate_pos_encoding)


def get_2d_sincos_pos_embed(embed_dim, grid_size, add_cls_token=False):
    """Same construction as transformers' vit_mae get_2d_sincos_pos_embed."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=float) / (dim / 2.0)
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    if add_cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


class ViTMAEEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.patch_embeddings = ViTPatchEmbeddings(c)
        self.num_patches = self.patch_embeddings.num_patches
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.num_patches + 1, c.hidden_size),
                                                requires_grad=False)
        self.image_size = c.image_size

    def random_masking(self, seq, noise):
        """HF's random_masking with mask_ratio forced to 0 (keeps every token)."""
        b, n, d = seq.shape
        len_keep = int(n * (1 - 0.0))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        return torch.gather(seq, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))

    def forward(self, pixel_values):
        b, _, h, w = pixel_values.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError("Input image size (%d*%d) doesn't match model (%d*%d)."
                             % (h, w, self.image_size, self.image_size))
        x = self.patch_embeddings(pixel_values)
        pos = self.position_embeddings
        x = x + pos[:, 1:, :]
        noise = torch.arange(x.shape[1], dtype=torch.float32).unsqueeze(0).expand(b, -1)
        x = self.random_masking(x, noise)  # identity order
        cls = (self.cls_token + pos[:, :1, :]).expand(b, -1, -1)
        return torch.cat((cls, x), dim=1)


class ViTMAEModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embeddings = ViTMAEEmbeddings(c)
        self.encoder = ViTStyleEncoder(c, ViTLayer)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        x = self.embeddings(pixel_values)
        last, hs = self.encoder(x)
        return {"last_hidden_state": self.layernorm(last), "hidden_states": hs}


class ViTMAEForPreTraining(nn.Module):
    """Encoder side only (decoder.* tensors are ignored when loading)."""

    def __init__(self, c):
        super().__init__()
        self.vit = ViTMAEModel(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.vit(pixel_values)


# -------------------------------------------------------------------- BLIP-2


class Blip2VisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.image_size = c.image_size
        self.patch_size = c.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.patch_embedding = nn.Conv2d(3, c.hidden_size, c.patch_size, c.patch_size)
        self.num_patches = (c.image_size // c.patch_size) ** 2
        self.num_positions = self.num_patches + 1
        self.position_embedding = nn.Parameter(torch.zeros(1, self.num_positions, c.hidden_size))

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        b, _, h, w = pixel_values.shape
        if h != self.image_size or w != self.image_size:
            # HF silently slices the table for smaller inputs and fails for
            # larger ones; we only define the native size.
            raise ValueError("Input image size (%d*%d) doesn't match model (%d*%d)."
                             % (h, w, self.image_size, self.image_size))
        dt = self.patch_embedding.weight.dtype
        x = self.patch_embedding(pixel_values.to(dt)).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(b, 1, -1).to(dt), x], dim=1)
        return x + self.position_embedding[:, : x.shape[1], :].to(dt)


class Blip2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c.hidden_size
        self.embed_dim = d
        self.num_heads = c.num_attention_heads
        self.head_dim = d // self.num_heads
        if self.head_dim * self.num_heads != d:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        if c.qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(d))
            self.v_bias = nn.Parameter(torch.zeros(d))
        else:
            self.q_bias = None
            self.v_bias = None
        self.projection = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        mixed = F.linear(x, self.qkv.weight, bias)
        mixed = mixed.reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = mixed[0], mixed[1], mixed[2]
        return self.projection(eager_attention(q, k, v, self.scale))


class Blip2EncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Blip2Attention(c)
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = CLIPMLP(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        x = self.self_attn(self.layer_norm1(x)) + x
        x = self.mlp(self.layer_norm2(x)) + x
        return x


class Blip2VisionTransformer(nn.Module):
    """= transformers' Blip2VisionModel (which has no inner wrapper)."""

    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embeddings = Blip2VisionEmbeddings(c)
        self.encoder = CLIPEncoder(c, Blip2EncoderLayer)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        x = self.embeddings(pixel_values)
        last, hs = self.encoder(x)
        last = self.post_layernorm(last)
        pooled = self.post_layernorm(last[:, 0, :])  # second application, as HF
        return {"last_hidden_state": last, "pooler_output": pooled, "hidden_states": hs}


Blip2VisionModel = Blip2VisionTransformer


class Blip2ForConditionalGeneration(nn.Module):
    """Vision side only (qformer / language model tensors are ignored)."""

    def __init__(self, c):
        super().__init__()
        self.vision_model = Blip2VisionTransformer(c)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        return self.vision_model(pixel_values)


# -------------------------------------------------------- config resolution

CLIP_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, projection_dim=512, num_hidden_layers=12,
                            num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5)
SIGLIP_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              num_channels=3, image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh",
                              layer_norm_eps=1e-6)
DINOV2_DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4,
                       hidden_act="gelu", layer_norm_eps=1e-6, image_size=224, patch_size=14, num_channels=3,
                       qkv_bias=True, layerscale_value=1.0, use_swiglu_ffn=False, use_mask_token=True)
DINOV2_REG_DEFAULTS = dict(DINOV2_DEFAULTS, patch_size=16, num_register_tokens=4)
VIT_DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                    hidden_act="gelu", layer_norm_eps=1e-12, image_size=224, patch_size=16, num_channels=3,
                    qkv_bias=True, pooler_output_size=None, pooler_act="tanh")
DEIT_DEFAULTS = dict(VIT_DEFAULTS, encoder_stride=16)
VIT_MAE_DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        hidden_act="gelu", layer_norm_eps=1e-12, image_size=224, patch_size=16, num_channels=3,
                        qkv_bias=True, mask_ratio=0.75)
BLIP2_VISION_DEFAULTS = dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                             image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True,
                             num_channels=3)

# architecture -> (family, module class, defaults, nested vision_config?, non-vision key prefixes)
ARCHS = {
    "CLIPVisionModel": ("clip", CLIPVisionModel, CLIP_VISION_DEFAULTS, False, ()),
    "CLIPVisionModelWithProjection": ("clip", CLIPVisionModelWithProjection, CLIP_VISION_DEFAULTS, False, ()),
    "CLIPModel": ("clip", CLIPModel, CLIP_VISION_DEFAULTS, True, ("text_model.", "text_projection.", "logit_scale")),
    "SiglipVisionModel": ("siglip", SiglipVisionModel, SIGLIP_VISION_DEFAULTS, False, ()),
    "SiglipModel": ("siglip", SiglipVisionModel, SIGLIP_VISION_DEFAULTS, True,
                    ("text_model.", "logit_scale", "logit_bias")),
    "Dinov2Model": ("dinov2", Dinov2Model, DINOV2_DEFAULTS, False, ()),
    "Dinov2WithRegistersModel": ("dinov2", Dinov2WithRegistersModel, DINOV2_REG_DEFAULTS, False, ()),
    "ViTModel": ("vit", ViTModel, VIT_DEFAULTS, False, ()),
    "DeiTModel": ("deit", DeiTModel, DEIT_DEFAULTS, False, ()),
    "DeiTForImageClassificationWithTeacher": ("deit", DeiTForImageClassificationWithTeacher, DEIT_DEFAULTS, False,
                                              ("cls_classifier.", "distillation_classifier.")),
    "ViTMAEModel": ("vit_mae", ViTMAEModel, VIT_MAE_DEFAULTS, False, ()),
    "ViTMAEForPreTraining": ("vit_mae", ViTMAEForPreTraining, VIT_MAE_DEFAULTS, False, ("decoder.",)),
    "Blip2VisionModel": ("blip2", Blip2VisionModel, BLIP2_VISION_DEFAULTS, False, ()),
    "Blip2ForConditionalGeneration": ("blip2", Blip2ForConditionalGeneration, BLIP2_VISION_DEFAULTS, True,
                                      ("qformer.", "query_tokens", "language_projection.", "language_model.")),
    "Blip2Model": ("blip2", Blip2ForConditionalGeneration, BLIP2_VISION_DEFAULTS, True,
                   ("qformer.", "query_tokens", "language_projection.", "language_model.")),
}
MODEL_TYPE_TO_ARCH = {
    "clip_vision_model": "CLIPVisionModel", "clip": "CLIPModel",
    "siglip_vision_model": "SiglipVisionModel", "siglip": "SiglipModel",
    "dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel",
    "vit": "ViTModel", "deit": "DeiTModel", "vit_mae": "ViTMAEModel",
    "blip_2_vision_model": "Blip2VisionModel", "blip-2": "Blip2ForConditionalGeneration",
}
ARCH_MODEL_TYPES = {
    "clip": {"clip_vision_model", "clip"}, "siglip": {"siglip_vision_model", "siglip"},
    "dinov2": {"dinov2", "dinov2_with_registers"}, "vit": {"vit"}, "deit": {"deit"}, "vit_mae": {"vit_mae"},
    "blip2": {"blip_2_vision_model", "blip-2"},
}


class ConfigError(ValueError):
    pass


def resolve_config(cfg):
    """config.json dict -> (arch name, family, SimpleNamespace of vision cfg, nonvision prefixes)."""
    if not isinstance(cfg, dict):
        raise ConfigError("config.json: not a JSON object")
    mt = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch is None:
        arch = MODEL_TYPE_TO_ARCH.get(mt)
    if arch not in ARCHS:
        raise ConfigError("unsupported architecture %r (model_type %r)" % (arch, mt))
    family, cls, defaults, nested, nonvision = ARCHS[arch]
    if mt is not None and mt not in ARCH_MODEL_TYPES[family]:
        raise ConfigError("unsupported model_type %r for architecture %s" % (mt, arch))
    src = cfg
    if nested:
        src = cfg.get("vision_config") or {}
        if not isinstance(src, dict):
            raise ConfigError("config.json: vision_config is not an object")
    v = dict(defaults)
    v.update({k: val for k, val in src.items() if not k.startswith("_")})
    if arch == "CLIPModel":
        v["projection_dim"] = cfg.get("projection_dim", 512)
    if family in ("vit", "deit") and not v.get("pooler_output_size"):
        v["pooler_output_size"] = v["hidden_size"]
    for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size"):
        val = v.get(k)
        if isinstance(val, (list, tuple)) and len(val) == 2 and val[0] == val[1]:
            v[k] = val = val[0]
        if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
            raise ConfigError("config.json: bad %s %r" % (k, val))
    if not isinstance(v.get("layer_norm_eps"), (int, float)) or v["layer_norm_eps"] <= 0:
        raise ConfigError("config.json: bad layer_norm_eps %r" % (v.get("layer_norm_eps"),))
    if family != "dinov2" or not v.get("use_swiglu_ffn"):
        if v.get("hidden_act") not in ACT2FN:
            raise ConfigError("unsupported hidden_act %r" % (v.get("hidden_act"),))
    return arch, family, types.SimpleNamespace(**v), nonvision


def build_model(cfg_dict):
    arch, family, vc, nonvision = resolve_config(cfg_dict)
    model = ARCHS[arch][1](vc)
    model.eval()
    model.vtok_arch = arch
    model.vtok_family = family
    model.vtok_config = vc
    model.vtok_nonvision = nonvision
    return model


def num_prefix_tokens(model):
    fam = model.vtok_family
    if fam == "siglip":
        return 0
    if model.vtok_arch == "Dinov2WithRegistersModel":
        return 1 + model.vtok_config.num_register_tokens
    if fam == "deit":
        return 2  # CLS + distillation token
    return 1


def any_size(model):
    """Whether HF (default call) accepts input sizes other than image_size."""
    return model.vtok_family == "dinov2"


def load_state(model, tensors):
    """Load a checkpoint dict into `model` (upcast to the model dtype).

    Every parameter of the vision path must be present with the right shape.
    Extra tensors are allowed only for the non-vision prefixes of the
    architecture and for position_ids buffers.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    if missing:
        raise KeyError("missing tensor %s" % missing[0])
    for k, p in own.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError("tensor %s has shape %s, expected %s" % (k, list(t.shape), list(p.shape)))
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(tensors[k].to(p.dtype))
    extra = [k for k in tensors if k not in own and not k.endswith("position_ids")
             and not k.startswith(model.vtok_nonvision)]
    return extra


def load_model_dir(path, dtype=torch.float32):
    cfg_path = path if path.endswith(".json") else os.path.join(path, "config.json")
    folder = os.path.dirname(cfg_path)
    with open(cfg_path) as f:
        cfg = json.load(f)
    model = build_model(cfg)
    tensors = safetensors_io.read_model(folder)
    model.to(dtype)
    load_state(model, tensors)
    return model


@torch.no_grad()
def run(model, pixels, dtype=torch.float32):
    """pixels: numpy/torch [B, C, H, W]. Returns dict name -> numpy (in `dtype`)
    with the CLI file names: last_hidden_state, pooler_output, image_embeds,
    hidden_states_00 .. hidden_states_NN."""
    x = torch.as_tensor(np.asarray(pixels)).to(dtype)
    model.to(dtype)
    out = model(x)
    res = {"last_hidden_state": out["last_hidden_state"]}
    for k in ("pooler_output", "image_embeds"):
        if k in out:
            res[k] = out[k]
    for i, h in enumerate(out["hidden_states"]):
        res["hidden_states_%02d" % i] = h
    return {k: v.detach().cpu().numpy() for k, v in res.items()}


def set_layer_norm_eps(model, eps):
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps


def set_activation(model, name):
    n = 0
    for m in model.modules():
        if isinstance(m, Act):
            m.name = name
            n += 1
    return n
