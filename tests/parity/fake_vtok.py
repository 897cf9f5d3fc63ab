#!/usr/bin/env python3
"""Stand-in for the `vtok` CLI built on the PyTorch reference (tests/ref).

It exists only to self-check the harnesses (run_parity.py --self-check,
run_e2e.py --self-check) while the C engine is not there or not trusted:

    fake_vtok.py encode --model DIR --pixels X.npy [--layers all|I,J,..] --out DIR
    fake_vtok.py info --model DIR

It follows the CLI contract the harnesses test: float32 .npy outputs
(last_hidden_state, pooler_output / image_embeds when the model has them,
hidden_states_NN for the requested layers, negative layers counted from the
end), and on any error exactly one line on stderr and exit status 1.

VTOK_FAKE_FAULT (for negative self-checks) injects a defect:
    perturb:<file>:<rel>   add rel*max|x| to one element of <file>
    drop:<file>            do not write <file>
    extra:<file>           write an extra <file> (copy of last_hidden_state[:, 0])
    shape:<file>           write <file> with its first token dropped / reshaped
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ref"))


class CliError(Exception):
    pass


def die(msg):
    sys.stderr.write("vtok: error: %s\n" % " ".join(str(msg).split()))
    sys.exit(1)


def load_model(path):
    import hf_vision as hv
    import safetensors_io as sio
    if not os.path.exists(path):
        raise CliError("%s: no such file or directory" % path)
    cfg_path = path if path.endswith(".json") else os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise CliError("%s: config.json not found" % path)
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except ValueError as e:
        raise CliError("config.json: malformed JSON: %s" % e)
    try:
        model = hv.build_model(cfg)
    except (hv.ConfigError, ValueError) as e:
        raise CliError(str(e))
    try:
        tensors = sio.read_model(os.path.dirname(cfg_path))
    except sio.SafetensorsError as e:
        raise CliError(str(e))
    try:
        hv.load_state(model, tensors)
    except (KeyError, ValueError) as e:
        raise CliError(str(e).strip("'\""))
    return model, cfg


def cmd_info(a):
    import hf_vision as hv
    model, cfg = load_model(a.model)
    vc = model.vtok_config
    print("architecture: %s" % model.vtok_arch)
    print("arch: %s" % model.vtok_family)
    print("model_type: %s" % cfg.get("model_type"))
    print("hidden_size: %d" % vc.hidden_size)
    print("n_layers: %d" % vc.num_hidden_layers)
    print("n_heads: %d" % vc.num_attention_heads)
    print("patch_size: %d" % vc.patch_size)
    print("image_size: %d" % vc.image_size)
    print("n_prefix_tokens: %d" % hv.num_prefix_tokens(model))
    print("layer_norm_eps: %g" % vc.layer_norm_eps)


def parse_layers(spec, n_layers):
    if spec in (None, "", "none"):
        return []
    if spec == "all":
        return list(range(n_layers + 1))
    out = []
    for tok in spec.split(","):
        try:
            i = int(tok)
        except ValueError:
            raise CliError("--layers: bad layer index %r" % tok)
        j = i + n_layers + 1 if i < 0 else i
        if j < 0 or j > n_layers:
            raise CliError("--layers: layer %d out of range for a model with %d layers" % (i, n_layers))
        if j not in out:
            out.append(j)
    return out


def cmd_encode(a):
    import hf_vision as hv
    model, _ = load_model(a.model)
    vc = model.vtok_config
    if not os.path.isfile(a.pixels):
        raise CliError("%s: no such file" % a.pixels)
    try:
        x = np.load(a.pixels, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is a format error
        raise CliError("%s: not a valid .npy file (%s)" % (a.pixels, str(e).splitlines()[0] if str(e) else "corrupt"))
    if x.dtype != np.float32:
        raise CliError("%s: pixels must be float32, got %s" % (a.pixels, x.dtype))
    if x.ndim != 4:
        raise CliError("%s: pixels must be a 4-D array [n, c, h, w], got shape %s" % (a.pixels, list(x.shape)))
    n, c, h, w = x.shape
    if c != vc.num_channels:
        raise CliError("pixels have %d channels, the model expects %d" % (c, vc.num_channels))
    if n < 1 or h < vc.patch_size or w < vc.patch_size:
        raise CliError("pixels shape %s is too small" % list(x.shape))
    if not hv.any_size(model) and (h != vc.image_size or w != vc.image_size):
        raise CliError("input size %dx%d does not match the model image size %dx%d"
                       % (h, w, vc.image_size, vc.image_size))
    keep = parse_layers(a.layers, vc.num_hidden_layers)
    out = hv.run(model, x)
    os.makedirs(a.out, exist_ok=True)
    files = {k: v for k, v in out.items() if not k.startswith("hidden_states_")}
    for i in keep:
        files["hidden_states_%02d" % i] = out["hidden_states_%02d" % i]
    fault = os.environ.get("VTOK_FAKE_FAULT", "")
    if fault:
        kind, _, rest = fault.partition(":")
        target, _, arg = rest.partition(":")
        if kind == "perturb" and target in files:
            v = files[target].copy()
            v.flat[v.size // 2] += float(arg) * np.abs(v).max()
            files[target] = v
        elif kind == "drop":
            files.pop(target, None)
        elif kind == "extra":
            files[target] = out["last_hidden_state"][:, 0].copy()
        elif kind == "shape" and target in files:
            v = files[target]
            files[target] = v[:, 1:] if v.ndim == 3 else v[:, :-1]
    for k, v in files.items():
        np.save(os.path.join(a.out, k + ".npy"), np.ascontiguousarray(v, dtype=np.float32))


class Parser(argparse.ArgumentParser):
    def error(self, message):
        die("bad command line: %s" % message)


def main():
    ap = Parser(prog="vtok")
    sub = ap.add_subparsers(dest="cmd")
    e = sub.add_parser("encode")
    e.add_argument("--model", required=True)
    e.add_argument("--pixels", required=True)
    e.add_argument("--layers", default=None)
    e.add_argument("--out", required=True)
    e.add_argument("--threads", type=int, default=1)
    i = sub.add_parser("info")
    i.add_argument("--model", required=True)
    a = ap.parse_args()
    try:
        if a.cmd == "encode":
            cmd_encode(a)
        elif a.cmd == "info":
            cmd_info(a)
        else:
            die("usage: vtok encode|info ...")
    except CliError as err:
        die(err)


if __name__ == "__main__":
    main()
