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
HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_DIR = os.path.join(os.path.dirname(HERE), "fixtures", "golden")


def load_rgb(path):
    """A frame's pixels as training sees them, and as the runtime sees them: Pillow's decode, whose JPEG decoder
    is libjpeg-turbo with its defaults (integer IDCT, "fancy" chroma upsampling), converted to RGB. The runtime
    decodes JPEGs with libjpeg-turbo's code and the same defaults (src/footage.rs): over 462 real frames the two
    agree in every channel value. Every image training reads goes through here; check_decoder() holds it to the
    golden JPEG that tests/golden.rs holds the runtime to."""
    return Image.open(path).convert("RGB")


def check_decoder():
    """Raises unless load_rgb decodes fixtures/golden's JPEG to the pixels recorded in golden.json, which the
    runtime's decoder must also produce (tests/golden.rs). A Pillow built on another JPEG library, or a libjpeg
    with other defaults, would train on pixels the runtime never sees."""
    golden = json.load(open(os.path.join(GOLDEN_DIR, "golden.json")))["jpeg"]
    rgb = np.asarray(load_rgb(os.path.join(GOLDEN_DIR, golden["file"])))
    got = hashlib.sha256(rgb.tobytes()).hexdigest()
    if got != golden["rgb_sha256"]:
        raise RuntimeError(f"this Pillow decodes {golden['file']} to other pixels than the runtime does "
                           f"(sha256 {got[:12]}, recorded {golden['rgb_sha256'][:12]}): training would see "
                           f"pixels the runtime never scores; use a Pillow built on libjpeg-turbo (PyPI's wheels)")
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


# Smoke boxes drawn by this project for the 44 rm-n tower frames, which the pool labels smoke=1 without boxes
# (so every tile of theirs was masked). Same format as the pool's boxes.jsonl; no image is copied. Each box is
# the plume's column from where it leaves the ridge up to 70 px (640x480 frame): tiles holding only the
# spreading white top, which looks like cumulus cloud, touch the box partly and so stay unknown. How they
# were drawn is in models/README.md (Data).
EXTRA_BOXES = os.path.join(HERE, "extra_boxes.jsonl")


def _read_boxes(path):
    with open(path) as f:
        return {o["file"]: o["boxes"] for o in map(json.loads, f)}


def load_index(data_root, seed=0, extra_boxes=True):
    """Returns list of dicts: file, path, smoke, flame, owner, group, split, boxes (list or None).
    extra_boxes: also use this project's boxes (EXTRA_BOXES) where the pool has none."""
    root = os.path.join(data_root, "firesmoke")
    boxes = _read_boxes(os.path.join(root, "boxes.jsonl"))
    if extra_boxes:
        for file, bx in _read_boxes(EXTRA_BOXES).items():
            boxes.setdefault(file, bx)
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


TOWER_SPLIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tower_split.json")

# Boxes drawn by this project for smoke the towersmoke pool left unlabelled, added to a frame's own boxes (same
# format as boxes.jsonl). Class "distant-smoke": a plume whose outline is rough, so it counts as no positive
# pixel; like any box it keeps negative tiles and the smoke-free crop away. Its 43 lines are the Santa Ynez
# Peak North validation frames, where a second fire's smoke column stands on the left horizon of every frame
# the source's mask and boxes leave out (models/README.md, Tower validation). examples/tower_eval.rs reads it too.
TOWER_EXTRA_BOXES = os.path.join(HERE, "tower_extra_boxes.jsonl")


def load_tower_index(data_root, split_path=TOWER_SPLIT):
    """The towersmoke frames as `load_index` items (file, path, smoke, flame, owner, group, split, boxes), plus
    mask: the path of the frame's binary smoke mask (PNG, 0/255, frame-sized), or None where it has only
    boxes. The split is the committed one of models/tower_split.py (whole camera scenes on one side)."""
    root = os.path.join(data_root, "towersmoke")
    with open(split_path) as f:
        split_of = json.load(f)["groups"]
    boxes = _read_boxes(os.path.join(root, "boxes.jsonl"))
    extra = _read_boxes(TOWER_EXTRA_BOXES)
    items = []
    with open(os.path.join(root, "labels.csv")) as f:
        for row in csv.DictReader(f):
            owner, group = group_of(row)
            if group not in split_of:
                raise ValueError(f"{row['file']}: group {group} is not in {split_path}; "
                                 "rerun models/tower_split.py after changing towersmoke")
            mask = os.path.join(root, "masks", os.path.splitext(os.path.basename(row["file"]))[0] + ".png")
            own = boxes.get(row["file"])
            added = extra.pop(row["file"], None)
            items.append(dict(file=row["file"], path=os.path.join(root, row["file"]),
                              smoke=int(row["smoke"]), flame=int(row["flame"]), owner=owner, group=group,
                              split=split_of[group], boxes=(own or []) + added if added else own,
                              mask=mask if os.path.exists(mask) else None))
    if extra:
        raise ValueError(f"{TOWER_EXTRA_BOXES} names frames that towersmoke does not hold: {sorted(extra)}")
    return items


def load_scene_negatives(data_root, dirs, before_s, split_path=TOWER_SPLIT):
    """The smoke-free frames of training-side tower sequences (folders of frames with a labels.csv as in
    ../sequences: frame,smoke,flame,...,unix_time) as `load_index` items, smoke 0 and flame 0, split train:
    the frames taken at least `before_s` seconds before the sequence's first smoke frame. A fire's first
    minutes can show smoke before anyone labelled it, and the frames closer to ignition stay unseen, to check
    the scene on frames training did not hold. Refuses a shared test sequence and a tower validation scene:
    their scenery must stay unseen."""
    tests = set(os.listdir(os.path.join(data_root, "sequences")))
    with open(split_path) as f:
        val_scenes = [g.removeprefix("group:") for g, s in json.load(f)["groups"].items() if s == "val"]
    items = []
    for d in dirs:
        name = os.path.basename(os.path.normpath(d))
        if name in tests or any(name.startswith(v) for v in val_scenes):
            raise ValueError(f"{d}: {name} is a test sequence or a tower validation scene; scene negatives must "
                             "come from training-side cameras (for example ../rebuild/rmn_sequence.py's rm-n)")
        with open(os.path.join(d, "labels.csv")) as f:
            rows = list(csv.DictReader(f))
        ignition = min((int(r["unix_time"]) for r in rows if r["smoke"] == "1"), default=None)
        if ignition is None:
            raise ValueError(f"{d}/labels.csv has no smoke frame, so no ignition to count `before_s` from")
        items += [dict(file=f"{name}/{r['frame']}", path=os.path.join(d, r["frame"]), smoke=0, flame=0,
                       owner="scene-negatives", group=name, split="train", boxes=None, mask=None)
                  for r in rows if r["smoke"] == "0" and r["flame"] == "0"
                  and int(r["unix_time"]) <= ignition - before_s]
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


class TowerSmokeMap:
    """Smoke pixels of one towersmoke frame, from its mask where it has one, else from its filled smoke boxes,
    and the pixels near which a tile is not a clean negative (mask, or any box). Labels tiles with the rule of
    examples/tower_eval.rs, so training and the tower validation agree: positive when smoke covers at least
    10 % of the tile or the tile holds at least 30 % of one smoke box's smoke pixels; negative when no smoke
    pixel or box lies within `margin` pixels; else unknown."""

    def __init__(self, item, width, height):
        boxes = item["boxes"] or []
        px = []
        for c, xc, yc, bw, bh in boxes:
            x0 = min(width, max(0, int(np.floor((xc - bw / 2) * width))))
            y0 = min(height, max(0, int(np.floor((yc - bh / 2) * height))))
            x1 = min(width, max(0, int(np.ceil((xc + bw / 2) * width))))
            y1 = min(height, max(0, int(np.ceil((yc + bh / 2) * height))))
            px.append((c, x0, y0, x1, y1))
        in_box = np.zeros((height, width), bool)
        near = np.zeros((height, width), bool)
        for c, x0, y0, x1, y1 in px:
            near[y0:y1, x0:x1] = True
            if c == "smoke":
                in_box[y0:y1, x0:x1] = True
        if item.get("mask"):
            smoke = np.asarray(Image.open(item["mask"]).convert("L")) > 0
            near |= smoke
        else:
            smoke = in_box
        self.smoke_boxes = [(x0, y0, x1, y1) for c, x0, y0, x1, y1 in px if c == "smoke"]
        self.smoke = np.pad(smoke.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        self.near = np.pad(near.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        self.w, self.h = width, height

    @staticmethod
    def _count(ii, x0, y0, x1, y1):
        return int(ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0])

    def label(self, rect, margin=32):
        """1 / 0 / -1 for the smoke class of tile rect (x, y, w, h)."""
        x, y, w, h = rect
        gx0, gy0 = max(0, x - margin), max(0, y - margin)
        gx1, gy1 = min(self.w, x + w + margin), min(self.h, y + h + margin)
        if self._count(self.near, gx0, gy0, gx1, gy1) == 0:
            return 0
        if self._count(self.smoke, x, y, x + w, y + h) >= 0.10 * w * h:
            return 1
        for x0, y0, x1, y1 in self.smoke_boxes:
            total = self._count(self.smoke, x0, y0, x1, y1)
            ix0, iy0, ix1, iy1 = max(x0, x), max(y0, y), min(x1, x + w), min(y1, y + h)
            shared = self._count(self.smoke, ix0, iy0, ix1, iy1) if ix0 < ix1 and iy0 < iy1 else 0
            if total > 0 and shared >= 0.30 * total:
                return 1
        return -1

    def clear_crop(self, tile, margin=32):
        """(x, y, w, h) of the largest strip of the frame left of, right of or above every mask pixel and box,
        less `margin`, when both its sides are at least `tile`; else None. The rule of examples/tower_eval.rs
        `clear_crop`, whose crops are the tower validation's image-level negatives."""
        cols = np.diff(self.near[-1])  # set pixels per column
        rows = np.diff(self.near[:, -1])  # per row
        if cols.sum() == 0:
            return None
        xs, ys = np.nonzero(cols)[0], np.nonzero(rows)[0]
        x0, x1, y0 = int(xs[0]), int(xs[-1]) + 1, int(ys[0])
        left, right, top = max(0, x0 - margin), min(self.w, x1 + margin), max(0, y0 - margin)
        fits = [r for r in ((0, 0, left, self.h), (right, 0, self.w - right, self.h), (0, 0, self.w, top))
                if r[2] >= tile and r[3] >= tile and self._count(self.near, r[0], r[1], r[0] + r[2], r[1] + r[3]) == 0]
        return max(reversed(fits), key=lambda r: r[2] * r[3]) if fits else None  # Rust's max_by_key: last of ties


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
    return _composite_smoke(rng, tile_u8, alpha)


def _composite_smoke(rng, tile_u8, alpha):
    """Blend smoke of opacity `alpha` (T x T, 0..1) over the tile: grey-white (sometimes darker grey, bluish or
    brownish), with the opacity slightly blurred. Shared by the plume generators."""
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


def sheared_plume(rng, tile_u8):
    """Composite one wind-sheared plume onto a T x T RGB tile: smoke that rises a little from a point, then
    bends over and drifts downwind nearly level, widening and thinning as it goes. Distant smoke in wind often
    looks like this rather than like the upright column of `synth_plume`: a low, sideways smear.

    Centreline: from a base point in the lower 55 % of the tile, a rise of 2-25 % of T (leaning up to 17
    degrees), then a turn over about the same length to a downwind run of 15-75 % of T, left or right, whose
    slope goes from slightly sinking (along a slope) to rising at 20 degrees, with a gentle meander. Half-width
    grows from 1-3 px at the base to 6-30 % of the plume's length at its end, swelling and narrowing by up to
    35 %. Opacity fades in at the base, thins out downwind (exponential, 0.3-2 e-folds) and fades out over the
    last quarter; peak opacity 0.25-0.8, with fractal-noise texture. Colour and blur as `synth_plume`. Label
    smoke=1, flame=0."""
    T = tile_u8.shape[0]
    x0 = rng.uniform(0.1, 0.9) * T
    y0 = rng.uniform(0.45, 0.97) * T
    rise = rng.uniform(0.02, 0.25) * T
    run = rng.uniform(0.15, 0.75) * T
    side = 1.0 if rng.random() < 0.5 else -1.0
    lean = rng.uniform(-0.3, 0.3)  # radians from vertical, on the rising part
    end = side * (np.pi / 2 - rng.uniform(-0.1, 0.35))  # downwind direction, from vertical
    wobble_amp, wobble_freq, wobble_phase = rng.uniform(0, 0.2), rng.uniform(1, 4), rng.uniform(0, 2 * np.pi)
    n = 200
    total = rise + run
    ell = np.linspace(0.0, total, n, dtype=np.float32)
    turn = np.clip((ell - 0.5 * rise) / max(1.0, rise), 0, 1)
    turn = turn * turn * (3 - 2 * turn)  # smoothstep from the rise into the downwind run
    phi = lean + (end - lean) * turn + wobble_amp * np.sin(wobble_freq * 2 * np.pi * ell / total + wobble_phase) * turn
    step = total / (n - 1)
    px = x0 + np.concatenate([[0.0], np.cumsum(np.sin(phi[:-1]) * step)])
    py = y0 - np.concatenate([[0.0], np.cumsum(np.cos(phi[:-1]) * step)])
    u = ell / total
    w0 = rng.uniform(1.0, 3.0)
    w1 = max(w0 + 1.0, rng.uniform(0.06, 0.3) * total)
    half = (w0 + (w1 - w0) * u ** 0.8) * (1 + rng.uniform(0, 0.35) * np.sin(2 * np.pi * rng.uniform(1, 3) * u
                                                                            + rng.uniform(0, 2 * np.pi)))
    amax = rng.uniform(0.25, 0.8)
    along = amax * np.exp(-rng.uniform(0.3, 2.0) * u) * np.clip(u / 0.03, 0, 1) * (1 - np.clip((u - 0.75) / 0.25, 0, 1))
    # nearest centreline point of every pixel near the plume
    pad = 2.5 * w1
    xa, xb = int(max(0, np.floor(px.min() - pad))), int(min(T, np.ceil(px.max() + pad)))
    ya, yb = int(max(0, np.floor(py.min() - pad))), int(min(T, np.ceil(py.max() + pad)))
    noise = _fractal_noise(rng, T)
    alpha = np.zeros((T, T), np.float32)
    if xa < xb and ya < yb:
        yy, xx = np.mgrid[ya:yb, xa:xb].astype(np.float32)
        d2 = (xx[..., None] - px) ** 2 + (yy[..., None] - py) ** 2
        j = d2.argmin(-1)
        d = np.sqrt(np.take_along_axis(d2, j[..., None], -1)[..., 0]) / half[j]
        alpha[ya:yb, xa:xb] = along[j] * np.exp(-2.0 * d * d)
    alpha *= 0.35 + 0.65 * noise
    return _composite_smoke(rng, tile_u8, alpha)


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


# ---------------------------------------------------------------- synthetic sky / haze hard negatives

def _jpeg_noise(rng, arr):
    """Sensor noise (sigma 0.5-6) and a JPEG round trip (quality 55-92), like a tower-camera frame."""
    import io
    arr = np.clip(arr + rng.normal(0, rng.uniform(0.5, 6.0), arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(rng.integers(55, 93)))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def _airlight(rng):
    """Haze / sky colour: pale blue, grey-white, overcast grey or warm (brownish) haze."""
    r = rng.random()
    if r < 0.35:
        c = np.array([rng.uniform(130, 200), rng.uniform(155, 215), rng.uniform(180, 235)])
    elif r < 0.7:
        v = rng.uniform(165, 240)
        c = v + rng.normal(0, 5, 3)
    elif r < 0.9:
        v = rng.uniform(110, 190)
        c = v + rng.normal(0, 5, 3)
    else:
        v = rng.uniform(150, 220)
        c = v + np.array([rng.uniform(5, 20), rng.uniform(0, 8), -rng.uniform(0, 12)])
    return np.clip(c, 0, 255).astype(np.float32)


def sky_tile(rng, T):
    """Synthetic tower-camera sky tile (label: no smoke, no flame): a smooth two-colour gradient in a random
    direction with faint low-frequency texture; optionally bright cloud patches, a hazy distant ridge at the
    bottom and thin dark structures (mast lattice, poles, wires); then sensor noise and JPEG. Teaches the model that featureless or gently graded grey/blue sky and haze is not smoke."""
    yy, xx = np.mgrid[0:T, 0:T].astype(np.float32) / T
    c0, c1 = _airlight(rng), _airlight(rng)
    if rng.random() < 0.5:  # mostly the same hue, slightly brighter towards the horizon
        c1 = np.clip(c0 * rng.uniform(0.85, 1.15) + rng.normal(0, 4, 3), 0, 255)
    ang = rng.normal(np.pi / 2, 0.4) if rng.random() < 0.8 else rng.uniform(0, 2 * np.pi)
    g = np.cos(ang) * xx + np.sin(ang) * yy
    g = (g - g.min()) / max(1e-6, g.max() - g.min())
    img = c0 * (1 - g[..., None]) + c1 * g[..., None]
    amp = rng.uniform(0, 14)
    img += (amp * (_fractal_noise(rng, T, octaves=(2, 4, 8)) - 0.5))[..., None]
    if rng.random() < 0.3:  # bright cumulus / stratus cloud patches (thresholded fractal noise)
        n = _fractal_noise(rng, T, octaves=(2, 4, 8, 16, 32))
        cut = rng.uniform(0.45, 0.75)
        a = np.clip((n - cut) / rng.uniform(0.05, 0.25), 0, 1)[..., None] * rng.uniform(0.5, 1.0)
        cloud = rng.uniform(200, 250) + rng.normal(0, 4, 3) - 40 * (1 - n[..., None])
        img = img * (1 - a) + cloud * a
    if rng.random() < 0.35:  # hazy distant ridge: low-contrast darker band under a wiggly skyline
        base = rng.uniform(0.55, 0.95) * T
        n1 = _fractal_noise(rng, T, octaves=(3, 6, 12))[0]
        sky_line = base - rng.uniform(3, 0.25 * T) * n1
        land = (yy * T) > sky_line[None, :]
        dark = np.array([rng.uniform(40, 110), rng.uniform(45, 110), rng.uniform(35, 95)], np.float32)
        t = rng.uniform(0.15, 0.7)  # transmission: little of the ridge shows through the haze
        ridge = dark * t + c1 * (1 - t) + (rng.uniform(0, 10) * (_fractal_noise(rng, T, octaves=(16, 32, 64)) - 0.5))[..., None]
        img = np.where(land[..., None], ridge, img)
    if rng.random() < 0.3:  # thin dark structures
        from PIL import ImageDraw
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 7))):
            p0 = tuple(rng.uniform(0, T, 2)); p1 = tuple(rng.uniform(0, T, 2))
            col = tuple(int(v) for v in rng.uniform(15, 90, 3))
            d.line([p0, p1], fill=col, width=int(rng.integers(1, 4)))
        img = np.asarray(im, np.float32)
    return _jpeg_noise(rng, img)


def camera_artifacts(rng, tile_u8, p_vignette=0.3, p_text=0.25):
    """Tower-camera artefacts on a T x T tile: a soft dark (often brownish) lens-vignette corner or edge, and a
    burnt-in timestamp / station caption line (yellow or white text) along the top. Applied to negatives and
    to plume positives alike, so neither is a cue for smoke."""
    from PIL import ImageDraw
    T = tile_u8.shape[0]
    img = tile_u8.astype(np.float32)
    if rng.random() < p_vignette:
        yy, xx = np.mgrid[0:T, 0:T].astype(np.float32) / T
        cx, cy = rng.uniform(-1.5, 2.5), rng.uniform(1.2, 3.0)  # circle centre below / beside the tile
        if rng.random() < 0.5:
            cx, cy = cy * rng.choice([-1, 1]) + 0.5, rng.uniform(-1.5, 2.5)
        rad = np.hypot(xx - cx, yy - cy)
        r0 = np.quantile(rad, rng.uniform(0.3, 0.95))
        a = np.clip((rad - r0) / rng.uniform(0.02, 0.5), 0, 1)[..., None] * rng.uniform(0.6, 1.0)
        dark = np.array([rng.uniform(20, 90), rng.uniform(15, 80), rng.uniform(5, 60)], np.float32)
        img = img * (1 - a) + dark * a
    im = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < p_text:
        d = ImageDraw.Draw(im)
        chars = "0123456789.:- abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/"
        txt = "".join(chars[int(i)] for i in rng.integers(0, len(chars), int(rng.integers(8, 40))))
        col = (int(rng.uniform(200, 255)), int(rng.uniform(200, 255)), int(rng.uniform(0, 80))) if rng.random() < 0.6 \
            else tuple(int(v) for v in rng.uniform(215, 255, 3))
        d.text((float(rng.uniform(-20, 20)), float(rng.uniform(0, 12))), txt, fill=col)
    return np.asarray(im)


def haze_tile(rng, img, T):
    """A real outdoor negative seen through haze or fog (atmospheric scattering I = J t + A (1 - t)), with a
    uniform or vertically graded transmission t in [0.15, 0.8], then sensor noise and JPEG (label 0/0)."""
    base = zoom_tile(rng, img, T, smin=60, smax=220, p_flat=0.0) if rng.random() < 0.5 else random_tile(rng, img, T)
    A = _airlight(rng)
    t0, t1 = rng.uniform(0.15, 0.8), rng.uniform(0.15, 0.8)
    if rng.random() < 0.5:
        t1 = t0
    t = np.linspace(t0, t1, T, dtype=np.float32)[:, None, None]
    out = base.astype(np.float32) * t + A * (1 - t)
    return _jpeg_noise(rng, out)


def tower_photometric(rng, img):
    """A real tower frame as another day, camera or lens might record it, with its geometry unchanged so its
    mask and boxes still hold: exposure (gain 0.75-1.25, gamma 0.75-1.35), white balance (channel gains
    0.92-1.08) and saturation (0.6-1.3), then half the time a light haze (I = J t + A (1 - t), t 0.6-0.9:
    heavier haze could hide a faint plume and make its label wrong), a third of the time a slight blur
    (Gaussian radius 0.4-1.2, a soft lens or focus), and always sensor noise and a JPEG round trip
    (`_jpeg_noise`). Issue 15's pixel-level augmentation, applied before the trunk so it can be cached."""
    a = np.asarray(img, np.float32) / 255.0
    a = np.clip(a * rng.uniform(0.75, 1.25), 0, 1) ** rng.uniform(0.75, 1.35)
    a = a * rng.uniform(0.92, 1.08, 3)
    grey = a.mean(axis=2, keepdims=True)
    a = np.clip(grey + (a - grey) * rng.uniform(0.6, 1.3), 0, 1) * 255.0
    if rng.random() < 0.5:
        t = rng.uniform(0.6, 0.9)
        a = a * t + _airlight(rng) * (1 - t)
    if rng.random() < 1 / 3:
        a = np.asarray(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
                       .filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2))), np.float32)
    return Image.fromarray(_jpeg_noise(rng, a))


# ---------------------------------------------------------------- real tower smoke, re-framed

def tower_smoke_crop(rng, img, box, T, max_scale=2.0):
    """A new view of a real boxed smoke plume: a square crop of side S = s T (s uniform in [1, max_scale],
    capped by the image) placed at random so that it holds the whole box where it can (else centred on it),
    resized to T x T (Pillow BILINEAR: the plume appears 1 to 1/s times its native size, as from a farther
    or higher-resolution camera), mirrored half the time, with brightness and contrast jitter (x0.8-1.2),
    then sensor noise and JPEG. box = (xc, yc, w, h) normalised. The runtime's native tiles sit on a fixed
    grid, so a plume can appear anywhere in a tile and at any distance; the fixed-grid tiles of the 44 boxed
    rm-n frames show it in one place and at one size."""
    W, H = img.size
    xc, yc, bw, bh = box
    bx0, by0, bx1, by1 = (xc - bw / 2) * W, (yc - bh / 2) * H, (xc + bw / 2) * W, (yc + bh / 2) * H
    S = int(round(T * rng.uniform(1.0, max(1.0, min(max_scale, min(W, H) / T)))))
    S = min(S, W, H)

    def place(lo_box, hi_box, size):
        lo, hi = max(0.0, hi_box - S), min(lo_box, size - S)  # crop start keeping the box inside
        if lo > hi:  # box larger than the crop, or against an edge: centre on the box
            c = (lo_box + hi_box) / 2 - S / 2
            return int(min(max(0.0, c), size - S))
        return int(rng.uniform(lo, hi + 1e-6))
    x = place(bx0, bx1, W)
    y = place(by0, by1, H)
    crop = img.crop((x, y, x + S, y + S))
    if S != T:
        crop = crop.resize((T, T), Image.BILINEAR)
    arr = np.asarray(crop, np.float32)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.8, 1.2)
    return _jpeg_noise(rng, arr)


# ---------------------------------------------------------------- synthetic whole tower-camera views

def tower_view(rng, img, T):
    """Synthetic whole-frame view of a fixed tower camera (label: no smoke, no flame), as the runtime's view 0
    sees it: a 4:3 or 3:2 frame with sky (`sky_tile`, stretched) over a real outdoor negative as the land,
    a horizon at 25-60 % of the height, often a dark lattice mast with pale dish antennas and poles in front,
    often a dark fisheye circle around the picture and a caption line, then sensor noise, JPEG and the
    runtime's whole-frame resize to T x T (Pillow BILINEAR, aspect not kept). Teaches the whole view that
    tower furniture, bright dishes and cloud over a landscape are not smoke."""
    from PIL import ImageDraw
    W = 800
    H = 600 if rng.random() < 0.6 else 533
    horizon = int(rng.uniform(0.25, 0.6) * H)
    sky = Image.fromarray(sky_tile(rng, 256)).resize((W, horizon + 8), Image.BILINEAR)
    land_h = H - horizon
    land = img.convert("RGB")
    lw, lh = land.size
    # a random crop with the frame's land aspect, stretched to fit
    cw = int(rng.uniform(0.6, 1.0) * lw)
    ch = max(8, min(lh, int(cw * land_h / W)))
    x0 = int(rng.integers(0, lw - cw + 1))
    y0 = int(rng.integers(0, lh - ch + 1))
    land = np.asarray(land.crop((x0, y0, x0 + cw, y0 + ch)).resize((W, land_h), Image.BILINEAR), np.float32)
    t = rng.uniform(0.5, 1.0)  # distant land seen through some haze
    land = land * t + _airlight(rng) * (1 - t)
    canvas = np.concatenate([np.asarray(sky, np.float32)[:horizon], land], axis=0)
    im = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    if rng.random() < 0.6:  # lattice mast with dish antennas
        mx = float(rng.uniform(0.05, 0.8) * W)
        mw = float(rng.uniform(0.03, 0.12) * W)
        dark = tuple(int(v) for v in rng.uniform(15, 70, 3))
        lean = float(rng.uniform(-0.08, 0.08) * W)
        d.line([(mx, H), (mx + lean, 0)], fill=dark, width=int(rng.integers(2, 6)))
        d.line([(mx + mw, H), (mx + mw + lean, 0)], fill=dark, width=int(rng.integers(2, 6)))
        step = float(rng.uniform(15, 45))
        y = float(H)
        while y > 0:
            f0, f1 = 1 - y / H, 1 - max(0.0, y - step) / H
            d.line([(mx + lean * f0, y), (mx + mw + lean * f1, y - step)], fill=dark, width=2)
            d.line([(mx + mw + lean * f0, y), (mx + lean * f1, y - step)], fill=dark, width=2)
            y -= step
        for _ in range(int(rng.integers(0, 9))):
            r = float(rng.uniform(0.02, 0.08) * W)
            cx = mx + mw / 2 + float(rng.choice([-1, 1])) * (mw / 2 + r * rng.uniform(0.2, 0.9))
            cy = float(rng.uniform(0.0, 0.85) * H)
            face = tuple(int(v) for v in rng.uniform(150, 235) + rng.normal(0, 6, 3))
            rim = tuple(int(v) for v in rng.uniform(40, 110, 3))
            d.ellipse([cx - r * rng.uniform(0.5, 1.0), cy - r, cx + r * rng.uniform(0.5, 1.0), cy + r],
                      fill=face, outline=rim, width=int(rng.integers(1, 5)))
    for _ in range(int(rng.integers(0, 3))):  # poles and wires
        px = float(rng.uniform(0, W))
        d.line([(px, H), (px + float(rng.uniform(-20, 20)), float(rng.uniform(0.2, 0.8) * H))],
               fill=tuple(int(v) for v in rng.uniform(10, 80, 3)), width=int(rng.integers(2, 8)))
    arr = np.asarray(im, np.float32)
    if rng.random() < 0.6:  # fisheye circle: dark outside a soft ellipse
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        rx, ry = rng.uniform(0.5, 0.7) * W, rng.uniform(0.55, 0.8) * H
        rad = np.hypot((xx - W / 2) / rx, (yy - H / 2) / ry)
        a = np.clip((rad - 1.0) / rng.uniform(0.02, 0.15), 0, 1)[..., None]
        dark = np.array([rng.uniform(5, 60), rng.uniform(5, 55), rng.uniform(0, 45)], np.float32)
        arr = arr * (1 - a) + dark * a
    if rng.random() < 0.5:  # caption line along the top
        im = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
        chars = "0123456789.:- abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/"
        txt = "".join(chars[int(i)] for i in rng.integers(0, len(chars), int(rng.integers(20, 70))))
        ImageDraw.Draw(im).text((2.0, 2.0), txt, fill=(int(rng.uniform(200, 255)), int(rng.uniform(200, 255)),
                                                       int(rng.uniform(0, 90))))
        arr = np.asarray(im, np.float32)
    frame = _jpeg_noise(rng, arr)
    return np.asarray(Image.fromarray(frame).resize((T, T), Image.BILINEAR))
