#!/usr/bin/env python3
"""Hostile and careless inputs through the CLI (issue 10): every case is a
small file made here, and each must end with exit status 1 and one clear line
on stderr ("vtok: ..."), never a signal, a hang, or memory out of proportion
to the input. Every case runs with a wall-clock bound and, in release builds,
an address-space cap (prlimit --as; ASan reserves terabytes of shadow address
space, so with --no-as-cap the peak RSS is bounded instead).

Classes (findings in brackets):
  - input paths: directory, /dev/zero, symlink loop, missing, empty [8]
  - image headers at 0 / 1 / max / max+1 sizes, bombs (tiny file, huge
    canvas) in PNG, JPEG, GIF, WebP; truncated files
  - what a processor makes of a valid image: pad-to-square canvas, resize
    targets, all named by file [7, 13]
  - .npy and safetensors size fields: 0, huge, overflowing products
  - config.json / preprocessor_config.json fields at 0 / -1 / huge / 1e999,
    duplicate keys [11], non-finite or tiny mean/std [12], projection_dim [13]
  - recipes: names that would become paths [2], duplicate keys [11]
  - CLI numbers: --size on a fixed-size model, huge values [13]

    check_inputs.py --vtok build/vtok --work DIR [--no-as-cap] [--api build/adv_api]
"""
import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(REPO, "models", "tiny-clip")
LLAVA = os.path.join(REPO, "models", "tiny-llava")
AS_CAP = 1 << 30          # release builds: 1 GiB of address space for any case
RSS_CAP_MB = 400          # peak RSS bound (both builds; ASan's own overhead included)
TIME_CAP = 20.0           # seconds per case (ASan builds are ~3x slower)

fails = []
n_checks = [0]


def check(ok, what):
    n_checks[0] += 1
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails.append(what)


class Runner:
    def __init__(self, vtok, asan):
        self.vtok, self.asan = vtok, asan

    def run(self, args, timeout=TIME_CAP):
        """(returncode, stderr, seconds, peak RSS MiB) of vtok ARGS under the caps."""
        def limits():
            if not self.asan:
                resource.setrlimit(resource.RLIMIT_AS, (AS_CAP, AS_CAP))
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as ef:
            p = subprocess.Popen([self.vtok] + args, stdout=subprocess.DEVNULL, stderr=ef,
                                 preexec_fn=limits)
            while True:  # wait4: this child's own peak RSS
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - t0 > timeout:
                    p.kill()
                    os.wait4(p.pid, 0)
                    return None, "timed out after %.0f s" % timeout, timeout, 0
                time.sleep(0.005)
            p.returncode = os.waitstatus_to_exitcode(status)
            ef.seek(0)
            err = ef.read().decode(errors="replace")
        return p.returncode, err, time.monotonic() - t0, ru.ru_maxrss / 1024.0

    def refused(self, what, args, needle=None):
        """The case must fail cleanly: exit 1, one 'vtok: ' line (containing
        needle, case-insensitive, if given), within the time and memory caps."""
        rc, err, dt, rss = self.run(args)
        lines = err.strip().splitlines()
        ok = (rc == 1 and len(lines) == 1 and lines[0].startswith("vtok: ") and
              (needle is None or needle.lower() in lines[0].lower()))
        check(ok and dt < TIME_CAP and rss < RSS_CAP_MB, "%s: exit %s in %.2f s, %.0f MiB: %s" %
              (what, rc, dt, rss, err.strip()[:220]))
        return lines[0] if lines else ""

    def works(self, what, args):
        rc, err, dt, rss = self.run(args)
        check(rc == 0 and rss < RSS_CAP_MB, "%s: exit %s in %.2f s, %.0f MiB %s" %
              (what, rc, dt, rss, err.strip()[:160]))


# ---- small hostile files -------------------------------------------------

def png(w, h, rows=None, bit_depth=8, color=2):
    """A PNG whose IHDR says w x h; rows is the raw scanline data (default:
    the real image for small sizes, else a tiny IDAT: a bomb header)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    if rows is None:
        rows = b"".join(b"\x00" + b"\x40" * (3 * w) for _ in range(h)) if w * h <= 1 << 20 \
            else b"\x00" * 64
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


def jpeg_header(w, h):
    """SOI + a baseline SOF0 for w x h (3 components) and nothing else."""
    sof = struct.pack(">BHHB", 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def gif(screen_w, screen_h, fw=1, fh=1):
    """A GIF89a with a screen_w x screen_h logical screen and one fw x fh frame."""
    g = b"GIF89a" + struct.pack("<HHBBB", screen_w, screen_h, 0x80, 0, 0)
    g += b"\x00\x00\x00\xff\xff\xff"
    g += b"\x2c" + struct.pack("<HHHHB", 0, 0, fw, fh, 0)
    g += b"\x02\x02\x44\x01\x00" + b"\x3b"
    return g


def webp_vp8x(w, h):
    """A RIFF/WEBP VP8X header declaring a w x h canvas, no image data."""
    vp8x = struct.pack("<I", 0) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def npy(shape_text, descr="<f4", data=b"", fortran="False"):
    hdr = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape_text)
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + data


def safetensors(header, data=b""):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def model_with(work, name, config=None, pre=None, weights=None, raw_config=None):
    """A copy of tiny-clip with config.json / preprocessor_config.json keys
    replaced (None values removed), or raw text, or other weight bytes."""
    d = os.path.join(work, name)
    shutil.copytree(MODEL, d)
    if config is not None or raw_config is not None:
        with open(os.path.join(MODEL, "config.json")) as f:
            c = json.load(f)
        for k, v in (config or {}).items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(raw_config if raw_config is not None else json.dumps(c))
    if pre is not None:
        with open(os.path.join(MODEL, "preprocessor_config.json")) as f:
            c = json.load(f)
        if isinstance(pre, str):
            text = pre
        else:
            c.update(pre)
            text = json.dumps(c)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            f.write(text)
    if weights is not None:
        write(os.path.join(d, "model.safetensors"), weights)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--no-as-cap", action="store_true",
                    help="sanitizer or emulated build: bound the peak RSS, not the address space")
    ap.add_argument("--api", help="the adv_api program (C API cases)")
    a = ap.parse_args()
    R = Runner(os.path.abspath(a.vtok), a.no_as_cap)
    work = os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    out = os.path.join(work, "out")
    enc = lambda img: ["encode", "--model", MODEL, "--image", img, "--out", out]
    llava = lambda img: ["run", "--recipe", "llava-1.5", "--model", LLAVA, "--image", img,
                         "--out", out]

    # -- input paths (finding 8 and its class)
    os.makedirs(os.path.join(work, "a_dir"))
    loop = os.path.join(work, "loop.png")
    os.symlink(loop, loop)
    empty = write(os.path.join(work, "empty.png"), b"")
    for what, path, needle in (("a directory", os.path.join(work, "a_dir"), "directory"),
                               ("/dev/zero", "/dev/zero", "not a regular file"),
                               ("a symlink loop", loop, None),
                               ("a missing file", os.path.join(work, "nope.png"), None),
                               ("an empty file", empty, None)):
        R.refused("--image %s" % what, enc(path), needle)
        R.refused("--pixels %s" % what, ["encode", "--model", MODEL, "--pixels", path,
                                         "--out", out], needle)
    R.refused("--model /dev/zero", ["encode", "--model", "/dev/zero", "--image",
                                    os.path.join(REPO, "models", "sample.jpg"), "--out", out])

    # -- image headers: 0 / 1 / max / max+1, bombs, truncation
    R.works("PNG 1x1", enc(write(os.path.join(work, "p1.png"), png(1, 1))))
    for w, h in ((0, 1), (1, 0), (65501, 1), (1, 65501), (2**31 - 1, 2**31 - 1), (2**32 - 1, 1)):
        R.refused("PNG header %dx%d" % (w, h), enc(write(os.path.join(work, "ph.png"), png(w, h))))
    R.refused("PNG bomb 65500x65500 in %d bytes" % len(png(65500, 65500)),
              enc(write(os.path.join(work, "bomb.png"), png(65500, 65500))), "pixels")
    R.refused("PNG 16-bit bomb 20000x20000",
              enc(write(os.path.join(work, "bomb16.png"), png(20000, 20000, bit_depth=16))))
    good = png(64, 64, rows=os.urandom(64 * (1 + 64 * 3)))
    R.refused("PNG cut in its pixel data",
              enc(write(os.path.join(work, "trunc.png"), good[:len(good) // 2])))
    for w, h in ((0, 8), (65535, 65535), (65500, 65500)):
        R.refused("JPEG header %dx%d, no data" % (w, h),
                  enc(write(os.path.join(work, "j.jpg"), jpeg_header(w, h))))
    R.refused("GIF 65535x65535 screen, 1x1 frame",
              enc(write(os.path.join(work, "g.gif"), gif(65535, 65535))))
    # Pillow opens a 0x0-screen GIF as its 1x1 frame: so does vtok
    R.works("GIF 0x0 screen, 1x1 frame", enc(write(os.path.join(work, "g0.gif"), gif(0, 0))))
    R.refused("WebP VP8X 16777216x16777216 canvas",
              enc(write(os.path.join(work, "w.webp"), webp_vp8x(1 << 24, 1 << 24))))

    # -- what a processor makes of a valid image (findings 7, 13)
    wide = write(os.path.join(work, "wide30000.png"), png(30000, 1))
    line = R.refused("llava pad-to-square of a 30000x1 PNG (%d bytes)" % os.path.getsize(wide),
                     llava(wide), "square")
    check(wide in line, "the pad error names the file")
    wide2 = write(os.path.join(work, "wide65500.png"), png(65500, 1))
    line = R.refused("65500x1 PNG resized to shortest side 64", enc(wide2), "resizes to")
    check(wide2 in line, "the resize error names the file")
    R.works("llava pad-to-square of a 2000x1 PNG (within limits)",
            llava(write(os.path.join(work, "wide2000.png"), png(2000, 1))))

    # -- .npy size fields
    for what, data in (("shape (1,3,65536,65536), no data", npy("(1, 3, 65536, 65536)")),
                       ("shape (2**62, 3, 64, 64)", npy("(%d, 3, 64, 64)" % 2**62)),
                       ("shape (0, 3, 64, 64)", npy("(0, 3, 64, 64)")),
                       ("shape (-1, 3, 64, 64)", npy("(-1, 3, 64, 64)")),
                       ("header length past the file", b"\x93NUMPY\x01\x00\xff\xff{"),
                       ("descr '<f16'", npy("(1, 3, 64, 64)", descr="<f16")),
                       ("object dtype", npy("(1,)", descr="|O"))):
        R.refused(".npy %s" % what, ["encode", "--model", MODEL, "--pixels",
                                     write(os.path.join(work, "x.npy"), data), "--out", out])

    # -- safetensors size fields
    for i, (what, data) in enumerate((
            ("header length 2**63", struct.pack("<Q", 2**63) + b"{}"),
            ("header length past the file", struct.pack("<Q", 1000) + b"{}"),
            ("tensor of 2**40 elements", safetensors(
                {"vision_model.embeddings.class_embedding":
                 {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}})),
            ("shape product overflowing int64", safetensors(
                {"x": {"dtype": "F32", "shape": [2**32, 2**32, 2**32], "data_offsets": [0, 4]}},
                b"\0" * 4)),
            ("unknown dtype", safetensors(
                {"x": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)),
            ("offsets reversed", safetensors(
                {"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4)))):
        m = model_with(work, "st%d" % i, weights=data)
        R.refused("model.safetensors: %s" % what,
                  ["encode", "--model", m, "--image", os.path.join(REPO, "models", "sample.jpg"),
                   "--out", out])

    # -- config.json fields at 0 / -1 / huge / non-finite (and [11], [13])
    img = os.path.join(REPO, "models", "sample.jpg")
    cases = [("hidden_size 0", {"hidden_size": 0}), ("hidden_size -1", {"hidden_size": -1}),
             ("hidden_size 2**40", {"hidden_size": 2**40}),
             ("num_hidden_layers 1e9", {"num_hidden_layers": 10**9}),
             ("num_hidden_layers -1", {"num_hidden_layers": -1}),
             ("num_attention_heads 0", {"num_attention_heads": 0}),
             ("num_attention_heads 3 (not dividing 64)", {"num_attention_heads": 3}),
             ("patch_size 0", {"patch_size": 0}), ("patch_size 65537", {"patch_size": 65537}),
             ("image_size 2**31", {"image_size": 2**31}),
             ("intermediate_size 2**40", {"intermediate_size": 2**40}),
             ("layer_norm_eps 1e999", {"layer_norm_eps": 1e999}),
             ("layer_norm_eps -1", {"layer_norm_eps": -1.0}),
             ("hidden_act unknown", {"hidden_act": "nope"}),
             ("projection_dim -1", {"projection_dim": -1}),
             ("projection_dim 31 (tensor has 32)", {"projection_dim": 31})]
    for i, (what, cfg) in enumerate(cases):
        m = model_with(work, "cfg%d" % i, config=cfg)
        R.refused("config.json %s" % what, ["encode", "--model", m, "--image", img, "--out", out])
    m = model_with(work, "cfgdup", raw_config='{"model_type": "clip_vision_model", '
                   '"hidden_size": 64, "num_hidden_layers": 4, "num_hidden_layers": 999, '
                   '"intermediate_size": 256, "num_attention_heads": 4, "image_size": 64, '
                   '"patch_size": 8}')
    R.refused("config.json duplicate key", ["encode", "--model", m, "--image", img, "--out", out],
              "duplicate")
    m = model_with(work, "cfgbad", raw_config='{"model_type": "clip_vision_model", "hidden_size": ')
    R.refused("config.json truncated", ["encode", "--model", m, "--image", img, "--out", out])

    # -- preprocessor_config.json (findings 11, 12)
    for i, (what, pre) in enumerate((
            ("size 0", {"size": {"shortest_edge": 0}}),
            ("size 65501", {"size": {"shortest_edge": 65501}}),
            ("size 2**63", {"size": {"shortest_edge": 2**63}}),
            ("crop_size -1", {"crop_size": {"height": -1, "width": 64}}),
            ("image_mean 1e999 scalar", '{"image_processor_type": "CLIPImageProcessor", '
             '"image_mean": 1e999, "image_std": 0.5, "size": {"shortest_edge": 64}, '
             '"crop_size": {"height": 64, "width": 64}}'),
            ("image_std 1e-40", {"image_std": [1e-40, 1e-40, 1e-40]}),
            ("image_std 0 scalar", {"image_std": 0}),
            ("resample 9", {"resample": 9}),
            ("rescale_factor NaN-ish string", {"rescale_factor": "x"}),
            ("duplicate key", '{"image_processor_type": "CLIPImageProcessor", "size": '
             '{"shortest_edge": 64}, "size": {"shortest_edge": 9999}}'))):
        m = model_with(work, "pre%d" % i, pre=pre)
        R.refused("preprocessor_config.json %s" % what,
                  ["encode", "--model", m, "--image", img, "--out", out])

    # -- recipes (findings 2, 11)
    with open(os.path.join(REPO, "recipes", "llava-1.5.json")) as f:
        rec = json.load(f)
    evil = json.loads(json.dumps(rec))
    encs = evil.get("encoders") or []
    if encs and isinstance(encs, list) and isinstance(encs[0], dict) and "name" in encs[0]:
        encs[0]["name"] = "../../../../tmp/pwned"
        rp = write(os.path.join(work, "evil.json"), json.dumps(evil).encode())
        R.refused("recipe encoder named ../../../../tmp/pwned",
                  ["run", "--recipe", rp, "--model", LLAVA, "--image", img, "--out", out,
                   "--dump", os.path.join(work, "dump")], "name")
    else:
        check(False, "recipes/llava-1.5.json has encoders[0].name to turn hostile")
    text = json.dumps(rec)
    dup = text[:-1] + ', "name": "other"}'
    R.refused("recipe with a duplicate key", ["run", "--recipe",
                                              write(os.path.join(work, "dup.json"), dup.encode()),
                                              "--model", LLAVA, "--image", img, "--out", out],
              "duplicate")

    # -- the other commands on the same hostile files, under the same caps
    bomb = os.path.join(work, "bomb.png")
    R.refused("preprocess of the PNG bomb", ["preprocess", "--model", MODEL, bomb, "--out",
                                             os.path.join(work, "pv.npy")], "pixels")
    R.refused("preprocess of the 30000x1 PNG through llava's processor",
              ["preprocess", "--model", os.path.join(LLAVA, "clip-vit-large-patch14-336"), wide, "--out",
               os.path.join(work, "pv.npy")])
    R.refused("info on a model whose weights claim 2**40 elements",
              ["info", "--model", os.path.join(work, "st2")])
    R.refused("run --pixels with an overflowing .npy shape",
              ["run", "--recipe", "llava-1.5", "--model", LLAVA, "--pixels",
               write(os.path.join(work, "big.npy"), npy("(%d, 3, 64, 64)" % 2**62)),
               "--out", out])
    R.refused("detokenize --ids with a huge .npy shape",
              ["detokenize", "--recipe", "llava-1.5", "--model", LLAVA, "--ids",
               write(os.path.join(work, "ids.npy"), npy("(%d, 32)" % 2**40, descr="<i8")),
               "--out", out])
    R.refused("convert of a truncated safetensors",
              ["convert", write(os.path.join(work, "t.safetensors"), struct.pack("<Q", 1000)),
               os.path.join(work, "t2.safetensors")])

    # -- CLI numbers (finding 13)
    R.refused("bench --size 65536 on a 64-pixel-only model",
              ["bench", "--model", MODEL, "--size", "65536"], "64x64")
    R.refused("bench --size INT64_MAX", ["bench", "--model", MODEL, "--size",
                                         "9223372036854775807"], "1..65536")
    R.refused("--threads 0", ["encode", "--model", MODEL, "--image", img, "--threads", "0",
                              "--out", out], "1..65536")

    # -- the C API with sizes whose products overflow (finding 5): adv_api.c. Last:
    # importing torch here makes every later fork (and its peak RSS) large.
    if a.api:
        sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
        import hf_vision as hv
        import safetensors_io as sio
        cfg = {"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 64,
               "num_hidden_layers": 1, "num_attention_heads": 4, "mlp_ratio": 64,
               "patch_size": 1, "image_size": 4}
        d = os.path.join(work, "patch1")
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        sio.write_model(d, dict(hv.build_model(cfg).state_dict()), 1)
        p = subprocess.run([a.api, d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        text = p.stdout.decode(errors="replace")
        print(text.rstrip())
        check(p.returncode == 0, "adv_api: the C API cases (exit %d)" % p.returncode)

    print("%d passed, %d failed" % (n_checks[0] - len(fails), len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
