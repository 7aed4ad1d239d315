#!/usr/bin/env python3
"""Train/serve skew in JPEG decoding: the runtime's decode of real frames against training's (Pillow).

    cargo build --example decode_frames
    python models/decode_skew.py --bin target/debug/examples/decode_frames \\
        DATASETS/towersmoke/images:200 DATASETS/firesmoke/images:100 'DATASETS/sequences/*/:81'

Each argument is a folder (a glob is allowed) and how many of its JPEGs to take, evenly spaced in name order.
The Rust example decodes every frame as the runtime does (--decoder image: with the `image` crate, the runtime's
decoder before it was matched to Pillow); this script reads the same files with the training loader
(data.load_rgb) and reports, per folder: channel values that differ (mean |d|, max |d|, fraction), frames
identical, and, for the shipped model in onnxruntime over every view the runtime scores (models/views.py),
mean/p99/max |score difference| per class and the views and frames whose alarm (models/wildfire-tiles.json
thresholds) one decoder raises and the other does not. --score-every K scores every Kth frame only (0: none).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import load_rgb  # noqa: E402
from views import OVERLAP, make_views, to_tensor  # noqa: E402


def pick(spec):
    where, _, n = spec.rpartition(":") if ":" in spec else (spec, "", "0")
    files = sorted(f for d in sorted(glob.glob(where)) for f in glob.glob(os.path.join(d, "*"))
                   if f.lower().endswith((".jpg", ".jpeg")))
    n = int(n) or len(files)
    if n < len(files):
        files = [files[i * len(files) // n] for i in range(n)]
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets", nargs="+", help="FOLDER_OR_GLOB[:N]")
    ap.add_argument("--bin", default=os.environ.get("DECODE_FRAMES_BIN"), help="the decode_frames example")
    ap.add_argument("--decoder", default="runtime", choices=["runtime", "image"])
    ap.add_argument("--model", default=os.path.join(HERE, "wildfire-tiles.onnx"))
    ap.add_argument("--score-every", type=int, default=1, help="score every Kth frame (0: compare pixels only)")
    a = ap.parse_args()
    if not a.bin:
        ap.error("give --bin (or DECODE_FRAMES_BIN): the decode_frames example built by cargo")
    side = json.load(open(os.path.splitext(a.model)[0] + ".json"))
    T = side["tile_size"]
    thr = np.array([side["thresholds"][c] for c in side["classes"]])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])

    def scores(views):
        return np.concatenate([sess.run(["scores"], {"input": to_tensor(views[i:i + 32])})[0]
                               for i in range(0, len(views), 32)])

    for spec in a.sets:
        files = pick(spec)
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([a.bin, "--decoder", a.decoder, tmp, *files], check=True,
                                 capture_output=True, text=True).stdout
            total = differing = identical = 0
            abs_sum = 0
            worst = 0
            A, B, FA, FB = [], [], [], []
            for i, line in enumerate(out.splitlines()):
                rec = json.loads(line)
                train = np.asarray(load_rgb(rec["file"]))
                run = np.fromfile(rec["rgb"], np.uint8).reshape(rec["height"], rec["width"], 3)
                assert run.shape == train.shape, rec["file"]
                d = np.abs(train.astype(np.int16) - run)
                total += d.size
                differing += int((d > 0).sum())
                abs_sum += int(d.sum())
                worst = max(worst, int(d.max()))
                identical += int(d.max() == 0)
                if a.score_every and i % a.score_every == 0:
                    sa = scores(make_views(Image.fromarray(train), T, OVERLAP)[1])
                    sb = scores(make_views(Image.fromarray(run), T, OVERLAP)[1])
                    A.append(sa)
                    B.append(sb)
                    FA.append(sa.max(0))
                    FB.append(sb.max(0))
        print(f"{spec}: {len(files)} frames ({a.decoder} decoder vs Pillow), {identical} identical; channel values: "
              f"mean |d| {abs_sum / total:.4f}, max |d| {worst}, differing {100 * differing / total:.2f} %")
        if not A:
            continue
        A, B, FA, FB = np.concatenate(A), np.concatenate(B), np.array(FA), np.array(FB)
        for k, c in enumerate(side["classes"]):
            d = np.abs(A[:, k] - B[:, k])
            pa, pb = A[:, k] >= thr[k], B[:, k] >= thr[k]
            fa, fb = FA[:, k] >= thr[k], FB[:, k] >= thr[k]
            print(f"  {c}: {len(A)} views of {len(FA)} frames, |score d| mean {d.mean():.4f} p99 "
                  f"{np.quantile(d, 0.99):.3f} max {d.max():.3f}; views over {thr[k]}: Pillow {pa.sum()}, "
                  f"runtime {pb.sum()}, Pillow only {(pa & ~pb).sum()}, runtime only {(pb & ~pa).sum()}; "
                  f"frames whose alarm differs {(fa != fb).sum()}")


if __name__ == "__main__":
    main()
