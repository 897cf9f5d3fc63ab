#!/usr/bin/env python3
"""What prompt caching saves `vtok serve` on a multi-turn chat.

    /usr/bin/python3 bench/bench_chat_cache.py --vtok build/vtok [--llm DIR] [--turns 8]

A client that keeps a conversation resends the whole history every turn
(OpenAI's chat API has no session). Two servers on 127.0.0.1 load the same
LLM (default bench/.models/tinyllama-rand, bf16: TinyLlama-1.1B's shape with
random weights; `make -C bench models` or bench_llm.py writes it): one
answers with its default prompt cache, the other gets every request with
"cache_prompt": false (its context reset first). Turn t's request (the
system prompt, t user turns of ~70 tokens, the answers so far) goes to both,
one after the other (never at the same time), for --rounds rounds; the
conversation's answers come from the cached server (the uncached one must
give the same text: checked). Prints per turn the prompt tokens, the cached
ones and the median latency of each server, and the ratio.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "serve"))
import serve_client as sc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

SYSTEM = ("You are a careful assistant that describes images and answers questions about "
          "them in short, precise sentences.")
TOPICS = ["the red circle", "the blue square", "the green triangle", "the yellow star",
          "the purple hexagon", "the orange ring", "the grey cross", "the white diamond",
          "the black arrow", "the pink heart", "the brown cube", "the cyan moon"]


def user_turn(t):
    return ("Turn %d. Look again at %s in the upper part of the picture and tell me its size "
            "compared with the other shapes, whether it touches the border, which colour is "
            "next to it, and how many other shapes are within one shape's width of it." %
            (t + 1, TOPICS[t % len(TOPICS)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", default=os.path.join(HERE, "..", "build", "vtok"))
    ap.add_argument("--llm", default=os.path.join(HERE, ".models", "tinyllama-rand"))
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--work", default="/tmp/vtok-bench-chat-cache")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    args = ["--llm", a.llm, "--dtype", a.dtype, "--threads", str(a.threads), "--format",
            "vicuna_v1", "--max-tokens", str(a.max_tokens)]
    cached = sc.Server(a.vtok, args, os.path.join(a.work, "cached.log"))
    plain = sc.Server(a.vtok, args, os.path.join(a.work, "plain.log"))
    rows = []
    try:
        cached.wait_ready(timeout=300)
        plain.wait_ready(timeout=300)
        times = {}
        for r in range(a.rounds):
            msgs = [{"role": "system", "content": SYSTEM}]
            for t in range(a.turns):
                msgs.append({"role": "user", "content": user_turn(t)})
                body = {"messages": msgs, "max_tokens": a.max_tokens}
                res = {}
                for name, srv, extra in (("cached", cached, {}),
                                         ("plain", plain, {"cache_prompt": False})):
                    t0 = time.perf_counter()
                    st, got = srv.post_json("/v1/chat/completions", dict(body, **extra),
                                            timeout=600)
                    ms = (time.perf_counter() - t0) * 1e3
                    if st != 200:
                        raise RuntimeError("%s: HTTP %d %s" % (name, st, got))
                    res[name] = got
                    times.setdefault((t, name), []).append(ms)
                text = res["cached"]["choices"][0]["message"]["content"]
                if res["plain"]["choices"][0]["message"]["content"] != text:
                    raise RuntimeError("turn %d: the cached and uncached answers differ" % t)
                u = res["cached"]["usage"]
                if r == 0:
                    rows.append((t, u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"]))
                msgs.append({"role": "assistant", "content": text})
    finally:
        cached.stop()
        plain.stop()
    print("| turn | prompt tokens | cached | cached server ms | cache_prompt false ms | ratio |")
    print("|---|---|---|---|---|---|")
    tot_c = tot_p = 0.0
    for t, n, c in rows:
        mc = statistics.median(times[(t, "cached")])
        mp = statistics.median(times[(t, "plain")])
        tot_c += mc
        tot_p += mp
        print("| %d | %d | %d | %.0f | %.0f | %.2f |" % (t + 1, n, c, mc, mp, mp / mc))
    print("| all | | | %.0f | %.0f | %.2f |" % (tot_c, tot_p, tot_p / tot_c))
    print(json.dumps({"llm": a.llm, "dtype": a.dtype, "threads": a.threads, "turns": a.turns,
                      "rounds": a.rounds, "max_tokens": a.max_tokens,
                      "total_ms_cached": round(tot_c, 1), "total_ms_plain": round(tot_p, 1)}))


if __name__ == "__main__":
    main()
