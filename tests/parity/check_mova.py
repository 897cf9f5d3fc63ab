#!/usr/bin/env python3
"""MoVA through `vtok run` and `vtok chat` vs a PyTorch reference of the
official pipeline (TempleX98/MoVA: mova_encoder.py, arch.py,
multimodal_projector/builder.py, eval/model_vqa_loader.py), tiny sizes:

  base     a CLIP (32 px, patch 4: an 8 x 8 map), hidden_states[-2] without CLS,
           its pixels from CLIP's processor with expand2square (pad)
  experts  A "dinov2": its own processor (40 px, pad), F.interpolate to 28
           (bilinear, no antialias: MoVA's 672 -> 518), DINOv2 hidden_states[-2]
           without CLS (7 x 7); B "clipb": the base pixels F.interpolate'd to 16
           (BiomedCLIP's path), its last_hidden_state without CLS (4 x 4);
           C "dinoc": its own processor (28 px), last_hidden_state (7 x 7);
           every map F.interpolate'd bilinearly to 8 x 8 (feature_align)
           D "p2s": Pix2Struct's flattened patches (4 x 4 patches, max_patches 16) of
           the image padded to a square in CLIP's mean colour, the Pix2Struct
           encoder's rows (padding rows included) as a 4 x 4 map
           E "codetr": a Co-DETR ViT on its processor's 64 px, nearest to 80, windows
           with padding + a global block, neck, 4 x 4 inside its forward
           F "vary": a SAM encoder (windows with padding, a global block, decomposed
           relative positions) with Vary's net_2; G "sam": one without (SAM-H's shape)
  text     BERT [CLS] of "question 0: " + q.lower() + "\\n\\n" (weights inside the
           MoVA checkpoint under model.mm_projector.text_encoder.bert.)
  adapter  tests/ref/mova_ref.py's MoVAdapter (2 blocks, top-2 of 7 experts)
  routing  the 576-analogue tokens 2 x 2 averaged; the LLM (tiny LLaMA) answers the
           routing prompt + q greedily (<= 16 ids) on them; the official parser
           (vtok's is tested in parity_mova) gives the mask

Checks (float32 <= 1e-5): every stage for routings none / A,C / B / all; the
routing pass's generated ids = PyTorch greedy on the same prompt; the experts
the LLM's answer turned on; the answer of `vtok chat` = PyTorch greedy on the
answer prompt, reusing the shared prefix; lazy experts (a missing folder is
fine until routing picks it, then named); bad --experts; -p required.

    check_mova.py --vtok build/vtok --work DIR
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
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, os.path.join(REPO, "tests", "image"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "blocks"))
import bert_ref as B  # noqa: E402
import codetr_ref as CR  # noqa: E402
import sam_ref as SR  # noqa: E402
from sam_parity import randomise as sam_randomise  # noqa: E402
import p2s_enc_ref as P2S  # noqa: E402
from codetr_parity import randomize as codetr_randomize  # noqa: E402
from mova_parity import pix2struct_ref  # noqa: E402
import hf_vision as hv  # noqa: E402
import llama_ref as L  # noqa: E402
import mova_ref as MR  # noqa: E402
import safetensors_io as sio  # noqa: E402
from check_processor import hf_reference_image  # noqa: E402
from check_recipes import CLIP_PROC, make_encoder, rel  # noqa: E402
from make_models import init_sensitive as mm_init  # noqa: E402
from clicheck import check, expect_error, failures, run_ok  # noqa: E402

TOL = 1e-5
NAMES = ("dinov2", "clipb", "dinoc", "p2s", "codetr", "vary", "sam")
TOKDIR = os.path.join(REPO, "models", "shapes", "llava", "llm")
ROUTING_PROMPT = None  # read from the C library's copy through vtok's layout (tested in parity_mova)


def proc(size, pad=True):
    p = dict(CLIP_PROC)
    p.update({"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size},
              "do_pad": pad})
    return p


def align(feat, R):
    """feature_align: [1, L, C] -> [1, R*R, C] (F.interpolate bilinear if L != R*R)."""
    L_, C = feat.shape[1], feat.shape[2]
    s = int(round(L_ ** 0.5))
    if s == R:
        return feat
    x = feat.transpose(1, 2).reshape(1, C, s, s)
    x = F.interpolate(x.float(), size=(R, R), mode="bilinear", align_corners=False)
    return x.reshape(1, C, R * R).transpose(1, 2)


def parse_routing(text, n):
    """mova get_routing_weights: the text before the third comma, substring letter test."""
    resp = ",".join(text.split(",")[:3])
    return [1.0 if chr(ord("A") + k) in resp else 0.0 for k in range(n)]


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
    M = os.path.join(work, "mova")

    R, d = 8, 64
    base_cfg = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
                "hidden_size": d, "intermediate_size": 96, "num_hidden_layers": 3,
                "num_attention_heads": 2, "image_size": 32, "patch_size": 4}
    clip = make_encoder(base_cfg, 51, os.path.join(M, "clip-base"), proc(32))
    dino_a = {"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 24,
              "num_hidden_layers": 3, "num_attention_heads": 2, "mlp_ratio": 2,
              "image_size": 28, "patch_size": 4}
    ea = make_encoder(dino_a, 52, os.path.join(M, "expert-a"), proc(40))
    clip_b = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
              "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 16, "patch_size": 4}
    eb = make_encoder(clip_b, 53, os.path.join(M, "expert-b"))
    dino_c = dict(dino_a, hidden_size=16, num_hidden_layers=2)
    ec = make_encoder(dino_c, 54, os.path.join(M, "expert-c"), proc(28))
    # D: a Pix2Struct encoder (HF folder: config.json + encoder.* weights), 4 x 4 patches,
    # max_patches 16 (a 4 x 4 square as MoVA's 2025 = 45 x 45)
    p2s_cfg = dict(hidden_size=20, patch_embed_hidden_size=48, d_ff=32, d_kv=8,
                   num_attention_heads=2, num_hidden_layers=2, seq_len=16)
    ed = P2S.VisionModel(**p2s_cfg).eval()
    gd = torch.Generator().manual_seed(58)
    for n, p in ed.named_parameters():
        p.copy_((1.0 if n.endswith("norm.weight") else 0.0) +
                torch.randn(p.shape, generator=gd) * (0.2 if p.dim() == 1 else 0.5 /
                                                       p.shape[1] ** 0.5))
    dd = os.path.join(M, "expert-d")
    os.makedirs(dd)
    sio.write_file(os.path.join(dd, "model.safetensors"),
                   {"encoder." + k: v.contiguous() for k, v in ed.state_dict().items()})
    with open(os.path.join(dd, "config.json"), "w") as f:
        json.dump({"model_type": "pix2struct", "vision_config": dict(p2s_cfg, model_type="pix2struct_vision_model")}, f)
    # E: a Co-DETR ViT (its processor at 64 px, nearest to 80, 5 x 5 patches of 16, a window
    # of 3 with padding and a global block, neck, bilinear to 4 x 4 inside its forward)
    ee = CR.CoDETRViT(img_size=80, pretrain_img_size=80, d=32, depth=2, heads=2, window=3,
                      window_blocks=[0], out_chans=12, out_size=4).eval()
    codetr_randomize(ee, 59)
    de = os.path.join(M, "expert-e")
    os.makedirs(de)
    sio.write_file(os.path.join(de, "model.safetensors"),
                   {k: v.contiguous() for k, v in ee.state_dict().items()})
    with open(os.path.join(de, "config.json"), "w") as f:
        json.dump({"num_heads": 2, "window_size": 3, "window_block_indexes": [0], "img_size": 80,
                   "in_size": 64, "out_size": 4}, f)
    with open(os.path.join(de, "preprocessor_config.json"), "w") as f:
        json.dump(proc(64), f)
    # F: a SAM encoder with Vary's net_2 (64 px: a 4 x 4 grid in windows of 3, padded, and a
    # global block; neck; net_2 stride 2 -> 2 x 2); G: one without net_2 (SAM-H's shape, 48 px)
    sams, sam_kw = [], []
    for name, seed, kw in (("expert-f", 60, dict(img_size=64, embed_dim=32, depth=2, num_heads=2,
                                                  out_chans=16, window_size=3,
                                                  global_attn_indexes=(1,), use_output_conv=True,
                                                  out2_chans=24)),
                           ("expert-g", 61, dict(img_size=48, embed_dim=24, depth=2, num_heads=2,
                                                 out_chans=16, window_size=2,
                                                 global_attn_indexes=(1,), use_output_conv=False))):
        m_ = sam_randomise(SR.ImageEncoderViT(**kw).eval(), seed)
        dsam = os.path.join(M, name)
        os.makedirs(dsam)
        sio.write_file(os.path.join(dsam, "model.safetensors"),
                       {k: v.contiguous() for k, v in m_.state_dict().items()})
        with open(os.path.join(dsam, "preprocessor_config.json"), "w") as f:
            json.dump(proc(kw["img_size"]), f)
        sams.append(m_)
        sam_kw.append(kw)
    chans = [24, 32, 16, 20, 12, 24, 16]

    # the LLM
    llm = os.path.join(work, "llm")
    with open(os.path.join(TOKDIR, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    C = 48
    lcfg = L.make_config("llama", hidden=C, layers=2, heads=4, kv_heads=2, vocab=vocab, inter=96,
                         max_pos=2048)
    lsd = L.make_weights(lcfg, 55)
    L.write_model(llm, lcfg, lsd)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKDIR, f), llm)
    model = L.Model(lcfg, lsd)

    # BERT: config + tokenizer in a folder, weights in the MoVA checkpoint
    bvocab = B.make_vocab()
    bcfg = B.make_config(len(bvocab), hidden=32, layers=2, heads=2, inter=64, max_pos=64)
    bsd = B.make_weights(bcfg, 56, pooler=False)
    bdir = os.path.join(M, "bert")
    os.makedirs(bdir)
    with open(os.path.join(bdir, "config.json"), "w") as f:
        json.dump(bcfg, f)
    B.write_tokenizer(bdir, bvocab)
    bert = B.Model(bcfg, bsd)

    # the adapter
    torch.manual_seed(0)
    ad = MR.MoVAdapter(d, C, chans, 32, R, topk=2, blocks=2).eval()
    g = torch.Generator().manual_seed(57)
    for n, p in ad.named_parameters():
        if p.dim() == 1:
            p.copy_((1.0 if n.endswith("weight") and ("norm" in n or "ln" in n or "bn" in n)
                     else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    ckpt = {"model.mm_projector." + k: v.contiguous() for k, v in ad.state_dict().items()}
    ckpt.update({"model.mm_projector.text_encoder.bert." + k: v.contiguous()
                 for k, v in bsd.items()})
    # MoVA's checkpoint may carry its own copies of experts (vision_tower_K): here A and F,
    # with weights that differ from their folders'; the recipe's checkpoint_prefix reads
    # those first and falls back to the folder for the others
    ea_ck = hv.build_model(dino_a)
    mm_init(ea_ck, 62)
    ckpt.update({"model.vision_tower.vision_tower_1." + k: v.contiguous()
                 for k, v in ea_ck.state_dict().items()})
    sam_ck = sam_randomise(SR.ImageEncoderViT(**sam_kw[0]).eval(), 63)
    ckpt.update({"model.vision_tower.vision_tower_6." + k: v.contiguous()
                 for k, v in sam_ck.state_dict().items()})
    sio.write_file(os.path.join(M, "model.safetensors"), ckpt)

    rec = json.load(open(os.path.join(REPO, "recipes", "mova.json")))
    rec["encoders"][0].update({"path": ["clip-base"], "weights": ["clip-base"],
                               "processor": {"do_pad": True}})
    rec["encoders"][0].pop("pos_interp")
    rec["connector"]["adapter"] = {"topk_experts": 2}
    rec["connector"]["text_encoder"]["path"] = "bert"
    rec["connector"]["experts"] = [
        {"name": "dinov2", "type": "vit", "path": "expert-a", "input": "image", "resize": 28,
         "layer": -2},
        {"name": "clipb", "type": "vit", "path": "expert-b", "input": "base", "resize": 16,
         "layer": "last"},
        {"name": "dinoc", "type": "vit", "path": "expert-c", "input": "image", "layer": "last"},
        {"name": "p2s", "type": "pix2struct", "path": "expert-d", "input": "patches",
         "max_patches": 16, "patch": 4},
        {"name": "codetr", "type": "codetr", "path": "expert-e", "input": "image"},
        {"name": "vary", "type": "sam", "path": "expert-f", "input": "image"},
        {"name": "sam", "type": "sam", "path": "expert-g", "input": "image"}]
    for k, e in enumerate(rec["connector"]["experts"]):
        e["checkpoint_prefix"] = "model.vision_tower.vision_tower_%d." % (k + 1)
    rp = os.path.join(work, "mova_tiny.json")
    json.dump(rec, open(rp, "w"))

    rng = np.random.default_rng(5)
    img_path = os.path.join(work, "img_45x30.png")
    Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(img_path)
    im = Image.open(img_path).convert("RGB")
    q = "What Shape is in the PICTURE?"

    # ---- reference ----
    px = torch.from_numpy(hf_reference_image(proc(32), im))[None]
    base = clip(px)["hidden_states"][-2][:, 1:]
    pa = F.interpolate(torch.from_numpy(hf_reference_image(proc(40), im))[None], size=(28, 28),
                       mode="bilinear", align_corners=False)
    fa = align(ea_ck(pa)["hidden_states"][-2][:, 1:], R)  # the checkpoint's copy
    pb = F.interpolate(px, size=(16, 16), mode="bilinear", align_corners=False)
    fb = align(eb(pb)["last_hidden_state"][:, 1:], R)
    pc = torch.from_numpy(hf_reference_image(proc(28), im))[None]
    fc = align(ec(pc)["last_hidden_state"][:, 1:], R)
    side = max(im.size)
    sq = Image.new("RGB", (side, side), (122, 116, 104))
    sq.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    fp = torch.from_numpy(pix2struct_ref(np.array(sq), 16, 4))[None]
    fd = align(ed(fp), R)
    pe = torch.from_numpy(hf_reference_image(proc(64), im))[None]
    fe = align(ee(pe), R)
    ff = align(sam_ck(torch.from_numpy(hf_reference_image(proc(64), im))[None]), R)
    fa_dir = align(ea(pa)["hidden_states"][-2][:, 1:], R)
    check(rel(fa_dir.numpy(), fa.numpy()) > 1e-2, "the checkpoint's expert A differs from its "
          "folder's (rel %.2e)" % rel(fa_dir.numpy(), fa.numpy()))
    fg = align(sams[1](torch.from_numpy(hf_reference_image(proc(48), im))[None]), R)
    feats = [fa, fb, fc, fd, fe, ff, fg]
    ids = B.encode(bvocab, "question 0: " + q.lower() + "\n\n")
    text = bert.forward(ids)[0][0:1]

    def reference(mask):
        r = torch.tensor([mask], dtype=torch.float32)
        fs = [f if m else torch.zeros_like(f) for f, m in zip(feats, mask)]
        tok = ad(base, fs, text, r)[0]
        q2 = R // 2
        rt = F.adaptive_avg_pool2d(tok.T.reshape(C, q2, q2), (q2 // 2, q2 // 2)).reshape(C, -1).T
        return tok, rt

    def run(label, extra, mask):
        out, dump = os.path.join(work, "out_" + label), os.path.join(work, "dump_" + label)
        ok, _ = run_ok(vtok, "vtok run mova (%s)" % label,
                       ["run", "--recipe", rp, "--model", M, "-p", q, "--image", img_path,
                        "--out", out, "--dump", dump, "--threads", "2"] + extra)
        if not ok:
            return None
        lay = json.load(open(os.path.join(out, "layout.json")))
        if mask is None:  # routed by the LLM: the mask the answer gives
            mask = parse_routing(lay["routing_answer"], 7)
            check(lay["experts"] == [n for n, m in zip(NAMES, mask) if m],
                  "%s: experts %s = the official parser on the answer %r" % (
                      label, lay["experts"], lay["routing_answer"]))
        tok, rt = reference(mask)
        got = np.load(os.path.join(out, "embeddings.npy"))[0]
        check(got.shape == tuple(tok.shape) and rel(got, tok.numpy()) <= TOL,
              "%s: tokens %s rel %.2e" % (label, list(got.shape), rel(got, tok.numpy())))
        gr = np.load(os.path.join(dump, "routing.npy"))[0]
        check(rel(gr, rt.numpy()) <= TOL, "%s: routing tokens %s rel %.2e" % (
            label, list(gr.shape), rel(gr, rt.numpy())))
        gt = np.load(os.path.join(dump, "text.npy"))[0]
        check(rel(gt, text[0].numpy()) <= TOL, "%s: BERT [CLS] rel %.2e" % (label, rel(gt, text[0].numpy())))
        ge = np.load(os.path.join(dump, "experts.npy"))[0]
        off = 0
        for k, (f, m) in enumerate(zip(feats, mask)):
            n = R * R * chans[k]
            e = (f[0] if m else torch.zeros_like(f[0])).reshape(-1).numpy()
            err = rel(ge[off:off + n], e) if m else float(np.abs(ge[off:off + n]).max())
            check(err <= TOL, "%s: expert %s %s %.2e" % (label, "ABCDEFG"[k], "rel" if m else "zero", err))
            off += n
        gp = np.load(os.path.join(dump, "pixels_clip.npy"))
        check(np.array_equal(gp, px.numpy()), "%s: base pixels bit-exact (pad)" % label)
        return lay, mask

    for label, spec, mask in (("none", "none", [0] * 7), ("AC", "A,C", [1, 0, 1, 0, 0, 0, 0]),
                              ("B", "clipb", [0, 1, 0, 0, 0, 0, 0]),
                              ("DE", "D,codetr", [0, 0, 0, 1, 1, 0, 0]),
                              ("FG", "vary,G", [0, 0, 0, 0, 0, 1, 1]),
                              ("all", "A,B,C,D,E,F,G", [1] * 7)):
        run(label, ["--experts", spec], mask)
    # the experts matter, and top-2 of 3 cuts one of them
    t_all, _ = reference([1] * 7)
    t_none, _ = reference([0] * 7)
    for blk in ad.blocks:
        blk.topk = 3
    t_all3, _ = reference([1] * 7)
    for blk in ad.blocks:
        blk.topk = 2
    check(rel(t_all.numpy(), t_none.numpy()) > 1e-2 and rel(t_all.numpy(), t_all3.numpy()) > 1e-3,
          "sensitivity: experts move the tokens %.2e, top-2 vs top-3 %.2e" % (
              rel(t_all.numpy(), t_none.numpy()), rel(t_all.numpy(), t_all3.numpy())))

    # routed by the LLM: the coarse pass's greedy ids = PyTorch on the same prompt. A random
    # LLM rarely writes a capital A..G, so the LLM's seed is chosen (on PyTorch's greedy answer
    # to the routing prompt vtok built) to make it pick experts: the run then goes through the
    # LLM-chosen experts, checked against the official parser on vtok's own answer.
    res = run("llm0", ["--llm", llm], None)
    if res:
        pids = res[0]["routing_prompt_ids"]
        _, rt0 = reference([0] * 7)
        k0, n0 = pids.index(-1), sum(1 for v in pids if v < 0)
        inv = {i: t for t, i in json.load(open(os.path.join(llm, "tokenizer.json")))["model"]["vocab"].items()}

        def text_of(ids):
            out = ""
            for i in ids:
                t = inv.get(i, "")
                if t.startswith("<0x") and t.endswith(">"):
                    c = int(t[3:-1], 16)
                    out += chr(c) if c < 128 else "?"
                elif t not in ("<s>", "</s>", "<unk>"):
                    out += t.replace("\u2581", " ")
            return out.strip()
        for seed in range(100, 400):
            sd2 = L.make_weights(lcfg, seed)
            m2 = L.Model(lcfg, sd2)
            x = torch.cat([m2.embed(torch.tensor(pids[:k0])), rt0,
                           m2.embed(torch.tensor(pids[k0 + n0:]))])
            ids2 = m2.greedy(x, 16)
            if 2 in ids2:  # EOS ends vtok's answer
                ids2 = ids2[:ids2.index(2)]
            on = sum(parse_routing(text_of(ids2), 7))
            if 1 <= on <= 3:
                lsd, model = sd2, m2
                L.write_model(llm, lcfg, lsd)
                print("     LLM seed %d answers %r: %d experts" % (seed, text_of(ids2), on))
                break
    res = run("llm", ["--llm", llm], None)
    if res:
        lay, mask = res
        check(sum(mask) >= 1, "the LLM's routing turned %d experts on" % sum(mask))
        pids = lay["routing_prompt_ids"]
        _, rt0 = reference([0] * 7)
        n_img = sum(1 for x in pids if x < 0)
        check(n_img == rt0.shape[0], "routing prompt holds %d routing rows" % n_img)
        k0 = pids.index(-1)
        x = torch.cat([model.embed(torch.tensor(pids[:k0])), rt0,
                       model.embed(torch.tensor(pids[k0 + n_img:]))])
        ref_ids = model.greedy(x, 16)
        got_ids = lay["routing_ids"]
        check(got_ids == ref_ids[:len(got_ids)] and len(got_ids) >= 1,
              "routing answer ids %s = PyTorch greedy" % got_ids)

        # chat: the answer pass after routing, sharing the prompt prefix
        N = 6
        ok, outp = run_ok(vtok, "vtok chat mova", ["chat", "--recipe", rp, "--model", M, "--llm",
                                                   llm, "--image", img_path, "-p", q,
                                                   "--max-tokens", str(N), "--json"])
        if ok:
            got = json.loads(outp.strip().splitlines()[-1])
            keep = got["reused_positions"]
            full = pids[:keep] + got["prompt_ids"]
            check(keep > 0 and all(v >= 0 for v in pids[:keep]),
                  "chat: %d prompt positions reused from the routing pass" % keep)
            tok, _ = reference(mask)
            k1 = keep + got["image_start"]
            nt = got["image_positions"]
            x = torch.cat([model.embed(torch.tensor(full[:k1])), tok,
                           model.embed(torch.tensor(full[k1 + nt:]))])
            check(nt == tok.shape[0] and got["ids"] == model.greedy(x, N),
                  "chat mova: %d greedy ids equal the reference %s" % (N, got["ids"]))

            # the Python bindings run the same routing pass (vtok_recipe_route): Recipe.run
            # with llm= gives the CLI's routing ids and the reference tokens of that routing,
            # LLM.chat the CLI's answer ids. In a child process: an ASan-built library does
            # not load into a plain Python.
            tok_path = os.path.join(work, "py_tokens.npy")
            code = ("import json, sys, numpy as np, vtok\n"
                    "r = vtok.Recipe(%r, %r, threads=2)\n"
                    "L = vtok.LLM(%r, threads=2)\n"
                    "t = r.run([%r], prompt=%r, llm=L)\n"
                    "np.save(%r, t[0])\n"
                    "rt = dict(r.routing)\n"
                    "_, ids = L.chat(r, [%r], %r, max_tokens=%d, return_ids=True)\n"
                    "print(json.dumps({'routing': rt, 'ids': [int(i) for i in ids]}))\n"
                    % (rp, M, llm, img_path, q, tok_path, img_path, q, N))
            env = dict(os.environ, VTOK_LIB=os.path.join(os.path.dirname(vtok), "libvtok.so"),
                       PYTHONPATH=os.path.join(REPO, "python"))
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=env, timeout=300)
            if r.returncode and ("AddressSanitizer" in r.stderr or "ASan" in r.stderr
                                 or not os.path.exists(env["VTOK_LIB"])):
                print("skip  python routing: the library does not load into this Python "
                      "(sanitizer build or no libvtok.so)")
            else:
                check(r.returncode == 0, "python: Recipe.run(llm=) and LLM.chat on mova run (%s)"
                      % r.stderr.strip()[-300:])
                if r.returncode == 0:
                    py = json.loads(r.stdout.strip().splitlines()[-1])
                    pt = np.load(tok_path)
                    check(py["routing"]["ids"] == lay["routing_ids"]
                          and py["routing"]["experts"] == lay["experts"],
                          "python: routing ids %s and experts %s = vtok run --llm" % (
                              py["routing"]["ids"], py["routing"]["experts"]))
                    check(rel(pt, tok.numpy()) <= TOL, "python: tokens of the routed run rel %.2e"
                          % rel(pt, tok.numpy()))
                    check(py["ids"] == got["ids"], "python: LLM.chat ids %s = vtok chat" % py["ids"])

    # the block experts on their own: `vtok encode` on their folders finds the built-in
    # recipes sam / codetr / pix2struct and writes the raw map (no feature_align; Pix2Struct
    # from the image as it is, not square-padded: its HF processor)
    with open(os.path.join(M, "expert-d", "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "Pix2StructImageProcessor", "max_patches": 16,
                   "patch_size": {"height": 4, "width": 4}}, f)
    own = {"expert-d": ed(torch.from_numpy(pix2struct_ref(np.array(im), 16, 4))[None])[0],
           "expert-e": ee(pe)[0],
           "expert-f": sams[0](torch.from_numpy(hf_reference_image(proc(64), im))[None])[0],
           "expert-g": sams[1](torch.from_numpy(hf_reference_image(proc(48), im))[None])[0]}
    for name, exp in own.items():
        o = os.path.join(work, "enc_" + name)
        ok, _ = run_ok(vtok, "vtok encode %s" % name, ["encode", "--model", os.path.join(M, name),
                                                       "--image", img_path, "--out", o])
        if ok:
            got = np.load(os.path.join(o, "last_hidden_state.npy"))[0]
            check(got.shape == tuple(exp.shape) and rel(got, exp.numpy()) <= TOL,
                  "vtok encode %s: %s rel %.2e" % (name, list(got.shape), rel(got, exp.numpy())))
    # G as a Hugging Face SamModel folder: the conversion script's names (convert_sam_to_hf.py
    # KEYS_TO_MODIFY_MAPPING: image_encoder -> vision_encoder, patch_embed.proj -> .projection,
    # blocks -> layers, norm -> layer_norm, neck.0/1/2/3 -> neck.conv1/layer_norm1/conv2/
    # layer_norm2), config.json model_type sam, SamImageProcessor (longest side, then 0.0
    # padding at the bottom / right), on the 45 x 30 image: a padded, non-square input
    hf_map = [("patch_embed.proj.", "patch_embed.projection."), ("blocks.", "layers."),
              ("neck.0.", "neck.conv1."), ("neck.1.", "neck.layer_norm1."),
              ("neck.2.", "neck.conv2."), ("neck.3.", "neck.layer_norm2."),
              (".norm1.", ".layer_norm1."), (".norm2.", ".layer_norm2.")]
    dhf = os.path.join(work, "sam-hf")
    os.makedirs(dhf, exist_ok=True)
    sd_hf = {}
    for k, v in sams[1].state_dict().items():
        for a_, b_ in hf_map:
            k = k.replace(a_, b_) if k.startswith(a_) or a_.startswith(".") else k
        sd_hf["vision_encoder." + k] = v.contiguous()
    sd_hf["prompt_encoder.shared_embedding.positional_embedding"] = torch.zeros(2, 8)
    sio.write_file(os.path.join(dhf, "model.safetensors"), sd_hf)
    kw = sam_kw[1]
    json.dump({"architectures": ["SamModel"], "model_type": "sam",
               "vision_config": {"model_type": "sam_vision_model", "hidden_size": kw["embed_dim"],
                                 "num_hidden_layers": kw["depth"],
                                 "num_attention_heads": kw["num_heads"],
                                 "image_size": kw["img_size"], "patch_size": 16,
                                 "output_channels": kw["out_chans"],
                                 "window_size": kw["window_size"],
                                 "global_attn_indexes": list(kw["global_attn_indexes"])}},
              open(os.path.join(dhf, "config.json"), "w"))
    sam_proc = {"image_processor_type": "SamImageProcessor", "do_resize": True,
                "size": {"longest_edge": kw["img_size"]}, "resample": 2, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True,
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                "do_pad": True, "pad_size": {"height": kw["img_size"], "width": kw["img_size"]}}
    json.dump(sam_proc, open(os.path.join(dhf, "preprocessor_config.json"), "w"))
    px_hf = hf_reference_image(sam_proc, im)
    check(px_hf.shape == (3, 48, 48) and not px_hf[:, 40:, :].any() and px_hf[:, :32, :].any(),
          "SamImageProcessor reference: 45 x 30 -> 48 x 32 resized, rows 32.. zero padded")
    exp = sams[1](torch.from_numpy(px_hf)[None])[0]
    o = os.path.join(work, "enc_sam_hf")
    ok, _ = run_ok(vtok, "vtok encode on a SamModel folder", ["encode", "--model", dhf, "--image",
                                                            img_path, "--out", o])
    if ok:
        got = np.load(os.path.join(o, "last_hidden_state.npy"))[0]
        check(got.shape == tuple(exp.shape) and rel(got, exp.numpy()) <= TOL,
              "vtok encode SamModel folder (HF names, SamImageProcessor): %s rel %.2e"
              % (list(got.shape), rel(got, exp.numpy())))
    # the same folder as MoVA's SAM expert (G): its tensors found under vision_encoder., its
    # SamImageProcessor making the expert's input; the aligned map = the reference's
    rj = json.load(open(rp))
    rj["connector"]["experts"][6]["path"] = dhf
    rp_hf = os.path.join(work, "mova_sam_hf.json")
    json.dump(rj, open(rp_hf, "w"))
    dump_hf = os.path.join(work, "dump_sam_hf")
    ok, _ = run_ok(vtok, "vtok run mova with a SamModel folder as G",
                   ["run", "--recipe", rp_hf, "--model", M, "-p", q, "--image", img_path,
                    "--experts", "G", "--out", os.path.join(work, "out_sam_hf"), "--dump",
                    dump_hf])
    if ok:
        ge = np.load(os.path.join(dump_hf, "experts.npy"))[0]
        off = sum(R * R * c for c in chans[:6])
        e = align(exp[None], R)[0].reshape(-1).numpy()
        g = ge[off:off + e.size]
        check(rel(g, e) <= TOL, "mova expert G from a SamModel folder: aligned map rel %.2e"
              % rel(g, e))
    cfg_hf = json.load(open(os.path.join(dhf, "config.json")))
    for label, change, words in (("global_attn_indexes", {"global_attn_indexes": [0]},
                                  ["rel_pos_h", "global"]),
                                 ("use_rel_pos false", {"use_rel_pos": False},
                                  ["use_rel_pos", "not supported"])):
        bad = copy.deepcopy(cfg_hf)
        bad["vision_config"].update(change)
        json.dump(bad, open(os.path.join(dhf, "config.json"), "w"))
        expect_error(vtok, "SamModel " + label, ["encode", "--model", dhf, "--image", img_path,
                                                 "--out", o], words)
    json.dump(cfg_hf, open(os.path.join(dhf, "config.json"), "w"))
    expect_error(vtok, "expert with --pixels", ["encode", "--model", os.path.join(M, "expert-f"),
                                                "--pixels", os.path.join(work, "dump_none",
                                                                         "pixels_clip.npy"),
                                                "--out", os.path.join(work, "x6")], ["images"])

    # MoVA's prompt format: conv_mova_llama3 writes a literal <|begin_of_text|> and MoVA
    # tokenizes it with the special tokens on, so the shipped tokenizer decides: Llama-3's
    # Instruct tokenizer.json (a TemplateProcessing post-processor adding <|begin_of_text|>)
    # gives two BOS, a tokenizer without that post-processor one
    l3 = os.path.join(REPO, "tests", "text", "node_modules", "@lenml", "tokenizer-llama3",
                      "models")
    if os.path.isdir(l3):
        tj = json.load(open(os.path.join(l3, "tokenizer.json")))
        bos = [t["id"] for t in tj["added_tokens"] if t["content"] == "<|begin_of_text|>"][0]
        vocab3 = max(t["id"] for t in tj["added_tokens"]) + 1
        cfg3 = L.make_config("llama", hidden=32, layers=1, heads=4, kv_heads=2, vocab=vocab3,
                             inter=64, max_pos=512)
        inst = copy.deepcopy(tj)
        inst["post_processor"] = {"type": "Sequence", "processors": [
            tj["post_processor"],
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos],
                                                      "tokens": ["<|begin_of_text|>"]}}}]}
        for label, tok, n_bos in (("Instruct-style tokenizer", inst, 2),
                                  ("tokenizer without a BOS post-processor", tj, 1)):
            d3 = os.path.join(work, "llm3_%d" % n_bos)
            L.write_model(d3, cfg3, L.make_weights(cfg3, 70))
            json.dump(tok, open(os.path.join(d3, "tokenizer.json"), "w"))
            shutil.copy(os.path.join(l3, "tokenizer_config.json"), d3)
            ok, out3 = run_ok(vtok, "generate --chat mova_llama3 (%s)" % label,
                              ["generate", "--llm", d3, "-p", q, "--chat", "mova_llama3",
                               "--max-tokens", "1", "--json"])
            if ok:
                ids3 = json.loads(out3.strip().splitlines()[-1])["prompt_ids"]
                lead = 0
                while lead < len(ids3) and ids3[lead] == bos:
                    lead += 1
                check(lead == n_bos, "mova_llama3 with the %s: the prompt begins with %d "
                      "<|begin_of_text|> (%s...)" % (label, lead, ids3[:4]))

    # lazy experts: a missing folder matters only when routing picks it
    r2 = copy.deepcopy(rec)
    r2["connector"]["experts"][2]["path"] = "no-such-expert"
    bad = os.path.join(work, "mova_missing.json")
    json.dump(r2, open(bad, "w"))
    run_ok(vtok, "missing expert C not picked: runs", ["run", "--recipe", bad, "--model", M, "-p",
                                                        q, "--image", img_path, "--experts", "A",
                                                        "--out", os.path.join(work, "x1")])
    expect_error(vtok, "missing expert C picked", ["run", "--recipe", bad, "--model", M, "-p", q,
                                                   "--image", img_path, "--experts", "A,C",
                                                   "--out", os.path.join(work, "x2")],
                 ["dinoc", "no-such-expert"])
    expect_error(vtok, "unknown expert letter", ["run", "--recipe", rp, "--model", M, "-p", q,
                                                 "--image", img_path, "--experts", "A,Z",
                                                 "--out", os.path.join(work, "x3")],
                 ["unknown expert 'Z'", "A dinov2"])
    expect_error(vtok, "no question", ["run", "--recipe", rp, "--model", M, "--image", img_path,
                                       "--experts", "A", "--out", os.path.join(work, "x4")], ["-p"])
    expect_error(vtok, "no llm and no --experts", ["run", "--recipe", rp, "--model", M, "-p", q,
                                                   "--image", img_path, "--out",
                                                   os.path.join(work, "x5")], ["--experts"])

    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
