"""Dataset indexing, seeded group split, tile labelling and the synthetic plume generator."""
import csv
import hashlib
import json
import os
import re

import numpy as np
from PIL import Image, ImageFilter

from views import view_rects

CLASSES = ("smoke", "flame")
VAL_FRAC = {"xiapinquan": 0.15, "Abonia1": 0.22, "aryanraj2713": 0.15, "talalahmad27": 0.15}


def _unit(key, seed):
    """Deterministic pseudo-random number in [0,1) from a string key (seeded, platform independent)."""
    h = hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()
    return int(h[:12], 16) / float(1 << 48)


def group_of(row):
    src = row["source"]
    owner = src.split("/")[0]
    hint = row["split_hint"]
    if hint.startswith("group:"):
        return owner, hint
    if owner == "Abonia1":
        name = src.rsplit("/", 1)[-1]
        name = name.split(".rf.")[0]
        m = re.match(r"img_(\d+)", name)
        if m:  # numbered frames: consecutive numbers come from the same clip; bucket by 40
            return owner, f"abonia:img:{int(m.group(1)) // 40}"
        stem = re.sub(r"(_mp4|_jpg|_png|_jpeg).*$", "", name)
        stem = re.sub(r"[-_]\d+$", "", stem)
        return owner, f"abonia:{stem}"
    return owner, "file:" + row["file"]


def load_index(data_root, seed=0):
    """Returns list of dicts: file, path, smoke, flame, owner, group, split, boxes (list or None)."""
    root = os.path.join(data_root, "firesmoke")
    boxes = {}
    with open(os.path.join(root, "boxes.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            boxes[o["file"]] = o["boxes"]
    items = []
    with open(os.path.join(root, "labels.csv")) as f:
        for row in csv.DictReader(f):
            owner, group = group_of(row)
            hint = row["split_hint"]
            if owner == "plasmapotatos":
                # the 44-frame rm-n fire is the only multi-frame tower smoke: keep it whole in train;
                # the four single FIgLib frames (other fires) go to validation
                split = "train" if group == "group:hpwren_20160604_rm-n" else "val"
            elif owner == "aryanraj2713" and hint == "test":
                split = "val"
            else:
                split = "val" if _unit(group, seed) < VAL_FRAC[owner] else "train"
            items.append(dict(file=row["file"], path=os.path.join(root, row["file"]),
                              smoke=int(row["smoke"]), flame=int(row["flame"]), owner=owner,
                              group=group, split=split, boxes=boxes.get(row["file"])))
    return items


def tile_labels(item, rect, img_w, img_h, pos_box_frac=0.30, pos_tile_frac=0.10):
    """Label a native tile rect (x,y,w,h) of an image. 1 / 0 / -1 (masked) per class."""
    x, y, w, h = rect
    out = []
    for c in CLASSES:
        lab = item[c]
        if lab == 0:
            out.append(0)
            continue
        if lab == -1 or item["boxes"] is None:
            out.append(-1)
            continue
        cboxes = [b for b in item["boxes"] if b[0] == c]
        if not cboxes:
            out.append(-1)
            continue
        val = 0
        for _, xc, yc, bw, bh in cboxes:
            bx0, by0 = (xc - bw / 2) * img_w, (yc - bh / 2) * img_h
            bx1, by1 = (xc + bw / 2) * img_w, (yc + bh / 2) * img_h
            iw = max(0.0, min(bx1, x + w) - max(bx0, x))
            ih = max(0.0, min(by1, y + h) - max(by0, y))
            inter = iw * ih
            barea = max(1e-6, (bx1 - bx0) * (by1 - by0))
            if inter >= pos_box_frac * barea or inter >= pos_tile_frac * w * h:
                val = 1
                break
            if inter > 0:
                val = -1
        out.append(val)
    return out


# ---------------------------------------------------------------- synthetic distant plumes

def _fractal_noise(rng, size, octaves=(4, 8, 16, 32), persistence=0.6):
    acc = np.zeros((size, size), np.float32)
    amp, tot = 1.0, 0.0
    for o in octaves:
        g = rng.random((o, o)).astype(np.float32)
        up = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                        np.float32) / 255.0
        acc += amp * up
        tot += amp
        amp *= persistence
    acc /= tot
    acc = (acc - acc.min()) / max(1e-6, acc.max() - acc.min())
    return acc


def synth_plume(rng, tile_u8):
    """Composite one soft semi-transparent grey-white plume rising from a point onto a T x T RGB tile.

    Plume: base point in the lower 55% of the tile, height 8-60% of T, leaning/curving with wind,
    half-width growing from 1-4 px to 15-60% of its height, Gaussian cross-section, fractal-noise
    texture, fade-in at the base and fade-out at the top, peak opacity 0.3-0.85, colour grey-white
    (sometimes bluish or brownish, sometimes darker grey), then a slight blur.
    """
    T = tile_u8.shape[0]
    hgt = rng.uniform(0.08, 0.6) * T
    x0 = rng.uniform(0.15, 0.85) * T
    y0 = rng.uniform(0.45, 0.97) * T
    lean = rng.uniform(-0.9, 0.9)
    curve = rng.uniform(-0.6, 0.6)
    w0 = rng.uniform(1.0, 4.0)
    w1 = max(w0 + 1, rng.uniform(0.15, 0.6) * hgt)
    yy, xx = np.mgrid[0:T, 0:T].astype(np.float32)
    t = (y0 - yy) / hgt
    tc = np.clip(t, 0, 1)
    cx = x0 + lean * (y0 - yy) + curve * (tc ** 2) * hgt
    half = w0 + (w1 - w0) * tc ** 0.7
    d = (xx - cx) / half
    prof = np.exp(-2.0 * d * d)
    top = 1.0 - np.clip((t - 0.65) / 0.35, 0, 1)
    bot = np.clip((t + 0.03) / 0.08, 0, 1)
    vert = np.where(t > 1.0, 0.0, top * bot)
    noise = _fractal_noise(rng, T)
    amax = rng.uniform(0.3, 0.85)
    alpha = amax * prof * vert * (0.35 + 0.65 * noise)
    r = rng.random()
    if r < 0.15:
        base = rng.uniform(95, 150)  # darker grey smoke
    else:
        base = rng.uniform(170, 245)
    tint = rng.normal(0, 6, 3)
    if rng.random() < 0.3:
        tint += np.array([-6, -2, 8]) if rng.random() < 0.4 else np.array([14, 4, -12])  # bluish/brownish
    col = np.clip(base + tint, 0, 255).astype(np.float32)
    a_img = Image.fromarray(np.clip(alpha * 255, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.5, 1.8)))
    alpha = np.asarray(a_img, np.float32)[..., None] / 255.0
    out = tile_u8.astype(np.float32) * (1 - alpha) + col * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def random_tile(rng, img, T):
    """Random native T x T crop (upscaled with bilinear only if the image is smaller than T)."""
    w, h = img.size
    if w < T or h < T:
        s = T / min(w, h)
        img = img.resize((max(T, int(round(w * s))), max(T, int(round(h * s)))), Image.BILINEAR)
        w, h = img.size
    x = int(rng.integers(0, w - T + 1))
    y = int(rng.integers(0, h - T + 1))
    return np.asarray(img)[y:y + T, x:x + T]


def zoom_tile(rng, img, T, smin=40, smax=160, p_flat=0.5):
    """'Zoomed' tile: a random s x s region (s in [smin, smax] px) of a small web photo resized to T x T
    (bilinear). Mimics the low-detail look of a native T x T tile of a high-resolution tower frame
    (featureless haze, sky, fog, distant terrain), which the thumbnails' own native tiles never show.
    With probability p_flat the region is tiny (6-40 px: an almost flat patch of sky/haze/cloud) and mild
    Gaussian sensor noise (sigma 0-3) is added, like a clear or hazy sky tile from a 1600 px tower frame."""
    w, h = img.size
    flat = rng.random() < p_flat
    if flat:
        smin, smax = 6, 40
    s = int(rng.integers(smin, min(smax, w, h) + 1))
    x = int(rng.integers(0, w - s + 1))
    y = int(rng.integers(0, h - s + 1))
    out = np.asarray(img.crop((x, y, x + s, y + s)).resize((T, T), Image.BILINEAR))
    if flat:
        out = np.clip(out + rng.normal(0, rng.uniform(0, 3), out.shape), 0, 255).astype(np.uint8)
    return out
