//! Synthetic footage drawn by our own code: a hillside seen from a tower,
//! drifting clouds, and from a given frame on, a smoke plume rising from the
//! slope and growing. The committed fixture `fixtures/hillside/` is made by
//! `cargo run --example make-fixtures`, and a test checks that the code still
//! draws exactly those bytes. Everything is seeded: same arguments, same pixels.

use image::{Rgb, RgbImage};

/// A small deterministic generator (SplitMix64).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The committed fixture's first frame time: 2025-04-01 03:00:00 UTC (noon in Korea).
pub const HILLSIDE_START_UNIX: i64 = 1_743_476_400;

/// What to draw.
#[derive(Clone, Debug)]
pub struct HillsideSpec {
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    /// First frame with smoke.
    pub ignition: usize,
    pub seed: u64,
}

impl Default for HillsideSpec {
    fn default() -> Self {
        HillsideSpec {
            width: 640,
            height: 360,
            frames: 18,
            ignition: 8,
            seed: 2024,
        }
    }
}

fn lerp(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn ridge(x: f32, base: f32, waves: &[(f32, f32, f32)]) -> f32 {
    base + waves
        .iter()
        .map(|(amp, freq, phase)| amp * (x * freq + phase).sin())
        .sum::<f32>()
}

/// Smooth value noise in [0, 1] on a lattice of `cell` pixels.
fn value_noise(seed: u64, x: f32, y: f32, cell: f32) -> f32 {
    let (gx, gy) = (x / cell, y / cell);
    let (x0, y0) = (gx.floor(), gy.floor());
    let (fx, fy) = (gx - x0, gy - y0);
    let corner = |i: f32, j: f32| {
        let h = (i as i64 as u64).wrapping_mul(0x9E37_79B9)
            ^ (j as i64 as u64).wrapping_mul(0x85EB_CA6B)
            ^ seed;
        Rng::new(h).unit()
    };
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let top = corner(x0, y0) + (corner(x0 + 1.0, y0) - corner(x0, y0)) * s(fx);
    let bottom = corner(x0, y0 + 1.0) + (corner(x0 + 1.0, y0 + 1.0) - corner(x0, y0 + 1.0)) * s(fx);
    top + (bottom - top) * s(fy)
}

/// Draws frame `index` of the sequence.
pub fn hillside_frame(spec: &HillsideSpec, index: usize) -> RgbImage {
    let (w, h) = (spec.width as f32, spec.height as f32);
    let mut rng = Rng::new(spec.seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let sky_top = [92.0, 140.0, 200.0];
    let sky_low = [196.0, 212.0, 226.0];
    let far = [120.0, 138.0, 150.0];
    let near = [58.0, 92.0, 48.0];
    let dark = [30.0, 52.0, 28.0];
    let far_waves = [(h * 0.035, 6.0 / w, 0.3), (h * 0.02, 17.0 / w, 1.7)];
    let near_waves = [(h * 0.05, 4.0 / w, 2.1), (h * 0.025, 11.0 / w, 0.4)];
    let drift = index as f32 * w * 0.012;
    // Plume source on the near slope, right of centre.
    let source_x = w * 0.62;
    let source_y = ridge(source_x, h * 0.62, &near_waves) + h * 0.06;
    let age = index as f32 - spec.ignition as f32;

    RgbImage::from_fn(spec.width, spec.height, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let far_y = ridge(xf, h * 0.45, &far_waves);
        let near_y = ridge(xf, h * 0.62, &near_waves);
        let mut c = if yf < far_y {
            let t = (yf / far_y).clamp(0.0, 1.0);
            let mut c = lerp(sky_top, sky_low, t);
            // Clouds: soft noise drifting right, only in the upper sky.
            let n = value_noise(spec.seed, xf - drift, yf * 2.0, 48.0);
            let cloud = ((n - 0.62) * 4.0).clamp(0.0, 0.8) * (1.0 - t);
            c = lerp(c, [245.0, 245.0, 248.0], cloud);
            c
        } else if yf < near_y {
            let t = ((yf - far_y) / (near_y - far_y).max(1.0)).clamp(0.0, 1.0);
            let n = value_noise(spec.seed + 1, xf, yf, 9.0);
            lerp(far, lerp(far, near, 0.5), t * 0.6 + n * 0.2)
        } else {
            let n = value_noise(spec.seed + 2, xf, yf, 5.0);
            let m = value_noise(spec.seed + 3, xf, yf, 40.0);
            lerp(lerp(near, dark, n), [96.0, 88.0, 60.0], (m - 0.7).max(0.0))
        };
        if age >= 0.0 {
            c = lerp(
                c,
                [214.0, 214.0, 218.0],
                plume_alpha(spec, xf, yf, source_x, source_y, age),
            );
        }
        Rgb(c.map(|v| v.clamp(0.0, 255.0) as u8))
    })
    .tap_noise(&mut rng)
}

/// Opacity of the plume at (x, y): a column that rises, widens and leans
/// downwind as it ages, textured by value noise.
fn plume_alpha(spec: &HillsideSpec, x: f32, y: f32, sx: f32, sy: f32, age: f32) -> f32 {
    let h = spec.height as f32;
    let height = (h * 0.1 + age * h * 0.045).min(h * 0.5);
    let rise = sy - y;
    if !(-6.0..=height).contains(&rise) {
        return 0.0;
    }
    let up = (rise / height).clamp(0.0, 1.0);
    let centre = sx + up * up * height * 0.8;
    let half_width = 5.0 + up * (14.0 + age * 5.0);
    let across = (x - centre) / half_width;
    // Dense at the source, thinning and fading out towards the top.
    let fade = (1.0 - up) * (1.0 - up) * (3.0 - 2.0 * (1.0 - up));
    let body = (-across * across).exp() * (0.35 + 0.65 * fade) * (1.0 - up).powf(0.7);
    let texture = value_noise(spec.seed + 7, x, y + age * 12.0, 12.0);
    (body * (0.5 + 0.5 * texture) * 0.8).clamp(0.0, 0.8)
}

trait TapNoise {
    fn tap_noise(self, rng: &mut Rng) -> Self;
}

impl TapNoise for RgbImage {
    /// Adds a little sensor noise so no two frames are identical.
    fn tap_noise(mut self, rng: &mut Rng) -> Self {
        for px in self.pixels_mut() {
            let d = (rng.unit() * 7.0) as i16 - 3;
            for v in px.0.iter_mut() {
                *v = (i16::from(*v) + d).clamp(0, 255) as u8;
            }
        }
        self
    }
}

/// The labels CSV of the sequence: one frame a minute from `start_unix`.
pub fn hillside_labels(spec: &HillsideSpec, start_unix: i64) -> String {
    let mut csv = String::from("frame,smoke,flame,unix_time\n");
    for i in 0..spec.frames {
        let smoke = u8::from(i >= spec.ignition);
        csv.push_str(&format!(
            "{},{smoke},0,{}\n",
            hillside_name(i),
            start_unix + 60 * i as i64
        ));
    }
    csv
}

pub fn hillside_name(index: usize) -> String {
    format!("frame_{index:04}.jpg")
}

/// Encodes a frame as the fixture JPEG (quality 85).
pub fn encode_jpeg(frame: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    encoder
        .encode_image(frame)
        .expect("encoding an in-memory RGB image cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_and_plume_appears_at_ignition() {
        let spec = HillsideSpec::default();
        assert_eq!(hillside_frame(&spec, 3), hillside_frame(&spec, 3));
        let before = hillside_frame(&spec, spec.ignition - 1);
        let after = hillside_frame(&spec, spec.frames - 1);
        // The plume brightens the slope above its source.
        let patch_mean = |img: &RgbImage| {
            let (x0, y0) = (
                (spec.width as f32 * 0.62) as u32,
                (spec.height as f32 * 0.5) as u32,
            );
            let mut sum = 0u32;
            for y in y0..y0 + 20 {
                for x in x0..x0 + 20 {
                    sum += img
                        .get_pixel(x, y)
                        .0
                        .iter()
                        .map(|v| u32::from(*v))
                        .sum::<u32>();
                }
            }
            sum / 400
        };
        assert!(
            patch_mean(&after) > patch_mean(&before) + 60,
            "{} vs {}",
            patch_mean(&after),
            patch_mean(&before)
        );
        let labels = hillside_labels(&spec, 1_700_000_000);
        assert!(labels.contains("frame_0008.jpg,1,0,1700000480"));
        assert!(labels.contains("frame_0007.jpg,0,0,1700000420"));
    }
}
