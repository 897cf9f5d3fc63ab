#!/usr/bin/env python3
"""LLM prefill and decode speed: vtok (f32 / bf16 / int8 / q4 weights) and
PyTorch (Debian python3-torch, f32 and bf16) on the same random-weight
TinyLlama-1.1B-config model, against this machine's DRAM read bandwidth
measured in the same run (decode streams every weight once per token, so its
bound is bandwidth / weight bytes per token). Not a test.

    /usr/bin/python3 bench/bench_llm.py --vtok build/vtok [--threads 1,2]
        [--dtypes f32,bf16,int8,q4] [--prompt 128] [--gen 32] [--rounds 2] [--md FILE]

The first run writes the model (bf16 safetensors, 2.2 GB) under
bench/.models/tinyllama-rand/ with Mistral's tokenizer.json (same 32000-id
vocabulary; from tests/text/node_modules: `make npm-deps`). Engines run
interleaved, `--rounds` times each; medians are reported.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import safetensors_io  # noqa: E402

CFG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
       "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
       "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048,
       "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
       "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
TOKDIR = os.path.join(REPO, "tests", "text", "node_modules", "@lenml", "tokenizer-llama2",
                      "models")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_model(d):
    if os.path.isfile(os.path.join(d, "config.json")):
        return
    log("writing the random TinyLlama-1.1B-config model to", d)
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    g = torch.Generator().manual_seed(0)
    H, I, V = CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"]
    dh = H // CFG["num_attention_heads"]
    kv = CFG["num_key_value_heads"] * dh

    def w(o, i):
        return (torch.randn(o, i, generator=g) / math.sqrt(i)).to(torch.bfloat16)

    sd = {"model.embed_tokens.weight": torch.randn(V, H, generator=g).to(torch.bfloat16),
          "model.norm.weight": torch.ones(H, dtype=torch.bfloat16),
          "lm_head.weight": w(V, H)}
    for i in range(CFG["num_hidden_layers"]):
        p = "model.layers.%d." % i
        sd[p + "input_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
        sd[p + "self_attn.q_proj.weight"] = w(H, H)
        sd[p + "self_attn.k_proj.weight"] = w(kv, H)
        sd[p + "self_attn.v_proj.weight"] = w(kv, H)
        sd[p + "self_attn.o_proj.weight"] = w(H, H)
        sd[p + "mlp.gate_proj.weight"] = w(I, H)
        sd[p + "mlp.up_proj.weight"] = w(I, H)
        sd[p + "mlp.down_proj.weight"] = w(H, I)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(CFG, f, indent=2)
    safetensors_io.write_model(tmp, sd, 2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKDIR, f), tmp)
    os.rename(tmp, d)


def linear_params():
    H, I, V, L = (CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"],
                  CFG["num_hidden_layers"])
    kv = CFG["num_key_value_heads"] * H // CFG["num_attention_heads"]
    return L * (2 * H * H + 2 * kv * H + 3 * H * I) + V * H


BYTES_PER_WEIGHT = {"f32": 4.0, "bf16": 2.0, "int8": 1.0 + 8.0 / 2048, "q4": 0.5625}


def membw(threads):
    exe = os.path.join(REPO, "build", "membw")
    if not os.path.isfile(exe):
        subprocess.run(["gcc", "-O3", "-march=native", "-pthread",
                        os.path.join(HERE, "membw.c"), "-o", exe], check=True)
    return json.loads(subprocess.run([exe, str(threads)], stdout=subprocess.PIPE,
                                     check=True).stdout)["gbps"]


# ---- PyTorch peer: the same model, eager ops with SDPA and a KV cache ----

class Torch:
    def __init__(self, d, dtype):
        sd = safetensors_io.read_model(d)
        self.w = {k: v.to(dtype) for k, v in sd.items()}
        self.dtype = dtype
        H, nh = CFG["hidden_size"], CFG["num_attention_heads"]
        self.dh = H // nh
        inv = 1.0 / (CFG["rope_theta"] ** (torch.arange(0, self.dh, 2).float() / self.dh))
        self.inv = inv

    def rope(self, x, pos):
        f = torch.outer(pos.float(), self.inv)
        e = torch.cat((f, f), -1)
        cos, sin = e.cos().to(self.dtype), e.sin().to(self.dtype)
        x1, x2 = x[..., : self.dh // 2], x[..., self.dh // 2:]
        return x * cos + torch.cat((-x2, x1), -1) * sin

    def norm(self, x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + CFG["rms_norm_eps"])
                ).to(self.dtype) * w

    @torch.inference_mode()
    def forward(self, ids, cache, p0):
        W, nh, nkv = self.w, CFG["num_attention_heads"], CFG["num_key_value_heads"]
        T = ids.shape[0]
        pos = torch.arange(p0, p0 + T)
        h = W["model.embed_tokens.weight"][ids]
        for i in range(CFG["num_hidden_layers"]):
            p = "model.layers.%d." % i
            x = self.norm(h, W[p + "input_layernorm.weight"])
            q = F.linear(x, W[p + "self_attn.q_proj.weight"]).view(T, nh, self.dh).transpose(0, 1)
            k = F.linear(x, W[p + "self_attn.k_proj.weight"]).view(T, nkv, self.dh).transpose(0, 1)
            v = F.linear(x, W[p + "self_attn.v_proj.weight"]).view(T, nkv, self.dh).transpose(0, 1)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if cache[i] is not None:
                k = torch.cat((cache[i][0], k), 1)
                v = torch.cat((cache[i][1], v), 1)
            cache[i] = (k, v)
            rep = nh // nkv
            kr = k.repeat_interleave(rep, 0)
            vr = v.repeat_interleave(rep, 0)
            # Debian's torch 1.13 has no F.scaled_dot_product_attention
            s = torch.matmul(q, kr.transpose(1, 2)) / math.sqrt(self.dh)
            if T > 1:
                s = s + torch.full((T, T), float("-inf"), dtype=s.dtype).triu(1)
            a = torch.matmul(torch.softmax(s.float(), -1).to(self.dtype), vr)
            h = h + F.linear(a.transpose(0, 1).reshape(T, -1), W[p + "self_attn.o_proj.weight"])
            x = self.norm(h, W[p + "post_attention_layernorm.weight"])
            h = h + F.linear(F.silu(F.linear(x, W[p + "mlp.gate_proj.weight"])) *
                             F.linear(x, W[p + "mlp.up_proj.weight"]),
                             W[p + "mlp.down_proj.weight"])
        h = self.norm(h[-1:], W["model.norm.weight"])
        return F.linear(h, W["lm_head.weight"])

    def run(self, ids, gen):
        cache = [None] * CFG["num_hidden_layers"]
        t0 = time.perf_counter()
        logits = self.forward(ids, cache, 0)
        t1 = time.perf_counter()
        n = ids.shape[0]
        for s in range(gen - 1):
            t = torch.argmax(logits[-1]).view(1)
            logits = self.forward(t, cache, n + s)
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", default=os.path.join(REPO, "build", "vtok"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtypes", default="f32,bf16,int8,q4")
    ap.add_argument("--torch", default="f32,bf16", help="torch dtypes ('' = none)")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens (about)")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--md")
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(TOKDIR, "tokenizer.json")):
        sys.exit("bench_llm: run `make npm-deps` (the tokenizer comes from tests/text)")
    d = os.path.join(HERE, ".models", "tinyllama-rand")
    make_model(d)
    text = ("The quick brown fox jumps over the lazy dog while the old clock on the wall "
            "keeps ticking. ") * 64
    words = text.split()
    # about a.prompt tokens: this sentence is ~21 tokens per 19 words
    text = " ".join(words[: max(1, int(a.prompt * 19 / 21))])
    threads = [int(t) for t in a.threads.split(",") if t]
    dtypes = [x for x in a.dtypes.split(",") if x]
    tdt = [x for x in a.torch.split(",") if x]
    n_w = linear_params()
    bw = {t: membw(t) for t in threads}
    log("DRAM read bandwidth:", bw)
    res = {}
    torch_models = {}
    for r in range(a.rounds):
        for t in threads:
            for dt in dtypes:
                cmd = [a.vtok, "generate", "--llm", d, "-p", text, "--max-tokens", str(a.gen),
                       "--json", "--dtype", dt, "--threads", str(t)]
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                if p.returncode:
                    log("vtok", dt, "failed:", p.stderr.decode()[-300:])
                    continue
                j = json.loads(p.stdout.decode().strip().splitlines()[-1])
                res.setdefault(("vtok", dt, t), []).append(
                    (j["prompt_tokens"], j["prefill_ms"], len(j["ids"]), j["decode_ms"]))
                log("round %d vtok %s t=%d: prefill %.0f ms, decode %.0f ms" %
                    (r, dt, t, j["prefill_ms"], j["decode_ms"]))
            for dt in tdt:
                torch.set_num_threads(t)
                if dt not in torch_models:
                    torch_models[dt] = Torch(d, torch.float32 if dt == "f32" else torch.bfloat16)
                n_prompt = res.get(("vtok", dtypes[0], t), [(a.prompt,)])[0][0]
                ids = torch.randint(0, CFG["vocab_size"], (n_prompt,))
                pre, dec = torch_models[dt].run(ids, a.gen)
                res.setdefault(("torch", dt, t), []).append((n_prompt, pre, a.gen, dec))
                log("round %d torch %s t=%d: prefill %.0f ms, decode %.0f ms" % (r, dt, t, pre, dec))
    rows = ["| engine | weights | threads | prefill tok/s | decode tok/s | decode weight GB/s | "
            "% of DRAM bound | prefill vs torch-bf16 |", "|---|---|---|---|---|---|---|---|"]
    for t in threads:
        tb = res.get(("torch", "bf16", t))
        tb_pre = statistics.median(n / (ms / 1e3) for n, ms, _, _ in tb) if tb else None
        for key in sorted(k for k in res if k[2] == t):
            eng, dt, _ = key
            runs = res[key]
            pre = statistics.median(n / (ms / 1e3) for n, ms, _, _ in runs)
            dec = statistics.median((g - 1) / (ms / 1e3) for _, _, g, ms in runs if g > 1)
            bpw = BYTES_PER_WEIGHT.get(dt, 2.0)
            gbs = dec * n_w * bpw / 1e9
            rows.append("| %s | %s | %d | %.1f | %.2f | %.1f | %.0f%% | %s |" %
                        (eng, dt, t, pre, dec, gbs, 100 * gbs / bw[t],
                         "%.2fx" % (pre / tb_pre) if tb_pre else "-"))
    table = "\n".join(rows)
    head = ("TinyLlama-1.1B config, random weights, %d linear weights; prompt %s tokens, %d "
            "generated (greedy); DRAM read %s GB/s (threads: GB/s); medians of %d rounds\n\n" %
            (n_w, res.get(("vtok", dtypes[0], threads[0]), [("?",)])[0][0], a.gen,
             ", ".join("%d: %.1f" % kv for kv in bw.items()), a.rounds))
    print(head + table)
    if a.md:
        with open(a.md, "w") as f:
            f.write(head + table + "\n")


if __name__ == "__main__":
    main()
