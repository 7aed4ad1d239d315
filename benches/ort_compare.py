#!/usr/bin/env python3
"""tract (our detector) against onnxruntime on the same model and the same tiles, one thread each.

    python benches/ort_compare.py [--tiles 16] [--repeats 5]

Needs numpy and onnxruntime (models/requirements.txt). Draws deterministic tiles (smooth colour fields
with noise, seed 0), runs them through models/wildfire-tiles.onnx in onnxruntime (intra- and inter-op
threads 1, batch 1 and one batch of all tiles) and through `cargo run --release --example tile_latency`
(tract, the detector's own code path), checks the scores agree within 1e-4, and prints the latency ratio
tract / onnxruntime. Reports the median of the repeats.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "wildfire-tiles.onnx")
GFLOP_PER_TILE = 0.776  # 0.388 GMAC, models/README.md


def make_tiles(n, t, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:t, 0:t] / t
    tiles = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 1, (3, 3))
        field = np.stack([a[i] * xx + b[i] * yy + c[i] for i in range(3)]) / 3
        field += rng.normal(0, 0.03, field.shape)
        tiles.append(np.clip(field, 0, 1))
    return np.ascontiguousarray(np.stack(tiles).astype(np.float32))


def time_ort(sess, tiles, batch, repeats):
    def once():
        out = []
        for i in range(0, len(tiles), batch):
            out.append(sess.run(["scores"], {"input": tiles[i:i + batch]})[0])
        return np.concatenate(out)
    scores = once()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        runs.append((time.perf_counter() - start) * 1e3 / len(tiles))
    return float(np.median(runs)), scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    side = json.load(open(os.path.join(ROOT, "models", "wildfire-tiles.json")))
    tiles = make_tiles(args.tiles, side["tile_size"])

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])
    ort_1, ort_scores = time_ort(sess, tiles, 1, args.repeats)
    ort_n, _ = time_ort(sess, tiles, len(tiles), args.repeats)

    with tempfile.NamedTemporaryFile(suffix=".f32", delete=False) as f:
        f.write(tiles.astype("<f4").tobytes())
        path = f.name
    try:
        out = subprocess.run(
            ["cargo", "run", "--quiet", "--release", "--example", "tile_latency", "--", path,
             str(args.repeats)],
            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    tract = json.loads(out.strip().splitlines()[-1])
    tract_scores = np.array(tract["scores"], np.float32).reshape(-1, 2)
    diff = float(np.abs(tract_scores - ort_scores).max())
    best_ort = min(ort_1, ort_n)
    print(f"tiles: {len(tiles)} x 3 x {side['tile_size']}^2, one thread each, median of {args.repeats}")
    print(f"onnxruntime {ort.__version__}: batch 1 {ort_1:.1f} ms/tile, batch {len(tiles)} {ort_n:.1f} ms/tile")
    print(f"tract (detector, one tile per run): {tract['ms_per_tile']:.1f} ms/tile "
          f"= {GFLOP_PER_TILE / tract['ms_per_tile'] * 1e3:.1f} GFLOP/s")
    print(f"max |tract - onnxruntime| = {diff:.2e}")
    print(f"ratio tract / onnxruntime (best batch) = {tract['ms_per_tile'] / best_ort:.2f}")
    if diff > 1e-4:
        sys.exit("the two runtimes disagree by more than 1e-4: the comparison is not of the same model")


if __name__ == "__main__":
    main()
