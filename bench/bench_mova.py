#!/usr/bin/env python3
"""MoVA (issue 14) at real sizes with random weights: one 672 x 672 image.

    /usr/bin/python3 bench/bench_mova.py [--vtok build/vtok] [--threads 2] [--dtype bf16]

Models (git-ignored, bench/.models/recipes/mova, ~11 GB of float32 files on the
first run): the CLIP ViT-L/14-336 folder of bench_recipes.py run at 672 (position
table resized bicubically), the MoV-Adapter of MoVA-8B's shape (width 1024, 48 x 48,
7 experts of 1536/512/256/1536/768/768/256 channels, 3 blocks, top-3) projecting to
the 2048 of the random TinyLlama-1.1B of bench_llm.py, a BERT-large (24 layers,
1024) inside the checkpoint, and the seven experts at their released shapes:
DINOv2-giant (40 layers, 1536, SwiGLU; 672 -> 518), Vary-B (SAM ViT-B + net_2, 1024),
Co-DETR ViT-L (1024 -> 1280, windows of 16), Pix2Struct-large (18 layers, 1536, 2025
patches), DePlot (Pix2Struct-base), a ViT-B/16 at 224 in BiomedCLIP's place (the same
computation as its timm tower), SAM-H (32 layers, 1280, 1024).

Measured (`vtok run --iters 1 --profile`, times_ms stage from --dump, peak RSS from
wait4): the base CLIP, BERT, each expert and the adapter for 0, 1 (DINOv2-g) and 3
(DINOv2-g, Co-DETR, Pix2Struct) experts and for all seven; peak memory with lazy
experts (only the routed ones load) against all seven loaded; then `vtok chat` with
the LLM routing (its routing pass: recipe + LLM) and an answer pass with 3 experts
(its prefill of the 576 tokens + prompt and 32 decoded tokens), for the LLM passes'
share. A 7B/8B LLM costs about 6-7x the 1.1B's LLM time.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import bench_recipes as BR  # noqa: E402
import bert_ref as B  # noqa: E402
import codetr_ref as CR  # noqa: E402
import hf_vision as hv  # noqa: E402
import mova_ref as MR  # noqa: E402
import p2s_enc_ref as P2S  # noqa: E402
import sam_ref as SR  # noqa: E402

T0 = time.time()
NAMES = ["dinov2", "vary", "codetr", "pix2struct", "deplot", "biomedclip", "sam"]
MEAN_IN, STD_IN = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def log(msg):
    print("[%6.0fs] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


def proc(size, mean=None, std=None):
    p = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": size},
         "crop_size": {"height": size, "width": size}, "do_center_crop": True, "resample": 3,
         "do_pad": True}
    if mean:
        p.update({"image_mean": mean, "image_std": std})
    return p


def small_init(m):
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
    return m


def write_block(d, sd, cfg=None, pre=None, prefix=""):
    os.makedirs(d, exist_ok=True)
    if pre:
        json.dump(pre, open(os.path.join(d, "preprocessor_config.json"), "w"))
    if cfg:
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    BR.write_safetensors(os.path.join(d, "model.safetensors"),
                         {prefix + k: v.detach().float().contiguous() for k, v in sd.items()})


def make(root):
    os.makedirs(root, exist_ok=True)
    llava = os.path.join(os.path.dirname(root), "llava-1.5")
    if not os.path.exists(os.path.join(llava, "clip-vit-large-patch14-336", "config.json")):
        BR.make_llava(os.path.dirname(root))
    clip = os.path.join(root, "clip-vit-large-patch14-336")
    if not os.path.exists(clip):
        os.symlink(os.path.join(llava, "clip-vit-large-patch14-336"), clip)
    done = os.path.join(root, ".done")
    if os.path.exists(done):
        return
    torch.manual_seed(0)
    log("adapter + BERT-large checkpoint")
    ad = small_init(MR.MoVAdapter(1024, 2048, [1536, 512, 256, 1536, 768, 768, 256], 1024, 48,
                                  topk=3, blocks=3))
    vocab = B.make_vocab()
    bcfg = B.make_config(len(vocab), hidden=1024, layers=24, heads=16, inter=4096, max_pos=512)
    bsd = B.make_weights(bcfg, 1, pooler=False)
    t = {"model.mm_projector." + k: v for k, v in ad.state_dict().items()}
    t.update({"model.mm_projector.text_encoder.bert." + k: v for k, v in bsd.items()})
    BR.write_safetensors(os.path.join(root, "model.safetensors"), t)
    bdir = os.path.join(root, "bert-large-uncased")
    os.makedirs(bdir, exist_ok=True)
    json.dump(bcfg, open(os.path.join(bdir, "config.json"), "w"))
    B.write_tokenizer(bdir, vocab)
    del ad, bsd, t
    log("DINOv2-giant")
    dcfg = {"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 1536,
            "num_hidden_layers": 40, "num_attention_heads": 24, "mlp_ratio": 4,
            "use_swiglu_ffn": True, "image_size": 518, "patch_size": 14}
    BR.hf_folder(os.path.join(root, "dinov2-giant"), dcfg, proc(224, MEAN_IN, STD_IN))
    log("Vary-B (SAM ViT-B + net_2)")
    write_block(os.path.join(root, "vary-base"),
                small_init(SR.ImageEncoderViT(1024, 16, 3, 768, 12, 12, 4.0, 256, 14, (2, 5, 8, 11),
                                              True, 512)).state_dict(), pre=proc(1024))
    log("Co-DETR ViT-L")
    write_block(os.path.join(root, "codetr-vit-large"), small_init(CR.CoDETRViT()).state_dict(),
                pre=proc(1024))
    for name, c in (("pix2struct-large", dict(hidden_size=1536, patch_embed_hidden_size=768,
                                              d_ff=3968, d_kv=64, num_attention_heads=24,
                                              num_hidden_layers=18, seq_len=4096)),
                    ("deplot", dict(hidden_size=768, patch_embed_hidden_size=768, d_ff=2048,
                                    d_kv=64, num_attention_heads=12, num_hidden_layers=12,
                                    seq_len=4096))):
        log(name)
        write_block(os.path.join(root, name), small_init(P2S.VisionModel(**c)).state_dict(),
                    cfg={"model_type": "pix2struct",
                         "vision_config": dict(c, model_type="pix2struct_vision_model")},
                    prefix="encoder.")
    log("ViT-B/16 224 (BiomedCLIP's shape)")
    BR.hf_folder(os.path.join(root, "BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"),
                 {"architectures": ["ViTModel"], "model_type": "vit", "hidden_size": 768,
                  "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "image_size": 224, "patch_size": 16})
    log("SAM-H")
    write_block(os.path.join(root, "sam-vit-huge"),
                small_init(SR.ImageEncoderViT(1024, 16, 3, 1280, 32, 16, 4.0, 256, 14,
                                              (7, 15, 23, 31), False)).state_dict(),
                pre=proc(1024))
    open(done, "w").close()


def recipe(work):
    r = json.load(open(os.path.join(REPO, "recipes", "mova.json")))
    p = os.path.join(work, "mova.json")
    json.dump(r, open(p, "w"))
    return p


def rss_run(cmd):
    """Peak RSS (MiB) and wall seconds of cmd via /usr/bin/time."""
    t = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit("%s failed:\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    rss = [int(x.split()[1]) for x in p.stderr.splitlines() if x.startswith("MAXRSS")][-1]
    return p.stdout, p.stderr, time.time() - t, rss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", default=os.path.join(REPO, "build", "vtok"))
    ap.add_argument("--cache", default=os.path.join(HERE, ".models", "recipes", "mova"))
    ap.add_argument("--llm", default=os.path.join(HERE, ".models", "tinyllama-rand"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--work", default="/tmp/vtok-bench-mova")
    a = ap.parse_args()
    make(a.cache)
    os.makedirs(a.work, exist_ok=True)
    rp = recipe(a.work)
    img = os.path.join(a.work, "img672.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (672, 672, 3), dtype=np.uint8)).save(img)
    q = "What is written on the sign in the picture?"
    base = [a.vtok, "run", "--recipe", rp, "--model", a.cache, "--image", img, "-p", q,
            "--threads", str(a.threads), "--dtype", a.dtype]
    rows = []
    for label, spec in (("0 experts", "none"), ("1 expert (A)", "A"),
                        ("3 experts (A,C,D)", "A,C,D"), ("all 7", "A,B,C,D,E,F,G")):
        dump = os.path.join(a.work, "dump_" + spec.replace(",", ""))
        log("vtok run --experts %s" % spec)
        so, se, sec, rss = rss_run(base + ["--experts", spec, "--out", os.path.join(a.work, "out"),
                                           "--dump", dump, "--iters", "1", "--profile"])
        prof = [json.loads(x) for x in so.splitlines() if x.startswith("{\"profile")][-1]["profile"]
        med = [json.loads(x) for x in so.splitlines() if "median_ms" in x][-1]["median_ms"]
        ms = np.load(os.path.join(dump, "times_ms.npy"))[0]
        rows.append((label, med, prof, ms, rss, sec))
        print("%-18s total %8.0f ms  preprocess %6.0f  CLIP-672 %7.0f  connector %7.0f "
              "(BERT %5.0f, adapter %5.0f, experts %s)  peak RSS %6.0f MiB  (process %.0f s)"
              % (label, med, prof["preprocess_ms"], prof["encoders_ms"], prof["connector_ms"],
                 ms[0], ms[1], " ".join("%s %.0f" % (NAMES[k][:6], ms[2 + k])
                                        for k in range(7) if ms[2 + k] > 0) or "-",
                 rss, sec), flush=True)
    # the LLM passes: routing by the LLM (whatever it picks), and an answer with 3 experts
    chat = [a.vtok, "chat", "--recipe", rp, "--model", a.cache, "--llm", a.llm, "--image", img,
            "-p", q, "--threads", str(a.threads), "--dtype", a.dtype, "--format", "vicuna_v1",
            "--max-tokens", "32", "--json"]
    log("vtok chat (LLM routing)")
    so, se, sec, rss = rss_run(chat)
    j = json.loads(so.strip().splitlines()[-1])
    rline = [x for x in se.splitlines() if "routing pass" in x]
    eline = [x for x in se.splitlines() if "experts:" in x]
    print("chat, LLM routing: %s; %s; answer prefill %.0f ms (%d positions, %d reused), "
          "decode %.0f ms (%d ids); process %.1f s, peak RSS %.0f MiB" % (
              rline[0][6:] if rline else "?", eline[0][6:] if eline else "?", j["prefill_ms"],
              j["prompt_tokens"], j["reused_positions"], j["decode_ms"], len(j["ids"]), sec, rss),
          flush=True)
    log("vtok chat --experts A,C,D")
    so, se, sec, rss = rss_run(chat + ["--experts", "A,C,D"])
    j = json.loads(so.strip().splitlines()[-1])
    print("chat, experts A,C,D: answer prefill %.0f ms (%d positions), decode %.0f ms (%d ids); "
          "process %.1f s, peak RSS %.0f MiB" % (j["prefill_ms"], j["prompt_tokens"],
                                                 j["decode_ms"], len(j["ids"]), sec, rss),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
