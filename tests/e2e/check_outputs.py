#!/usr/bin/env python3
"""Output files under hostile conditions (issue 10, findings 1, 3, 9): every
output is written to a temp file beside it and renamed when complete, so
  - `vtok convert X X` converts in place instead of truncating the mapped input;
  - a write that fails (file-size limit: EFBIG) reports the reason, exits 1,
    leaves no temp file, and keeps whatever was at the output path before;
  - an output path that is a device node or FIFO is refused, never replaced.
  - `--layers` lists with an empty entry are refused;
  - an input that is a FIFO (--pixels, --image, config.json, the weights) is
    refused at once, not waited on.
Each check failed before the fix (SIGBUS / a 4 KB input; SIGXFSZ with a
partial .npy; remove() of the old file; open() blocking on the FIFO).

    check_outputs.py --vtok build/vtok --work DIR
"""
import argparse
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
fails = []
n_checks = [0]


def check(ok, what):
    n_checks[0] += 1
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails.append(what)


def run(cmd, limit=None, timeout=300):
    pre = ["prlimit", "--fsize=%d" % limit] if limit is not None else []
    try:
        p = subprocess.run(pre + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out after %d s" % timeout
    return p.returncode, p.stderr.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    vtok, work = os.path.abspath(a.vtok), os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    # 1. convert in place
    sd = {"a.weight": torch.arange(40000, dtype=torch.float32).reshape(200, 200),
          "b": torch.ones(7)}
    x = os.path.join(work, "x.pth")
    torch.save(sd, x)
    rc, err = run([vtok, "convert", x, x])
    check(rc == 0, "convert X X: exit %d %s" % (rc, err.strip()[:200]))
    with open(x, "rb") as f:
        head = f.read(8)
    n = int.from_bytes(head, "little")
    check(os.path.getsize(x) == 8 + n + 4 * (40000 + 7), "convert X X: X is now the whole "
          "safetensors file (%d bytes)" % os.path.getsize(x))
    left = [f for f in os.listdir(work) if ".tmp" in f]
    check(not left, "convert X X: no temp file left (%s)" % left)

    # 3 + 9. a failed write keeps the old file, reports the reason, leaves no temp
    out = os.path.join(work, "out")
    os.makedirs(out)
    old = os.path.join(out, "last_hidden_state.npy")
    with open(old, "wb") as f:
        f.write(b"previous contents")
    model = os.path.join(REPO, "models", "tiny-clip")
    px = os.path.join(work, "px.npy")
    cfg = os.path.join(model, "config.json")
    with open(cfg) as f:
        c = json.load(f)
    vc = c.get("vision_config", c)
    size = vc.get("image_size", 224)
    np.save(px, np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32))
    rc, err = run([vtok, "encode", "--model", model, "--pixels", px, "--out", out], limit=200)
    check(rc == 1 and len(err.strip().splitlines()) == 1 and "too large" in err.lower(),
          "write over the file-size limit: exit %d, one line with the reason: %s" %
          (rc, err.strip()[:200]))
    with open(old, "rb") as f:
        check(f.read() == b"previous contents", "the file that was at the output path is intact")
    left = [f for f in os.listdir(out) if ".tmp" in f]
    check(not left, "no temp file left after the failed write (%s)" % left)
    rc, err = run([vtok, "encode", "--model", model, "--pixels", px, "--out", out])
    check(rc == 0 and np.load(old).ndim == 3, "the same encode without the limit replaces it")

    # an output path that is not a regular file is refused, not replaced
    fifo_dir = os.path.join(work, "fifo_out")
    os.makedirs(fifo_dir)
    fifo = os.path.join(fifo_dir, "last_hidden_state.npy")
    os.mkfifo(fifo)
    rc, err = run([vtok, "encode", "--model", model, "--pixels", px, "--out", fifo_dir])
    check(rc == 1 and "not a regular file" in err, "FIFO at an output path refused: %s" %
          err.strip()[:200])
    check(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO is still there")

    # inputs that are FIFOs: refused at once (finding 8), not a hang
    fin = os.path.join(work, "in_fifo")
    os.mkfifo(fin)
    for what, args in (("--pixels", ["encode", "--model", model, "--pixels", fin, "--out", out]),
                       ("--image", ["encode", "--model", model, "--image", fin, "--out", out])):
        rc, err = run([vtok] + args, timeout=60)
        check(rc == 1 and "not a regular file" in err, "FIFO as %s: %s" % (what, err.strip()[:200]))
    mf = os.path.join(work, "fifo_model")
    shutil.copytree(model, mf)
    os.remove(os.path.join(mf, "config.json"))
    os.mkfifo(os.path.join(mf, "config.json"))
    rc, err = run([vtok, "encode", "--model", mf, "--pixels", px, "--out", out], timeout=60)
    check(rc == 1 and "not a regular file" in err, "FIFO as config.json: %s" % err.strip()[:200])
    ws = [f for f in os.listdir(mf) if f.endswith(".safetensors")]
    if ws:
        shutil.copy(os.path.join(model, "config.json"), os.path.join(mf, "c.json"))
        os.remove(os.path.join(mf, "config.json"))
        os.rename(os.path.join(mf, "c.json"), os.path.join(mf, "config.json"))
        os.remove(os.path.join(mf, ws[0]))
        os.mkfifo(os.path.join(mf, ws[0]))
        rc, err = run([vtok, "encode", "--model", mf, "--pixels", px, "--out", out], timeout=60)
        check(rc == 1 and "not a regular file" in err, "FIFO as the weights: %s" %
              err.strip()[:200])

    # --layers lists with an empty entry are refused, not read as fewer layers (finding 13)
    for bad in ("1,", "", "1,,2", ",1"):
        rc, err = run([vtok, "encode", "--model", model, "--pixels", px, "--layers", bad,
                       "--out", out])
        check(rc == 1 and "bad --layers" in err, "--layers '%s' refused: %s" % (bad, err.strip()))

    print("%d passed, %d failed" % (n_checks[0] - len(fails), len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
