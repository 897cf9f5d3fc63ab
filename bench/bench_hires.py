#!/usr/bin/env python3
"""High resolution (issue 13): LLaVA-NeXT anyres and SliME on a 672 x 1008
image vs LLaVA-1.5 at 336, real sizes, random weights.

    /usr/bin/python3 bench/bench_hires.py [--vtok build/vtok] [--threads 2] [--iters 2]
                                          [--rounds 2] [--dtypes f32,bf16]

Per recipe and dtype: `vtok run --iters N --profile` (one warm-up, N timed
runs; the profile splits each run into preprocessing (slicing, resizes,
normalisation), the CLIP towers over every tile, and the connector: MLP,
unpad and newlines for llava-next; the gated mixture, resamplers and the
text-guided selector for slime), the tokens it hands the LLM, then the
LLM's prefill of that many tokens (`vtok generate --max-tokens 1` on the
random TinyLlama-1.1B-config model of bench_llm.py, context raised to 4096:
a 7B LLM costs about 6x that). Rounds interleave the recipes; the table
keeps each cell's best round (the VM is shared: load only adds time).

Models (git-ignored, under bench/.models): the CLIP ViT-L/14-336 folder of
bench_recipes.py, projector / resampler weights per recipe, a one-layer
LLaMA of hidden size 4096 with Mistral's tokenizer for SliME's selector
(its embedding table and separator row), all random.
"""
import argparse
import json
import os
import shutil
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
import llama_ref as L  # noqa: E402
import slime_ref as SR  # noqa: E402

TOKDIR = os.path.join(REPO, "tests", "text", "node_modules", "@lenml", "tokenizer-llama2",
                      "models")
PINS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # llava-v1.6
T0 = time.time()


def log(msg):
    print("[%6.0fs] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


def link_clip(src_root, d):
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, "clip-vit-large-patch14-336")
    if not os.path.exists(dst):
        os.symlink(os.path.join(src_root, "clip-vit-large-patch14-336"), dst)


def make_next(root, llava):
    d = os.path.join(root, "llava-next")
    link_clip(llava, d)
    p = os.path.join(d, "mm_projector.safetensors")
    if not os.path.exists(p):
        BR.write_safetensors(p, {"model.mm_projector.0.weight": BR.rnd(4096, 1024),
                                 "model.mm_projector.0.bias": BR.rnd(4096),
                                 "model.mm_projector.2.weight": BR.rnd(4096, 4096),
                                 "model.mm_projector.2.bias": BR.rnd(4096),
                                 "model.image_newline": BR.rnd(4096)})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llava", "image_aspect_ratio": "anyres",
                   "image_grid_pinpoints": PINS, "mm_patch_merge_type": "spatial_unpad"}, f)
    return d


def make_slime(root, llava):
    d = os.path.join(root, "slime")
    link_clip(llava, d)
    p1, p2 = os.path.join(d, "mm_projector.safetensors"), os.path.join(d, "sampler.safetensors")
    if not os.path.exists(p2):
        log("building %s" % d)
        g = SR.GatedBlock(1024, 4096, 8, target=576)
        s = SR.Resampler(12, 1024, 8)
        for m in (g, s):
            for n, t in m.named_parameters():
                if not n.endswith("pos_embed") and t.dim() == 2:
                    t.data.copy_((torch.randn(t.shape) * 0.02).to(t.dtype))
        BR.write_safetensors(p1, {"model.mm_projector." + k: v.float()
                                  for k, v in g.state_dict().items()})
        BR.write_safetensors(p2, {"model.sampler.post_qformer." + k: v.float()
                                  for k, v in s.state_dict().items()})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llava_llama", "seperator": 1919, "mm_resampler_topp": 0.95,
                   "mm_resampler_temp": 1.0, "mm_learnable_gated": -1}, f)
    return d


def make_llm4096(root):
    d = os.path.join(root, "llm-4096")
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    log("building %s (one layer, hidden 4096)" % d)
    cfg = L.make_config("llama", hidden=4096, layers=1, heads=32, kv_heads=32, vocab=32000,
                        inter=11008, max_pos=4096)
    sd = L.make_weights(cfg, 1)
    L.write_model(d, cfg, {k: v.to(torch.bfloat16) for k, v in sd.items()})
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKDIR, f), d)
    return d


def tiny_llama_4k():
    src = os.path.join(HERE, ".models", "tinyllama-rand")
    if not os.path.exists(os.path.join(src, "config.json")):
        raise SystemExit("run bench/bench_llm.py once first (it writes %s)" % src)
    d = os.path.join(HERE, ".models", "tinyllama-rand-4k")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(src):
        if f != "config.json" and not os.path.exists(os.path.join(d, f)):
            os.symlink(os.path.join(src, f), os.path.join(d, f))
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["max_position_embeddings"] = 4096
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    return d


def vtok_run(vtok, recipe, model, img, dtype, threads, iters, out, extra):
    args = [vtok, "run", "--recipe", recipe, "--model", model, "--image", img, "--out", out,
            "--threads", str(threads), "--iters", str(iters), "--dtype", dtype,
            "--profile"] + extra
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit("%s failed:\n%s" % (" ".join(args), p.stderr))
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    res = [x for x in lines if "median_ms" in x][-1]
    res.update([x for x in lines if "profile" in x][-1]["profile"])
    return res


def prefill_ms(vtok, llm, n_tokens, dtype, threads):
    words = ("The quick brown fox jumps over the lazy dog while the old clock on the wall "
             "keeps ticking. ") * (n_tokens // 19 + 2)
    text = " ".join(words.split()[: max(1, int(n_tokens * 19 / 21))])
    p = subprocess.run([vtok, "generate", "--llm", llm, "-p", text, "--max-tokens", "1",
                        "--json", "--dtype", dtype, "--threads", str(threads), "--ctx", "4096"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit("generate failed: " + p.stderr[-300:])
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return j["prompt_tokens"], j["prefill_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", default=os.path.join(REPO, "build", "vtok"))
    ap.add_argument("--cache", default=os.path.join(HERE, ".models", "recipes"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dtypes", default="f32,bf16")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    os.makedirs(a.cache, exist_ok=True)
    work = os.path.join(a.cache, "work-hires")
    os.makedirs(work, exist_ok=True)
    llava = BR.make_llava(a.cache)
    nxt, slime, llm = make_next(a.cache, llava), make_slime(a.cache, llava), make_llm4096(a.cache)
    tl = tiny_llama_4k()
    img = os.path.join(work, "img_672x1008.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1008, 672, 3), dtype=np.uint8)
                    ).save(img)
    q = ["--llm", llm, "-p", "What is written on the sign in the lower left corner?"]
    cases = [("llava-1.5", llava, []), ("llava-next", nxt, []), ("slime", slime, q)]
    best = {}
    for r in range(a.rounds):
        for name, model, extra in cases:
            for dt in a.dtypes.split(","):
                log("round %d: %s --dtype %s" % (r + 1, name, dt))
                res = vtok_run(a.vtok, name, model, img, dt, a.threads, a.iters,
                               os.path.join(work, "out_%s_%s" % (name, dt)), extra)
                k = (name, dt)
                if k not in best or res["median_ms"] < best[k]["median_ms"]:
                    best[k] = res
                log("  %.0f ms (%s tokens)" % (res["median_ms"], res["tokens"]))
    pre = {}
    for (name, dt), res in sorted(best.items()):
        n = res["tokens"]
        if n not in pre:
            pre[n] = min((prefill_ms(a.vtok, tl, n + 40, "bf16", a.threads) for _ in range(2)),
                         key=lambda x: x[1])
    print("672 x 1008 image, %d threads, best of %d rounds (median of %d runs each); "
          "prefill: TinyLlama-1.1B config, bf16, the image tokens + ~40 text tokens"
          % (a.threads, a.rounds, a.iters))
    print()
    print("| recipe | dtype | tiles | preprocess ms | CLIP ms | connector ms | total ms | "
          "tokens to the LLM | LLM prefill ms (1.1B) |")
    print("|---|---|---|---|---|---|---|---|---|")
    tiles = {"llava-1.5": 1, "llava-next": 5, "slime": 7}
    for (name, dt), res in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        n_pre, ms_pre = pre[res["tokens"]]
        print("| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %d | %.0f (%d tokens) |" % (
            name, dt, tiles[name], res["preprocess_ms"], res["encoders_ms"],
            res["connector_ms"], res["median_ms"], res["tokens"], ms_pre, n_pre))
    return 0


if __name__ == "__main__":
    sys.exit(main())
