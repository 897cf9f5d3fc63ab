"""The GIL is released while the library computes; objects are safe to share
between threads (calls serialize on the object's lock)."""
import threading
import time

import numpy as np

from conftest import TINY_CLIP


def test_gil_released_during_long_encode(vtok):
    """While one thread encodes a large batch, a pure-Python loop in this
    thread keeps running. Were the GIL held through the call (ctypes.PyDLL),
    the loop would run only while a per-layer callback hands the GIL over,
    and stall for the rest: stalls of over 10 ms would cover nearly all of
    the encode (measured: ~100% with PyDLL, ~0% with CDLL)."""
    m = vtok.Model(TINY_CLIP, threads=1)
    px = np.random.default_rng(0).standard_normal((1024, 3, 64, 64)).astype(np.float32)
    done = threading.Event()
    span = []

    def work():
        t0 = time.perf_counter()
        m.encode(px)
        span.append((t0, time.perf_counter()))
        done.set()
    t = threading.Thread(target=work)
    ticks = []
    t.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
    t.join()
    t0, t1 = span[0]
    inside = [x for x in ticks if t0 <= x <= t1]
    gaps = np.diff([t0] + inside + [t1])
    enc = t1 - t0
    assert enc > 0.1, "encode too short to tell (%.3f s)" % enc
    assert len(inside) > 1000
    stalled = float(gaps[gaps > 0.01].sum())
    assert stalled < 0.5 * enc, "the loop stalled %.3f s of a %.3f s encode" % (stalled, enc)


def test_shared_model_from_threads(vtok):
    """Eight threads share one Model (each a different input): every result
    equals the one-thread result for its input."""
    m = vtok.Model(TINY_CLIP, threads=1)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((2, 3, 64, 64)).astype(np.float32) for _ in range(8)]
    want = [m.encode(x)["pooler_output"] for x in inputs]
    got = [None] * 8

    def work(i):
        for _ in range(5):
            got[i] = m.encode(inputs[i])["pooler_output"]
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


def test_ctrl_c_stops_a_long_encode(vtok):
    """SIGINT during an encode on the main thread: KeyboardInterrupt comes
    out of encode() within a step or two, not after the whole batch, and
    the model works afterwards."""
    import os
    import signal
    import pytest
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a custom handler here")
    m = vtok.Model(TINY_CLIP, threads=1)
    px = np.zeros((1024, 3, 64, 64), np.float32)
    t0 = time.perf_counter()
    m.encode(px)
    full = time.perf_counter() - t0
    timer = threading.Timer(0.1 * full, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        m.encode(px)
    took = time.perf_counter() - t0
    timer.join()
    assert took < 0.7 * full, "interrupted after %.3f s of a %.3f s encode" % (took, full)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert m.encode(px[:1])["last_hidden_state"].shape == (1, 65, 64)
