#!/usr/bin/python3
"""make_corpus.py - a deterministic corpus of images for vtok's decoders, with
the pixels Pillow gives for each.

Usage: /usr/bin/python3 tests/image/make_corpus.py OUTDIR [--helper TEST_DECODE]

Writes image files into OUTDIR, plus OUTDIR/manifest.json: one entry per
check, {"file", "opts", "expect", "npy", "note", ...}, where

  expect "pixels": vtok must produce exactly the uint8 HxWx3 array in npy,
                   which is Image.open(f).convert("RGB") (with opts
                   ["--exif"]: ImageOps.exif_transpose(Image.open(f))...);
  expect "error":  Pillow fails on the file; vtok must fail cleanly;
  expect "limit":  a decompression bomb; vtok must fail with ELIMIT;
  expect "approx": jpeg_fast_scale; size "size" and mean abs diff <= "tol"
                   against Pillow's full decode reduced by the same factor.

Every expectation is computed here by running Pillow 9.4 on the file, so the
corpus states Pillow's behaviour, not ours. Entries with "allow_error": true
are known, documented divergences where Pillow decodes a malformed file and
vtok refuses it.

Images come from Pillow's encoders where they can make them, from small
writers below where they cannot (PNG of every colour type, bit depth and
interlace; GIF with chosen palettes, offsets and LZW streams; animated WebP
with an offset first frame), and from `TEST_DECODE --make-jpeg` (libjpeg
settings Pillow cannot set: restart markers, YCCK, CMYK without Adobe
marker, RGB colour space, 4:4:0 and 4:1:1 sampling, arithmetic coding). All
random content is seeded.
"""
import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps

OUT = None
HELPER = None
CASES = []


# ----------------------------------------------------------------- content --

def photo(w, h, seed=0):
    """Smooth colour gradients plus noise: compresses like a photograph."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 110 * np.sin(x / 7.0 + seed) * np.cos(y / 11.0)
    g = 127 + 110 * np.cos(y / 5.0 + x / 23.0)
    b = (x * 3 + y * 2 + seed * 17) % 256
    img = np.stack([r, g, b], -1) + rng.randint(-25, 26, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def rand(shape, hi, seed):
    return np.random.RandomState(seed).randint(0, hi, shape)


# ------------------------------------------------------------ registration --

def pillow_pixels(path, exif=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path) as im:
                if exif:
                    im = ImageOps.exif_transpose(im)
                return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8)), None
        except Exception as e:  # Pillow's verdict on a bad file
            return None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")


def add(name, data, note="", exif_too=False, limit=False, allow_error=False):
    """Write data to OUT/name and record Pillow's result (with and, if
    exif_too, without/with --exif)."""
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(data)
    for exif in ([False, True] if exif_too else [False]):
        arr, err = pillow_pixels(path, exif)
        entry = {"file": name, "opts": ["--exif"] if exif else [], "note": note}
        if limit:
            if err is None:
                raise SystemExit("make_corpus: Pillow decoded bomb %s" % name)
            entry["expect"] = "limit"
            entry["pillow"] = err
        elif err is not None:
            entry["expect"] = "error"
            entry["pillow"] = err
        else:
            npy = name + (".exif" if exif else "") + ".npy"
            np.save(os.path.join(OUT, npy), arr)
            entry["expect"] = "pixels"
            entry["npy"] = npy
            if allow_error:
                entry["allow_error"] = True
        CASES.append(entry)


def add_pil(name, im, note="", exif_too=False, **save):
    buf = io.BytesIO()
    im.save(buf, **save)
    add(name, buf.getvalue(), note or repr(save), exif_too=exif_too)
    return buf.getvalue()


def add_cuts(name, data, n=14, note=""):
    """Truncations of data at n spread points and at the last few bytes."""
    cuts = sorted(set([int(len(data) * k / n) for k in range(n)] +
                      [len(data) - d for d in (1, 2, 3, 4, 5, 8, 12, 13, 16) if d < len(data)]))
    for c in cuts:
        add("%s.cut%06d" % (name, c), data[:c], note or "truncated at %d of %d" % (c, len(data)))


def corrupt(data, positions, seed=0):
    rng = np.random.RandomState(seed)
    b = bytearray(data)
    for p in positions:
        b[p] = (b[p] + 1 + rng.randint(0, 254)) & 255
    return bytes(b)


# --------------------------------------------------------------------- JPEG --

def exif_blob(orientation, typ=3, le=True):
    e = "<" if le else ">"
    head = (b"II*\x00" if le else b"MM\x00*") + struct.pack(e + "I", 8)
    if typ == 3:
        val = struct.pack(e + "HH", orientation, 0)
    else:
        val = struct.pack(e + "I", orientation)
    ifd = struct.pack(e + "H", 2)
    ifd += struct.pack(e + "HHI", 0x010F, 2, 4) + b"vtk\x00"  # Make
    ifd += struct.pack(e + "HHI", 0x0112, typ, 1) + val
    ifd += struct.pack(e + "I", 0)
    return head + ifd


def helper_jpeg(name, px, opts, note):
    if not HELPER:
        return None
    raw = os.path.join(OUT, name + ".raw")
    with open(raw, "wb") as f:
        f.write(np.ascontiguousarray(px).tobytes())
    h, w = px.shape[:2]
    out = os.path.join(OUT, name)
    subprocess.run([HELPER, "--make-jpeg", raw, str(w), str(h), out] + opts, check=True)
    os.unlink(raw)
    with open(out, "rb") as f:
        data = f.read()
    add(name, data, note or " ".join(opts))
    return data


def jpeg_cases():
    rgb = Image.fromarray(photo(97, 61, 1))
    big = Image.fromarray(photo(320, 240, 2))
    add_pil("j_444.jpg", rgb, format="JPEG", quality=95, subsampling=0)
    add_pil("j_422.jpg", rgb, format="JPEG", quality=90, subsampling=1)
    j420 = add_pil("j_420.jpg", rgb, format="JPEG", quality=90, subsampling=2)
    add_pil("j_420_320.jpg", big, format="JPEG", quality=85)
    jprog = add_pil("j_prog.jpg", big, format="JPEG", quality=85, progressive=True)
    add_pil("j_prog_97.jpg", rgb, format="JPEG", quality=75, progressive=True, subsampling=1)
    add_pil("j_opt.jpg", big, format="JPEG", quality=80, optimize=True)
    add_pil("j_q5.jpg", rgb, format="JPEG", quality=5)
    add_pil("j_q100.jpg", rgb, format="JPEG", quality=100, subsampling=0)
    add_pil("j_gray.jpg", rgb.convert("L"), format="JPEG", quality=90)
    add_pil("j_gray_prog.jpg", big.convert("L"), format="JPEG", progressive=True)
    add_pil("j_cmyk.jpg", rgb.convert("CMYK"), format="JPEG", quality=90)
    add_pil("j_cmyk_prog.jpg", big.convert("CMYK"), format="JPEG", progressive=True)
    add_pil("j_1x1.jpg", Image.fromarray(photo(1, 1, 3)), format="JPEG")
    add_pil("j_1x1_gray.jpg", Image.fromarray(photo(1, 1, 3)).convert("L"), format="JPEG")
    add_pil("j_1x1_cmyk.jpg", Image.fromarray(photo(1, 1, 3)).convert("CMYK"), format="JPEG")
    add_pil("j_2x2_prog.jpg", Image.fromarray(photo(2, 2, 3)), format="JPEG", progressive=True)
    add_pil("j_1024_prog.jpg", Image.fromarray(photo(1024, 768, 11)), format="JPEG",
            quality=92, progressive=True, subsampling=2)
    add_pil("j_3000x17.jpg", Image.fromarray(photo(3000, 17, 4)), format="JPEG")
    add_pil("j_17x3000.jpg", Image.fromarray(photo(17, 3000, 5)), format="JPEG", subsampling=1)
    add_pil("j_icc.jpg", rgb, format="JPEG", icc_profile=b"not really a profile" * 10)
    add_pil("j_comment_dpi.jpg", rgb, format="JPEG", dpi=(300, 300), comment=b"hello")
    for o in range(1, 9):
        add_pil("j_exif%d.jpg" % o, rgb, "orientation %d" % o, exif_too=True, format="JPEG",
                exif=b"Exif\x00\x00" + exif_blob(o, le=(o % 2 == 0)))
    add_pil("j_exif6_long.jpg", rgb, "orientation as LONG", exif_too=True, format="JPEG",
            exif=b"Exif\x00\x00" + exif_blob(6, typ=4))
    add_pil("j_exif_cmyk8.jpg", rgb.convert("CMYK"), exif_too=True, format="JPEG",
            exif=b"Exif\x00\x00" + exif_blob(8))

    # libjpeg settings Pillow cannot ask for.
    p = photo(97, 61, 6)
    helper_jpeg("h_restart1.jpg", p, ["restart=1"], "restart marker every MCU")
    helper_jpeg("h_restart_rows.jpg", p, ["rows=1", "samp=2x2"], "restart every MCU row")
    helper_jpeg("h_rgb.jpg", p, ["cs=rgb"], "RGB colour space (Adobe transform 0)")
    helper_jpeg("h_440.jpg", p, ["samp=1x2"], "4:4:0 sampling")
    helper_jpeg("h_411.jpg", p, ["samp=4x1"], "4:1:1 sampling")
    helper_jpeg("h_arith.jpg", p, ["arith=1"], "arithmetic coding")
    helper_jpeg("h_arith_prog.jpg", p, ["arith=1", "progressive=1"], "arithmetic progressive")
    helper_jpeg("h_prog_restart.jpg", p, ["progressive=1", "restart=3"], "progressive + restarts")
    helper_jpeg("h_gray_restart.jpg", p[:, :, 0].copy(), ["cs=gray", "restart=2"], "")
    cmyk = rand((61, 97, 4), 256, 7).astype(np.uint8)
    cmyk[:30, :, 3] = 0
    helper_jpeg("h_ycck.jpg", cmyk, ["cs=ycck"], "YCCK (Adobe transform 2)")
    helper_jpeg("h_ycck_prog.jpg", cmyk, ["cs=ycck", "progressive=1", "samp=2x2"], "")
    helper_jpeg("h_cmyk_noadobe.jpg", cmyk, ["cs=cmyk-noadobe"], "CMYK, no Adobe marker")
    helper_jpeg("h_cmyk_adobe.jpg", cmyk, ["cs=cmyk"], "CMYK, Adobe transform 0")

    # Damage: flipped entropy bytes decode (with warnings) in both.
    big_data = add_pil("j_big.jpg", Image.fromarray(photo(400, 300, 8)), format="JPEG",
                       quality=88)
    n = len(big_data)
    for k, pos in enumerate([n // 3, n // 2, (2 * n) // 3, n - 40]):
        add("j_flip%d.jpg" % k, corrupt(big_data, [pos, pos + 7], seed=k), "flipped bytes")
    add("j_flip_prog.jpg", corrupt(jprog, [len(jprog) // 2], seed=9), "flipped progressive")
    add("j_noeoi.jpg", big_data[:-2], "EOI removed")
    add("j_noeoi_prog.jpg", jprog[:-2], "EOI removed, progressive")
    add("j_trailing.jpg", big_data + b"garbage after EOI" * 50, "junk after EOI")
    add("j_two.jpg", j420 + j420, "two JPEGs back to back")
    add_cuts("j_420.jpg", j420)
    add_cuts("j_prog.jpg", jprog)
    add("j_header_only.jpg", j420[:2] + b"\xff", "SOI + FF")
    # Pillow's own marker parser runs before libjpeg and is stricter.
    add("j_tem.jpg", j420[:2] + b"\xff\x01" + j420[2:], "TEM marker (libjpeg skips it)")
    add("j_fill.jpg", j420[:2] + b"\xff\xff\xff" + j420[2:], "fill bytes before a marker")
    add("j_junk.jpg", j420[:20] + b"\x00\x01junk" + j420[20:], "junk between segments")
    add("j_short_jfif.jpg", j420[:2] + b"\xff\xe0\x00\x07JFIF\x00" + j420[2:],
        "JFIF segment of 5 bytes")
    add("j_short_adobe.jpg", j420[:2] + b"\xff\xee\x00\x07Adobe" + j420[2:],
        "Adobe segment of 5 bytes")
    app1 = lambda blob: b"\xff\xe1" + struct.pack(">H", len(blob) + 2) + blob
    add("j_exif_bigtiff.jpg", j420[:2] + app1(b"Exif\x00\x00II+\x00\x08\x00\x00\x00") + j420[2:],
        "BigTIFF Exif header", exif_too=True)
    add("j_exif_short.jpg", j420[:2] + app1(b"Exif\x00\x00MM\x00*\x00") + j420[2:],
        "Exif TIFF header of 5 bytes", exif_too=True)
    add("j_exif_garbage.jpg", j420[:2] + app1(b"Exif\x00\x00garbage!") + j420[2:],
        "Exif that is not TIFF", exif_too=True)
    # SOF claiming 65500 x 65500 (a bomb): change the size in the 4:2:0 file.
    b = bytearray(j420)
    i = b.index(b"\xff\xc0")
    b[i + 5:i + 9] = struct.pack(">HH", 65500, 65500)
    add("j_bomb.jpg", bytes(b), "SOF 65500x65500", limit=True)
    b = bytearray(j420)
    b[i + 9] = 2
    add("j_2comp.jpg", bytes(b), "SOF with 2 components")

    # jpeg_fast_scale: not Pillow-exact; checked against a box reduction.
    fs = add_pil("j_fast.jpg", Image.fromarray(photo(800, 600, 10)), format="JPEG", quality=90)
    with Image.open(io.BytesIO(fs)) as im:
        full = im.convert("RGB")
    for target, d in ((224, 2), (100, 4), (70, 8), (30, 8), (600, 1), (1000, 1)):
        ref = full.reduce(d) if d > 1 else full
        npy = "j_fast.jpg.t%d.npy" % target
        np.save(os.path.join(OUT, npy), np.asarray(ref))
        CASES.append({"file": "j_fast.jpg", "opts": ["--fast-scale", str(target)],
                      "expect": "approx", "npy": npy, "tol": 0.0 if d == 1 else 3.0,
                      "size": [-(-800 // d), -(-600 // d)],
                      "note": "fast scale to >= %d: 1/%d" % (target, d)})


# ---------------------------------------------------------------------- PNG --

def chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data))


def pack_row(samples, bd):
    """One row of samples (1-D int array) as PNG bytes."""
    if bd == 8:
        return samples.astype(np.uint8).tobytes()
    if bd == 16:
        return samples.astype(">u2").tobytes()
    per = 8 // bd
    out = bytearray()
    for i in range(0, len(samples), per):
        v = 0
        grp = samples[i:i + per]
        for j in range(per):
            v = (v << bd) | (int(grp[j]) if j < len(grp) else 0)
        out.append(v)
    return bytes(out)


def filter_rows(rows, bpp, seed):
    """Filter each raw row with a filter type cycling through 0..4."""
    out = bytearray()
    prev = np.zeros(len(rows[0]) if rows else 0, np.int32)
    for k, row in enumerate(rows):
        ft = (k + seed) % 5
        r = np.frombuffer(row, np.uint8).astype(np.int32)
        a = np.concatenate([np.zeros(bpp, np.int32), r[:-bpp]])[:len(r)]
        b = prev
        c = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])[:len(r)]
        if ft == 0:
            pred = np.zeros_like(r)
        elif ft == 1:
            pred = a
        elif ft == 2:
            pred = b
        elif ft == 3:
            pred = (a + b) // 2
        else:
            pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        out.append(ft)
        out += ((r - pred) & 255).astype(np.uint8).tobytes()
        prev = r
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png_bytes(samples, ct, bd, interlace=False, plte=None, before=(), after=(), idat_split=0,
              seed=0, zlevel=6):
    """samples: HxW (gray/palette) or HxWxC ints. Returns the PNG file."""
    h, w = samples.shape[:2]
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ct]
    flat = samples.reshape(h, w * chans)
    bpp = max(1, chans * bd // 8)
    if not interlace:
        raw = filter_rows([pack_row(flat[y], bd) for y in range(h)], bpp, seed)
    else:
        raw = b""
        s3 = samples.reshape(h, w, chans)
        for (x0, y0, dx, dy) in ADAM7:
            sub = s3[y0::dy, x0::dx]
            if sub.size == 0:
                continue
            sh, sw = sub.shape[:2]
            raw += filter_rows([pack_row(sub[y].reshape(-1), bd) for y in range(sh)], bpp, seed)
    z = zlib.compress(raw, zlevel)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bd, ct, 0, 0,
                                                            1 if interlace else 0))
    for c in before:
        out += c
    if plte is not None:
        out += chunk(b"PLTE", bytes(plte))
    if idat_split:
        for i in range(0, len(z), idat_split):
            out += chunk(b"IDAT", z[i:i + idat_split])
            if i == 0:
                out += chunk(b"IDAT", b"")  # empty IDAT chunks are legal
    else:
        out += chunk(b"IDAT", z)
    for c in after:
        out += c
    return out + chunk(b"IEND", b"")


def png_cases():
    sizes = [(97, 61), (1, 1), (3, 2), (13, 7)]
    for (w, h) in sizes:
        tag = "%dx%d" % (w, h)
        for il in (False, True):
            it = "_i" if il else ""
            for bd in (1, 2, 4, 8, 16):
                s = rand((h, w), 1 << bd, bd + w)
                add("p_g%d_%s%s.png" % (bd, tag, it), png_bytes(s, 0, bd, il, seed=bd))
                if bd in (1, 2, 4, 8):
                    n = 1 << bd
                    pal = rand((n * 3,), 256, 99 + bd).astype(np.uint8)
                    s = rand((h, w), n, 7 * bd + h)
                    add("p_p%d_%s%s.png" % (bd, tag, it), png_bytes(s, 3, bd, il, plte=pal))
            for bd in (8, 16):
                for ct, nm in ((2, "rgb"), (4, "la"), (6, "rgba")):
                    ch = {2: 3, 4: 2, 6: 4}[ct]
                    s = rand((h, w, ch), 1 << bd, ct * 31 + bd + w)
                    add("p_%s%d_%s%s.png" % (nm, bd, tag, it), png_bytes(s, ct, bd, il, seed=ct))
    # 16-bit gray with mostly small values: Pillow clips ("I" -> RGB), no scaling.
    s = rand((61, 97), 400, 5)
    add("p_g16_low.png", png_bytes(s, 0, 16), "16-bit gray values 0..399")
    # Palette with tRNS, short PLTE (indices past the end), 8-bit.
    s = rand((61, 97), 256, 11)
    pal = rand((256 * 3,), 256, 12).astype(np.uint8)
    add("p_p8_trns.png", png_bytes(s, 3, 8, plte=pal, before=[]), "")
    d = png_bytes(s, 3, 8, plte=pal)
    i = d.index(b"IDAT") - 4
    add("p_p8_trns2.png", d[:i] + chunk(b"tRNS", bytes(range(0, 256, 2))) + d[i:], "tRNS")
    add("p_p8_short.png", png_bytes(s, 3, 8, plte=pal[:30]), "10-entry PLTE, indices to 255")
    s4 = rand((61, 97), 16, 13)
    add("p_p4_short.png", png_bytes(s4, 3, 4, plte=pal[:9], interlace=True), "3-entry PLTE")
    # Ancillary chunks that must not change pixels.
    icc = zlib.compress(b"fake icc profile" * 20)
    anc = [chunk(b"gAMA", struct.pack(">I", 45455)),
           chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000,
                                      6000)),
           chunk(b"iCCP", b"prof\x00\x00" + icc),
           chunk(b"sBIT", b"\x05\x06\x05"),
           chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
           chunk(b"bKGD", struct.pack(">HHH", 1, 2, 3)),
           chunk(b"tEXt", b"Comment\x00hello"),
           chunk(b"zTXt", b"Title\x00\x00" + zlib.compress(b"compressed title")),
           chunk(b"iTXt", b"Author\x00\x00\x00en\x00\x00vtok"),
           chunk(b"prVt", b"private ancillary chunk"),
           chunk(b"tRNS", struct.pack(">HHH", 10, 20, 30))]
    srgb = rand((61, 97, 3), 256, 21)
    add("p_ancillary.png", png_bytes(srgb, 2, 8, before=anc, after=[chunk(b"tEXt", b"k\x00v")]),
        "gAMA/cHRM/iCCP/sBIT/... ignored")
    add("p_ancillary16.png", png_bytes(rand((61, 97, 3), 65536, 22), 2, 16, before=anc[:3]),
        "gAMA on 16-bit")
    add("p_srgb.png", png_bytes(srgb, 2, 8, before=[chunk(b"sRGB", b"\x00")]), "sRGB")
    add("p_split_idat.png", png_bytes(srgb, 2, 8, idat_split=100), "many small IDATs")
    add("p_split_idat_i.png", png_bytes(srgb, 2, 8, interlace=True, idat_split=77), "")
    add("p_z0.png", png_bytes(srgb, 2, 8, zlevel=0), "stored deflate blocks")
    # Pillow's own encoder.
    im = Image.fromarray(photo(97, 61, 30))
    add_pil("p_pil_rgb.png", im, format="PNG")
    add_pil("p_pil_rgba.png", im.convert("RGBA"), format="PNG")
    add_pil("p_pil_l.png", im.convert("L"), format="PNG")
    add_pil("p_pil_la.png", im.convert("LA"), format="PNG")
    add_pil("p_pil_1.png", im.convert("1"), format="PNG")
    add_pil("p_pil_p.png", im.convert("P", palette=Image.Palette.ADAPTIVE, colors=37),
            format="PNG", optimize=True)
    pt = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add_pil("p_pil_p_trns.png", pt, format="PNG", transparency=3)
    add_pil("p_pil_i16.png", Image.fromarray(rand((61, 97), 65536, 31).astype(np.uint16)),
            format="PNG")
    frames = [Image.fromarray(photo(40, 30, k)) for k in range(3)]
    ap = add_pil("p_apng.png", frames[0], "APNG: frame 0", format="PNG", save_all=True,
                 append_images=frames[1:], duration=100)
    k = ap.index(b"fcTL") + 4
    small_fctl = bytearray(ap[k:k + 26])
    small_fctl[4:8] = struct.pack(">I", 20)
    add("p_apng_small_default.png", ap[:k - 8] + chunk(b"fcTL", bytes(small_fctl)) + ap[k + 30:],
        "fcTL before IDAT smaller than the image: Pillow decodes IDAT into it",
        allow_error=True)
    # EXIF orientation: eXIf before/after IDAT, XMP, ImageMagick raw profile.
    s97 = rand((61, 97, 3), 256, 40)
    for o in range(1, 9):
        add("p_exif%d.png" % o, png_bytes(s97, 2, 8, before=[chunk(b"eXIf", exif_blob(o))]),
            "eXIf orientation %d" % o, exif_too=True)
    add("p_exif6_after.png", png_bytes(s97, 2, 8, after=[chunk(b"eXIf", exif_blob(6))]),
        "eXIf after IDAT", exif_too=True)
    add("p_exif5_mm.png", png_bytes(s97, 2, 8, before=[chunk(b"eXIf", exif_blob(5, le=False))]),
        "", exif_too=True)
    xmp_attr = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    add("p_xmp6.png", png_bytes(s97, 2, 8, before=[
        chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp_attr)]), "XMP attr",
        exif_too=True)
    xmp_el = b"<x:xmpmeta><tiff:Orientation>3</tiff:Orientation></x:xmpmeta>"
    add("p_xmp3.png", png_bytes(s97, 2, 8, after=[
        chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(xmp_el))]),
        "XMP element, compressed iTXt after IDAT", exif_too=True)
    add("p_xmp_vs_exif.png", png_bytes(s97, 2, 8, before=[
        chunk(b"eXIf", exif_blob(1)),
        chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp_attr)]),
        "EXIF orientation 1 wins over XMP 6", exif_too=True)
    hexs = exif_blob(8).hex()
    prof = ("\nexif\n%8d\n" % (len(hexs) // 2) +
            "\n".join(hexs[i:i + 72] for i in range(0, len(hexs), 72)) + "\n").encode()
    add("p_rawprofile8.png", png_bytes(s97, 2, 8, before=[
        chunk(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(prof))]),
        "ImageMagick raw profile", exif_too=True)
    bad_ifd = exif_blob(6)[:12]
    add("p_exif_badifd.png", png_bytes(s97, 2, 8, before=[chunk(b"eXIf", bad_ifd)]),
        "IFD cut short", exif_too=True)

    # Damage.
    base = png_bytes(rand((61, 97, 3), 256, 50), 2, 8)
    add_cuts("p_rgb.png", base)
    basei = png_bytes(rand((33, 21), 16, 51), 3, 4, interlace=True,
                      plte=rand((48,), 256, 52).astype(np.uint8))
    add_cuts("p_p4i.png", basei)
    i_idat = base.index(b"IDAT")
    idat_len = struct.unpack(">I", base[i_idat - 4:i_idat])[0]
    crc_at = i_idat + 4 + idat_len
    add("p_bad_idat_crc.png", base[:crc_at] + b"\0\0\0\0" + base[crc_at + 4:],
        "bad IDAT CRC (Pillow ignores it)")
    add("p_bad_ihdr_crc.png", base[:29] + b"\0\0\0\0" + base[33:], "bad IHDR CRC")
    d = png_bytes(srgb, 2, 8, before=[chunk(b"tEXt", b"a\x00b")])
    j = d.index(b"tEXt") + 7
    add("p_bad_text_crc.png", d[:j] + b"\0\0\0\0" + d[j + 4:], "bad pre-IDAT tEXt CRC")
    add("p_noiend.png", base[:-12], "IEND missing")
    add("p_trailing.png", base + b"junk" * 100, "junk after IEND")
    zbad = bytearray(base)
    zbad[i_idat + 4 + idat_len // 2] ^= 0x55
    add("p_zcorrupt.png", bytes(zbad), "deflate data damaged")
    raw = bytearray(b"".join(b"\x07" + bytes(97 * 3) for _ in range(61)))
    d = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 97, 61, 8, 2, 0, 0, 0)) +
         chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))
    add("p_badfilter.png", d, "filter type 7")
    raw = b"".join(b"\x00" + bytes(range(30)) for _ in range(5))
    d = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0)) +
         chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    # adler32: Pillow checks it only when zlib meets it while producing the
    # last row from the bytes it was fed (<= 64 KiB of one IDAT chunk).
    bigpx = rand((300, 400, 3), 256, 53)
    bigp = png_bytes(bigpx, 2, 8, zlevel=1)
    add("p_big.png", bigp, "IDAT over 64 KiB")
    k = bigp.index(b"IDAT")
    zl = struct.unpack(">I", bigp[k - 4:k])[0]
    z = bytearray(bigp[k + 4:k + 4 + zl])
    z[-1] ^= 0x40
    hdr = bigp[:k - 4]
    add("p_big_bad_adler.png", hdr + chunk(b"IDAT", bytes(z)) + chunk(b"IEND", b""),
        "bad adler32 in the last 64 KiB piece")
    add("p_bad_adler_split.png", hdr + chunk(b"IDAT", bytes(z[:-4])) + chunk(b"IDAT", bytes(z[-4:]))
        + chunk(b"IEND", b""), "bad adler32 in its own IDAT (never read by Pillow)")
    add("p_cut_in_adler.png", hdr + chunk(b"IDAT", bytes(z))[:-6], "file ends inside the trailer")
    add("p_text_after_cut.png", hdr + chunk(b"IDAT", bytes(z[:-4]) + bytes(bigp[k + zl:k + zl + 4]))
        + chunk(b"tEXt", b"key\x00" + b"v" * 100)[:60], "tEXt after IDAT cut short")
    add("p_short_stream.png", d, "zlib stream ends after 5 of 10 rows (Pillow: black rows)",
        allow_error=True)
    d = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0,
                                                          0)) +
         chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    add("p_bomb.png", d, "IHDR 100000 x 100000", limit=True)
    add("p_sig_only.png", b"\x89PNG\r\n\x1a\n", "signature only")
    add("p_no_idat.png", base[:33] + chunk(b"IEND", b""), "no IDAT")


# --------------------------------------------------------------------- WebP --

def riff(chunks):
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wchunk(tag, data):
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")


def webp_payload(data):
    """The chunks after the RIFF header of a simple-format WebP file."""
    return data[12:]


def webp_cases():
    im = Image.fromarray(photo(97, 61, 60))
    lossy = add_pil("w_lossy.webp", im, format="WEBP", quality=80)
    add_pil("w_lossy_q10.webp", im, format="WEBP", quality=10)
    lossless = add_pil("w_lossless.webp", im, format="WEBP", lossless=True)
    rgba = im.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[..., 3] = np.linspace(0, 255, 97).astype(np.uint8)[None, :]
    rgba = Image.fromarray(a)
    add_pil("w_lossy_alpha.webp", rgba, format="WEBP", quality=85)
    add_pil("w_lossless_alpha.webp", rgba, format="WEBP", lossless=True)
    add_pil("w_lossless_alpha_exact.webp", rgba, format="WEBP", lossless=True, exact=True)
    add_pil("w_1x1.webp", Image.fromarray(photo(1, 1, 61)), format="WEBP")
    add_pil("w_1x1_ll.webp", Image.fromarray(photo(1, 1, 61)), format="WEBP", lossless=True)
    add_pil("w_3000x17.webp", Image.fromarray(photo(3000, 17, 62)), format="WEBP")
    add_pil("w_odd.webp", Image.fromarray(photo(33, 9, 63)), format="WEBP", quality=90)
    add_pil("w_gray.webp", im.convert("L"), format="WEBP")
    for o in (3, 6, 8):
        add_pil("w_exif%d.webp" % o, im, "orientation %d" % o, exif_too=True, format="WEBP",
                exif=b"Exif\x00\x00" + exif_blob(o))
    frames = [Image.fromarray(photo(48, 32, k)) for k in range(3)]
    add_pil("w_anim.webp", frames[0], "animated: frame 0", format="WEBP", save_all=True,
            append_images=frames[1:], duration=80, lossless=True)
    add_pil("w_anim_lossy.webp", frames[0].convert("RGBA"), "animated lossy", format="WEBP",
            save_all=True, append_images=frames[1:], duration=80, quality=70)
    # A hand-made animation whose first frame sits at (4, 2) on a 20 x 11
    # canvas: the rest of the canvas is transparent black.
    small = io.BytesIO()
    Image.fromarray(photo(9, 7, 64)).save(small, format="WEBP", lossless=True)
    fr = webp_payload(small.getvalue())
    small2 = io.BytesIO()
    Image.fromarray(photo(9, 7, 65)).convert("RGBA").save(small2, format="WEBP", quality=70)
    fr2 = webp_payload(small2.getvalue())

    def anim(frame_chunks, x, y, w, h, cw, ch, flags=0x12):
        vp8x = struct.pack("<B3x", flags) + (cw - 1).to_bytes(3, "little") + \
            (ch - 1).to_bytes(3, "little")
        anmf = ((x // 2).to_bytes(3, "little") + (y // 2).to_bytes(3, "little") +
                (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little") +
                (100).to_bytes(3, "little") + b"\x00" + frame_chunks)
        return riff([wchunk(b"VP8X", vp8x), wchunk(b"ANIM", b"\0\0\0\0\0\0"),
                     wchunk(b"ANMF", anmf)])
    add("w_anim_offset.webp", anim(fr, 4, 2, 9, 7, 20, 11), "first frame at (4,2)")
    add("w_anim_offset_lossy.webp", anim(fr2, 10, 4, 9, 7, 20, 11), "lossy+ALPH frame")
    add("w_anim_outside.webp", anim(fr, 14, 2, 9, 7, 20, 11), "frame outside canvas")
    add("w_anim_badsize.webp", anim(fr, 0, 0, 8, 7, 20, 11), "ANMF size != bitstream")
    vp8x_bad = riff([wchunk(b"VP8X", b"\x01\0\0\0" + (96).to_bytes(3, "little") +
                             (60).to_bytes(3, "little"))] + [lossless[12:]])
    add("w_vp8x_reserved.webp", vp8x_bad, "reserved VP8X flag bit")
    # ALPH without the VP8X alpha flag is ignored (even when broken).
    vp8 = webp_payload(lossy)
    noflag = riff([wchunk(b"VP8X", b"\x00\0\0\0" + (96).to_bytes(3, "little") +
                          (60).to_bytes(3, "little")),
                   wchunk(b"ALPH", b"\x03garbage alpha"), vp8])
    add("w_alph_noflag.webp", noflag, "ALPH chunk without the alpha flag")
    add("w_alph_flag.webp", noflag[:20] + b"\x10" + noflag[21:], "broken ALPH with the flag")
    add("w_trailing.webp", lossy + b"trailing bytes after the RIFF payload")
    add("w_stray.webp", riff([vp8 + b"abc"]), "3 stray bytes inside the RIFF payload")
    add("w_exif_noflag.webp", riff([wchunk(b"VP8X", b"\x00\0\0\0" + (96).to_bytes(3, "little") +
                                           (60).to_bytes(3, "little")), vp8,
                                    wchunk(b"EXIF", exif_blob(6))]),
        "EXIF chunk without the EXIF flag", exif_too=True)
    # Damage.
    add_cuts("w_lossy.webp", lossy)
    add_cuts("w_lossless.webp", lossless)
    add("w_garbage.webp", lossy[:30] + bytes(rand((300,), 256, 66).astype(np.uint8)), "")
    add("w_flip.webp", corrupt(lossy, [len(lossy) // 2]), "flipped byte in VP8 data")
    add("w_flip_ll.webp", corrupt(lossless, [len(lossless) // 2]), "flipped byte in VP8L data")
    add("w_riff_only.webp", b"RIFF\x04\x00\x00\x00WEBP", "")
    big = riff([wchunk(b"VP8X", b"\x00\0\0\0" + (16383).to_bytes(3, "little") +
                        (16383).to_bytes(3, "little"))] + [
        wchunk(b"VP8L", b"\x2f" + ((16383) | (16383 << 14)).to_bytes(4, "little") + b"\0" * 20)])
    add("w_bomb.webp", big, "16384 x 16384 canvas", limit=True)


# ---------------------------------------------------------------------- GIF --

def lzw_literal(indices, mcs, end_after=None, trailing_end=True):
    """LZW stream of literal codes only, with clears before the code size
    would grow; optionally an end code after `end_after` pixels."""
    clear, end, size = 1 << mcs, (1 << mcs) + 1, mcs + 1
    nmax = max(1, (1 << size) - clear - 3)
    codes, run = [clear], 0
    for k, v in enumerate(indices):
        if end_after is not None and k == end_after:
            codes.append(end)
        if run == nmax:
            codes.append(clear)
            run = 0
        codes.append(int(v))
        run += 1
    if trailing_end:
        codes.append(end)
    out, acc, nb = bytearray(), 0, 0
    for c in codes:
        acc |= c << nb
        nb += size
        while nb >= 8:
            out.append(acc & 255)
            acc >>= 8
            nb -= 8
    if nb:
        out.append(acc & 255)
    return bytes(out)


def subblocks(data, size=255):
    out = bytearray()
    for i in range(0, len(data), size):
        ch = data[i:i + size]
        out.append(len(ch))
        out += ch
    out.append(0)
    return bytes(out)


def ctable(pal):
    n = max(2, len(pal) // 3)
    bits = max(1, (n - 1).bit_length())
    return bits, bytes(pal) + bytes(3 * (1 << bits) - len(pal))


def gif(sw, sh, gpal=None, frames=(), bg=0, trailer=True):
    out = bytearray(b"GIF89a")
    flags, gp = 0, b""
    if gpal is not None:
        bits, gp = ctable(gpal)
        flags = 0x80 | (bits - 1)
    out += struct.pack("<HHBBB", sw, sh, flags, bg, 0) + gp
    for f in frames:
        if f.get("trns") is not None:
            out += b"!\xf9\x04\x01\x00\x00" + bytes([f["trns"]]) + b"\x00"
        x, y, w, h = f["rect"]
        lflags, lp = (0x40 if f.get("interlace") else 0), b""
        if f.get("lpal") is not None:
            bits, lp = ctable(f["lpal"])
            lflags |= 0x80 | (bits - 1)
        out += b"," + struct.pack("<HHHHB", x, y, w, h, lflags) + lp
        mcs = f.get("mcs", 8)
        out.append(mcs)
        idx = list(f["pixels"])
        if f.get("interlace"):
            rows = [idx[r * w:(r + 1) * w] for r in range(h)]
            order = (list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) +
                     list(range(1, h, 2)))
            idx = [p for r in order for p in rows[r]]
        if "lzw" in f:
            out += f["lzw"]
        else:
            out += subblocks(lzw_literal(idx, mcs, f.get("end_after")))
    if trailer:
        out += b";"
    return bytes(out)


def gif_cases():
    im = Image.fromarray(photo(97, 61, 70))
    pim = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
    g = add_pil("g_pil.gif", pim, "Pillow, interlaced", format="GIF")
    add_pil("g_pil_nointerlace.gif", pim, format="GIF", interlace=False)
    add_pil("g_pil_small.gif", Image.fromarray(photo(5, 5, 71)).convert("P"), format="GIF")
    add_pil("g_pil_l.gif", im.convert("L"), "gray (identity palette -> L)", format="GIF")
    add_pil("g_pil_1x1.gif", Image.fromarray(photo(1, 1, 72)).convert("P"), format="GIF")
    add_pil("g_pil_trns.gif", pim, format="GIF", transparency=5)
    frames = [Image.fromarray(photo(60, 40, k)).convert("P") for k in range(3)]
    add_pil("g_anim.gif", frames[0], "animated: frame 0", format="GIF", save_all=True,
            append_images=frames[1:], duration=100, loop=0)
    add_pil("g_3000x17.gif", Image.fromarray(photo(3000, 17, 73)).convert("P"), format="GIF")

    gp = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
    pal256 = list(rand((768,), 256, 74))
    px = rand((61 * 97,), 256, 75)
    add("g_hand.gif", gif(97, 61, pal256, [dict(rect=(0, 0, 97, 61), pixels=px)]), "")
    add("g_hand_i.gif", gif(97, 61, pal256, [dict(rect=(0, 0, 97, 61), pixels=px,
                                                  interlace=True)]), "interlaced")
    for h in range(1, 10):
        p = rand((3 * h,), 4, 76 + h)
        add("g_i_h%d.gif" % h, gif(3, h, gp, [dict(rect=(0, 0, 3, h), pixels=p, interlace=True,
                                                   mcs=2)]), "interlaced height %d" % h)
    add("g_small_frame.gif", gif(30, 20, gp, [dict(rect=(5, 3, 7, 4), pixels=rand((28,), 4, 80),
                                                   mcs=2)]), "frame smaller than screen")
    add("g_small_frame_trns.gif", gif(30, 20, gp, [dict(rect=(5, 3, 7, 4), trns=2,
                                                        pixels=rand((28,), 4, 81), mcs=2)]),
        "uncovered area gets the transparent index")
    add("g_beyond.gif", gif(10, 8, gp, [dict(rect=(6, 5, 9, 7), pixels=rand((63,), 4, 82),
                                             mcs=2)]), "frame extends past the screen")
    add("g_local.gif", gif(16, 9, gp, [dict(rect=(0, 0, 16, 9), pixels=rand((144,), 16, 83),
                                            lpal=list(rand((48,), 256, 84)), mcs=4)]),
        "local palette")
    add("g_local_identity.gif", gif(16, 9, gp, [dict(rect=(0, 0, 16, 9),
                                                     pixels=rand((144,), 4, 85),
                                                     lpal=[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
                                                     mcs=2)]),
        "identity local palette + global palette")
    add("g_nopal.gif", gif(16, 9, None, [dict(rect=(0, 0, 16, 9), pixels=rand((144,), 256, 86))]),
        "no palette at all (L)")
    add("g_identity_global.gif", gif(16, 9, [0, 0, 0, 1, 1, 1],
                                     [dict(rect=(0, 0, 16, 9), pixels=rand((144,), 256, 87))]),
        "identity global palette, indices past it")
    add("g_beyond_palette.gif", gif(16, 9, gp, [dict(rect=(0, 0, 16, 9),
                                                     pixels=rand((144,), 256, 88))]),
        "indices past a 4-entry palette")
    add("g_zero_frame.gif", gif(6, 4, gp, [dict(rect=(0, 0, 0, 0), pixels=rand((24,), 4, 89),
                                                mcs=2)]), "0x0 frame at 0,0: whole image")
    add("g_zero_frame_x.gif", gif(6, 4, gp, [dict(rect=(2, 0, 0, 3), pixels=[], mcs=2)]),
        "0-wide frame at x=2")
    for mcs in (2, 3, 5, 7, 12):
        add("g_mcs%d.gif" % mcs, gif(20, 10, gp, [dict(rect=(0, 0, 20, 10),
                                                       pixels=rand((200,), 4, 90 + mcs),
                                                       mcs=mcs)]), "min code size %d" % mcs)
    add("g_early_end.gif", gif(20, 10, gp, [dict(rect=(0, 0, 20, 10), pixels=rand((200,), 4, 96),
                                                 mcs=2, end_after=120)]), "end code at pixel 120")
    big = rand((300 * 300,), 256, 97)
    add("g_early_end_big.gif", gif(300, 300, pal256, [dict(rect=(0, 0, 300, 300), pixels=big,
                                                           end_after=20000)]),
        "end code in the first 64 KiB of a larger stream (Pillow skips it)")
    add("g_early_end_big_late.gif", gif(300, 300, pal256, [dict(rect=(0, 0, 300, 300),
                                                                pixels=big, end_after=89000)]),
        "end code in the last 64 KiB chunk")
    two = gif(12, 6, gp, [dict(rect=(0, 0, 12, 6), pixels=rand((72,), 4, 98), mcs=2),
                          dict(rect=(2, 2, 3, 3), pixels=rand((9,), 4, 99), mcs=2)])
    add("g_two_frames.gif", two, "hand-made 2 frames")
    ext = bytearray(gif(8, 4, gp, [dict(rect=(0, 0, 8, 4), pixels=rand((32,), 4, 100), mcs=2)]))
    k = 6 + 7 + 12
    ins = (b"!\xfe\x05hello\x03abc\x00" + b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00" +
           b"!\x01\x02ab\x00" + b"\x00\x00")
    add("g_extensions.gif", bytes(ext[:k]) + ins + bytes(ext[k:]), "comment/app/plain ext, junk")
    add("g_bad_gce.gif", bytes(ext[:k]) + b"!\xf9\x02\x01\x00\x00" + bytes(ext[k:]), "GCE of 2")
    add("g_noimage.gif", bytes(ext[:k]) + b";", "no image")
    add_cuts("g_pil.gif", g)
    add_cuts("g_hand.gif", gif(30, 20, pal256, [dict(rect=(0, 0, 30, 20),
                                                     pixels=rand((600,), 256, 101))]))
    lz = bytearray(subblocks(lzw_literal(rand((200,), 4, 102), 2)))
    lz[3] = 0xFF
    add("g_badcode.gif", gif(20, 10, gp, [dict(rect=(0, 0, 20, 10), pixels=[], mcs=2,
                                               lzw=bytes(lz))]), "broken LZW code")
    add("g_bomb.gif", gif(65535, 65535, gp, [dict(rect=(0, 0, 2, 2), pixels=[0, 1, 2, 3],
                                                  mcs=2)]), "65535 x 65535 screen", limit=True)
    add("g_header_only.gif", b"GIF89a\x10\x00\x10\x00\x00\x00\x00", "")


# -------------------------------------------------------------------- other --

def other_cases():
    add("x_empty.bin", b"", "empty file")
    add("x_garbage.bin", bytes(rand((1000,), 256, 110).astype(np.uint8)), "random bytes")
    add("x_text.txt", b"hello world\n" * 10, "text")
    add("x_jpeg_magic.jpg", b"\xff\xd8\xff", "JPEG magic only")
    add("x_gif_magic.gif", b"GIF89a", "GIF magic only")
    bmp = io.BytesIO()
    Image.fromarray(photo(8, 8, 111)).save(bmp, format="BMP")
    CASES.append({"file": "x_bmp.bmp", "opts": [], "expect": "error",
                  "note": "BMP: Pillow reads it, vtok does not support it",
                  "pillow": "(decodes)"})
    with open(os.path.join(OUT, "x_bmp.bmp"), "wb") as f:
        f.write(bmp.getvalue())


def main():
    global OUT, HELPER
    args = sys.argv[1:]
    if "--helper" in args:
        i = args.index("--helper")
        HELPER = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    OUT = args[0]
    os.makedirs(OUT, exist_ok=True)
    jpeg_cases()
    png_cases()
    webp_cases()
    gif_cases()
    other_cases()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(CASES, f, indent=1)
    kinds = {}
    for c in CASES:
        kinds[c["expect"]] = kinds.get(c["expect"], 0) + 1
    print("make_corpus: %d checks in %s (%s)%s" % (
        len(CASES), OUT, ", ".join("%d %s" % (v, k) for k, v in sorted(kinds.items())),
        "" if HELPER else "; no --helper: libjpeg-only JPEG cases skipped"))


if __name__ == "__main__":
    main()
