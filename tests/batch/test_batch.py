#!/usr/bin/env python3
"""`vtok batch` end to end (ctest batch_*): WebDataset tars built here with
tarfile from PIL images, run through the vtok binary.

  python3 tests/batch/test_batch.py --vtok build/vtok --work build/batch [--only NAME]

Checks (each a function below; --only runs one):
  wds       a brace pattern over 3 tar shards (GNU and pax headers, a long
            name, a corrupt image, a sample without an image, a member
            without an extension): rows equal `vtok encode` on the same
            images (image_embeds, pooler_output, last_hidden_state, float16),
            keys in tar order, every key in exactly one of keys / errors,
            captions; a rerun skips every shard and changes nothing
  inputs    a folder, a list file, a list of tars and pipe:cat give the
            same rows as the tars / as `vtok encode`
  recipe    --recipe llava-1.5 on models/tiny-llava equals `vtok run`
  ids       --output ids of the tiny SEED (from parity_recipes_gvt_seed)
            equals `vtok tokenize`; skipped (77) without it
  ranks     2 ranks (--shard-index, then Slurm / Open MPI / PMI /
            Kubernetes variables) cover every sample exactly once
  kill      2 ranks at once, one killed with SIGKILL mid-run after its first
            shard is done, rerun: every sample exactly once, no temp files
  mpi       `mpirun --oversubscribe -np 2 vtok batch` (vtok built with MPI):
            rank 0 hands out 6 shards as ranks ask; every sample exactly
            once, rows equal to a one-process run, S_stats.json names the
            rank that did each shard (both did some), the JSON shard_start
            lines agree; a rerun after removing two shards' outputs (and
            with a stale temp file) redoes just those two; --schedule static
            gives shard i to rank i % 2; rank 1 stopped (SIGSTOP) during its
            first shard takes at most 2 of the 6 (rank 0 the rest); skipped (77) without mpirun / MPI
  malformed truncated, bad checksum, huge declared sizes (octal and
            base-256), garbage, an empty file, a missing tar: recorded or
            reported, never a crash, the good samples before the damage kept
Prints the measured images/s (tiny-clip) as a JSON line at the end.
"""
import argparse
import io
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CLIP = os.path.join(ROOT, "models", "tiny-clip")
TINY_LLAVA = os.path.join(ROOT, "models", "tiny-llava")
RESULTS = {}


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def image_bytes(rng, fmt, w, h):
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # smooth it a little so JPEG / PNG sizes are realistic
    a = ((a.astype(np.int32) + np.roll(a, 1, 0) + np.roll(a, 1, 1)) // 3).astype(np.uint8)
    b = io.BytesIO()
    Image.fromarray(a).save(b, format=fmt)
    return b.getvalue()


def write_tar(path, members, fmt=tarfile.GNU_FORMAT):
    with tarfile.open(path, "w", format=fmt) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))


def run(args, check_rc=0, env=None, timeout=120):
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if check_rc is not None and p.returncode != check_rc:
        fail("%s\n exit %d (want %d)\nstdout: %s\nstderr: %s" %
             (" ".join(args), p.returncode, check_rc, p.stdout[-3000:], p.stderr[-3000:]))
    return p


def batch(vtok, *args, check_rc=0, env=None):
    return run([vtok, "batch", "--progress", "json", *args], check_rc=check_rc, env=env)


def read_shard(out, name):
    """(rows, keys, errors) of a finished shard; asserts the done marker."""
    check(os.path.exists(os.path.join(out, name + ".done")), "%s: no done marker" % name)
    rows = np.load(os.path.join(out, name + ".npy"))
    with open(os.path.join(out, name + ".keys.txt"), encoding="utf-8") as f:
        keys = f.read().splitlines()
    with open(os.path.join(out, name + ".errors.jsonl"), encoding="utf-8") as f:
        errors = [json.loads(l) for l in f]
    with open(os.path.join(out, name + "_stats.json"), encoding="utf-8") as f:
        stats = json.load(f)
    check(rows.shape[0] == len(keys), "%s: %d rows, %d keys" % (name, rows.shape[0], len(keys)))
    check(stats["count"] == len(keys), "%s: stats count %d != %d keys" %
          (name, stats["count"], len(keys)))
    check(stats["failed"] == sum(1 for e in errors if e["key"] is not None),
          "%s: stats failed != keyed errors" % name)
    return rows, keys, errors, stats


def no_temps(out):
    left = [f for f in os.listdir(out) if f.startswith(".")]
    check(not left, "temporary files left in %s: %s" % (out, left[:5]))


def encode_ref(vtok, work, model, files, tag):
    """vtok encode on extracted image files -> dict of outputs."""
    d = os.path.join(work, "ref_" + tag)
    shutil.rmtree(d, ignore_errors=True)
    run([vtok, "encode", "--model", model, *sum((["--image", f] for f in files), []),
         "--out", d])
    return {n: np.load(os.path.join(d, n + ".npy"))
            for n in ("image_embeds", "pooler_output", "last_hidden_state")}


# ------------------------------------------------------------------ data --

def make_wds(work, n_shards=3, per_shard=9, seed=0):
    """Tar shards like img2dataset's (key.jpg / key.txt / key.json), with
    traps. Returns (paths, expected) where expected[shard] is a list of
    (key, image file written beside for the reference, or None = error)."""
    rng = np.random.default_rng(seed)
    src = os.path.join(work, "wds")
    img_dir = os.path.join(work, "wds_images")
    for d in (src, img_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    paths, expected = [], {}
    for s in range(n_shards):
        members, exp = [], []
        for i in range(per_shard):
            key = "%05d%04d" % (s, i)
            if s == 1 and i == 0:  # a long name (GNU 'L' / pax path)
                key = "sub/" + "k" * 120 + "%04d" % i
            meta = json.dumps({"key": key, "width": 1}).encode()
            if i == 3:  # corrupt image: recorded, not fatal
                members += [(key + ".jpg", b"\xff\xd8\xff\xe0 not really a jpeg" * 5),
                            (key + ".txt", b"broken")]
                exp.append((key, None))
                continue
            if i == 5:  # a sample without an image
                members += [(key + ".txt", b"text only"), (key + ".json", meta)]
                exp.append((key, None))
                continue
            fmt, ext = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")][i % 3]
            w, h = int(rng.integers(40, 130)), int(rng.integers(40, 130))
            data = image_bytes(rng, fmt, w, h)
            members += [(key + "." + ext, data), (key + ".txt", ("caption of %s" % key).encode()),
                        (key + ".json", meta)]
            f = os.path.join(img_dir, key.replace("/", "_") + "." + ext)
            with open(f, "wb") as fh:
                fh.write(data)
            exp.append((key, f))
        if s == 0:
            members.insert(4, ("README", b"a member without an extension: skipped"))
        p = os.path.join(src, "%05d.tar" % s)
        write_tar(p, members, tarfile.PAX_FORMAT if s == 2 else tarfile.GNU_FORMAT)
        paths.append(p)
        expected["%05d" % s] = exp
    return paths, expected


# ---------------------------------------------------------------- checks --

def test_wds(vtok, work):
    paths, expected = make_wds(work)
    out = os.path.join(work, "out_wds")
    shutil.rmtree(out, ignore_errors=True)
    pattern = os.path.join(work, "wds", "{00000..00002}.tar")
    outs = {}
    for kind in ("image_embeds", "pooler", "embeddings"):
        o = out + "_" + kind
        shutil.rmtree(o, ignore_errors=True)
        batch(vtok, "--model", TINY_CLIP, "--input", pattern, "--out", o, "--output", kind,
              "--caption-key", "txt", "--batch", "4", "--workers", "2")
        outs[kind] = o
    o16 = out + "_fp16"
    shutil.rmtree(o16, ignore_errors=True)
    batch(vtok, "--model", TINY_CLIP, "--input", pattern, "--out", o16, "--fp16")
    ref_name = {"image_embeds": "image_embeds", "pooler": "pooler_output",
                "embeddings": "last_hidden_state"}
    for shard, exp in expected.items():
        good = [(k, f) for k, f in exp if f]
        ref = encode_ref(vtok, work, TINY_CLIP, [f for _, f in good], shard)
        for kind, o in outs.items():
            rows, keys, errors, stats = read_shard(o, shard)
            check(keys == [k for k, _ in good], "%s/%s: keys %s != %s" %
                  (kind, shard, keys, [k for k, _ in good]))
            err_keys = [e["key"] for e in errors if e["key"] is not None]
            check(sorted(err_keys) == sorted(k for k, f in exp if not f),
                  "%s: error keys %s" % (shard, err_keys))
            check(sorted(keys + err_keys) == sorted(k for k, _ in exp),
                  "%s: a key missing or twice" % shard)
            want = ref[ref_name[kind]]
            check(rows.dtype == np.float32 and rows.shape == want.shape,
                  "%s/%s: %s %s vs %s" % (kind, shard, rows.dtype, rows.shape, want.shape))
            diff = float(np.abs(rows - want).max())
            check(diff <= 1e-5, "%s/%s: max |batch - encode| = %g" % (kind, shard, diff))
            check(stats["output"] == kind and stats["npy_dtype"] == "float32", "stats: %s" % stats)
        corrupt = [e for e in errors if e["key"] == exp[3][0]]
        check(corrupt and "jpeg" in corrupt[0]["reason"].lower(),
              "corrupt key's reason: %s" % corrupt)
        noimg = [e for e in errors if e["key"] == exp[5][0]]
        check(noimg and "no image" in noimg[0]["reason"], "no-image reason: %s" % noimg)
        with open(os.path.join(outs["pooler"], shard + ".captions.jsonl")) as f:
            caps = [json.loads(l) for l in f]
        check([c["key"] for c in caps] == [k for k, _ in good] and
              all(c["caption"] == "caption of " + c["key"] for c in caps), "captions: %s" % caps[:2])
        rows16 = np.load(os.path.join(o16, shard + ".npy"))
        rows32 = np.load(os.path.join(outs["image_embeds"], shard + ".npy"))
        check(rows16.dtype == np.float16 and np.array_equal(rows16, rows32.astype(np.float16)),
              "%s: --fp16 rows are not the float32 rows rounded by numpy" % shard)
    for o in list(outs.values()) + [o16]:
        no_temps(o)
    # a rerun skips every shard and leaves the files untouched
    o = outs["pooler"]
    before = {f: os.stat(os.path.join(o, f)).st_mtime_ns for f in os.listdir(o)}
    p = batch(vtok, "--model", TINY_CLIP, "--input", pattern, "--out", o, "--output", "pooler")
    fin = json.loads(p.stdout.splitlines()[-1])
    check(fin["shards_skipped"] == 3 and fin["shards_done"] == 0, "rerun: %s" % fin)
    after = {f: os.stat(os.path.join(o, f)).st_mtime_ns for f in os.listdir(o)}
    check(before == after, "a rerun changed finished shards")
    # several comma-separated specs
    o2 = out + "_comma"
    shutil.rmtree(o2, ignore_errors=True)
    batch(vtok, "--model", TINY_CLIP, "--input", "%s,%s" % (paths[2], paths[0]), "--out", o2)
    check(sorted(f for f in os.listdir(o2) if f.endswith(".done")) == ["00000.done", "00002.done"],
          "comma-separated specs")


def test_inputs(vtok, work):
    paths, expected = make_wds(work, n_shards=1, per_shard=7, seed=1)
    good = [(k, f) for k, f in expected["00000"] if f]
    ref = encode_ref(vtok, work, TINY_CLIP, [f for _, f in good], "inputs")["image_embeds"]
    # a folder (recursive, sorted), with a non-image file and a corrupt image
    folder = os.path.join(work, "folder")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.join(folder, "b"))
    files = []
    for i, (k, f) in enumerate(good):
        rel = ("b/" if i % 2 else "") + "img%02d%s" % (i, os.path.splitext(f)[1])
        shutil.copy(f, os.path.join(folder, rel))
        files.append((rel, f))
    with open(os.path.join(folder, "notes.txt"), "w") as fh:
        fh.write("not an image\n")
    with open(os.path.join(folder, "zz_bad.png"), "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n truncated")
    files.sort()
    order = [r for r, _ in files]
    out = os.path.join(work, "out_folder")
    shutil.rmtree(out, ignore_errors=True)
    batch(vtok, "--model", TINY_CLIP, "--input", folder, "--out", out, "--shard-size", "4")
    keys_all, rows_all, errs = [], [], []
    names = sorted(f[:-5] for f in os.listdir(out) if f.endswith(".done"))
    check(names == ["folder-00000", "folder-00001"], "folder shards: %s" % names)
    for n in names:
        r, k, e, _ = read_shard(out, n)
        keys_all += k
        rows_all.append(r)
        errs += e
    check(keys_all == order, "folder keys %s != %s" % (keys_all, order))
    check([e["key"] for e in errs] == ["zz_bad.png"], "folder errors: %s" % errs)
    by_src = dict(files)
    want = np.stack([ref[[f for _, f in good].index(by_src[k])] for k in keys_all])
    check(np.abs(np.concatenate(rows_all) - want).max() <= 1e-5, "folder rows differ")
    # a list file (relative to its folder, and absolute)
    lst = os.path.join(work, "list.txt")
    with open(lst, "w") as fh:
        for i, (_, f) in enumerate(good):
            fh.write((os.path.relpath(f, work) if i % 2 else f) + "\n")
        fh.write("\n")
    out = os.path.join(work, "out_list")
    shutil.rmtree(out, ignore_errors=True)
    batch(vtok, "--model", TINY_CLIP, "--input", lst, "--out", out)
    r, k, e, _ = read_shard(out, "list-00000")
    check(len(k) == len(good) and not e, "list: %d keys, errors %s" % (len(k), e))
    check(np.abs(r - ref).max() <= 1e-5, "list rows differ")
    # a list of tars, and pipe:cat
    tl = os.path.join(work, "tars.txt")
    with open(tl, "w") as fh:
        fh.write(os.path.relpath(paths[0], work) + "\n")
    for spec, o in ((tl, "out_tarlist"), ("pipe:cat " + paths[0], "out_pipe")):
        out = os.path.join(work, o)
        shutil.rmtree(out, ignore_errors=True)
        batch(vtok, "--model", TINY_CLIP, "--input", spec, "--out", out)
        r, k, e, st = read_shard(out, "00000")
        check(k == [kk for kk, _ in good] and np.abs(r - ref).max() <= 1e-5, "%s rows" % spec)
    # a pipe whose command fails: reported, not marked done, exit 1
    out = os.path.join(work, "out_pipe_fail")
    shutil.rmtree(out, ignore_errors=True)
    p = batch(vtok, "--model", TINY_CLIP, "--input", "pipe:cat /nonexistent/00007.tar",
              "--out", out, check_rc=1)
    check(not os.path.exists(os.path.join(out, "00007.done")) and "00007" in p.stderr,
          "failed pipe: %s" % p.stderr)
    no_temps(out)


def test_recipe(vtok, work):
    _, expected = make_wds(work, n_shards=1, per_shard=6, seed=2)
    good = [f for _, f in expected["00000"] if f]
    out = os.path.join(work, "out_recipe")
    shutil.rmtree(out, ignore_errors=True)
    batch(vtok, "--recipe", "llava-1.5", "--model", TINY_LLAVA, "--input",
          os.path.join(work, "wds", "00000.tar"), "--out", out, "--batch", "3")
    rows, keys, errors, stats = read_shard(out, "00000")
    ref_dir = os.path.join(work, "ref_recipe")
    shutil.rmtree(ref_dir, ignore_errors=True)
    run([vtok, "run", "--recipe", "llava-1.5", "--model", TINY_LLAVA,
         *sum((["--image", f] for f in good), []), "--out", ref_dir])
    ref = np.load(os.path.join(ref_dir, "embeddings.npy"))
    check(rows.shape == ref.shape, "recipe shape %s vs %s" % (rows.shape, ref.shape))
    diff = float(np.abs(rows - ref).max())
    check(diff <= 1e-5, "recipe rows differ by %g" % diff)
    check(stats["recipe"] == "llava-1.5" and len(errors) == 2, "recipe stats/errors")


def test_ids(vtok, work, seed_dir):
    """--output ids with the tiny SEED that parity_recipes_gvt_seed writes:
    equal to `vtok tokenize` (int64). Skipped (77) when it is absent."""
    recipe, model = os.path.join(seed_dir, "seed_tiny.json"), os.path.join(seed_dir, "seed")
    if not (os.path.exists(recipe) and os.path.isdir(model)):
        print("skip ids: no tiny SEED in %s (run parity_recipes_gvt_seed)" % seed_dir)
        return 77
    _, expected = make_wds(work, n_shards=1, per_shard=6, seed=7)
    good = [f for _, f in expected["00000"] if f]
    out = os.path.join(work, "out_ids")
    shutil.rmtree(out, ignore_errors=True)
    batch(vtok, "--recipe", recipe, "--model", model, "--input",
          os.path.join(work, "wds", "00000.tar"), "--out", out, "--batch", "2")
    rows, keys, errors, stats = read_shard(out, "00000")
    ref_dir = os.path.join(work, "ref_ids")
    shutil.rmtree(ref_dir, ignore_errors=True)
    run([vtok, "tokenize", "--recipe", recipe, "--model", model,
         *sum((["--image", f] for f in good), []), "--out", ref_dir])
    ref = np.load(os.path.join(ref_dir, "ids.npy"))
    check(rows.dtype == np.int64 and np.array_equal(rows, ref), "ids differ from vtok tokenize")
    check(stats["output"] == "ids" and stats["npy_dtype"] == "int64", "ids stats")
    return 0


def keys_everywhere(out):
    """Every key of every finished shard: from keys.txt and errors.jsonl."""
    seen = []
    for f in sorted(os.listdir(out)):
        if f.endswith(".done"):
            _, k, e, _ = read_shard(out, f[:-5])
            seen += k + [x["key"] for x in e if x["key"] is not None]
    return seen


def test_ranks(vtok, work):
    _, expected = make_wds(work, n_shards=5, per_shard=6, seed=3)
    all_keys = sorted(k for exp in expected.values() for k, _ in exp)
    pattern = os.path.join(work, "wds", "{00000..00004}.tar")
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JOB_COMPLETION", "VTOK_NUM"))}
    variants = [
        ("flags", [{}, {}], [["--shard-index", "0", "--num-shards", "2"],
                             ["--shard-index", "1", "--num-shards", "2"]]),
        ("slurm", [{"SLURM_PROCID": "0", "SLURM_NTASKS": "2"},
                   {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}], [[], []]),
        ("ompi", [{"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"},
                  {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}], [[], []]),
        ("pmi", [{"PMI_RANK": "1", "PMI_SIZE": "2"}, {"PMI_RANK": "0", "PMI_SIZE": "2"}],
         [[], []]),
        ("k8s", [{"JOB_COMPLETION_INDEX": "0", "VTOK_NUM_SHARDS": "2"},
                 {"JOB_COMPLETION_INDEX": "1"}], [[], ["--num-shards", "2"]]),
    ]
    for name, envs, flags in variants:
        out = os.path.join(work, "out_ranks_" + name)
        shutil.rmtree(out, ignore_errors=True)
        procs = []
        for env, fl in zip(envs, flags):
            e = dict(base_env)
            e.update(env)
            procs.append(subprocess.Popen(
                [vtok, "batch", "--progress", "json", "--model", TINY_CLIP, "--input", pattern,
                 "--out", out, "--threads", "1", "--workers", "1", *fl],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e))
        per_rank = []
        for p in procs:
            so, se = p.communicate(timeout=120)
            check(p.returncode == 0, "%s: exit %d: %s" % (name, p.returncode, se))
            per_rank.append(json.loads(so.splitlines()[-1]))
        check(sorted(r["rank"] for r in per_rank) == [0, 1] and
              all(r["num_shards"] == 2 for r in per_rank), "%s: ranks %s" % (name, per_rank))
        check(sorted(r["shards_done"] for r in per_rank) == [2, 3], "%s: %s" % (name, per_rank))
        seen = keys_everywhere(out)
        check(sorted(seen) == all_keys, "%s: samples not covered exactly once" % name)
        no_temps(out)
    # a rank out of range is refused
    e = dict(base_env, SLURM_PROCID="2", SLURM_NTASKS="2")
    p = batch(vtok, "--model", TINY_CLIP, "--input", pattern, "--out",
              os.path.join(work, "out_badrank"), check_rc=1, env=e)
    check("rank" in p.stderr, "bad rank message: %s" % p.stderr)


def test_kill(vtok, work):
    """Two ranks at once; rank 0 is killed with SIGKILL once its first shard
    is done (mid-way through its second); rerun; exactly once."""
    rng = np.random.default_rng(4)
    src = os.path.join(work, "wds_kill")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    n_shards, per = 6, 120
    all_keys = []
    pool = [image_bytes(rng, "PNG", 224, 224) for _ in range(8)]
    for s in range(n_shards):
        members = []
        for i in range(per):
            key = "k%02d_%04d" % (s, i)
            all_keys.append(key)
            members.append((key + ".png", pool[(s * per + i) % len(pool)]))
        write_tar(os.path.join(src, "%05d.tar" % s), members)
    pattern = os.path.join(src, "{00000..%05d}.tar" % (n_shards - 1))
    out = os.path.join(work, "out_kill")
    shutil.rmtree(out, ignore_errors=True)
    common = [vtok, "batch", "--progress", "json", "--model", TINY_CLIP, "--input", pattern,
              "--out", out, "--threads", "1", "--workers", "1", "--batch", "1"]
    t0 = time.time()
    r0 = subprocess.Popen(common + ["--shard-index", "0", "--num-shards", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    r1 = subprocess.Popen(common + ["--shard-index", "1", "--num-shards", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = os.path.join(out, "00000.done")
    while not os.path.exists(first) or not any(f.startswith(".00002~") for f in os.listdir(out)):
        check(r0.poll() is None, "rank 0 ended before its second shard started")
        check(time.time() - t0 < 60, "rank 0 too slow")
        time.sleep(0.002)
    time.sleep(0.02)  # some rows of 00002 written
    temps = [f for f in os.listdir(out) if f.startswith(".")]
    os.kill(r0.pid, signal.SIGKILL)
    r0.wait()
    check(r0.returncode == -signal.SIGKILL, "rank 0 was not killed (exit %s)" % r0.returncode)
    killed_mid = bool(temps) and not os.path.exists(os.path.join(out, "00002.done"))
    r1.communicate(timeout=120)
    check(r1.returncode == 0, "rank 1 failed")
    done_before = sorted(f for f in os.listdir(out) if f.endswith(".done"))
    p = run(common + ["--shard-index", "0", "--num-shards", "2"])
    fin = json.loads(p.stdout.splitlines()[-1])
    check(fin["shards_skipped"] >= 1, "rerun did not skip the finished shard: %s" % fin)
    seen = keys_everywhere(out)
    check(len(seen) == len(all_keys), "after the rerun: %d samples, want %d" %
          (len(seen), len(all_keys)))
    check(sorted(seen) == sorted(all_keys), "a sample lost or duplicated")
    no_temps(out)
    RESULTS["kill"] = {"killed_mid_shard": killed_mid, "temps_at_kill": len(temps),
                       "done_before_rerun": len(done_before), "rerun_skipped": fin["shards_skipped"],
                       "samples": len(seen)}
    check(killed_mid, "the kill did not land inside a shard (temps %s)" % temps)
    # SIGTERM (Slurm's preemption / time limit): the shard in progress is
    # dropped with its temp files, exit 143, and a rerun finishes the job
    out = os.path.join(work, "out_term")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [c if c != os.path.join(work, "out_kill") else out for c in common]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while not os.path.exists(out) or not any(f.startswith(".") for f in os.listdir(out)):
        check(p.poll() is None and time.time() - t0 < 60, "no shard started")
        time.sleep(0.002)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    check(p.returncode == 128 + signal.SIGTERM, "SIGTERM: exit %s" % p.returncode)
    no_temps(out)
    run(cmd)
    check(sorted(keys_everywhere(out)) == sorted(all_keys), "after SIGTERM and a rerun")
    no_temps(out)


def test_malformed(vtok, work):
    rng = np.random.default_rng(5)
    src = os.path.join(work, "bad")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    members = [("s%02d.png" % i, image_bytes(rng, "PNG", 50, 50)) for i in range(4)]
    good = os.path.join(src, "good.tar")
    write_tar(good, members, tarfile.USTAR_FORMAT)
    blob = open(good, "rb").read()
    offs = []  # header offsets
    o = 0
    while o + 512 <= len(blob) and blob[o:o + 512] != b"\0" * 512:
        offs.append(o)
        size = int(blob[o + 124:o + 136].strip(b"\0 ") or b"0", 8)
        o += 512 + (size + 511) // 512 * 512

    def with_header(h_index, patch):
        b = bytearray(blob)
        h = offs[h_index]
        patch(b, h)
        # fix the checksum unless told not to
        return b

    def set_size(b, h, field):
        b[h + 124:h + 136] = field
        b[h + 148:h + 156] = b" " * 8
        b[h + 148:h + 156] = b"%06o\0 " % sum(b[h:h + 512])

    cases = {
        "truncated": (blob[:offs[2] + 700], 2),          # inside member 2's data
        "cut_header": (blob[:offs[3] + 100], 3),         # inside a header
        "badsum": (bytes(with_header(2, lambda b, h: b.__setitem__(slice(h + 10, h + 11), b"X"))), 2),
        "huge_octal": (bytes(with_header(1, lambda b, h: set_size(b, h, b"77777777777\0"))), 1),
        "huge_b256": (bytes(with_header(1, lambda b, h: set_size(b, h, b"\x80" + b"\x7f" * 11))), 1),
        "b256_4g": (bytes(with_header(1, lambda b, h: set_size(
            b, h, b"\x80" + b"\0" * 6 + b"\x01" + b"\0" * 4))), 1),
        "garbage": (bytes(rng.integers(0, 256, 5000, dtype=np.uint8)), 0),
        "empty": (b"", 0),
    }
    out = os.path.join(work, "out_bad")
    shutil.rmtree(out, ignore_errors=True)
    for name, (data, n_good) in cases.items():
        with open(os.path.join(src, name + ".tar"), "wb") as fh:
            fh.write(data)
    specs = ",".join(os.path.join(src, n + ".tar") for n in cases)
    p = batch(vtok, "--model", TINY_CLIP, "--input", specs + "," + os.path.join(src, "missing.tar"),
              "--out", out, check_rc=1)
    check("missing" in p.stderr, "missing tar not reported: %s" % p.stderr)
    check(not os.path.exists(os.path.join(out, "missing.done")), "a missing tar marked done")
    for name, (data, n_good) in cases.items():
        rows, keys, errors, stats = read_shard(out, name)
        check(keys == ["s%02d" % i for i in range(n_good)],
              "%s: kept %s, want the %d samples before the damage" % (name, keys, n_good))
        structural = [e for e in errors if e["key"] is None]
        if name != "empty":
            check(structural and stats["input_error"], "%s: damage not recorded: %s" % (name, errors))
        RESULTS.setdefault("malformed", {})[name] = structural[0]["reason"] if structural else None
    no_temps(out)
    # mutation fuzzing: random bytes of headers and data, random cuts, one
    # run over all of them; every shard must finish (never a crash or hang)
    fz = os.path.join(work, "fuzz")
    shutil.rmtree(fz, ignore_errors=True)
    os.makedirs(fz)
    pax = os.path.join(src, "pax.tar")
    write_tar(pax, [("d/" + "x" * 150 + "%02d.png" % i, members[i][1]) for i in range(3)],
              tarfile.PAX_FORMAT)
    seeds = [blob, open(pax, "rb").read()]
    n_fuzz = 160
    for i in range(n_fuzz):
        b = bytearray(seeds[i % 2])
        for _ in range(int(rng.integers(1, 6))):
            if rng.random() < 0.7 and offs:  # inside a header
                pos = offs[int(rng.integers(0, len(offs)))] % len(b) + int(rng.integers(0, 512))
            else:
                pos = int(rng.integers(0, len(b)))
            if pos < len(b):
                b[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            b = b[:int(rng.integers(0, len(b)))]
        with open(os.path.join(fz, "f%03d.tar" % i), "wb") as fh:
            fh.write(bytes(b))
    out = os.path.join(work, "out_fuzz")
    shutil.rmtree(out, ignore_errors=True)
    batch(vtok, "--model", TINY_CLIP, "--input", os.path.join(fz, "f{000..%03d}.tar" % (n_fuzz - 1)),
          "--out", out)
    dones = [f for f in os.listdir(out) if f.endswith(".done")]
    check(len(dones) == n_fuzz, "fuzz: %d of %d shards done" % (len(dones), n_fuzz))
    for f in dones:
        read_shard(out, f[:-5])
    no_temps(out)


def test_throughput(vtok, work):
    """images/s on tiny-clip: 4 shards of 256 JPEGs (img2dataset-like 256 px)."""
    rng = np.random.default_rng(6)
    src = os.path.join(work, "wds_speed")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    pool = [image_bytes(rng, "JPEG", 256, 256) for _ in range(16)]
    for s in range(4):
        write_tar(os.path.join(src, "%05d.tar" % s),
                  [("%05d%04d.jpg" % (s, i), pool[i % 16]) for i in range(256)])
    out = os.path.join(work, "out_speed")
    shutil.rmtree(out, ignore_errors=True)
    p = batch(vtok, "--model", TINY_CLIP, "--input", os.path.join(src, "{00000..00003}.tar"),
              "--out", out, "--batch", "32")
    fin = json.loads(p.stdout.splitlines()[-1])
    check(fin["images"] == 1024, "throughput run: %s" % fin)
    RESULTS["throughput"] = {"images": fin["images"], "seconds": fin["seconds"],
                             "images_per_s": fin["images_per_s"], "cpus": os.cpu_count()}


def test_mpi(vtok, work):
    mpirun = shutil.which("mpirun")
    if not mpirun:
        print("mpi: skipped: no mpirun (apt-get install openmpi-bin)")
        return 77
    # built with MPI? (without, --schedule dynamic is refused at once)
    p = batch(vtok, "--schedule", "dynamic", "--model", TINY_CLIP, "--input",
              os.path.join(work, "nothing-here.tar"), "--out", os.path.join(work, "o"),
              check_rc=None)
    if "built without MPI" in p.stderr:
        print("mpi: skipped: this vtok was built without MPI (libopenmpi-dev)")
        return 77
    n_shards = 6
    _, expected = make_wds(work, n_shards=n_shards, per_shard=8, seed=7)
    names = ["%05d" % i for i in range(n_shards)]
    all_keys = sorted(k for exp in expected.values() for k, _ in exp)
    pattern = os.path.join(work, "wds", "{00000..%05d}.tar" % (n_shards - 1))
    common = ["--model", TINY_CLIP, "--input", pattern, "--threads", "1", "--workers", "1",
              "--batch", "4"]
    # the reference: one process
    ref = os.path.join(work, "out_mpi_ref")
    shutil.rmtree(ref, ignore_errors=True)
    batch(vtok, *common, "--out", ref)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "PMI_", "PMIX_", "JOB_COMPLETION",
                                "VTOK_NUM"))}
    # Open MPI refuses root unless told (mpirun(1), --allow-run-as-root)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")

    def mpi_batch(out, *extra):
        p = run([mpirun, "--oversubscribe", "-np", "2", vtok, "batch", "--progress", "json",
                 *common, "--out", out, *extra], env=env, timeout=180)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        return p, lines

    def stats_of(out):
        return {n: read_shard(out, n)[3] for n in names}

    out = os.path.join(work, "out_mpi")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    p, lines = mpi_batch(out)
    secs = time.time() - t0
    check(p.stderr.count("Open MPI, dynamic") == 2, "not dynamic: %s" % p.stderr[-2000:])
    fins = [l for l in lines if l["event"] == "finished"]
    check(sorted(f["rank"] for f in fins) == [0, 1] and
          all(f["num_shards"] == 2 and f["schedule"] == "dynamic" for f in fins),
          "finished lines: %s" % fins)
    check(sum(f["shards_done"] for f in fins) == n_shards, "shards done: %s" % fins)
    check(sorted(keys_everywhere(out)) == all_keys, "mpi: samples not covered exactly once")
    no_temps(out)
    st = stats_of(out)
    by_rank = {0: [], 1: []}
    for n in names:
        check(st[n]["schedule"] == "dynamic" and st[n]["num_shards"] == 2, "stats %s" % st[n])
        by_rank[st[n]["rank"]].append(n)
        rows, keys, _, _ = read_shard(out, n)
        rrows, rkeys, _, _ = read_shard(ref, n)
        check(keys == rkeys and np.array_equal(rows, rrows), "%s: differs from one process" % n)
    check(by_rank[0] and by_rank[1], "a rank did no shard: %s" % by_rank)
    started = {l["shard"]: l["rank"] for l in lines if l["event"] == "shard_start"}
    check(started == {n: st[n]["rank"] for n in names},
          "shard_start lines %s vs stats %s" % (started, by_rank))
    for f in fins:
        check(f["shards_done"] == len(by_rank[f["rank"]]), "rank %d: %s" % (f["rank"], f))
    # resume: two shards lose their outputs (as if killed before the marker),
    # one has a stale temp file; the others must be left alone
    redo = [names[1], names[4]]
    for n in redo:
        for suf in (".npy", ".keys.txt", ".errors.jsonl", "_stats.json", ".done"):
            os.remove(os.path.join(out, n + suf))
    stale = os.path.join(out, ".%s~deadhost.1~.npy" % names[4])
    with open(stale, "wb") as f:
        f.write(b"partial")
    mtimes = {n: os.stat(os.path.join(out, n + ".done")).st_mtime_ns
              for n in names if n not in redo}
    p, lines = mpi_batch(out)
    fins = [l for l in lines if l["event"] == "finished"]
    check(sum(f["shards_done"] for f in fins) == 2, "rerun did %s" % fins)
    check(sorted(l["shard"] for l in lines if l["event"] == "shard_start") == redo,
          "rerun started %s" % lines)
    check(all(os.stat(os.path.join(out, n + ".done")).st_mtime_ns == t
              for n, t in mtimes.items()), "rerun touched finished shards")
    check(sorted(keys_everywhere(out)) == all_keys, "rerun: samples not exactly once")
    no_temps(out)
    # a third run has nothing to do
    p, lines = mpi_batch(out)
    check(sum(f["shards_done"] for f in lines if f["event"] == "finished") == 0,
          "third run did work")
    # --schedule static under mpirun: shard i on rank i % 2
    out_s = os.path.join(work, "out_mpi_static")
    shutil.rmtree(out_s, ignore_errors=True)
    p, lines = mpi_batch(out_s, "--schedule", "static")
    check(p.stderr.count("(Open MPI)") == 2, "static: %s" % p.stderr[-2000:])
    st = stats_of(out_s)
    check(all(st[n]["rank"] == i % 2 and st[n]["schedule"] == "static"
              for i, n in enumerate(names)), "static ranks: %s" % st)
    check(sorted(keys_everywhere(out_s)) == all_keys, "static: samples not exactly once")
    # a slow rank takes fewer: rank 1 is stopped (SIGSTOP, from outside)
    # once it starts its first shard and continued when rank 0 has done all
    # the others; the static split would give it 3 of the 6 whatever
    out_d = os.path.join(work, "out_mpi_slow")
    shutil.rmtree(out_d, ignore_errors=True)
    mp = subprocess.Popen([mpirun, "--oversubscribe", "-np", "2", vtok, "batch", "--progress",
                           "json", *common, "--out", out_d], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    starts, dones, stopped = {}, set(), None
    try:
        for line in mp.stdout:
            if not line.startswith("{"):
                continue
            ev = json.loads(line)
            if ev["event"] == "shard_start":
                starts[ev["shard"]] = ev["rank"]
                if ev["rank"] == 1 and stopped is None:
                    stopped = rank_pid(out_d, 1)
                    os.kill(stopped, signal.SIGSTOP)
            elif ev["event"] == "shard_done":
                dones.add(ev["shard"])
            if stopped and len(starts) == n_shards and all(
                    n in dones for n, r in starts.items() if r == 0):
                os.kill(stopped, signal.SIGCONT)
                stopped = 0
        mp.wait(timeout=60)
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
        if mp.poll() is None:
            mp.kill()
            mp.wait()
    check(mp.returncode == 0, "slow rank run: exit %s: %s" % (mp.returncode,
                                                             mp.stderr.read()[-2000:]))
    check(stopped == 0, "rank 1 never started a shard / never continued: %s" % starts)
    slow = [n for n, r in starts.items() if r == 1]
    check(1 <= len(slow) <= 2 and len(starts) == n_shards,
          "stopped rank 1 did %s of %d shards" % (slow, n_shards))
    check(sorted(keys_everywhere(out_d)) == all_keys, "slow: samples not exactly once")
    no_temps(out_d)
    RESULTS["mpi"] = {"shards_by_rank": {str(r): v for r, v in by_rank.items()},
                      "seconds": round(secs, 2), "stopped_rank1_shards": len(slow)}


def rank_pid(out, rank):
    """The pid of the `vtok batch --out OUT` process of this MPI rank."""
    want = ("OMPI_COMM_WORLD_RANK=%d" % rank).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
            if b"batch" not in cmd or out.encode() not in cmd or b"mpirun" in cmd[0]:
                continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                if want in f.read().split(b"\0"):
                    return int(pid)
        except OSError:
            continue
    fail("no process for rank %d of %s" % (rank, out))



def test_question(vtok, work, build_dir):
    """Recipes that read a question, one --prompt for every image: SliME (ragged: S.npy holds
    every image's rows one after another, S.lengths.npy the counts; --llm for its selector)
    and MoVA (--experts). Each image's rows = `vtok run` on that image alone. Fixtures:
    parity_slime's and parity_mova_recipe's work folders (skipped, 77, when absent)."""
    slime, mova = os.path.join(build_dir, "slime"), os.path.join(build_dir, "mova_recipe")
    cases = []
    if os.path.exists(os.path.join(slime, "slime_tiny.json")):
        cases.append(("slime", os.path.join(slime, "slime_tiny.json"),
                      os.path.join(slime, "slime"), sorted(glob.glob(os.path.join(slime,
                                                                                "img*.png"))),
                      ["--llm", os.path.join(slime, "llm")], "What shape is in the picture?"))
    if os.path.exists(os.path.join(mova, "mova_tiny.json")):
        cases.append(("mova", os.path.join(mova, "mova_tiny.json"), os.path.join(mova, "mova"),
                      [os.path.join(mova, "img_45x30.png")] + sorted(glob.glob(os.path.join(
                          slime, "img*.png")))[:3], ["--experts", "A,C"],
                      "What Shape is in the PICTURE?"))
        # each image's own routing pass with the LLM (one image per run)
        cases.append(("mova-llm", os.path.join(mova, "mova_tiny.json"),
                      os.path.join(mova, "mova"), [os.path.join(mova, "img_45x30.png")] +
                      sorted(glob.glob(os.path.join(slime, "img*.png")))[:2],
                      ["--llm", os.path.join(mova, "llm")], "What Shape is in the PICTURE?"))
    if not cases:
        print("skip question: no SliME / MoVA fixture in %s (run parity_slime, "
              "parity_mova_recipe)" % build_dir)
        return 77
    for name, rp, model, imgs, extra, q in cases:
        src = os.path.join(work, "in_" + name)
        shutil.rmtree(src, ignore_errors=True)
        os.makedirs(src)
        for k, f in enumerate(imgs):  # the folder's sorted order is the sample order
            shutil.copy(f, os.path.join(src, "%02d.png" % k))
        out = os.path.join(work, "out_" + name)
        shutil.rmtree(out, ignore_errors=True)
        batch(vtok, "--recipe", rp, "--model", model, "--prompt", q, *extra, "--input", src,
              "--out", out, "--batch", "2")
        shard = [f[:-5] for f in os.listdir(out) if f.endswith(".done")][0]
        rows, keys, errors, stats = read_shard(out, shard) if name != "slime" else (
            None, None, None, None)
        if name == "slime":  # ragged: rows != keys
            rows = np.load(os.path.join(out, shard + ".npy"))
            lens = np.load(os.path.join(out, shard + ".lengths.npy"))
            keys = open(os.path.join(out, shard + ".keys.txt")).read().splitlines()
            check(lens.dtype == np.int64 and lens.shape == (len(keys),) and
                  int(lens.sum()) == rows.shape[0], "slime: lengths %s for %d keys, %d rows"
                  % (lens.tolist(), len(keys), rows.shape[0]))
            offs = np.concatenate([[0], np.cumsum(lens)])
            per = [rows[offs[k]:offs[k + 1]] for k in range(len(keys))]
        else:
            per = list(rows)
        check(len(per) == len(imgs), "%s: %d samples, %d images" % (name, len(per), len(imgs)))
        for k, f in enumerate(imgs):
            ref_dir = os.path.join(work, "ref_%s_%d" % (name, k))
            shutil.rmtree(ref_dir, ignore_errors=True)
            run([vtok, "run", "--recipe", rp, "--model", model, "-p", q, *extra, "--image", f,
                 "--out", ref_dir])
            ref = np.load(os.path.join(ref_dir, "embeddings.npy"))
            ref = ref[0] if ref.ndim == 3 else ref
            got = per[k] if k < len(per) else np.zeros(0)
            check(got.shape == ref.shape and float(np.abs(got - ref).max()) <= 1e-5,
                  "%s image %d: rows %s vs vtok run %s" % (name, k, got.shape, ref.shape))
            if name == "mova-llm":  # S.routing.jsonl = vtok run --llm's layout.json
                lay = json.load(open(os.path.join(ref_dir, "layout.json")))
                recs = [json.loads(l) for l in open(os.path.join(out, shard + ".routing.jsonl"))]
                check(len(recs) == len(imgs) and recs[k]["key"] == keys[k] and
                      recs[k]["experts"] == lay["experts"] and
                      recs[k]["answer"] == lay["routing_answer"],
                      "mova-llm image %d: routing %s vs vtok run --llm %s" % (
                          k, recs[k] if k < len(recs) else None, lay["experts"]))
    # a question recipe without --prompt, and --prompt on one that reads none: one line each
    p = batch(vtok, "--recipe", cases[0][1], "--model", cases[0][2], *cases[0][4], "--input",
              os.path.join(work, "in_" + cases[0][0]), "--out", os.path.join(work, "x"),
              check_rc=1)
    check("--prompt" in p.stderr, "no --prompt: %s" % p.stderr.strip())
    p = batch(vtok, "--recipe", "llava-1.5", "--model", TINY_LLAVA, "--prompt", "q", "--input",
              os.path.join(work, "in_" + cases[0][0]), "--out", os.path.join(work, "x"),
              check_rc=1)
    check("does not read a question" in p.stderr, "--prompt on llava-1.5: %s" % p.stderr.strip())
    return 0


TESTS = {"wds": test_wds, "inputs": test_inputs, "recipe": test_recipe, "ids": test_ids,
         "ranks": test_ranks, "kill": test_kill, "malformed": test_malformed,
         "throughput": test_throughput, "mpi": test_mpi, "question": test_question}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", action="append", choices=sorted(TESTS))
    ap.add_argument("--seed-dir", default=os.path.join(ROOT, "build", "recipes_gvt_seed"),
                    help="where parity_recipes_gvt_seed wrote its tiny SEED (for ids)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"),
                    help="where parity_slime / parity_mova_recipe wrote their fixtures")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    vtok = os.path.abspath(a.vtok)
    skipped = 0
    for name in a.only or TESTS:
        t0 = time.time()
        w = os.path.join(a.work, name)
        os.makedirs(w, exist_ok=True)
        r = (TESTS[name](vtok, w, a.seed_dir) if name == "ids" else
             TESTS[name](vtok, w, a.build_dir) if name == "question" else TESTS[name](vtok, w))
        skipped += r == 77
        print("%s %-10s %.1f s" % ("skip" if r == 77 else "ok", name, time.time() - t0),
              flush=True)
    print(json.dumps(RESULTS))
    return 77 if a.only and skipped == len(a.only) else 0


if __name__ == "__main__":
    sys.exit(main())
