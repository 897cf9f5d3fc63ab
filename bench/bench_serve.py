#!/usr/bin/env python3
"""Load test of `vtok serve` on loopback: N concurrent clients for a while.

    /usr/bin/python3 bench/bench_serve.py --vtok build/vtok [--clients 64] [--duration 60]

Starts `vtok serve --model MODEL` on a free 127.0.0.1 port (nothing leaves the
machine), warms it up, then runs --clients threads, each on its own
keep-alive connection posting /v1/embeddings requests of --images images
(distinct PNGs, built once) back to back for --warmup (3) + --duration
seconds (at most 600; only the last --duration count). Reports throughput (requests/s, images/s), latency p50 / p99, errors
(any status but 200, or a connection failure), the server's RSS at the
start and end of the run (and its peak), and the mean batch size from
/metrics. With --compare (default) the same run is repeated with
--max-batch-images 1 (one image per encoder call): the ratio of images/s
is the batching gain. The clients are Python threads: on a machine with few
cores they share the CPUs with the server, which the numbers include.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "serve"))
import serve_client as sc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def run(a, max_batch, log):
    srv = sc.Server(a.vtok, ["--model", a.model, "--max-batch-images", str(max_batch),
                             "--max-wait-ms", str(a.max_wait_ms), "--queue", str(a.queue),
                             "--max-connections", str(max(256, a.clients + 16))]
                    + (["--threads", str(a.threads)] if a.threads else []), log)
    try:
        srv.wait_ready()
        bodies = []
        for i in range(16):
            uris = [sc.data_uri(sc.test_image(i * a.images + k, a.size)) for k in range(a.images)]
            bodies.append(json.dumps({"input": uris}).encode())
        headers = {"Content-Type": "application/json"}
        for b in bodies[:4]:  # warm-up: contexts planned, pages touched
            st, _, _ = srv.request("POST", "/v1/embeddings", b, headers=headers)
            if st != 200:
                raise RuntimeError("warm-up request failed: %d" % st)
        lat, errors, lock = [], [0], threading.Lock()
        stop_at, measure_from = [0.0], [0.0]
        start = threading.Barrier(a.clients + 1)

        def client(ci):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            mine, bad = [], 0
            start.wait()
            k = ci
            while time.time() < stop_at[0]:
                body = bodies[k % len(bodies)]
                k += 1
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v1/embeddings", body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    ok = r.status == 200 and b'"embedding"' in data
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
                if time.time() < measure_from[0]:
                    continue  # the warm-up under load: not counted
                if ok:
                    mine.append(time.perf_counter() - t0)
                else:
                    bad += 1
            conn.close()
            with lock:
                lat.extend(mine)
                errors[0] += bad

        ts = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.clients)]
        for t in ts:
            t.start()
        measure_from[0] = time.time() + a.warmup
        stop_at[0] = measure_from[0] + a.duration
        start.wait()
        # the same load for --warmup seconds first: the contexts grow to the
        # batch sizes the load makes, so the RSS at the start is the steady one
        time.sleep(max(0.0, measure_from[0] - time.time()))
        t_start = time.time()
        rss0 = sc.rss_kb(srv.proc.pid)
        m0 = srv.request("GET", "/metrics", auth=False)[2].decode()
        rss_peak = rss0
        while time.time() < stop_at[0]:
            time.sleep(min(1.0, max(0.0, stop_at[0] - time.time())))
            rss_peak = max(rss_peak, sc.rss_kb(srv.proc.pid))
        for t in ts:
            t.join(120)
        wall = time.time() - t_start
        rss1 = sc.rss_kb(srv.proc.pid)
        m1 = srv.request("GET", "/metrics", auth=False)[2].decode()
        batches = (sc.metric(m1, "vtok_batch_images_count") or 0) - \
            (sc.metric(m0, "vtok_batch_images_count") or 0)
        imgs = (sc.metric(m1, "vtok_batch_images_sum") or 0) - \
            (sc.metric(m0, "vtok_batch_images_sum") or 0)
        alive = srv.alive()
    finally:
        rc = srv.stop()
    n = len(lat)
    return {
        "max_batch_images": max_batch, "clients": a.clients, "images_per_request": a.images,
        "seconds": round(wall, 2), "requests": n, "errors": errors[0],
        "requests_per_s": round(n / wall, 1), "images_per_s": round(n * a.images / wall, 1),
        "p50_ms": round(percentile(lat, 50) * 1e3, 2), "p99_ms": round(percentile(lat, 99) * 1e3, 2),
        "rss_start_mb": round(rss0 / 1024, 1), "rss_end_mb": round(rss1 / 1024, 1),
        "rss_peak_mb": round(rss_peak / 1024, 1),
        "mean_batch": round(imgs / batches, 2) if batches else 0,
        "alive_after": alive, "exit_status": rc,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vtok", default=os.path.join(ROOT, "build", "vtok"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "tiny-clip"))
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=3, help="seconds of load before measuring")
    ap.add_argument("--images", type=int, default=1, help="images per request")
    ap.add_argument("--size", type=int, default=80, help="side of the PNGs sent")
    ap.add_argument("--max-batch-images", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=5)
    ap.add_argument("--queue", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-compare", dest="compare", action="store_false",
                    help="skip the --max-batch-images 1 run")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--work", default="/tmp")
    a = ap.parse_args()
    if not 1 <= a.clients <= 1024 or not 0 < a.duration <= 600:
        ap.error("--clients 1..1024, --duration up to 600 s (the test is bounded)")
    results = [run(a, a.max_batch_images, os.path.join(a.work, "bench-serve.log"))]
    if a.compare and a.max_batch_images > 1:
        results.append(run(a, 1, os.path.join(a.work, "bench-serve-b1.log")))
    print("| max batch | clients | img/req | req/s | img/s | p50 ms | p99 ms | errors | "
          "mean batch | RSS start / end / peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print("| %d | %d | %d | %.1f | %.1f | %.2f | %.2f | %d | %.2f | %.1f / %.1f / %.1f |" % (
            r["max_batch_images"], r["clients"], r["images_per_request"], r["requests_per_s"],
            r["images_per_s"], r["p50_ms"], r["p99_ms"], r["errors"], r["mean_batch"],
            r["rss_start_mb"], r["rss_end_mb"], r["rss_peak_mb"]))
    if len(results) == 2 and results[1]["images_per_s"]:
        print("batching gain (images/s, max batch %d vs 1): %.2fx" % (
            a.max_batch_images, results[0]["images_per_s"] / results[1]["images_per_s"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    bad = any(r["errors"] or not r["alive_after"] or r["exit_status"] != 0 for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
