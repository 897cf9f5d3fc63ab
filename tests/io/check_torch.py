"""`vtok convert` on PyTorch checkpoints, against torch's own view of them.

Runs tests/io/make_torch_files.py into WORK, then for every good file runs
`vtok convert FILE OUT.safetensors` and compares OUT (read with
tests/ref/safetensors_io.py, which also validates the layout) with the .npy
expectations: the same names, dtypes, shapes and exact bytes. Also checks the
header: 8-byte aligned, "__metadata__": {"format": "pt"}, data in name order.
Every bad file must fail with exit status 1 and exactly one stderr line
starting "vtok: " (containing the expected phrase, if any), and nothing that
looks like sanitizer output.

Every run has a time limit, and in a native, unsanitized build an address
space limit (RLIMIT_AS, LIMIT_AS_MB) and a file size limit: the files that
flatten to gigabytes (stride-0 views, containers shared through the memo)
must be refused from their budgets, so a regression fails with the wrong
message instead of swapping or filling the disk. Those files are also put in
a model folder as pytorch_model.bin (and as a .pth) for `vtok info` and
`vtok encode`, which must fail the same way; and models/tiny-clip saved with
torch.save (plus an expanded position_ids buffer, as older transformers
saved CLIP) must encode exactly as its safetensors original.

Usage: check_torch.py --vtok PATH --work DIR
"""

import argparse
import json
import os
import resource
import shutil
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


ROOT = os.path.join(HERE, "..", "..")
LIMIT_AS_MB = 1024      # address space of one CLI run (the bombs ask for 1-16 GB)
LIMIT_FSIZE_MB = 256    # largest file one CLI run may write
TIMEOUT_S = 60
# Files that flatten to gigabytes: also tried through `vtok info` / `encode`.
BOMBS = ("expand_1g.pt", "expand_16g.pth", "expand_1g_legacy.pth", "overlap_strides.pt",
         "memo_shared_names.pt", "memo_shared_paths.pt", "memo_shared_bytes.pt")


def limits_apply(vtok):
    """Limits only bind a native binary without sanitizers: ASan/TSan reserve
    terabytes of shadow address space, and an emulator wrapper is a script."""
    try:
        with open(vtok, "rb") as f:
            head = f.read()
    except OSError:
        return False
    return not head.startswith(b"#!") and b"__asan_init" not in head and \
        b"__tsan_init" not in head


def run(vtok, args, limit):
    def child():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS_MB << 20, LIMIT_AS_MB << 20))
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (LIMIT_FSIZE_MB << 20, LIMIT_FSIZE_MB << 20))
    try:
        return subprocess.run([vtok] + args, capture_output=True, text=True, errors="replace",
                              timeout=TIMEOUT_S, preexec_fn=child)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, -1, "", "timed out after %d s" % TIMEOUT_S)


def check_good(vtok, work, fn, limit):
    src = os.path.join(work, fn)
    out = os.path.join(work, "out", fn + ".safetensors")
    r = run(vtok, ["convert", src, out], limit)
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


def check_bad(vtok, work, fn, phrase, limit, args=None):
    out = os.path.join(work, "out", fn + ".safetensors")
    r = run(vtok, args or ["convert", os.path.join(work, fn), out], limit)
    if args:
        fn = "%s (vtok %s)" % (fn, args[0])
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


def model_dir(work, name, weights_src, weights_name):
    """A folder with tiny-clip's configs and the given weights file."""
    d = os.path.join(work, "models", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    for f in ("config.json", "preprocessor_config.json"):
        shutil.copy(os.path.join(ROOT, "models", "tiny-clip", f), d)
    shutil.copy(weights_src, os.path.join(d, weights_name))
    return d


def check_bombs_in_models(vtok, work, bad, limit):
    errors = []
    pixels = os.path.join(ROOT, "models", "sample_pixels.npy")
    for fn in BOMBS:
        for wn in ("pytorch_model.bin", "released.pth"):
            d = model_dir(work, "bomb", os.path.join(work, fn), wn)
            for args in (["info", "--model", d],
                         ["encode", "--model", d, "--pixels", pixels, "--out",
                          os.path.join(work, "out", "bomb_enc")]):
                e = check_bad(vtok, work, fn + " as " + wn, bad[fn], limit, args)
                if e:
                    errors.append(e)
    return errors


def check_model_from_torch(vtok, work, limit):
    """tiny-clip as torch.save'd pytorch_model.bin (one weight stored
    transposed-back, i.e. non-contiguous, and an expanded position_ids buffer)
    encodes to the same bytes as the safetensors folder."""
    st = safetensors_io.read_file(os.path.join(ROOT, "models", "tiny-clip", "model.safetensors"))
    sd = dict(st)
    k = "vision_model.embeddings.position_embedding.weight"
    sd[k] = sd[k].t().contiguous().t()                   # same values, strides (1, rows)
    sd["vision_model.embeddings.position_ids"] = torch.arange(65).expand(1, -1)
    pt = os.path.join(work, "tiny_clip.bin")
    torch.save(sd, pt)
    pixels = os.path.join(ROOT, "models", "sample_pixels.npy")
    outs = {}
    for name, d in (("safetensors", os.path.join(ROOT, "models", "tiny-clip")),
                    ("bin", model_dir(work, "tiny-clip-bin", pt, "pytorch_model.bin"))):
        o = os.path.join(work, "out", "enc_" + name)
        r = run(vtok, ["info", "--model", d], limit)
        if r.returncode != 0:
            return "tiny-clip %s: vtok info failed: %s" % (name, r.stderr.strip()[:300])
        r = run(vtok, ["encode", "--model", d, "--pixels", pixels, "--out", o], limit)
        if r.returncode != 0:
            return "tiny-clip %s: vtok encode failed: %s" % (name, r.stderr.strip()[:300])
        outs[name] = o
    for f in ("last_hidden_state.npy", "pooler_output.npy", "image_embeds.npy"):
        a = np.load(os.path.join(outs["safetensors"], f))
        b = np.load(os.path.join(outs["bin"], f))
        if a.shape != b.shape or a.tobytes() != b.tobytes():
            return "tiny-clip bin: %s differs from the safetensors model's" % f
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
    limit = limits_apply(a.vtok)
    if not limit:
        print("check_torch: sanitized or emulated binary: runs without memory limits")
    errors = []
    for fn in good:
        e = check_good(a.vtok, a.work, fn, limit)
        if e:
            errors.append(e)
    for fn, phrase in sorted(bad.items()):
        e = check_bad(a.vtok, a.work, fn, phrase, limit)
        if e:
            errors.append(e)
    errors += check_bombs_in_models(a.vtok, a.work, bad, limit)
    e = check_model_from_torch(a.vtok, a.work, limit)
    if e:
        errors.append(e)
    for e in errors:
        print("FAIL", e)
    print("check_torch: %d good files, %d bad files, %d failures" % (len(good), len(bad),
                                                                    len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
