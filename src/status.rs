//! What the running monitor knows about itself, and the local HTTP endpoint
//! that shows it.
//!
//! [`LiveState`] holds per-camera state and counters and the inference time
//! histogram; camera tasks and the inference thread update it, and the
//! heartbeat reads it. The outbox's figures are the ones its thread cached
//! after its last call ([`crate::outbox_thread::OutboxFigures`]): an answer
//! here never waits for the database, however slow its disk. [`serve`]
//! answers on `[status] listen`:
//!
//! - `GET /healthz`: JSON with each camera's state, the age of its last frame
//!   and its last error, the outbox depth and whether network time holds the
//!   clock (shown, not judged: a tower booted with its link down is
//!   unsynchronized for as long, and is watching); `200` when every camera is
//!   online and the outbox is not stuck in one call for [`OUTBOX_LIMIT`],
//!   holds no event in memory and is not itself in memory, else `503` (so
//!   `curl -f` and load balancers can use it).
//! - `GET /metrics`: Prometheus text exposition (format 0.0.4), written here
//!   by hand: a few counters and gauges do not justify a metrics crate.
//! - `GET /snapshot/<camera>.jpg`: the camera's latest frame; `404` for an
//!   unknown camera, `503` before its first frame.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::model::PerClass;
use crate::outbox_thread::OutboxHandle;

/// An outbox call running longer than this is considered hung: `/healthz`
/// says so and the watchdog is no longer fed. A write waits up to
/// [`crate::outbox::BUSY_TIMEOUT`] (10 s) for another process's lock, then
/// commits with one fsync, which a slow SD card can stretch to seconds; two
/// minutes is far past both, and short enough that systemd's restart comes
/// while an alert still matters.
pub const OUTBOX_LIMIT: Duration = Duration::from_secs(120);

/// Upper bounds of the inference time histogram, seconds.
pub const INFERENCE_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0];

/// Whether a camera is delivering usable frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CameraState {
    /// No frame yet and not yet reported offline.
    #[default]
    Starting,
    Online,
    /// Reported offline (failures in a row, or a frozen picture).
    Offline,
}

impl CameraState {
    pub fn name(self) -> &'static str {
        match self {
            CameraState::Starting => "starting",
            CameraState::Online => "online",
            CameraState::Offline => "offline",
        }
    }
}

/// One camera's state and counters.
#[derive(Default)]
pub struct CameraStats {
    pub state: CameraState,
    /// When the last good frame arrived (monotonic and unix seconds).
    pub last_frame: Option<(Instant, f64)>,
    pub last_error: Option<String>,
    /// Frames received and decoded.
    pub frames: u64,
    /// Frames scored by the detector.
    pub scored: u64,
    /// Grabs and frames that were not scored, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Frame-level scores of the last scored frame.
    pub scores: Option<PerClass<f32>>,
    pub latest: Option<Arc<RgbImage>>,
}

pub struct CameraStatus {
    pub id: String,
    stats: Mutex<CameraStats>,
}

impl CameraStatus {
    pub fn lock(&self) -> MutexGuard<'_, CameraStats> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn skip(&self, reason: &'static str) {
        *self.lock().skipped.entry(reason).or_default() += 1;
    }
}

#[derive(Default)]
struct Histogram {
    counts: [u64; INFERENCE_BUCKETS.len()],
    count: u64,
    sum: f64,
}

pub struct LiveState {
    pub cameras: Vec<CameraStatus>,
    inference: Mutex<Histogram>,
    pub outbox: OutboxHandle,
    pub started: Instant,
    /// Events the outbox refused (a full disk) that wait in memory: camera
    /// and device events, and incident events (the monitor sets both).
    held: [AtomicUsize; 2],
    /// Why the outbox is in memory, when the disk would not open it at
    /// start ([`crate::outbox::Storage::InMemory`]).
    pub outbox_in_memory: Option<String>,
}

/// Who holds events in memory, for [`LiveState::set_held`].
#[derive(Clone, Copy)]
pub enum HeldBy {
    /// The outbox thread: camera events, heartbeats, `outbox.replaced`.
    OutboxThread = 0,
    /// The inference thread: incident events.
    Inference = 1,
}

impl LiveState {
    pub fn new(camera_ids: Vec<String>, outbox: OutboxHandle) -> LiveState {
        LiveState {
            cameras: camera_ids
                .into_iter()
                .map(|id| CameraStatus {
                    id,
                    stats: Mutex::new(CameraStats::default()),
                })
                .collect(),
            inference: Mutex::new(Histogram::default()),
            outbox,
            started: Instant::now(),
            held: [AtomicUsize::new(0), AtomicUsize::new(0)],
            outbox_in_memory: None,
        }
    }

    /// How many events `by` holds in memory now.
    pub fn set_held(&self, by: HeldBy, n: usize) {
        self.held[by as usize].store(n, Ordering::Relaxed);
    }

    /// Events waiting in memory for the outbox to take writes.
    pub fn held(&self) -> usize {
        self.held.iter().map(|h| h.load(Ordering::Relaxed)).sum()
    }

    pub fn observe_inference(&self, took: Duration) {
        let s = took.as_secs_f64();
        let mut h = self.inference.lock().unwrap_or_else(|e| e.into_inner());
        for (count, bound) in h.counts.iter_mut().zip(INFERENCE_BUCKETS) {
            if s <= bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    /// Per-camera state for `/healthz` and heartbeats; `true` when all are online.
    pub fn cameras_json(&self) -> (Value, bool) {
        let mut all_online = true;
        let cameras: Vec<Value> = self
            .cameras
            .iter()
            .map(|c| {
                let s = c.lock();
                all_online &= s.state == CameraState::Online;
                json!({
                    "id": c.id,
                    "state": s.state.name(),
                    "last_frame_age_s": s.last_frame.map(|(at, _)| (at.elapsed().as_secs_f64() * 10.0).round() / 10.0),
                    "last_frame_at": s.last_frame.map(|(_, unix)| crate::events::rfc3339(unix)),
                    "last_error": s.last_error,
                    "frames": s.frames,
                    "scored": s.scored,
                })
            })
            .collect();
        (Value::Array(cameras), all_online)
    }

    /// The `/healthz` body and whether everything is healthy.
    pub fn health(&self) -> (Value, bool) {
        let (cameras, all_online) = self.cameras_json();
        let figures = self.outbox.figures();
        let disabled = figures.endpoints.iter().filter(|(_, d)| *d).count();
        let held = self.held();
        let mut outbox = match figures.stats {
            Ok(s) => {
                json!({ "pending_events": s.pending_events, "delivered": s.delivered, "endpoints_disabled": disabled, "held_in_memory": held })
            }
            Err(e) => json!({ "error": e, "held_in_memory": held }),
        };
        if held > 0 && outbox.get("error").is_none() {
            outbox["error"] = json!(format!(
                "{held} event(s) wait in memory: the outbox refuses writes (is the disk under [outbox] path full?); they are lost if the service stops"
            ));
        }
        if let Some(problem) = &self.outbox_in_memory {
            outbox["error"] = json!(format!(
                "the outbox is in memory, since the disk would not open it at start ({problem}): events are sent, but lost at a power cut or a crash; free space on the disk under [outbox] path (or replace a card gone read-only): the service then stores them in the file and starts again on it by itself (it looks every 5 minutes)"
            ));
        }
        if let Some(stalled) = self.outbox.stalled_for().filter(|s| *s > OUTBOX_LIMIT) {
            outbox["error"] = json!(format!(
                "one outbox call has run for {:.0} s: the disk under [outbox] path is stuck or failing",
                stalled.as_secs_f64()
            ));
        }
        let healthy = all_online && outbox.get("error").is_none();
        (
            json!({
                "status": if healthy { "ok" } else { "degraded" },
                "uptime_s": self.started.elapsed().as_secs(),
                "clock_synchronized": crate::clock::synchronized(),
                "cameras": cameras,
                "outbox": outbox,
            }),
            healthy,
        )
    }

    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(
                out,
                "# HELP wildfire_{name} {help}\n# TYPE wildfire_{name} {kind}"
            );
        };
        let cameras: Vec<(String, CameraSnapshot)> = self
            .cameras
            .iter()
            .map(|c| (escape(&c.id), CameraSnapshot::of(&c.lock())))
            .collect();
        head(
            &mut out,
            "frames_total",
            "counter",
            "Frames received and decoded, per camera.",
        );
        for (id, c) in &cameras {
            let _ = writeln!(out, "wildfire_frames_total{{camera=\"{id}\"}} {}", c.frames);
        }
        head(
            &mut out,
            "frames_scored_total",
            "counter",
            "Frames scored by the detector, per camera.",
        );
        for (id, c) in &cameras {
            let _ = writeln!(
                out,
                "wildfire_frames_scored_total{{camera=\"{id}\"}} {}",
                c.scored
            );
        }
        head(&mut out, "frames_skipped_total", "counter", "Grabs and frames not scored: error (grab failed), timeout, corrupt (broken JPEG), busy (a newer frame replaced it while the detector was busy), repeat (the same to the pixel as the frame before), size (another size than the camera's, before 3 in a row), inference_error, wedged (a V4L2 device held by a hung capture call). A picture judged stuck is still scored unless it repeats to the pixel.");
        for (id, c) in &cameras {
            for (reason, n) in &c.skipped {
                let _ = writeln!(
                    out,
                    "wildfire_frames_skipped_total{{camera=\"{id}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        head(
            &mut out,
            "camera_online",
            "gauge",
            "1 while the camera delivers usable frames.",
        );
        for (id, c) in &cameras {
            let _ = writeln!(
                out,
                "wildfire_camera_online{{camera=\"{id}\"}} {}",
                u8::from(c.online)
            );
        }
        head(
            &mut out,
            "last_frame_age_seconds",
            "gauge",
            "Seconds since the camera's last good frame.",
        );
        for (id, c) in &cameras {
            if let Some(age) = c.age {
                let _ = writeln!(
                    out,
                    "wildfire_last_frame_age_seconds{{camera=\"{id}\"}} {age:.3}"
                );
            }
        }
        for (class, help) in [
            (
                "smoke",
                "Smoke probability of the last scored frame (maximum over views).",
            ),
            (
                "flame",
                "Flame probability of the last scored frame (maximum over views).",
            ),
        ] {
            head(&mut out, &format!("{class}_score"), "gauge", help);
            for (id, c) in &cameras {
                if let Some(s) = c.scores {
                    let v = if class == "smoke" { s.smoke } else { s.flame };
                    let _ = writeln!(out, "wildfire_{class}_score{{camera=\"{id}\"}} {v}");
                }
            }
        }
        {
            let h = self.inference.lock().unwrap_or_else(|e| e.into_inner());
            head(
                &mut out,
                "inference_seconds",
                "histogram",
                "Time to score one frame.",
            );
            for (bound, n) in INFERENCE_BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "wildfire_inference_seconds_bucket{{le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "wildfire_inference_seconds_bucket{{le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "wildfire_inference_seconds_sum {}", h.sum);
            let _ = writeln!(out, "wildfire_inference_seconds_count {}", h.count);
        }
        head(
            &mut out,
            "events_held_in_memory",
            "gauge",
            "Events the outbox refused (a full disk) that wait in memory, lost if the service stops.",
        );
        let _ = writeln!(out, "wildfire_events_held_in_memory {}", self.held());
        head(
            &mut out,
            "outbox_in_memory",
            "gauge",
            "1 when the disk would not open the outbox at start and events live in memory, lost at a power cut or a crash.",
        );
        let _ = writeln!(
            out,
            "wildfire_outbox_in_memory {}",
            u8::from(self.outbox_in_memory.is_some())
        );
        let figures = self.outbox.figures();
        if let Ok(s) = &figures.stats {
            for (name, kind, help, v) in [
                (
                    "outbox_depth",
                    "gauge",
                    "Events waiting for at least one webhook.",
                    s.pending_events,
                ),
                (
                    "delivered_total",
                    "counter",
                    "Event deliveries a webhook took (2xx, or a 409 to an incident sent again without its picture).",
                    s.delivered,
                ),
                (
                    "delivery_failures_total",
                    "counter",
                    "Delivery attempts that failed and will be retried.",
                    s.failed_attempts,
                ),
                (
                    "delivery_rejected_total",
                    "counter",
                    "Deliveries a webhook refused for good (a 4xx that is not retried).",
                    s.rejected,
                ),
                (
                    "events_expired_total",
                    "counter",
                    "Heartbeats and test events dropped undelivered after [outbox] max_age_hours (incidents, camera and device events never expire).",
                    s.expired,
                ),
                (
                    "events_dropped_full_total",
                    "counter",
                    "Events dropped to keep the outbox under max_events.",
                    s.dropped_full,
                ),
                (
                    "incident_updates_superseded_total",
                    "counter",
                    "Undelivered incident.updated deliveries dropped for a later update or end of the same incident.",
                    s.superseded,
                ),
            ] {
                head(&mut out, name, kind, help);
                let _ = writeln!(out, "wildfire_{name} {v}");
            }
        }
        head(
            &mut out,
            "endpoint_disabled",
            "gauge",
            "1 while a webhook is disabled after answering 410 Gone.",
        );
        for (url, disabled) in &figures.endpoints {
            let _ = writeln!(
                out,
                "wildfire_endpoint_disabled{{endpoint=\"{}\"}} {}",
                escape(url),
                u8::from(*disabled)
            );
        }
        if let Some(synchronized) = crate::clock::synchronized() {
            head(
                &mut out,
                "clock_synchronized",
                "gauge",
                "1 while network time holds the system clock; at 0 events are stamped on an unset clock and receivers that check webhook-timestamp refuse them until it is set.",
            );
            let _ = writeln!(
                out,
                "wildfire_clock_synchronized {}",
                u8::from(synchronized)
            );
        }
        out
    }
}

/// What `/metrics` needs of one camera, copied out of the lock.
struct CameraSnapshot {
    frames: u64,
    scored: u64,
    skipped: BTreeMap<&'static str, u64>,
    online: bool,
    age: Option<f64>,
    scores: Option<PerClass<f32>>,
}

impl CameraSnapshot {
    fn of(s: &CameraStats) -> CameraSnapshot {
        CameraSnapshot {
            frames: s.frames,
            scored: s.scored,
            skipped: s.skipped.clone(),
            online: s.state == CameraState::Online,
            age: s.last_frame.map(|(at, _)| at.elapsed().as_secs_f64()),
            scores: s.scores,
        }
    }
}

/// A label value escaped per the exposition format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

async fn handle(
    state: &LiveState,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
    }
    let path = request.uri().path();
    if path == "/healthz" {
        let (body, healthy) = state.health();
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return respond(status, "application/json", format!("{body}\n"));
    }
    if path == "/metrics" {
        return respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics(),
        );
    }
    if let Some(id) = path
        .strip_prefix("/snapshot/")
        .and_then(|p| p.strip_suffix(".jpg"))
    {
        let Some(camera) = state.cameras.iter().find(|c| c.id == id) else {
            return respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("no camera {id:?}: see /healthz for the configured ids\n"),
            );
        };
        let Some(frame) = camera.lock().latest.clone() else {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no frame from this camera yet\n",
            );
        };
        let encoded = tokio::task::spawn_blocking(move || {
            let mut jpeg = Vec::new();
            JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 85)
                .encode_image(frame.as_ref())
                .map(|_| jpeg)
        })
        .await;
        return match encoded {
            Ok(Ok(jpeg)) => respond(StatusCode::OK, "image/jpeg", jpeg),
            _ => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "cannot encode the frame\n",
            ),
        };
    }
    respond(
        StatusCode::NOT_FOUND,
        "text/plain",
        "try /healthz, /metrics or /snapshot/<camera>.jpg\n",
    )
}

/// Serves the status endpoint on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<LiveState>) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("status endpoint: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                debug!("status connection from {peer}: {e}");
            }
        });
    }
}
