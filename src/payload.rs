//! Webhook bodies: what a control room receives for an incident, a test, a
//! heartbeat, a camera going offline or online, and an outbox replaced
//! ([`outbox_replaced`]), kept in memory ([`outbox_unavailable`]) or back on
//! its disk ([`outbox_restored`]), built into [`OutgoingEvent`]s for the
//! outbox.
//!
//! Every body is a JSON object with `type`, `id` (the `webhook-id` header),
//! `timestamp` (RFC 3339, when the event happened, on the device's clock),
//! `clock_synchronized` (whether network time had set that clock when the
//! body was made: `false` means the timestamp may be hours or years off;
//! `null` where the device cannot tell; src/clock.rs) and `device` {id, name}.
//! An incident adds `camera`, `incident`, `model` and `snapshot`:
//!
//! ```json
//! {"type": "incident.started", "id": "tower-7-cam-n-smoke-20250401T030900Z.0",
//!  "timestamp": "2025-04-01T03:09:00Z", "clock_synchronized": true,
//!  "device": {"id": "tower-7", "name": "Tower 7"},
//!  "camera": {"id": "cam-n", "name": "North", "lat": 46.1, "lon": 7.2, "azimuth_deg": 350.0, "fov_deg": 62.0},
//!  "incident": {"id": "...", "class": "smoke", "started_at": "...", "peak_score": 0.93, "score": 0.91,
//!               "boxes": [[277, 136, 224, 224]]},
//!  "model": {"name": "wildfire-tiles", "version": "3"},
//!  "snapshot": {"content_type": "image/jpeg", "width": 640, "height": 427,
//!               "frame_width": 1600, "frame_height": 1067, "data": "<base64>"}}
//! ```
//!
//! `boxes` are in frame pixels (`frame_width` x `frame_height`); the snapshot
//! is the frame with the boxes drawn, scaled down to `width` x `height`. A
//! frame that cannot be made into a snapshot does not stop the alert: it goes
//! with `"snapshot": null` and `"snapshot_error"` saying why.
//!
//! The snapshot is inline rather than a URL to fetch: the device sits behind
//! carrier NAT on flaky LTE and cannot serve files, and a link to anywhere
//! else would add a second upload that can fail separately from the alert. A
//! 640 px JPEG at quality 70 is some 30-60 KiB, so the body stays well under
//! [`MAX_SNAPSHOT_BYTES`] plus a few hundred bytes, small enough for any
//! receiver's request limit; if a busy frame encodes larger, the quality and
//! then the width step down until it fits.

use std::io::Cursor;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::{imageops, Rgb, RgbImage};
use serde_json::{json, Value};

use crate::config::{CameraConfig, DeviceConfig};
use crate::events::{rfc3339, IncidentEvent};
use crate::model::Class;
use crate::outbox::{EventKind, IncidentRef, OutgoingEvent, SetAside};
use crate::views::Rect;

/// Widest snapshot sent, pixels.
pub const SNAPSHOT_WIDTH: u32 = 640;
/// JPEG quality of the snapshot, first try.
pub const SNAPSHOT_QUALITY: u8 = 70;
/// The encoded snapshot is kept at or under this many bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 96 * 1024;

fn device_json(device: &DeviceConfig) -> Value {
    json!({ "id": device.id.get_ref(), "name": device.name })
}

/// The body for an incident event. `frame` is the frame the event was raised
/// on, without boxes; `created_at` is when it was taken (unix seconds). Never
/// fails: an alert without its picture is worth more than none.
pub fn incident(
    device: &DeviceConfig,
    camera: &CameraConfig,
    model_name: &str,
    model_version: &str,
    event: &IncidentEvent,
    frame: &RgbImage,
    created_at: f64,
) -> OutgoingEvent {
    let id = format!("{}-{}", device.id.get_ref(), event.id);
    let snapshot = snapshot(frame, event).map_err(|e| {
        tracing::error!("{id}: sent without its snapshot: {e:#}");
        format!("{e:#}")
    });
    let model = (model_name, model_version);
    incident_event(device, json!(camera), model, event, snapshot, created_at)
}

/// The body for the `incident.ended` of an incident whose camera is no
/// longer configured ([`crate::confirm::OpenIncident::ended_without_frame`]):
/// `camera` holds its id alone, and there is no picture.
pub fn incident_of_unconfigured_camera(
    device: &DeviceConfig,
    model_name: &str,
    model_version: &str,
    event: &IncidentEvent,
    created_at: f64,
) -> OutgoingEvent {
    let why = format!(
        "camera {} is no longer in the configuration: no frame ended this incident",
        event.camera
    );
    incident_event(
        device,
        json!({ "id": event.camera }),
        (model_name, model_version),
        event,
        Err(why),
        created_at,
    )
}

/// An incident's event: `camera` as the body gives it, `model` its name and
/// version, and `snapshot` the picture or why there is none.
fn incident_event(
    device: &DeviceConfig,
    camera: Value,
    (model_name, model_version): (&str, &str),
    event: &IncidentEvent,
    snapshot: Result<Value, String>,
    created_at: f64,
) -> OutgoingEvent {
    let id = format!("{}-{}", device.id.get_ref(), event.id);
    let (snapshot, snapshot_error) = match snapshot {
        Ok(snapshot) => (snapshot, None),
        Err(why) => (Value::Null, Some(why)),
    };
    let mut body = json!({
        "type": event.phase,
        "id": id,
        "timestamp": event.time,
        "clock_synchronized": crate::clock::synchronized(),
        "device": device_json(device),
        "camera": camera,
        "incident": {
            "id": event.incident_id,
            "class": event.class,
            "started_at": event.started_at,
            "peak_score": score_value(event.peak_score),
            "score": score_value(event.score),
            "boxes": event.boxes,
        },
        "model": { "name": model_name, "version": model_version },
        "snapshot": snapshot,
    });
    if let Some(error) = snapshot_error {
        body["snapshot_error"] = Value::String(error);
    }
    OutgoingEvent {
        id,
        kind: EventKind::Incident,
        created_at,
        body: body.to_string(),
        incident: Some(IncidentRef {
            id: event.incident_id.clone(),
            phase: event.phase,
        }),
    }
}

/// A score as the number its `f32` prints as: `0.93`, not the
/// `0.9300000071525574` that widening it to `f64` gives (a receiver
/// comparing against its own threshold, or a person reading the body, sees
/// what the device saw). A score that is not finite is `null`.
fn score_value(score: f32) -> Value {
    score
        .to_string()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite())
        .map_or(Value::Null, Value::from)
}

/// `body` (an incident's JSON) without its snapshot, `snapshot_error` saying
/// `why`; `None` when it holds no snapshot to take out, or is not an incident
/// body. For a receiver that refuses the whole body as too large: the alert
/// matters more than its picture.
pub fn without_snapshot(body: &str, why: &str) -> Option<String> {
    let mut value: Value = serde_json::from_str(body).ok()?;
    let object = value.as_object_mut().filter(|o| holds_snapshot(o))?;
    object.insert("snapshot".into(), Value::Null);
    object.insert("snapshot_error".into(), Value::String(why.into()));
    Some(value.to_string())
}

/// Whether `body` is an incident with a snapshot [`without_snapshot`] could
/// take out.
pub fn has_snapshot(body: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(holds_snapshot)
}

fn holds_snapshot(object: &serde_json::Map<String, Value>) -> bool {
    object.get("snapshot").is_some_and(Value::is_object)
}

/// Whether `body` is an incident whose picture delivery took out
/// ([`without_snapshot`] with a reason ending in [`TAKEN_OUT`]).
pub fn picture_taken_out(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| {
        v["snapshot"].is_null()
            && v["snapshot_error"]
                .as_str()
                .is_some_and(|e| e.ends_with(TAKEN_OUT))
    })
}

/// How the `snapshot_error` of a picture delivery took out ends.
pub const TAKEN_OUT: &str = "sent without the picture";

/// A device event's id, `DEVICE-NAME-STAMP-RANDOM`: the random part keeps ids unique across
/// restarts within one second (a crash loop), since a reused id with another
/// body is refused (409) and dropped by the receiver.
fn unique_id(device: &DeviceConfig, name: &str, at: f64) -> String {
    format!(
        "{}-{name}-{}-{:08x}",
        device.id.get_ref(),
        crate::events::compact_stamp(at),
        fastrand::u32(..)
    )
}

/// An event about the device rather than a fire: `type`, `id`, `timestamp`
/// (`at`), `clock_synchronized` (the clock's state now) and `device`, and
/// the event's own `fields` (a JSON object, which must not repeat those
/// keys).
fn device_event(
    device: &DeviceConfig,
    kind: EventKind,
    event_type: &str,
    id: String,
    at: f64,
    fields: Value,
) -> OutgoingEvent {
    device_event_stamped(
        device,
        kind,
        event_type,
        id,
        (at, crate::clock::synchronized()),
        fields,
    )
}

/// [`device_event`] for an event made earlier: its time and the clock's
/// state then.
fn device_event_stamped(
    device: &DeviceConfig,
    kind: EventKind,
    event_type: &str,
    id: String,
    (at, clock_synchronized): (f64, Option<bool>),
    fields: Value,
) -> OutgoingEvent {
    let mut body = json!({
        "type": event_type,
        "id": id,
        "timestamp": rfc3339(at),
        "clock_synchronized": clock_synchronized,
        "device": device_json(device),
    });
    match (body.as_object_mut(), fields) {
        (Some(envelope), Value::Object(fields)) => {
            debug_assert!(
                fields.keys().all(|k| !envelope.contains_key(k)),
                "{fields:?} repeats an envelope key"
            );
            envelope.extend(fields);
        }
        (_, fields) => debug_assert!(false, "device_event's fields {fields} are not an object"),
    }
    OutgoingEvent {
        id,
        kind,
        created_at: at,
        body: body.to_string(),
        incident: None,
    }
}

/// A `test` event, as sent by `wildfire-watch test-alert`. It carries a
/// picture as large as an incident's can be (`test_picture`): a limit on
/// the size of a body between the device and the control room (a
/// framework's default, a firewall's rule that answers `403` to bodies over
/// 8 KB) then shows when the installer runs `test-alert`, not on the first
/// fire. With a test body of a few hundred bytes, `test-alert` passed where
/// every alert with its picture was refused.
pub fn test_event(device: &DeviceConfig, created_at: f64) -> OutgoingEvent {
    let (snapshot, snapshot_error) = match test_picture() {
        Ok(picture) => (picture, Value::Null),
        Err(e) => (Value::Null, Value::String(format!("{e:#}"))),
    };
    device_event(
        device,
        EventKind::Test,
        "test",
        unique_id(device, "test", created_at),
        created_at,
        json!({
            "message": "Test alert from wildfire-watch: no fire. If you can read this, alerts reach you. Its snapshot is a test picture (noise) as large as an alert's can be.",
            "snapshot": snapshot,
            "snapshot_error": snapshot_error,
        }),
    )
}

/// A snapshot as large as an incident's can be: noise, which JPEG cannot
/// shrink, in as many rows as fit under [`MAX_SNAPSHOT_BYTES`] at the
/// snapshot's first quality (grey below), so that it goes as it is. The same
/// every time.
fn test_picture() -> Result<Value> {
    let (width, height) = (SNAPSHOT_WIDTH, SNAPSHOT_WIDTH * 9 / 16);
    let picture = |rows: u32| {
        RgbImage::from_fn(width, height, |x, y| {
            if y >= rows {
                return Rgb([128, 128, 128]);
            }
            // A hash of the pixel's place (xorshift32 of it).
            let mut h = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) | 1;
            h ^= h << 13;
            h ^= h >> 17;
            h ^= h << 5;
            let [r, g, b, _] = h.to_le_bytes();
            Rgb([r, g, b])
        })
    };
    // The most noisy rows that fit: fitting only grows fewer rows.
    let (mut fits, mut over) = (0, height + 1);
    while over - fits > 1 {
        let rows = (fits + over) / 2;
        if jpeg(&picture(rows), SNAPSHOT_QUALITY)?.len() <= MAX_SNAPSHOT_BYTES {
            fits = rows;
        } else {
            over = rows;
        }
    }
    encoded(&picture(fits)).map(|p| p.json())
}

/// A `heartbeat` event: the device is alive; `status` is free-form JSON
/// (cameras seen, last frame time, outbox counters).
pub fn heartbeat(device: &DeviceConfig, created_at: f64, status: Value) -> OutgoingEvent {
    device_event(
        device,
        EventKind::Heartbeat,
        "heartbeat",
        unique_id(device, "heartbeat", created_at),
        created_at,
        json!({ "status": status }),
    )
}

/// Whether a camera went offline or came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraChange {
    Offline,
    Online,
}

impl CameraChange {
    pub fn event_type(self) -> &'static str {
        match self {
            CameraChange::Offline => "camera.offline",
            CameraChange::Online => "camera.online",
        }
    }
}

/// A `camera.offline` or `camera.online` event: `reason` says what went
/// wrong (offline) or how long it was out (online); `at` is when it was noticed.
pub fn camera_event(
    device: &DeviceConfig,
    camera: &CameraConfig,
    change: CameraChange,
    reason: &str,
    at: f64,
) -> OutgoingEvent {
    let name = match change {
        CameraChange::Offline => "offline",
        CameraChange::Online => "online",
    };
    device_event(
        device,
        EventKind::Camera,
        change.event_type(),
        unique_id(device, &format!("{}-{name}", camera.id.get_ref()), at),
        at,
        json!({ "camera": camera, "reason": reason }),
    )
}

/// An `outbox.replaced` event: at start `run` found the outbox damaged, set
/// it aside and began an empty one (`[outbox] on_damage = "set_aside"`).
/// Alerts it had not delivered may never arrive, so a person should fetch
/// the copy from the device; `set_aside_as` says where it is. Id, time and
/// body come from the set-aside's notice alone: a start that ends before the
/// event is stored leaves the notice, and the next sends the same event
/// again, which a receiver that has it already keeps once (src/outbox.rs,
/// [`SetAside`]).
pub fn outbox_replaced(device: &DeviceConfig, set_aside: &SetAside) -> OutgoingEvent {
    device_event_stamped(
        device,
        EventKind::Device,
        "outbox.replaced",
        format!(
            "{}-outbox-replaced-{}-{}",
            device.id.get_ref(),
            crate::events::compact_stamp(set_aside.at),
            set_aside.tag
        ),
        (set_aside.at, set_aside.clock_synchronized),
        json!({
            "problem": set_aside.problem,
            "set_aside_as": set_aside.copy.display().to_string(),
            "message": "The device found its outbox damaged at start, set it aside and began an empty one: alerts it had not yet delivered may be lost. The device keeps watching. Fetch the copy from the device; `sqlite3 COPY .recover` may save its events.",
        }),
    )
}

/// An `outbox.unavailable` event: at start the disk would not open the
/// outbox (full, or read-only), so `run` keeps its events in memory. They
/// are sent as usual, but a stop (a power cut) loses the undelivered ones,
/// so a person should free space or replace the card.
pub fn outbox_unavailable(device: &DeviceConfig, problem: &str, at: f64) -> OutgoingEvent {
    device_event(
        device,
        EventKind::Device,
        "outbox.unavailable",
        unique_id(device, "outbox-unavailable", at),
        at,
        json!({
            "problem": problem,
            "message": "The device could not open its outbox at start (its disk is full or read-only), so it keeps alerts in memory: they are sent as usual but lost if the device loses power or fails before they are delivered. The device keeps watching. Free space on the device's disk, or replace its storage card (the problem says which; a folder the service may not write is an installation to fix): the device then goes back to its disk by itself, within 5 minutes, keeping those alerts.",
        }),
    )
}

/// An `outbox.restored` event: the outbox kept in memory since a start
/// (`problem`, its `outbox.unavailable`) is back in its file, with the
/// `stored_events` it still held, and the next start runs on the file. The
/// control room, told by `outbox.unavailable` that a power cut would lose
/// alerts, is told when that is over, as `camera.online` follows
/// `camera.offline`.
pub fn outbox_restored(
    device: &DeviceConfig,
    problem: &str,
    stored_events: usize,
    at: f64,
) -> OutgoingEvent {
    device_event(
        device,
        EventKind::Device,
        "outbox.restored",
        unique_id(device, "outbox-restored", at),
        at,
        json!({
            "problem": problem,
            "stored_events": stored_events,
            "message": "The device's outbox is back on its disk: the events it kept in memory are stored there and sent as usual, and a power cut no longer loses them. Nothing to do.",
        }),
    )
}

/// The frame with the event's boxes drawn, scaled to at most
/// [`SNAPSHOT_WIDTH`] wide, as base64 JPEG under [`MAX_SNAPSHOT_BYTES`].
fn snapshot(frame: &RgbImage, event: &IncidentEvent) -> Result<Value> {
    alert_picture(frame, event).map(|p| p.json())
}

/// An alert's picture as the control room gets it.
pub struct Picture {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub frame_width: u32,
    pub frame_height: u32,
}

impl Picture {
    /// The `snapshot` object of an event.
    fn json(&self) -> Value {
        json!({
            "content_type": "image/jpeg",
            "width": self.width,
            "height": self.height,
            "frame_width": self.frame_width,
            "frame_height": self.frame_height,
            "data": BASE64.encode(&self.jpeg),
        })
    }
}

/// The picture of an incident event: its frame with the event's boxes
/// drawn, scaled to at most [`SNAPSHOT_WIDTH`] wide, JPEG under
/// [`MAX_SNAPSHOT_BYTES`]. Replay's report shows the same picture.
pub fn alert_picture(frame: &RgbImage, event: &IncidentEvent) -> Result<Picture> {
    let (frame_width, frame_height) = frame.dimensions();
    if frame_width == 0 || frame_height == 0 {
        anyhow::bail!("the incident frame is empty ({frame_width}x{frame_height})");
    }
    let mut drawn = frame.clone();
    let colour = match event.class {
        Class::Smoke => Rgb([74, 111, 165]),
        Class::Flame => Rgb([217, 72, 15]),
    };
    // Lines about 2 px thick once scaled down.
    let thickness = (frame_width / SNAPSHOT_WIDTH).max(1) * 2;
    for b in &event.boxes {
        draw_rect(&mut drawn, b, colour, thickness);
    }
    encoded(&drawn)
}

/// Draws the outline of `r`, `thickness` pixels wide, clipped to the image.
fn draw_rect(img: &mut RgbImage, r: &Rect, colour: Rgb<u8>, thickness: u32) {
    let (w, h) = img.dimensions();
    let x1 = (r.x + r.w).min(w);
    let y1 = (r.y + r.h).min(h);
    for y in r.y.min(h)..y1 {
        for x in r.x.min(w)..x1 {
            let edge = x < r.x + thickness
                || y < r.y + thickness
                || x + thickness >= x1
                || y + thickness >= y1;
            if edge {
                img.put_pixel(x, y, colour);
            }
        }
    }
}

/// `frame` scaled to at most [`SNAPSHOT_WIDTH`] wide, as JPEG under
/// [`MAX_SNAPSHOT_BYTES`], with its sizes.
fn encoded(frame: &RgbImage) -> Result<Picture> {
    let (frame_width, frame_height) = frame.dimensions();
    let mut width = frame_width.min(SNAPSHOT_WIDTH);
    let mut quality = SNAPSHOT_QUALITY;
    loop {
        let height =
            ((u64::from(frame_height) * u64::from(width)) / u64::from(frame_width)).max(1) as u32;
        let small = if width == frame_width {
            frame.clone()
        } else {
            imageops::resize(frame, width, height, imageops::FilterType::Triangle)
        };
        let jpeg = jpeg(&small, quality)?;
        if jpeg.len() <= MAX_SNAPSHOT_BYTES || width <= 160 {
            return Ok(Picture {
                jpeg,
                width,
                height,
                frame_width,
                frame_height,
            });
        }
        if quality > 40 {
            quality -= 15;
        } else {
            width = width * 3 / 4;
        }
    }
}

/// `picture` as JPEG at `quality`.
fn jpeg(picture: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), quality)
        .encode_image(picture)
        .context("cannot encode the snapshot as JPEG")?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::IncidentPhase;
    use crate::views::Rect;
    use toml::Spanned;

    /// Device `tower-7` and its camera `cam-n`, whose source (address, user
    /// name) must never leave the device.
    fn tower_7() -> (DeviceConfig, crate::config::Config) {
        let device = DeviceConfig {
            id: Spanned::new(0..0, "tower-7".into()),
            name: "Tower 7".into(),
        };
        let config = crate::config::Config::parse(
            std::path::Path::new("test.toml"),
            r#"
[device]
id = "tower-7"
name = "Tower 7"
[[cameras]]
id = "cam-n"
name = "North"
lat = 46.1
lon = 7.2
azimuth_deg = 350.0
fov_deg = 62.0
source = { kind = "snapshot", url = "http://192.0.2.1/snap.jpg", username = "u", password_file = "/p" }
"#,
        )
        .unwrap();
        (device, config)
    }

    #[test]
    fn incident_body_has_the_documented_shape_and_a_small_snapshot() {
        let (device, config) = tower_7();
        let camera = &config.cameras[0];
        let event = IncidentEvent {
            phase: IncidentPhase::Started,
            id: "cam-n-smoke-20250401T030900Z.0".into(),
            incident_id: "cam-n-smoke-20250401T030900Z".into(),
            camera: "cam-n".into(),
            time: "2025-04-01T03:09:00Z".into(),
            class: Class::Smoke,
            started_at: "2025-04-01T03:09:00Z".into(),
            peak_score: 0.93,
            score: 0.91,
            boxes: vec![Rect {
                x: 277,
                y: 136,
                w: 224,
                h: 224,
            }],
            frame: "17".into(),
        };
        // Noise is the worst case for JPEG size.
        let mut rng = fastrand::Rng::with_seed(7);
        let frame = RgbImage::from_fn(1600, 1067, |_, _| Rgb([rng.u8(..), rng.u8(..), rng.u8(..)]));
        let out = incident(
            &device,
            camera,
            "wildfire-tiles",
            "3",
            &event,
            &frame,
            1_743_476_940.0,
        );
        assert_eq!(out.id, "tower-7-cam-n-smoke-20250401T030900Z.0");
        assert_eq!(out.kind, EventKind::Incident);
        assert!(
            out.body.len() < 140 * 1024,
            "body is {} bytes",
            out.body.len()
        );
        let v: Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(v["type"], "incident.started");
        assert_eq!(v["id"], out.id.as_str());
        assert_eq!(v["camera"]["azimuth_deg"], 350.0);
        assert_eq!(v["camera"]["id"], "cam-n");
        // The source (address, user name) never leaves the device.
        assert!(v["camera"].get("source").is_none(), "{}", v["camera"]);
        assert!(!out.body.contains("192.0.2.1"));
        assert_eq!(v["incident"]["boxes"], json!([[277, 136, 224, 224]]));
        // Scores as the device's f32 prints them, not widened digits.
        assert!(
            out.body.contains(r#""peak_score":0.93,"#) && out.body.contains(r#""score":0.91,"#),
            "{}",
            &out.body[..out.body.find("snapshot").unwrap_or(out.body.len())]
        );
        assert_eq!(score_value(f32::NAN), Value::Null);
        assert_eq!(v["model"]["version"], "3");
        assert!(v["snapshot"]["width"].as_u64().unwrap() <= 640);
        assert_eq!(v["snapshot"]["frame_width"], 1600);
        let jpeg = BASE64
            .decode(v["snapshot"]["data"].as_str().unwrap())
            .unwrap();
        assert!(jpeg.len() <= MAX_SNAPSHOT_BYTES);
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!(
            u64::from(decoded.width()),
            v["snapshot"]["width"].as_u64().unwrap()
        );
        assert!(v.get("snapshot_error").is_none());

        // A receiver that refuses the body as too large gets it without the
        // picture; the rest is unchanged.
        let small = without_snapshot(&out.body, "too large").unwrap();
        let w: Value = serde_json::from_str(&small).unwrap();
        assert!(w["snapshot"].is_null());
        assert_eq!(w["snapshot_error"], "too large");
        assert_eq!(w["incident"], v["incident"]);
        assert!(small.len() < 2048, "{} bytes", small.len());
        assert_eq!(without_snapshot(&small, "again"), None);
        assert_eq!(without_snapshot("not json", "x"), None);

        // A frame that cannot become a picture still gives the alert.
        let empty = RgbImage::new(0, 0);
        let out = incident(&device, camera, "wildfire-tiles", "3", &event, &empty, 0.0);
        let v: Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(v["type"], "incident.started");
        assert_eq!(v["incident"]["boxes"], json!([[277, 136, 224, 224]]));
        // Scores as the device's f32 prints them, not widened digits.
        assert!(
            out.body.contains(r#""peak_score":0.93,"#) && out.body.contains(r#""score":0.91,"#),
            "{}",
            &out.body[..out.body.find("snapshot").unwrap_or(out.body.len())]
        );
        assert_eq!(score_value(f32::NAN), Value::Null);
        assert!(v["snapshot"].is_null());
        assert!(
            v["snapshot_error"].as_str().unwrap().contains("empty"),
            "{v}"
        );

        // The end of an incident whose camera was removed: its id alone,
        // the scores of no frame null, no picture, and why.
        let ended = IncidentEvent {
            phase: IncidentPhase::Ended,
            id: "cam-n-smoke-20250401T030900Z.4".into(),
            score: f32::NAN,
            frame: String::new(),
            ..event
        };
        let out = incident_of_unconfigured_camera(&device, "wildfire-tiles", "3", &ended, 5.0);
        assert_eq!(out.id, "tower-7-cam-n-smoke-20250401T030900Z.4");
        assert_eq!(out.created_at, 5.0);
        assert_eq!(
            out.incident.as_ref().map(|r| r.phase),
            Some(IncidentPhase::Ended)
        );
        let v: Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(v["type"], "incident.ended");
        assert_eq!(v["camera"], json!({"id": "cam-n"}));
        assert_eq!(v["incident"]["score"], Value::Null);
        assert_eq!(v["incident"]["boxes"], json!([[277, 136, 224, 224]]));
        assert!(v["snapshot"].is_null());
        assert!(
            v["snapshot_error"]
                .as_str()
                .unwrap()
                .contains("no longer in the configuration"),
            "{v}"
        );
    }

    #[test]
    fn device_events_share_the_envelope_and_never_share_an_id() {
        let (device, config) = tower_7();
        let at = 1_743_476_940.0;
        let set_aside = SetAside {
            copy: "/var/lib/wildfire-watch/outbox.sqlite3.damaged-20250401T030900Z".into(),
            problem: "file is not a database".into(),
            at,
            clock_synchronized: crate::clock::synchronized(),
            tag: "0badf00d".into(),
            file: None,
        };
        let events = [
            (
                test_event(&device, at),
                "test",
                EventKind::Test,
                "tower-7-test-",
            ),
            (
                heartbeat(&device, at, json!({"uptime_s": 5})),
                "heartbeat",
                EventKind::Heartbeat,
                "tower-7-heartbeat-",
            ),
            (
                outbox_replaced(&device, &set_aside),
                "outbox.replaced",
                EventKind::Device,
                "tower-7-outbox-replaced-",
            ),
            (
                outbox_restored(&device, "disk full", 3, at),
                "outbox.restored",
                EventKind::Device,
                "tower-7-outbox-restored-",
            ),
        ];
        let camera = camera_event(
            &device,
            &config.cameras[0],
            CameraChange::Offline,
            "refused",
            at,
        );
        let events: Vec<_> = events
            .into_iter()
            .chain([(
                camera,
                "camera.offline",
                EventKind::Camera,
                "tower-7-cam-n-offline-",
            )])
            .collect();
        for (event, kind_name, kind, prefix) in &events {
            let v: Value = serde_json::from_str(&event.body).unwrap();
            assert_eq!(v["type"], *kind_name);
            assert_eq!(v["id"], event.id.as_str());
            assert_eq!(event.kind, *kind);
            assert_eq!(event.created_at, at);
            assert!(
                event.id.starts_with(&format!("{prefix}20250401T030900Z")),
                "{}",
                event.id
            );
            assert_eq!(v["timestamp"], "2025-04-01T03:09:00Z");
            // Whatever the kernel says here (the rule itself is tested in
            // src/clock.rs): the field is there, from the kernel.
            assert_eq!(v["clock_synchronized"], json!(crate::clock::synchronized()));
            assert_eq!(v["device"], json!({"id": "tower-7", "name": "Tower 7"}));
        }
        let v: Value = serde_json::from_str(&events[1].0.body).unwrap();
        assert_eq!(v["status"], json!({"uptime_s": 5}));
        let v: Value = serde_json::from_str(&events[2].0.body).unwrap();
        assert_eq!(v["set_aside_as"], set_aside.copy.display().to_string());
        assert_eq!(v["problem"], "file is not a database");
        let v: Value = serde_json::from_str(&events[3].0.body).unwrap();
        assert_eq!(
            (v["problem"].as_str(), v["stored_events"].as_u64()),
            (Some("disk full"), Some(3))
        );
        let v: Value = serde_json::from_str(&events[4].0.body).unwrap();
        assert_eq!(v["camera"]["id"], "cam-n");
        assert_eq!(v["reason"], "refused");
        assert!(!events[4].0.body.contains("192.0.2.1"));
        // Two in the same second (a crash loop) differ: a reused id with
        // another body would be refused by the receiver and dropped.
        assert_ne!(test_event(&device, at).id, test_event(&device, at).id);
        // But a set-aside's notice, sent again by a later start, is the same
        // event (id and body: a receiver keeps one), whatever the clock says
        // now: its time and clock state are the set-aside's.
        assert_eq!(
            outbox_replaced(&device, &set_aside),
            outbox_replaced(&device, &set_aside)
        );
        let stamped = SetAside {
            clock_synchronized: Some(true),
            ..set_aside.clone()
        };
        let v: Value = serde_json::from_str(&outbox_replaced(&device, &stamped).body).unwrap();
        assert_eq!(v["clock_synchronized"], true);
        assert_eq!(v["id"], "tower-7-outbox-replaced-20250401T030900Z-0badf00d");
    }

    #[test]
    fn a_test_alert_is_as_large_as_the_largest_alert() {
        // Its picture is a JPEG near the snapshot's limit, the same every
        // time; a receiver refusing it gets it again without, as an alert.
        let (device, _) = tower_7();
        let test = test_event(&device, 0.0);
        let v: Value = serde_json::from_str(&test.body).unwrap();
        let jpeg = BASE64
            .decode(v["snapshot"]["data"].as_str().unwrap())
            .unwrap();
        assert!(
            jpeg.len() > MAX_SNAPSHOT_BYTES * 9 / 10 && jpeg.len() <= MAX_SNAPSHOT_BYTES,
            "{} bytes",
            jpeg.len()
        );
        let picture = image::load_from_memory(&jpeg).unwrap();
        assert_eq!(
            (picture.width(), picture.height()),
            (
                v["snapshot"]["width"].as_u64().unwrap() as u32,
                v["snapshot"]["height"].as_u64().unwrap() as u32
            )
        );
        assert!(v["snapshot_error"].is_null());
        assert_eq!(
            v["snapshot"],
            serde_json::from_str::<Value>(&test_event(&device, 0.0).body).unwrap()["snapshot"]
        );
        assert!(has_snapshot(&test.body));
    }
}
