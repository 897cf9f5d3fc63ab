"""`vtok convert` on PyTorch checkpoints, against torch's own view of them.

Runs tests/io/make_torch_files.py into WORK, then for every good file runs
`vtok convert FILE OUT.safetensors` and compares OUT (read with
tests/ref/safetensors_io.py, which also validates the layout) with the .npy
expectations: the same names, dtypes, shapes and exact bytes. Also checks the
header: 8-byte aligned, "__metadata__": {"format": "pt"}, data in name order.
Every bad file must fail with exit status 1 and exactly one stderr line
starting "vtok: " (containing the expected phrase, if any), and nothing that
looks like sanitizer output.

Usage: check_torch.py --vtok PATH --work DIR
"""

import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import safetensors_io  # noqa: E402

import torch  # noqa: E402


def as_numpy(t):
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    if t.dtype == torch.bool:
        return t.numpy().astype(np.uint8)
    return t.numpy()


def check_good(vtok, work, fn):
    src = os.path.join(work, fn)
    out = os.path.join(work, "out", fn + ".safetensors")
    r = subprocess.run([vtok, "convert", src, out], capture_output=True, text=True)
    if r.returncode != 0:
        return "%s: vtok convert failed: %s" % (fn, r.stderr.strip())
    exp_dir = src + ".expect"
    with open(os.path.join(exp_dir, "dtypes.json")) as f:
        dtypes = json.load(f)
    want = "converted %d tensors" % len(dtypes)
    if want not in r.stdout:
        return "%s: stdout %r lacks %r" % (fn, r.stdout.strip(), want)
    try:
        got = safetensors_io.read_file(out)
    except safetensors_io.SafetensorsError as e:
        return "%s: output is not valid safetensors: %s" % (fn, e)
    with open(out, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    if (8 + n) % 8:
        return "%s: header end %d is not 8-byte aligned" % (fn, 8 + n)
    if hdr.get("__metadata__") != {"format": "pt"}:
        return "%s: bad __metadata__ %r" % (fn, hdr.get("__metadata__"))
    names = [k for k in hdr if k != "__metadata__"]
    if [hdr[k]["data_offsets"][0] for k in sorted(names)] != sorted(
            hdr[k]["data_offsets"][0] for k in names):
        return "%s: data is not in name order" % fn
    if sorted(got) != sorted(dtypes):
        return "%s: names differ: got %s, want %s" % (fn, sorted(got), sorted(dtypes))
    for name, dt in dtypes.items():
        if hdr[name]["dtype"] != dt:
            return "%s: %s: dtype %s, want %s" % (fn, name, hdr[name]["dtype"], dt)
        exp = np.load(os.path.join(exp_dir, name + ".npy"))
        a = as_numpy(got[name])
        if a.shape != exp.shape or a.dtype != exp.dtype or a.tobytes() != exp.tobytes():
            return "%s: %s: got %s %s, want %s %s" % (fn, name, a.dtype, a.shape, exp.dtype,
                                                      exp.shape)
    return None


def check_bad(vtok, work, fn, phrase):
    out = os.path.join(work, "out", fn + ".safetensors")
    r = subprocess.run([vtok, "convert", os.path.join(work, fn), out],
                       capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    if r.returncode != 1:
        return "%s: exit %d, want 1 (stderr: %s)" % (fn, r.returncode, r.stderr.strip()[:300])
    if len(lines) != 1 or not lines[0].startswith("vtok: "):
        return "%s: want one 'vtok: ...' line, got %r" % (fn, r.stderr[:300])
    for bad in ("Sanitizer", "runtime error", "LeakSanitizer"):
        if bad in r.stderr:
            return "%s: sanitizer output: %s" % (fn, r.stderr[:300])
    if phrase and phrase not in lines[0]:
        return "%s: message %r lacks %r" % (fn, lines[0], phrase)
    if os.path.exists(out):
        return "%s: failed but left %s behind" % (fn, out)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.work, "out"), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(HERE, "make_torch_files.py"), a.work],
                   check=True)
    with open(os.path.join(a.work, "good.json")) as f:
        good = json.load(f)
    with open(os.path.join(a.work, "bad.json")) as f:
        bad = json.load(f)
    errors = []
    for fn in good:
        e = check_good(a.vtok, a.work, fn)
        if e:
            errors.append(e)
    for fn, phrase in sorted(bad.items()):
        e = check_bad(a.vtok, a.work, fn, phrase)
        if e:
            errors.append(e)
    for e in errors:
        print("FAIL", e)
    print("check_torch: %d good files, %d bad files, %d failures" % (len(good), len(bad),
                                                                    len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
