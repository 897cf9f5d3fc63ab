#!/usr/bin/env python3
"""Train the shipped demo models on synthetic scenes (models/shapes/scenes.py).

    /usr/bin/python3 models/shapes/train.py [--out models/shapes] [--quick]

One command, fixed seeds, CPU only (Debian python3-torch). It writes, in the
layouts real releases use:

  OUT/clip/                    a CLIPModel HF folder (vision + text towers,
                               bf16 safetensors, CLIP-format tokenizer.json,
                               preprocessor_config.json): `vtok zeroshot`
  OUT/llava/                   the llava-1.5 recipe's model folder:
     clip-vit-large-patch14-336 -> ../clip   (the vision tower it reads)
     mm_projector.bin          mlp2x_gelu projector, LLaVA's key names, bf16
     llm/                      LlamaForCausalLM folder, bf16 safetensors,
                               SentencePiece-style BPE tokenizer.json trained
                               here (models/shapes/sptok.py)
  OUT/demo/                    demo scenes (PNG) + demo.json: questions and the
                               PyTorch model's greedy answers and ids
  OUT/metrics.json             what the training measured (PyTorch, bf16 weights)

Stage 1: CLIP, contrastive (symmetric InfoNCE) on scene captions, with an
auxiliary per-patch shape/colour head on hidden_states[-2] (dropped). Stage 2:
the vision tower frozen, its hidden_states[-2] patch rows (what llava-1.5
selects) feed a fresh projector + LLaMA trained on multi-turn vicuna_v1
conversations about the scene, loss on the answers and their </s> (LLaVA's
preprocess_v1 masking), in two rounds (--llm-rounds) of --llm-steps, each
with its own warm-up and cosine schedule. --resume DIR runs one more round
on a folder this script wrote. Accuracy per question type is then measured
with vtok itself by models/shapes/eval.py.
"""
import argparse
import copy
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, os.path.join(REPO, "tests", "text"))
import scenes as S  # noqa: E402
from sptok import SPTokenizer  # noqa: E402
import clip_text_ref as ctr  # noqa: E402
import llama_ref as lr  # noqa: E402
import safetensors_io as sio  # noqa: E402
from clip_tok import make_clip_tokenizer  # noqa: E402

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
VISION = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
          "num_attention_heads": 4, "image_size": 64, "patch_size": 8, "num_channels": 3,
          "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0}
TEXT = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 3,
        "num_attention_heads": 4, "max_position_embeddings": 48, "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5, "attention_dropout": 0.0}
PROJ_DIM = 64
LLM = {"hidden": 128, "layers": 4, "heads": 4, "kv_heads": 2, "inter": 344, "max_pos": 512}
PREPROCESSOR = {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
                "size": {"shortest_edge": 64}, "resample": 3, "do_center_crop": True,
                "crop_size": {"height": 64, "width": 64}, "do_rescale": True,
                "rescale_factor": 0.00392156862745098, "do_normalize": True,
                "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True}


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------ data --

def make_split(split, n):
    scs = [S.scene(s) for s in S.split_seeds(split, n)]
    imgs = np.stack([np.asarray(S.render(sc)) for sc in scs])
    return scs, imgs


def pixels(imgs):
    """CLIPImageProcessor at 64 px on 64 px images: resize and crop are the
    identity; rescale then normalize as the processor does, in float32."""
    x = torch.from_numpy(np.array(imgs)).float().permute(0, 3, 1, 2) * np.float32(1 / 255)
    m = torch.tensor(CLIP_MEAN, dtype=torch.float32)[None, :, None, None]
    s = torch.tensor(CLIP_STD, dtype=torch.float32)[None, :, None, None]
    return (x - m) / s


N_SHAPE, N_COLOUR = len(S.SHAPES) + 1, len(S.COLOURS) + 1   # + "no object"


def patch_labels(sc, patch):
    """Per patch (row-major, as the vision rows are): the shape and colour
    index + 1 of the object covering most of it, 0 where none covers at
    least an eighth of it. Targets of the auxiliary head (train_clip)."""
    g = S.SIZE // patch
    vis = S.visible_masks(sc).reshape(-1, g, patch, g, patch).sum((2, 4))
    sh = np.zeros((g, g), np.int64)
    co = np.zeros((g, g), np.int64)
    if len(vis):
        best, most = vis.argmax(0), vis.max(0)
        colours = sorted(S.COLOURS)
        for y, x in zip(*np.nonzero(most >= max(2, patch * patch // 8))):
            o = sc["objects"][best[y, x]]
            sh[y, x] = S.SHAPES.index(o["shape"]) + 1
            co[y, x] = colours.index(o["colour"]) + 1
    return sh.reshape(-1), co.reshape(-1)


def label_tensors(scs):
    """patch_labels of each scene, stacked: (shape [n, rows], colour [n, rows])."""
    lab = [patch_labels(sc, VISION["patch_size"]) for sc in scs]
    return (torch.tensor(np.stack([a for a, _ in lab])),
            torch.tensor(np.stack([b for _, b in lab])))


def lr_at(step, total, base, warm):
    if step < warm:
        return base * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


# ---------------------------------------------------------- stage 1: CLIP --

class ClipTok:
    """Encoder for the CLIP-format tokenizer.json made by clip_tok (lowercase
    ASCII words and punctuation only, as the captions are)."""

    def __init__(self, tok):
        import re
        m = tok["model"]
        self.vocab = m["vocab"]
        self.rank = {tuple(x.split(" ")): i for i, x in enumerate(m["merges"])}
        self.bos, self.eos = self.vocab["<|startoftext|>"], self.vocab["<|endoftext|>"]
        self.rx = re.compile(r"[a-z]+|\d|[^\s\w]+")

    def word(self, w):
        syms = list(w[:-1]) + [w[-1] + "</w>"]
        while len(syms) > 1:
            best = min(((self.rank.get((a, b), 1 << 30), i)
                        for i, (a, b) in enumerate(zip(syms, syms[1:]))))
            if best[0] == 1 << 30:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        return [self.vocab[s] for s in syms]

    def encode(self, text):
        ids = [self.bos]
        for w in self.rx.findall(" ".join(text.lower().split())):
            ids += self.word(w)
        return ids + [self.eos]


def clip_corpus(scs, seed):
    rng = random.Random(seed)
    out = []
    for sc in scs:
        out.append(S.caption(sc, rng))
    for c in S.COLOURS:
        for s in S.SHAPES:
            out.append("a %s %s" % (c, s))
            out.append("a photo of a %s %s" % (c, s))
    return out


def train_clip(args, scs, imgs, val):
    tok_json, tok_cfg = make_clip_tokenizer(clip_corpus(scs[:4000], 1), 300)
    tok = ClipTok(tok_json)
    vocab = len(tok_json["model"]["vocab"])
    tc = dict(TEXT, vocab_size=vocab, bos_token_id=tok.bos, eos_token_id=tok.eos,
              pad_token_id=tok.eos)
    torch.manual_seed(1)
    model = ctr.CLIPModel(ctr.Cfg(**tc), ctr.Cfg(**VISION), PROJ_DIM)
    with torch.no_grad():  # CLIP's init scales (CLIPPreTrainedModel._init_weights, factor 1)
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if p.dim() == 1:
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
            else:
                p.normal_(0.0, 0.02)
    # The auxiliary head: llava-1.5 hands the LLM the patch rows of
    # hidden_states[-2], and a contrastive loss alone puts shape in the
    # pooled CLS row, not in the rows (a probe of the shape at an object's
    # centre patch read ~50%). A per-patch shape/colour classifier on those
    # rows, trained with CLIP and then dropped, puts it there (~98%).
    head = torch.nn.Linear(VISION["hidden_size"], N_SHAPE + N_COLOUR)
    lab_sh, lab_co = label_tensors(scs)
    vpx = pixels(val[1])
    vlab = label_tensors(val[0])
    px = pixels(imgs)
    steps, bs = args.clip_steps, 128
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=args.clip_lr,
                            weight_decay=0.05, betas=(0.9, 0.98))
    rng = random.Random(2)
    model.train()
    t0 = time.time()
    T = tc["max_position_embeddings"]
    for step in range(steps):
        idx = rng.sample(range(len(scs)), bs)
        caps = [tok.encode(S.caption(scs[i], rng)) for i in idx]
        ids = torch.full((bs, T), tok.eos, dtype=torch.long)
        for k, c in enumerate(caps):
            c = c[:T - 1] + [tok.eos] if len(c) > T else c
            ids[k, :len(c)] = torch.tensor(c)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, args.clip_lr, 100)
        ids = ids[:, :max(len(c) for c in caps)]  # causal: padding after the eos is inert
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.vision_model(px[idx])
            img = model.visual_projection(out["pooler_output"])
            _, _, txt = model.get_text_features(ids)
            aux = head(out["hidden_states"][-2][:, 1:]).float()
        img, txt = F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        # scenes with identical captions in one batch are rare; plain targets
        tgt = torch.arange(bs)
        loss = (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.t(), tgt)) / 2
        loss_aux = (F.cross_entropy(aux[..., :N_SHAPE].reshape(-1, N_SHAPE), lab_sh[idx].reshape(-1)) +
                    F.cross_entropy(aux[..., N_SHAPE:].reshape(-1, N_COLOUR), lab_co[idx].reshape(-1)))
        loss = loss + args.aux_weight * loss_aux
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == steps - 1:
            log("clip step %4d/%d  loss %.4f (aux %.4f)  scale %.1f  %.0f s" %
                (step, steps, loss.item(), loss_aux.item(), model.logit_scale.exp().item(),
                 time.time() - t0))
        if step % 500 == 0 or step == steps - 1:
            log("clip step %4d: patch probe on val, shape %.3f colour %.3f" %
                ((step,) + patch_probe(model.vision_model, head, vpx, vlab)))
    model.eval()
    return model, tok, tok_json, tok_cfg, tc


@torch.no_grad()
def patch_probe(vis, head, px, labels):
    """The auxiliary head's accuracy on the patches that an object covers."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o = head(vis(px)["hidden_states"][-2][:, 1:]).float()
    sh, co = labels
    on = sh > 0
    ok_s = (o[..., :N_SHAPE].argmax(-1) == sh)[on].float().mean().item()
    ok_c = (o[..., N_SHAPE:].argmax(-1) == co)[on].float().mean().item()
    return ok_s, ok_c


def round_bf16_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).float())


ZS_LABELS = ["a %s %s" % (c, s) for c in sorted(S.COLOURS) for s in S.SHAPES]


@torch.no_grad()
def zeroshot_eval(model, tok, scs, imgs):
    """Top-1 over the 24 "a {colour} {shape}" labels on one-object scenes."""
    one = [i for i, sc in enumerate(scs) if len(sc["objects"]) == 1]
    if not one:
        return 0.0, 0
    img = F.normalize(model.get_image_features(pixels(imgs[one])), dim=-1)
    txt = torch.cat([model.get_text_features(torch.tensor([tok.encode(l)]))[2]
                     for l in ZS_LABELS])
    txt = F.normalize(txt, dim=-1)
    pred = (img @ txt.t()).argmax(-1).tolist()
    ok = sum(ZS_LABELS[p] == "a " + S.name(scs[i]["objects"][0]) for p, i in zip(pred, one))
    return ok / len(one), len(one)


@torch.no_grad()
def vision_rows(vis, imgs, bs=256, fast=False):
    """hidden_states[-2] without the CLS row: what llava-1.5 selects. fast:
    bf16 autocast (training features: Debian's torch has only the reference
    BLAS for float32 matmuls, ~2.5 GFLOP/s, and oneDNN for bf16)."""
    out = []
    for i in range(0, len(imgs), bs):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            hs = vis(pixels(imgs[i:i + bs]))["hidden_states"]
        out.append(hs[-2][:, 1:].float().contiguous())
    return torch.cat(out)


# ----------------------------------------------------------- stage 2: LLM --

def conversation(sc, rng):
    """Every question of the scene, in random order: [(question, answer)]."""
    qs = [(q, a) for _, q, a in S.questions(sc, rng)]
    rng.shuffle(qs)
    return qs


def prompt_chunks(turns):
    """vicuna_v1 get_prompt around one image, split where <image> stands:
    (text before the image, text after it). turns: [(question, answer or None)]."""
    head = SYSTEM + " USER: "
    tail = ""
    for k, (q, a) in enumerate(turns):
        if k:
            tail += "USER: " + q + " "
        else:
            tail += "\n" + q + " "
        tail += ("ASSISTANT: " + a + "</s>") if a is not None else "ASSISTANT:"
    return head, tail


def encode_conv(sp, turns, n_img):
    """tokenizer_image_token: each chunk tokenized with BOS, BOS kept once;
    -1 marks the image rows. Returns ids and the loss mask (answers + </s>)."""
    head, tail = prompt_chunks(turns)
    a = sp.encode(head)
    b = sp.encode(tail)[1:]
    ids = a + [-1] * n_img + b
    # mask: the ids of each answer and its </s>, found by encoding the
    # prefix up to the answer (tokens never span the word before " answer")
    mask = [0] * len(ids)
    pre = ""
    for k, (q, ans) in enumerate(turns):
        if ans is None:
            break
        pre += ("USER: " + q + " " if k else "\n" + q + " ") + "ASSISTANT:"
        n0 = len(sp.encode(pre)) - 1
        pre += " " + ans + "</s>"
        n1 = len(sp.encode(pre)) - 1
        for j in range(len(a) + n_img + n0, len(a) + n_img + n1):
            mask[j] = 1
    return ids, mask


def init_llm(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    sd = lr.make_weights(cfg, seed)
    for k, v in sd.items():
        if v.dim() == 2:
            sd[k] = torch.randn(v.shape, generator=g) * 0.02
    return {k: v.clone().requires_grad_(True) for k, v in sd.items()}


class Projector(torch.nn.Module):
    def __init__(self, d_in, d):
        super().__init__()
        self.l0 = torch.nn.Linear(d_in, d)
        self.l2 = torch.nn.Linear(d, d)

    def forward(self, x):
        return self.l2(F.gelu(self.l0(x)))

    def state(self):
        return {"model.mm_projector.0.weight": self.l0.weight, "model.mm_projector.0.bias": self.l0.bias,
                "model.mm_projector.2.weight": self.l2.weight, "model.mm_projector.2.bias": self.l2.bias}


def batch_rows(llm, proj, feats, convs):
    """Right-padded inputs_embeds and targets for a batch of encoded
    conversations [(scene index, ids, mask)]; feats: their images' rows."""
    E = llm.sd["model.embed_tokens.weight"]
    B, T = len(convs), max(len(c[1]) for c in convs)
    img = proj(feats)
    rows = []
    tgt = torch.full((B, T), -100, dtype=torch.long)
    for b, (si, ids, m) in enumerate(convs):
        t = torch.tensor(ids)
        pos = (t < 0).nonzero().flatten()
        x = E[t.clamp(min=0)]
        x = torch.cat([x[:pos[0]], img[b], x[pos[-1] + 1:]])
        if len(ids) < T:
            x = torch.cat([x, E[torch.zeros(T - len(ids), dtype=torch.long)]])
        rows.append(x)
        for j in range(1, len(ids)):
            if m[j]:
                tgt[b, j - 1] = ids[j]
    return torch.stack(rows), tgt


def train_llm(args, sp, vis, imgs, scs, cfg, init=None):
    """LLaVA's fine-tune: the projector and the LLM from scratch (or init:
    (LLM state dict, projector state) to go on from). The vision tower is
    frozen as llava-1.5 freezes it (its rows are computed once), unless
    --vision-lr trains it too (an end-to-end fine-tune here lost the shape
    information the rows carried)."""
    torch.manual_seed(3)
    sd = init_llm(cfg, 3)
    d_vis = vis.config.hidden_size
    proj = Projector(d_vis, cfg["hidden_size"])
    if init:
        with torch.no_grad():
            for k in sd:
                sd[k].copy_(init[0][k])
            for k, v in proj.state().items():
                v.copy_(init[1][k])
    llm = lr.Model(cfg, sd)
    params = list(sd.values()) + list(proj.parameters())
    groups = [{"params": params, "base": args.llm_lr}]
    tune_vis = args.vision_lr > 0
    if tune_vis:
        groups.append({"params": list(vis.parameters()), "base": args.vision_lr})
        vis.train()
    else:
        rows = vision_rows(vis, imgs, fast=True)
    opt = torch.optim.AdamW(groups, lr=args.llm_lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng = random.Random(4)
    n_img = (VISION["image_size"] // VISION["patch_size"]) ** 2
    steps, bs = args.llm_steps, 32
    t0 = time.time()
    for step in range(steps):
        convs = []
        idx = rng.sample(range(len(scs)), bs)
        for i in idx:
            ids, m = encode_conv_cached(sp, conversation(scs[i], rng), n_img)
            convs.append((i, ids, m))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if tune_vis:
                feats = vis(pixels(imgs[idx]))["hidden_states"][-2][:, 1:]
            else:
                feats = rows[idx]
            x, tgt = batch_rows(llm, proj, feats, convs)
            B, T, _ = x.shape
            mask = torch.ones(B, T, dtype=torch.long)
            posn = torch.arange(T)[None].expand(B, T)
            logits, _, _ = llm.forward_batch(x, mask, posn)
        loss = F.cross_entropy(logits.float().reshape(B * T, -1), tgt.reshape(-1),
                               ignore_index=-100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, g["base"], 100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log("llm  step %4d/%d  loss %.4f  %.0f s" % (step, steps, loss.item(), time.time() - t0))
    vis.eval()
    return llm, proj


_conv_cache = {}


def encode_conv_cached(sp, turns, n_img):
    key = tuple(turns)
    if key not in _conv_cache:
        _conv_cache[key] = encode_conv(sp, turns, n_img)
    return _conv_cache[key]


@torch.no_grad()
def answer(llm, proj, sp, feat, question, max_new=8):
    """Greedy answer to a first-turn question (llama_ref's KV-cache greedy)."""
    ids, _ = encode_conv(sp, [(question, None)], feat.shape[0])
    t = torch.tensor(ids)
    pos = (t < 0).nonzero().flatten()
    x = llm.embed(t.clamp(min=0))
    x = torch.cat([x[:pos[0]], proj(feat.float()), x[pos[-1] + 1:]])
    out = llm.greedy(x, max_new)
    if 2 in out:
        out = out[:out.index(2) + 1]
    return [i for i in ids], out, sp.decode([i for i in out if i != 2]).strip()


@torch.no_grad()
def qa_eval(llm, proj, sp, feats, scs, seed):
    rng = random.Random(seed)
    per = {t: [0, 0] for t in S.QTYPES}
    for i, sc in enumerate(scs):
        for typ, q, a in S.questions(sc, rng):
            got = answer(llm, proj, sp, feats[i], q)[2]
            per[typ][0] += got == a
            per[typ][1] += 1
    return {t: (v[0] / v[1] if v[1] else 0.0, v[1]) for t, v in per.items()}


# ---------------------------------------------------------------- export --

def bf16(t):
    return t.detach().to(torch.bfloat16).contiguous()


def load_clip(folder):
    """A CLIP this script wrote (for --resume)."""
    cdir = os.path.join(folder, "clip")
    cfg = json.load(open(os.path.join(cdir, "config.json")))
    tc = {k: v for k, v in cfg["text_config"].items() if k != "model_type"}
    model = ctr.CLIPModel(ctr.Cfg(**tc), ctr.Cfg(**VISION), PROJ_DIM)
    res = model.load_state_dict({k: v.float() for k, v in sio.read_model(cdir).items()},
                                strict=False)
    assert not res.unexpected_keys and all(k.endswith("position_ids") for k in res.missing_keys)
    model.eval()
    tok_json = json.load(open(os.path.join(cdir, "tokenizer.json")))
    tok_cfg = json.load(open(os.path.join(cdir, "tokenizer_config.json")))
    return model, ClipTok(tok_json), tok_json, tok_cfg, tc


def load_llava(folder, vis):
    """The LLaVA weights this script wrote, into vis; (LLM state, projector state)."""
    vdir = os.path.join(folder, "llava", "clip-vit-large-patch14-336")
    res = vis.load_state_dict({k[len("vision_model."):]: v.float()
                               for k, v in sio.read_model(vdir).items()}, strict=False)
    assert not res.unexpected_keys and all(k.endswith("position_ids") for k in res.missing_keys)
    p = torch.load(os.path.join(folder, "llava", "mm_projector.bin"))
    sd = sio.read_model(os.path.join(folder, "llava", "llm"))
    return ({k: v.float() for k, v in sd.items()}, {k: v.float() for k, v in p.items()})


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def export(out, clip, vis, tok_json, tok_cfg, tc, llm, proj, sp, cfg):
    cdir = os.path.join(out, "clip")
    os.makedirs(cdir, exist_ok=True)
    sd = {k: bf16(v) for k, v in clip.named_parameters()}
    sio.write_model(cdir, sd)
    ccfg = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": PROJ_DIM,
            "logit_scale_init_value": 2.6592, "torch_dtype": "bfloat16",
            "text_config": dict(tc, model_type="clip_text_model"),
            "vision_config": dict(VISION, model_type="clip_vision_model")}
    for name, obj in (("config.json", ccfg), ("preprocessor_config.json", PREPROCESSOR),
                      ("tokenizer_config.json", tok_cfg)):
        write_json(os.path.join(cdir, name), obj)
    with open(os.path.join(cdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False)
    ldir = os.path.join(out, "llava")
    os.makedirs(ldir, exist_ok=True)
    # the fine-tuned tower, as LLaVA's folder names it: a CLIPVisionModel
    vdir = os.path.join(ldir, "clip-vit-large-patch14-336")
    if os.path.islink(vdir):
        os.remove(vdir)
    sio.write_model(vdir, {"vision_model." + k: bf16(v) for k, v in vis.named_parameters()})
    write_json(os.path.join(vdir, "config.json"),
               dict(VISION, architectures=["CLIPVisionModel"], model_type="clip_vision_model",
                    torch_dtype="bfloat16"))
    write_json(os.path.join(vdir, "preprocessor_config.json"), PREPROCESSOR)
    torch.save({k: bf16(v) for k, v in proj.state().items()}, os.path.join(ldir, "mm_projector.bin"))
    mdir = os.path.join(ldir, "llm")
    lcfg = dict(cfg, torch_dtype="bfloat16", bos_token_id=1, eos_token_id=2,
                tie_word_embeddings=False, rope_theta=10000.0)
    lr.write_model(mdir, lcfg, {k: bf16(v) for k, v in llm.sd.items()})
    with open(os.path.join(mdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(sp.tokenizer_json(), f, ensure_ascii=False)
    with open(os.path.join(mdir, "tokenizer_config.json"), "w") as f:
        json.dump(sp.tokenizer_config(), f, indent=1)
        f.write("\n")
    with open(os.path.join(mdir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--quick", action="store_true", help="a smoke run: few steps, few scenes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clip-steps", type=int, default=3000)
    ap.add_argument("--clip-lr", type=float, default=2e-3)
    ap.add_argument("--aux-weight", type=float, default=1.0,
                    help="weight of the per-patch shape/colour loss beside CLIP's")
    ap.add_argument("--llm-steps", type=int, default=3000)
    ap.add_argument("--llm-lr", type=float, default=2e-3)
    ap.add_argument("--vision-lr", type=float, default=0.0,
                    help="train the vision tower with the LLM at this rate (default: frozen)")
    ap.add_argument("--n-train", type=int, default=12000)
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--llm-rounds", type=int, default=2,
                    help="LLaVA training rounds of --llm-steps each (warm-up and cosine "
                    "schedule per round, weights rounded to bf16 between rounds)")
    ap.add_argument("--resume", help="a folder this script wrote: keep its CLIP and tokenizers, "
                    "go on training its LLaVA for --llm-steps more")
    args = ap.parse_args()
    if args.quick:
        args.clip_steps, args.llm_steps, args.n_train, args.n_val = 30, 30, 600, 40
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_all = time.time()
    scs, imgs = make_split("train", args.n_train)
    vscs, vimgs = make_split("val", args.n_val)
    log("scenes: %d train, %d val (%.0f s)" % (len(scs), len(vscs), time.time() - t_all))

    t0 = time.time()
    if args.resume:
        clip, ctok, tok_json, tok_cfg, tc = load_clip(args.resume)
    else:
        clip, ctok, tok_json, tok_cfg, tc = train_clip(args, scs, imgs, (vscs, vimgs))
    round_bf16_(clip)  # what ships
    t_clip = time.time() - t0
    zs, nzs = zeroshot_eval(clip, ctok, vscs, vimgs)
    log("clip: %.0f s; zero-shot top-1 on %d one-object val scenes: %.3f" % (t_clip, nzs, zs))

    # every conversation starts with the system text: weigh it as such
    texts = []
    rng = random.Random(5)
    for sc in scs[:3000]:
        qs = S.questions(sc, rng)
        texts.append(SYSTEM + " USER: ")
        texts.append(prompt_chunks([(q, a) for _, q, a in qs])[1])
    sp = SPTokenizer.train(texts, 400)
    if args.resume:
        sj = json.load(open(os.path.join(args.resume, "llava", "llm", "tokenizer.json")))
        if sj["model"]["merges"] != ["%s %s" % m for m in sp.merges]:
            raise SystemExit("--resume: the folder's tokenizer is not this script's")
    cfg = lr.make_config("llama", hidden=LLM["hidden"], layers=LLM["layers"], heads=LLM["heads"],
                         kv_heads=LLM["kv_heads"], vocab=len(sp.vocab), inter=LLM["inter"],
                         max_pos=LLM["max_pos"])
    log("llm tokenizer: %d pieces; system prompt = %d ids" % (len(sp.vocab),
                                                            len(sp.encode(SYSTEM + " USER: "))))
    vis = copy.deepcopy(clip.vision_model)
    init = load_llava(args.resume, vis) if args.resume else None
    t0 = time.time()
    for r in range(1 if args.resume else args.llm_rounds):
        if r:
            log("llm round %d" % (r + 1))
        llm, proj = train_llm(args, sp, vis, imgs, scs, cfg, init)
        with torch.no_grad():  # as a --resume from the written files would start
            for v in llm.sd.values():
                v.copy_(bf16(v).float())
            round_bf16_(proj)
            round_bf16_(vis)
        init = ({k: v.detach().clone() for k, v in llm.sd.items()},
                {k: v.detach().clone() for k, v in proj.state().items()})
    t_llm = time.time() - t0
    vfeats = vision_rows(vis, vimgs)
    llm = lr.Model(cfg, {k: v.detach() for k, v in llm.sd.items()})
    acc = qa_eval(llm, proj, sp, vfeats, vscs, 6)
    for t, (a, n) in acc.items():
        log("val %-9s %.3f (%d questions)" % (t, a, n))
    export(args.out, clip, vis, tok_json, tok_cfg, tc, llm, proj, sp, cfg)
    metrics = {"train_scenes": len(scs), "val_scenes": len(vscs), "clip_steps": args.clip_steps,
               "llm_steps": args.llm_steps,
               "llm_rounds": 1 if args.resume else args.llm_rounds, "threads": args.threads,
               "clip_seconds": round(t_clip), "llm_seconds": round(t_llm),
               "total_seconds": round(time.time() - t_all),
               "val_zeroshot_top1": round(zs, 4), "val_zeroshot_scenes": nzs,
               "val_accuracy": {t: round(a, 4) for t, (a, n) in acc.items()},
               "val_questions": {t: n for t, (a, n) in acc.items()},
               "resumed_from_a_previous_run": bool(args.resume),
               "torch": torch.__version__}
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    log("wrote %s (%.0f s in all)" % (args.out, time.time() - t_all))


if __name__ == "__main__":
    main()
