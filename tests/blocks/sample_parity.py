#!/usr/bin/env python3
"""The next-token sampler (src/models/sample.c) against transformers' logits
processors, written here with the same torch operations as
transformers/generation/logits_process.py (RepetitionPenaltyLogitsProcessor
with _apply_penalty, TemperatureLogitsWarper, TopKLogitsWarper,
TopPLogitsWarper, MinPLogitsWarper) in generate's order
(generation/utils.py _get_logits_processor: the penalty, then when sampling
temperature, top-k, top-p, min-p). Checks: the same tokens removed and the
same kept scores; greedy = torch.argmax; draws follow softmax of the kept
scores (chi-square); parameters transformers refuses are refused.

    sample_parity.py --tool build/sample_run --work DIR
"""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

fails = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails.append(what)


def reference(logits, history, greedy, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
              penalty=1.0):
    scores = torch.from_numpy(logits.copy())
    if penalty != 1.0 and history is not None:
        ids = torch.from_numpy(history)
        score = torch.gather(scores, 1, ids)
        score = torch.where(score < 0, score * penalty, score / penalty)
        scores = scores.scatter(1, ids, score)
    if greedy:
        return scores
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(top_k, scores.size(-1))
        remove = scores < torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(remove, -float("inf"))
    if top_p < 1.0:
        # transformers calls torch.sort(scores, descending=False), whose order
        # of equal scores is unspecified (and not stable on CPU): vtok breaks
        # ties by the lower id, which is stable=True here (row 0 has 40 ties)
        sorted_logits, sorted_idx = torch.sort(scores, descending=False, stable=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -1:] = 0
        remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
        scores = scores.masked_fill(remove, -float("inf"))
    if min_p > 0.0:
        probs = torch.softmax(scores, dim=-1)
        top = probs.amax(dim=-1, keepdim=True)
        remove = probs < min_p * top
        remove.scatter_(-1, torch.topk(probs, 1, dim=-1).indices, False)
        scores = scores.masked_fill(remove, -float("inf"))
    return scores


def run(tool, work, name, logits, history, args, draws=0):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "logits.npy"), logits)
    cmd = [tool, "--logits", os.path.join(d, "logits.npy"), "--out", d] + args
    if history is not None:
        np.save(os.path.join(d, "history.npy"), history)
        cmd += ["--history", os.path.join(d, "history.npy")]
    if draws:
        cmd += ["--draws", str(draws)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if p.returncode:
        return None, p.stderr.decode().strip()
    out = {"filtered": np.load(os.path.join(d, "filtered.npy")),
           "ids": np.load(os.path.join(d, "ids.npy"))}
    if draws:
        out["counts"] = np.load(os.path.join(d, "counts.npy"))
    return out, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    g = np.random.default_rng(7)
    R, V = 6, 500
    logits = (g.standard_normal((R, V)) * 3).astype(np.float32)
    logits[0, :40] = logits[0].max() + 1.0  # 40 ties at the top: top-k keeps them all
    logits[1, 5] = logits[1].max() + 4.0  # a confident row for min-p / top-p
    history = g.integers(0, V, (R, 12)).astype(np.int64)
    history[:, 1] = history[:, 0]  # an id seen twice is penalised once

    cases = [
        ("greedy", dict(greedy=True), ["--greedy"]),
        ("greedy_penalty", dict(greedy=True, penalty=1.3), ["--greedy", "--penalty", "1.3"]),
        ("greedy_reward", dict(greedy=True, penalty=0.7), ["--greedy", "--penalty", "0.7"]),
        ("temperature", dict(greedy=False, temperature=0.7), ["--temperature", "0.7"]),
        ("top_k", dict(greedy=False, top_k=5), ["--top-k", "5"]),
        ("top_k_ties", dict(greedy=False, top_k=3), ["--top-k", "3"]),
        ("top_k_big", dict(greedy=False, top_k=10000), ["--top-k", "10000"]),
        ("top_p", dict(greedy=False, top_p=0.9), ["--top-p", "0.9"]),
        ("top_p_t", dict(greedy=False, temperature=1.3, top_p=0.5),
         ["--temperature", "1.3", "--top-p", "0.5"]),
        ("min_p", dict(greedy=False, min_p=0.1), ["--min-p", "0.1"]),
        ("all", dict(greedy=False, temperature=0.8, top_k=50, top_p=0.95, min_p=0.05,
                     penalty=1.2),
         ["--temperature", "0.8", "--top-k", "50", "--top-p", "0.95", "--min-p", "0.05",
          "--penalty", "1.2"]),
    ]
    for name, kw, args in cases:
        out, err = run(a.tool, a.work, name, logits, history, args)
        if out is None:
            check(False, "%s: %s" % (name, err))
            continue
        ref = reference(logits, history, **kw).numpy()
        got = out["filtered"]
        same_mask = np.array_equal(np.isinf(ref), np.isinf(got))
        fin = ~np.isinf(ref)
        err = float(np.max(np.abs(ref[fin] - got[fin]) / (np.abs(ref[fin]) + 1e-30)))
        check(same_mask and err <= 1e-6,
              "%s: the same %d of %d scores removed, kept scores within %.2g" %
              (name, int(np.isinf(ref).sum()), ref.size, err))
        if kw.get("greedy"):
            check(np.array_equal(out["ids"], np.argmax(ref, axis=1)),
                  "%s: ids == torch.argmax %s" % (name, out["ids"].tolist()))
        else:
            check(all(np.isfinite(got[r, out["ids"][r]]) for r in range(R)),
                  "%s: the drawn ids are kept ones" % name)

    # Draws follow softmax of the kept scores.
    N = 40000
    out, err = run(a.tool, a.work, "draws", logits, None, ["--top-k", "6", "--seed", "11"], N)
    if out is None:
        check(False, "draws: " + err)
    else:
        ref = reference(logits, None, False, top_k=6).numpy()
        for r in range(R):
            keep = np.isfinite(ref[r])
            p = np.exp(ref[r][keep] - ref[r][keep].max())
            p /= p.sum()
            c = out["counts"][r]
            outside = int(c[~keep].sum())
            exp_c = p * N
            chi2 = float(((c[keep] - exp_c) ** 2 / exp_c).sum())
            # df = kept - 1; df + 6 sqrt(2 df) is far in the tail (p < 1e-4)
            df = max(int(keep.sum()) - 1, 1)
            check(outside == 0 and chi2 < df + 6 * (2 * df) ** 0.5,
                  "row %d: %d draws over %d ids, none outside, chi2 %.1f (df %d)" %
                  (r, N, int(keep.sum()), chi2, df))
    out2, _ = run(a.tool, a.work, "draws2", logits, None, ["--top-k", "6", "--seed", "11"], N)
    check(out is not None and out2 is not None and np.array_equal(out["counts"], out2["counts"]),
          "the same seed draws the same ids")

    # Parameters transformers refuses.
    for args, what in ((["--temperature", "0"], "temperature"), (["--top-p", "0"], "top_p"),
                       (["--top-p", "1.5"], "top_p"), (["--min-p", "-0.1"], "min_p"),
                       (["--top-k", "-1"], "top_k"), (["--penalty", "0"], "repetition_penalty"),
                       (["--temperature", "nan"], "temperature")):
        out, err = run(a.tool, a.work, "bad", logits, None, args)
        check(out is None and what in err, "%s refused: %s" % (" ".join(args), err))

    print("%d failed" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
