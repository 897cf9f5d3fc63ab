"""timm_vit_parity.py - `vtok encode` on timm ViT towers (src/models/timm_vit.c) vs
the PyTorch reference of tests/ref/timm_vit_ref.py, on tiny random folders laid
out as released.

Cases:
  biomedclip   an open_clip hub folder as microsoft/BiomedCLIP-PubMedBERT_256-
               vit_base_patch16_224 ships it: open_clip_config.json (timm_model_name
               vit_base_patch16_224, timm_pool "", timm_proj linear) and
               open_clip_pytorch_model.bin (torch.save of the whole CLIP state dict:
               visual.trunk.*, visual.head.proj.weight, a text tower, logit_scale);
               width 768 / 12 heads as released, 2 blocks, 32x32 input.
  biomedclip_st   the same weights as open_clip_model.safetensors.
  timm_hub     a timm hub folder: config.json {"architecture":
               "vit_small_patch16_224.augreg_in21k", "model_args": {...}} and
               model.safetensors with timm's bare names: layer scale, one register
               token, no_embed_class, no qkv bias, classifier head present.
  clip_quick   vit_base_patch16_clip_quickgelu_224 (pre_norm: norm_pre, no patch
               bias, eps 1e-5, quick_gelu), pytorch_model.bin, 1 block.
  gap          vit_medium_patch16_gap_256-like (no class token, 'avg' pool with
               fc_norm=False): last_hidden_state only, no pooler.
Every file vtok writes (last_hidden_state, pooler_output, image_embeds where
the model has them, hidden_states_00..L) must match: max|c - ref| / max|ref|
<= 1e-5, and no other file may appear. Deliberate mistakes in the reference
(eps 1e-5 for 1e-6, tanh GELU, no final norm) must miss by > 10x that, so the
test can fail. Bad inputs must give one clear error line: a missing tensor
(named), a width the model name does not fit (asks for num_heads), an
open_clip tower without a timm trunk, a wrong input size.

usage: timm_vit_parity.py --vtok build/vtok --work DIR
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
import safetensors_io  # noqa: E402
import timm_vit_ref as R  # noqa: E402
from clicheck import check, expect_error, failures, run_ok  # noqa: E402

TOL = 1e-5
MUT_MIN = 10 * TOL
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def rel(a, e):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    return float(np.abs(a - e).max() / np.abs(e).max())


def quiet_embed(model, gen, pre=""):
    """Token embeddings with a variance near LayerNorm's eps, so eps matters."""
    R.randomize(model, gen, small=tuple(pre + s for s in ("cls_token", "pos_embed",
                                                          "reg_token")))
    with torch.no_grad():
        w = (model.get_submodule(pre[:-1]) if pre else model).patch_embed.proj.weight
        w.copy_(torch.randn(w.shape, generator=gen) * (2e-3 / w[0].numel() ** 0.5))
    return model


def pixels(gen, side, n=2):
    x = torch.randn(n, 3, side, side, generator=gen)
    x[1:] *= 30.0  # image 0 small (eps-sensitive), the others large
    return x


def ref_outputs(tower, x, proj=None):
    with torch.no_grad():
        hs = tower.hidden_states(x)
        last = tower.forward_features(x)
        out = {"last_hidden_state": last.numpy()}
        for i, h in enumerate(hs):
            out["hidden_states_%02d" % i] = h.numpy()
        if tower.global_pool == "token":
            pooled = tower.forward_head(last)
            out["pooler_output"] = pooled.numpy()
            if proj is not None:
                out["image_embeds"] = proj(pooled).numpy()
    return out


def encode(vtok, name, folder, px_path, out, extra=()):
    if os.path.isdir(out):
        shutil.rmtree(out)
    ok, _ = run_ok(vtok, f"{name}: vtok encode", ["encode", "--model", folder,
                   "--pixels", px_path, "--layers", "all", "--out", out, *extra])
    if not ok:
        return None
    return {os.path.basename(p)[:-4]: np.load(p) for p in glob.glob(os.path.join(out, "*.npy"))}


def compare(name, got, exp):
    if got is None:
        return
    check(sorted(got) == sorted(exp), f"{name}: files {sorted(got)} == {sorted(exp)}")
    worst = 0.0
    for k, e in exp.items():
        if k not in got:
            continue
        g = got[k]
        if g.shape != e.shape:
            check(False, f"{name}: {k} shape {g.shape} != {e.shape}")
            continue
        err = rel(g, e)
        worst = max(worst, err)
        if k in ("last_hidden_state", "pooler_output", "image_embeds") or err > TOL:
            check(err <= TOL, f"{name}: {k:20s} rel err {err:.3e}")
    check(worst <= TOL, f"{name}: worst over {len(exp)} outputs {worst:.3e} (tol {TOL:g})")


def mutants(name, build, state, x, got, muts, proj=None, pre=""):
    if got is None:
        return
    for m in muts:
        tower = build({m})
        tower.load_state_dict({k[len(pre):]: v for k, v in state.items() if k.startswith(pre)})
        mo = ref_outputs(tower, x, proj)
        err = max(rel(got[k], mo[k]) for k in mo if k in got)
        check(err > MUT_MIN, f"{name}: detects '{m}' ({err:.3e} > {MUT_MIN:g})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    vtok, work = a.vtok, a.work
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    gen = torch.Generator().manual_seed(20240611)
    torch.manual_seed(0)

    # ---- BiomedCLIP: open_clip folder, .bin with the whole CLIP state dict
    print("biomedclip: open_clip TimmModel(vit_base_patch16_224), d 768, 12 heads, 2 blocks, "
          "32x32, proj 768->512")

    def biomed_tower(mut=()):
        return R.VisionTransformer(img_size=32, patch_size=16, embed_dim=768, depth=2,
                                   num_heads=12, mut=mut)

    visual = R.TimmModel(biomed_tower(), 512)
    clip = R.OpenClipLike(visual)
    quiet_embed(clip, gen, "visual.trunk.")
    sd = clip.state_dict()
    B = os.path.join(work, "biomedclip")
    os.makedirs(B)
    oc_cfg = {
        "model_cfg": {
            "embed_dim": 512,
            "vision_cfg": {"timm_model_name": "vit_base_patch16_224",
                           "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear",
                           "image_size": 32},
            "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                         "hf_tokenizer_name":
                             "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                         "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                         "context_length": 256},
        },
        "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD},
    }
    with open(os.path.join(B, "open_clip_config.json"), "w") as f:
        json.dump(oc_cfg, f, indent=2)
    torch.save(sd, os.path.join(B, "open_clip_pytorch_model.bin"))
    x = pixels(gen, 32, 3)
    px = os.path.join(work, "px32.npy")
    np.save(px, x.numpy())
    exp = ref_outputs(visual.trunk, x, visual.head)
    got = encode(vtok, "biomedclip", B, px, os.path.join(work, "out_biomed"),
                 ["--threads", "2"])
    compare("biomedclip (2 threads)", got, exp)
    got1 = encode(vtok, "biomedclip", os.path.join(B, "open_clip_config.json"), px,
                  os.path.join(work, "out_biomed1"), ["--threads", "1"])
    compare("biomedclip (1 thread, path to open_clip_config.json)", got1, exp)
    mutants("biomedclip", biomed_tower, sd, x, got, ["eps", "gelu_tanh", "no_final_norm"],
            visual.head, "visual.trunk.")
    # MoVA's view: the patch tokens after the final norm = last_hidden_state[:, 1:]
    if got is not None:
        with torch.no_grad():
            mova = visual.trunk.forward_features(x)[:, 1:].numpy()  # patched forward, CLS dropped
        e = rel(got["last_hidden_state"][:, 1:], mova)
        check(e <= TOL and mova.shape[1] == 4,
              f"biomedclip: MoVA expert tokens [3, 4, 768] rel err {e:.3e}")

    # ---- the same weights as open_clip_model.safetensors
    S = os.path.join(work, "biomedclip_st")
    os.makedirs(S)
    shutil.copy(os.path.join(B, "open_clip_config.json"), S)
    safetensors_io.write_file(os.path.join(S, "open_clip_model.safetensors"),
                              {k: v.contiguous() for k, v in sd.items()})
    got = encode(vtok, "biomedclip_st", S, px, os.path.join(work, "out_biomed_st"))
    compare("biomedclip_st (safetensors)", got, exp)

    # ---- timm hub folder: bare names, layer scale, a register token, no_embed_class
    print("timm_hub: vit_small_patch16_224 (d 384, 6 heads), 2 blocks, 48x48, ls, 1 reg token, "
          "no_embed_class, no qkv bias")
    args = {"init_values": 1e-5, "reg_tokens": 1, "no_embed_class": True, "qkv_bias": False,
            "img_size": 48, "depth": 2}

    def hub_tower(mut=()):
        return R.VisionTransformer(img_size=48, patch_size=16, embed_dim=384, depth=2,
                                   num_heads=6, qkv_bias=False, init_values=1e-5, reg_tokens=1,
                                   no_embed_class=True, num_classes=10, mut=mut)

    hub = quiet_embed(hub_tower(), gen)
    H = os.path.join(work, "timm_hub")
    os.makedirs(H)
    with open(os.path.join(H, "config.json"), "w") as f:
        json.dump({"architecture": "vit_small_patch16_224", "num_classes": 10,
                   "num_features": 384, "global_pool": "token", "model_args": args,
                   "pretrained_cfg": {"tag": "augreg_in21k", "input_size": [3, 48, 48],
                                      "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}, f)
    safetensors_io.write_file(os.path.join(H, "model.safetensors"),
                              {k: v.contiguous() for k, v in hub.state_dict().items()})
    x48 = pixels(gen, 48)
    px48 = os.path.join(work, "px48.npy")
    np.save(px48, x48.numpy())
    exp = ref_outputs(hub, x48)
    got = encode(vtok, "timm_hub", H, px48, os.path.join(work, "out_hub"))
    compare("timm_hub", got, exp)
    mutants("timm_hub", hub_tower, hub.state_dict(), x48, got, ["eps", "gelu_tanh"])

    # ---- CLIP-style timm tower: norm_pre, no patch bias, eps 1e-5, quick_gelu
    print("clip_quick: vit_base_patch16_clip_quickgelu_224 (pre_norm, eps 1e-5), 1 block, 32x32")
    cq = R.randomize(R.VisionTransformer(img_size=32, patch_size=16, embed_dim=768, depth=1,
                                         num_heads=12, pre_norm=True, eps=1e-5,
                                         act="quick_gelu"), gen)
    Q = os.path.join(work, "clip_quick")
    os.makedirs(Q)
    with open(os.path.join(Q, "config.json"), "w") as f:
        json.dump({"architecture": "vit_base_patch16_clip_quickgelu_224.openai",
                   "num_classes": 0, "num_features": 768, "global_pool": "token"}, f)
    torch.save(cq.state_dict(), os.path.join(Q, "pytorch_model.bin"))
    exp = ref_outputs(cq, x)
    compare("clip_quick", encode(vtok, "clip_quick", Q, px, os.path.join(work, "out_cq")), exp)

    # ---- avg pool without class token: all tokens after norm, no pooler
    print("gap: vit_medium_patch16_gap_256-like (d 512, 8 heads, no CLS, avg pool), 1 block")
    gp = R.randomize(R.VisionTransformer(img_size=32, patch_size=16, embed_dim=512, depth=1,
                                         num_heads=8, class_token=False, global_pool="avg",
                                         fc_norm=False, qkv_bias=False), gen)
    G = os.path.join(work, "gap")
    os.makedirs(G)
    with open(os.path.join(G, "config.json"), "w") as f:
        json.dump({"architecture": "vit_medium_patch16_gap_256", "num_classes": 0,
                   "global_pool": "avg"}, f)
    safetensors_io.write_file(os.path.join(G, "model.safetensors"),
                              {k: v.contiguous() for k, v in gp.state_dict().items()})
    exp = ref_outputs(gp, x)
    compare("gap", encode(vtok, "gap", G, px, os.path.join(work, "out_gap")), exp)

    # ---- bad inputs: one clear line each
    bad = os.path.join(work, "bad_missing")
    os.makedirs(bad)
    shutil.copy(os.path.join(B, "open_clip_config.json"), bad)
    drop = "visual.trunk.blocks.1.mlp.fc2.weight"
    torch.save({k: v for k, v in sd.items() if k != drop},
               os.path.join(bad, "open_clip_pytorch_model.bin"))
    expect_error(vtok, "missing tensor", ["encode", "--model", bad, "--pixels", px, "--out",
                 os.path.join(work, "out_bad1")], ["blocks.1.mlp.fc2.weight", "missing",
                                                   "visual.trunk."])
    bad2 = os.path.join(work, "bad_heads")
    os.makedirs(bad2)
    with open(os.path.join(bad2, "config.json"), "w") as f:
        json.dump({"architecture": "vit_base_patch16_224"}, f)
    safetensors_io.write_file(os.path.join(bad2, "model.safetensors"),
                              {k: v.contiguous() for k, v in gp.state_dict().items()})
    expect_error(vtok, "width vs name", ["encode", "--model", bad2, "--pixels", px, "--out",
                 os.path.join(work, "out_bad2")], ["vit_base_patch16_224", "num_heads"])
    bad3 = os.path.join(work, "bad_native")
    os.makedirs(bad3)
    cfg3 = json.loads(json.dumps(oc_cfg))
    cfg3["model_cfg"]["vision_cfg"] = {"image_size": 224, "layers": 12, "width": 768,
                                       "patch_size": 16}
    with open(os.path.join(bad3, "open_clip_config.json"), "w") as f:
        json.dump(cfg3, f)
    os.symlink(os.path.abspath(os.path.join(B, "open_clip_pytorch_model.bin")),
               os.path.join(bad3, "open_clip_pytorch_model.bin"))
    expect_error(vtok, "no timm trunk", ["encode", "--model", bad3, "--pixels", px, "--out",
                 os.path.join(work, "out_bad3")], ["timm_model_name", "timm trunk"])
    expect_error(vtok, "wrong input size", ["encode", "--model", B, "--pixels", px48, "--out",
                 os.path.join(work, "out_bad4")], ["48"])

    print("%d failure(s)" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
