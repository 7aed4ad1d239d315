#!/usr/bin/env python3
"""Screen a training run on the shared tower sequences in seconds, without exporting or replaying it.

    python models/screen_sequences.py --cache DIR --state DIR/state_models.pt \
        --sidecar models/wildfire-tiles.json

The frozen trunk's block-12 features of every view of every sequence frame are cached once in --cache
(the trunk ONNX that train.py writes there); each run is then scored by running only its trained top
(the state train.py saves as state_<out>.pt) and a Python copy of the runtime confirmer (src/confirm.rs
defaults: a tile and its 8 neighbours hot in 2 of the last 3 frames, keep at 0.7x the threshold, 3 clear
frames end an incident, then 10 frames of cooldown for the cells it covered; smoke only: at the
sequences' 60 s frames these are the runtime's clear_s = 180 and cooldown_s = 600). For the shipped model it agrees with the Rust
replay. Evaluation only: the sequences are never used for training or for choosing thresholds.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import load_rgb  # noqa: E402
from views import make_views, to_tensor, OVERLAP  # noqa: E402
from net import WildfireNet  # noqa: E402

IGNITION = 40  # frame index of ignition in the shared sequences


def sequence_features(seq_dir, cache, T):
    """Block-12 features (fp16) of every view of every frame, cached in `cache`."""
    import onnxruntime as ort
    name = os.path.basename(os.path.normpath(seq_dir))
    path = os.path.join(cache, f"seq_{name}.npz")
    if not os.path.exists(path):
        sess = ort.InferenceSession(os.path.join(cache, f"trunk_T{T}.onnx"), providers=["CPUExecutionProvider"])
        feats, frame = [], []
        for i, f in enumerate(sorted(glob.glob(os.path.join(seq_dir, "frame_*.jpg")))):
            rects, views = make_views(load_rgb(f), T, OVERLAP)
            for j in range(0, len(views), 64):
                feats.append(sess.run(None, {"input": to_tensor(views[j:j + 64])})[0].astype(np.float16))
            frame += [i] * len(views)
        np.savez(path, feat=np.concatenate(feats), frame=np.array(frame), rects=np.array(rects))
    z = np.load(path)
    return name, z["feat"], z["frame"], z["rects"]


def confirm(S, rects, thr, keep_factor=0.7, window=3, required=2, clear_frames=3, cooldown=10):
    """S: frames x views smoke scores. Returns the frames where incidents start."""
    xs = sorted(set(int(r[0]) for r in rects[1:]))
    ys = sorted(set(int(r[1]) for r in rects[1:]))
    rows, cols = len(ys), len(xs)
    history, active, clear, cool_until, starts = [], False, 0, -1, []
    region = cool_cells = np.zeros((rows, cols), bool)  # an incident's cells; those held back after it
    for f in range(len(S)):
        hot = np.zeros((rows, cols), bool)
        for v in np.where(S[f] >= thr)[0]:
            if v == 0:  # a hot whole-frame view heats every cell
                hot[:] = True
                continue
            r, c = divmod(int(v) - 1, cols)
            hot[max(0, r - 1):r + 2, max(0, c - 1):c + 2] = True
        history = (history + [hot])[-window:]
        if active:
            region = region | hot
            clear = 0 if S[f].max() >= keep_factor * thr else clear + 1
            if clear >= clear_frames:
                active, cool_until, cool_cells, history = False, f + cooldown, region, []
            continue
        confirmed = history[-1] & (sum(h.astype(int) for h in history) >= required)
        if f < cool_until:
            confirmed &= ~cool_cells
        if confirmed.any():
            active, clear, region = True, 0, confirmed
            starts.append(f)
    return starts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True, help="a run's torch state (train.py writes state_<out>.pt in --cache)")
    ap.add_argument("--sidecar", required=True, help="the run's wildfire-tiles.json (tile size, thresholds)")
    ap.add_argument("--seqs", default="../shared/datasets/sequences")
    ap.add_argument("--cache", default=os.environ.get("WILDFIRE_TRAIN_CACHE"),
                    help="folder outside the repository for feature caches and run states "
                         "[default: $WILDFIRE_TRAIN_CACHE]")
    args = ap.parse_args()
    if not args.cache:
        ap.error("--cache DIR (or $WILDFIRE_TRAIN_CACHE) is needed: a folder outside the repository")
    side = json.load(open(args.sidecar))
    T, thr = side["tile_size"], side["thresholds"]["smoke"]
    torch.set_num_threads(2)
    state = torch.load(args.state)
    net = WildfireNet(T, pretrained=False, head="map", width=state["proj.weight"].shape[0])
    net.load_state_dict(state)
    net.eval()
    for seq in sorted(glob.glob(os.path.join(args.seqs, "*/"))):
        name, feat, frame, rects = sequence_features(seq, args.cache, T)
        with torch.no_grad():
            s = np.concatenate([torch.sigmoid(net.head_from_map(net.top_map(
                torch.from_numpy(feat[i:i + 256].astype(np.float32))))).numpy()[:, 0]
                for i in range(0, len(feat), 256)])
        S = s.reshape(frame.max() + 1, -1)
        starts = confirm(S, rects, thr)
        pre, post = S[:IGNITION].max(1), S[IGNITION:].max(1)
        print(json.dumps({"sequence": name, "threshold": thr,
                          "false_alarms": [f for f in starts if f < IGNITION],
                          "first_detection": next((f for f in starts if f >= IGNITION), None),
                          "frames_over_threshold_before": int((pre >= thr).sum()),
                          "frames_over_threshold_after": int((post >= thr).sum()),
                          "max_before_ignition": round(float(pre.max()), 3),
                          "max_after_ignition": round(float(post.max()), 3)}))


if __name__ == "__main__":
    main()
