#!/usr/bin/env python3
"""LLaVA-NeXT anyres through `vtok run` vs a PyTorch reference of the official
code (tests/ref/anyres_ref.py: Pillow for every image step, the LLaVA merge).

    check_anyres.py --vtok build/vtok --work DIR

A tiny CLIP (16 px, patch 4: a 4 x 4 patch map per tile), pinpoints scaled
from llava-v1.6's by 16/336, mm_projector.bin holding model.mm_projector.*
and model.image_newline, a config.json with image_grid_pinpoints (the shipped
recipe reads them there). Images of several aspect ratios in one run (each
its own grid and token count: ragged), an extreme one, one smaller than a
crop, one pixel, a tie where the first pinpoint wins. Checks per stage
(<= 1e-5), the preprocessed tiles bit for bit (--dump's pixels_vit.npy vs
the reference processor on Pillow's tiles), layout.json's token counts, the
flat / spatial merges and the llava-hf folder layout; bad inputs fail with
one line.
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
import hf_vision as hv  # noqa: E402
import llava_comm_ref as ref  # noqa: E402
import safetensors_io as sio  # noqa: E402
from check_processor import hf_reference_image  # noqa: E402
from check_recipes import CLIP_CFG, CLIP_PROC, init_projector, make_encoder, rel  # noqa: E402
from clicheck import check, expect_error, failures, run_ok  # noqa: E402

TOL = 1e-5
PINS = [[16, 32], [32, 16], [32, 32], [48, 16], [16, 48]]  # llava-v1.6's x 16/336


def ok_run(vtok, name, args):
    return run_ok(vtok, name, args)[0]


@torch.no_grad()
def reference(clip, proj, newline, images, merge_type, pins=PINS, crop=16, base=16, anyres_max=0):
    """Stages of one run over PIL images: pixels, vit, select, projector, tokens."""
    px, grids = [], []
    for im in images:
        best = ar.select_best_resolution(im.size, pins)
        grids.append((best[0] // crop, best[1] // crop))
        px += [hf_reference_image(CLIP_PROC, t) for t in ar.tiles(im, best, crop, base)]
    px = np.stack(px)
    st = ref.llava(clip, px, proj)
    feats = torch.from_numpy(st["projector"])
    out, first = [], 0
    for im, g in zip(images, grids):
        k = 1 + g[0] * g[1]
        out.append(ar.merge(feats[first:first + k], g, im.size, merge_type, newline, anyres_max))
        first += k
    st["pixels"] = px
    st["tokens"] = torch.cat(out).numpy()
    st["counts"] = [int(o.shape[0]) for o in out]
    st["grids"] = grids
    return st


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

    M = os.path.join(work, "llava-next")
    clip = make_encoder(CLIP_CFG, 31, os.path.join(M, "clip-vit-large-patch14-336"), CLIP_PROC)
    proj = ref.Projector("mlp2x_gelu", 32, 48, 48)
    init_projector(proj, 32, 1.0)
    newline = torch.randn(48, generator=torch.Generator().manual_seed(33))
    state = proj.state("model.mm_projector.")
    state["model.image_newline"] = newline.clone()
    torch.save(state, os.path.join(M, "mm_projector.bin"))
    with open(os.path.join(M, "config.json"), "w") as f:
        json.dump({"model_type": "llava", "image_aspect_ratio": "anyres",
                   "image_grid_pinpoints": PINS, "mm_patch_merge_type": "spatial_unpad"}, f)

    rng = np.random.default_rng(7)
    sizes = [(30, 20), (20, 45), (100, 12), (9, 9), (16, 16), (1, 1), (3, 2), (13, 47)]
    paths, images = [], []
    for i, (w, h) in enumerate(sizes):
        p = os.path.join(work, "img%d_%dx%d.png" % (i, w, h))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
        images.append(Image.open(p).convert("RGB"))
    grids = [tuple(x // 16 for x in ar.select_best_resolution(im.size, PINS)) for im in images]
    check(len(set(grids)) >= 4, "the images cover %d different grids: %s" % (len(set(grids)), grids))
    check(grids[6] == (1, 2), "tie (3x2 image): every pinpoint keeps the whole image, the first "
          "with least waste wins (a tall 1x2 grid for a wide image): %s" % (grids[6],))

    odd = 0
    for im, (gw, gh) in zip(images, grids):  # unpad_image margins: an odd one keeps a row more
        W, H, cw, ch = im.size[0], im.size[1], gw * 4, gh * 4
        odd += ((ch - int(H * (cw / W))) if W / H > cw / ch else (cw - int(W * (ch / H)))) % 2
    check(odd > 0, "%d image(s) with an odd unpad margin" % odd)
    exp = reference(clip, proj, newline, images, "spatial_unpad")
    print("     grids", exp["grids"], "token counts", exp["counts"])
    img_args = sum([["--image", p] for p in paths], [])
    out, dump = os.path.join(work, "out"), os.path.join(work, "dump")
    if ok_run(vtok, "llava-next (shipped recipe, pinpoints from config.json)",
              ["run", "--recipe", "llava-next", "--model", M, "--out", out, "--dump", dump,
               "--threads", "2"] + img_args):
        emb = np.load(os.path.join(out, "embeddings.npy"))
        check(emb.shape == exp["tokens"].shape and rel(emb, exp["tokens"]) <= TOL,
              "embeddings %s vs %s rel %.2e" % (list(emb.shape), list(exp["tokens"].shape),
                                                rel(emb, exp["tokens"]) if emb.shape == exp["tokens"].shape else -1))
        for s in ("vit", "select", "projector", "tokens"):
            got = np.load(os.path.join(dump, s + ".npy"))
            ok = got.shape == exp[s].shape
            check(ok and rel(got, exp[s]) <= TOL, "stage %-9s %s rel %s" % (
                s, list(got.shape), "%.2e" % rel(got, exp[s]) if ok else "shape != %s" % list(exp[s].shape)))
        px = np.load(os.path.join(dump, "pixels_vit.npy"))
        check(px.shape == exp["pixels"].shape and np.array_equal(px, exp["pixels"]),
              "pixels of all %d tiles bit-exact with the processor on Pillow's tiles %s"
              % (exp["pixels"].shape[0], list(px.shape)))
        lay = json.load(open(os.path.join(out, "layout.json")))
        check(lay.get("tokens") == exp["counts"] and lay.get("images") == len(paths),
              "layout.json tokens %s" % lay.get("tokens"))
    # bf16 / int8: close to f32 and really different
    f32 = exp["tokens"].astype(np.float64).ravel()
    for dt, min_cos in (("bf16", 0.999), ("int8", 0.99)):
        o = os.path.join(work, "out_" + dt)
        if ok_run(vtok, "llava-next --dtype " + dt, ["run", "--recipe", "llava-next", "--model", M,
                                                      "--out", o, "--dtype", dt] + img_args):
            got = np.load(os.path.join(o, "embeddings.npy")).astype(np.float64).ravel()
            cos = float(got @ f32 / (np.linalg.norm(got) * np.linalg.norm(f32)))
            check(cos >= min_cos and rel(got, f32) > 1e-6,
                  "llava-next --dtype %s: cosine %.6f (>= %g)" % (dt, cos, min_cos))

    # the other merges and the later repo's variants, recipes given as paths
    for mt, opts in (("spatial", {}), ("flat", {}), ("maxpool2x2", {}),
                     ("spatial_unpad", {"anyres_max": 1}), ("spatial_unpad", {"nobase": True}),
                     ("maxpool2x2", {"nobase": True})):
        var = json.load(open(os.path.join(REPO, "recipes", "llava-next.json")))
        var["connector"]["merge"] = mt
        var["connector"].update(opts)
        tag = mt + "".join("_%s%s" % kv for kv in opts.items())
        rp = os.path.join(work, tag + ".json")
        json.dump(var, open(rp, "w"))
        e = reference(clip, proj, newline, images, mt + ("_nobase" if opts.get("nobase") else ""),
                      anyres_max=opts.get("anyres_max", 0))
        mt = tag
        o = os.path.join(work, "out_" + mt)
        if ok_run(vtok, "merge " + mt, ["run", "--recipe", rp, "--model", M, "--out", o] + img_args):
            emb = np.load(os.path.join(o, "embeddings.npy"))
            check(emb.shape == e["tokens"].shape and rel(emb, e["tokens"]) <= TOL,
                  "merge %s: embeddings %s rel %s" % (mt, list(emb.shape), "%.2e" % rel(emb, e["tokens"])
                                                       if emb.shape == e["tokens"].shape else "shape"))

    # explicit pinpoints in the recipe win over config.json; a llava-hf folder
    H = os.path.join(work, "llava-hf")
    os.makedirs(H)
    hf_state = {"vision_tower.vision_model." + k: v for k, v in clip.state_dict().items()}
    hf_state.update({"multi_modal_projector.linear_1.weight": state["model.mm_projector.0.weight"],
                     "multi_modal_projector.linear_1.bias": state["model.mm_projector.0.bias"],
                     "multi_modal_projector.linear_2.weight": state["model.mm_projector.2.weight"],
                     "multi_modal_projector.linear_2.bias": state["model.mm_projector.2.bias"],
                     "image_newline": newline.clone()})
    sio.write_model(H, {k: v.detach().clone().contiguous() for k, v in hf_state.items()}, 1)
    with open(os.path.join(H, "config.json"), "w") as f:
        json.dump({"architectures": ["LlavaNextForConditionalGeneration"], "model_type": "llava_next",
                   "image_grid_pinpoints": [[32, 16], [16, 32]], "vision_config": CLIP_CFG,
                   "text_config": {"model_type": "llama", "hidden_size": 48}}, f)
    with open(os.path.join(H, "preprocessor_config.json"), "w") as f:
        json.dump(CLIP_PROC, f)
    e = reference(clip, proj, newline, images[:3], "spatial_unpad", pins=[[32, 16], [16, 32]])
    o = os.path.join(work, "out_hf")
    if ok_run(vtok, "llava-hf folder", ["run", "--recipe", "llava-next", "--model", H, "--out", o]
              + sum([["--image", p] for p in paths[:3]], [])):
        emb = np.load(os.path.join(o, "embeddings.npy"))
        check(emb.shape == e["tokens"].shape and rel(emb, e["tokens"]) <= TOL,
              "llava-hf folder (its own pinpoints): embeddings %s rel %s" % (
                  list(emb.shape), "%.2e" % rel(emb, e["tokens"]) if emb.shape == e["tokens"].shape else "shape"))

    # the later repo's string range "(1x1),...,(2x3)": every (i, j), i outer,
    # times the processor's size (16 here)
    var = json.load(open(os.path.join(REPO, "recipes", "llava-next.json")))
    var["encoders"][0]["slicing"]["grid_pinpoints"] = "(1x1),...,(2x3)"
    rp = os.path.join(work, "range.json")
    json.dump(var, open(rp, "w"))
    pins_r = [[i * 16, j * 16] for i in range(1, 3) for j in range(1, 4)]
    e = reference(clip, proj, newline, images, "spatial_unpad", pins=pins_r)
    o = os.path.join(work, "out_range")
    if ok_run(vtok, "pinpoint range string", ["run", "--recipe", rp, "--model", M, "--out", o]
              + img_args):
        emb = np.load(os.path.join(o, "embeddings.npy"))
        check(emb.shape == e["tokens"].shape and rel(emb, e["tokens"]) <= TOL,
              "pinpoint range (1x1)..(2x3): grids %s, embeddings rel %s" % (
                  e["grids"], "%.2e" % rel(emb, e["tokens"]) if emb.shape == e["tokens"].shape
                  else "shape"))

    # llava-v1.6 as released: the checkpoint holds the fine-tuned tower
    # (model.vision_tower.vision_tower.vision_model.*) beside the LLM and
    # projector; the CLIP folder beside it (OpenAI's weights, here another
    # random tower) only gives the config. The fine-tuned tower must win.
    V = os.path.join(work, "llava-v1.6")
    make_encoder(CLIP_CFG, 99, os.path.join(V, "clip-vit-large-patch14-336"), CLIP_PROC)
    ck = {"model.vision_tower.vision_tower." + k: v for k, v in clip.state_dict().items()}
    ck.update({k: v for k, v in state.items()})
    ck["model.embed_tokens.weight"] = torch.zeros(8, 48)
    sio.write_model(V, {k: v.detach().clone().contiguous() for k, v in ck.items()}, 2)
    with open(os.path.join(V, "config.json"), "w") as f:
        json.dump({"model_type": "llava", "image_aspect_ratio": "anyres",
                   "image_grid_pinpoints": PINS, "mm_patch_merge_type": "spatial_unpad"}, f)
    o = os.path.join(work, "out_v16")
    if ok_run(vtok, "llava-v1.6 layout (tower in the checkpoint)",
              ["run", "--recipe", "llava-next", "--model", V, "--out", o] + img_args):
        emb = np.load(os.path.join(o, "embeddings.npy"))
        check(emb.shape == exp["tokens"].shape and rel(emb, exp["tokens"]) <= TOL,
              "llava-v1.6 layout: the checkpoint's tower is used, embeddings rel %s" % (
                  "%.2e" % rel(emb, exp["tokens"]) if emb.shape == exp["tokens"].shape else "shape"))

    # MoVA's base encoder rule: a CLIP checkpoint run at twice its size with the
    # patch position table resized bicubic (resize_image_embeddings: CLS row
    # kept, F.interpolate(size=grid, bicubic, align_corners=False)); encoder
    # option pos_interp, the processor at 32
    var = json.load(open(os.path.join(REPO, "recipes", "llava-1.5.json")))
    var["encoders"][0]["pos_interp"] = "bicubic"
    var["encoders"][0]["processor"] = {"size": {"shortest_edge": 32},
                                       "crop_size": {"height": 32, "width": 32}}
    rp = os.path.join(work, "pos_interp.json")
    json.dump(var, open(rp, "w"))
    sd = {k: v.clone() for k, v in clip.state_dict().items()}
    pk = [k for k in sd if k.endswith("position_embedding.weight")][0]
    pos = sd[pk]
    g0, d0 = 4, pos.shape[1]
    grid = pos[1:].reshape(1, g0, g0, d0).permute(0, 3, 1, 2)
    big = torch.nn.functional.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    sd[pk] = torch.cat([pos[:1], big.permute(0, 2, 3, 1).reshape(64, d0)])
    for k in [k for k in sd if k.endswith("position_ids")]:
        sd[k] = torch.arange(65)[None]
    clip32 = hv.build_model(dict(CLIP_CFG, image_size=32))
    clip32.load_state_dict(sd)
    clip32.eval()
    proc32 = dict(CLIP_PROC, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    px32 = np.stack([hf_reference_image(proc32, im) for im in images[:3]])
    e = ref.llava(clip32, px32, proj)
    o = os.path.join(work, "out_posinterp")
    if ok_run(vtok, "pos_interp bicubic (CLIP at 2x)", ["run", "--recipe", rp, "--model", M,
                                                      "--out", o] + img_args[:6]):
        emb = np.load(os.path.join(o, "embeddings.npy"))
        check(emb.shape == e["projector"].shape and rel(emb, e["projector"]) <= TOL,
              "pos_interp bicubic: CLIP 16 -> 32 px, table 4x4 -> 8x8, embeddings %s rel %s" % (
                  list(emb.shape), "%.2e" % rel(emb, e["projector"])
                  if emb.shape == e["projector"].shape else "shape"))

    # bad inputs
    bad = copy.deepcopy(json.load(open(os.path.join(REPO, "recipes", "llava-next.json"))))
    bad["encoders"][0]["slicing"]["grid_pinpoints"] = [[20, 32]]
    rp = os.path.join(work, "bad_pins.json")
    json.dump(bad, open(rp, "w"))
    expect_error(vtok, "pinpoint not a crop multiple", ["run", "--recipe", rp, "--model", M, "--out",
                                                      os.path.join(work, "x")] + img_args[:2],
                 ["pinpoint", "multiple"])
    bad["encoders"][0]["slicing"]["grid_pinpoints"] = [[16000, 16000]]
    json.dump(bad, open(rp, "w"))
    expect_error(vtok, "pinpoint of a million crops", ["run", "--recipe", rp, "--model", M, "--out",
                                                       os.path.join(work, "x")] + img_args[:2],
                 ["crops", "at most"])
    bad["encoders"][0]["slicing"]["grid_pinpoints"] = []
    json.dump(bad, open(rp, "w"))
    expect_error(vtok, "empty pinpoints", ["run", "--recipe", rp, "--model", M, "--out",
                                           os.path.join(work, "x")] + img_args[:2], ["grid_pinpoints"])
    N = os.path.join(work, "no-pins")
    shutil.copytree(M, N)
    os.remove(os.path.join(N, "config.json"))
    expect_error(vtok, "no pinpoints anywhere", ["run", "--recipe", "llava-next", "--model", N,
                                                 "--out", os.path.join(work, "x")] + img_args[:2],
                 ["grid_pinpoints"])
    st = torch.load(os.path.join(M, "mm_projector.bin"))
    del st["model.image_newline"]
    torch.save(st, os.path.join(N, "mm_projector.bin"))
    with open(os.path.join(N, "config.json"), "w") as f:
        json.dump({"image_grid_pinpoints": PINS}, f)
    expect_error(vtok, "missing image_newline", ["run", "--recipe", "llava-next", "--model", N,
                                                 "--out", os.path.join(work, "x")] + img_args[:2],
                 ["image_newline"])
    expect_error(vtok, "pixels into a slicing recipe",
                 ["run", "--recipe", "llava-next", "--model", M, "--out", os.path.join(work, "x"),
                  "--pixels", os.path.join(work, "px.npy")] if np.save(
                     os.path.join(work, "px.npy"), np.zeros((1, 3, 16, 16), np.float32)) is None else [],
                 ["decoded images"])

    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
