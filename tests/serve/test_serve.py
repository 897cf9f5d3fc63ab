"""`vtok serve` over loopback (ctest serve_http): answers, batching and every
kind of bad request, against models/tiny-clip (and the shapes LLaVA for chat).

    python3 tests/serve/test_serve.py --vtok build/vtok --work DIR

Each check asserts something that can fail; after every bad request the
server must still be alive and healthy. Standard library + numpy only."""
import argparse
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_client as sc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP = os.path.join(ROOT, "models", "tiny-clip")
SHAPES = os.path.join(ROOT, "models", "shapes")
KEY = "test-key-123"

failures = []


def check(cond, what):
    print("%s  %s" % ("ok  " if cond else "FAIL", what), flush=True)
    if not cond:
        failures.append(what)


def check_error(st, body, status, what, code=None):
    ok = st == status and isinstance(body, dict) and isinstance(body.get("error"), dict) \
        and isinstance(body["error"].get("message"), str) and "type" in body["error"]
    if code is not None:
        ok = ok and body["error"].get("code") == code
    check(ok, "%s -> %d %s (got %s %s)" % (what, status, code or "", st,
                                          json.dumps(body)[:160] if isinstance(body, dict)
                                          else body[:80]))


def check_alive(srv, what):
    ok = srv.alive()
    if ok:
        try:
            ok = srv.request("GET", "/health", auth=False)[0] == 200
        except OSError:
            ok = False
    check(ok, "server alive and healthy after " + what)


def encode_ref(vtok, images, work, name):
    """vtok encode on the PNGs: (image_embeds, pooler_output)."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    paths = []
    for i, raw in enumerate(images):
        p = os.path.join(d, "img%d.png" % i)
        with open(p, "wb") as f:
            f.write(raw)
        paths.append(p)
    cmd = [vtok, "encode", "--model", CLIP, "--out", os.path.join(d, "out")]
    for p in paths:
        cmd += ["--image", p]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return (np.load(os.path.join(d, "out", "image_embeds.npy")),
            np.load(os.path.join(d, "out", "pooler_output.npy")))


def raw_http(port, data, read=True):
    """Send bytes on a fresh socket; the reply's first line (or b'')."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                k = s.recv(65536)
            except OSError:
                break
            if not k:
                break
            out += k
        return out.split(b"\r\n", 1)[0]
    finally:
        s.close()


def test_main(vtok, work):
    srv = sc.Server(vtok, ["--model", CLIP, "--max-batch-images", "8", "--max-wait-ms", "100",
                           "--max-body-bytes", "2000000", "--max-images", "8",
                           "--max-pixels", "4000000", "--threads", "2"],
                    os.path.join(work, "serve-main.log"), api_key=KEY)
    try:
        seen = srv.wait_ready()
        check(seen <= {200, 503}, "/health answers 503 (loading) or 200 (ready): %s" % seen)
        images = [sc.test_image(i) for i in range(8)]
        ref_proj, ref_pool = encode_ref(vtok, images, work, "ref")
        with open(os.path.join(ROOT, "models", "sample.jpg"), "rb") as f:
            jpg = f.read()
        ref_jpg, ref_jpg_pool = encode_ref(vtok, [jpg], work, "ref-jpg")

        # models
        st, h, data = srv.request("GET", "/v1/models")
        models = json.loads(data)
        check(st == 200 and models["data"][0]["id"] == "tiny-clip"
              and models["data"][0]["vtok"]["output"] == "image_embeds",
              "/v1/models lists tiny-clip (image_embeds)")

        # one image, float: equal to vtok encode
        uri = sc.data_uri(jpg, "image/jpeg")
        st, body = srv.post_json("/v1/embeddings", {"model": "tiny-clip", "input": uri})
        ok = st == 200 and body["object"] == "list" and body["model"] == "tiny-clip" \
            and body["data"][0]["object"] == "embedding" and body["data"][0]["index"] == 0
        e = np.array(body["data"][0]["embedding"], dtype=np.float32) if ok else None
        check(ok and e.shape == (32,) and np.abs(e - ref_jpg[0]).max() <= 1e-6,
              "embeddings (image_embeds) == vtok encode within 1e-6 (max diff %s)" %
              (np.abs(e - ref_jpg[0]).max() if ok else "-"))
        check(ok and body["usage"]["prompt_tokens"] == 65
              and body["usage"]["total_tokens"] == 65, "usage: 65 tokens per 64-px image")
        st, body = srv.post_json("/v1/embeddings", {"input": [uri], "output": "pooler_output"})
        e = np.array(body["data"][0]["embedding"], dtype=np.float32) if st == 200 else None
        check(st == 200 and e.shape == (64,) and np.abs(e - ref_jpg_pool[0]).max() <= 1e-6,
              "output=pooler_output == vtok encode within 1e-6")
        st, body = srv.post_json("/v1/embeddings", {"input": [uri],
                                                    "output": "last_hidden_state"})
        check(st == 200 and body["data"][0]["shape"] == [65, 64]
              and len(body["data"][0]["embedding"]) == 65 * 64,
              "output=last_hidden_state: flat [65 * 64] with shape [65, 64]")

        # base64 round trip
        st, fl = srv.post_json("/v1/embeddings", {"input": [uri, sc.data_uri(images[0])]})
        st2, b6 = srv.post_json("/v1/embeddings", {"input": [uri, sc.data_uri(images[0])],
                                                   "encoding_format": "base64"})
        ok = st == 200 and st2 == 200 and isinstance(b6["data"][1]["embedding"], str)
        check(ok and all(sc.floats_b64(b6["data"][i]["embedding"]) ==
                         [float(np.float32(x)) for x in fl["data"][i]["embedding"]]
                         for i in range(2)),
              "encoding_format base64 == float, bit for bit")
        check(ok and np.abs(np.array(fl["data"][1]["embedding"]) - ref_proj[0]).max() <= 1e-6,
              "a PNG in a two-image request == vtok encode within 1e-6")

        # 8 concurrent clients, each its own image; batched
        before = srv.request("GET", "/metrics", auth=False)[2].decode()
        b0 = sc.metric(before, "vtok_batch_images_count") or 0
        results = [None] * 8
        barrier = threading.Barrier(8)

        def client(i):
            barrier.wait()
            results[i] = srv.post_json("/v1/embeddings", {"input": sc.data_uri(images[i])})

        ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        diffs = [np.abs(np.array(r[1]["data"][0]["embedding"]) - ref_proj[i]).max()
                 if r and r[0] == 200 else 1e9 for i, r in enumerate(results)]
        check(max(diffs) <= 1e-5, "8 concurrent clients each get their own image's "
              "embedding (max diff %.3g)" % max(diffs))
        after = srv.request("GET", "/metrics", auth=False)[2].decode()
        b1 = sc.metric(after, "vtok_batch_images_count")
        mx = sc.metric(after, "vtok_batch_images_max")
        check(mx is not None and mx > 1 and b1 - b0 < 8,
              "metrics: 8 requests ran in %d batches, the largest of %d images"
              % (b1 - b0, mx or 0))
        check(sc.metric(after, "vtok_requests_total", 'endpoint="/v1/embeddings",code="200"')
              is not None and "vtok_request_duration_seconds_bucket" in after
              and "vtok_queue_depth" in after and "vtok_images_per_second" in after,
              "metrics: requests by endpoint and code, latency histogram, queue depth, "
              "images/s")

        # bad requests: each a 4xx with an OpenAI error body, the server unharmed
        bad = [
            (b'{"input": [', 400, "invalid_json", "malformed JSON"),
            (b'{"input": "data:image/png;base64,iVBORw0KGgo', 400, "invalid_json",
             "a truncated JSON body"),
            (b'[1, 2, 3]', 400, "invalid_json", "a JSON array body"),
            (b'', 400, "invalid_json", "an empty body"),
            ({"input": "data:image/png;base64,@@@@"}, 400, "invalid_image", "bad base64"),
            ({"input": "data:image/png;base64,iVBORw0KGgoA="}, 400, "invalid_image",
             "base64 of a truncated PNG"),
            ({"input": "data:image/png;base64,iVBORw0KGgo"}, 400, "invalid_image",
             "base64 that ends mid-quantum"),
            ({"input": "aGVsbG8="}, 400, "invalid_image", "a string that is no data URI"),
            ({"input": "https://example.com/cat.png"}, 400, "invalid_image", "a remote URL"),
            ({"input": sc.data_uri(sc.png_bomb())}, 400, "image_too_large",
             "a PNG declaring 60000 x 60000 pixels (decompression bomb)"),
            ({"input": [[1, 2, 3]]}, 400, "invalid_input", "token-id input"),
            ({"input": []}, 400, "invalid_input", "an empty input list"),
            ({"input": 5}, 400, "invalid_input", "a number as input"),
            ({"foo": 1}, 400, "missing_input", "no input"),
            ({"input": uri, "encoding_format": "int8"}, 400, "invalid_parameter",
             "an unknown encoding_format"),
            ({"input": uri, "model": "gpt-4"}, 404, "model_not_found", "an unknown model"),
            ({"input": [uri] * 9}, 413, "too_many_images", "9 images (--max-images 8)"),
            ({"input": uri, "output": "image_embedz"}, 400, "invalid_parameter",
             "an unknown output"),
        ]
        for body, status, code, what in bad:
            st, got = srv.post_json("/v1/embeddings", body)
            check_error(st, got, status, what, code)
            check_alive(srv, what)
        one = sc.png_raw(1, 1, [b"\xff\x00\x00"])
        st, got = srv.post_json("/v1/embeddings", {"input": sc.data_uri(one)})
        check(st == 200 and len(got["data"][0]["embedding"]) == 32
              and all(np.isfinite(got["data"][0]["embedding"])),
              "a 1x1 PNG is resized and encoded (200)")
        check_alive(srv, "a 1x1 PNG")

        # body over --max-body-bytes: 413 from Content-Length, before reading it
        big = {"input": "data:image/png;base64," + "A" * 2100000}
        try:
            st, got = srv.post_json("/v1/embeddings", big)
        except OSError as ex:  # the server may close while the body is still being sent
            st, got = ex, {}
        check_error(st, got, 413, "a 2.1 MB body (--max-body-bytes 2000000)", "body_too_large")
        check_alive(srv, "an oversized body")
        # a chunked body without Content-Length that outgrows the limit
        head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (500000, b"A" * 500000)
        line = raw_http(srv.port, head + chunk * 5 + b"0\r\n\r\n")
        check(b" 413 " in line + b" ", "a chunked 2.5 MB body -> 413 (got %r)" % line)
        check_alive(srv, "an oversized chunked body")
        # truncated: Content-Length 1000, 10 bytes sent, then the client goes away
        raw_http(srv.port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 1000"
                           b"\r\nContent-Type: application/json\r\n\r\n{\"input\":", read=False)
        check_alive(srv, "a body cut off by the client")
        line = raw_http(srv.port, b"GARBAGE\r\n\r\n")
        check(line == b"" or line.startswith(b"HTTP/1.1 4"),
              "a request line without a URI: closed or 4xx (%r)" % line)
        check_alive(srv, "a malformed request line")
        line = raw_http(srv.port, b"GET /health HTTP/1.1\r\nHost x\r\n\r\n")
        check(line.startswith(b"HTTP/1.1 400"), "a header without ':' -> 400 (%r)" % line)
        check_alive(srv, "a malformed header")
        # a declared length far over the limit: 413 at once, the body never read
        line = raw_http(srv.port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 1000000000000\r\n\r\n{")
        check(line.startswith(b"HTTP/1.1 413"), "Content-Length 1e12 -> 413 before the body "
              "(%r)" % line)
        check_alive(srv, "a huge Content-Length")

        # auth, routes, methods
        st, h, data = srv.request("POST", "/v1/embeddings", {"input": uri}, auth=False)
        check_error(st, json.loads(data), 401, "no API key", "invalid_api_key")
        st, h, data = srv.request("POST", "/v1/embeddings", {"input": uri}, auth=False,
                                  headers={"Authorization": "Bearer wrong-key-123"})
        check_error(st, json.loads(data), 401, "a wrong API key", "invalid_api_key")
        st, h, data = srv.request("POST", "/v1/embeddings", {"input": uri}, auth=False,
                                  headers={"Authorization": "bearer " + KEY})
        check(st == 200, "the Bearer scheme is case-insensitive (RFC 6750)")
        st, h, data = srv.request("GET", "/nope")
        check_error(st, json.loads(data), 404, "an unknown route", "not_found")
        st, h, data = srv.request("GET", "/v1/embeddings")
        check_error(st, json.loads(data), 405, "GET /v1/embeddings", "method_not_allowed")
        check(h.get("allow") == "POST", "405 says Allow: POST")
        st, got = srv.post_json("/v1/tokenize", {"input": uri})
        check_error(st, got, 400, "/v1/tokenize on an encoder", "unsupported")
        st, got = srv.post_json("/v1/chat/completions", {"messages": [{"role": "user",
                                                                       "content": "hi"}]})
        check_error(st, got, 400, "chat on a server without an LLM", "unsupported")
        st, h, data = srv.request("GET", "/metrics", auth=False)
        text = data.decode()
        check(st == 200 and h["content-type"].startswith("text/plain")
              and sc.metric(text, "vtok_requests_total", 'endpoint="/v1/embeddings",code="400"')
              >= 10 and sc.metric(text, "vtok_requests_total",
                                  'endpoint="/v1/embeddings",code="401"') == 2,
              "metrics count the 400s and 401s")
        check_alive(srv, "all of the above")
    finally:
        rc = srv.stop()
    check(rc == 0, "SIGTERM on an idle server: exit 0 (got %s)" % rc)


def test_queue_and_shutdown(vtok, work):
    """A request waits 1.5 s for its batch to fill: a second one finds the
    queue (--queue 1) full -> 429; SIGTERM while one waits: it completes,
    new ones get 503, exit 0."""
    srv = sc.Server(vtok, ["--model", CLIP, "--max-batch-images", "64", "--max-wait-ms",
                           "1500", "--queue", "1", "--threads", "1"],
                    os.path.join(work, "serve-queue.log"))
    uri = sc.data_uri(sc.test_image(3))
    try:
        srv.wait_ready()
        out = {}
        t = threading.Thread(target=lambda: out.update(a=srv.post_json("/v1/embeddings",
                                                                       {"input": uri})))
        t0 = time.time()
        t.start()
        time.sleep(0.4)
        st, got = srv.post_json("/v1/embeddings", {"input": uri})
        check_error(st, got, 429, "a second request while the queue (--queue 1) is full",
                    "queue_full")
        t.join()
        check(out["a"][0] == 200 and time.time() - t0 >= 1.4,
              "the queued request completes after --max-wait-ms (%.2f s)" % (time.time() - t0))
        check_alive(srv, "a 429")
        # graceful shutdown with a request in flight
        t = threading.Thread(target=lambda: out.update(b=srv.post_json("/v1/embeddings",
                                                                       {"input": uri})))
        t.start()
        time.sleep(0.4)
        srv.signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            st, got = srv.post_json("/v1/embeddings", {"input": uri})
        except OSError as ex:
            st, got = ex, {}
        check_error(st, got, 503, "a new request while shutting down", "shutting_down")
        st, h, data = srv.request("GET", "/health", auth=False)
        check(st == 503, "/health is 503 while shutting down")
        t.join()
        check(out["b"][0] == 200 and len(out["b"][1]["data"][0]["embedding"]) == 32,
              "the request in flight at SIGTERM completes (200)")
        rc = srv.proc.wait(30)
        check(rc == 0, "exit status 0 after SIGTERM (got %s)" % rc)
    finally:
        srv.stop()


def test_chat(vtok, work):
    """/v1/chat/completions on the shapes LLaVA: the answer `vtok chat` gives,
    whole and streamed."""
    llava = os.path.join(SHAPES, "llava")
    demo = os.path.join(SHAPES, "demo", "scene-2000000.png")
    if not os.path.isdir(os.path.join(llava, "llm")):
        print("skip  chat: no models/shapes/llava")
        return
    q = "What colour is the star?"
    ref = subprocess.run([vtok, "chat", "--recipe", "llava-1.5", "--model", llava, "--llm",
                          os.path.join(llava, "llm"), "--image", demo, "-p", q],
                         check=True, capture_output=True, text=True).stdout.strip()
    srv = sc.Server(vtok, ["--recipe", "llava-1.5", "--model", llava, "--llm",
                           os.path.join(llava, "llm"), "--threads", "2"],
                    os.path.join(work, "serve-chat.log"))
    try:
        srv.wait_ready()
        with open(demo, "rb") as f:
            img = sc.data_uri(f.read())
        msgs = [{"role": "user", "content": [{"type": "text", "text": q},
                                             {"type": "image_url", "image_url": {"url": img}}]}]
        st, got = srv.post_json("/v1/chat/completions", {"model": "llava-1.5",
                                                         "messages": msgs})
        ok = st == 200 and got["object"] == "chat.completion"
        ans = got["choices"][0]["message"]["content"].strip() if ok else None
        check(ok and ans == ref and got["choices"][0]["finish_reason"] == "stop"
              and got["usage"]["completion_tokens"] > 0,
              "chat answer == vtok chat (%r vs %r)" % (ans, ref))
        # streamed
        st, h, data = srv.request("POST", "/v1/chat/completions",
                                  {"messages": msgs, "stream": True})
        events = [l[6:] for l in data.decode().split("\n\n") if l.startswith("data: ")]
        text = ""
        finish = None
        for ev in events[:-1]:
            ch = json.loads(ev)
            text += ch["choices"][0]["delta"].get("content", "")
            finish = ch["choices"][0]["finish_reason"] or finish
        check(st == 200 and h.get("content-type") == "text/event-stream"
              and events and events[-1] == "[DONE]" and text.strip() == ref
              and finish == "stop", "streamed chat: SSE chunks spell the same answer, then "
              "[DONE] (%r)" % text)
        # the same image again with another question: the recipe does not run again and its
        # rows stay in the KV cache (cached_tokens past the 64 image rows); the answer is
        # still `vtok chat`'s
        q2 = "How many shapes are there?"
        ref2 = subprocess.run([vtok, "chat", "--recipe", "llava-1.5", "--model", llava, "--llm",
                               os.path.join(llava, "llm"), "--image", demo, "-p", q2],
                              check=True, capture_output=True, text=True).stdout.strip()
        msgs2 = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img}},
                                              {"type": "text", "text": q2}]}]
        st, got = srv.post_json("/v1/chat/completions", {"messages": msgs2})
        ok = st == 200 and got.get("object") == "chat.completion"
        cached = got["usage"]["prompt_tokens_details"]["cached_tokens"] if ok else -1
        check(ok and got["choices"][0]["message"]["content"].strip() == ref2 and cached > 64,
              "same image, new question: %d cached positions (image rows kept), answer == vtok "
              "chat (%r)" % (cached, ref2))
        # prompt caching: a text-only conversation resent with one more turn reuses the
        # worker's KV cache (usage.prompt_tokens_details.cached_tokens), and an answer does
        # not depend on what was cached before it
        qa, qb = "What colour is the star?", "How many shapes are there?"

        def ask(messages):
            st, got = srv.post_json("/v1/chat/completions", {"messages": messages,
                                                             "max_tokens": 8})
            ok = st == 200 and got.get("object") == "chat.completion"
            return (got["choices"][0]["message"]["content"] if ok else None,
                    got["usage"] if ok else {})
        ans_a0, _ = ask([{"role": "user", "content": qa}])
        conv = [{"role": "user", "content": qa}, {"role": "assistant", "content": ans_a0 or ""},
                {"role": "user", "content": qb}]
        ans_b1, u_b1 = ask(conv)
        ask([{"role": "user", "content": "Something else entirely."}])
        ans_a, u_a = ask([{"role": "user", "content": qa}])
        ans_b2, u_b2 = ask(conv)
        ca, cb = (u.get("prompt_tokens_details", {}).get("cached_tokens", -1) for u in (u_a, u_b2))
        check(ans_a == ans_a0 and ans_b2 == ans_b1 and ans_a0 and ans_b1,
              "cached prompts: the same answers whatever was cached (%r, %r)" % (ans_a, ans_b2))
        st, got = srv.post_json("/v1/chat/completions", {"messages": conv, "max_tokens": 8,
                                                         "cache_prompt": False})
        ok = st == 200 and got.get("object") == "chat.completion"
        check(ok and got["choices"][0]["message"]["content"] == ans_b1
              and got["usage"]["prompt_tokens_details"]["cached_tokens"] == 0,
              "cache_prompt false: nothing reused, the same answer")
        st, got = srv.post_json("/v1/chat/completions", {"messages": conv, "cache_prompt": 1})
        check_error(st, got, 400, "cache_prompt not a boolean", "invalid_parameter")
        check(0 < ca < u_a.get("prompt_tokens", 0) and cb >= u_a.get("prompt_tokens", 1) - 1
              and cb < u_b2.get("prompt_tokens", 0),
              "cached_tokens: %d of %d (a shared prefix), then %d of %d (the last prompt + "
              "answer)" % (ca, u_a.get("prompt_tokens", 0), cb, u_b2.get("prompt_tokens", 0)))
        # the embeddings of the recipe: [64, 128] tokens per image
        st, got = srv.post_json("/v1/embeddings", {"input": img})
        check(st == 200 and got["data"][0]["shape"] == [64, 128]
              and len(got["data"][0]["embedding"]) == 64 * 128,
              "recipe embeddings: the image's 64 tokens of 128, flattened, with their shape")
        st, got = srv.post_json("/v1/chat/completions", {"messages": []})
        check_error(st, got, 400, "chat with no messages", "invalid_messages")
        st, got = srv.post_json("/v1/chat/completions", {"messages": [
            {"role": "user", "content": [{"type": "image_url",
                                          "image_url": {"url": "data:image/png;base64,!!"}}]}]})
        check_error(st, got, 400, "chat with a bad image", "invalid_image")
        check_alive(srv, "bad chat requests")
    finally:
        rc = srv.stop()
    check(rc == 0, "chat server: exit 0 after SIGTERM")


def test_seed(vtok, work, seed_dir):
    """/v1/tokenize and /v1/detokenize on the tiny SEED fixture that
    tests/parity/check_recipes_gvt_seed.py writes: the ids and embeddings of
    `vtok tokenize` / `vtok detokenize`."""
    rp, model = os.path.join(seed_dir or "", "seed_tiny.json"), os.path.join(seed_dir or "", "seed")
    imgs = [os.path.join(seed_dir or "", "img%d.png" % k) for k in (11, 12)]
    if not seed_dir or not all(os.path.exists(p) for p in [rp, model] + imgs):
        print("skip  tokenize / detokenize: no SEED fixture (run parity_recipes_gvt_seed first)")
        return
    out = os.path.join(work, "seed-ref")
    subprocess.run([vtok, "tokenize", "--recipe", rp, "--model", model, "--out", out,
                    "--image", imgs[0], "--image", imgs[1]], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids = np.load(os.path.join(out, "ids.npy"))
    dout = os.path.join(work, "seed-detok")
    subprocess.run([vtok, "detokenize", "--recipe", rp, "--model", model, "--ids",
                    os.path.join(out, "ids.npy"), "--out", dout], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gen = np.load(os.path.join(dout, "generation_embeddings.npy"))
    srv = sc.Server(vtok, ["--recipe", rp, "--model", model, "--name", "seed", "--threads", "2"],
                    os.path.join(work, "serve-seed.log"))
    try:
        srv.wait_ready()
        uris = []
        for p in imgs:
            with open(p, "rb") as f:
                uris.append(sc.data_uri(f.read()))
        st, got = srv.post_json("/v1/tokenize", {"model": "seed", "input": uris})
        check(st == 200 and [d["ids"] for d in got["data"]] == ids.tolist(),
              "/v1/tokenize ids == vtok tokenize (%s)" % (got["data"][0]["ids"]
                                                          if st == 200 else got))
        st, got = srv.post_json("/v1/detokenize", {"input": ids.tolist(),
                                                   "encoding_format": "base64"})
        ok = st == 200 and got["data"][1]["shape"] == list(gen.shape[1:])
        d = max(np.abs(np.array(sc.floats_b64(got["data"][i]["embedding"])).reshape(gen.shape[1:])
                       - gen[i]).max() for i in range(2)) if ok else None
        check(ok and d <= 1e-6, "/v1/detokenize == vtok detokenize within 1e-6 (%s)" % d)
        st, got = srv.post_json("/v1/detokenize", {"input": [[0, 1, 2]]})
        check_error(st, got, 400, "detokenize: a row of the wrong length", "invalid_input")
        st, got = srv.post_json("/v1/detokenize", {"input": [[9999] * ids.shape[1]]})
        check_error(st, got, 400, "detokenize: ids out of range", "invalid_input")
        check_alive(srv, "bad detokenize requests")
    finally:
        rc = srv.stop()
    check(rc == 0, "seed server: exit 0 after SIGTERM")


def test_text(vtok, work):
    """Text inputs on a full CLIPModel folder (models/shapes/clip): get_text_features in the
    space of image_embeds. Checked against `vtok zeroshot`: the logits exp(logit_scale) x
    cosine(image_embeds, text_embeds) from the server's vectors equal the CLI's."""
    clip = os.path.join(ROOT, "models", "shapes", "clip")
    img = os.path.join(ROOT, "models", "shapes", "demo", "scene-2000000.png")
    labels = ["a red circle", "a blue square", "an orange star"]
    srv = sc.Server(vtok, ["--model", clip, "--threads", "2"], os.path.join(work, "serve-text.log"))
    try:
        srv.wait_ready()
        with open(img, "rb") as f:
            uri = sc.data_uri(f.read(), "image/png")
        st, bi = srv.post_json("/v1/embeddings", {"input": uri})
        st2, bt = srv.post_json("/v1/embeddings", {"input": labels})
        ok = st == 200 and st2 == 200 and len(bt.get("data", [])) == 3
        check(ok and bt["usage"]["prompt_tokens"] > 3, "text inputs: 3 text embeddings, usage "
              "counts their tokens (%s)" % (bt.get("usage") if ok else (st, st2)))
        zs = subprocess.run([vtok, "zeroshot", "--model", clip, "--image", img, "--labels",
                             ",".join(labels), "--json"], capture_output=True, text=True)
        ref = {x["label"]: x["logit"] for x in json.loads(zs.stdout.strip().splitlines()[-1])["labels"]}
        cfg = json.load(open(os.path.join(clip, "config.json")))
        if ok:
            scale = None
            e_i = np.array(bi["data"][0]["embedding"], dtype=np.float64)
            logits = []
            for k, lab in enumerate(labels):
                e_t = np.array(bt["data"][k]["embedding"], dtype=np.float64)
                cos = e_i @ e_t / (np.linalg.norm(e_i) * np.linalg.norm(e_t))
                scale = ref[lab] / cos if scale is None else scale
                logits.append(cos)
            # the same scale exp(logit_scale) for every label, and the CLI's ordering
            ratios = [ref[lab] / c for lab, c in zip(labels, logits)]
            check(max(ratios) - min(ratios) <= 1e-3 * abs(max(ratios)),
                  "text: cosine(image, text) x one scale == vtok zeroshot's logits (%s)" %
                  ", ".join("%.4f" % r for r in ratios))
            mix = srv.post_json("/v1/embeddings", {"input": [labels[0], uri]})
            check(mix[0] == 400, "text and image in one request: 400")
    finally:
        srv.stop()
    # a vision-only folder refuses text with a clear 400
    srv = sc.Server(vtok, ["--model", CLIP], os.path.join(work, "serve-text2.log"))
    try:
        srv.wait_ready()
        st, body = srv.post_json("/v1/embeddings", {"input": "a red circle"})
        check_error(st, body, 400, "text on a vision-only model")
    finally:
        srv.stop()


def test_question_recipes(vtok, work, mova_dir, slime_dir):
    """Recipes whose tokens depend on the question, in /v1/chat/completions:
    MoVA (the routing pass on the last user message's text, then the answer
    pass with the chosen experts) and SliME (the selector reads the prompt's
    ids). The fixtures are those check_mova.py / check_slime.py write; each
    answer must equal `vtok chat` on the same image and question, and MoVA's
    "routing" the experts `vtok chat` reports."""
    cases = [("mova", mova_dir, "mova_tiny.json", "img_45x30.png",
              "What Shape is in the PICTURE?", 6),
             ("slime", slime_dir, "slime_tiny.json", "img0_30x20.png",
              "What shape is in the picture?", 8)]
    for name, d, recipe, image, q, n in cases:
        rp, model, llm = (os.path.join(d or "", x) for x in (recipe, name, "llm"))
        img = os.path.join(d or "", image)
        if not d or not all(os.path.exists(p) for p in (rp, model, llm, img)):
            print("skip  chat with %s: no fixture (run parity_%s first)" %
                  (name, "mova_recipe" if name == "mova" else name))
            continue
        r = subprocess.run([vtok, "chat", "--recipe", rp, "--model", model, "--llm", llm,
                            "--image", img, "-p", q, "--max-tokens", str(n)],
                           capture_output=True, text=True)
        check(r.returncode == 0, "vtok chat %s runs (%s)" % (name, r.stderr.strip()[-200:]))
        ref = r.stdout.strip()
        ref_experts = None
        for line in r.stderr.splitlines():
            if line.startswith("vtok: experts:"):
                ref_experts = re.findall(r"[A-Z] \(([^)]*)\)", line.split("[")[0])
        srv = sc.Server(vtok, ["--recipe", rp, "--model", model, "--llm", llm, "--name", name,
                               "--threads", "2"], os.path.join(work, "serve-%s.log" % name))
        try:
            srv.wait_ready()
            with open(img, "rb") as f:
                uri = sc.data_uri(f.read())
            msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                 {"type": "text", "text": q}]}]
            for rep in range(2):  # the second: a context that has run before
                st, got = srv.post_json("/v1/chat/completions", {"messages": msgs,
                                                                 "max_tokens": n})
                ok = st == 200 and got.get("object") == "chat.completion"
                ans = got["choices"][0]["message"]["content"].strip() if ok else got
                check(ok and ans == ref, "chat %s (request %d) == vtok chat (%r vs %r)"
                      % (name, rep + 1, ans, ref))
                if name == "mova":
                    rt = got.get("routing") if ok else None
                    check(rt is not None and rt["experts"] == ref_experts
                          and isinstance(rt["answer"], str),
                          "chat mova: routing %s = vtok chat's experts %s" % (rt, ref_experts))
                if name == "mova":  # streamed: the first chunk carries the routing
                    st, h, data = srv.request("POST", "/v1/chat/completions",
                                              {"messages": msgs, "max_tokens": n, "stream": True})
                    evs = [json.loads(l[6:]) for l in data.decode().split("\n\n")
                           if l.startswith("data: {")]
                    text = "".join(e["choices"][0]["delta"].get("content", "") for e in evs)
                    check(st == 200 and evs and evs[0].get("routing") == rt
                          and text.strip() == ref, "chat mova streamed: routing in the first "
                          "chunk, the same text (%r)" % text)
            if name == "mova":  # a question is needed: images alone are refused
                st, got = srv.post_json("/v1/chat/completions", {"messages": [
                    {"role": "user", "content": [{"type": "image_url",
                                                  "image_url": {"url": uri}}]}]})
                check_error(st, got, 400, "mova chat without a question", "invalid_messages")
            check_alive(srv, "%s chat" % name)
        finally:
            rc = srv.stop()
        check(rc == 0, "%s chat server: exit 0 after SIGTERM" % name)


def test_llm_only(vtok, work):
    """`vtok serve --llm DIR` alone: text chat (the answer = the same messages on the shapes
    LLaVA server, text only), /v1/models says kind llm, images and embeddings refused."""
    llm = os.path.join(SHAPES, "llava", "llm")
    msgs = [{"role": "user", "content": "What colour is the star?"}]
    answers = []
    for args, label in ((["--llm", llm], "llm"),
                        # "template" without a chat_template in the folder: vicuna_v1, as
                        # `vtok chat --format template` (vtok_chat_format_name)
                        (["--llm", llm, "--format", "template"], "template"),
                        (["--recipe", "llava-1.5", "--model", os.path.join(SHAPES, "llava"),
                          "--llm", llm], "recipe")):
        srv = sc.Server(vtok, args + ["--threads", "2"], os.path.join(work, "serve-%s.log"
                                                                        % label))
        try:
            srv.wait_ready()
            st, got = srv.post_json("/v1/chat/completions", {"messages": msgs, "max_tokens": 8})
            answers.append(got["choices"][0]["message"]["content"] if st == 200 else None)
            if label == "llm":
                st, h, data = srv.request("GET", "/v1/models")
                mj = json.loads(data) if st == 200 else {}
                check(st == 200 and mj["data"][0]["vtok"]["kind"] == "llm"
                      and mj["data"][0]["id"] == "llm" and mj["data"][0]["vtok"]["chat"],
                      "--llm alone: /v1/models kind llm, id from the folder")
                st, body = srv.post_json("/v1/embeddings", {"input": "a red circle"})
                check_error(st, body, 400, "embeddings on an LLM-only server", "unsupported")
                with open(os.path.join(SHAPES, "demo", "scene-2000000.png"), "rb") as f:
                    raw = f.read()
                st, body = srv.post_json("/v1/chat/completions", {"messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {
                        "url": sc.data_uri(raw)}}, {"type": "text", "text": "hi"}]}]})
                check_error(st, body, 400, "an image on an LLM-only server", "images_unsupported")
                check_alive(srv, "LLM-only server")
        finally:
            rc = srv.stop()
        check(rc == 0, "%s server: exit 0 after SIGTERM" % label)
    check(answers[0] is not None and answers[0] == answers[1] == answers[2],
          "--llm alone (and with --format template) answers text as the recipe server does "
          "(%r, %r, %r)" % tuple(answers))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vtok", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--skip-chat", action="store_true")
    ap.add_argument("--seed-dir", help="the work folder of check_recipes_gvt_seed.py (its tiny "
                    "SEED), for /v1/tokenize and /v1/detokenize")
    ap.add_argument("--mova-dir", help="check_mova.py's work folder (tiny MoVA) for chat")
    ap.add_argument("--slime-dir", help="check_slime.py's work folder (tiny SliME) for chat")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    r = subprocess.run([a.vtok, "serve", "--model", CLIP, "--port", "1", "--help"],
                       capture_output=True, text=True)
    if "built without the HTTP server" in r.stderr:
        print("skip: this vtok was built without libmicrohttpd")
        return 77
    test_main(a.vtok, a.work)
    test_queue_and_shutdown(a.vtok, a.work)
    test_text(a.vtok, a.work)
    if not a.skip_chat:
        test_chat(a.vtok, a.work)
        test_llm_only(a.vtok, a.work)
    test_seed(a.vtok, a.work, a.seed_dir)
    test_question_recipes(a.vtok, a.work, a.mova_dir, a.slime_dir)
    print("%d failure(s)" % len(failures))
    for f in failures:
        print("  " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
