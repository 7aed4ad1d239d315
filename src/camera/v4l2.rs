//! Local capture devices (USB or CSI cameras through V4L2), via nokhwa
//! (feature `v4l2`).
//!
//! nokhwa's camera handle is not `Send` and its calls block, so each device
//! is owned by one thread of its own that serves grab requests; a grab that
//! hangs in the driver is abandoned by the monitor's timeout, and the next
//! grab starts a fresh thread (the hung one is left to the kernel), until
//! hung calls have held the device for `WEDGED_AFTER`: the source is then
//! wedged, and the process stops to free it. The
//! source holds its thread only between grabs: a grab dropped while waiting
//! takes the thread with it, so the next request is never queued behind a
//! call that may never return. MJPEG is
//! decoded as every other JPEG, by `footage::decode_bytes` (truncated frames
//! are caught as for snapshots), and YUYV converted here.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use nokhwa::Camera;
use tokio::sync::oneshot;

use super::{Grab, GrabError, Source};
use crate::config::{V4l2Config, V4l2Device};

type Request = oneshot::Sender<Result<RgbImage, GrabError>>;

/// What a capture thread runs: serves grab requests until the sender is gone.
type Serve = fn(V4l2Config, mpsc::Receiver<Request>);

pub struct V4l2Source {
    config: V4l2Config,
    /// The capture thread's requests, while no grab is out.
    worker: Option<mpsc::Sender<Request>>,
    serve: Serve,
    /// Capture threads alive, the one serving included.
    threads: Arc<AtomicUsize>,
    /// Since when a capture thread abandoned by a grab has not returned.
    hung_since: Option<Instant>,
    /// How long a hung capture thread may keep a fresh one from grabbing
    /// before the source is [`GrabError::Wedged`].
    wedged_after: Duration,
}

/// How long a capture call hung in the driver may keep the device from a
/// fresh capture thread before the process stops to free it: a UVC camera
/// that wedges holds its buffers until the file is closed, and the hung
/// call never returns to close it. Long enough for a slow driver call that
/// does come back.
const WEDGED_AFTER: Duration = Duration::from_secs(120);

/// Counts a capture thread alive until it ends.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl V4l2Source {
    pub fn new(config: &V4l2Config) -> V4l2Source {
        V4l2Source {
            config: config.clone(),
            worker: None,
            serve,
            threads: Arc::new(AtomicUsize::new(0)),
            hung_since: None,
            wedged_after: WEDGED_AFTER,
        }
    }

    fn spawn(&self, reply: Request) -> Result<mpsc::Sender<Request>, GrabError> {
        let (tx, rx) = mpsc::channel();
        let (config, serve) = (self.config.clone(), self.serve);
        self.threads.fetch_add(1, Ordering::SeqCst);
        let alive = Alive(self.threads.clone());
        std::thread::Builder::new()
            .name("v4l2".into())
            .spawn(move || {
                let _alive = alive;
                serve(config, rx)
            })
            .map_err(|e| GrabError::Failed(anyhow!("cannot start a capture thread: {e}")))?;
        let _ = tx.send(reply);
        Ok(tx)
    }
}

impl Source for V4l2Source {
    fn grab(&mut self) -> Grab<'_> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            // With no thread kept, any thread alive is one a grab abandoned
            // that has not come back: hung in the driver.
            if self.worker.is_none() && self.threads.load(Ordering::SeqCst) > 0 {
                let since = *self.hung_since.get_or_insert_with(Instant::now);
                // Every grab since has hung too (none came back to be kept):
                // wedged, without one more thread. Before, only a fresh
                // thread's failure said so, and a driver that hangs every
                // call took one thread per grab, for good, until systemd's
                // TasksMax (about 27 h at the retry ceiling).
                if since.elapsed() >= self.wedged_after {
                    return Err(GrabError::Wedged(anyhow!(
                        "{} capture call(s) hung in the driver have held {:?} for over {:.0} s",
                        self.threads.load(Ordering::SeqCst),
                        self.config.device,
                        self.wedged_after.as_secs_f64()
                    )));
                }
            } else if self.worker.is_none() {
                self.hung_since = None;
            }
            // Taken for the grab's time (module docs): if this future is
            // dropped on a timeout, the next grab starts a fresh thread.
            let worker = match self.worker.take() {
                Some(worker) => match worker.send(reply) {
                    Ok(()) => worker,
                    Err(e) => self.spawn(e.0)?,
                },
                None => self.spawn(reply)?,
            };
            match answer.await {
                Ok(Ok(frame)) => {
                    self.worker = Some(worker);
                    self.hung_since = None;
                    Ok(frame)
                }
                Ok(Err(GrabError::Failed(e)))
                    if self
                        .hung_since
                        .is_some_and(|since| since.elapsed() >= self.wedged_after) =>
                {
                    self.worker = Some(worker);
                    Err(GrabError::Wedged(anyhow!(
                        "{e:#}, while a capture call hung in the driver has held {:?} for over {:.0} s",
                        self.config.device,
                        self.wedged_after.as_secs_f64()
                    )))
                }
                Ok(result) => {
                    self.worker = Some(worker);
                    result
                }
                Err(_) => Err(GrabError::Failed(anyhow!("the capture thread stopped"))),
            }
        })
    }
}

/// The device's index. A path may be a link to `/dev/videoN`, as udev's
/// `/dev/v4l/by-id/...` and `/dev/v4l/by-path/...` are: followed at each
/// open, so a camera keeps its configuration when a USB re-enumeration (or a
/// second camera) changes the numbers.
fn index(device: &V4l2Device) -> Result<CameraIndex> {
    match device {
        V4l2Device::Index(i) => Ok(CameraIndex::Index(*i)),
        V4l2Device::Path(p) => {
            let target = follow_links(p);
            let digits = target
                .to_str()
                .and_then(|s| s.strip_prefix("/dev/video"))
                .and_then(|s| s.parse().ok())
                .with_context(|| {
                    format!(
                        "{} is not a /dev/videoN path or a link to one (it leads to {})",
                        p.display(),
                        target.display()
                    )
                })?;
            Ok(CameraIndex::Index(digits))
        }
    }
}

/// `path` with its symbolic links followed (at most 8 deep), relative
/// targets taken from the link's folder and `..` resolved by name: the
/// target need not exist, for the error to say where a link leads.
fn follow_links(path: &Path) -> PathBuf {
    let mut path = path.to_path_buf();
    for _ in 0..8 {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        path = base.join(target);
    }
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}

fn open(config: &V4l2Config) -> Result<Camera> {
    let requested = match (config.width, config.height) {
        (Some(w), Some(h)) => {
            RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(CameraFormat::new(
                Resolution::new(w, h),
                FrameFormat::MJPEG,
                config.fps.unwrap_or(5),
            )))
        }
        _ => RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestResolution),
    };
    let mut camera = Camera::with_backend(index(&config.device)?, requested, ApiBackend::Video4Linux)
        .map_err(|e| anyhow!("cannot open {:?}: {e}: check `wildfire-watch cameras` and that the service may use /dev/video*", config.device))?;
    camera
        .open_stream()
        .map_err(|e| anyhow!("cannot start capturing from {:?}: {e}", config.device))?;
    Ok(camera)
}

/// Frames skipped before each grab: the capture buffers nokhwa asks the
/// driver for (v4l's `MmapStream::new`: 4), less the one it holds.
const STALE_BUFFERS: usize = 3;

/// Serves grabs until the monitor drops its end; reopens after an error.
fn serve(config: V4l2Config, requests: mpsc::Receiver<Request>) {
    let mut camera: Option<Camera> = None;
    for reply in requests {
        let result = (|| {
            if camera.is_none() {
                camera = Some(open(&config).map_err(GrabError::Failed)?);
            }
            let cam = camera.as_mut().expect("opened above");
            // The driver's other buffers were filled right after the last
            // grab and have waited since (it drops new frames while none is
            // free): at interval_s = 10 the frame handed over would be 30 s
            // old. Each grab hands one back for refilling, so after
            // STALE_BUFFERS of them the next is a fresh frame.
            for _ in 0..STALE_BUFFERS {
                if let Err(e) = cam.frame_raw() {
                    camera = None;
                    return Err(GrabError::Failed(anyhow!(
                        "capture from {:?} failed: {e}",
                        config.device
                    )));
                }
            }
            let cam = camera.as_mut().expect("opened above");
            let buffer = cam.frame().map_err(|e| {
                GrabError::Failed(anyhow!("capture from {:?} failed: {e}", config.device))
            });
            let buffer = match buffer {
                Ok(b) => b,
                Err(e) => {
                    camera = None;
                    return Err(e);
                }
            };
            let res = buffer.resolution();
            to_rgb(
                buffer.source_frame_format(),
                res.width(),
                res.height(),
                buffer.buffer(),
            )
            .map_err(GrabError::Corrupt)
        })();
        let _ = reply.send(result);
    }
}

fn to_rgb(format: FrameFormat, width: u32, height: u32, data: &[u8]) -> Result<RgbImage> {
    match format {
        FrameFormat::MJPEG => crate::footage::decode_bytes(data),
        FrameFormat::YUYV => yuyv_to_rgb(width, height, data),
        FrameFormat::RAWRGB => RgbImage::from_raw(width, height, data.to_vec())
            .context("the RGB frame has the wrong size"),
        other => bail!(
            "the device delivers {other:?} frames; ask for MJPEG or YUYV (set width and height)"
        ),
    }
}

/// YUYV 4:2:2 (BT.601, studio range) to RGB8.
fn yuyv_to_rgb(width: u32, height: u32, data: &[u8]) -> Result<RgbImage> {
    let needed = width as usize * height as usize * 2;
    if data.len() < needed || !width.is_multiple_of(2) {
        bail!("the YUYV frame is {} bytes, expected {needed}", data.len());
    }
    let mut out = Vec::with_capacity(needed / 2 * 3);
    for px in data[..needed].chunks_exact(4) {
        let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
        for y in [y0, y1] {
            let c = f32::from(y) - 16.0;
            let d = f32::from(u) - 128.0;
            let e = f32::from(v) - 128.0;
            let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
            out.push(clamp(1.164 * c + 1.596 * e));
            out.push(clamp(1.164 * c - 0.392 * d - 0.813 * e));
            out.push(clamp(1.164 * c + 2.017 * d));
        }
    }
    RgbImage::from_raw(width, height, out).context("the YUYV frame has the wrong size")
}

/// Lists capture devices and their formats, for `wildfire-watch cameras`.
pub fn list_devices() -> Result<String> {
    use std::fmt::Write;
    let devices = nokhwa::query(ApiBackend::Video4Linux)
        .map_err(|e| anyhow!("cannot list capture devices: {e}"))?;
    let mut out = String::new();
    if devices.is_empty() {
        out.push_str("no capture devices found (is the camera plugged in, and may this user open /dev/video*?)\n");
    }
    for info in devices {
        let _ = writeln!(
            out,
            "{}: {} ({})",
            info.index(),
            info.human_name(),
            info.description()
        );
        let formats = Camera::with_backend(
            info.index().clone(),
            RequestedFormat::new::<RgbFormat>(RequestedFormatType::None),
            ApiBackend::Video4Linux,
        )
        .and_then(|mut c| c.compatible_camera_formats());
        match formats {
            Ok(mut formats) => {
                formats.sort_by_key(|f| (f.format() as u8, f.width(), f.height(), f.frame_rate()));
                for f in formats {
                    let _ = writeln!(
                        out,
                        "  {:?} {}x{} @ {} fps",
                        f.format(),
                        f.width(),
                        f.height(),
                        f.frame_rate()
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(out, "  cannot list formats: {e}");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    static THREADS: AtomicUsize = AtomicUsize::new(0);

    /// A capture thread whose first thread hangs in the driver on its first
    /// grab; later threads answer at once.
    fn hangs_first(_: V4l2Config, requests: mpsc::Receiver<Request>) {
        let first = THREADS.fetch_add(1, Ordering::SeqCst) == 0;
        for reply in requests {
            if first {
                std::thread::sleep(Duration::from_secs(3600));
            }
            let _ = reply.send(Ok(RgbImage::new(2, 2)));
        }
    }

    #[tokio::test]
    async fn a_grab_hung_in_the_driver_is_not_waited_for_by_the_next() {
        let config: V4l2Config = toml::from_str("device = \"/dev/video0\"").unwrap();
        let mut source = V4l2Source {
            serve: hangs_first,
            ..V4l2Source::new(&config)
        };
        let hung = tokio::time::timeout(Duration::from_millis(200), source.grab()).await;
        assert!(hung.is_err(), "the first grab should hang");
        let next = tokio::time::timeout(Duration::from_secs(10), source.grab())
            .await
            .expect("the second grab waited behind the hung one");
        assert_eq!(next.unwrap().dimensions(), (2, 2));
        // The fresh thread is kept for the grabs after.
        source.grab().await.unwrap();
        assert_eq!(THREADS.load(Ordering::SeqCst), 2);
    }

    /// A first capture thread that hangs in the driver holding the device;
    /// later threads cannot open it.
    fn hangs_holding_the_device(_: V4l2Config, requests: mpsc::Receiver<Request>) {
        static FIRST: AtomicUsize = AtomicUsize::new(0);
        let first = FIRST.fetch_add(1, Ordering::SeqCst) == 0;
        for reply in requests {
            if first {
                std::thread::sleep(Duration::from_secs(3600));
            }
            let _ = reply.send(Err(GrabError::Failed(anyhow!(
                "cannot start capturing: Device or resource busy"
            ))));
        }
    }

    #[tokio::test]
    async fn a_device_held_by_a_hung_capture_call_is_wedged_after_a_while() {
        let config: V4l2Config = toml::from_str("device = \"/dev/video0\"").unwrap();
        let mut source = V4l2Source {
            serve: hangs_holding_the_device,
            wedged_after: Duration::from_millis(300),
            ..V4l2Source::new(&config)
        };
        let hung = tokio::time::timeout(Duration::from_millis(200), source.grab()).await;
        assert!(hung.is_err(), "the first grab should hang");
        // At first a failure like any other: the hung call may come back.
        assert!(matches!(source.grab().await, Err(GrabError::Failed(_))));
        tokio::time::sleep(Duration::from_millis(400)).await;
        match source.grab().await {
            Err(GrabError::Wedged(e)) => {
                let e = format!("{e:#}");
                assert!(
                    e.contains("busy") && e.contains("hung in the driver"),
                    "{e}"
                );
            }
            other => panic!("{:?}", other.map(|f| f.dimensions())),
        }
    }

    /// Every capture thread hangs in the driver on its first grab.
    fn always_hangs(_: V4l2Config, requests: mpsc::Receiver<Request>) {
        for _reply in requests {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    #[tokio::test]
    async fn a_driver_that_hangs_every_call_is_wedged_without_a_thread_per_grab() {
        let config: V4l2Config = toml::from_str("device = \"/dev/video0\"").unwrap();
        let mut source = V4l2Source {
            serve: always_hangs,
            wedged_after: Duration::from_millis(300),
            ..V4l2Source::new(&config)
        };
        for _ in 0..3 {
            let hung = tokio::time::timeout(Duration::from_millis(100), source.grab()).await;
            assert!(hung.is_err(), "every grab should hang");
        }
        assert_eq!(source.threads.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..5 {
            match tokio::time::timeout(Duration::from_secs(10), source.grab()).await {
                Ok(Err(GrabError::Wedged(e))) => {
                    assert!(format!("{e:#}").contains("hung in the driver"), "{e:#}")
                }
                Ok(other) => panic!("{:?}", other.map(|f| f.dimensions())),
                Err(_) => panic!("a grab hung again: a thread more"),
            }
        }
        assert_eq!(source.threads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_device_may_be_a_udev_link_to_dev_video() {
        // udev's /dev/v4l/by-id links are relative: ../../video2.
        let dir = tempfile::tempdir().unwrap();
        let by_id = dir.path().join("v4l/by-id");
        std::fs::create_dir_all(&by_id).unwrap();
        let relative = by_id.join("usb-cam-video-index0");
        std::os::unix::fs::symlink("../../video2", &relative).unwrap();
        assert_eq!(follow_links(&relative), dir.path().join("video2"));
        let absolute = by_id.join("usb-other-video-index0");
        std::os::unix::fs::symlink("/dev/video7", &absolute).unwrap();
        assert!(matches!(
            index(&V4l2Device::Path(absolute)).unwrap(),
            CameraIndex::Index(7)
        ));
        let err = index(&V4l2Device::Path(relative)).unwrap_err().to_string();
        assert!(
            err.contains("it leads to") && err.contains("video2"),
            "{err}"
        );
        assert!(matches!(
            index(&V4l2Device::Path("/dev/video3".into())).unwrap(),
            CameraIndex::Index(3)
        ));
    }

    #[test]
    fn yuyv_grey_stays_grey() {
        let img = super::yuyv_to_rgb(2, 1, &[128, 128, 128, 128]).unwrap();
        let p = img.get_pixel(0, 0).0;
        assert!(p.iter().all(|&c| (c as i32 - 130).abs() <= 2), "{p:?}");
        assert!(super::yuyv_to_rgb(4, 1, &[0; 4]).is_err());
    }
}
