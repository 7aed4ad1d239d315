//! Cameras: where live frames come from, and how a camera's health is judged.
//!
//! Every kind of camera is a [`Source`]: one `grab` gives one decoded frame.
//! Kinds live one per file: [`snapshot`] (a JPEG over HTTP, with basic or
//! digest authentication), `rtsp` (libav, feature `video`) and `v4l2` (a
//! local capture device through nokhwa, feature `v4l2`). The caller bounds
//! every grab with a timeout, so a source may block or hang without stalling
//! anything else.
//!
//! This module also owns the per-camera health rules the monitor applies:
//! [`retry_delay`] after failures and the [`StuckDetector`] that notices a
//! picture that no longer changes.

pub mod digest;
#[cfg(feature = "video")]
pub mod rtsp;
pub mod snapshot;
#[cfg(feature = "v4l2")]
pub mod v4l2;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use image::RgbImage;

use crate::config::{CameraConfig, SourceConfig};

/// Why a grab gave no frame.
#[derive(Debug)]
pub enum GrabError {
    /// The camera could not be reached or answered with an error.
    Failed(anyhow::Error),
    /// The camera answered, but the picture is broken (truncated or corrupt
    /// JPEG): skipped and counted, never scored.
    Corrupt(anyhow::Error),
    /// The source cannot recover inside this process: a capture call hung in
    /// the driver holds the device, so every fresh open fails. The monitor
    /// stops, and systemd's restart frees the device.
    Wedged(anyhow::Error),
}

impl GrabError {
    /// The `reason` label in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GrabError::Failed(_) => "error",
            GrabError::Corrupt(_) => "corrupt",
            GrabError::Wedged(_) => "wedged",
        }
    }
}

impl std::fmt::Display for GrabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrabError::Failed(e) | GrabError::Wedged(e) => write!(f, "{e:#}"),
            GrabError::Corrupt(e) => write!(f, "corrupt frame: {e:#}"),
        }
    }
}

pub type Grab<'a> = Pin<Box<dyn Future<Output = Result<RgbImage, GrabError>> + Send + 'a>>;

/// A camera: each `grab` returns the current picture. Dropping the future
/// abandons the grab (the caller's timeout does so).
pub trait Source: Send {
    fn grab(&mut self) -> Grab<'_>;
}

/// Builds the source `camera` describes. Fails (with what to do) when a
/// password cannot be read or this build lacks the kind's feature.
pub fn open(camera: &CameraConfig) -> anyhow::Result<Box<dyn Source>> {
    let id = camera.id.get_ref();
    match camera.source.get_ref() {
        SourceConfig::Snapshot(config) => Ok(Box::new(snapshot::SnapshotSource::new(
            config,
            camera.grab_timeout(),
        )?)),
        #[cfg(feature = "video")]
        SourceConfig::Rtsp(config) => Ok(Box::new(rtsp::RtspSource::new(
            config,
            camera.grab_timeout(),
        )?)),
        #[cfg(feature = "v4l2")]
        SourceConfig::V4l2(config) => Ok(Box::new(v4l2::V4l2Source::new(config))),
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "camera {id}: kind = \"{}\" is not built into this binary: rebuild with `--features {}`",
            other.kind(),
            if other.kind() == "rtsp" { "video" } else { "v4l2" }
        ),
    }
}

/// Delay before the next grab after `failures` consecutive failures:
/// between half and all of a ceiling that starts at `interval` and doubles
/// per failure up to `max` (webhook retries' ceiling). Not from zero, as
/// webhook retries' full jitter: two draws near zero put the third failure
/// in a row (`offline_after_failures`) within a second or two of the first,
/// so a camera's web server restarting for 5 s sent `camera.offline` and
/// `camera.online`. Half the ceiling puts the third at least 1.5 intervals
/// (15 s) after the first.
pub fn retry_delay(failures: u32, interval: Duration, max: Duration) -> Duration {
    let ceiling = crate::delivery::backoff_ceiling(failures, interval, max.max(interval));
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// How many pixels across and down [`StuckDetector`] compares.
const SAMPLES: (u32, u32) = (96, 54);

/// Notices a picture that stops changing: a frozen encoder, a camera serving
/// a cached JPEG. Such a picture repeats its pixels (a cached JPEG, byte for
/// byte; a frozen encoder, its last decoded frame), while a live sensor's
/// noise moves every pixel between any two frames, day or night. So frames
/// are compared pixel by pixel at a grid of points, not averaged: the mean
/// absolute grey-level difference of 96x54 points was at least 2.2 between
/// any two frames up to 10 minutes apart (three HPWREN tower cameras, one
/// frame a minute: both shared sequences and the rebuilt rm-n fire), and
/// 0.03 or less between a frame and its own JPEG re-encode. The 32x18
/// thumbnails compared before averaged that noise away: on rm-n (a calm
/// day) the thumbnail stayed within 1 grey level of one frame for 10
/// minutes twice, so the camera was reported offline twice, once in the
/// minutes of the fire's ignition.
pub struct StuckDetector {
    tolerance: f64,
    after: Duration,
    reference: Option<Vec<u8>>,
    since: f64,
    /// Whether a frame has differed from the one before it was compared.
    changed: bool,
}

impl StuckDetector {
    /// `tolerance`: mean absolute grey-level difference of the sampled
    /// pixels under which frames are the same picture; `after`: how long
    /// unchanged before the camera is stuck.
    pub fn new(tolerance: f64, after: Duration) -> StuckDetector {
        StuckDetector {
            tolerance,
            after,
            reference: None,
            since: 0.0,
            changed: false,
        }
    }

    /// Whether the picture has changed since the first frame it saw.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Looks at a frame taken at `time` (seconds on [`crate::clock::steady_s`]:
    /// a step of the wall clock is no change of the picture). Returns for how many
    /// seconds the picture has been unchanged once that reaches `after`.
    pub fn check(&mut self, frame: &RgbImage, time: f64) -> Option<f64> {
        let samples = grey_samples(frame);
        match &self.reference {
            Some(reference) if mean_abs_diff(reference, &samples) < self.tolerance => {
                let unchanged = time - self.since;
                (unchanged >= self.after.as_secs_f64()).then_some(unchanged)
            }
            reference => {
                self.changed |= reference.is_some();
                self.reference = Some(samples);
                self.since = time;
                None
            }
        }
    }
}

/// The grey level (Rec. 709 luma, as `image`'s grayscale) of the pixel at
/// the centre of each cell of a [`SAMPLES`] grid over `frame`.
fn grey_samples(frame: &RgbImage) -> Vec<u8> {
    let (width, height) = frame.dimensions();
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let centre = |cell: u32, cells: u32, size: u32| {
        ((u64::from(cell) * 2 + 1) * u64::from(size) / (u64::from(cells) * 2)) as u32
    };
    let mut samples = Vec::with_capacity((SAMPLES.0 * SAMPLES.1) as usize);
    for row in 0..SAMPLES.1 {
        let y = centre(row, SAMPLES.1, height);
        for column in 0..SAMPLES.0 {
            let [r, g, b] = frame.get_pixel(centre(column, SAMPLES.0, width), y).0;
            let luma = (2126 * u32::from(r) + 7152 * u32::from(g) + 722 * u32::from(b)) / 10_000;
            samples.push(luma as u8);
        }
    }
    samples
}

/// The mean absolute difference of the samples neither frame has clipped.
/// Sensor noise cannot move a pixel clipped to black or white, so a night
/// scene 70 % black (no moon, no IR), its other 30 % moving by 2.5 grey
/// levels, measured under 1 over all its samples: stuck every night (a
/// synthetic scene in the unit tests; we have no night tower footage). A
/// picture clipped everywhere shows nothing that could change: the same
/// picture (0).
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::INFINITY;
    }
    let clipped = |v: u8| v <= 2 || v >= 253;
    let (sum, count) = a
        .iter()
        .zip(b)
        .filter(|&(&x, &y)| !(clipped(x) && clipped(y)))
        .fold((0u64, 0u64), |(sum, count), (x, y)| {
            (sum + u64::from(x.abs_diff(*y)), count + 1)
        });
    if count == 0 {
        return 0.0;
    }
    sum as f64 / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{hillside_frame, HillsideSpec, Rng};

    #[test]
    fn a_frozen_picture_is_stuck_after_the_limit_and_a_changing_one_never() {
        let spec = HillsideSpec::default();
        let frame = hillside_frame(&spec, 0);
        let mut stuck = StuckDetector::new(1.0, Duration::from_secs(600));
        assert_eq!(stuck.check(&frame, 1000.0), None);
        assert_eq!(stuck.check(&frame, 1300.0), None);
        assert_eq!(stuck.check(&frame, 1600.0), Some(600.0));
        // A visibly different picture resets it.
        let mut other = frame.clone();
        for p in other.pixels_mut() {
            p.0 = p.0.map(|v| v.saturating_add(40));
        }
        assert!(!stuck.changed());
        assert_eq!(stuck.check(&other, 1700.0), None);
        assert!(stuck.changed());
        assert_eq!(stuck.check(&other, 2000.0), None);
        assert_eq!(stuck.check(&other, 2300.0), Some(600.0));
    }

    /// Adds fresh noise of -4..=3 grey levels to every channel of every
    /// pixel: two such frames differ by about 2.6 levels a channel (2 in
    /// grey), near what real tower frames of a still scene do (2.2 to 3.9
    /// in grey, [`StuckDetector`]).
    fn with_sensor_noise(frame: &RgbImage, brighter: u8, rng: &mut Rng) -> RgbImage {
        let mut noisy = frame.clone();
        for p in noisy.pixels_mut() {
            p.0 = p.0.map(|v| {
                let noise = (rng.next_u64() >> 61) as i16 - 4;
                (i16::from(v) + i16::from(brighter) + noise).clamp(0, 255) as u8
            });
        }
        noisy
    }

    /// A still scene seen live, a frame a minute for an hour: the same
    /// picture under fresh sensor noise, brightening half a grey level every
    /// 10 minutes, is never stuck. Compared as 32x18 thumbnails, the noise
    /// averaged away and it was stuck at minute 10, as the rm-n tower camera
    /// was on a calm day.
    #[test]
    fn a_still_scene_under_sensor_noise_is_never_stuck() {
        let frame = hillside_frame(&HillsideSpec::default(), 0);
        let mut stuck = StuckDetector::new(1.0, Duration::from_secs(600));
        let mut rng = Rng::new(7);
        for minute in 0..60u8 {
            let live = with_sensor_noise(&frame, minute / 20, &mut rng);
            assert_eq!(
                stuck.check(&live, f64::from(minute) * 60.0),
                None,
                "minute {minute}"
            );
        }
    }

    /// A dark night: 70 % of the picture clipped to black, the rest under
    /// sensor noise. Not stuck: noise cannot show where the picture is
    /// clipped. Averaged over every sample, it was stuck at minute 10.
    #[test]
    fn a_night_scene_mostly_clipped_to_black_is_not_stuck() {
        let mut night = hillside_frame(&HillsideSpec::default(), 0);
        let cut = night.height() * 7 / 10;
        for (_, y, p) in night.enumerate_pixels_mut() {
            p.0 = if y < cut {
                [0; 3]
            } else {
                p.0.map(|v| v / 4 + 8)
            };
        }
        let mut stuck = StuckDetector::new(1.0, Duration::from_secs(600));
        let mut rng = Rng::new(11);
        for minute in 0..30u8 {
            let live = with_sensor_noise(&night, 0, &mut rng);
            // Clipped pixels stay clipped under noise, as a sensor's do.
            let mut live = live;
            for (_, y, p) in live.enumerate_pixels_mut() {
                if y < cut {
                    p.0 = [0; 3];
                }
            }
            assert_eq!(
                stuck.check(&live, f64::from(minute) * 60.0),
                None,
                "minute {minute}"
            );
        }
        // All black, and black again: nothing in it moves.
        let black = RgbImage::new(640, 360);
        let mut stuck = StuckDetector::new(1.0, Duration::from_secs(600));
        assert_eq!(stuck.check(&black, 0.0), None);
        assert_eq!(stuck.check(&black, 600.0), Some(600.0));
    }

    /// A frozen picture under the camera's own ticking clock (an on-screen
    /// timestamp the encoder still draws): the few pixels of its digits do
    /// not make it a live picture.
    #[test]
    fn a_frozen_picture_under_a_ticking_clock_is_stuck() {
        let frame = hillside_frame(&HillsideSpec::default(), 0);
        let mut stuck = StuckDetector::new(1.0, Duration::from_secs(600));
        let mut seen = None;
        for minute in 0..=10u32 {
            let mut shown = frame.clone();
            for y in 8..20 {
                for x in 8..32 {
                    let level = ((minute * 37 + x * y) % 256) as u8;
                    shown.put_pixel(x, y, image::Rgb([level; 3]));
                }
            }
            seen = stuck.check(&shown, f64::from(minute) * 60.0);
        }
        assert_eq!(seen, Some(600.0));
    }

    #[test]
    fn retry_delays_stay_under_the_cap() {
        let (interval, max) = (Duration::from_secs(10), Duration::from_secs(300));
        for failures in 1..50 {
            assert!(retry_delay(failures, interval, max) <= max);
        }
        // Never less than half the ceiling: the third failure in a row
        // comes 15 s or more after the first, never within a second.
        for _ in 0..1000 {
            let first_two = retry_delay(1, interval, max) + retry_delay(2, interval, max);
            assert!(first_two >= Duration::from_secs(15), "{first_two:?}");
            assert!(retry_delay(9, interval, max) >= max / 2);
        }
        // A cap below the interval still allows one interval.
        assert!(retry_delay(1, interval, Duration::from_secs(1)) <= interval);
    }
}
