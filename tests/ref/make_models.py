#!/usr/bin/env python3
"""Generate tiny, numerically *sensitive* random HF model folders, inputs and
the PyTorch reference outputs for the vtok parity tests.

    make_models.py --out DIR [--force] [--only NAME,...] [--quiet]

Layout written under DIR:
    models/<name>/config.json, model.safetensors | model-0000K-of-0000N.safetensors
                  + model.safetensors.index.json
    cases/<name>/pixels_<label>.npy            float32 [2, 3, H, W], N(0, 1)
    cases/<name>/expected_<label>/<out>.npy    float32 reference outputs
    manifest.json                              what was generated, accuracy and
                                               sensitivity numbers
    .stamp                                     cache key (sources + torch version)

Each model is built with hf_vision.build_model() from the very config.json
that is written (so default-filling of omitted keys is exercised), weights are
drawn with a fixed seed, rounded to the storage dtype (F32/F16/BF16) and the
rounded values are what the reference uses, in float32.

Checks done here for every model and input (generation fails otherwise):
  * accuracy: the float32 reference vs the same weights run in float64,
    max|f32 - f64| / max|f64| <= F64_TOL for every output;
  * sensitivity: the reference re-run with a wrong LayerNorm eps (each of
    1e-5, 1e-6, 1e-12 that is not the model's), a wrong MLP activation (each
    of gelu / gelu_pytorch_tanh / quick_gelu that is not the model's) and,
    for DINOv2 inputs that need position interpolation, the other
    interpolation variants (antialias on/off, and the other source-coordinate
    rule: scale_factor=(g + 0.1) / M vs size=), must move last_hidden_state
    by more than SENS_MIN relative -- so a vtok that swapped the rules would
    fail parity (tolerance 1e-5); the rule swap is also recorded per case as
    "rule_swap" and must exceed RULE_SWAP_MIN.
Weight scales are chosen for that: the residual stream is kept small
(std ~1e-2, so every LayerNorm input has variance ~1e-4..1e-3 and eps
matters), MLP pre-activations have std ~2 (|x| up to ~6, where the GELU
variants differ), attention logits are O(1).
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_vision as hv  # noqa: E402
import safetensors_io as sio  # noqa: E402

F64_TOL = 5e-6
SENS_MIN = 1e-4
RULE_SWAP_MIN = 1e-3
EPS_SET = (1e-5, 1e-6, 1e-12)
ACT_SET = ("gelu", "gelu_pytorch_tanh", "quick_gelu")
TORCH_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
CFG_DT = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
TF_VERSION = "4.57.1"
FC1_BIAS_SHIFT = 1.5


# --------------------------------------------------------------------- specs

def clip_text_config():
    return {"vocab_size": 99, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16, "projection_dim": 40}


SPECS = [
    # CLIPVisionModel: quick_gelu and eps 1e-5 left to the class defaults;
    # old-style checkpoint with the position_ids buffer.
    dict(name="clip_vision", dtype="F32", shards=1, position_ids=True,
         config={"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
                 "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "image_size": 16, "patch_size": 4, "num_channels": 3},
         inputs=[(16, 16)]),
    # CLIPVisionModelWithProjection with erf GELU (as e.g. laion / EVA-style exports).
    dict(name="clip_vision_proj", dtype="F32", shards=1,
         config={"architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
                 "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3,
                 "num_attention_heads": 3, "image_size": 32, "patch_size": 8, "num_channels": 3,
                 "hidden_act": "gelu", "layer_norm_eps": 1e-05, "projection_dim": 24},
         inputs=[(32, 32)]),
    # Full CLIPModel, F16, nested configs that omit class defaults; the
    # projection size comes from the TOP-LEVEL projection_dim (40), the
    # vision_config has none (class default 512 would be wrong).
    dict(name="clip_full", dtype="F16", shards=1, position_ids=True, extra="clip_text",
         config={"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 40,
                 "logit_scale_init_value": 2.6592,
                 "text_config": dict(clip_text_config()),
                 "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                                   "num_attention_heads": 4, "image_size": 24, "patch_size": 6}},
         inputs=[(24, 24)]),
    dict(name="dinov2", dtype="F32", shards=1,
         config={"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 32,
                 "num_hidden_layers": 3, "num_attention_heads": 2, "mlp_ratio": 4, "image_size": 28,
                 "patch_size": 4, "num_channels": 3, "layerscale_value": 1.0, "qkv_bias": True,
                 "use_swiglu_ffn": False},
         # 28x30: the table's 7x7 grid but H != W, resized under scale_factor (1/s != 1)
         inputs=[(28, 28), (36, 44), (38, 45), (28, 30)]),
    # Current transformers main: size=(H//p, W//p) (config key vtok_pos_interpolation).
    dict(name="dinov2_size", dtype="F32", shards=1,
         config={"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 32,
                 "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 4, "image_size": 28,
                 "patch_size": 4, "layerscale_value": 1.0, "vtok_pos_interpolation": "size"},
         inputs=[(36, 44), (38, 45)]),
    # Patch 8 with a 37x37 table (DINOv2-L/14 at 518 px has 37x37): 192 px is COMM's
    # 336-px case (37 -> 24), 40x56 downsamples to 5x7, 200x312 mixes down and up.
    dict(name="dinov2_p8", dtype="F32", shards=1,
         config={"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 32,
                 "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 4, "image_size": 296,
                 "patch_size": 8, "layerscale_value": 1.0},
         inputs=[(192, 192), (40, 56), (200, 312)]),
    dict(name="dinov2_swiglu", dtype="BF16", shards=2,
         config={"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 48,
                 "num_hidden_layers": 2, "num_attention_heads": 3, "mlp_ratio": 4, "image_size": 24,
                 "patch_size": 4, "layerscale_value": 1.0, "use_swiglu_ffn": True,
                 "layer_norm_eps": 1e-06},
         inputs=[(24, 24), (26, 26), (32, 20)]),
    dict(name="dinov2_reg", dtype="F32", shards=1,
         config={"architectures": ["Dinov2WithRegistersModel"], "model_type": "dinov2_with_registers",
                 "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "mlp_ratio": 4,
                 "image_size": 28, "patch_size": 4, "num_register_tokens": 4, "layerscale_value": 1.0},
         inputs=[(28, 28), (20, 44), (40, 40)]),
    # Registers with the scale_factor rule: antialias=True + scale_factor. Both sides
    # change size in every input: for an unchanged side current torch skips the pass
    # (UpSampleKernel.cpp separable_upsample_generic_Nd_kernel_impl; vtok does the
    # same) while torch 1.13, installed here, still resamples it with 1/s.
    dict(name="dinov2_reg_scale", dtype="F32", shards=1,
         config={"architectures": ["Dinov2WithRegistersModel"], "model_type": "dinov2_with_registers",
                 "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "mlp_ratio": 4,
                 "image_size": 28, "patch_size": 4, "num_register_tokens": 4, "layerscale_value": 1.0,
                 "vtok_pos_interpolation": "scale_offset"},
         inputs=[(20, 44), (40, 36), (96, 16)]),
    dict(name="siglip_vision", dtype="F32", shards=1,
         config={"architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model",
                 "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "image_size": 16, "patch_size": 4, "num_channels": 3},
         inputs=[(16, 16)]),
    dict(name="siglip_full", dtype="F32", shards=1, extra="siglip_text",
         config={"architectures": ["SiglipModel"], "model_type": "siglip",
                 "text_config": {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 1, "num_attention_heads": 2,
                                 "max_position_embeddings": 16},
                 "vision_config": {"hidden_size": 48, "intermediate_size": 192, "num_hidden_layers": 3,
                                   "num_attention_heads": 4, "image_size": 32, "patch_size": 8}},
         inputs=[(32, 32)]),
    # PaliGemma-style tower: vision_use_head false -> no head, no pooler_output.
    dict(name="siglip_nohead", dtype="F32", shards=1,
         config={"architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model",
                 "hidden_size": 32, "intermediate_size": 80, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "image_size": 12, "patch_size": 4, "vision_use_head": False},
         inputs=[(12, 12)]),
    # ViTModel with pooler; layer_norm_eps left to the class default 1e-12.
    dict(name="vit", dtype="F32", shards=1,
         config={"architectures": ["ViTModel"], "model_type": "vit", "hidden_size": 32,
                 "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2,
                 "image_size": 16, "patch_size": 4, "num_channels": 3, "hidden_act": "gelu",
                 "qkv_bias": True, "encoder_stride": 4},
         inputs=[(16, 16)]),
    # Released MAE layout: ViTMAEForPreTraining, encoder under "vit.".
    dict(name="vit_mae", dtype="F32", shards=1, extra="mae_decoder",
         config={"architectures": ["ViTMAEForPreTraining"], "model_type": "vit_mae", "hidden_size": 32,
                 "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "image_size": 16, "patch_size": 4, "num_channels": 3, "hidden_act": "gelu",
                 "layer_norm_eps": 1e-12, "mask_ratio": 0.75, "norm_pix_loss": False,
                 "decoder_hidden_size": 16, "decoder_num_hidden_layers": 1,
                 "decoder_num_attention_heads": 2, "decoder_intermediate_size": 32},
         inputs=[(16, 16)]),
    dict(name="blip2_vision", dtype="F32", shards=1,
         config={"architectures": ["Blip2VisionModel"], "model_type": "blip_2_vision_model",
                 "hidden_size": 48, "intermediate_size": 192, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "image_size": 16, "patch_size": 4, "qkv_bias": True},
         inputs=[(16, 16)]),
    # Blip2ForConditionalGeneration layout, F16, non-default vision eps 1e-5.
    dict(name="blip2_full", dtype="F16", shards=1, extra="blip2_rest",
         config={"architectures": ["Blip2ForConditionalGeneration"], "model_type": "blip-2",
                 "num_query_tokens": 4,
                 "vision_config": {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 3,
                                   "num_attention_heads": 2, "image_size": 24, "patch_size": 8,
                                   "layer_norm_eps": 1e-05, "model_type": "blip_2_vision_model"},
                 "qformer_config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                    "intermediate_size": 64, "encoder_hidden_size": 32, "vocab_size": 50,
                                    "model_type": "blip_2_qformer"},
                 "text_config": {"model_type": "opt", "hidden_size": 16, "num_hidden_layers": 1,
                                 "ffn_dim": 32, "num_attention_heads": 2, "vocab_size": 50,
                                 "word_embed_proj_dim": 16}},
         inputs=[(24, 24)]),
    # Released DeiT layout: DeiTForImageClassificationWithTeacher, model under
    # "deit." with [CLS, distillation] tokens (both with a position row), the
    # pooler present (deit.pooler.dense.*), dummy cls_/distillation_classifier
    # heads; layer_norm_eps left to the class default 1e-12.
    dict(name="deit", dtype="F32", shards=1, extra="deit_heads",
         config={"architectures": ["DeiTForImageClassificationWithTeacher"], "model_type": "deit",
                 "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "image_size": 16, "patch_size": 4, "num_channels": 3,
                 "hidden_act": "gelu", "qkv_bias": True, "encoder_stride": 4},
         inputs=[(16, 16)]),
]
SPEC_BY_NAME = {s["name"]: s for s in SPECS}


# ------------------------------------------------------------ weight drawing

def _randn(g, shape, std):
    return torch.randn(shape, generator=g, dtype=torch.float64).mul_(std).to(torch.float32)


def _role(name):
    """Role of a Linear weight/bias by its HF name."""
    if name.startswith(("head.", "vision_model.head.")) or ".head." in name:
        if "attention.in_proj" in name:
            return "head_in"
        if "attention.out_proj" in name or "mlp.fc2" in name:
            return "head_out"
        if "mlp.fc1" in name:
            return "fc1"
    if "pooler.dense" in name or "visual_projection" in name:
        return "proj"
    for key, role in (("q_proj", "qk"), ("k_proj", "qk"), ("attention.attention.query", "qk"),
                      ("attention.attention.key", "qk"), ("v_proj", "v"), ("attention.attention.value", "v"),
                      ("self_attn.qkv", "qkv"), ("out_proj", "resid"), ("attention.output.dense", "resid"),
                      ("self_attn.projection", "resid"), ("mlp.fc1", "fc1"), ("intermediate.dense", "fc1"),
                      ("weights_in", "fc1"), ("mlp.fc2", "fc2"), ("output.dense", "fc2"), ("weights_out", "fc2")):
        if key in name:
            return role
    return None


@torch.no_grad()
def init_sensitive(model, seed):
    g = torch.Generator().manual_seed(seed)
    d = model.vtok_config.hidden_size
    fam = model.vtok_family
    lin = {id(m): n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for mname, m in model.named_modules():
        if isinstance(m, nn.LayerNorm):
            if mname.endswith("pre_layrnorm"):
                # CLIP: keep the residual stream small after the pre-norm
                m.weight.copy_(0.02 * (1 + 0.2 * _randn(g, m.weight.shape, 1.0)))
                m.bias.copy_(_randn(g, m.bias.shape, 0.002))
            else:
                m.weight.copy_(1 + _randn(g, m.weight.shape, 0.2))
                m.bias.copy_(_randn(g, m.bias.shape, 0.05))
        elif isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(_randn(g, m.weight.shape, 0.01 / fan_in ** 0.5))
            if m.bias is not None:
                m.bias.copy_(_randn(g, m.bias.shape, 0.003))
        elif isinstance(m, nn.Linear):
            role = _role(mname)
            fin = m.in_features
            if role == "qkv":  # BLIP-2 fused [q; k; v] rows, no Linear bias
                m.weight.copy_(torch.cat([_randn(g, (2 * fin, fin), 1.2 / fin ** 0.5),
                                          _randn(g, (fin, fin), 1.0 / fin ** 0.5)]))
                continue
            if role == "qk":
                w, b = 1.2 / fin ** 0.5, 0.1
            elif role == "v":
                w, b = 1.0 / fin ** 0.5, 0.1
            elif role == "resid":
                w, b = 0.015 / fin ** 0.5, 0.003
            elif role == "fc1":
                # pre-activations ~ N(-1.5, ~1.6): |x| up to ~6, many units in
                # x in [-3.5, -1.5] where the GELU variants differ most
                # relative to the activation value
                w, b = 1.5 / fin ** 0.5, 0.5
            elif role == "fc2":
                w, b = 0.02 / (0.35 * fin) ** 0.5, 0.003
            elif role in ("proj", "head_out"):
                w, b = 1.0 / fin ** 0.5, 0.05
            else:
                raise RuntimeError("no init role for %s" % mname)
            m.weight.copy_(_randn(g, m.weight.shape, w))
            if m.bias is not None:
                m.bias.copy_(_randn(g, m.bias.shape, b))
                if role == "fc1":
                    m.bias.sub_(FC1_BIAS_SHIFT)
        elif isinstance(m, nn.MultiheadAttention):
            e = m.embed_dim
            m.in_proj_weight.copy_(torch.cat([_randn(g, (2 * e, e), 1.2 / e ** 0.5),
                                              _randn(g, (e, e), 1.0 / e ** 0.5)]))
            m.in_proj_bias.copy_(_randn(g, m.in_proj_bias.shape, 0.1))
        elif isinstance(m, nn.Embedding):
            m.weight.copy_(_randn(g, m.weight.shape, 0.01))
    for pname, p in model.named_parameters():
        leaf = pname.rsplit(".", 1)[-1]
        if leaf in ("class_embedding", "cls_token", "distillation_token", "register_tokens", "mask_token",
                    "position_embedding", "position_embeddings"):
            if fam == "vit_mae" and leaf == "position_embeddings":
                n = p.shape[1] - 1
                sc = hv.get_2d_sincos_pos_embed(d, int(round(n ** 0.5)), add_cls_token=True)
                # stored table = 0.01 * the fixed sin-cos table (read from the file, as HF does)
                p.copy_(0.01 * torch.from_numpy(sc).float().unsqueeze(0))
            else:
                p.copy_(_randn(g, p.shape, 0.01))
        elif leaf == "probe":
            p.copy_(_randn(g, p.shape, 1.0))
        elif leaf == "lambda1":
            p.copy_(0.5 + torch.rand(p.shape, generator=g, dtype=torch.float64).float())
        elif leaf in ("q_bias", "v_bias"):
            p.copy_(_randn(g, p.shape, 0.1))
    # Anything in the head's MultiheadAttention out_proj is a Linear subclass (handled above).


@torch.no_grad()
def round_to_dtype(model, dt):
    tdt = TORCH_DT[dt]
    for p in model.parameters():
        p.copy_(p.to(tdt).to(torch.float32))


# ---------------------------------------------------- non-vision tensors

def _small(g, shape, std=0.02):
    return _randn(g, shape, std)


def extra_tensors(spec, vc, seed):
    g = torch.Generator().manual_seed(seed + 7)
    cfg = spec["config"]
    out = {}
    kind = spec.get("extra")
    if kind in ("clip_text", "siglip_text"):
        tc = cfg["text_config"]
        dt_, it, nl = tc["hidden_size"], tc["intermediate_size"], tc["num_hidden_layers"]
        p = "text_model."
        out[p + "embeddings.token_embedding.weight"] = _small(g, (tc["vocab_size"], dt_))
        out[p + "embeddings.position_embedding.weight"] = _small(g, (tc["max_position_embeddings"], dt_))
        for i in range(nl):
            lp = p + "encoder.layers.%d." % i
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                out[lp + "self_attn.%s.weight" % proj] = _small(g, (dt_, dt_))
                out[lp + "self_attn.%s.bias" % proj] = _small(g, (dt_,))
            for ln in ("layer_norm1", "layer_norm2"):
                out[lp + ln + ".weight"] = 1 + _small(g, (dt_,))
                out[lp + ln + ".bias"] = _small(g, (dt_,))
            out[lp + "mlp.fc1.weight"] = _small(g, (it, dt_))
            out[lp + "mlp.fc1.bias"] = _small(g, (it,))
            out[lp + "mlp.fc2.weight"] = _small(g, (dt_, it))
            out[lp + "mlp.fc2.bias"] = _small(g, (dt_,))
        out[p + "final_layer_norm.weight"] = 1 + _small(g, (dt_,))
        out[p + "final_layer_norm.bias"] = _small(g, (dt_,))
        if kind == "clip_text":
            out["text_projection.weight"] = _small(g, (cfg["projection_dim"], dt_))
            out["logit_scale"] = torch.tensor(2.6592, dtype=torch.float32)  # 0-d, as in real CLIP
            if spec.get("position_ids"):
                out[p + "embeddings.position_ids"] = torch.arange(tc["max_position_embeddings"]).unsqueeze(0)
        else:
            out[p + "head.weight"] = _small(g, (dt_, dt_))
            out[p + "head.bias"] = _small(g, (dt_,))
            out["logit_scale"] = torch.tensor([2.3026], dtype=torch.float32)
            out["logit_bias"] = torch.tensor([-10.0], dtype=torch.float32)
    elif kind == "mae_decoder":
        dd = cfg["decoder_hidden_size"]
        n = (vc.image_size // vc.patch_size) ** 2
        out["decoder.decoder_embed.weight"] = _small(g, (dd, vc.hidden_size))
        out["decoder.decoder_embed.bias"] = _small(g, (dd,))
        out["decoder.mask_token"] = _small(g, (1, 1, dd))
        out["decoder.decoder_pos_embed"] = torch.from_numpy(
            hv.get_2d_sincos_pos_embed(dd, int(n ** 0.5), add_cls_token=True)).float().unsqueeze(0)
        lp = "decoder.decoder_layers.0."
        for nm in ("query", "key", "value"):
            out[lp + "attention.attention.%s.weight" % nm] = _small(g, (dd, dd))
            out[lp + "attention.attention.%s.bias" % nm] = _small(g, (dd,))
        out[lp + "attention.output.dense.weight"] = _small(g, (dd, dd))
        out[lp + "attention.output.dense.bias"] = _small(g, (dd,))
        di = cfg["decoder_intermediate_size"]
        out[lp + "intermediate.dense.weight"] = _small(g, (di, dd))
        out[lp + "intermediate.dense.bias"] = _small(g, (di,))
        out[lp + "output.dense.weight"] = _small(g, (dd, di))
        out[lp + "output.dense.bias"] = _small(g, (dd,))
        for ln in ("layernorm_before", "layernorm_after"):
            out[lp + ln + ".weight"] = 1 + _small(g, (dd,))
            out[lp + ln + ".bias"] = _small(g, (dd,))
        out["decoder.decoder_norm.weight"] = 1 + _small(g, (dd,))
        out["decoder.decoder_norm.bias"] = _small(g, (dd,))
        out["decoder.decoder_pred.weight"] = _small(g, (vc.patch_size ** 2 * 3, dd))
        out["decoder.decoder_pred.bias"] = _small(g, (vc.patch_size ** 2 * 3,))
    elif kind == "deit_heads":
        nl = 5  # num_labels of the dummy classifier heads
        for h in ("cls_classifier", "distillation_classifier"):
            out[h + ".weight"] = _small(g, (nl, vc.hidden_size))
            out[h + ".bias"] = _small(g, (nl,))
    elif kind == "blip2_rest":
        q = cfg["qformer_config"]["hidden_size"]
        tl = cfg["text_config"]["hidden_size"]
        v = cfg["text_config"]["vocab_size"]
        out["query_tokens"] = _small(g, (1, cfg["num_query_tokens"], q))
        out["qformer.layernorm.weight"] = 1 + _small(g, (q,))
        out["qformer.layernorm.bias"] = _small(g, (q,))
        lp = "qformer.encoder.layer.0."
        for nm in ("query", "key", "value"):
            out[lp + "attention.attention.%s.weight" % nm] = _small(g, (q, q))
            out[lp + "attention.attention.%s.bias" % nm] = _small(g, (q,))
            out[lp + "crossattention.attention.%s.weight" % nm] = _small(
                g, (q, q if nm == "query" else vc.hidden_size))
        out["language_projection.weight"] = _small(g, (tl, q))
        out["language_projection.bias"] = _small(g, (tl,))
        out["language_model.model.decoder.embed_tokens.weight"] = _small(g, (v, tl))
        out["language_model.lm_head.weight"] = _small(g, (v, tl))
    return out


# ------------------------------------------------------------ config output

def config_json(spec):
    cfg = copy.deepcopy(spec["config"])
    cfg["torch_dtype"] = CFG_DT[spec["dtype"]]
    cfg["transformers_version"] = TF_VERSION
    for sub in ("text_config", "vision_config", "qformer_config"):
        if sub in cfg and "model_type" not in cfg[sub]:
            cfg[sub]["model_type"] = {"clip": {"text_config": "clip_text_model",
                                               "vision_config": "clip_vision_model"},
                                      "siglip": {"text_config": "siglip_text_model",
                                                 "vision_config": "siglip_vision_model"}}.get(
                cfg["model_type"], {}).get(sub, cfg[sub].get("model_type"))
    return cfg


# ------------------------------------------------------------------ helpers

def rel_err(a, e):
    a = np.asarray(a, np.float64)
    e = np.asarray(e, np.float64)
    den = np.max(np.abs(e))
    return float(np.max(np.abs(a - e)) / den) if den > 0 else float(np.max(np.abs(a - e)))


def pixels_for(seed, h, w):
    rs = np.random.RandomState(seed)
    return rs.standard_normal((2, 3, h, w)).astype(np.float32)


def source_stamp():
    hsh = hashlib.sha256()
    for fn in ("hf_vision.py", "make_models.py", "safetensors_io.py"):
        with open(os.path.join(HERE, fn), "rb") as f:
            hsh.update(f.read())
    hsh.update(torch.__version__.encode())
    hsh.update(np.__version__.encode())
    return hsh.hexdigest()


def sensitivity(model, pixels, base, spec):
    """Return list of (what, rel change of last_hidden_state, max over outputs)."""
    res = []
    vc = model.vtok_config
    m = copy.deepcopy(model)
    for eps in EPS_SET:
        if eps == vc.layer_norm_eps:
            continue
        hv.set_layer_norm_eps(m, eps)
        out = hv.run(m, pixels)
        res.append(("eps=%g" % eps, rel_err(out["last_hidden_state"], base["last_hidden_state"]),
                    max(rel_err(out[k], base[k]) for k in base)))
    hv.set_layer_norm_eps(m, vc.layer_norm_eps)
    if not (model.vtok_family == "dinov2" and vc.use_swiglu_ffn):
        for act in ACT_SET:
            if act == vc.hidden_act:
                continue
            hv.set_activation(m, act)
            out = hv.run(m, pixels)
            res.append(("act=%s" % act, rel_err(out["last_hidden_state"], base["last_hidden_state"]),
                        max(rel_err(out[k], base[k]) for k in base)))
        hv.set_activation(m, vc.hidden_act)
    if model.vtok_family == "dinov2":
        emb = m.embeddings
        h, w = pixels.shape[2], pixels.shape[3]
        npatch = (h // vc.patch_size) * (w // vc.patch_size)
        if not (npatch == (vc.image_size // vc.patch_size) ** 2 and h == w):
            other = "size" if emb.interp_rule == "scale_offset" else "scale_offset"
            variants = [("antialias=%s" % (not emb.interp_antialias), dict(interp_antialias=not emb.interp_antialias)),
                        ("rule=%s" % other, dict(interp_rule=other))]
            for what, kw in variants:
                m2 = copy.deepcopy(model)
                for k, v in kw.items():
                    setattr(m2.embeddings, k, v)
                out = hv.run(m2, pixels)
                res.append((what, rel_err(out["last_hidden_state"], base["last_hidden_state"]),
                            max(rel_err(out[k], base[k]) for k in base)))
    return res


# ----------------------------------------------------------------- generate

def generate_one(spec, root, seed, log):
    name = spec["name"]
    cfg = config_json(spec)
    model = hv.build_model(cfg)
    init_sensitive(model, seed)
    round_to_dtype(model, spec["dtype"])
    vc = model.vtok_config

    tensors = {k: v.to(TORCH_DT[spec["dtype"]]) for k, v in model.state_dict().items()}
    if spec.get("position_ids"):
        n = (vc.image_size // vc.patch_size) ** 2 + 1
        tensors["vision_model.embeddings.position_ids"] = torch.arange(n, dtype=torch.int64).unsqueeze(0)
    for k, v in extra_tensors(spec, vc, seed).items():
        tensors[k] = v.to(TORCH_DT[spec["dtype"]]) if v.is_floating_point() else v

    mdir = os.path.join(root, "models", name)
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    sio.write_model(mdir, tensors, spec["shards"])

    # Round trip: the reference used for the expected outputs is the one
    # loaded back from disk through the same code path a reader would use.
    model = hv.load_model_dir(mdir)
    n_layers = vc.num_hidden_layers
    cdir = os.path.join(root, "cases", name)
    if os.path.isdir(cdir):
        shutil.rmtree(cdir)
    os.makedirs(cdir)
    cases = []
    for i, (h, w) in enumerate(spec["inputs"]):
        label = "%dx%d" % (h, w)
        pix = pixels_for(seed * 100 + i, h, w)
        np.save(os.path.join(cdir, "pixels_%s.npy" % label), pix)
        base = hv.run(model, pix, torch.float32)
        ref64 = hv.run(copy.deepcopy(model), pix, torch.float64)
        acc = {k: rel_err(base[k], ref64[k]) for k in base}
        worst = max(acc.values())
        if worst > F64_TOL:
            raise RuntimeError("%s %s: float32 reference differs from float64 by %.2e" % (name, label, worst))
        sens = sensitivity(model, pix, base, spec)
        weak = [s for s in sens if s[1] <= SENS_MIN]
        if weak:
            raise RuntimeError("%s %s: not sensitive to %s (%.2e)" % (name, label, weak[0][0], weak[0][1]))
        swap = [s for s in sens if s[0].startswith("rule=")]
        if swap and swap[0][1] <= RULE_SWAP_MIN:
            raise RuntimeError("%s %s: the two position rules differ by only %.2e" % (name, label, swap[0][1]))
        edir = os.path.join(cdir, "expected_%s" % label)
        os.makedirs(edir)
        for k, v in base.items():
            np.save(os.path.join(edir, k + ".npy"), v.astype(np.float32))
        cases.append({"label": label, "pixels": os.path.relpath(os.path.join(cdir, "pixels_%s.npy" % label), root),
                      "expected": os.path.relpath(edir, root), "files": sorted(base),
                      "shapes": {k: list(v.shape) for k, v in base.items()},
                      "f32_vs_f64": worst, "sensitivity": [[a, b, c] for a, b, c in sens],
                      "rule_swap": swap[0][1] if swap else None})
        log("  %-16s %-7s f32-vs-f64 %.1e   min sensitivity %.1e (%s)" % (
            name, label, worst, min(s[1] for s in sens), min(sens, key=lambda s: s[1])[0]))
    return {"name": name, "model_dir": os.path.relpath(mdir, root), "arch": model.vtok_arch,
            "family": model.vtok_family, "dtype": spec["dtype"], "n_layers": n_layers,
            "has_pooler": "pooler_output" in base, "has_image_embeds": "image_embeds" in base,
            "cases": cases}


def generate(root, force=False, only=None, quiet=False):
    """Generate (or reuse) everything under root. Returns the manifest dict."""
    log = (lambda *a: None) if quiet else (lambda s: print(s, flush=True))
    root = os.path.abspath(root)
    stamp = source_stamp()
    man_path = os.path.join(root, "manifest.json")
    stamp_path = os.path.join(root, ".stamp")
    if not force and only is None and os.path.isfile(man_path) and os.path.isfile(stamp_path):
        with open(stamp_path) as f:
            if f.read().strip() == stamp:
                with open(man_path) as f:
                    man = json.load(f)
                if all(os.path.isdir(os.path.join(root, m["model_dir"])) for m in man["models"]):
                    log("reference models up to date in %s" % root)
                    return man
    os.makedirs(root, exist_ok=True)
    if os.path.isfile(stamp_path):
        os.remove(stamp_path)
    torch.set_num_threads(1)
    t0 = time.time()
    models = []
    for idx, spec in enumerate(SPECS):
        if only and spec["name"] not in only:
            continue
        models.append(generate_one(spec, root, 1000 + 17 * idx, log))
    man = {"root": root, "stamp": stamp, "f64_tol": F64_TOL, "sens_min": SENS_MIN, "models": models}
    with open(man_path, "w") as f:
        json.dump(man, f, indent=1)
    if only is None:
        with open(stamp_path, "w") as f:
            f.write(stamp + "\n")
    log("generated %d models in %.1f s" % (len(models), time.time() - t0))
    return man


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated model names")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else None
    generate(a.out, force=a.force, only=only, quiet=a.quiet)


if __name__ == "__main__":
    main()
