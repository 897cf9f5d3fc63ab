#!/usr/bin/env python3
"""Encoder speed: vtok vs its peers on identical work, one markdown table.

    /usr/bin/python3 bench/bench_encoders.py [--quick]

Builds random-weight CLIP vision towers (ViT-B/16-224 "b16", ViT-L/14-336
"l14") as HF folders under --cache (bench/.models), exports each folder to
ONNX (bench/export_onnx.py, same weights), then for every (model, batch,
threads) runs interleaved rounds of the engines, each run in its own process:

    vtok        `vtok bench` (float32)
    vtok-bf16   `vtok bench --dtype bf16` (bf16 Linear layers, f32 sums)
    vtok-int8   `vtok bench --dtype int8` (int8 weights per channel, dynamic
                per-row int8 activations, int32 sums)
    torch-f32   bench/peers_torch.py --backend mkldnn  (oneDNN Linear/Conv)
    torch-bf16  bench/peers_torch.py --backend bf16    (autocast bfloat16)
    ort-f32     bench/peers_ort.mjs (onnxruntime-node, CPU EP, float32)
    torch-eager bench/peers_torch.py --backend eager   (only with --eager;
                b16 batch 1 only: Debian's generic BLAS makes it ~10 s/image)

Per round every engine does 1 warm-up + --iters timed runs; a row's ms/image
is the median over rounds of the per-round medians (--rounds x --iters timed
runs in all).  Accuracy: one extra run per engine on the same --acc-batch
random pixel_values, last_hidden_state compared with torch-f32 (cosine and
max|a-e|/max|e|).  Torch children run with OMP_WAIT_POLICY=PASSIVE and ORT
with intra-op spinning off (--ort-spin 1: ORT's default, spinning on).
See bench/README.md for the columns.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import safetensors_io as sio  # noqa: E402

MODELS = {
    # name: (hidden, layers, heads, mlp, patch, image)
    "b16": (768, 12, 12, 3072, 16, 224),
    "l14": (1024, 24, 16, 4096, 14, 336),
}
LABEL = {"b16": "ViT-B/16-224", "l14": "ViT-L/14-336"}
ENGINES = ("vtok", "vtok-bf16", "vtok-int8", "torch-f32", "torch-bf16", "ort-f32", "torch-eager")
TORCH_BACKEND = {"torch-f32": "mkldnn", "torch-bf16": "bf16", "torch-eager": "eager"}
T0 = time.time()


def log(msg):
    print("[%6.0fs] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


def make_clip(path, hidden, layers, heads, mlp, patch, image):
    """A CLIPVisionModel folder with random float32 weights (HF tensor names)."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(0)
    grid = image // patch
    t = {}

    def rnd(*shape, s=0.02):
        return (rng.standard_normal(shape, dtype=np.float32) * s).astype(np.float32)

    p = "vision_model."
    t[p + "embeddings.patch_embedding.weight"] = rnd(hidden, 3, patch, patch)
    t[p + "embeddings.class_embedding"] = rnd(hidden)
    t[p + "embeddings.position_embedding.weight"] = rnd(grid * grid + 1, hidden)
    for n in ("pre_layrnorm", "post_layernorm"):
        t[p + n + ".weight"] = np.ones(hidden, np.float32)
        t[p + n + ".bias"] = np.zeros(hidden, np.float32)
    for i in range(layers):
        b = f"{p}encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            t[b + n + ".weight"] = np.ones(hidden, np.float32)
            t[b + n + ".bias"] = np.zeros(hidden, np.float32)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[b + "self_attn." + n + ".weight"] = rnd(hidden, hidden)
            t[b + "self_attn." + n + ".bias"] = rnd(hidden)
        t[b + "mlp.fc1.weight"] = rnd(mlp, hidden)
        t[b + "mlp.fc1.bias"] = rnd(mlp)
        t[b + "mlp.fc2.weight"] = rnd(hidden, mlp)
        t[b + "mlp.fc2.bias"] = rnd(hidden)
    entries = [(k, "F32", list(v.shape), v.tobytes()) for k, v in sorted(t.items())]
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(sio.build_file_bytes(entries, {"format": "pt"}))
    cfg = {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"],
           "hidden_size": hidden, "intermediate_size": mlp, "num_hidden_layers": layers,
           "num_attention_heads": heads, "patch_size": patch, "image_size": image}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def flops_per_image(hidden, layers, heads, mlp, patch, image):
    """Multiply-adds x 2 of the GEMMs: patch embedding, per layer QKV/out
    projections + MLP (2*T*(4d^2 + 2*d*ff)) and attention (Q K^T and P V:
    2*2*T^2*d).  LayerNorm, softmax, activations and biases not counted."""
    n = (image // patch) ** 2
    t = n + 1
    d = hidden
    return 2 * n * 3 * patch * patch * d + layers * (2 * t * (4 * d * d + 2 * d * mlp) + 2 * 2 * t * t * d)


def run_measured(cmd, env=None):
    """Run cmd, return (parsed last stdout JSON line, peak RSS in MiB of that
    process alone via wait4)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
        out = p.stdout.read()
        p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            raise RuntimeError("%s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode, err.read()[-3000:]))
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1]) if lines else {}
    return res, ru.ru_maxrss / 1024.0  # Linux: KiB


def torch_env():
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def engine_cmd(engine, a, model_dir, onnx, batch, threads, iters, pixels=None, out=None):
    """(argv, env) of one run of `engine`."""
    if engine.startswith("vtok"):
        dtype = ["--dtype", engine[5:] or "f32"]
        if pixels:
            return ([a.vtok, "encode", "--model", model_dir, "--pixels", pixels, "--out", out,
                     "--threads", str(threads)] + dtype, None)
        return ([a.vtok, "bench", "--model", model_dir, "--threads", str(threads), "--batch", str(batch),
                 "--iters", str(iters)] + dtype, None)
    if engine == "ort-f32":
        cmd = [a.node, os.path.join(HERE, "peers_ort.mjs"), "--onnx", onnx, "--threads", str(threads),
               "--batch", str(batch), "--iters", str(iters), "--warmup", "1", "--spin", str(a.ort_spin)]
        if pixels:
            cmd += ["--pixels", pixels, "--out", out, "--iters", "0"]
        return cmd, None
    cmd = [sys.executable, os.path.join(HERE, "peers_torch.py"), "--model-dir", model_dir,
           "--backend", TORCH_BACKEND[engine], "--threads", str(threads), "--batch", str(batch),
           "--iters", str(iters), "--warmup", "1", "--json"]
    if pixels:
        cmd += ["--pixels", pixels, "--out", out, "--iters", "0"]
    return cmd, torch_env()


def compare(a, e):
    a = a.astype(np.float64).ravel()
    e = e.astype(np.float64).ravel()
    cos = float(a @ e / (np.linalg.norm(a) * np.linalg.norm(e)))
    rel = float(np.abs(a - e).max() / np.abs(e).max())
    return cos, rel


def accuracy(a, name, model_dir, onnx, engines, work):
    """{engine: (cosine, max rel err)} of last_hidden_state vs torch-f32."""
    hidden, layers, heads, mlp, patch, image = MODELS[name]
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.8, 2.1, size=(a.acc_batch, 3, image, image)).astype(np.float32)
    px = os.path.join(work, name + "_pixels.npy")
    np.save(px, x)
    outs = {}
    for eng in ["torch-f32"] + [e for e in engines if e not in ("torch-f32", "torch-eager")]:
        if eng.startswith("vtok"):
            d = os.path.join(work, name + "_" + eng)
            os.makedirs(d, exist_ok=True)
            cmd, env = engine_cmd(eng, a, model_dir, onnx, a.acc_batch, 2, 0, px, d)
            run_measured(cmd, env)
            outs[eng] = np.load(os.path.join(d, "last_hidden_state.npy"))
        else:
            o = os.path.join(work, "%s_%s.npy" % (name, eng))
            cmd, env = engine_cmd(eng, a, model_dir, onnx, a.acc_batch, 2, 0, px, o)
            run_measured(cmd, env)
            outs[eng] = np.load(o)
        log("accuracy %s %s done" % (name, eng))
    ref = outs["torch-f32"]
    res = {}
    for eng, y in outs.items():
        if y.shape != ref.shape:
            raise RuntimeError("%s: %s output shape %s != torch %s" % (name, eng, y.shape, ref.shape))
        res[eng] = compare(y, ref)
    return res


def fmt_acc(c):
    if c is None:
        return "-"
    cos, rel = c
    if rel == 0.0:
        return "reference"
    return "1-cos %.1e, max rel %.1e" % (max(1.0 - cos, 0.0), rel)


def vtok_version(a):
    try:
        v = subprocess.run([a.vtok, "version"], capture_output=True, text=True).stdout.strip()
        return v.split()[-1] if v else "?"
    except OSError:
        return "?"


def ensure_ort(a):
    if os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        return True
    if not shutil.which(a.node):
        log("node not found: skipping ort-f32")
        return False
    log("bench/node_modules missing: running `npm ci` in bench/ (onnxruntime-node, see package.json)")
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE)
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vtok", default=os.path.join(ROOT, "build", "vtok"))
    ap.add_argument("--node", default="node")
    ap.add_argument("--cache", default=os.path.join(HERE, ".models"))
    ap.add_argument("--models", default="b16,l14")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per (model, batch, threads)")
    ap.add_argument("--iters", type=int, default=2, help="timed runs per engine per round (after 1 warm-up)")
    ap.add_argument("--engines", default="vtok,vtok-bf16,vtok-int8,torch-f32,torch-bf16,ort-f32",
                    help="subset of %s" % ",".join(ENGINES))
    ap.add_argument("--ort-spin", type=int, default=0, choices=(0, 1),
                    help="ORT intra-op thread spinning: 0 (default here) = allow_spinning 0, the analogue "
                         "of torch's OMP_WAIT_POLICY=PASSIVE on a shared machine; 1 = ORT's own default")
    ap.add_argument("--eager", action="store_true",
                    help="also time torch-eager (generic BLAS; b16 batch 1 only, ~10 s/image)")
    ap.add_argument("--quick", action="store_true", help="skip l14 at batch > 1")
    ap.add_argument("--acc-batch", type=int, default=2, help="images in the accuracy check")
    ap.add_argument("--no-acc", action="store_true", help="skip the accuracy runs")
    ap.add_argument("--md", help="also write the table (with a header) to this file")
    a = ap.parse_args()

    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    if a.eager and "torch-eager" not in engines:
        engines.append("torch-eager")
    for e in engines:
        if e not in ENGINES:
            ap.error("unknown engine %r" % e)
    if "vtok" not in engines:
        ap.error("vtok must be one of the engines (ratios are to vtok)")
    if not os.access(a.vtok, os.X_OK):
        sys.exit("%s not found: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2"
                 % a.vtok)
    if "ort-f32" in engines and not ensure_ort(a):
        engines.remove("ort-f32")
    if a.rounds * a.iters < 5:
        log("note: %d rounds x %d iters = %d timed runs per engine (< 5)" % (a.rounds, a.iters,
                                                                            a.rounds * a.iters))
    models = a.models.split(",")
    threads = [int(x) for x in a.threads.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    load0 = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="vtok-bench-")
    versions = {"vtok": vtok_version(a)}
    rows = []
    try:
        for name in models:
            if name not in MODELS:
                ap.error("unknown model %r" % name)
            path = os.path.join(a.cache, "clip-" + name)
            make_clip(path, *MODELS[name])
            onnx = os.path.join(a.cache, "clip-%s.onnx" % name)
            if "ort-f32" in engines:
                meta, _ = run_measured([sys.executable, os.path.join(HERE, "export_onnx.py"), path, onnx])
                versions["onnx_opset"] = meta.get("opset")
                log("%s: ONNX %s (opset %s)" % (name, onnx, meta.get("opset")))
            acc = {} if a.no_acc else accuracy(a, name, path, onnx, engines, work)
            gflop = flops_per_image(*MODELS[name]) / 1e9
            for batch in batches:
                if a.quick and name == "l14" and batch > 1:
                    continue
                for th in threads:
                    eng_here = [e for e in engines if e != "torch-eager" or (name == "b16" and batch == 1)]
                    per = {e: [] for e in eng_here}
                    rss = {e: 0.0 for e in eng_here}
                    for r in range(a.rounds):
                        k = r % len(eng_here)  # rotate the order so no engine always follows the same one
                        for eng in eng_here[k:] + eng_here[:k]:
                            it = 1 if eng == "torch-eager" else a.iters
                            cmd, env = engine_cmd(eng, a, path, onnx, batch, th, it)
                            res, mib = run_measured(cmd, env)
                            per[eng].append(res["ms_per_image"])
                            rss[eng] = max(rss[eng], mib)
                            if eng == "ort-f32":
                                versions["onnxruntime-node"] = res.get("ort")
                                versions["node"] = res.get("node")
                            elif eng.startswith("torch"):
                                versions["torch"] = "%s (BLAS_INFO=%s)" % (res.get("torch"), res.get("blas"))
                        log("%s batch %d threads %d round %d/%d: %s" % (
                            name, batch, th, r + 1, a.rounds,
                            ", ".join("%s %.1f" % (e, per[e][-1]) for e in eng_here)))
                    base = statistics.median(per["vtok"])
                    peers = [statistics.median(per[e]) for e in eng_here if not e.startswith("vtok")]
                    best = min(peers) if peers else None
                    for eng in eng_here:
                        ms = statistics.median(per[eng])
                        rows.append(dict(model=name, batch=batch, threads=th, engine=eng, ms=ms,
                                         lo=min(per[eng]), hi=max(per[eng]), gflops=gflop / (ms / 1000.0),
                                         ratio=ms / base, peer=ms / best if best else None,
                                         rss=rss[eng], acc=acc.get(eng)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    head = ("engines: vtok %s (f32, bf16, int8) | torch %s: f32 = oneDNN (to_mkldnn), bf16 = autocast | "
            "onnxruntime-node %s on node %s (ONNX opset %s, spinning %s) | %s, %d logical CPUs | "
            "%d rounds x %d iters, order rotated per round; elapsed %.0f s, 1-min load average "
            "%.1f at start, %.1f at end" % (
                versions.get("vtok"), versions.get("torch", "-"), versions.get("onnxruntime-node", "-"),
                versions.get("node", "-"), versions.get("onnx_opset", "-"), "on" if a.ort_spin else "off",
                platform.machine(),
                os.cpu_count(), a.rounds, a.iters, time.time() - T0, load0, os.getloadavg()[0]))
    lines = ["| model | batch | threads | engine | ms/image | rounds min-max | GFLOP/s | time / vtok "
             "| time / best peer | peak RSS MiB | accuracy vs torch-f32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %d | %d | %s | %.1f | %.1f-%.1f | %.1f | %.2f | %s | %.0f | %s |" % (
            LABEL[r["model"]], r["batch"], r["threads"], r["engine"], r["ms"], r["lo"], r["hi"],
            r["gflops"], r["ratio"], "%.2f" % r["peer"] if r["peer"] else "-", r["rss"],
            fmt_acc(r["acc"])))
    table = "\n".join(lines)
    print(head)
    print()
    print(table)
    if a.md:
        with open(a.md, "w") as f:
            f.write(head + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
