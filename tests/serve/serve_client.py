"""A small client for `vtok serve`, shared by tests/serve/test_serve.py and
bench/bench_serve.py: start a server on a free loopback port, wait for it to
be ready, send requests. Standard library only (http.client, threading)."""
import base64
import http.client
import io
import json
import os
import re
import signal
import struct
import subprocess
import threading
import time
import zlib


class Server:
    """`vtok serve ARGS --port 0`: the port is read from its first stderr line."""

    def __init__(self, vtok, args, log_path, api_key=None, env=None):
        self.api_key = api_key
        self.log_path = log_path
        self.log = open(log_path, "w+b")
        cmd = [vtok, "serve", "--host", "127.0.0.1", "--port", "0"] + list(args)
        if api_key:
            cmd += ["--api-key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=env)
        self.port = None
        deadline = time.time() + 30
        while time.time() < deadline and self.port is None:
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", self.stderr())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                raise RuntimeError("vtok serve exited: " + self.stderr().decode(errors="replace"))
            else:
                time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise RuntimeError("vtok serve did not say its port")

    def stderr(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        seen = set()
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("vtok serve exited: " + self.stderr().decode(errors="replace"))
            try:
                st, _, _ = self.request("GET", "/health", auth=False)
                seen.add(st)
                if st == 200:
                    return seen
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("vtok serve not ready after %d s" % timeout)

    def alive(self):
        return self.proc.poll() is None

    def request(self, method, path, body=None, headers=None, auth=True, timeout=60, conn=None):
        """(status, headers dict, body bytes). body: bytes, or an object sent as JSON."""
        h = {}
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if auth and self.api_key:
            h["Authorization"] = "Bearer " + self.api_key
        h.update(headers or {})
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if own:
                conn.close()

    def post_json(self, path, obj, **kw):
        st, h, data = self.request("POST", path, obj, **kw)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM, then the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def rss_kb(pid):
    """Resident set size of a process in KiB (Linux /proc)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def data_uri(raw, mime="image/png"):
    return "data:%s;base64,%s" % (mime, base64.b64encode(raw).decode())


def png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload +
            struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_raw(width, height, rows):
    """A PNG (8-bit RGB) from rows of bytes, without Pillow."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def png_bomb(width=60000, height=60000):
    """A valid PNG header that declares width x height pixels, with a few
    bytes of data: a decoder that allocates from the header is the victim."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + png_chunk(b"IEND", b""))


def test_image(seed, size=80):
    """A deterministic RGB PNG of size x size whose content depends on seed."""
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            row += bytes(((x * (seed + 3) + y * 7) & 255, (y * (seed + 5) + x) & 255,
                          ((x ^ y) * (seed + 1)) & 255))
        rows.append(bytes(row))
    return png_raw(size, size, rows)


def floats_b64(s):
    """OpenAI's base64 encoding_format: little-endian float32 bytes."""
    raw = base64.b64decode(s)
    return list(struct.unpack("<%df" % (len(raw) // 4), raw))


def metric(text, name, labels=None):
    """A sample's value from Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, val = line.rpartition(" ")
        if key == name or (labels and key == "%s{%s}" % (name, labels)):
            return float(val)
    return None
