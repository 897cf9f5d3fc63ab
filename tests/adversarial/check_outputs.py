#!/usr/bin/env python3
"""Output files under hostile conditions (issue 10, findings 1, 3, 9, 10): every
output is written to a temp file beside it and renamed when complete, and the
files of one command land together (tools/cli/outset.c) or not at all, so
  - `vtok convert X X` converts in place instead of truncating the mapped input;
  - a write that fails (file-size limit: EFBIG) reports the reason, exits 1,
    leaves no temp file, and keeps whatever was at the output path before;
  - an output path that is a device node or FIFO is refused, never replaced.
  - `--layers` lists with an empty entry are refused;
  - an input that is a FIFO (--pixels, --image, config.json, the weights) is
    refused at once, not waited on;
  - a command that fails part way (encode of 6 files, run with --dump) leaves
    none of its files and no staged ones; --out / --dump that cannot be
    folders fail before any work; a symlink at an output path is replaced,
    its target never written (no writes outside the output paths).
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


def leftovers(d):
    """Temp (.tmp) or staged (.vtok-PID.) files in d."""
    return [f for f in os.listdir(d) if ".tmp" in f or f.startswith(".vtok-")]


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
    left = leftovers(work)
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
    left = leftovers(out)
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

    # output sets: all files of a command or none (finding 9). The last file
    # of each set fails (a folder sits at its name) after the others are written.
    img = os.path.join(REPO, "models", "sample.jpg")
    for cmd, files, last in (
            (["encode", "--model", model, "--image", img, "--layers", "all"],
             ["last_hidden_state.npy", "hidden_states_00.npy", "hidden_states_03.npy"],
             "hidden_states_04.npy"),
            (["run", "--recipe", "llava-1.5", "--model", os.path.join(REPO, "models", "tiny-llava"),
              "--image", img], ["embeddings.npy", "layout.json"], "stages/projector.npy")):
        so = os.path.join(work, "set_" + cmd[0])
        os.makedirs(os.path.join(so, last))
        extra = ["--dump", os.path.join(so, "stages")] if cmd[0] == "run" else []
        rc, err = run([vtok] + cmd + ["--out", so] + extra)
        landed = [f for f in files if os.path.exists(os.path.join(so, f))]
        check(rc == 1 and "not a regular file" in err, "%s failing at its last file: %s" %
              (cmd[0], err.strip()[:160]))
        stages = os.path.join(so, "stages")
        check(not landed and not leftovers(so) and
              not (os.path.isdir(stages) and leftovers(stages)),
              "%s: none of its files landed (%s), no staged files (%s)" %
              (cmd[0], landed, leftovers(so)))
        os.rmdir(os.path.join(so, last))
        rc, err = run([vtok] + cmd + ["--out", so] + extra)
        landed = [f for f in files if os.path.exists(os.path.join(so, f))]
        check(rc == 0 and landed == files and not leftovers(so),
              "%s without the limit writes the whole set: %s" % (cmd[0], landed))
        if cmd[0] == "run":
            with open(os.path.join(so, "layout.json")) as f:
                check(json.load(f)["tokens_per_image"] > 0, "layout.json is complete JSON")

    # --out / --dump that cannot be folders: refused before any work (findings 4, 10)
    reg = os.path.join(work, "a_file")
    with open(reg, "w") as f:
        f.write("x")
    for bad in (reg, os.path.join(reg, "sub"), "/dev/null", ""):
        rc, err = run([vtok, "encode", "--model", model, "--pixels", px, "--out", bad])
        check(rc == 1 and "output folder" in err and "image(s)" not in err,
              "--out '%s' refused before work: %s" % (bad, err.strip()[:160]))
    rc, err = run([vtok, "run", "--recipe", "llava-1.5", "--model",
                   os.path.join(REPO, "models", "tiny-llava"), "--image", img, "--out",
                   os.path.join(work, "o_dump"), "--dump", reg])
    check(rc == 1 and "dump folder" in err, "--dump at a regular file refused: %s" %
          err.strip()[:160])
    check(not os.path.exists(os.path.join(work, "o_dump", "embeddings.npy")),
          "... and nothing written to --out")
    # an output name taken by a folder: refused, the folder intact
    dd = os.path.join(work, "dir_at_name")
    os.makedirs(os.path.join(dd, "last_hidden_state.npy", "keep"))
    rc, err = run([vtok, "encode", "--model", model, "--pixels", px, "--out", dd])
    check(rc == 1 and "not a regular file" in err and
          os.path.isdir(os.path.join(dd, "last_hidden_state.npy", "keep")),
          "a folder at an output path is refused and kept: %s" % err.strip()[:160])
    # a symlink at an output path: the link is replaced, its target untouched
    sl = os.path.join(work, "symlink_out")
    os.makedirs(sl)
    target = os.path.join(work, "outside.npy")
    with open(target, "wb") as f:
        f.write(b"outside")
    os.symlink(target, os.path.join(sl, "last_hidden_state.npy"))
    rc, err = run([vtok, "encode", "--model", model, "--pixels", px, "--out", sl])
    with open(target, "rb") as f:
        check(rc == 0 and f.read() == b"outside" and
              not os.path.islink(os.path.join(sl, "last_hidden_state.npy")),
              "a symlink at an output path is replaced, its target not written")
    # preprocess (one file) at a device: refused, the device kept
    rc, err = run([vtok, "preprocess", "--model", model, img, "--out", "/dev/full"])
    check(rc == 1 and "not a regular file" in err and stat.S_ISCHR(os.stat("/dev/full").st_mode),
          "preprocess --out /dev/full refused, /dev/full kept: %s" % err.strip()[:160])

    print("%d passed, %d failed" % (n_checks[0] - len(fails), len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
