#!/usr/bin/env python3
"""Time the PyTorch reference CLIP vision tower (tests/ref/hf_vision.py),
the "peer" that vtok's CPU numbers are compared with.

    bench/peers_torch.py [--model b16|l14|all | --model-dir DIR] [--threads 1,2] [--batch 1]
                         [--iters 5] [--warmup 1] [--backend eager|mkldnn|bf16|...|all]
                         [--pixels X.npy] [--out Y.npy] [--json]

Weights: --model-dir DIR loads a HF folder with hf_vision.load_model_dir()
(the same safetensors vtok and the ONNX export read; bench/bench_encoders.py
uses this).  Without it, --model builds the named tower with seeded random
weights (torch.randn * 0.02, LayerNorms 1/0):
    b16  CLIP ViT-B/16 @ 224: hidden 768, 12 layers, 12 heads, MLP 3072, patch 16 (197 tokens)
    l14  CLIP ViT-L/14 @ 336: hidden 1024, 24 layers, 16 heads, MLP 4096, patch 14 (577 tokens)
For each model, backend and thread count (torch.set_num_threads(T), interop
threads 1) prints the median (and min) milliseconds per image over --iters
timed runs after --warmup untimed runs, on --batch images (random pixels,
or --pixels X.npy).  --out writes last_hidden_state (float32 .npy) of the
first run.  --json prints one JSON object per line (with all times).
Set OMP_WAIT_POLICY=PASSIVE in the environment on shared machines.

Backends (all under torch.no_grad, eval mode, eager attention):
    eager   the reference exactly as written (nn.Linear -> aten::addmm -> the
            BLAS torch was built with). NOTE: Debian's torch 1.13 is built
            with BLAS_INFO=generic, i.e. the reference netlib BLAS, so this is
            very slow (ViT-B/16 ~10 s/image, ViT-L/14-336 ~2 min/image on one
            core of this machine) -- it is what "PyTorch as installed" does.
    mkldnn  the same module after torch.utils.mkldnn.to_mkldnn(): Linear and
            Conv2d run as oneDNN inner-product/convolution (JIT AVX2/AVX-512
            GEMM), the fast f32 CPU path this torch build has.  The attention
            matmuls (Q K^T, P V) stay on aten::bmm = generic BLAS (~half the
            time for ViT-B/16).  Outputs agree with eager to ~1e-6 relative.
    bf16    torch.autocast("cpu", dtype=torch.bfloat16) around the PLAIN
            module: Linear/matmul/bmm run in bfloat16 through oneDNN's bf16
            GEMM (AVX512-BF16 here); LayerNorm/softmax per autocast's lists.
            Fastest bf16 autocast variant measured on this CPU (see below).
    bf16-mkldnn       autocast around the mkldnn (f32 weights) module: only
            the attention matmuls become bf16 (mkldnn_linear is not an
            autocast op).  Slower than bf16.
    bf16-mkldnn-bf16  autocast around to_mkldnn(module, torch.bfloat16)
            (bf16 oneDNN weights, packed once).  Slower than bf16 here.
The header line / JSON records torch's BLAS_INFO so numbers are not
misread.
"""

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "ref"))
import hf_vision as hv  # noqa: E402

MODELS = {
    "b16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                patch_size=16, image_size=224, name="CLIP ViT-B/16-224"),
    "l14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                patch_size=14, image_size=336, name="CLIP ViT-L/14-336"),
}
BACKENDS = ("eager", "mkldnn", "bf16", "bf16-mkldnn", "bf16-mkldnn-bf16")


@torch.no_grad()
def build(key):
    spec = dict(MODELS[key])
    name = spec.pop("name")
    cfg = dict(spec, architectures=["CLIPVisionModel"], model_type="clip_vision_model")
    model = hv.build_model(cfg)
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
    return name, model.eval()


def blas_info():
    cfg = torch.__config__.show()
    for part in cfg.replace(",", "\n").splitlines():
        if "BLAS_INFO=" in part:
            return part.strip().split("=", 1)[1]
    return "unknown"


def for_backend(model, backend, keep_original):
    """(module, autocast dtype or None).  to_mkldnn() rewrites the module it
    is given in place, so it gets a copy when the original is still needed."""
    import torch.utils.mkldnn as mk
    if backend in ("eager", "bf16"):
        return model, (torch.bfloat16 if backend == "bf16" else None)
    src = copy.deepcopy(model) if keep_original else model
    if backend == "mkldnn":
        return mk.to_mkldnn(src), None
    if backend == "bf16-mkldnn":
        return mk.to_mkldnn(src), torch.bfloat16
    if backend == "bf16-mkldnn-bf16":
        return mk.to_mkldnn(src, torch.bfloat16), torch.bfloat16
    raise ValueError(backend)


@torch.no_grad()
def time_model(model, x, threads, iters, warmup, amp):
    torch.set_num_threads(threads)
    ctx = (lambda: torch.autocast("cpu", dtype=amp)) if amp is not None else contextlib.nullcontext

    def fwd():
        with ctx():
            return model(x)["last_hidden_state"]

    first = None
    for _ in range(warmup):
        y = fwd()
        if first is None:
            first = y
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        y = fwd()
        times.append((time.perf_counter() - t0) * 1000.0)
        if first is None:
            first = y
    return times, first


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all", help="b16, l14 or all (random weights)")
    ap.add_argument("--model-dir", help="HF model folder to load instead of --model")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--backend", default="eager", help="%s, or all (= eager,mkldnn)" % ", ".join(BACKENDS))
    ap.add_argument("--pixels", help="float32 .npy [B,3,S,S] input instead of random pixels")
    ap.add_argument("--out", help="write last_hidden_state (float32 .npy) of the first run here")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    a = ap.parse_args()
    if a.model_dir:
        keys = [a.model_dir]
    else:
        keys = list(MODELS) if a.model == "all" else a.model.split(",")
        for k in keys:
            if k not in MODELS:
                ap.error("unknown model %r (b16, l14, all)" % k)
    threads = [int(t) for t in a.threads.split(",")]
    backends = ["eager", "mkldnn"] if a.backend == "all" else a.backend.split(",")
    for b in backends:
        if b not in BACKENDS:
            ap.error("unknown backend %r (%s, all)" % (b, ", ".join(BACKENDS)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if not a.json:
        print("torch %s (BLAS_INFO=%s), %s, %d logical CPUs" % (
            torch.__version__, blas_info(), platform.processor() or platform.machine(), os.cpu_count()))
        print("%-20s %-16s %5s %7s %12s %12s" % ("model", "backend", "batch", "threads", "median ms/img",
                                                  "min ms/img"))
    for k in keys:
        if a.model_dir:
            with torch.no_grad():
                base = hv.load_model_dir(k).eval()
            name, size = k, base.vtok_config.image_size
        else:
            name, base = build(k)
            size = MODELS[k]["image_size"]
        if a.pixels:
            x = torch.from_numpy(np.load(a.pixels).astype(np.float32))
        else:
            x = torch.randn(a.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
        batch = x.shape[0]
        for i, b in enumerate(backends):
            model, amp = for_backend(base, b, keep_original=i + 1 < len(backends))
            for t in threads:
                times, y = time_model(model, x, t, a.iters, a.warmup, amp)
                if a.out and y is not None:
                    np.save(a.out, y.float().numpy())
                med = statistics.median(times) if times else float("nan")
                if a.json:
                    print(json.dumps({"peer": "torch-ref", "backend": b, "model": k, "name": name, "threads": t,
                                      "batch": batch, "iters": a.iters, "warmup": a.warmup,
                                      "times_ms": [round(v, 3) for v in times],
                                      "median_ms": round(med, 3), "ms_per_image": round(med / batch, 3),
                                      "min_ms": round(min(times), 3) if times else None,
                                      "torch": torch.__version__, "blas": blas_info(),
                                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}), flush=True)
                else:
                    print("%-20s %-16s %5d %7d %12.1f %12.1f" % (name, b, batch, t, med / batch,
                                                                min(times) / batch), flush=True)


if __name__ == "__main__":
    main()
