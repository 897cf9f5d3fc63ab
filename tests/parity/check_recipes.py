#!/usr/bin/env python3
"""Recipes through `vtok run` vs the PyTorch references (tests/ref/llava_comm_ref.py).

    check_recipes.py --vtok build/vtok --work DIR

Builds tiny random model folders laid out as the shipped recipes expect
(llava-1.5: clip-vit-large-patch14-336/ + mm_projector.bin, or one llava-hf
folder; comm: clip-vit-large-patch14-336/ + dinov2-large/ +
comm_connector.safetensors), runs the shipped recipes by name and variant
recipes (every non-default option) by path, compares every dumped stage and
embeddings.npy with the reference (max|a-e|/max|e| <= 1e-5), checks the
image path (pad to square) and layout.json, and the bad inputs (one clear
line on stderr each). Sensitivity: the reference itself must move by more
than 1e-4 under a wrong GELU or a wrong LayerNorm eps, so a wrong choice in
vtok cannot pass.
"""
import argparse
import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, os.path.join(REPO, "tests", "image"))
import hf_vision as hv  # noqa: E402
import llava_comm_ref as ref  # noqa: E402
import make_models as mm  # noqa: E402
import safetensors_io as sio  # noqa: E402
from check_processor import hf_reference  # noqa: E402

TOL = 1e-5
SENS_MIN = 1e-4
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

CLIP_CFG = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
            "num_attention_heads": 2, "image_size": 16, "patch_size": 4}
DINO_CFG = {"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 24,
            "num_hidden_layers": 7, "num_attention_heads": 2, "mlp_ratio": 4, "image_size": 28,
            "patch_size": 4}
CLIP_PROC = {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
             "size": {"shortest_edge": 16}, "resample": 3, "do_center_crop": True,
             "crop_size": {"height": 16, "width": 16}, "do_rescale": True,
             "rescale_factor": 0.00392156862745098, "do_normalize": True,
             "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True}

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def rel(a, e):
    return float(np.max(np.abs(a.astype(np.float64) - e)) / max(np.max(np.abs(e)), 1e-30))


def g(seed):
    return torch.Generator().manual_seed(seed)


def randn(gen, shape, std, mean=0.0):
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * std + mean).float()


def make_encoder(cfg, seed, folder, proc=None):
    model = hv.build_model(cfg)
    mm.init_sensitive(model, seed)
    os.makedirs(folder, exist_ok=True)
    sio.write_model(folder, {k: v.detach().clone() for k, v in model.state_dict().items()}, 1)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    if proc:
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(proc, f)
    return model


@torch.no_grad()
def init_projector(p, seed, x_std):
    """First Linear: pre-activations ~ N(-1, 2) whatever the input scale (GELU variants differ there)."""
    gen = g(seed)
    lins = [p.lin] if p.bare else [m for m in p.seq if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(lins):
        fin = lin.in_features
        std = (2.0 / (x_std * fin ** 0.5)) if i == 0 else (1.5 / fin ** 0.5)
        lin.weight.copy_(randn(gen, lin.weight.shape, std))
        if lin.bias is not None:
            lin.bias.copy_(randn(gen, lin.bias.shape, 0.5, -1.0))


@torch.no_grad()
def init_lln(m, seed):
    gen = g(seed)
    for n in m.norms:
        n.weight.copy_(randn(gen, n.weight.shape, 0.2, 1.0))
        n.bias.copy_(randn(gen, n.bias.shape, 0.05))
    for lin in m.linears:
        lin.weight.copy_(randn(gen, lin.weight.shape, 1.0 / lin.in_features ** 0.5))
        if lin.bias is not None:
            lin.bias.copy_(randn(gen, lin.bias.shape, 0.1))
    m.scales.copy_(randn(gen, m.scales.shape, 0.4, 0.6))


def vtok_run(vtok, args, env=None):
    p = subprocess.run([vtok, "run"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300, env=env)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def compare_dump(name, out, dump, expected, stages):
    emb = np.load(os.path.join(out, "embeddings.npy"))
    e = rel(emb, expected["projector"])
    check(emb.shape == expected["projector"].shape and e <= TOL,
          "%s: embeddings %s rel %.2e" % (name, list(emb.shape), e))
    for s in stages:
        a = np.load(os.path.join(dump, s + ".npy"))
        exp = expected[s]
        if a.shape != exp.shape:
            check(False, "%s: stage %s shape %s, expected %s" % (name, s, list(a.shape), list(exp.shape)))
            continue
        check(rel(a, exp) <= TOL, "%s: stage %-11s %s rel %.2e" % (name, s, list(a.shape), rel(a, exp)))


def run_ok(vtok, name, args):
    rc, out, err = vtok_run(vtok, args)
    ok = rc == 0 and not any(s in err for s in SANITIZER)
    check(ok, "%s: vtok run exit %s %s" % (name, rc, "" if ok else err.strip()[-500:]))
    return ok


def expect_error(vtok, name, args, keywords):
    rc, out, err = vtok_run(vtok, args)
    lines = [l for l in err.splitlines() if l.strip()]
    ok = (rc is not None and 0 < rc < 128 and len(lines) == 1 and
          all(k.lower() in lines[0].lower() for k in keywords) and
          not any(s in err for s in SANITIZER))
    check(ok, "error %-22s exit %s: %s" % (name, rc, " | ".join(lines)[:300]))


def lowp(vtok, name, args, f32):
    """--dtype bf16 / int8 on the same run: close to f32 (cosine >= 0.999 /
    0.99 on these tiny models) and really different (rel > 1e-6)."""
    for dt, min_cos in (("bf16", 0.999), ("int8", 0.99)):
        o = args[args.index("--out") + 1] + "_" + dt
        a = [x if x != args[args.index("--out") + 1] else o for x in args] + ["--dtype", dt]
        if not run_ok(vtok, "%s --dtype %s" % (name, dt), a):
            continue
        got = np.load(os.path.join(o, "embeddings.npy")).astype(np.float64).ravel()
        ref_ = f32.astype(np.float64).ravel()
        cos = float(got @ ref_ / (np.linalg.norm(got) * np.linalg.norm(ref_)))
        d = rel(got, ref_)
        check(cos >= min_cos and d > 1e-6, "%s --dtype %s: cosine %.6f (>= %g), rel diff %.2e"
              % (name, dt, cos, min_cos, d))


def pixels(seed, n, h, w):
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def write_recipe(path, base, **conn):
    r = copy.deepcopy(base)
    for k, v in conn.items():
        if k.startswith("top_"):
            r[k[4:]] = v
        else:
            r["connector"][k] = v
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
    return path


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
    with open(os.path.join(REPO, "recipes", "llava-1.5.json")) as f:
        llava_recipe = json.load(f)
    with open(os.path.join(REPO, "recipes", "comm.json")) as f:
        comm_recipe = json.load(f)

    # ------------------------------------------------------------ llava-1.5
    L = os.path.join(work, "llava")
    clip = make_encoder(CLIP_CFG, 11, os.path.join(L, "clip-vit-large-patch14-336"), CLIP_PROC)
    px = pixels(1, 2, 16, 16)
    sel_std = float(clip(torch.from_numpy(px))["hidden_states"][-2][:, 1:].std())
    proj = ref.Projector("mlp2x_gelu", 32, 48, 48)
    init_projector(proj, 12, sel_std)
    torch.save(proj.state("model.mm_projector."), os.path.join(L, "mm_projector.bin"))
    exp = ref.llava(clip, px, proj)
    np.save(os.path.join(work, "px_llava.npy"), px)
    # sensitivity of the reference: tanh GELU, the last instead of the penultimate layer
    proj.act = "gelu_pytorch_tanh"
    s1 = rel(ref.llava(clip, px, proj)["projector"], exp["projector"])
    proj.act = "gelu"
    s2 = rel(ref.llava(clip, px, proj, select_layer=-1)["projector"], exp["projector"])
    check(s1 > SENS_MIN and s2 > SENS_MIN, "llava reference sensitivity: tanh GELU %.2e, layer -1 %.2e" % (s1, s2))

    out, dump = os.path.join(work, "out_llava"), os.path.join(work, "dump_llava")
    if run_ok(vtok, "llava-1.5", ["--recipe", "llava-1.5", "--model", L, "--pixels",
                                  os.path.join(work, "px_llava.npy"), "--out", out, "--dump", dump,
                                  "--threads", "2"]):
        compare_dump("llava-1.5", out, dump, exp, ["vit", "select", "projector"])
        lowp(vtok, "llava-1.5", ["--recipe", "llava-1.5", "--model", L, "--pixels",
                                 os.path.join(work, "px_llava.npy"), "--out", out + "_lp"],
             np.load(os.path.join(out, "embeddings.npy")))
        lay = json.load(open(os.path.join(out, "layout.json")))
        check(lay["tokens_per_image"] == 16 and lay["placeholder"] == "<image>" and lay["images"] == 2
              and lay["d_llm"] == 48, "llava-1.5: layout.json %s" % json.dumps(lay)[:160])

    # image path: pad to square with the mean colour, then the CLIP processor
    img_path = os.path.join(work, "wide.png")
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (15, 27, 3), dtype=np.uint8)).save(img_path)
    img2 = os.path.join(work, "tall.png")
    Image.fromarray(rng.integers(0, 256, (30, 19, 3), dtype=np.uint8)).save(img2)
    pcfg = dict(CLIP_PROC, do_pad=True)
    ipx = np.stack([hf_reference(pcfg, img_path), hf_reference(pcfg, img2)])
    exp_i = ref.llava(clip, ipx, proj)
    out_i = os.path.join(work, "out_llava_img")
    if run_ok(vtok, "llava-1.5 --image", ["--recipe", "llava-1.5", "--model", L, "--image", img_path,
                                          "--image", img2, "--out", out_i]):
        e = rel(np.load(os.path.join(out_i, "embeddings.npy")), exp_i["projector"])
        check(e <= TOL, "llava-1.5 --image (pad to square): embeddings rel %.2e" % e)

    # a variant: every llava option off its default, recipe given as a path
    L2 = os.path.join(work, "llava_variant")
    shutil.copytree(os.path.join(L, "clip-vit-large-patch14-336"), os.path.join(L2, "clip-vit-large-patch14-336"))
    proj3 = ref.Projector("mlp3x_gelu", 32, 40, 24)
    init_projector(proj3, 13, float(clip(torch.from_numpy(px))["hidden_states"][1].std()))
    torch.save(proj3.state("model.mm_projector."), os.path.join(L2, "mm_projector.bin"))
    var = copy.deepcopy(llava_recipe)
    var["connector"].update({"select_layer": 1, "select_feature": "cls_patch"})
    var["connector"]["projector"]["type"] = "mlp3x_gelu"
    rp = os.path.join(work, "llava_variant.json")
    json.dump(var, open(rp, "w"))
    exp_v = ref.llava(clip, px, proj3, select_layer=1, select_feature="cls_patch")
    out, dump = os.path.join(work, "out_llava_v"), os.path.join(work, "dump_llava_v")
    if run_ok(vtok, "llava variant", ["--recipe", rp, "--model", L2, "--pixels",
                                      os.path.join(work, "px_llava.npy"), "--out", out, "--dump", dump]):
        compare_dump("llava variant", out, dump, exp_v, ["vit", "select", "projector"])

    # llava-hf layout: one folder, model_type llava, multi_modal_projector.linear_1/2
    H = os.path.join(work, "llava_hf")
    os.makedirs(H)
    t = {"vision_tower." + k: v for k, v in clip.state_dict().items()}
    t.update({k.replace("model.mm_projector.0", "multi_modal_projector.linear_1")
              .replace("model.mm_projector.2", "multi_modal_projector.linear_2"): v
              for k, v in proj.state("model.mm_projector.").items()})
    t["language_model.model.embed_tokens.weight"] = torch.zeros(10, 48)
    sio.write_model(H, t, 1)
    vc = {k: v for k, v in CLIP_CFG.items() if k != "architectures"}
    json.dump({"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
               "vision_config": vc, "vision_feature_layer": -2,
               "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu",
               "text_config": {"model_type": "llama", "hidden_size": 48}},
              open(os.path.join(H, "config.json"), "w"))
    json.dump(CLIP_PROC, open(os.path.join(H, "preprocessor_config.json"), "w"))
    out = os.path.join(work, "out_llava_hf")
    if run_ok(vtok, "llava-1.5 (llava-hf folder)", ["--recipe", "llava-1.5", "--model", H, "--pixels",
                                                    os.path.join(work, "px_llava.npy"), "--out", out]):
        e = rel(np.load(os.path.join(out, "embeddings.npy")), exp["projector"])
        check(e <= TOL, "llava-1.5 (llava-hf folder): embeddings rel %.2e" % e)

    # ------------------------------------------------------------------ comm
    C = os.path.join(work, "comm")
    clip_c = make_encoder(CLIP_CFG, 21, os.path.join(C, "clip-vit-large-patch14-336"), CLIP_PROC)
    dino = make_encoder(DINO_CFG, 22, os.path.join(C, "dinov2-large"))
    pxc = pixels(2, 2, 16, 16)
    np.save(os.path.join(work, "px_comm.npy"), pxc)

    def comm_parts(opts, seed, d_m=40, d_llm=56):
        cm, dm = opts.get("clip_merge", {}), opts.get("dino_merge", {})
        nc = 3 if opts.get("clip_layers", "all") == "all" else len(opts["clip_layers"])
        nd = len(opts.get("dino_layers", range(6)))
        parts = {"clip_merge": ref.LLNMerge(nc, 32, d_m, **cm), "dino_merge": ref.LLNMerge(nd, 24, 36, **dm)}
        mlp_kind = opts.get("dino_mlp", {}).get("type", "mlp2x_gelu")
        parts["dino_mlp"] = ref.Projector(mlp_kind, 36, 80, d_m if opts.get("concat") == "token" else 28)
        pk = opts.get("projector", {}).get("type", "linear")
        d_cat = d_m if opts.get("concat") == "token" else d_m + 28
        parts["projector"] = ref.Projector(pk, d_cat, 64, d_llm, bare=True)
        init_lln(parts["clip_merge"], seed)
        init_lln(parts["dino_merge"], seed + 1)
        init_projector(parts["dino_mlp"], seed + 2, 1.0)
        init_projector(parts["projector"], seed + 3, 1.0)
        tensors = {}
        for k in ("clip_merge", "dino_merge", "dino_mlp", "projector"):
            tensors.update(parts[k].state(k + "."))
        return parts, tensors

    opts = {}
    parts, tensors = comm_parts(opts, 30)
    sio.write_file(os.path.join(C, "comm_connector.safetensors"), tensors)
    exp = ref.comm(clip_c, dino, pxc, parts, opts)
    # sensitivity: LayerNorm eps of the merges, GELU of the DINOv2 MLP
    for m in parts["clip_merge"].norms:
        m.eps = 1e-6
    s1 = rel(ref.comm(clip_c, dino, pxc, parts, opts)["projector"], exp["projector"])
    for m in parts["clip_merge"].norms:
        m.eps = 1e-5
    parts["dino_mlp"].act = "gelu_pytorch_tanh"
    s2 = rel(ref.comm(clip_c, dino, pxc, parts, opts)["projector"], exp["projector"])
    parts["dino_mlp"].act = "gelu"
    s3 = rel(ref.comm(clip_c, dino, pxc, parts, dict(opts, dino_final_norm=True))["projector"], exp["projector"])
    check(min(s1, s2, s3) > SENS_MIN,
          "comm reference sensitivity: merge eps %.2e, tanh GELU %.2e, dino final norm %.2e" % (s1, s2, s3))
    stages = ["clip", "dino", "clip_select", "dino_select", "clip_merge", "dino_merge", "dino_mlp",
              "concat", "projector"]
    out, dump = os.path.join(work, "out_comm"), os.path.join(work, "dump_comm")
    if run_ok(vtok, "comm", ["--recipe", "comm", "--model", C, "--pixels", os.path.join(work, "px_comm.npy"),
                             "--out", out, "--dump", dump, "--threads", "2"]):
        compare_dump("comm", out, dump, exp, stages)
        lowp(vtok, "comm", ["--recipe", "comm", "--model", C, "--pixels",
                            os.path.join(work, "px_comm.npy"), "--out", out + "_lp"],
             np.load(os.path.join(out, "embeddings.npy")))
        lay = json.load(open(os.path.join(out, "layout.json")))
        check(lay["before"] == "<im_start>" and lay["after"] == "<im_end>" and lay["tokens_per_image"] == 16,
              "comm: layout.json %s" % json.dumps(lay)[:160])

    # comm --image: white pad to square (Shikra's expand2square), both encoders on the CLIP pixels
    padded = os.path.join(work, "wide_padded_white.png")
    im = Image.open(img_path).convert("RGB")
    sq = Image.new("RGB", (27, 27), (255, 255, 255))
    sq.paste(im, (0, (27 - 15) // 2))
    sq.save(padded)
    ipx = hf_reference(CLIP_PROC, padded)[None]
    exp_i = ref.comm(clip_c, dino, ipx, parts, opts)
    out_i = os.path.join(work, "out_comm_img")
    if run_ok(vtok, "comm --image", ["--recipe", "comm", "--model", C, "--image", img_path, "--out", out_i]):
        e = rel(np.load(os.path.join(out_i, "embeddings.npy")), exp_i["projector"])
        check(e <= TOL, "comm --image (white pad): embeddings rel %.2e" % e)

    # comm variant: every UNVERIFIED option off its default
    C2 = os.path.join(work, "comm_variant")
    for sub in ("clip-vit-large-patch14-336", "dinov2-large"):
        shutil.copytree(os.path.join(C, sub), os.path.join(C2, sub))
    vopts = {"clip_layers": [0, 2, -1], "dino_layers": [1, 4, -1], "select_feature": "cls_patch",
             "dino_final_norm": True, "concat": "token",
             "clip_merge": {"order": "linear_ln", "scale_norm": "softmax", "eps": 1e-6},
             "dino_merge": {"shared": True, "scale_norm": "sum", "bias": False},
             "dino_mlp": {"type": "mlp3x_gelu"}, "projector": {"type": "mlp2x_gelu"}}
    vparts, vt = comm_parts(vopts, 40, d_m=40)
    sio.write_file(os.path.join(C2, "comm_connector.safetensors"), vt)
    exp_v = ref.comm(clip_c, dino, pxc, vparts, vopts)
    rp = write_recipe(os.path.join(work, "comm_variant.json"), comm_recipe, **vopts)
    out, dump = os.path.join(work, "out_comm_v"), os.path.join(work, "dump_comm_v")
    if run_ok(vtok, "comm variant", ["--recipe", rp, "--model", C2, "--pixels",
                                     os.path.join(work, "px_comm.npy"), "--out", out, "--dump", dump]):
        compare_dump("comm variant", out, dump, exp_v, stages)

    # ------------------------------------------------------------ bad inputs
    pxl = os.path.join(work, "px_llava.npy")
    expect_error(vtok, "unknown recipe", ["--recipe", "llava-9", "--model", L, "--pixels", pxl,
                                          "--out", work + "/e1"], ["unknown recipe", "llava-9"])
    Lm = os.path.join(work, "llava_nofile")
    shutil.copytree(os.path.join(L, "clip-vit-large-patch14-336"), os.path.join(Lm, "clip-vit-large-patch14-336"))
    expect_error(vtok, "missing weight file", ["--recipe", "llava-1.5", "--model", Lm, "--pixels", pxl,
                                               "--out", work + "/e2"], ["missing weight file", "mm_projector.bin"])
    st = {k: v for k, v in proj.state("model.mm_projector.").items() if not k.startswith("model.mm_projector.2")}
    torch.save(st, os.path.join(Lm, "mm_projector.bin"))
    expect_error(vtok, "missing tensors", ["--recipe", "llava-1.5", "--model", Lm, "--pixels", pxl,
                                           "--out", work + "/e3"],
                 ["2 tensors missing", "model.mm_projector.2.weight", "model.mm_projector.2.bias", "mm_projector.bin"])
    one = write_recipe(os.path.join(work, "llava_one.json"), llava_recipe, top_max_images=1)
    expect_error(vtok, "wrong image count", ["--recipe", one, "--model", L, "--image", img_path,
                                             "--image", img2, "--out", work + "/e4"], ["1 to 1 images", "got 2"])
    expect_error(vtok, "missing encoder folder", ["--recipe", "comm", "--model", L, "--pixels", pxl,
                                                  "--out", work + "/e5"], ["missing model folder", "dinov2-large"])
    bad = write_recipe(os.path.join(work, "comm_bad.json"), comm_recipe,
                       clip_merge={"scale_norm": "bogus"})
    expect_error(vtok, "bad option value", ["--recipe", bad, "--model", C, "--pixels", pxl,
                                            "--out", work + "/e6"], ["scale_norm", "bogus", "softmax"])
    typo = write_recipe(os.path.join(work, "comm_typo.json"), comm_recipe, dino_layer=[1])
    expect_error(vtok, "unknown option", ["--recipe", typo, "--model", C, "--pixels", pxl,
                                          "--out", work + "/e7"], ["unknown option", "dino_layer"])
    for tag, f in (("empty union", [[]]), ("number in a union", [["a.safetensors", 3]]),
                   ("number", 7)):
        bf = write_recipe(os.path.join(work, "comm_badfile.json"), comm_recipe, file=f)
        expect_error(vtok, "bad 'file' (%s)" % tag, ["--recipe", bf, "--model", C, "--pixels", pxl,
                                                     "--out", work + "/e7b"], ["'file'", "candidates"])
    # a union candidate counts only if all its files exist; the next one is used
    uf = write_recipe(os.path.join(work, "comm_union.json"), comm_recipe,
                      file=[["comm_connector.safetensors", "missing_part.safetensors"],
                            "comm_connector.safetensors"])
    out_u = os.path.join(work, "out_comm_union")
    if run_ok(vtok, "comm, union candidate with a missing file skipped",
              ["--recipe", uf, "--model", C, "--pixels", os.path.join(work, "px_comm.npy"),
               "--out", out_u]):
        a = np.load(os.path.join(out_u, "embeddings.npy"))
        b = np.load(os.path.join(work, "out_comm", "embeddings.npy"))
        check_same = a.shape == b.shape and (a == b).all()
        check(check_same, "comm union fallback gives the same embeddings")
    # hardening (issue 10): names that become paths, duplicate JSON keys, output folders
    esc = copy.deepcopy(llava_recipe)
    esc["encoders"][0]["name"] = "../../../escaped/pwned"
    esc["connector"]["encoder"] = esc["encoders"][0]["name"]
    ep = os.path.join(work, "llava_escape.json")
    with open(ep, "w") as f:
        json.dump(esc, f)
    expect_error(vtok, "encoder name as a path", ["--recipe", ep, "--model", L, "--pixels", pxl,
                                                  "--out", work + "/e10", "--dump",
                                                  work + "/e10/d/x/y"], ["name", "letters"])
    check(not os.path.exists(os.path.join(work, "escaped")), "nothing written outside --dump")
    with open(os.path.join(REPO, "recipes", "llava-1.5.json")) as f:
        text = f.read()
    dup = text.replace("\"max_images\": 64,", "\"max_images\": 64, \"max_images\": 2,", 1)
    if dup == text:
        dup = text.replace('{', '{"name": "a", "name": "b", ', 1)
    dp = os.path.join(work, "llava_dup.json")
    with open(dp, "w") as f:
        f.write(dup)
    expect_error(vtok, "duplicate recipe key", ["--recipe", dp, "--model", L, "--pixels", pxl,
                                                "--out", work + "/e11"], ["duplicate key"])
    Ld = os.path.join(work, "llava_dupcfg")
    shutil.copytree(L, Ld)
    cfgp = os.path.join(Ld, "clip-vit-large-patch14-336", "config.json")
    with open(cfgp) as f:
        ctext = f.read()
    with open(cfgp, "w") as f:  # 4 then 999: cJSON would take 4, Python's json 999
        f.write(ctext.replace("{", '{"num_hidden_layers": 4, "num_hidden_layers": 999, ', 1))
    expect_error(vtok, "duplicate config key", ["--recipe", "llava-1.5", "--model", Ld, "--pixels",
                                                pxl, "--out", work + "/e12"],
                 ["duplicate key", "num_hidden_layers"])
    blocker = os.path.join(work, "a_file")
    with open(blocker, "w") as f:
        f.write("x")
    expect_error(vtok, "--dump is a file", ["--recipe", "llava-1.5", "--model", L, "--pixels", pxl,
                                            "--out", work + "/e13", "--dump", blocker],
                 ["dump folder"])
    check(not os.path.exists(os.path.join(work, "e13", "embeddings.npy")),
          "no outputs written when --dump is unusable")
    for key, val, words in (("image_std", "1e-40", ["image_std", "too small"]),
                            ("image_mean", "1e999", ["image_mean", "finite"])):  # a scalar that overflows
        bp = copy.deepcopy(llava_recipe)
        bp["encoders"][0].setdefault("processor", {})[key] = 12345.5
        bpp = os.path.join(work, "llava_badproc.json")
        with open(bpp, "w") as f:
            f.write(json.dumps(bp).replace("12345.5", val))
        expect_error(vtok, "processor %s %s" % (key, val), ["--recipe", bpp, "--model", L,
                                                            "--image", img_path, "--out",
                                                            work + "/e14"], words)
    expect_error(vtok, "empty --out", ["--recipe", "llava-1.5", "--model", L, "--pixels", pxl,
                                       "--out", ""], ["output folder"])
    expect_error(vtok, "missing recipe file", ["--recipe", work + "/nope.json", "--model", C, "--pixels", pxl,
                                               "--out", work + "/e8"], ["nope.json"])
    np.save(os.path.join(work, "px_bad.npy"), pixels(3, 1, 20, 20))
    expect_error(vtok, "pixels wrong size", ["--recipe", "llava-1.5", "--model", L, "--pixels",
                                             os.path.join(work, "px_bad.npy"), "--out", work + "/e9"], ["20"])

    # the committed demo model (models/tiny-llava, F16) on the committed JPEG
    demo = os.path.join(REPO, "models", "tiny-llava")
    dclip = hv.load_model_dir(os.path.join(demo, "clip-vit-large-patch14-336"))
    dproj = ref.Projector("mlp2x_gelu", 64, 96, 96)
    sd = torch.load(os.path.join(demo, "mm_projector.bin"))
    dproj.seq.load_state_dict({k[len("model.mm_projector."):]: v.float() for k, v in sd.items()})
    dcfg = dict(json.load(open(os.path.join(demo, "clip-vit-large-patch14-336", "preprocessor_config.json"))),
                do_pad=True)
    jpg = os.path.join(REPO, "models", "sample.jpg")
    exp_d = ref.llava(dclip, hf_reference(dcfg, jpg)[None], dproj)
    out = os.path.join(work, "out_demo")
    if run_ok(vtok, "demo tiny-llava", ["--recipe", "llava-1.5", "--model", demo, "--image", jpg, "--out", out]):
        e = rel(np.load(os.path.join(out, "embeddings.npy")), exp_d["projector"])
        check(e <= TOL, "demo models/tiny-llava on models/sample.jpg: embeddings rel %.2e" % e)

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all recipe checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
