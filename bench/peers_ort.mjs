#!/usr/bin/env node
// ONNX Runtime (onnxruntime-node, CPU execution provider) peer of vtok's
// encoder benchmark.  Times session.run() on one exported model
// (bench/export_onnx.py) and prints ONE JSON line.
//
//   node bench/peers_ort.mjs --onnx FILE.onnx [--threads T] [--batch B] [--size S]
//                            [--iters N] [--warmup W] [--spin 0|1] [--pixels X.npy] [--out Y.npy]
//
// Session: intraOpNumThreads = T, interOpNumThreads = 1, executionMode
// 'sequential', graphOptimizationLevel 'all', CPU EP, ORT's other defaults
// (memory arena on, intra-op thread spinning on; --spin 0 sets the session
// config entry session.intra_op.allow_spinning = "0", ORT's analogue of
// OMP_WAIT_POLICY=PASSIVE).  Input: --pixels (float32
// .npy [B,3,S,S]) or seeded uniform random pixels in [-2, 2).  --out writes
// last_hidden_state of the first run as a float32 .npy (for accuracy checks).
// Requires `npm ci` in bench/ (onnxruntime-node, version pinned in package.json).

import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import ort from 'onnxruntime-node';

const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const a = { threads: 1, batch: 1, size: 0, iters: 5, warmup: 1, spin: 1, onnx: '', pixels: '', out: '' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const key = k.replace(/^--/, '');
    if (!(key in a) || v === undefined) {
      console.error(`usage: peers_ort.mjs --onnx FILE [--threads T] [--batch B] [--size S] [--iters N] ` +
        `[--warmup W] [--spin 0|1] [--pixels X.npy] [--out Y.npy]  (bad argument ${k})`);
      process.exit(2);
    }
    a[key] = typeof a[key] === 'number' ? Number(v) : v;
    i++;
  }
  if (!a.onnx) {
    console.error('peers_ort.mjs: --onnx is required');
    process.exit(2);
  }
  return a;
}

// Minimal .npy (v1/v2/v3, little-endian float32, C order) reader and writer.
function readNpy(path) {
  const buf = readFileSync(path);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error(`${path}: need float32 '<f4', got ${header}`);
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order not supported`);
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const off = hstart + hlen;
  const n = shape.reduce((x, y) => x * y, 1);
  const data = new Float32Array(n);
  Buffer.from(data.buffer).set(buf.subarray(off, off + 4 * n));
  return { shape, data };
}

function writeNpy(path, shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1');
  h[6] = 1;
  h[7] = 0;
  h.writeUInt16LE(header.length, 8);
  const f32 = Float32Array.from(data);
  writeFileSync(path, Buffer.concat([h, Buffer.from(header, 'latin1'), Buffer.from(f32.buffer)]));
}

function randomPixels(n, seed) {
  // xorshift32 -> uniform [-2, 2): roughly the range of normalized pixel_values
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = (s / 4294967296) * 4 - 2;
  }
  return out;
}

function median(xs) {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(a.onnx, {
    executionProviders: ['cpu'],
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: a.spin ? '1' : '0' } } },
  });
  const loadMs = performance.now() - t0;
  const inName = session.inputNames[0];
  const outName = session.outputNames[0];

  let input;
  if (a.pixels) {
    const x = readNpy(a.pixels);
    input = new ort.Tensor('float32', x.data, x.shape);
  } else {
    if (!a.size) {
      const meta = session.inputMetadata?.[0];
      const dims = meta?.shape;
      a.size = Array.isArray(dims) && typeof dims[2] === 'number' ? dims[2] : 224;
    }
    const shape = [a.batch, 3, a.size, a.size];
    input = new ort.Tensor('float32', randomPixels(shape.reduce((x, y) => x * y, 1), 1234), shape);
  }
  const batch = input.dims[0];

  let first = null;
  for (let i = 0; i < a.warmup; i++) {
    const r = await session.run({ [inName]: input });
    if (first === null) first = r[outName];
  }
  const times = [];
  for (let i = 0; i < a.iters; i++) {
    const t = performance.now();
    const r = await session.run({ [inName]: input });
    times.push(performance.now() - t);
    if (first === null) first = r[outName];
  }
  if (a.out && first) writeNpy(a.out, first.dims, first.data);
  const med = times.length ? median(times) : NaN;
  const pkg = require('onnxruntime-node/package.json');
  console.log(JSON.stringify({
    peer: 'onnxruntime-node', ort: pkg.version, node: process.versions.node, onnx: a.onnx,
    threads: a.threads, spin: a.spin, batch, iters: a.iters, warmup: a.warmup, load_ms: +loadMs.toFixed(1),
    times_ms: times.map((t) => +t.toFixed(3)), median_ms: +med.toFixed(3),
    ms_per_image: +(med / batch).toFixed(3), min_ms: times.length ? +Math.min(...times).toFixed(3) : NaN,
  }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
