#!/usr/bin/python3
"""check_decode.py - vtok's image decoders against Pillow 9.4, bit for bit.

Usage:
  /usr/bin/python3 tests/image/check_decode.py --dumper BUILD/test_decode --work DIR
        [--corpus DIR] [--jobs N] [--verbose]

Generates the corpus with make_corpus.py into DIR/corpus (or uses --corpus),
then runs `test_decode --dump FILE OUT [opts]` on every entry of its
manifest and checks:
  expect "pixels": exit 0 and exactly Pillow's RGB bytes (on mismatch: the
                   count of differing bytes and the largest difference);
  expect "error":  exit 1 and exactly one line on stderr, "error: ...";
  expect "limit":  the same, with code ELIMIT;
  expect "approx": jpeg_fast_scale; exact size, mean |diff| within "tol";
  "allow_error":   a documented divergence: a clean error is accepted
                   where Pillow decodes; if vtok decodes it must match.
Any sanitizer report, crash, timeout or stray output fails the entry.
Exit status 0 when every entry passes.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def sanitizer_env():
    env = dict(os.environ)

    def add(var, opts):
        env[var] = (env[var] + ":" if env.get(var) else "") + opts
    # Distinct exit codes so a sanitizer report is never mistaken for the
    # decoder's clean "exit 1".
    add("ASAN_OPTIONS", "exitcode=97:detect_leaks=1:abort_on_error=0")
    add("UBSAN_OPTIONS", "exitcode=98:print_stacktrace=1")
    add("LSAN_OPTIONS", "exitcode=99")
    return env


def run_one(dumper, corpus, work, entry, env, idx):
    out = os.path.join(work, "out%d.raw" % idx)
    if os.path.exists(out):
        os.unlink(out)
    cmd = [dumper, "--dump", os.path.join(corpus, entry["file"]), out] + entry["opts"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return "timeout", None
    err = p.stderr.decode("utf-8", "replace")
    lines = err.splitlines()
    if p.returncode not in (0, 1) or p.stdout or (p.returncode == 0 and err):
        return "exit %d, stdout %d bytes, stderr: %s" % (
            p.returncode, len(p.stdout), err.strip()[:2000]), None
    if p.returncode == 1:
        if len(lines) != 1 or not lines[0].startswith("error: ") or not err.endswith("\n"):
            return "error output is not one 'error: ' line: %r" % err[:500], None
        return None, ("error", lines[0])
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    w = int.from_bytes(data[0:8], "little")
    h = int.from_bytes(data[8:16], "little")
    px = np.frombuffer(data[16:], np.uint8)
    if px.size != w * h * 3:
        return "dump has %d bytes for %d x %d" % (px.size, w, h), None
    return None, ("pixels", px.reshape(h, w, 3))


def judge(entry, res, corpus):
    """Returns (ok, category, message)."""
    kind, val = res
    exp = entry["expect"]
    if exp in ("error", "limit"):
        if kind != "error":
            return False, "decoded", "Pillow fails (%s) but vtok decoded %dx%d" % (
                entry.get("pillow"), val.shape[1], val.shape[0])
        if exp == "limit" and not val.startswith("error: ELIMIT"):
            return False, "wrong-error", "expected ELIMIT, got %r" % val
        return True, "error", val
    ref = np.load(os.path.join(corpus, entry["npy"]))
    if kind == "error":
        if entry.get("allow_error"):
            return True, "known-divergence", val
        return False, "error", "vtok failed where Pillow decodes: %s" % val
    if exp == "approx":
        want = tuple(entry["size"])
        if (val.shape[1], val.shape[0]) != want:
            return False, "size", "size %dx%d, expected %dx%d" % (
                val.shape[1], val.shape[0], want[0], want[1])
        if ref.shape != val.shape:
            return False, "size", "reference shape %s vs %s" % (ref.shape, val.shape)
        mad = float(np.abs(ref.astype(np.int32) - val).mean())
        if mad > entry["tol"]:
            return False, "approx", "mean |diff| %.3f > %.3f" % (mad, entry["tol"])
        return True, "approx", "mean |diff| %.3f" % mad
    if ref.shape != val.shape:
        return False, "size", "size %dx%d, Pillow %dx%d" % (
            val.shape[1], val.shape[0], ref.shape[1], ref.shape[0])
    d = np.abs(ref.astype(np.int32) - val)
    n = int((d != 0).sum())
    if n:
        return False, "mismatch", "%d of %d bytes differ, max |diff| %d" % (n, d.size, d.max())
    return True, "exact", ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dumper", required=True, help="path to the test_decode executable")
    ap.add_argument("--work", required=True, help="scratch directory")
    ap.add_argument("--corpus", help="use this corpus instead of generating one")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    dumper = os.path.abspath(a.dumper)
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    corpus = a.corpus
    if not corpus:
        corpus = os.path.join(work, "corpus")
        subprocess.run([sys.executable, os.path.join(HERE, "make_corpus.py"), corpus,
                        "--helper", dumper], check=True)
    with open(os.path.join(corpus, "manifest.json")) as f:
        manifest = json.load(f)
    env = sanitizer_env()

    def task(i):
        e = manifest[i]
        fail, res = run_one(dumper, corpus, work, e, env, i)
        if fail:
            return i, False, "crash", fail
        return (i,) + judge(e, res, corpus)

    results = [None] * len(manifest)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        for i, ok, cat, msg in ex.map(task, range(len(manifest))):
            results[i] = (ok, cat, msg)

    counts, failures = {}, 0
    for e, (ok, cat, msg) in zip(manifest, results):
        counts[cat] = counts.get(cat, 0) + 1
        label = "%s %s" % (e["file"], " ".join(e["opts"]))
        if not ok:
            failures += 1
            print("FAIL %-40s %s (%s)" % (label, msg, e.get("note", "")))
        elif a.verbose or cat == "known-divergence":
            print("ok   %-40s %s %s" % (label, cat, msg))
    exact = counts.get("exact", 0)
    npix = sum(1 for e in manifest if e["expect"] == "pixels")
    print("check_decode: %d checks: %d of %d Pillow-decodable files bit-exact, %d clean errors, "
          "%d fast-scale, %d known divergences; %d failed" % (
              len(manifest), exact, npix, counts.get("error", 0), counts.get("approx", 0),
              counts.get("known-divergence", 0), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
