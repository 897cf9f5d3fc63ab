#!/usr/bin/env python3
"""Time the PyTorch reference CLIP vision tower (tests/ref/hf_vision.py),
the "peer" that vtok's CPU numbers are compared with.

    bench/peers_torch.py [--model b16|l14|all] [--threads 1,2] [--iters 5] [--warmup 1]
                         [--backend eager|mkldnn|all] [--json]

Models (random weights, float32, batch 1, eager attention, torch.no_grad):
    b16  CLIP ViT-B/16 @ 224: hidden 768, 12 layers, 12 heads, MLP 3072, patch 16 (197 tokens)
    l14  CLIP ViT-L/14 @ 336: hidden 1024, 24 layers, 16 heads, MLP 4096, patch 14 (577 tokens)
For each model and thread count (torch.set_num_threads(T), interop threads 1)
prints the median (and min) milliseconds per image over --iters timed runs
after --warmup untimed runs. --json prints one JSON object per line instead.

Backends:
    eager   the reference exactly as written (nn.Linear -> aten::addmm -> the
            BLAS torch was built with). NOTE: Debian's torch 1.13 is built
            with BLAS_INFO=generic, i.e. the reference netlib BLAS, so this is
            very slow (ViT-B/16 ~10 s/image, ViT-L/14-336 ~2 min/image on one
            core of this machine) -- it is what "PyTorch as installed" does.
    mkldnn  the same module after torch.utils.mkldnn.to_mkldnn(): Linear and
            Conv2d run as oneDNN inner-product/convolution (JIT AVX2/AVX-512
            GEMM), the fast CPU path this torch build has; attention matmuls
            stay on aten::bmm.  Outputs agree with eager to ~1e-6 relative.
The header line / JSON records torch's BLAS_INFO so numbers are not
misread.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

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


def for_backend(model, backend):
    if backend == "eager":
        return model
    import torch.utils.mkldnn as mk
    return mk.to_mkldnn(model)


@torch.no_grad()
def time_model(model, size, threads, iters, warmup):
    torch.set_num_threads(threads)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all", help="b16, l14 or all")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--backend", default="eager", help="eager, mkldnn or all")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    a = ap.parse_args()
    keys = list(MODELS) if a.model == "all" else a.model.split(",")
    for k in keys:
        if k not in MODELS:
            ap.error("unknown model %r (b16, l14, all)" % k)
    threads = [int(t) for t in a.threads.split(",")]
    backends = ["eager", "mkldnn"] if a.backend == "all" else a.backend.split(",")
    for b in backends:
        if b not in ("eager", "mkldnn"):
            ap.error("unknown backend %r (eager, mkldnn, all)" % b)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if not a.json:
        print("torch %s (BLAS_INFO=%s), %s, %d logical CPUs" % (
            torch.__version__, blas_info(), platform.processor() or platform.machine(), os.cpu_count()))
        print("%-20s %-7s %7s %12s %12s" % ("model", "backend", "threads", "median ms", "min ms"))
    for k in keys:
        name, base = build(k)
        for b in backends:
            model = for_backend(base, b)
            for t in threads:
                times = time_model(model, MODELS[k]["image_size"], t, a.iters, a.warmup)
                med = statistics.median(times)
                if a.json:
                    print(json.dumps({"peer": "torch-ref", "backend": b, "model": k, "name": name, "threads": t,
                                      "batch": 1, "iters": a.iters, "median_ms": round(med, 3),
                                      "min_ms": round(min(times), 3), "torch": torch.__version__,
                                      "blas": blas_info()}), flush=True)
                else:
                    print("%-20s %-7s %7d %12.1f %12.1f" % (name, b, t, med, min(times)), flush=True)


if __name__ == "__main__":
    main()
