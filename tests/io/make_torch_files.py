"""Write PyTorch checkpoints for tests/io/check_torch.py, good and malicious.

Good files are made with the real torch.save, in both the zip format and the
legacy one (_use_new_zipfile_serialization=False), plus a DEFLATE-
recompressed copy and a Zip64 rewrite of each zip, so the C reader is tested against what torch writes, not
against our idea of it. Each good file NAME.pt comes with NAME.expect/ holding
one .npy per flattened tensor name (bfloat16 stored as its uint16 bits, bool as
uint8) and NAME.expect/dtypes.json mapping name -> safetensors dtype.

Malicious files are hand-made pickles inside a torch-shaped zip (GLOBAL
os.system + REDUCE, builtins.eval via STACK_GLOBAL, an unknown class, a memo
index never stored, a tensor past its storage), truncations of good files at
many cut points, a zip entry declaring a huge size, and a bad data.pkl CRC.
They are listed in bad.json; each must fail with one clean line.

Usage: make_torch_files.py OUTDIR
"""

import collections
import io
import json
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch


def flatten(obj, prefix, out):
    if isinstance(obj, torch.Tensor):
        out[prefix or "tensor"] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, "%s.%s" % (prefix, k) if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, "%s.%d" % (prefix, i) if prefix else str(i), out)


ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
            torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def write_expect(obj, d):
    os.makedirs(d, exist_ok=True)
    flat = {}
    flatten(obj, "", flat)
    dtypes = {}
    for name, t in flat.items():
        t = t.detach().contiguous()
        dtypes[name] = ST_DTYPE[t.dtype]
        if t.dtype == torch.bfloat16:
            a = t.view(torch.int16).numpy().view(np.uint16)
        elif t.dtype == torch.bool:
            a = t.numpy().astype(np.uint8)
        else:
            a = t.numpy()
        np.save(os.path.join(d, name + ".npy"), a)
    with open(os.path.join(d, "dtypes.json"), "w") as f:
        json.dump(dtypes, f, indent=1, sort_keys=True)


def state_dicts():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.LayerNorm(3))
    with torch.no_grad():
        for p in lin.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    base = torch.randn(4, 6, generator=g)
    every = collections.OrderedDict()
    every["f32"] = torch.randn(2, 3, generator=g)
    every["f16"] = torch.randn(3, 2, generator=g).half()
    every["bf16"] = torch.randn(5, generator=g).bfloat16()
    every["f64"] = torch.randn(2, 2, generator=g).double()
    every["i64"] = torch.arange(-3, 4, dtype=torch.int64)
    every["i32"] = torch.arange(6, dtype=torch.int32).reshape(2, 3) - 2
    every["i16"] = torch.tensor([-300, 7], dtype=torch.int16)
    every["i8"] = torch.tensor([-5, 0, 9], dtype=torch.int8)
    every["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    every["bool"] = torch.tensor([True, False, True])
    views = {
        "base": base,
        "t": base.t(),                       # transposed, shares base's storage
        "slice": base[1:3, 2:5],             # offset + row stride
        "step": base[:, ::2],                # non-unit inner stride
        "row": base[2],                      # contiguous with an offset
        "expand": torch.ones(3).expand(2, 3),  # stride 0
        "expand_rows": torch.arange(4.0).expand(512, 4),  # stride 0, 8 KB from 16 bytes
        "perm": torch.randn(2, 3, 4, generator=g).permute(2, 0, 1),
    }
    views["t_again"] = views["t"]  # the same (non-contiguous) tensor object twice: memo-shared
    shared = {"w": torch.randn(2, 2, generator=g), "e": torch.ones(2).expand(3, 2)}
    odd = {
        "scalar": torch.tensor(3.5),
        "scalar_i": torch.tensor(7),
        "empty": torch.zeros(0, 4),
        "empty_half": torch.zeros(3, 0).half(),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
        "frozen": torch.nn.Parameter(torch.randn(3, generator=g), requires_grad=False),
        "list": [torch.ones(2), torch.zeros(1), 5, "text"],
        "tuple": (torch.full((2,), 2.0),),
        "int_keys": {0: torch.ones(1), 1: torch.zeros(1)},
        "leaf_int": 12, "leaf_str": "hello", "leaf_none": None, "leaf_float": 0.5,
    }
    return {
        "every_dtype": every,
        "module": lin.state_dict(),          # OrderedDict with _metadata (BUILD)
        "nested": {"model": lin.state_dict(), "epoch": 3, "optimizer": {"lr": 0.1}},
        "views": views,
        "odd": odd,
        "bare_tensor": torch.arange(5, dtype=torch.float32),
        # one dict object under two keys (and twice more, nested): torch.load gives
        # every path, so the flattening walks it once per path
        "shared_container": {"model": shared, "ema": shared, "both": [shared, shared]},
    }


def recompress(src, dst):
    """The same archive with every entry DEFLATEd (torch reads these too)."""
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info.filename))


def zip64_rewrite(src, dst):
    """The same archive (STORED) with Zip64 everywhere: central directory sizes
    and offsets saturated at 0xFFFFFFFF with the real values in Zip64 extra
    fields, and a Zip64 end record + locator, as torch writes files > 4 GiB."""
    with zipfile.ZipFile(src) as zi:
        items = [(i.filename, zi.read(i.filename)) for i in zi.infolist()]
    out = bytearray()
    cd = bytearray()
    for name, data in items:
        nb = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        off = len(out)
        pad = (-(len(out) + 30 + len(nb) + 4)) % 64  # keep data 64-byte aligned
        extra = struct.pack("<HH", 0x4642, pad) + b"Z" * pad
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, len(data),
                           len(data), len(nb), len(extra)) + nb + extra + data
        z64 = struct.pack("<HHQQQ", 1, 24, len(data), len(data), off)
        cd += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, crc,
                          0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(z64), 0, 0, 0, 0,
                          0xFFFFFFFF) + nb + z64
    cd_off = len(out)
    out += cd
    z64_off = len(out)
    out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(items), len(items),
                       len(cd), cd_off)
    out += struct.pack("<4sIQI", b"PK\x06\x07", 0, z64_off, 1)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                       0xFFFFFFFF, 0)
    with open(dst, "wb") as f:
        f.write(out)


# ---------------------------------------------------------------- bad files --

def torch_zip(pkl, extra=None, name="archive"):
    """A torch-shaped zip around a handmade data.pkl."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr(name + "/data.pkl", pkl)
        z.writestr(name + "/version", "3\n")
        for k, v in (extra or {}).items():
            z.writestr(name + "/data/" + k, v)
    return b.getvalue()


def rebuild_v2(key, numel, size, stride, offset=0):
    """Pickle ops for _rebuild_tensor_v2 on FloatStorage `key` (protocol 2)."""
    def ints(v):
        return b"(" + b"".join(b"J" + struct.pack("<i", x) for x in v) + b"t"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
            + ustr(key) + ustr("cpu") + b"J" + struct.pack("<i", numel) + b"tQ"
            + b"J" + struct.pack("<i", offset) + ints(size) + ints(stride) + b"\x89)tR")


def ustr(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def memo_shared(levels, keylen, leaf):
    """d_0 = leaf; d_i = {A: d_(i-1), B: d_(i-1)}, each d_i and both keys stored
    once in the memo and fetched with LONG_BINGET: 2^levels paths, names of
    levels * (keylen + 1) bytes, from a pickle of a few hundred bytes."""
    get = lambda i: b"j" + struct.pack("<I", i)
    put = lambda i: b"r" + struct.pack("<I", i)
    p = b"\x80\x02" + ustr("a" * keylen) + put(0) + b"0" + ustr("b" * keylen) + put(1) + b"0"
    p += leaf + put(2)
    for i in range(1, levels + 1):
        p += b"0}(" + get(0) + get(i + 1) + get(1) + get(i + 1) + b"u" + put(i + 2)
    return p + b"."


def bad_files(good_zip, good_legacy):
    bad = {}
    # Finding 6: small files that flatten to huge amounts. torch.save of a
    # stride-0 view writes the 1-element storage and the view's size: 1 GB
    # (16 GB) from under 1 KB.
    for fn, n, legacy in (("expand_1g.pt", 1 << 28, False), ("expand_16g.pth", 1 << 32, False),
                          ("expand_1g_legacy.pth", 1 << 28, True)):
        b = io.BytesIO()
        torch.save({"w": torch.zeros(1).expand(n)}, b,
                   _use_new_zipfile_serialization=not legacy)
        bad[fn] = (b.getvalue(), "over the limit")
    # Overlapping strides (as_strided): 2^26 x 4 view of 4 floats, rows overlapping.
    bad["overlap_strides.pt"] = (
        torch_zip(b"\x80\x02}X\x01\x00\x00\x00a" + rebuild_v2("0", 4, [1 << 26, 4], [0, 1]) +
                  b"s.", {"0": b"\0" * 16}),
        "over the limit")
    # Dicts shared through the memo: 2^21 paths with 4 KB names (8 GB of
    # names), 2^24 paths with short ones, and 2^12 paths to one contiguous
    # 1 MB tensor (4 GB of output that `convert` would write).
    leaf = rebuild_v2("0", 1, [1], [1])
    bad["memo_shared_names.pt"] = (torch_zip(memo_shared(21, 190, leaf), {"0": b"\0" * 4}),
                                   "shared through the pickle memo")
    bad["memo_shared_paths.pt"] = (torch_zip(memo_shared(24, 1, leaf), {"0": b"\0" * 4}),
                                   "shared through the pickle memo")
    bad["memo_shared_bytes.pt"] = (
        torch_zip(memo_shared(12, 1, rebuild_v2("0", 1 << 18, [1 << 18], [1])),
                  {"0": b"\0" * (1 << 20)}),
        "over the limit")
    bad["global_os_system.pt"] = (
        torch_zip(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03."),
        "refusing pickle global 'os.system'")
    bad["stack_global_eval.pt"] = (
        torch_zip(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R."),
        "refusing pickle global 'builtins.eval'")
    bad["unknown_class.pt"] = (
        torch_zip(b"\x80\x02cargparse\nNamespace\n)\x81."),
        "refusing pickle global 'argparse.Namespace'")
    bad["numpy_global.pt"] = (
        torch_zip(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n)R."),
        "refusing pickle global 'numpy.core.multiarray._reconstruct'")
    bad["memo_out_of_range.pt"] = (torch_zip(b"\x80\x02}h\x07."), "memo index 7")
    bad["stack_underflow.pt"] = (torch_zip(b"\x80\x02s."), "underflow")
    bad["call_storage.pt"] = (torch_zip(b"\x80\x02ctorch\nFloatStorage\n)R."), "refusing to call")
    # A tensor whose extent runs past its 8-byte storage.
    pid = (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
           b"X\x03\x00\x00\x00cpuK\x02tQ")
    bad["tensor_past_storage.pt"] = (
        torch_zip(b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n(" + pid +
                  b"K\x01K\x04\x85K\x01\x85\x89)tRs.", {"0": b"\0" * 8}),
        "storage has")
    bad["missing_storage.pt"] = (
        torch_zip(b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n(" + pid +
                  b"K\x00K\x02\x85K\x01\x85\x89)tRs."),
        "has no zip entry")
    bad["deep_nesting.pt"] = (torch_zip(b"\x80\x02" + b"]" * 70 + b"a" * 69 + b"."), "deeper")
    bad["not_a_checkpoint.pth"] = (b"hello, this is not a checkpoint\n", "not a PyTorch checkpoint")

    # Huge declared size: the central directory says data.pkl is 1 TB, STORED.
    z = bytearray(torch_zip(b"\x80\x02}."))
    cd = z.rfind(b"PK\x01\x02", 0, z.rfind(b"PK\x05\x06"))
    first = z.find(b"PK\x01\x02")
    struct.pack_into("<II", z, first + 20, 0xFFFFFFF0, 0xFFFFFFF0)
    assert cd >= first
    bad["zip_huge_size.pt"] = (bytes(z), "past the end")
    # Same, DEFLATE, with a size no deflate stream could reach.
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as zz:
        zz.writestr("archive/data.pkl", b"\x80\x02}.")
    z = bytearray(b.getvalue())
    first = z.find(b"PK\x01\x02")
    struct.pack_into("<I", z, first + 24, 0xFFFFFFF0)
    bad["zip_deflate_bomb.pt"] = (bytes(z), "impossible")
    # Wrong CRC on data.pkl.
    z = bytearray(torch_zip(b"\x80\x02}."))
    first = z.find(b"PK\x01\x02")
    struct.pack_into("<I", z, first + 16, 0x12345678)
    bad["zip_bad_crc.pt"] = (bytes(z), "CRC mismatch")

    # Truncations at many cut points (every cut must fail cleanly, never crash).
    for label, data in (("zip", good_zip), ("legacy", good_legacy)):
        cuts = sorted(set([1, 2, 3, 4, 5, 8, 13, 20, 30, 64, 100, 200] +
                          [len(data) * i // 23 for i in range(1, 23)] +
                          [len(data) - 1, len(data) - 2, len(data) - 10, len(data) - 22]))
        for c in cuts:
            if 0 < c < len(data):
                bad["trunc_%s_%06d.pt" % (label, c)] = (data[:c], "")
    return bad


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    good = []
    for name, obj in state_dicts().items():
        zp = os.path.join(out, name + ".pt")
        torch.save(obj, zp)
        lp = os.path.join(out, name + "_legacy.pth")
        torch.save(obj, lp, _use_new_zipfile_serialization=False)
        dp = os.path.join(out, name + "_deflate.bin")
        recompress(zp, dp)
        z64 = os.path.join(out, name + "_zip64.ckpt")
        zip64_rewrite(zp, z64)
        for p in (zp, lp, dp, z64):
            write_expect(obj, p + ".expect")
            good.append(os.path.basename(p))
    # torch.save to a SEED-like {"model": state_dict} .pth, and a file whose
    # name says nothing (found by content).
    sd = {"model": state_dicts()["module"]}
    for fn in ("seed_like.pth", "by_content.weights"):
        torch.save(sd, os.path.join(out, fn))
        write_expect(sd, os.path.join(out, fn + ".expect"))
        good.append(fn)

    # A modest broadcast, as torch.save writes x.expand(...): 4 MB from 32 bytes
    # (under the expansion floor), in both formats.
    ex = {"pos": torch.arange(8.0).expand(1 << 17, 8)}
    for fn, z in (("expand_modest.pt", True), ("expand_modest_legacy.pth", False)):
        torch.save(ex, os.path.join(out, fn), _use_new_zipfile_serialization=z)
        write_expect(ex, os.path.join(out, fn + ".expect"))
        good.append(fn)

    with open(os.path.join(out, "views.pt"), "rb") as f:
        gz = f.read()
    with open(os.path.join(out, "views_legacy.pth"), "rb") as f:
        gl = f.read()
    bad = bad_files(gz, gl)
    for fn, (data, _) in bad.items():
        with open(os.path.join(out, fn), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "bad.json"), "w") as f:
        json.dump({fn: msg for fn, (_, msg) in bad.items()}, f, indent=1, sort_keys=True)
    with open(os.path.join(out, "good.json"), "w") as f:
        json.dump(sorted(good), f, indent=1)
    print("wrote %d good and %d bad files to %s" % (len(good), len(bad), out))


if __name__ == "__main__":
    main()
