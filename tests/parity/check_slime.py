#!/usr/bin/env python3
"""SliME through `vtok run` and `vtok chat` vs a PyTorch reference of the
official code (tests/ref/slime_ref.py, tests/ref/anyres_ref.py: Pillow for
every image step).

    check_slime.py --vtok build/vtok --work DIR

A tiny CLIP (16 px, patch 4: 16 patch tokens per tile), SliME's grid rule
with a 16-pixel unit, the global mixture with a 16-token target (4 x 4
queries), local resamplers of 2 x 2 queries (their key positions bicubic
2 -> 4 and rounded to float16), a tiny LLaMA with the shapes demo's
tokenizer (the selector reads its embedding table and the separator row).
Images of several grids in one run; per stage <= 1e-5, the kept indices
exact (the cut's margin is printed: no near-tie), the token counts, the
tiles bit-exact; the selection's two settings (config.json's, and a sharp
one from the recipe); the mixture's sensitivity to the float16 rounding of
pos_k; the answer of `vtok chat` against greedy PyTorch on the spliced
sequence; bad inputs with one clear line.
"""
import argparse
import copy
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, os.path.join(REPO, "tests", "image"))
sys.path.insert(0, HERE)
import anyres_ref as ar  # noqa: E402
import llama_ref as L  # noqa: E402
import slime_ref as sr  # noqa: E402
from check_processor import hf_reference_image  # noqa: E402
from check_recipes import CLIP_CFG, CLIP_PROC, make_encoder, rel  # noqa: E402
from clicheck import check, expect_error, failures, run_ok  # noqa: E402

TOL = 1e-5
TOKDIR = os.path.join(REPO, "models", "shapes", "llava", "llm")
@torch.no_grad()
def init(m, seed):
    gen = torch.Generator().manual_seed(seed)
    for name, p in m.named_parameters():
        if name.endswith("pos_embed"):
            continue
        if p.dim() == 1:  # LayerNorm / biases
            base = 1.0 if name.endswith("weight") else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
        elif name.endswith("w_gate"):
            p.copy_((torch.randn(p.shape, generator=gen) * 0.5).to(p.dtype))
        elif name == "query" or name.endswith(".query"):
            p.copy_(torch.randn(p.shape, generator=gen))
        else:
            p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    vtok = os.path.abspath(a.vtok)
    work = os.path.abspath(a.work)
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    torch.set_grad_enabled(False)

    d, C, heads, target, q_grid = 32, 48, 2, 16, 2
    M = os.path.join(work, "slime")
    clip = make_encoder(CLIP_CFG, 41, os.path.join(M, "clip-vit-large-patch14-336"), CLIP_PROC)
    gated = sr.GatedBlock(d, C, heads, target=target)
    init(gated, 42)
    post = sr.Resampler(q_grid, d, heads)
    init(post, 43)
    torch.save({"model.mm_projector." + k: v for k, v in gated.state_dict().items()},
               os.path.join(M, "mm_projector.bin"))
    torch.save({"model.sampler.post_qformer." + k: v for k, v in post.state_dict().items()},
               os.path.join(M, "sampler.bin"))
    sep = 11
    with open(os.path.join(M, "config.json"), "w") as f:
        json.dump({"model_type": "llava_llama", "mm_projector_type": "gated",
                   "mm_resampler_type": "cosine", "mm_resampler_topp": 0.95,
                   "mm_resampler_temp": 1.0, "mm_resampler_dim": q_grid * q_grid,
                   "seperator": sep, "mm_learnable_gated": -1}, f)

    # the LLM: tiny random LLaMA with the shapes demo's tokenizer
    llm = os.path.join(work, "llm")
    with open(os.path.join(TOKDIR, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    cfg = L.make_config("llama", hidden=C, layers=2, heads=4, kv_heads=2, vocab=vocab, inter=96,
                        max_pos=1024)
    sd = L.make_weights(cfg, 44)
    L.write_model(llm, cfg, sd)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKDIR, f), llm)
    model = L.Model(cfg, sd)
    table = sd["model.embed_tokens.weight"].float()

    base = json.load(open(os.path.join(REPO, "recipes", "slime.json")))
    rec = copy.deepcopy(base)
    rec["encoders"][0]["slicing"]["unit"] = 16
    rec["connector"]["global"] = {"target_tokens": target, "heads": heads}
    rec["connector"]["local"] = {"heads": heads}
    rp = os.path.join(work, "slime_tiny.json")
    json.dump(rec, open(rp, "w"))

    rng = np.random.default_rng(9)
    sizes = [(30, 20), (20, 45), (16, 16), (100, 12), (40, 40)]
    paths, images = [], []
    for i, (w, h) in enumerate(sizes):
        p = os.path.join(work, "img%d_%dx%d.png" % (i, w, h))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
        images.append(Image.open(p).convert("RGB"))
    grids = []
    px = []
    for im in images:
        best = ar.select_best_resolution_uhd(im.size, 16)
        grids.append((best[0] // 16, best[1] // 16))
        px += [hf_reference_image(CLIP_PROC, t) for t in ar.tiles(im, best, 16, 16)]
    px = np.stack(px)
    print("     grids", grids)
    check(len(set(grids)) >= 4 and (7, 1) in grids or (1, 7) in grids or len(set(grids)) >= 4,
          "the images cover %d grids %s" % (len(set(grids)), grids))
    feats = clip(torch.from_numpy(px))["hidden_states"][-2][:, 1:]
    img_args = sum([["--image", p] for p in paths], [])
    question = "What shape is in the picture?"

    def reference(text_ids, topp, temp, g=gated):
        te = table[torch.tensor(text_ids)]
        return sr.encode(feats, grids, g, post, te, len(paths), table[sep], topp, temp)

    for label, extra, topp, temp in (("config.json's top-p 0.95, temperature 1", {}, 0.95, 1.0),
                                     ("recipe top_p 0.8, temperature 0.4",
                                      {"top_p": 0.8, "temperature": 0.4}, 0.8, 0.4)):
        r2 = copy.deepcopy(rec)
        r2["connector"].update(extra)
        rpath = os.path.join(work, "slime_%s.json" % ("cfg" if not extra else "sharp"))
        json.dump(r2, open(rpath, "w"))
        out, dump = os.path.join(work, "out_" + rpath[-9:-5]), os.path.join(work, "dump_" + rpath[-9:-5])
        ok, _ = run_ok(vtok, "vtok run slime (%s)" % label,
                       ["run", "--recipe", rpath, "--model", M, "--llm", llm, "-p", question,
                        "--out", out, "--dump", dump, "--threads", "2"] + img_args)
        if not ok:
            continue
        lay = json.load(open(os.path.join(out, "layout.json")))
        ids = lay["text_ids"]
        exp = reference(ids, topp, temp)
        got_px = np.load(os.path.join(dump, "pixels_vit.npy"))
        check(np.array_equal(got_px, px), "%s: tiles bit-exact %s" % (label, list(got_px.shape)))
        sel = np.load(os.path.join(dump, "select.npy"))
        check(rel(sel, feats.numpy()) <= TOL, "%s: select %s rel %.2e" % (label, list(sel.shape), rel(sel, feats.numpy())))
        for st in ("global", "local_q", "local"):
            e = torch.cat([x[st] if x[st].dim() == 3 else x[st][None] for x in exp]).numpy()
            gotv = np.load(os.path.join(dump, st + ".npy"))
            okk = gotv.shape == e.shape
            check(okk and rel(gotv, e) <= TOL, "%s: stage %-8s %s rel %s" % (
                label, st, list(gotv.shape), "%.2e" % rel(gotv, e) if okk else "shape %s" % list(e.shape)))
        sc = np.load(os.path.join(dump, "scores.npy"))
        es = [x["scores"].numpy() for x in exp]
        err = max(rel(sc[i, :len(v)], v) for i, v in enumerate(es))
        check(err <= TOL, "%s: selector scores rel %.2e" % (label, err))
        kept = [x["kept"].tolist() for x in exp]
        margin = min(x["margin"] for x in exp)
        check(lay.get("kept") == kept, "%s: kept indices exact (%s of %s local tokens; cut margin "
              "%.1e)" % (label, [len(k) for k in kept], [g[0] * g[1] * 4 for g in grids], margin))
        toks = torch.cat([x["tokens"] for x in exp]).numpy()
        emb = np.load(os.path.join(out, "embeddings.npy"))
        check(emb.shape == toks.shape and rel(emb, toks) <= TOL,
              "%s: tokens %s rel %s" % (label, list(emb.shape), "%.2e" % rel(emb, toks)
                                        if emb.shape == toks.shape else "shape %s" % list(toks.shape)))
        check(lay.get("tokens") == [int(x["tokens"].shape[0]) for x in exp],
              "%s: layout.json tokens %s" % (label, lay.get("tokens")))
        if extra:
            check(all(len(k) < g[0] * g[1] * 4 for k, g in zip(kept, grids)),
                  "%s: the sharp setting drops local tokens of every image" % label)

    # bf16 / int8: the global rows close to f32 and really different (the
    # kept set may move with the scores, so the tokens are not compared)
    e_glob = torch.cat([x["global"] for x in reference(ids, 0.95, 1.0)]).numpy().astype(np.float64).ravel()
    for dt, min_cos in (("bf16", 0.999), ("int8", 0.99)):
        o, dd = os.path.join(work, "out_" + dt), os.path.join(work, "dump_" + dt)
        ok, _ = run_ok(vtok, "slime --dtype " + dt, ["run", "--recipe", rp, "--model", M, "--llm",
                                                     llm, "-p", question, "--out", o, "--dump",
                                                     dd, "--dtype", dt] + img_args)
        if ok:
            got = np.load(os.path.join(dd, "global.npy")).astype(np.float64).ravel()
            cos = float(got @ e_glob / (np.linalg.norm(got) * np.linalg.norm(e_glob)))
            check(cos >= min_cos and rel(got, e_glob) > 1e-6,
                  "slime --dtype %s: global rows cosine %.6f (>= %g)" % (dt, cos, min_cos))

    # the float16 rounding of the resampled key positions matters here
    post.round_half = False
    te = table[torch.tensor([1, 5, 9])]
    a1 = sr.encode(feats, grids, gated, post, te, 1, table[sep], 0.95, 1.0)
    post.round_half = True
    a2 = sr.encode(feats, grids, gated, post, te, 1, table[sep], 0.95, 1.0)
    sens = max(rel(x["local_q"].numpy(), y["local_q"].numpy()) for x, y in zip(a1, a2))
    check(sens > TOL, "reference sensitivity: pos_k without float16 rounding moves local_q by "
          "%.2e" % sens)

    # chat: one image, the answer = greedy PyTorch over the spliced sequence
    N = 8
    ok, outp = run_ok(vtok, "vtok chat slime", ["chat", "--recipe", rp, "--model", M, "--llm", llm,
                                                "--image", paths[0], "-p", question, "--max-tokens",
                                                str(N), "--json"])
    if ok:
        got = json.loads(outp.strip().splitlines()[-1])
        pids = got["prompt_ids"]
        out1 = os.path.join(work, "out_chat_ref")
        ok2, _ = run_ok(vtok, "vtok run slime (one image, chat's prompt)",
                        ["run", "--recipe", rp, "--model", M, "--llm", llm, "-p", question,
                         "--out", out1, "--image", paths[0]])
        if ok2:
            text_ids = json.load(open(os.path.join(out1, "layout.json")))["text_ids"]
            grids1 = grids[:1]
            n1 = 1 + grids1[0][0] * grids1[0][1]
            e1 = sr.encode(feats[:n1], grids1, gated, post, table[torch.tensor(text_ids)], 1,
                           table[sep], 0.95, 1.0)[0]["tokens"]
            n_img = int(e1.shape[0])
            # the chat's prompt: the text ids with the image's n_img positions
            # after the first `pre` of them (LLaVA's chunk rule)
            pre = None
            for k in range(len(text_ids) + 1):
                if pids[:k] == text_ids[:k] and pids[k + n_img:] == text_ids[k:]:
                    pre = k
                    break
            check(pre is not None and got["image_positions"] == n_img,
                  "chat: prompt = text ids around %d image rows" % n_img)
            if pre is not None:
                x = torch.cat([model.embed(torch.tensor(text_ids[:pre])), e1,
                               model.embed(torch.tensor(text_ids[pre:]))])
                ref_ids = model.greedy(x, N)
                check(got["ids"] == ref_ids, "chat slime: %d greedy ids equal the reference %s"
                      % (N, got["ids"]))

    # bad inputs
    expect_error(vtok, "no llm", ["run", "--recipe", rp, "--model", M, "--out",
                                  os.path.join(work, "x")] + img_args[:2], ["--llm", "-p"])
    big = os.path.join(work, "llm_wide")
    cfg2 = L.make_config("llama", hidden=64, layers=1, heads=4, kv_heads=2, vocab=vocab,
                         inter=96, max_pos=512)
    L.write_model(big, cfg2, L.make_weights(cfg2, 45))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKDIR, f), big)
    expect_error(vtok, "llm hidden size", ["run", "--recipe", rp, "--model", M, "--llm", big,
                                           "-p", question, "--out", os.path.join(work, "x")]
                 + img_args[:2], ["hidden size"])
    r3 = copy.deepcopy(rec)
    r3["connector"]["separator"] = vocab + 5
    bad = os.path.join(work, "bad_sep.json")
    json.dump(r3, open(bad, "w"))
    expect_error(vtok, "separator out of vocab", ["run", "--recipe", bad, "--model", M, "--llm",
                                                  llm, "-p", question, "--out",
                                                  os.path.join(work, "x")] + img_args[:2],
                 ["separator"])
    N2 = os.path.join(work, "no-sampler")
    shutil.copytree(M, N2)
    os.remove(os.path.join(N2, "sampler.bin"))
    expect_error(vtok, "missing sampler.bin", ["run", "--recipe", rp, "--model", N2, "--llm", llm,
                                               "-p", question, "--out", os.path.join(work, "x")]
                 + img_args[:2], ["sampler.bin"])
    expect_error(vtok, "-p on a recipe without text", ["run", "--recipe", "llava-1.5", "--model",
                                                       os.path.join(REPO, "models", "tiny-llava"),
                                                       "--llm", llm, "-p", question, "--out",
                                                       os.path.join(work, "x")] + img_args[:2],
                 ["does not read the text"])

    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
