#!/usr/bin/env python3
"""Copy what the pixel stage reads (`train.py --pixel-only`) into one folder small enough to travel with the
repository to an accelerator machine, where ../shared is not (the library's `device` tool sends at most 64 MiB,
the repository's 16 MB included). Validation stays behind: it is scored here, from the original frames.

    python models/device_bundle.py OUT --scene-negatives RMN/hpwren_20160604_rm-n-mobo-c [--firesmoke-mb 7]

OUT (outside the repository, or in a folder .git/info/exclude ignores) then holds:
  datasets/towersmoke   the training scenes' frames (models/tower_split.json) and masks, and every row of
                        labels.csv and boxes.jsonl (the validation frames' images stay behind). A frame longer
                        than --working-long-side is stored shrunk to it the way the runtime shrinks it
                        (views.py to_working) and re-encoded as JPEG --quality, its mask shrunk with it
                        (nearest); boxes are fractions of the frame and stay. The pixel stage would shrink the
                        frame to that size before cutting views anyway, so what changes is one JPEG round
                        trip of 98 of the 582 frames.
  datasets/firesmoke    a seeded random draw of the firesmoke training images (whole files, as they are) up to
                        --firesmoke-mb: the pixel stage's reminder of flame and web/CCTV photos. The full pool
                        is 157 MB, so the draw is smaller than the quarter of it (about 1,000 images) that the
                        recipe cuts each epoch here: pass --pixel-firesmoke 1 on the device.
  datasets/sequences    empty folders named as the shared test sequences, so load_scene_negatives still refuses them.
  scene/NAME            the scene negatives' frames taken --scene-negatives-before seconds or more before
                        ignition, shrunk and re-encoded as the big tower frames are, with their labels.csv rows.
  imagenet_bn.pt        the ImageNet BatchNorm state (net.py batchnorm_state, 0.3 MB), for --imagenet-bn: the
                        18 MB ImageNet weights package is not needed there, as every weight comes from the
                        --state ONNX file.
  lib/                  the efficientnet-lite-pytorch package's code (124 KB), for PYTHONPATH.

On the device, from the repository root:
    PYTHONPATH=OUT/lib python models/train.py --pixel-only --state models/wildfire-tiles.onnx \\
        --imagenet-bn OUT/imagenet_bn.pt --data OUT/datasets --scene-negatives OUT/scene/NAME \\
        --pixel-firesmoke 1 --pixel-epochs N --device cuda --out RUN
"""
import argparse
import csv
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import load_index, load_scene_negatives, load_tower_index  # noqa: E402
from net import WildfireNet, batchnorm_state  # noqa: E402
from views import to_working  # noqa: E402


def rows_of(path):
    with open(path) as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def write_rows(path, fields, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)


def write_boxes(src, dst, files):
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            if json.loads(line)["file"] in files:
                out.write(line)


def copy_frame(src, dst, long_side, quality, mask_src=None, mask_dst=None):
    """Copies a frame as it is, or shrunk to `long_side` (and its mask with it) when it is longer."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    img = Image.open(src)
    if long_side is None or max(img.size) <= long_side:
        shutil.copyfile(src, dst)
        if mask_src:
            shutil.copyfile(mask_src, mask_dst)
        return False
    small = to_working(img.convert("RGB"), long_side)
    small.save(dst, "JPEG", quality=quality)
    if mask_src:
        Image.open(mask_src).resize(small.size, Image.NEAREST).save(mask_dst)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--scene-negatives", action="append", default=[], metavar="DIR")
    ap.add_argument("--scene-negatives-before", type=int, default=1200)
    ap.add_argument("--firesmoke-mb", type=float, default=7.0)
    ap.add_argument("--working-long-side", type=int, default=960)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--seed", type=int, default=0, help="the split seed (train.py --seed) and the draw's")
    a = ap.parse_args()
    if os.path.exists(a.out):
        sys.exit(f"error: {a.out} exists; give a new folder")
    ds = os.path.join(a.out, "datasets")

    # towersmoke: the training scenes
    src = os.path.join(a.data, "towersmoke")
    train = [it for it in load_tower_index(a.data) if it["split"] == "train"]
    # every row and box, the validation frames' too (without their images): the pixel stage reads the
    # training frames alone, and load_tower_index checks TOWER_EXTRA_BOXES against the whole list
    os.makedirs(os.path.join(ds, "towersmoke", "masks"))
    for name in ("labels.csv", "boxes.jsonl"):
        shutil.copyfile(os.path.join(src, name), os.path.join(ds, "towersmoke", name))
    shrunk = 0
    for it in train:
        mask_dst = it["mask"] and os.path.join(ds, "towersmoke", "masks", os.path.basename(it["mask"]))
        shrunk += copy_frame(it["path"], os.path.join(ds, "towersmoke", it["file"]), a.working_long_side,
                             a.quality, it["mask"], mask_dst)
    print(f"towersmoke: {len(train)} training frames, {shrunk} of them shrunk to {a.working_long_side} px")

    # firesmoke: a seeded draw of training images up to the budget
    src = os.path.join(a.data, "firesmoke")
    items = [it for it in load_index(a.data, a.seed) if it["split"] == "train"]
    order = np.random.default_rng(a.seed).permutation(len(items))
    budget, picked = a.firesmoke_mb * 1e6, []
    for i in order:
        size = os.path.getsize(items[i]["path"])
        if size <= budget:
            budget -= size
            picked.append(items[i])
    files = {it["file"] for it in picked}
    fields, rows = rows_of(os.path.join(src, "labels.csv"))
    write_rows(os.path.join(ds, "firesmoke", "labels.csv"), fields, [r for r in rows if r["file"] in files])
    write_boxes(os.path.join(src, "boxes.jsonl"), os.path.join(ds, "firesmoke", "boxes.jsonl"), files)
    for it in picked:
        dst = os.path.join(ds, "firesmoke", it["file"])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(it["path"], dst)
    print(f"firesmoke: {len(picked)} of {len(items)} training images (flame {sum(it['flame'] == 1 for it in picked)},"
          f" smoke {sum(it['smoke'] == 1 for it in picked)})")

    for name in os.listdir(os.path.join(a.data, "sequences")):
        if os.path.isdir(os.path.join(a.data, "sequences", name)):
            os.makedirs(os.path.join(ds, "sequences", name))

    # scene negatives: the frames the recipe uses, shrunk as it would shrink them
    for d in a.scene_negatives:
        name = os.path.basename(os.path.normpath(d))
        keep = {os.path.basename(it["path"]) for it in load_scene_negatives(a.data, [d], a.scene_negatives_before)}
        fields, all_rows = rows_of(os.path.join(d, "labels.csv"))
        rows = [r for r in all_rows if r["frame"] in keep]
        # the rule needs the first smoke frame to count from: keep it as a row, without its image
        first_smoke = min((r for r in all_rows if r["smoke"] == "1"), key=lambda r: int(r["unix_time"]))
        write_rows(os.path.join(a.out, "scene", name, "labels.csv"), fields, rows + [first_smoke])
        for r in rows:
            copy_frame(os.path.join(d, r["frame"]), os.path.join(a.out, "scene", name, r["frame"]),
                       a.working_long_side, a.quality)
        print(f"scene negatives {name}: {len(rows)} frames")

    torch.save(batchnorm_state(WildfireNet(224)), os.path.join(a.out, "imagenet_bn.pt"))
    import efficientnet_lite_pytorch
    shutil.copytree(os.path.dirname(efficientnet_lite_pytorch.__file__),
                    os.path.join(a.out, "lib", "efficientnet_lite_pytorch"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(a.out) for f in fs)
    print(f"{a.out}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
