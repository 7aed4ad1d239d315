//! Pillow-exact bilinear resampling of RGB frames.
//!
//! This module owns the resizes in the detector: a frame brought down to its
//! working resolution, and the whole-frame view, which the training recipe
//! both makes with Pillow's `Image.resize(.., BILINEAR)`.
//! A model is sensitive to the last bit of its input (one grey level on a few
//! pixels moved a score by 1.3e-4), so this is a line-for-line port of
//! Pillow's separable convolution (`libImaging/Resample.c`): coefficients
//! computed in f64, normalised to 22-bit fixed point, a horizontal pass over
//! only the rows the vertical pass reads, rounded to u8, then a vertical pass.
//! `tests/golden.rs` checks the output against Pillow pixel for pixel.
//!
//! General-purpose SIMD resizers (fast_image_resize was tried) pick their own
//! fixed-point precision and differ from Pillow by one grey level here and
//! there, which is why this exists.

/// Fixed-point fraction bits of Pillow's 8-bit-per-channel resampler.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Convolution weights of one axis: for output index `i`, the input span
/// `bounds[i] = (first, len)` and the weights `weights[i * ksize..][..len]`.
#[derive(Clone, Debug, PartialEq)]
struct AxisCoeffs {
    in_size: usize,
    out_size: usize,
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl AxisCoeffs {
    /// Pillow's `precompute_coeffs` with the bilinear (triangle) filter and
    /// the whole input as the box, then `normalize_coeffs_8bpc`.
    fn bilinear(in_size: usize, out_size: usize) -> AxisCoeffs {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // the triangle filter's support is 1.0
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let len = xmax.saturating_sub(xmin);
            let mut total = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(len) {
                let t = ((x + xmin) as f64 - center + 0.5) / filterscale;
                *w = (1.0 - t.abs()).max(0.0);
                total += *w;
            }
            let row = &mut weights[xx * ksize..(xx + 1) * ksize];
            for (dst, &w) in row.iter_mut().zip(&k).take(len) {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *dst = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            bounds.push((xmin, len));
        }
        AxisCoeffs {
            in_size,
            out_size,
            ksize,
            bounds,
            weights,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (first, len) = self.bounds[i];
        (first, &self.weights[i * self.ksize..i * self.ksize + len])
    }
}

/// Pillow's `clip8`: drop the fraction bits and clamp to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved RGB8 images with Pillow's bilinear filter, keeping its
/// coefficients and scratch buffer from call to call (frames of one camera
/// all have the same size).
#[derive(Default)]
pub struct BilinearResizer {
    horizontal: Option<AxisCoeffs>,
    vertical: Option<AxisCoeffs>,
    scratch: Vec<u8>,
}

impl BilinearResizer {
    pub fn new() -> BilinearResizer {
        BilinearResizer::default()
    }

    /// Resizes the `src_w x src_h` RGB8 buffer `src` (rows packed) into
    /// `dst`, which becomes `dst_w x dst_h` RGB8.
    ///
    /// # Panics
    /// If `src` is not `src_w * src_h * 3` bytes or a size is zero: callers
    /// pass an `image::RgbImage`'s buffer, which always matches.
    pub fn resize(
        &mut self,
        src: &[u8],
        (src_w, src_h): (usize, usize),
        (dst_w, dst_h): (usize, usize),
        dst: &mut Vec<u8>,
    ) {
        assert_eq!(src.len(), src_w * src_h * 3, "RGB8 buffer size");
        assert!(src_w > 0 && src_h > 0 && dst_w > 0 && dst_h > 0);
        let h = cached(&mut self.horizontal, src_w, dst_w);
        let v = cached(&mut self.vertical, src_h, dst_h);
        dst.clear();
        dst.resize(dst_w * dst_h * 3, 0);
        let need_horizontal = src_w != dst_w;
        let need_vertical = src_h != dst_h;
        // Only the rows the vertical pass reads go through the horizontal one.
        let (row_first, row_end) = if need_vertical {
            let first = v.bounds[0].0;
            let (last_first, last_len) = v.bounds[dst_h - 1];
            (first, last_first + last_len)
        } else {
            (0, src_h)
        };
        let (mid, mid_w, mid_row0): (&[u8], usize, usize) = if need_horizontal {
            let rows = row_end - row_first;
            self.scratch.clear();
            self.scratch.resize(dst_w * rows * 3, 0);
            for (r, out_row) in self.scratch.chunks_exact_mut(dst_w * 3).enumerate() {
                let in_row = &src[(row_first + r) * src_w * 3..(row_first + r + 1) * src_w * 3];
                for (xx, out_px) in out_row.chunks_exact_mut(3).enumerate() {
                    let (first, taps) = h.taps(xx);
                    let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                    for (px, &w) in in_row[first * 3..].chunks_exact(3).zip(taps) {
                        acc[0] += i32::from(px[0]) * w;
                        acc[1] += i32::from(px[1]) * w;
                        acc[2] += i32::from(px[2]) * w;
                    }
                    out_px.copy_from_slice(&acc.map(clip8));
                }
            }
            (&self.scratch, dst_w, row_first)
        } else {
            (src, src_w, 0)
        };
        if !need_vertical {
            dst.copy_from_slice(&mid[..dst_w * dst_h * 3]);
            return;
        }
        let stride = mid_w * 3;
        for (yy, out_row) in dst.chunks_exact_mut(dst_w * 3).enumerate() {
            let (first, taps) = v.taps(yy);
            let first = first - mid_row0;
            for (i, out) in out_row.iter_mut().enumerate() {
                let mut acc = 1i32 << (PRECISION_BITS - 1);
                for (y, &w) in taps.iter().enumerate() {
                    acc += i32::from(mid[(first + y) * stride + i]) * w;
                }
                *out = clip8(acc);
            }
        }
    }
}

fn cached(slot: &mut Option<AxisCoeffs>, in_size: usize, out_size: usize) -> &AxisCoeffs {
    if !matches!(slot, Some(c) if c.in_size == in_size && c.out_size == out_size) {
        *slot = Some(AxisCoeffs::bilinear(in_size, out_size));
    }
    slot.as_ref().expect("just filled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_neighbouring_pairs() {
        // 4 -> 2: each output is the triangle-weighted mean of 4 inputs
        // centred between a pair, weights 1/8, 3/8, 3/8, 1/8 (edges renormalised).
        let c = AxisCoeffs::bilinear(4, 2);
        assert_eq!(c.ksize, 5);
        assert_eq!(c.bounds, vec![(0, 3), (1, 3)]);
        let one = 1 << PRECISION_BITS;
        let (_, taps) = c.taps(0);
        assert_eq!(taps.iter().sum::<i32>(), one);
        assert!(taps[0] > taps[2]);
    }

    #[test]
    fn weights_always_sum_to_one_in_fixed_point() {
        for (i, o) in [
            (1600, 224),
            (1920, 224),
            (500, 224),
            (200, 224),
            (1080, 192),
        ] {
            let c = AxisCoeffs::bilinear(i, o);
            for k in 0..o {
                let sum: i32 = c.taps(k).1.iter().sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= c.ksize as i32,
                    "{i}->{o} @{k}"
                );
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_at_any_size() {
        let src: Vec<u8> = [17u8, 130, 254].repeat(37 * 23);
        let mut r = BilinearResizer::new();
        let mut out = Vec::new();
        for size in [(10, 7), (37, 23), (80, 50), (37, 5), (4, 23)] {
            r.resize(&src, (37, 23), size, &mut out);
            assert_eq!(out.len(), size.0 * size.1 * 3);
            assert!(out.chunks(3).all(|p| p == [17, 130, 254]), "{size:?}");
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let src: Vec<u8> = (0..6 * 5 * 3).map(|v| (v * 7 % 256) as u8).collect();
        let mut out = Vec::new();
        BilinearResizer::new().resize(&src, (6, 5), (6, 5), &mut out);
        assert_eq!(out, src);
    }
}
