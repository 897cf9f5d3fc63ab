#!/usr/bin/env python3
"""vtok vs the PyTorch reference, through the CLI.

    run_parity.py --vtok PATH --work DIR [--only NAME,...] [--tol 1e-5]
    run_parity.py --self-check --work DIR

1. Generates (or reuses, cached by a hash of the generator sources) the tiny
   random HF model folders, inputs and reference outputs with
   tests/ref/make_models.py under DIR/ref.
2. For every model and input runs
       PATH encode --model MODELDIR --pixels PIX.npy --layers all --out OUTDIR
   and compares every file the reference produced (last_hidden_state.npy,
   pooler_output.npy, image_embeds.npy where the model has them,
   hidden_states_00.npy .. hidden_states_NN.npy) with
       max|actual - expected| / max|expected| <= tol   (default 1e-5)
   Fails on a non-zero exit, a missing file, a wrong dtype/shape, a
   non-finite value, an excess error, and on any extra .npy file (in
   particular a pooler_output/image_embeds file for models without one).
3. Runs `--layers 0,-1` on a few cases and checks that exactly
   hidden_states_00 and hidden_states_<L> (L = number of layers, -1 written
   under its non-negative index) appear besides the non-layer outputs.
4. Position-rule swap (DINOv2): copies of the dinov2 and dinov2_reg folders
   with config.json "vtok_pos_interpolation" set to the other rule must
   miss the reference on a non-native input by far more than tol (the two
   rules really differ and vtok reads the key), and an unknown value must be
   refused with a message naming the key.
Prints a table (model, input, worst relative error per output) and exits
non-zero on any failure.

--self-check runs the harness against tests/parity/fake_vtok.py (the
reference behind the same CLI): the clean run must pass, and runs with
injected defects (a 5e-5 relative perturbation, a missing file, an extra
pooler file, a wrong shape, extra layer files) must each be caught.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))

FAKE = os.path.join(HERE, "fake_vtok.py")
NON_LAYER = ("last_hidden_state", "pooler_output", "image_embeds")


def vtok_cmd(path):
    if path.endswith(".py"):
        return [sys.executable, path]
    return [path]


def rel_err(a, e):
    a = np.asarray(a, np.float64)
    e = np.asarray(e, np.float64)
    den = float(np.max(np.abs(e))) if e.size else 0.0
    num = float(np.max(np.abs(a - e))) if e.size else 0.0
    return num / den if den > 0 else num


def run_cli(vtok, args, timeout, env=None):
    t0 = time.time()
    try:
        p = subprocess.run(vtok_cmd(vtok) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %ds" % timeout, time.time() - t0
    except OSError as e:
        return None, "", "cannot run %s: %s" % (vtok, e), time.time() - t0
    return (p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"),
            time.time() - t0)


def check_outputs(outdir, expdir, expected_files, tol):
    """Returns (errors: list[str], worst: dict file -> rel err)."""
    errors = []
    worst = {}
    produced = {os.path.basename(f)[:-4] for f in glob.glob(os.path.join(outdir, "*.npy"))}
    for name in sorted(produced - set(expected_files)):
        if name in ("pooler_output", "image_embeds"):
            errors.append("%s.npy written but the model has no %s" % (name, name))
        else:
            errors.append("unexpected file %s.npy" % name)
    for name in expected_files:
        if name not in produced:
            errors.append("missing %s.npy" % name)
            continue
        exp = np.load(os.path.join(expdir, name + ".npy"))
        try:
            act = np.load(os.path.join(outdir, name + ".npy"), allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            errors.append("%s.npy unreadable: %s" % (name, e))
            continue
        if act.dtype != np.float32:
            errors.append("%s.npy has dtype %s, expected float32" % (name, act.dtype))
            continue
        if act.shape != exp.shape:
            errors.append("%s.npy has shape %s, expected %s" % (name, list(act.shape), list(exp.shape)))
            continue
        if not np.all(np.isfinite(act)):
            errors.append("%s.npy has non-finite values" % name)
            continue
        r = rel_err(act, exp)
        worst[name] = r
        if r > tol:
            errors.append("%s: rel err %.3e > %.1e" % (name, r, tol))
    return errors, worst


def fmt(x):
    return "-" if x is None else "%.2e" % x


def run_all(vtok, work, man, tol, timeout, only=None, env=None, quiet=False, subset_cases=None):
    """Runs every case; returns (n_failures, rows)."""
    say = (lambda *a: None) if quiet else (lambda s: print(s, flush=True))
    ref_root = man["root"]
    out_root = os.path.join(work, "out")
    failures = 0
    rows = []
    jobs = []
    for m in man["models"]:
        if only and m["name"] not in only:
            continue
        for c in m["cases"]:
            jobs.append((m, c, "all"))
    for (mname, label, spec) in (subset_cases or []):
        for m in man["models"]:
            if m["name"] == mname and (not only or mname in only):
                for c in m["cases"]:
                    if c["label"] == label:
                        jobs.append((m, c, spec))
    for m, c, spec in jobs:
        L = m["n_layers"]
        if spec == "all":
            layers = list(range(L + 1))
        else:
            layers = sorted({(int(t) + L + 1) if int(t) < 0 else int(t) for t in spec.split(",")})
        expected = [f for f in c["files"] if not f.startswith("hidden_states_")]
        expected += ["hidden_states_%02d" % i for i in layers]
        outdir = os.path.join(out_root, m["name"], c["label"] + ("" if spec == "all" else "_layers"))
        if os.path.isdir(outdir):
            shutil.rmtree(outdir)
        os.makedirs(outdir)
        args = ["encode", "--model", os.path.join(ref_root, m["model_dir"]),
                "--pixels", os.path.join(ref_root, c["pixels"]), "--layers", spec, "--out", outdir]
        rc, _, err, dt = run_cli(vtok, args, timeout, env)
        errors = []
        worst = {}
        if rc != 0:
            line = (err.strip().splitlines() or ["(no stderr)"])[-1]
            errors.append("exit status %s: %s" % (rc, line))
        else:
            errors, worst = check_outputs(outdir, os.path.join(ref_root, c["expected"]), expected, tol)
        hs = [v for k, v in worst.items() if k.startswith("hidden_states_")]
        row = dict(model=m["name"], input=c["label"] + ("" if spec == "all" else " [%s]" % spec),
                   last=worst.get("last_hidden_state"), pooler=worst.get("pooler_output"),
                   embeds=worst.get("image_embeds"), hidden=max(hs) if hs else None,
                   time=dt, ok=not errors, errors=errors)
        rows.append(row)
        if errors:
            failures += 1
    if not quiet:
        say("%-17s %-19s %-9s %-9s %-9s %-9s %6s  %s" % ("model", "input", "last", "pooler", "embeds",
                                                        "hidden", "sec", "status"))
        for r in rows:
            say("%-17s %-19s %-9s %-9s %-9s %-9s %6.2f  %s" % (
                r["model"], r["input"], fmt(r["last"]), fmt(r["pooler"]), fmt(r["embeds"]),
                fmt(r["hidden"]), r["time"], "ok" if r["ok"] else "FAIL"))
            for e in r["errors"]:
                say("    - %s" % e)
    return failures, rows


SUBSET = [("clip_vision_proj", "32x32", "0,-1"), ("dinov2_reg", "20x44", "0,-1")]
# (model, non-native case, the rule its reference does not use)
RULE_SWAP = [("dinov2", "36x44", "size"), ("dinov2_reg", "20x44", "scale_offset")]


def rule_swap_check(vtok, work, man, tol, timeout, only=None):
    """Returns the number of failures (see 4. in the module doc)."""
    fails = 0
    ref_root = man["root"]
    models = {m["name"]: m for m in man["models"]}
    for name, label, other in RULE_SWAP:
        if name not in models or (only and name not in only):
            continue
        m = models[name]
        case = [c for c in m["cases"] if c["label"] == label][0]
        src = os.path.join(ref_root, m["model_dir"])
        for rule, want_ok in ((other, True), ("bogus", False)):
            mdir = os.path.join(work, "rule_swap", name + "_" + rule)
            shutil.rmtree(mdir, ignore_errors=True)
            shutil.copytree(src, mdir)
            with open(os.path.join(mdir, "config.json")) as f:
                cfg = json.load(f)
            cfg["vtok_pos_interpolation"] = rule
            with open(os.path.join(mdir, "config.json"), "w") as f:
                json.dump(cfg, f)
            out = os.path.join(mdir, "out")
            rc, _, err, _ = run_cli(vtok, ["encode", "--model", mdir, "--pixels",
                                           os.path.join(ref_root, case["pixels"]), "--out", out],
                                    timeout)
            if not want_ok:
                ok = rc not in (0, None) and "vtok_pos_interpolation" in err
                print("  rule swap %-10s %-6s %-12s refused: %s" % (name, label, rule, "ok" if ok else "NO"))
            else:
                r = None
                if rc == 0:
                    r = rel_err(np.load(os.path.join(out, "last_hidden_state.npy")),
                                np.load(os.path.join(ref_root, case["expected"], "last_hidden_state.npy")))
                ok = r is not None and r > 100 * tol
                print("  rule swap %-10s %-6s %-12s last rel err %s (must be > %.0e): %s" % (
                    name, label, rule, fmt(r), 100 * tol, "ok" if ok else "FAIL"))
            fails += 0 if ok else 1
    return fails


def self_check(work, man, tol, timeout):
    print("== self-check: clean run of the harness against fake_vtok.py")
    fails, _ = run_all(FAKE, work, man, tol, timeout, subset_cases=SUBSET)
    ok = fails == 0
    if not ok:
        print("self-check FAILED: the clean reference run does not pass")
    faults = [
        ("perturb last_hidden_state by 5e-5", "perturb:last_hidden_state:5e-5", {"clip_vision", "dinov2"}),
        ("perturb one hidden state by 5e-5", "perturb:hidden_states_01:5e-5", {"vit"}),
        ("perturb image_embeds by 5e-5", "perturb:image_embeds:5e-5", {"clip_full"}),
        ("perturb pooler_output by 5e-5", "perturb:pooler_output:5e-5", {"blip2_vision"}),
        ("missing hidden_states_00", "drop:hidden_states_00", {"siglip_vision"}),
        ("missing pooler_output", "drop:pooler_output", {"dinov2_swiglu"}),
        ("extra pooler_output for a model without one", "extra:pooler_output", {"vit_mae", "siglip_nohead"}),
        ("extra image_embeds for a model without one", "extra:image_embeds", {"siglip_full"}),
        ("wrong shape of last_hidden_state", "shape:last_hidden_state", {"dinov2_reg"}),
    ]
    for what, fault, models in faults:
        env = dict(os.environ, VTOK_FAKE_FAULT=fault)
        f, rows = run_all(FAKE, work, man, tol, timeout, only=models, env=env, quiet=True)
        caught = all(not r["ok"] for r in rows) and rows
        print("  %-48s %s" % (what, "caught" if caught else "NOT CAUGHT"))
        for r in rows[:1]:
            if r["errors"]:
                print("      e.g. %s %s: %s" % (r["model"], r["input"], r["errors"][0]))
        ok = ok and bool(caught)
    # extra layer files in a --layers 0,-1 run (a CLI ignoring --layers)
    env = dict(os.environ, VTOK_FAKE_FAULT="extra:hidden_states_01")
    f, rows = run_all(FAKE, work, man, tol, timeout, only={"clip_vision_proj"}, env=env, quiet=True,
                      subset_cases=[SUBSET[0]])
    sub_rows = [r for r in rows if "[" in r["input"]]
    caught = sub_rows and all(not r["ok"] for r in sub_rows)
    print("  %-48s %s" % ("--layers 0,-1 writing another layer", "caught" if caught else "NOT CAUGHT"))
    ok = ok and bool(caught)
    print("self-check %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vtok", help="path of the vtok CLI (a .py file is run with python)")
    ap.add_argument("--work", required=True, help="work directory (models, inputs, outputs)")
    ap.add_argument("--only", default=None, help="comma-separated model names")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per CLI call")
    ap.add_argument("--force-regen", action="store_true")
    ap.add_argument("--self-check", action="store_true")
    ap.add_argument("--json", default=None, help="also write the result rows to this file")
    a = ap.parse_args()

    import make_models
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    man = make_models.generate(os.path.join(work, "ref"), force=a.force_regen)
    print("reference ready (%.1f s)" % (time.time() - t0))
    if a.self_check:
        sys.exit(self_check(work, man, a.tol, a.timeout))
    if not a.vtok:
        ap.error("--vtok is required (or use --self-check)")
    vtok = os.path.abspath(a.vtok) if os.path.exists(a.vtok) else a.vtok
    if not os.path.exists(vtok):
        print("vtok CLI not found: %s" % a.vtok)
        sys.exit(2)
    only = set(a.only.split(",")) if a.only else None
    fails, rows = run_all(vtok, work, man, a.tol, a.timeout, only=only, subset_cases=SUBSET)
    fails += rule_swap_check(vtok, work, man, a.tol, a.timeout, only=only)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("%d of %d runs failed (tol %.0e), %.1f s total" % (fails, len(rows), a.tol, time.time() - t0))
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
