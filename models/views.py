"""Runtime view definition shared by training, evaluation and golden fixtures.

Must match the Rust runtime exactly (src/views.rs):
  working resolution: with a working long side L (sidecar `working_long_side`) and max(W, H) > L, the
  frame is first resized with Pillow BILINEAR to long side L, short side (short * L * 2 + long) // (long * 2);
  smaller frames, and every frame when L is None (native), are used as they are. The rules below apply to
  that working frame;
  stride S = round(T * (1 - OV)); per axis of length L: no native tiles when L < T,
  else n = ceil((L - T) / S) + 1, p_i = (i * (L - T)) // (n - 1)  (p_0 = 0 when n == 1).
  View 0 = whole frame resized to T x T with Pillow BILINEAR (aspect not preserved),
  then native T x T crops in row-major order (y outer, x inner).
  Tensor = uint8 / 255.0 as float32, CHW, RGB. Frame score = max over views.
"""
import math

import numpy as np
from PIL import Image

OVERLAP = 0.25


def axis_positions(length, tile, overlap=OVERLAP):
    if length < tile:
        return []
    stride = int(round(tile * (1.0 - overlap)))
    n = int(math.ceil((length - tile) / stride)) + 1
    if n == 1:
        return [0]
    return [(i * (length - tile)) // (n - 1) for i in range(n)]


def working_size(width, height, long_side=None):
    """(w, h) of a width x height frame at working long side `long_side` (None: native)."""
    long = max(width, height)
    if long_side is None or long <= long_side:
        return width, height

    def scale(v):
        return max(1, (v * long_side * 2 + long) // (long * 2))

    return scale(width), scale(height)


def to_working(img, long_side=None):
    """img (PIL) at its working resolution."""
    size = working_size(img.width, img.height, long_side)
    return img if size == img.size else img.resize(size, Image.BILINEAR)


def frame_rect(rect, working, frame):
    """rect (x, y, w, h) of a working frame of size `working` mapped to the pixels of the frame of size
    `frame` it was shrunk from: each edge scaled and rounded half up, as src/views.rs Rect::rescaled."""
    if working == frame:
        return rect
    x, y, w, h = rect

    def edge(v, src, dst):
        return (v * dst * 2 + src) // (src * 2)

    x0, y0 = edge(x, working[0], frame[0]), edge(y, working[1], frame[1])
    x1, y1 = edge(x + w, working[0], frame[0]), edge(y + h, working[1], frame[1])
    return x0, y0, x1 - x0, y1 - y0


def view_rects(width, height, tile, overlap=OVERLAP):
    """[(x, y, w, h)] in runtime order; rect 0 is the whole frame."""
    rects = [(0, 0, width, height)]
    xs = axis_positions(width, tile, overlap)
    ys = axis_positions(height, tile, overlap)
    if xs and ys:
        for y in ys:
            for x in xs:
                rects.append((x, y, tile, tile))
    return rects


def make_views(img, tile, overlap=OVERLAP, long_side=None):
    """img: PIL RGB image (uint8). Returns (rects in working-frame pixels, uint8 array N x T x T x 3)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    img = to_working(img, long_side)
    w, h = img.size
    rects = view_rects(w, h, tile, overlap)
    arr = np.asarray(img)
    out = np.empty((len(rects), tile, tile, 3), np.uint8)
    out[0] = np.asarray(img.resize((tile, tile), Image.BILINEAR))
    for k, (x, y, tw, th) in enumerate(rects[1:], start=1):
        out[k] = arr[y:y + th, x:x + tw]
    return rects, out


def to_tensor(views_u8):
    """N x T x T x 3 uint8 -> N x 3 x T x T float32 in [0, 1]."""
    return np.ascontiguousarray(views_u8.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0
