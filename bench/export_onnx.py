#!/usr/bin/env python3
"""Export a vision model folder (config.json + *.safetensors) to ONNX, for the
ONNX Runtime peer of bench/bench_encoders.py.

    /usr/bin/python3 bench/export_onnx.py MODEL_DIR OUT.onnx [--opset 17] [--force]

The exported graph is the PyTorch reference (tests/ref/hf_vision.py) loaded
with hf_vision.load_model_dir(), i.e. the SAME weights vtok reads from the
folder, float32, eager attention, traced by torch.onnx.export:

    input  pixel_values       float32 [batch, 3, S, S]   (batch is dynamic)
    output last_hidden_state  float32 [batch, T, D]

Opset 17 (the highest torch 1.13 exports; LayerNorm becomes one
LayerNormalization node); falls back to lower opsets if the installed torch
cannot.  The export is skipped when OUT.onnx exists and its sidecar
OUT.onnx.json records the same source weights (size + mtime) and opset.
"""

import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "ref"))
import hf_vision as hv  # noqa: E402


class LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values)["last_hidden_state"]


def source_stamp(model_dir):
    st = []
    for n in sorted(os.listdir(model_dir)):
        if n.endswith(".safetensors") or n == "config.json":
            s = os.stat(os.path.join(model_dir, n))
            st.append([n, s.st_size, int(s.st_mtime)])
    return st


def export(model_dir, out, opset=17, force=False, log=sys.stderr):
    """Export unless up to date; returns the sidecar dict (opset, torch version, ...)."""
    meta_path = out + ".json"
    stamp = source_stamp(model_dir)
    if not force and os.path.exists(out) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("source") == stamp and meta.get("requested_opset") == opset:
            return meta
    model = hv.load_model_dir(model_dir).eval()
    size = model.vtok_config.image_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    wrapped = LastHidden(model).eval()
    tmp = out + ".tmp"
    t0 = time.perf_counter()
    used = None
    err = None
    for o in range(opset, 12, -1):
        try:
            with torch.no_grad():
                torch.onnx.export(
                    wrapped, (x,), tmp, opset_version=o, do_constant_folding=True,
                    input_names=["pixel_values"], output_names=["last_hidden_state"],
                    dynamic_axes={"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}})
            used = o
            break
        except Exception as e:  # unsupported opset in this torch: try the next lower one
            err = e
            print("export_onnx: opset %d failed: %s" % (o, str(e).splitlines()[0]), file=log)
    if used is None:
        raise RuntimeError("torch.onnx.export failed: %s" % err)
    os.replace(tmp, out)
    meta = {"source": stamp, "requested_opset": opset, "opset": used, "torch": torch.__version__,
            "export_s": round(time.perf_counter() - t0, 1), "model_dir": os.path.abspath(model_dir)}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    print("export_onnx: %s -> %s (opset %d, %.1f s)" % (model_dir, out, used, meta["export_s"]), file=log)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--force", action="store_true", help="export even if OUT is up to date")
    a = ap.parse_args()
    print(json.dumps(export(a.model_dir, a.out, a.opset, a.force)))


if __name__ == "__main__":
    main()
