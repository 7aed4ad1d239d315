//! Where the classifier looks in a frame.
//!
//! This module owns the view layout (one downscaled whole-frame view plus
//! overlapping native-scale tiles) and the packing of those views into
//! `3 x T x T` model inputs. The layout is a contract with the training recipe
//! (`models/views.py`): both sides must cut the same pixels, or the model sees
//! something it was never trained on. `tests/golden.rs` checks the two agree.
//!
//! The rules, for a frame of `W x H` pixels and tile size `T`:
//! - the frame is first brought to its working resolution: with a working
//!   long side `L` (the model sidecar's `working_long_side`) and
//!   `max(W, H) > L`, it is resized (Pillow's bilinear, bit-exact) so its long
//!   side is `L` and its short side `floor(short * L / long + 1/2)`; smaller
//!   frames, and every frame at `native`, are used as they are. The rules
//!   below then apply to that working frame, and view rectangles are mapped
//!   back to frame pixels for everything downstream (boxes, masks, reports);
//! - stride `S = round(T * (1 - overlap))`;
//! - along an axis of length `L < T` there are no native tiles; otherwise
//!   `n = ceil((L - T) / S) + 1` tiles start at `floor(i * (L - T) / (n - 1))`;
//! - view 0 is the whole frame resized to `T x T` (Pillow's bilinear, bit-exact
//!   through `resample`, aspect
//!   not kept); tiles follow in row-major order;
//! - a view's tensor is `pixel / 255` as f32, RGB, channels first.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::mask::IgnoreMask;
use crate::resample::BilinearResizer;

/// A rectangle in frame pixel coordinates. Serialised as `[x, y, w, h]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u32; 4]", into = "[u32; 4]")]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl From<[u32; 4]> for Rect {
    fn from([x, y, w, h]: [u32; 4]) -> Self {
        Rect { x, y, w, h }
    }
}

impl From<Rect> for [u32; 4] {
    fn from(r: Rect) -> Self {
        [r.x, r.y, r.w, r.h]
    }
}

impl Rect {
    /// This rectangle, given in a `from` sized image, in a `to` sized image
    /// of the same scene: edges scaled and rounded to the nearest pixel.
    pub fn rescaled(&self, from: (u32, u32), to: (u32, u32)) -> Rect {
        if from == to {
            return *self;
        }
        let edge = |v: u32, from: u32, to: u32| scale_half_up(v, to, from);
        let (x0, y0) = (edge(self.x, from.0, to.0), edge(self.y, from.1, to.1));
        let x1 = edge(self.x + self.w, from.0, to.0);
        let y1 = edge(self.y + self.h, from.1, to.1);
        Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }

    /// True when the two rectangles share at least one pixel or touch along an edge.
    pub fn touches(&self, other: &Rect) -> bool {
        self.x <= other.x + other.w
            && other.x <= self.x + self.w
            && self.y <= other.y + other.h
            && other.y <= self.y + self.h
    }
}

/// `v * num / den` rounded half up, in integers so that `models/views.py`
/// gets the same pixel: `(v * num * 2 + den) // (den * 2)`.
fn scale_half_up(v: u32, num: u32, den: u32) -> u32 {
    ((u64::from(v) * u64::from(num) * 2 + u64::from(den)) / (u64::from(den) * 2)) as u32
}

/// Default fraction by which neighbouring tiles overlap.
pub const DEFAULT_OVERLAP: f32 = 0.25;

/// How large a frame is when the classifier looks at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkingResolution {
    /// The frame as the camera gave it.
    #[default]
    Native,
    /// Frames whose long side is longer are shrunk to this long side.
    LongSide(u32),
}

impl WorkingResolution {
    /// The working size of a `width x height` frame: the long side brought
    /// down to `L`, the short side scaled with it and rounded half up.
    pub fn size(self, width: u32, height: u32) -> (u32, u32) {
        let long = width.max(height);
        match self {
            WorkingResolution::LongSide(l) if long > l && l > 0 => {
                let scale = |v: u32| scale_half_up(v, l, long).max(1);
                (scale(width), scale(height))
            }
            _ => (width, height),
        }
    }
}

impl std::str::FromStr for WorkingResolution {
    type Err = String;

    /// `native`, or a long side in pixels (at least 64).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("native") {
            return Ok(WorkingResolution::Native);
        }
        match s.parse::<u32>() {
            Ok(l) if (64..=16384).contains(&l) => Ok(WorkingResolution::LongSide(l)),
            _ => Err(format!(
                "working resolution {s:?} must be `native` or a long side in pixels from 64 to 16384"
            )),
        }
    }
}

impl std::fmt::Display for WorkingResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkingResolution::Native => f.write_str("native"),
            WorkingResolution::LongSide(l) => write!(f, "{l}"),
        }
    }
}

/// Start offsets of the native tiles along one axis of `len` pixels.
pub fn tile_starts(len: u32, tile: u32, overlap: f32) -> Vec<u32> {
    if len < tile || tile == 0 {
        return Vec::new();
    }
    let stride = ((tile as f32 * (1.0 - overlap)).round() as u32).max(1);
    let span = len - tile;
    let n = span.div_ceil(stride) + 1;
    if n == 1 {
        return vec![0];
    }
    (0..n)
        .map(|i| (u64::from(i) * u64::from(span) / u64::from(n - 1)) as u32)
        .collect()
}

/// The views of one frame size: view 0 is the whole frame, then `rows x cols`
/// tiles in row-major order, cut from the frame at its working size.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// The frame as it arrives, in pixels.
    pub frame: (u32, u32),
    /// The working frame the views are cut from.
    pub width: u32,
    pub height: u32,
    pub tile: u32,
    pub rows: usize,
    pub cols: usize,
    /// All views, whole frame first, in working-frame pixels.
    pub rects: Vec<Rect>,
}

impl Layout {
    /// The views of a frame looked at as it is (native resolution).
    pub fn new(width: u32, height: u32, tile: u32, overlap: f32) -> Layout {
        Layout::at(width, height, WorkingResolution::Native, tile, overlap)
    }

    /// The views of a `width x height` frame looked at at `resolution`.
    pub fn at(
        width: u32,
        height: u32,
        resolution: WorkingResolution,
        tile: u32,
        overlap: f32,
    ) -> Layout {
        let frame = (width, height);
        let (width, height) = resolution.size(width, height);
        let xs = tile_starts(width, tile, overlap);
        let ys = tile_starts(height, tile, overlap);
        let mut rects = Vec::with_capacity(1 + xs.len() * ys.len());
        rects.push(Rect {
            x: 0,
            y: 0,
            w: width,
            h: height,
        });
        for &y in &ys {
            for &x in &xs {
                rects.push(Rect {
                    x,
                    y,
                    w: tile,
                    h: tile,
                });
            }
        }
        Layout {
            frame,
            width,
            height,
            tile,
            rows: ys.len(),
            cols: xs.len(),
            rects,
        }
    }

    /// View `view`'s rectangle in the pixels of the frame as it arrived.
    pub fn frame_rect(&self, view: usize) -> Rect {
        self.rects[view].rescaled((self.width, self.height), self.frame)
    }

    /// True when the frame is resized before it is cut into views.
    pub fn is_resized(&self) -> bool {
        self.frame != (self.width, self.height)
    }

    /// Grid position of native tile view `view` (views start at 1).
    pub fn grid_pos(&self, view: usize) -> Option<(usize, usize)> {
        (view >= 1 && view < self.rects.len())
            .then(|| ((view - 1) / self.cols, (view - 1) % self.cols))
    }
}

/// Turns a frame into model inputs, one view at a time, reusing its buffers
/// from frame to frame.
pub struct ViewPacker {
    tile: u32,
    /// Makes the whole-frame view.
    resizer: BilinearResizer,
    whole: Vec<u8>,
    masked: Option<RgbImage>,
    /// Brings frames to their working resolution (its own, so that each
    /// resizer keeps the coefficients of its one size pair).
    shrinker: BilinearResizer,
    /// The frame at its working resolution, when that is not the native one.
    working: Option<RgbImage>,
}

/// A frame made ready for packing: masked pixels filled in, brought to its
/// working resolution, and the whole-frame view resized. Shared read-only by
/// the inference threads, each of which packs the views it scores into its
/// own one-view buffer.
pub struct PreparedFrame<'a> {
    frame: &'a RgbImage,
    whole: &'a [u8],
    tile: usize,
}

impl ViewPacker {
    pub fn new(tile: u32) -> ViewPacker {
        ViewPacker {
            tile,
            resizer: BilinearResizer::new(),
            whole: Vec::new(),
            masked: None,
            shrinker: BilinearResizer::new(),
            working: None,
        }
    }

    /// Prepares `frame` for [`PreparedFrame::write_view`] with the views of
    /// `layout`. Pixels under `mask` are replaced by the mean colour of the
    /// rest of the frame first, at native resolution, so a masked chimney or
    /// road cannot raise the score of a view that still partly covers it.
    pub fn prepare<'a>(
        &'a mut self,
        frame: &'a RgbImage,
        layout: &Layout,
        mask: Option<&IgnoreMask>,
    ) -> PreparedFrame<'a> {
        debug_assert_eq!(
            frame.dimensions(),
            layout.frame,
            "layout of another frame size"
        );
        let mut frame = match mask {
            Some(mask) if !mask.is_empty() => {
                let masked = self.masked.get_or_insert_with(|| RgbImage::new(1, 1));
                mask.apply(frame, masked);
                &*masked
            }
            _ => frame,
        };
        if layout.is_resized() {
            let (w, h) = (layout.width, layout.height);
            let mut pixels = self
                .working
                .take()
                .map(RgbImage::into_raw)
                .unwrap_or_default();
            self.shrinker.resize(
                frame.as_raw(),
                (frame.width() as usize, frame.height() as usize),
                (w as usize, h as usize),
                &mut pixels,
            );
            let working = RgbImage::from_raw(w, h, pixels).expect("the resizer fills w x h x 3");
            frame = self.working.insert(working);
        }
        let t = self.tile as usize;
        self.resizer.resize(
            frame.as_raw(),
            (frame.width() as usize, frame.height() as usize),
            (t, t),
            &mut self.whole,
        );
        PreparedFrame {
            frame,
            whole: &self.whole,
            tile: t,
        }
    }

    /// Writes the tensors of `views` (indices into `layout.rects`) into `out`,
    /// laid out as `[views.len(), 3, T, T]`.
    pub fn fill(
        &mut self,
        frame: &RgbImage,
        layout: &Layout,
        views: &[usize],
        mask: Option<&IgnoreMask>,
        out: &mut Vec<f32>,
    ) {
        let t = self.tile as usize;
        let size = 3 * t * t;
        out.clear();
        out.resize(views.len() * size, 0.0);
        let prepared = self.prepare(frame, layout, mask);
        for (&view, dst) in views.iter().zip(out.chunks_exact_mut(size)) {
            prepared.write_view(layout, view, dst);
        }
    }
}

impl PreparedFrame<'_> {
    /// Writes view `view` (an index into `layout.rects`) into `dst` as a
    /// `3 x T x T` tensor of `pixel / 255`.
    pub fn write_view(&self, layout: &Layout, view: usize, dst: &mut [f32]) {
        let t = self.tile;
        if view == 0 {
            write_chw(self.whole, t * 3, 0, 0, t, dst);
        } else {
            let r = layout.rects[view];
            let stride = self.frame.width() as usize * 3;
            write_chw(
                self.frame.as_raw(),
                stride,
                r.x as usize,
                r.y as usize,
                t,
                dst,
            );
        }
    }
}

/// Copies the `t x t` window at (x, y) of an interleaved RGB8 buffer whose rows
/// are `stride` bytes apart into planar `pixel / 255` floats.
fn write_chw(src: &[u8], stride: usize, x: usize, y: usize, t: usize, dst: &mut [f32]) {
    let plane = t * t;
    let (r_plane, rest) = dst.split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    for row in 0..t {
        let start = (y + row) * stride + x * 3;
        let line = &src[start..start + t * 3];
        let o = row * t;
        for (col, px) in line.chunks_exact(3).enumerate() {
            r_plane[o + col] = f32::from(px[0]) / 255.0;
            g_plane[o + col] = f32::from(px[1]) / 255.0;
            b_plane[o + col] = f32::from(px[2]) / 255.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_starts_cover_the_axis_evenly() {
        assert_eq!(tile_starts(224, 224, 0.25), vec![0]);
        assert_eq!(tile_starts(200, 224, 0.25), Vec::<u32>::new());
        // 1600 px, stride 168: ceil(1376 / 168) + 1 = 10 tiles.
        let xs = tile_starts(1600, 224, 0.25);
        assert_eq!(xs.len(), 10);
        assert_eq!(xs[0], 0);
        assert_eq!(*xs.last().unwrap(), 1600 - 224);
        for pair in xs.windows(2) {
            assert!(pair[1] - pair[0] <= 168, "gap too wide: {pair:?}");
        }
    }

    #[test]
    fn layout_puts_whole_frame_first_then_rows() {
        let l = Layout::new(500, 300, 192, 0.25);
        assert_eq!(
            l.rects[0],
            Rect {
                x: 0,
                y: 0,
                w: 500,
                h: 300
            }
        );
        assert_eq!((l.rows, l.cols), (2, 4));
        assert_eq!(l.rects.len(), 1 + 8);
        assert_eq!(l.grid_pos(1), Some((0, 0)));
        assert_eq!(l.grid_pos(5), Some((1, 0)));
        assert_eq!(l.grid_pos(0), None);
        assert_eq!(
            l.rects[8],
            Rect {
                x: 308,
                y: 108,
                w: 192,
                h: 192
            }
        );
    }

    #[test]
    fn working_resolution_shrinks_only_larger_frames() {
        let at = |l| WorkingResolution::LongSide(l);
        assert_eq!(at(1280).size(1920, 1080), (1280, 720));
        assert_eq!(at(1280).size(1600, 1200), (1280, 960));
        // 1067 * 1280 / 1600 = 853.6: rounded half up.
        assert_eq!(at(1280).size(1600, 1067), (1280, 854));
        assert_eq!(at(1280).size(1080, 1920), (720, 1280));
        assert_eq!(at(1280).size(640, 480), (640, 480));
        assert_eq!(WorkingResolution::Native.size(3072, 2048), (3072, 2048));
        assert_eq!("native".parse(), Ok(WorkingResolution::Native));
        assert_eq!("960".parse(), Ok(at(960)));
        assert!("12"
            .parse::<WorkingResolution>()
            .unwrap_err()
            .contains("native"));
    }

    #[test]
    fn views_of_a_shrunk_frame_map_back_to_frame_pixels() {
        let l = Layout::at(1920, 1080, WorkingResolution::LongSide(1280), 224, 0.25);
        assert_eq!((l.width, l.height), (1280, 720));
        assert!(l.is_resized());
        // 1280 px: 8 columns; 720 px: 4 rows; and the whole frame.
        assert_eq!((l.rows, l.cols, l.rects.len()), (4, 8, 33));
        let whole = l.frame_rect(0);
        assert_eq!((whole.x, whole.y, whole.w, whole.h), (0, 0, 1920, 1080));
        let last = l.frame_rect(l.rects.len() - 1);
        assert_eq!((last.x + last.w, last.y + last.h), (1920, 1080));
        assert_eq!((last.w, last.h), (336, 336));
        let native = Layout::new(1920, 1080, 224, 0.25);
        assert!(!native.is_resized());
        assert_eq!(native.frame_rect(5), native.rects[5]);
    }

    #[test]
    fn fill_writes_planar_normalised_pixels() {
        let mut frame = RgbImage::new(8, 8);
        frame.put_pixel(5, 6, image::Rgb([255, 51, 0]));
        let layout = Layout::new(8, 8, 4, 0.0);
        let mut packer = ViewPacker::new(4);
        let mut out = Vec::new();
        // View 4 is the tile at (4, 4): pixel (5, 6) sits at (1, 2) inside it.
        packer.fill(&frame, &layout, &[4], None, &mut out);
        assert_eq!(out.len(), 3 * 16);
        assert_eq!(out[2 * 4 + 1], 1.0);
        assert!((out[16 + 2 * 4 + 1] - 0.2).abs() < 1e-6);
        assert_eq!(out[32 + 2 * 4 + 1], 0.0);
        assert_eq!(out.iter().filter(|v| **v != 0.0).count(), 2);
    }
}
