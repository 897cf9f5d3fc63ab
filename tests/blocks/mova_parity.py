#!/usr/bin/env python3
"""MoVA's pieces vs the original rules. Routing: the prompt and answer parser
(src/recipes/mova_route.c) vs the
rules of TempleX98/MoVA: mova/constants.py builds ROUTING_PROMPT from a base
sentence, the seven descriptions as "\\n" + letter + ". " + text, and
"\\n\\nQuestion:\\n"; mova/eval/model_vqa_loader.py get_routing_weights keeps
the text before the third comma and sets expert k when its capital letter
occurs in it. Written here from those rules (the repository is not
installable) and run on a table of answers an LLM may give, malformed ones
included. Pix2Struct's patch grid (src/image/pix2struct.c) vs transformers'
extract_flattened_patches expression in Python floats over every square size
16..5000 and a sweep of rectangles, for max_patches 2025 (MoVA: 45 x 45) and
2048 (HF's default); the sweep must contain sizes where the rounding gives
44 rows at 2025 (the bug MoVA inherits). The MoV-Adapter
(src/connectors/mov_adapter.c) vs tests/ref/mova_ref.py on a tiny random
configuration (width 128, an 8 x 8 map, 4 experts of 48/32/64/16 channels,
top-3, two blocks) for routing masks of 3 experts, 1 expert, none (the
routing pass) and all 4 (more than top-k: the gate keeps its own top 3):
max|a-e| / max|e| <= 1e-5. feature_align's bilinear resize vs torch's
F.interpolate itself, for the experts' map sizes (<= 1e-5: torch 1.13's
weights differ from the aten formula's float evaluation in the last bits,
up to ~6e-6 relative here; UNVERIFIED which arithmetic it uses).
Pix2Struct's flattened patches vs the processor's steps written with numpy and
torch (F.interpolate antialias=True, unfold) on random images (<= 1e-5).

    mova_parity.py --tool build/mova_run
"""
import copy
import math
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
import mova_ref as MR  # noqa: E402
import safetensors_io as sio  # noqa: E402

BASE = ("You are a helpful assistant router. Based on the visual content, questions, and model "
        "pool the user provides, you need to consider the expertise of these models to select "
        "the most 3 suitable models to help you answer the questions. Answer with the model's "
        "letter from the given choices directly. If no models are selected, just answer "
        "'none'.\nModel pool:")
MODELS = [
    "This model can effectively extract the accurate spatial and semantic information from natural images.",
    "This model can handle images with text accurately and efficiently but fails to process natural images.",
    "This model is a state-of-the-art object detector that can identify objects in images.",
    "This model shows remarkable skill in text recognition, attaining top-tier text analysis outcomes across diverse areas",
    "This model is a specialized model designed to achieve state-of-the-art plot and chart understanding performance.",
    "This model is a foundation model designed for biomedical vision-language processing.",
    "This model is a leading image segmentation framework and achieves strong zero-shot segmentation performance.",
]


def routing_prompt():
    p = BASE
    for letter, m in zip("ABCDEFG", MODELS):
        p += "\n" + letter + ". " + m
    return p + "\n\nQuestion:\n"


def parse(response):
    head = ",".join(response.split(",")[:3])
    return "".join("1" if letter in head else "0" for letter in "ABCDEFG")


ANSWERS = ["A", "A, C", "A,C,D", "A, C, D, E", "B,D,E,F,G", "none", "None", "", "a, c",
           "Answer: C", "DEPLOT", "G", "A\nB", "ABCD", "A, B, C, D", ",,,A", "A,,,B",
           "The answer is D, E and F", "C.", " D ", "E,F,G,A,B", "Model A and model G",
           "xyz", "A, A, A", "none, B", "F, G,", "\u00c9, A", "A" * 100 + ",B,C,D", "A\\B"]


def grid(h, w, max_patches, p):
    scale = math.sqrt(max_patches * (p / h) * (p / w))
    rows = max(min(math.floor(scale * h / p), max_patches), 1)
    cols = max(min(math.floor(scale * w / p), max_patches), 1)
    return rows, cols


def check_grids(tool):
    sizes = [(s, s) for s in range(16, 5001)]
    sizes += [(h, w) for h in range(1, 3000, 37) for w in range(1, 3000, 53)]
    sizes += [(1, 1), (1, 100000), (100000, 1), (720, 720), (1008, 672)]
    fails = 0
    for mp in (2025, 2048):
        inp = "".join("%d %d\n" % hw for hw in sizes)
        p = subprocess.run([tool, "--grid", str(mp), "16"], input=inp.encode(),
                           stdout=subprocess.PIPE, check=True)
        got = [tuple(map(int, x.split())) for x in p.stdout.decode().splitlines()]
        want = [grid(h, w, mp, 16) for h, w in sizes]
        bad = [(s, g, e) for s, g, e in zip(sizes, got, want) if g != e]
        ok = len(got) == len(want) and not bad
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "pix2struct grid, max_patches %d: %d sizes%s" % (
            mp, len(sizes), "" if ok else ", first mismatch %s" % (bad[:1],)))
        if mp == 2025:
            short = sum(1 for (h, w), e in zip(sizes, want) if h == w and e[0] == 44)
            ok = short > 0 and got[sizes.index((28, 28))] == (44, 44)
            fails += not ok
            print(("ok   " if ok else "FAIL ") + "the 44-instead-of-45 rounding reproduced "
                  "(%d square sizes, e.g. 28 -> %s)" % (short, got[sizes.index((28, 28))]))
    return fails


@torch.no_grad()
def check_adapter(tool):
    torch.manual_seed(0)
    R, d, d_llm, chans, d_text = 8, 128, 96, [48, 32, 64, 16], 40
    m = MR.MoVAdapter(d, d_llm, chans, d_text, R, topk=3, blocks=2).eval()
    g = torch.Generator().manual_seed(1)
    for n, p in m.named_parameters():
        if p.dim() == 1:
            p.copy_((1.0 if n.endswith("weight") and ("norm" in n or "ln" in n or "bn" in n)
                     else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
        else:
            fan = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) / fan ** 0.5)
    fails = 0
    with tempfile.TemporaryDirectory() as wd:
        wpath = os.path.join(wd, "adapter.safetensors")
        sio.write_file(wpath, {k: v.contiguous() for k, v in m.state_dict().items()})
        x = torch.randn(1, R * R, d, generator=g)
        text = torch.randn(1, d_text, generator=g)
        feats = [torch.randn(1, R * R, c, generator=g) for c in chans]
        np.save(os.path.join(wd, "x.npy"), x[0].numpy())
        np.save(os.path.join(wd, "t.npy"), text[0].numpy())
        fpaths = []
        for k, f in enumerate(feats):
            fpaths.append(os.path.join(wd, "f%d.npy" % k))
            np.save(fpaths[-1], f[0].numpy())
        for mask in ("1,0,1,1", "0,1,0,0", "none", "1,1,1,1"):
            r = torch.zeros(1, 4) if mask == "none" else torch.tensor(
                [[float(v) for v in mask.split(",")]])
            exp = m(x, feats, text, r)[0].numpy()
            out = os.path.join(wd, "out.npy")
            p = subprocess.run([tool, "--adapter", wpath, os.path.join(wd, "x.npy"),
                                os.path.join(wd, "t.npy"), mask, out] + fpaths,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode:
                print("FAIL mov-adapter routing %s: %s" % (mask, p.stderr.decode().strip()))
                fails += 1
                continue
            got = np.load(out)
            err = float(np.max(np.abs(got - exp)) / np.max(np.abs(exp)))
            ok = got.shape == exp.shape and err <= 1e-5
            fails += not ok
            print(("ok   " if ok else "FAIL ") + "mov-adapter, routing %-8s %s rel %.2e" % (
                mask, list(got.shape), err))
        # the test can see what it checks: the experts move the output, and with
        # four experts on, the gate's top-3 cut does
        r_all, r_none = torch.ones(1, 4), torch.zeros(1, 4)
        base = m(x, feats, text, r_none)[0]
        d_exp = float((m(x, feats, text, r_all)[0] - base).abs().max() / base.abs().max())
        for blk in m.blocks:
            blk.topk = 4
        y4 = m(x, feats, text, r_all)[0]
        for blk in m.blocks:
            blk.topk = 3
        y3 = m(x, feats, text, r_all)[0]
        d_top = float((y4 - y3).abs().max() / y3.abs().max())
        ok = d_exp > 1e-3 and d_top > 1e-4
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "sensitivity: experts on vs off %.2e, top-3 vs top-4 "
              "%.2e" % (d_exp, d_top))
        # the top-3 cut of the all-on run above has a clear margin in every block: the
        # 3rd and 4th gate probabilities differ by far more than float32 rounding
        m(x, feats, text, r_all)
        margins = []
        for blk in m.blocks:
            pr = sorted(blk.last_probs[0].tolist(), reverse=True)
            margins.append(pr[2] - pr[3])
        ok = min(margins) > 1e-3
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "gate top-3 margins %s (> 1e-3)" % (
            ", ".join("%.3g" % v for v in margins)))

        # a tie at the cut: experts 1 and 2 get the same logit (gate.2 rows and biases
        # equal), below experts 0 and 3 (tied too): torch.topk keeps one of the pair as
        # its CPU kernel's nth_element leaves it (here the later index); vtok must keep
        # the same one (the kept one decides the output)
        tied = copy.deepcopy(m)
        for blk in tied.blocks:
            g2 = blk.gate[2]
            g2.weight[1] = g2.weight[2]
            g2.weight[0] = g2.weight[2]
            g2.weight[3] = g2.weight[2]
            g2.bias.copy_(torch.tensor([2.0, 0.5, 0.5, 2.0]))
        exp = tied(x, feats, text, r_all)[0].numpy()
        sels = [sorted(blk.last_sel[0].tolist()) for blk in tied.blocks]
        pr = tied.blocks[0].last_probs[0].tolist()
        wpath2 = os.path.join(wd, "tied.safetensors")
        sio.write_file(wpath2, {k: v.contiguous() for k, v in tied.state_dict().items()})
        out = os.path.join(wd, "out_tied.npy")
        p = subprocess.run([tool, "--adapter", wpath2, os.path.join(wd, "x.npy"),
                            os.path.join(wd, "t.npy"), "1,1,1,1", out] + fpaths,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        got = np.load(out) if p.returncode == 0 else None
        err = float(np.max(np.abs(got - exp)) / np.max(np.abs(exp))) if got is not None else 1.0
        # the other choice of the pair gives a visibly different output
        for blk in tied.blocks:
            blk.topk = 4
        alt = tied(x, feats, text, r_all)[0].numpy()
        for blk in tied.blocks:
            blk.topk = 3
        sep = float(np.max(np.abs(alt - exp)) / np.max(np.abs(exp)))
        ok = pr[1] == pr[2] and err <= 1e-5 and sep > 1e-4
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "gate tie at the top-3 cut (p1 == p2 = %.4f): torch "
              "keeps %s, vtok matches rel %.2e (the other choice differs by %.2e)" % (
                  pr[1], sels, err, sep))
    return fails


def check_topk(tool):
    """The gate's top-k (vt_mov_topk) vs torch.topk itself on tie-heavy vectors:
    small integers and exact zeros (masked experts), n 1..8, every k."""
    rng = np.random.default_rng(3)
    lines, exp = [], []
    for _ in range(6000):
        n = int(rng.integers(1, 9))
        k = int(rng.integers(1, n + 1))
        v = rng.integers(0, 4, n).astype(np.float32) * np.float32(0.25)
        lines.append(" ".join([str(k)] + ["%.9g" % x for x in v]))
        exp.append(torch.topk(torch.from_numpy(v), k).indices.tolist())
    p = subprocess.run([tool, "--topk"], input="\n".join(lines) + "\n", capture_output=True,
                       text=True)
    got = [[int(t) for t in ln.split()] for ln in p.stdout.splitlines()]
    bad = sum(1 for g, e in zip(got, exp) if g != e) + abs(len(got) - len(exp))
    ties = sum(1 for ln in lines if len(set(ln.split()[1:])) < len(ln.split()) - 1)
    ok = p.returncode == 0 and bad == 0
    print(("ok   " if ok else "FAIL ") + "gate top-k = torch.topk's indices and order on %d "
          "vectors (%d with ties), %d differ" % (len(exp), ties, bad))
    return 0 if ok else 1


@torch.no_grad()
def check_align(tool):
    """feature_align (mova_encoder.py): F.interpolate(bilinear, align_corners=False)
    of each expert's map to 48 x 48, and Co-DETR's 80 -> 37; torch's own op is
    the reference."""
    fails = 0
    g = torch.Generator().manual_seed(3)
    with tempfile.TemporaryDirectory() as wd:
        for (h, w, oh, ow) in ((37, 37, 48, 48), (32, 32, 48, 48), (64, 64, 48, 48),
                               (14, 14, 48, 48), (80, 80, 37, 37), (45, 45, 48, 48),
                               (7, 13, 20, 5), (1, 1, 3, 3)):
            x = torch.randn(1, 8, h, w, generator=g)
            exp = torch.nn.functional.interpolate(x, size=(oh, ow), mode="bilinear",
                                                  align_corners=False)[0].permute(1, 2, 0).numpy()
            np.save(os.path.join(wd, "in.npy"), x[0].permute(1, 2, 0).contiguous().numpy())
            out = os.path.join(wd, "out.npy")
            p = subprocess.run([tool, "--align", str(oh), str(ow), os.path.join(wd, "in.npy"), out],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            ok = p.returncode == 0
            err = float(np.max(np.abs(np.load(out) - exp)) / np.max(np.abs(exp))) if ok else -1
            ok = ok and err <= 1e-5
            fails += not ok
            print(("ok   " if ok else "FAIL ") + "feature_align %dx%d -> %dx%d rel %.2e" % (
                h, w, oh, ow, err))
    return fails


def pix2struct_ref(a, max_patches, p):
    """Pix2StructImageProcessor (is_vqa=False) on a uint8 HWC array: normalize
    (np.mean / np.std over everything, std floored at 1 / sqrt(size)), the
    grid, F.interpolate(bilinear, antialias=True), patches (unfold order: y,
    x, channel), 1-based row / col ids, zero rows to max_patches."""
    x = a.astype(np.float32)
    mean = np.mean(x)
    std = np.std(x)
    adj = max(std, 1.0 / math.sqrt(np.prod(x.shape)))
    x = (x - np.array(mean, dtype=np.float32)) / np.array(adj, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    rows, cols = grid(a.shape[0], a.shape[1], max_patches, p)
    t = torch.nn.functional.interpolate(t[None], size=(rows * p, cols * p), mode="bilinear",
                                        align_corners=False, antialias=True)
    u = torch.nn.functional.unfold(t, (p, p), stride=(p, p))
    u = u.reshape(1, 3, p, p, -1).permute(0, 4, 2, 3, 1).reshape(rows * cols, 3 * p * p)
    rid = torch.arange(rows).reshape(rows, 1).repeat(1, cols).reshape(-1, 1) + 1
    cid = torch.arange(cols).reshape(1, cols).repeat(rows, 1).reshape(-1, 1) + 1
    r = torch.cat([rid.float(), cid.float(), u], -1)
    return torch.nn.functional.pad(r, [0, 0, 0, max_patches - rows * cols]).numpy()


def check_pix2struct(tool):
    from PIL import Image
    fails = 0
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as wd:
        for (h, w, mp) in ((28, 28, 2025), (96, 96, 2025), (50, 120, 2048), (300, 40, 256),
                           (20, 20, 16)):
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            path = os.path.join(wd, "im.png")
            Image.fromarray(a).save(path)
            out = os.path.join(wd, "p.npy")
            q = subprocess.run([tool, "--pix2struct", str(mp), "16", path, out],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            exp = pix2struct_ref(a, mp, 16)
            ok = q.returncode == 0
            got = np.load(out) if ok else None
            err = float(np.max(np.abs(got - exp)) / np.max(np.abs(exp))) if ok else -1
            ok = ok and got.shape == exp.shape and err <= 1e-5
            fails += not ok
            print(("ok   " if ok else "FAIL ") + "pix2struct patches %dx%d max %d -> %s rows %d "
                  "rel %.2e" % (w, h, mp, list(exp.shape), int((exp[:, 0] > 0).sum()), err))
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    a = ap.parse_args()
    fails = 0
    p = subprocess.run([a.tool, "--prompt"], stdout=subprocess.PIPE, check=True)
    ok = p.stdout.decode() == routing_prompt()
    print(("ok   " if ok else "FAIL ") + "routing prompt byte-identical (%d bytes)" % len(p.stdout))
    fails += not ok
    lines = "".join(x.replace("\\", "\\\\").replace("\n", "\\n") + "\n" for x in ANSWERS)
    p = subprocess.run([a.tool], input=lines.encode(), stdout=subprocess.PIPE, check=True)
    got = p.stdout.decode().splitlines()
    for ans, g in zip(ANSWERS, got):
        want = parse(ans)
        ok = g == want
        fails += not ok
        print(("ok   " if ok else "FAIL ") + "%-30r -> %s (expected %s)" % (ans[:30], g, want))
    if len(got) != len(ANSWERS):
        print("FAIL %d answers, %d masks" % (len(ANSWERS), len(got)))
        fails += 1
    fails += check_grids(a.tool)
    fails += check_adapter(a.tool)
    fails += check_topk(a.tool)
    fails += check_align(a.tool)
    fails += check_pix2struct(a.tool)
    print("%d failure(s)" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
