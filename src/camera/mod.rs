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

use image::{imageops, RgbImage};

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

/// Delay before the next grab after `failures` consecutive failures: full
/// jitter below a ceiling that starts at `interval` and doubles per failure
/// up to `max` (the same rule as webhook retries).
pub fn retry_delay(failures: u32, interval: Duration, max: Duration) -> Duration {
    crate::delivery::backoff(failures, interval, max.max(interval))
}

/// Thumbnail size compared by [`StuckDetector`].
const THUMB: (u32, u32) = (32, 18);

/// Notices a picture that stops changing: a frozen encoder, a camera serving
/// a cached JPEG. Frames are compared as small grey thumbnails, so sensor
/// noise and JPEG artefacts stay under the tolerance while a real scene
/// (clouds, light, leaves) moves above it within minutes.
pub struct StuckDetector {
    tolerance: f64,
    after: Duration,
    reference: Option<Vec<u8>>,
    since: f64,
}

impl StuckDetector {
    /// `tolerance`: mean absolute grey-level difference under which frames
    /// are the same; `after`: how long unchanged before the camera is stuck.
    pub fn new(tolerance: f64, after: Duration) -> StuckDetector {
        StuckDetector {
            tolerance,
            after,
            reference: None,
            since: 0.0,
        }
    }

    /// Looks at a frame taken at `time` (seconds on [`crate::clock::steady_s`]:
    /// a step of the wall clock is no change of the picture). Returns for how many
    /// seconds the picture has been unchanged once that reaches `after`.
    pub fn check(&mut self, frame: &RgbImage, time: f64) -> Option<f64> {
        let thumb = thumbnail(frame);
        match &self.reference {
            Some(reference) if mean_abs_diff(reference, &thumb) < self.tolerance => {
                let unchanged = time - self.since;
                (unchanged >= self.after.as_secs_f64()).then_some(unchanged)
            }
            _ => {
                self.reference = Some(thumb);
                self.since = time;
                None
            }
        }
    }
}

fn thumbnail(frame: &RgbImage) -> Vec<u8> {
    let grey = imageops::grayscale(frame);
    imageops::resize(&grey, THUMB.0, THUMB.1, imageops::FilterType::Triangle).into_raw()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::INFINITY;
    }
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{hillside_frame, HillsideSpec};

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
        assert_eq!(stuck.check(&other, 1700.0), None);
        assert_eq!(stuck.check(&other, 2000.0), None);
        assert_eq!(stuck.check(&other, 2300.0), Some(600.0));
    }

    #[test]
    fn retry_delays_stay_under_the_cap() {
        let (interval, max) = (Duration::from_secs(10), Duration::from_secs(300));
        for failures in 1..50 {
            assert!(retry_delay(failures, interval, max) <= max);
        }
        // A cap below the interval still allows one interval.
        assert!(retry_delay(1, interval, Duration::from_secs(1)) <= interval);
    }
}
