#!/usr/bin/python3
"""check_resample.py - vtok_image_resize against Pillow, byte for byte.

Debian 12's Pillow 9.4 (/usr/bin/python3, package python3-pil) is the
reference: Image.frombytes("RGB", ...).resize((w, h), resample=f) with the
default box and reducing_gap=None, for all six filters (NEAREST 0, LANCZOS 1,
BILINEAR 2, BICUBIC 3, BOX 4, HAMMING 5).

Usage:
  check_resample.py --tool build/test_resample --work DIR [--quick]
      Generates deterministic random, smooth and hard-edged RGB images of
      many sizes (1x1 ... 3000x17, 17x3000, 1000x1000), resizes each to many
      targets (up, down, odd ratios, 224x224 squash, shortest-edge sizes, 1xN,
      Nx1, one side unchanged, same size) with `test_resample --resize` - once
      on the best code path and once with VTOK_FORCE_REF=1 (plain C) - and
      compares with Pillow. Prints the case count and every mismatch (max abs
      diff, differing bytes); exits 1 on any mismatch.
  check_resample.py --bench [--bench-tool build/bench_resize]
      Times Pillow's resize on the images bench/bench_resize.c uses (same
      formula) and, given the bench binary, runs it and prints the ratio.
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import time

import numpy as np
from PIL import Image

FILTERS = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}


# ------------------------------------------------------------------ images --

def make_image(w, h, kind, seed):
    """Deterministic RGB uint8 [h, w, 3]."""
    rs = np.random.RandomState(seed)
    if kind == "random":
        return rs.randint(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "smooth":
        fx, fy = rs.uniform(0.5, 4.0, 2)
        out = np.empty((h, w, 3))
        for c in range(3):
            ph = rs.uniform(0, 6.3)
            out[..., c] = 127.5 + 127.5 * np.sin(ph + fx * 6.283 * x / max(w, 1) + fy * 6.283 * y / max(h, 1))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if kind == "edges":
        # Black/white blocks and single-pixel lines: LANCZOS and BICUBIC
        # overshoot past 0 and 255 here, exercising clip8.
        cell = int(rs.randint(1, 5))
        base = ((x.astype(np.int64) // cell + y.astype(np.int64) // (cell + 1)) & 1) * 255
        out = np.stack([base, 255 - base, np.where(x.astype(np.int64) % 7 == 0, 255, 0)], -1)
        return out.astype(np.uint8)
    raise ValueError(kind)


def bench_image(w, h):
    """The pattern bench/bench_resize.c fills (keep the two in sync)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    c = np.arange(3, dtype=np.int64)
    v = x[..., None] * 3 + y[..., None] * 5 + c * 71 + ((x * y) >> 6)[..., None]
    return (v & 255).astype(np.uint8)


def write_raw(path, a):
    h, w, _ = a.shape
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", w, h))
        f.write(np.ascontiguousarray(a).tobytes())


def read_raw(path):
    with open(path, "rb") as f:
        b = f.read()
    w, h = struct.unpack("<ii", b[:8])
    return np.frombuffer(b, np.uint8, offset=8).reshape(h, w, 3)


# ------------------------------------------------------------------- cases --

SIZES = [(1, 1), (2, 3), (3, 2), (5, 1), (1, 7), (17, 5), (5, 17), (97, 61), (61, 97),
         (224, 224), (255, 256), (300, 200), (3000, 17), (17, 3000), (640, 480), (1000, 1000)]


def targets(w, h):
    """Target sizes for a w x h source (deduplicated, each side >= 1)."""
    short, long_ = min(w, h), max(w, h)
    t = [(224, 224), (1, 1), (1, 224), (224, 1), (w, h),               # squash, degenerate, copy
         (w, max(1, h // 3)), (max(1, w * 2 // 3), h),                  # one side unchanged
         (2 * w + 1, 2 * h + 1), (min(3 * w + 2, 1500), min(3 * h + 1, 1500)),  # upscale
         (max(1, w // 2), max(1, h // 2)), (max(1, w * 10 // 33), max(1, h * 10 // 33)),  # down
         (max(1, w * 5 // 7), max(1, h * 11 // 13)), (w * 7 // 5 + 1, max(1, h * 4 // 9)),  # odd
         (1, h), (w, 1), (max(1, w // 3), 3 * h)]
    for s in (224, 336):  # HF shortest_edge: short side -> s, long side int(s * long / short)
        ls = int(s * long_ / short)
        if ls <= 4000:
            t.append((s, ls) if w <= h else (ls, s))
    seen, out = set(), []
    for ow, oh in t:
        ow, oh = max(1, int(ow)), max(1, int(oh))
        if (ow, oh) not in seen and ow * oh <= 2_500_000:
            seen.add((ow, oh))
            out.append((ow, oh))
    return out


# Extreme shapes at the side limit (65500): kernels hundreds of thousands of
# taps wide, one-pixel windows, long thin results.
EXTREME = [((65500, 2), [(1, 1), (7, 3)]), ((2, 65500), [(3, 1)]), ((1, 1), [(4000, 1)]),
           ((5, 3), [(65500, 1)]), ((3, 5), [(2, 65500)])]


def build_cases(work, quick):
    images, cases = [], []
    seed = 1000
    for (w, h), tl in EXTREME:
        seed += 1
        a = make_image(w, h, "random", seed)
        path = os.path.join(work, "in_%dx%d_extreme.raw" % (w, h))
        write_raw(path, a)
        images.append(a)
        for (ow, oh) in tl:
            for f in FILTERS:
                cases.append((len(images) - 1, path, w, h, "random", ow, oh, f))
    for (w, h) in SIZES:
        if quick and w * h > 300 * 200:
            continue
        kinds = ["random", "smooth", "edges"] if w * h <= 300 * 300 else ["random", "smooth"]
        if w * h >= 1000 * 1000:
            kinds = ["smooth"]
        for kind in kinds:
            seed += 1
            a = make_image(w, h, kind, seed)
            path = os.path.join(work, "in_%dx%d_%s.raw" % (w, h, kind))
            write_raw(path, a)
            images.append(a)
            tl = targets(w, h)
            if w * h >= 1000 * 1000:
                tl = tl[:10]
            for (ow, oh) in tl:
                for f in FILTERS:
                    cases.append((len(images) - 1, path, w, h, kind, ow, oh, f))
    # A deterministic sweep of odd sizes and ratios (log-uniform sides 1..500).
    rs = np.random.RandomState(4242)
    for n in range(60 if quick else 240):
        w, h, ow, oh = (int(v) for v in np.exp(rs.uniform(0, np.log(500), 4)))
        if n % 5 == 1:
            ow = w
        elif n % 5 == 2:
            oh = h
        kind = ("random", "smooth", "edges")[n % 3]
        a = make_image(w, h, kind, 5000 + n)
        path = os.path.join(work, "in_sweep%d.raw" % n)
        write_raw(path, a)
        images.append(a)
        cases.append((len(images) - 1, path, w, h, kind, ow, oh, int(rs.randint(0, 6))))
    return images, cases


def run_tool(tool, batch, work, tag, env):
    args = [tool, "--resize"]
    outs = []
    for i, (_, path, _, _, _, ow, oh, f) in batch:
        out = os.path.join(work, "out_%s_%d.raw" % (tag, i))
        args += [path, str(ow), str(oh), str(f), out]
        outs.append(out)
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit("tool failed (%s), rc %d" % (tag, r.returncode))
    return outs


def check(args):
    import PIL
    if PIL.__version__ != "9.4.0":
        print("warning: Pillow %s, the reference is 9.4.0 (Debian 12)" % PIL.__version__)
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    images, cases = build_cases(args.work, args.quick)
    runs = [("best", dict(os.environ)), ("ref", dict(os.environ, VTOK_FORCE_REF="1"))]
    n_cmp = n_bad = 0
    B = 150
    indexed = list(enumerate(cases))
    for start in range(0, len(indexed), B):
        batch = indexed[start:start + B]
        outs = {tag: run_tool(args.tool, batch, args.work, tag, env) for tag, env in runs}
        for j, (i, (img, _, w, h, kind, ow, oh, f)) in enumerate(batch):
            src = Image.frombytes("RGB", (w, h), images[img].tobytes())
            ref = np.asarray(src.resize((ow, oh), resample=f))
            for tag, _ in runs:
                got = read_raw(outs[tag][j])
                os.remove(outs[tag][j])
                n_cmp += 1
                if got.shape != ref.shape:
                    n_bad += 1
                    print("MISMATCH [%s] %dx%d %s -> %dx%d %s: shape %s vs Pillow %s"
                          % (tag, w, h, kind, ow, oh, FILTERS[f], got.shape, ref.shape))
                    continue
                d = np.abs(got.astype(np.int16) - ref.astype(np.int16))
                if d.any():
                    n_bad += 1
                    print("MISMATCH [%s] %dx%d %s -> %dx%d %s: max abs diff %d, %d bytes differ"
                          % (tag, w, h, kind, ow, oh, FILTERS[f], d.max(), int((d > 0).sum())))
    for a in os.listdir(args.work):
        if a.startswith("in_") and a.endswith(".raw"):
            os.remove(os.path.join(args.work, a))
    print("check_resample: %d cases (%d resizes x %d code paths), %d mismatches, %.1f s"
          % (n_cmp, len(cases), len(runs), n_bad, time.time() - t0))
    return 1 if n_bad else 0


# ------------------------------------------------------------------- bench --

BENCH = [((640, 480), (224, 224)), ((1920, 1080), (336, 336))]


def bench(args):
    import PIL
    pil = {}
    for (w, h), (ow, oh) in BENCH:
        im = Image.frombytes("RGB", (w, h), bench_image(w, h).tobytes())
        im.resize((ow, oh), resample=Image.BICUBIC)  # warm up
        reps = max(5, int(args.reps))
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            im.resize((ow, oh), resample=Image.BICUBIC)
            ts.append((time.perf_counter() - t) * 1e3)
        ts.sort()
        pil[(w, h, ow, oh)] = ts[len(ts) // 2]
        print("Pillow %s: %dx%d -> %dx%d bicubic: %.3f ms (median of %d)"
              % (PIL.__version__, w, h, ow, oh, pil[(w, h, ow, oh)], reps))
    if args.bench_tool:
        r = subprocess.run([args.bench_tool], capture_output=True, text=True, check=True)
        sys.stdout.write(r.stdout)
        for m in re.finditer(r"(\d+)x(\d+) -> (\d+)x(\d+) bicubic: ([0-9.]+) ms", r.stdout):
            key = tuple(int(m.group(i)) for i in range(1, 5))
            if key in pil:
                v = float(m.group(5))
                print("ratio %dx%d -> %dx%d: Pillow / vtok = %.2fx" % (key + (pil[key] / v,)))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", help="test_resample executable")
    ap.add_argument("--work", help="scratch directory")
    ap.add_argument("--quick", action="store_true", help="skip the large images")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--bench-tool", help="bench_resize executable (for --bench)")
    ap.add_argument("--reps", default=50, type=int)
    args = ap.parse_args()
    if args.bench:
        return bench(args)
    if not args.tool or not args.work:
        ap.error("--tool and --work are required")
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
