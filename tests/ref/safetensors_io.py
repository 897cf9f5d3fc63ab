"""Minimal, dependency-free safetensors reader/writer (numpy + torch only).

Format (https://github.com/huggingface/safetensors, "Format" section):

    [8 bytes]  N, unsigned little-endian u64: length of the JSON header
    [N bytes]  JSON object, UTF-8:
                 {"__metadata__": {"format": "pt"},           (optional, str->str)
                  "<tensor name>": {"dtype": "F32", "shape": [d0, d1, ...],
                                    "data_offsets": [begin, end]}, ...}
               padded with spaces so that 8 + N is a multiple of 8
    [rest]     the byte buffer; data_offsets are relative to its start,
               little-endian, row-major, no gaps required but allowed.

The writer here orders tensors by element size (largest first), then name,
and packs them back to back, so every tensor is aligned to its element size.
The reader validates everything a robust loader should reject (it is also the
loader of tests/parity/fake_vtok.py, the stand-in CLI used to self-check the
harnesses), raising SafetensorsError with a one-line message.

Sharded checkpoints: model-0000K-of-0000N.safetensors plus
model.safetensors.index.json = {"metadata": {"total_size": bytes},
                                "weight_map": {name: file}}.
"""

import json
import os
import struct

import numpy as np
import torch

# dtype name -> (torch dtype, bytes per element)
DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
TORCH_TO_NAME = {v[0]: k for k, v in DTYPES.items()}

MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    pass


def tensor_bytes(t):
    """Raw little-endian bytes of a torch tensor (any dtype in DTYPES)."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if t.dtype == torch.bool:
        return t.numpy().astype(np.uint8).tobytes()
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def build_file_bytes(entries, metadata=None):
    """entries: list of (name, dtype_name, shape, raw_bytes). Returns file bytes.

    Does no validation on purpose: tests use it to build broken files too.
    """
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    blobs = []
    for name, dt, shape, raw in entries:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    return struct.pack("<Q", len(hb)) + hb + b"".join(blobs)


def write_file(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor (already in the storage dtype)."""
    entries = []
    # like the official writer: larger alignment first, then by name, so that
    # every tensor starts at a multiple of its element size
    for name in sorted(tensors, key=lambda n: (-tensors[n].element_size(), n)):
        t = tensors[name]
        if t.dtype not in TORCH_TO_NAME:
            raise SafetensorsError("unsupported dtype %s for %s" % (t.dtype, name))
        entries.append((name, TORCH_TO_NAME[t.dtype], tuple(t.shape), tensor_bytes(t)))
    data = build_file_bytes(entries, {"format": "pt"} if metadata is None else metadata)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def write_model(folder, tensors, n_shards=1):
    """Write model.safetensors, or n_shards files plus the index json."""
    os.makedirs(folder, exist_ok=True)
    for fn in os.listdir(folder):
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(folder, fn))
    if n_shards <= 1:
        write_file(os.path.join(folder, "model.safetensors"), tensors)
        return ["model.safetensors"]
    names = sorted(tensors)
    # split by cumulative size, keeping every shard non-empty
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    shards = [[] for _ in range(n_shards)]
    acc = 0
    for i, (n, s) in enumerate(zip(names, sizes)):
        k = min(n_shards - 1, acc * n_shards // max(total, 1))
        remaining = len(names) - i
        empty_after = sum(1 for j in range(k + 1, n_shards) if not shards[j])
        if remaining <= empty_after:
            k = next(j for j in range(k + 1, n_shards) if not shards[j])
        shards[k].append(n)
        acc += s
    files = []
    weight_map = {}
    for k, group in enumerate(shards):
        fn = "model-%05d-of-%05d.safetensors" % (k + 1, n_shards)
        write_file(os.path.join(folder, fn), {n: tensors[n] for n in group})
        files.append(fn)
        for n in group:
            weight_map[n] = fn
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    files.append("model.safetensors.index.json")
    return files


def read_file(path):
    """Read and validate one .safetensors file. Returns dict name -> torch tensor."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SafetensorsError("%s: cannot read: %s" % (path, e.strerror))
    base = os.path.basename(path)
    if len(data) < 8:
        raise SafetensorsError("%s: truncated file (%d bytes, no header length)" % (base, len(data)))
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or n > len(data) - 8:
        raise SafetensorsError("%s: header length %d exceeds file size %d" % (base, n, len(data)))
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SafetensorsError("%s: bad JSON header: %s" % (base, str(e).splitlines()[0]))
    if not isinstance(header, dict):
        raise SafetensorsError("%s: bad JSON header: not an object" % base)
    buf = memoryview(data)[8 + n:]
    out = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise SafetensorsError("%s: tensor %s: bad header entry" % (base, name))
        dt = info.get("dtype")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if dt not in DTYPES:
            raise SafetensorsError("%s: tensor %s: unsupported dtype %r" % (base, name, dt))
        if (not isinstance(shape, list) or
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise SafetensorsError("%s: tensor %s: bad shape %r" % (base, name, shape))
        if (not isinstance(offs, list) or len(offs) != 2 or
                not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise SafetensorsError("%s: tensor %s: bad data_offsets %r" % (base, name, offs))
        b, e = offs
        if b < 0 or e < b or e > len(buf):
            raise SafetensorsError("%s: tensor %s: data_offsets [%d, %d] out of range (data is %d bytes)"
                                   % (base, name, b, e, len(buf)))
        tdt, isz = DTYPES[dt]
        numel = 1
        for d in shape:
            numel *= d
        if numel * isz != e - b:
            raise SafetensorsError("%s: tensor %s: size mismatch: dtype %s shape %s needs %d bytes, "
                                   "data_offsets span %d" % (base, name, dt, shape, numel * isz, e - b))
        spans.append((b, e, name))
        raw = bytes(buf[b:e])
        if tdt == torch.bfloat16:
            arr = np.frombuffer(raw, dtype="<i2").copy()
            t = torch.from_numpy(arr).view(torch.bfloat16)
        elif tdt == torch.bool:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).copy()).to(torch.bool)
        else:
            npdt = np.dtype(torch.empty(0, dtype=tdt).numpy().dtype).newbyteorder("<")
            t = torch.from_numpy(np.frombuffer(raw, dtype=npdt).astype(npdt.newbyteorder("=")).copy())
        out[name] = t.reshape(shape)
    spans = sorted(s for s in spans if s[1] > s[0])
    end, prev = 0, None
    for b, e, name in spans:
        if prev is not None and b < end:
            raise SafetensorsError("%s: tensors %s and %s: overlapping data_offsets" % (base, prev, name))
        if e > end:
            end, prev = e, name
    return out


def read_model(folder):
    """All tensors of a model folder (single file or sharded via the index)."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(idx):
        try:
            with open(idx) as f:
                index = json.load(f)
            wm = index["weight_map"]
            if not isinstance(wm, dict):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise SafetensorsError("model.safetensors.index.json: bad index file")
        out = {}
        for fn in sorted(set(wm.values())):
            part = read_file(os.path.join(folder, fn))
            for k, v in part.items():
                if k in out:
                    raise SafetensorsError("%s: tensor %s: defined twice" % (fn, k))
                out[k] = v
        for k, fn in wm.items():
            if k not in out:
                raise SafetensorsError("%s: tensor %s listed in the index is missing" % (fn, k))
        return out
    if os.path.isfile(single):
        return read_file(single)
    raise SafetensorsError("%s: no model.safetensors or model.safetensors.index.json" % folder)
