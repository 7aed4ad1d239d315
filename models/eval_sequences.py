#!/usr/bin/env python3
"""Replay the shared tower-camera sequences through the shipped ONNX model (onnxruntime), using the exact
runtime view definition (models/views.py). Prints per-frame max-over-views smoke/flame scores and a summary.

    /root/wwvenv/bin/python models/eval_sequences.py --model models/wildfire-tiles.onnx \
        --seqs ../shared/datasets/sequences

Evaluation only: these sequences are never used for training or threshold selection.
"""
import argparse
import csv
import glob
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from views import make_views, to_tensor, OVERLAP  # noqa: E402

IGNITION = 40


def frame_scores(sess, img, T, batch=32):
    rects, views = make_views(img, T, OVERLAP)
    out = []
    for i in range(0, len(views), batch):
        out.append(sess.run(["scores"], {"input": to_tensor(views[i:i + batch])})[0])
    s = np.concatenate(out)
    return s.max(0), int(s[:, 0].argmax()), rects


def summarize(name, scores, thr):
    res = {"sequence": name}
    for c, cname in enumerate(("smoke", "flame")):
        over = [i for i, s in enumerate(scores) if s[c] > thr[cname]]
        pre = [i for i in over if i < IGNITION]
        post = [i for i in over if i >= IGNITION]
        # runtime-style confirmation: 2 of the last 3 frames over threshold
        conf = [i for i in range(IGNITION, len(scores))
                if sum(scores[j][c] > thr[cname] for j in range(max(0, i - 2), i + 1)) >= 2]
        conf_pre = [i for i in range(0, IGNITION)
                    if sum(scores[j][c] > thr[cname] for j in range(max(0, i - 2), i + 1)) >= 2]
        res[cname] = dict(threshold=thr[cname], frames_over_before_ignition=pre,
                          first_over_at_or_after_ignition=post[0] if post else None,
                          delay_frames=(post[0] - IGNITION) if post else None,
                          first_confirmed_2of3=conf[0] if conf else None,
                          confirmed_before_ignition=conf_pre,
                          frames_over_after_ignition=len(post), frames_after_ignition=len(scores) - IGNITION,
                          max_before_ignition=round(float(max(s[c] for s in scores[:IGNITION])), 4))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/wildfire-tiles.onnx")
    ap.add_argument("--sidecar", default=None, help="defaults to the model path with .json")
    ap.add_argument("--seqs", default="../shared/datasets/sequences")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    side = json.load(open(args.sidecar or os.path.splitext(args.model)[0] + ".json"))
    T, thr = side["tile_size"], side["thresholds"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    summaries, perframe = [], {}
    for d in sorted(glob.glob(os.path.join(args.seqs, "*/"))):
        name = os.path.basename(os.path.normpath(d))
        rows = list(csv.DictReader(open(os.path.join(d, "labels.csv"))))
        scores = []
        print(f"== {name}  (T={T}, thresholds smoke {thr['smoke']} flame {thr['flame']})")
        for r in rows:
            img = Image.open(os.path.join(d, r["frame"] if r["frame"].endswith(".jpg") else r["frame"] + ".jpg"))
            s, arg, rects = frame_scores(sess, img.convert("RGB"), T)
            scores.append(s)
            if not args.quiet:
                flag = ("S" if s[0] > thr["smoke"] else "-") + ("F" if s[1] > thr["flame"] else "-")
                print(f"{r['frame']:>14} smoke {s[0]:.4f} flame {s[1]:.4f} {flag} label {r['smoke']}/{r['flame']}"
                      f" top-smoke-view {arg} {list(rects[arg])}", flush=True)
        summ = summarize(name, scores, thr)
        summaries.append(summ)
        perframe[name] = [[round(float(a), 4), round(float(b), 4)] for a, b in scores]
        print(json.dumps(summ, indent=1), flush=True)
    if args.json_out:
        json.dump({"summaries": summaries, "per_frame_max": perframe}, open(args.json_out, "w"), indent=1)


if __name__ == "__main__":
    main()
