//! The live monitor's configuration file: TOML, read once at start-up.
//!
//! Owns parsing, defaults and validation of every section, and turning a
//! mistake into an error that names the file, the line and the field.
//! `systemd/wildfire-watch.example.toml` documents every field; a test keeps it
//! parsing. Unknown fields are errors, so a misspelt key never silently falls
//! back to a default.
//!
//! Webhook secrets never appear in the file itself or on a command line: they
//! are read from files (`secret_files`) or from a systemd credential
//! (`secret_credential`, read from `$CREDENTIALS_DIRECTORY/<name>`).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::confirm::ConfirmConfig;
use crate::mask::{IgnoreMask, IgnoreShape};
use crate::webhook::Secret;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub device: DeviceConfig,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    #[serde(default)]
    pub status: StatusConfig,
}

/// `[device]`: who is speaking.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Stable identifier, used in event ids: letters, digits, `-`, `_`, `.`.
    pub id: Spanned<String>,
    /// Human-readable name shown to the control room.
    pub name: String,
}

/// `[[cameras]]`: where a camera is, which way it looks, where its frames
/// come from and how hard to try it. Only the placement fields (id, name,
/// position, bearing, field of view) are sent to control rooms; the source,
/// with its address and user name, never leaves the device.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Letters, digits, `-`, `_`, `.`: used in event ids, metrics and URLs.
    pub id: Spanned<String>,
    pub name: String,
    /// WGS 84 degrees.
    pub lat: f64,
    pub lon: f64,
    /// Compass bearing of the image centre, degrees clockwise from north.
    pub azimuth_deg: f64,
    /// Horizontal field of view, degrees.
    pub fov_deg: f64,
    /// Where frames come from.
    #[serde(skip_serializing)]
    pub source: Spanned<SourceConfig>,
    /// Seconds between grabs.
    #[serde(default = "default_interval_s", skip_serializing)]
    pub interval_s: Spanned<f64>,
    /// A grab that takes longer than this many seconds is abandoned and counts
    /// as a failure.
    #[serde(default = "default_grab_timeout_s", skip_serializing)]
    pub grab_timeout_s: Spanned<f64>,
    /// Ceiling of the retry delay after failed grabs, seconds: the delay
    /// starts at `interval_s`, doubles per consecutive failure, and is drawn
    /// uniformly between half that ceiling and all of it. Once the camera is
    /// reported offline it is tried every `interval_s` instead.
    #[serde(default = "default_max_backoff_s", skip_serializing)]
    pub max_backoff_s: Spanned<f64>,
    /// Consecutive failed grabs after which the camera is reported offline.
    #[serde(default = "default_offline_after_failures", skip_serializing)]
    pub offline_after_failures: Spanned<u32>,
    /// Minutes of an unchanged picture after which the camera is reported
    /// offline (a frozen encoder or a cached snapshot).
    #[serde(default = "default_stuck_after_minutes", skip_serializing)]
    pub stuck_after_minutes: Spanned<f64>,
    /// Mean absolute difference, in grey levels (0-255), of 96x54 pixels
    /// sampled across the frame (those clipped in both left out), under
    /// which two frames count as the same picture (see
    /// `camera::StuckDetector`).
    #[serde(default = "default_stuck_tolerance", skip_serializing)]
    pub stuck_tolerance: Spanned<f64>,
    /// Regions never to alarm on, as for `replay --ignore`: `"x,y,w,h"` or
    /// `"x1,y1 x2,y2 x3,y3 ..."`, in frame pixels.
    #[serde(default, skip_serializing)]
    pub ignore: Vec<Spanned<String>>,
    /// Temporal confirmation for this camera (see `confirm.rs`).
    #[serde(default, skip_serializing)]
    pub confirm: ConfirmConfig,
}

fn default_interval_s() -> Spanned<f64> {
    Spanned::new(0..0, 10.0)
}
fn default_grab_timeout_s() -> Spanned<f64> {
    Spanned::new(0..0, 10.0)
}
fn default_max_backoff_s() -> Spanned<f64> {
    Spanned::new(0..0, 300.0)
}
fn default_offline_after_failures() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}
fn default_stuck_after_minutes() -> Spanned<f64> {
    Spanned::new(0..0, 10.0)
}
fn default_stuck_tolerance() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}

/// `[cameras.source]`: one kind of camera.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// A JPEG fetched over HTTP on each grab (Hikvision ISAPI
    /// `/ISAPI/Streaming/channels/101/picture`, Reolink `cgi-bin/api.cgi?cmd=Snap`).
    Snapshot(SnapshotConfig),
    /// An RTSP stream, decoded by libav (needs a build with `--features video`).
    Rtsp(RtspConfig),
    /// A local capture device through V4L2 (needs a build with `--features v4l2`).
    V4l2(V4l2Config),
}

impl SourceConfig {
    /// The camera's login, for the kinds that take one.
    pub fn login(&self) -> Option<Login<'_>> {
        match self {
            SourceConfig::Snapshot(s) => Some(s.login()),
            SourceConfig::Rtsp(r) => Some(r.login()),
            SourceConfig::V4l2(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Snapshot(_) => "snapshot",
            SourceConfig::Rtsp(_) => "rtsp",
            SourceConfig::V4l2(_) => "v4l2",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// http:// or https:// address answering a GET with one JPEG.
    pub url: String,
    pub username: Option<String>,
    /// File holding the password (surrounding whitespace is ignored).
    pub password_file: Option<PathBuf>,
    /// A systemd credential holding the password, read from
    /// `$CREDENTIALS_DIRECTORY/<name>`.
    pub password_credential: Option<String>,
    /// `digest` (RFC 7616 SHA-256 or MD5, what Hikvision and Dahua ask for) or `basic`.
    #[serde(default)]
    pub auth: HttpAuth,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HttpAuth {
    #[default]
    Digest,
    Basic,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RtspConfig {
    /// rtsp:// address. Credentials in it (`rtsp://user:password@host/...`)
    /// still work, but the configuration file is readable by everyone on the
    /// device (the service's dynamic user must read it): give `username`
    /// and a password file or credential instead, as for snapshots.
    pub url: String,
    pub username: Option<String>,
    /// File holding the password (surrounding whitespace is ignored).
    pub password_file: Option<PathBuf>,
    /// A systemd credential holding the password, read from
    /// `$CREDENTIALS_DIRECTORY/<name>`.
    pub password_credential: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct V4l2Config {
    /// Device index (`0` for /dev/video0) or path (`"/dev/video0"`, or a
    /// udev link to one: `"/dev/v4l/by-id/..."` keeps its camera when the
    /// numbers change).
    pub device: V4l2Device,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum V4l2Device {
    Index(u32),
    Path(PathBuf),
}

/// `[[webhooks]]`: one control room.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: Spanned<String>,
    /// Files each holding one secret. Every secret signs each message (the
    /// receiver accepts any one), which is how a secret is rotated without
    /// downtime: add the new one, switch the receiver, remove the old one.
    #[serde(default)]
    pub secret_files: Vec<Spanned<PathBuf>>,
    /// A systemd credential (`LoadCredential=`/`SetCredentialEncrypted=`) read
    /// from `$CREDENTIALS_DIRECTORY/<name>`; it signs before `secret_files`.
    #[serde(default)]
    pub secret_credential: Option<Spanned<String>>,
}

/// `[outbox]`: the durable queue of events not yet delivered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    pub path: PathBuf,
    /// Most undelivered events kept; past it heartbeats go first,
    /// incidents last.
    pub max_events: Spanned<u32>,
    /// Undelivered heartbeats and tests older than this are dropped (logged
    /// and counted); incidents, camera and device events are bounded only
    /// by `max_events` (src/outbox.rs).
    pub max_age_hours: Spanned<f64>,
    /// What `run` does with an outbox it finds damaged at start.
    pub on_damage: OnDamage,
}

/// `[outbox] on_damage`: what `run` does with an outbox SQLite cannot read
/// whole at start. Other commands (`deliver`, `test-alert`) always stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDamage {
    /// Refuse to start, with one line that says what to do. Nothing is
    /// touched, but the tower is unwatched until someone comes (under
    /// `Restart=always` the unit starts and stops every few seconds).
    #[default]
    Stop,
    /// Rename the file (and its `-wal` and `-shm`) aside, start with an
    /// empty outbox, and tell every webhook (`outbox.replaced`) and the
    /// journal where the copy is: the tower keeps watching. Copies already
    /// reported are deleted, oldest first, when the outbox needs their room
    /// (src/outbox.rs).
    SetAside,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            path: PathBuf::from("/var/lib/wildfire-watch/outbox.sqlite3"),
            max_events: Spanned::new(0..0, 10_000),
            max_age_hours: Spanned::new(0..0, 72.0),
            on_damage: OnDamage::Stop,
        }
    }
}

/// `[delivery]`: how hard to try each webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Seconds to wait for the TCP and TLS connection.
    pub connect_timeout_s: Spanned<f64>,
    /// Seconds from sending a request until the whole answer is read.
    pub response_timeout_s: Spanned<f64>,
    /// At most this many bytes of an answer's body are read; the rest is cut off.
    pub max_response_bytes: Spanned<u32>,
    /// First retry delay ceiling, seconds; doubles per failed attempt.
    pub initial_backoff_s: Spanned<f64>,
    /// Largest retry delay ceiling, seconds. Each delay is drawn uniformly
    /// between zero and the ceiling ("full jitter").
    pub max_backoff_s: Spanned<f64>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            connect_timeout_s: Spanned::new(0..0, 10.0),
            response_timeout_s: Spanned::new(0..0, 30.0),
            max_response_bytes: Spanned::new(0..0, 64 * 1024),
            initial_backoff_s: Spanned::new(0..0, 5.0),
            max_backoff_s: Spanned::new(0..0, 900.0),
        }
    }
}

/// `[heartbeat]`: a sign of life for the control room.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    pub interval_minutes: Spanned<f64>,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_minutes: Spanned::new(0..0, 60.0),
        }
    }
}

/// `[status]`: the local HTTP endpoint for health checks and metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Address to listen on. Keep it on loopback (or a management VLAN): it
    /// serves camera snapshots without authentication.
    pub listen: Spanned<String>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            listen: Spanned::new(0..0, "127.0.0.1:9187".into()),
        }
    }
}

/// A configuration mistake, located in the file.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the mistake has a place in the file.
    pub line_col: Option<(usize, usize)>,
    /// The offending line of the file.
    pub source_line: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)?
            }
            None => write!(f, "{}: {}", self.path.display(), self.message)?,
        }
        if let (Some(text), Some((line, _))) = (&self.source_line, self.line_col) {
            write!(f, "\n  {line} | {text}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Locates errors in one file's text.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        // Defaults carry the empty span 0..0: they have no place in the file.
        let span = span.filter(|s| !s.is_empty() && s.start <= self.text.len());
        let (line_col, source_line) = match span {
            Some(s) => {
                let before = &self.text[..s.start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = before[line_start..].chars().count() + 1;
                let text = self.text[line_start..].lines().next().unwrap_or("");
                (Some((line, col)), Some(text.to_string()))
            }
            None => (None, None),
        };
        ConfigError {
            path: self.path.to_path_buf(),
            line_col,
            source_line,
            message,
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`. Secrets are not read
    /// here (see [`WebhookConfig::load_secrets`]), so the file can be checked
    /// away from the device.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line_col: None,
            source_line: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates `text`; `path` is used in error messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = Locator { path, text };
        let mut config: Config = toml::from_str(text)
            .map_err(|e| at.error(e.span(), e.message().trim_end().to_string()))?;
        config.validate(&at)?;
        // A bearing given the other way round (-30) goes out as a compass
        // bearing (330), as alerts promise.
        for camera in &mut config.cameras {
            camera.azimuth_deg = camera.azimuth_deg.rem_euclid(360.0);
        }
        Ok(config)
    }

    fn validate(&self, at: &Locator) -> Result<(), ConfigError> {
        let id = &self.device.id;
        if !is_identifier(id.get_ref()) {
            return Err(at.error(
                Some(id.span()),
                "device.id must be non-empty and use only letters, digits, '-', '_' and '.' (it is part of every event id)".into(),
            ));
        }
        for (i, webhook) in self.webhooks.iter().enumerate() {
            let url = &webhook.url;
            match reqwest::Url::parse(url.get_ref()) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
                Ok(_) => {
                    return Err(at.error(
                        Some(url.span()),
                        format!(
                            "webhooks[{i}].url must be an http:// or https:// address with a host"
                        ),
                    ))
                }
                Err(e) => {
                    return Err(at.error(
                        Some(url.span()),
                        format!("webhooks[{i}].url is not a valid URL: {e}"),
                    ))
                }
            }
            if webhook.secret_files.is_empty() && webhook.secret_credential.is_none() {
                return Err(at.error(
                    Some(url.span()),
                    format!("webhooks[{i}] has no secret: add secret_files = [\"/etc/wildfire-watch/webhook.secret\"] or secret_credential = \"NAME\""),
                ));
            }
            if let Some(name) = &webhook.secret_credential {
                if !credential_name_ok(name.get_ref()) {
                    return Err(at.error(
                        Some(name.span()),
                        format!("webhooks[{i}].secret_credential must be a credential name (no '/'), as given to LoadCredential="),
                    ));
                }
            }
        }
        for i in 0..self.webhooks.len() {
            for j in 0..i {
                if self.webhooks[i].url.get_ref() == self.webhooks[j].url.get_ref() {
                    return Err(at.error(
                        Some(self.webhooks[i].url.span()),
                        format!("webhooks[{i}].url repeats webhooks[{j}].url: list each control room once"),
                    ));
                }
            }
        }
        for (i, camera) in self.cameras.iter().enumerate() {
            camera.validate(at, i)?;
            if let Some(j) = self.cameras[..i]
                .iter()
                .position(|c| c.id.get_ref() == camera.id.get_ref())
            {
                return Err(at.error(
                    Some(camera.id.span()),
                    format!("cameras[{i}].id repeats cameras[{j}].id: give each camera its own id"),
                ));
            }
        }
        if self
            .status
            .listen
            .get_ref()
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(at.error(
                Some(self.status.listen.span()),
                "status.listen must be an address and port, e.g. \"127.0.0.1:9187\"".into(),
            ));
        }
        positive_u32(at, "outbox.max_events", &self.outbox.max_events)?;
        positive(at, "outbox.max_age_hours", &self.outbox.max_age_hours)?;
        let d = &self.delivery;
        positive(at, "delivery.connect_timeout_s", &d.connect_timeout_s)?;
        positive(at, "delivery.response_timeout_s", &d.response_timeout_s)?;
        positive_u32(at, "delivery.max_response_bytes", &d.max_response_bytes)?;
        positive(at, "delivery.initial_backoff_s", &d.initial_backoff_s)?;
        positive(at, "delivery.max_backoff_s", &d.max_backoff_s)?;
        if d.max_backoff_s.get_ref() < d.initial_backoff_s.get_ref() {
            return Err(at.error(
                Some(d.max_backoff_s.span()),
                "delivery.max_backoff_s must be at least delivery.initial_backoff_s".into(),
            ));
        }
        positive(
            at,
            "heartbeat.interval_minutes",
            &self.heartbeat.interval_minutes,
        )?;
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn credential_name_ok(n: &str) -> bool {
    !(n.is_empty() || n.contains('/') || n == "." || n == "..")
}

impl CameraConfig {
    fn validate(&self, at: &Locator, i: usize) -> Result<(), ConfigError> {
        if !is_identifier(self.id.get_ref()) {
            return Err(at.error(
                Some(self.id.span()),
                format!("cameras[{i}].id must be non-empty and use only letters, digits, '-', '_' and '.' (it is part of event ids and URLs)"),
            ));
        }
        let name = |field: &str| format!("cameras[{i}].{field}");
        // Placement goes into every alert: a map in the control room puts
        // the camera, and the bearing of its view, where these say. A
        // bearing may be given either way round (-30 is 330).
        for (field, value, range) in [
            ("lat", self.lat, -90.0..=90.0),
            ("lon", self.lon, -180.0..=180.0),
            ("azimuth_deg", self.azimuth_deg, -360.0..=360.0),
            ("fov_deg", self.fov_deg, f64::MIN_POSITIVE..=360.0),
        ] {
            if !range.contains(&value) {
                return Err(at.error(
                    Some(self.id.span()),
                    format!(
                        "{} = {value} is out of range: it must be from {} to {} (WGS 84 degrees for lat and lon; degrees clockwise from north for azimuth_deg)",
                        name(field),
                        if field == "fov_deg" { 0.0 } else { *range.start() },
                        range.end()
                    ),
                ));
            }
        }
        positive(at, &name("interval_s"), &self.interval_s)?;
        positive(at, &name("grab_timeout_s"), &self.grab_timeout_s)?;
        positive(at, &name("max_backoff_s"), &self.max_backoff_s)?;
        positive_u32(
            at,
            &name("offline_after_failures"),
            &self.offline_after_failures,
        )?;
        positive(at, &name("stuck_after_minutes"), &self.stuck_after_minutes)?;
        positive(at, &name("stuck_tolerance"), &self.stuck_tolerance)?;
        for shape in &self.ignore {
            if let Err(e) = shape.get_ref().parse::<IgnoreShape>() {
                return Err(at.error(Some(shape.span()), format!("{}: {e}", name("ignore"))));
            }
        }
        if let Err(e) = self.confirm.validate() {
            return Err(at.error(Some(self.id.span()), format!("{}: {e}", name("confirm"))));
        }
        let (interval, c) = (*self.interval_s.get_ref(), &self.confirm);
        if !c.can_start_at_interval(interval) {
            return Err(at.error(
                Some(self.interval_s.span()),
                format!(
                    "{}: at interval_s = {interval} the start rule's {} hot frames spanning span_s = {} s cannot fit in window_s = {} s, so no incident could ever start: lower interval_s or raise {}.window_s",
                    name("interval_s"),
                    c.required,
                    c.span_s,
                    c.window_s,
                    name("confirm")
                ),
            ));
        }
        let span = Some(self.source.span());
        let bad = |message: String| Err(at.error(span.clone(), message));
        match self.source.get_ref() {
            SourceConfig::Snapshot(s) => match reqwest::Url::parse(&s.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return bad(format!(
                        "{}: url must be an http:// or https:// address with a host, got {:?}",
                        name("source"),
                        s.url
                    ))
                }
            },
            SourceConfig::Rtsp(r) => {
                if !cfg!(feature = "video") {
                    return bad(format!("{}: kind = \"rtsp\" needs a build with video support: rebuild with `cargo build --release --features video` (after `apt-get install libavformat-dev libavcodec-dev libswscale-dev libclang-dev pkg-config`), or use a snapshot URL", name("source")));
                }
                match reqwest::Url::parse(&r.url) {
                    Ok(u) if matches!(u.scheme(), "rtsp" | "rtsps") && u.host().is_some() => {
                        if r.username.is_some()
                            && (!u.username().is_empty() || u.password().is_some())
                        {
                            return bad(format!(
                                "{}: give the user name in username or in the url, not both",
                                name("source")
                            ));
                        }
                    }
                    _ => {
                        return bad(format!(
                            "{}: url must be an rtsp:// address with a host",
                            name("source")
                        ))
                    }
                }
            }
            SourceConfig::V4l2(v) => {
                if !cfg!(feature = "v4l2") {
                    return bad(format!("{}: kind = \"v4l2\" needs a build with capture-device support: rebuild with `cargo build --release --features v4l2` (after `apt-get install libclang-dev`)", name("source")));
                }
                if v.width.is_some() != v.height.is_some() {
                    return bad(format!(
                        "{}: give both width and height, or neither",
                        name("source")
                    ));
                }
                if [v.width, v.height, v.fps].contains(&Some(0)) {
                    return bad(format!(
                        "{}: width, height and fps must be above 0",
                        name("source")
                    ));
                }
            }
        }
        if let Some(Err(problem)) = self.source.get_ref().login().map(|l| l.check()) {
            return bad(format!("{}: {problem}", name("source")));
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(*self.interval_s.get_ref())
    }
    pub fn grab_timeout(&self) -> Duration {
        Duration::from_secs_f64(*self.grab_timeout_s.get_ref())
    }
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs_f64(*self.max_backoff_s.get_ref())
    }
    pub fn stuck_after(&self) -> Duration {
        Duration::from_secs_f64(self.stuck_after_minutes.get_ref() * 60.0)
    }

    /// The ignore shapes as a mask (they were checked when the file was read).
    pub fn ignore_mask(&self) -> IgnoreMask {
        IgnoreMask::new(self.ignore_shapes()).owned_by(&format!("camera {}", self.id.get_ref()))
    }

    /// The ignore shapes, parsed (they were checked when the file was read).
    pub fn ignore_shapes(&self) -> Vec<IgnoreShape> {
        self.ignore
            .iter()
            .filter_map(|s| s.get_ref().parse().ok())
            .collect()
    }
}

/// A camera's user name and where its password is kept, as snapshot and
/// RTSP sources give them: one rule for checking and reading both.
pub struct Login<'a> {
    pub username: Option<&'a str>,
    pub password_file: Option<&'a Path>,
    pub password_credential: Option<&'a str>,
}

impl Login<'_> {
    /// What is wrong with the combination, if anything.
    fn check(&self) -> Result<(), String> {
        let has_password = self.password_file.is_some() || self.password_credential.is_some();
        if self.password_file.is_some() && self.password_credential.is_some() {
            return Err("give password_file or password_credential, not both".into());
        }
        if has_password != self.username.is_some() {
            return Err("username needs a password (password_file or password_credential), and a password needs a username".into());
        }
        if let Some(n) = self.password_credential {
            if !credential_name_ok(n) {
                return Err("password_credential must be a credential name (no '/'), as given to LoadCredential=".into());
            }
        }
        Ok(())
    }

    /// The user name and password, read from the file or credential; `None`
    /// when none is configured.
    pub fn load(&self) -> anyhow::Result<Option<(String, String)>> {
        use anyhow::Context;
        let path = match (self.password_file, self.password_credential) {
            (Some(file), _) => file.to_path_buf(),
            (None, Some(name)) => credential_path(name)?,
            (None, None) => return Ok(None),
        };
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the camera password from {}: check the path and that the service user may read it",
                path.display()
            )
        })?;
        Ok(self
            .username
            .map(|user| (user.to_string(), text.trim().to_string())))
    }
}

impl<'a> Login<'a> {
    fn of(
        username: &'a Option<String>,
        password_file: &'a Option<PathBuf>,
        password_credential: &'a Option<String>,
    ) -> Login<'a> {
        Login {
            username: username.as_deref(),
            password_file: password_file.as_deref(),
            password_credential: password_credential.as_deref(),
        }
    }
}

impl SnapshotConfig {
    pub fn login(&self) -> Login<'_> {
        Login::of(
            &self.username,
            &self.password_file,
            &self.password_credential,
        )
    }
}

impl RtspConfig {
    pub fn login(&self) -> Login<'_> {
        Login::of(
            &self.username,
            &self.password_file,
            &self.password_credential,
        )
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>`, or an error saying how to provide it.
fn credential_path(name: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").with_context(|| {
        format!(
            "credential \"{name}\" needs $CREDENTIALS_DIRECTORY: run under systemd with LoadCredential={name}:/path/to/file, or use a file setting instead"
        )
    })?;
    Ok(Path::new(&dir).join(name))
}

fn positive(at: &Locator, name: &str, value: &Spanned<f64>) -> Result<(), ConfigError> {
    let v = *value.get_ref();
    // Also bounds values to what a Duration can hold.
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(())
    } else {
        Err(at.error(
            Some(value.span()),
            format!("{name} must be a positive number, got {v}"),
        ))
    }
}

fn positive_u32(at: &Locator, name: &str, value: &Spanned<u32>) -> Result<(), ConfigError> {
    if *value.get_ref() > 0 {
        Ok(())
    } else {
        Err(at.error(Some(value.span()), format!("{name} must be at least 1")))
    }
}

impl WebhookConfig {
    /// Reads this webhook's secrets: the credential first, then each file in
    /// order. The error says which file or credential and what to do.
    pub fn load_secrets(&self) -> anyhow::Result<Vec<Secret>> {
        use anyhow::Context;
        let mut secrets = Vec::new();
        if let Some(name) = &self.secret_credential {
            let path = credential_path(name.get_ref()).context("secret_credential")?;
            secrets.push(Secret::read(&path)?);
        }
        for file in &self.secret_files {
            secrets.push(Secret::read(file.get_ref())?);
        }
        Ok(secrets)
    }
}

impl OutboxConfig {
    pub fn max_age(&self) -> Duration {
        Duration::from_secs_f64(self.max_age_hours.get_ref() * 3600.0)
    }
}

impl DeliveryConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(*self.connect_timeout_s.get_ref())
    }
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs_f64(*self.response_timeout_s.get_ref())
    }
    pub fn initial_backoff(&self) -> Duration {
        Duration::from_secs_f64(*self.initial_backoff_s.get_ref())
    }
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs_f64(*self.max_backoff_s.get_ref())
    }
}

impl HeartbeatConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_minutes.get_ref() * 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn the_shipped_example_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/wildfire-watch.example.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.webhooks.len(), 2);
        assert_eq!(config.cameras.len(), 1);
        let camera = &config.cameras[0];
        assert_eq!(camera.source.get_ref().kind(), "snapshot");
        assert_eq!(camera.ignore.len(), 2);
        assert!(!camera.ignore_mask().is_empty());
        assert_eq!(camera.confirm, ConfirmConfig::default());
        assert_eq!(config.status.listen.get_ref(), "127.0.0.1:9187");
    }

    const CAMERA: &str = "[device]\nid = \"t\"\nname = \"T\"\n[[cameras]]\nid = \"west\"\nname = \"W\"\nlat = 35.17\nlon = 127.68\nazimuth_deg = 265.0\nfov_deg = 62.0\n";

    #[test]
    fn camera_defaults_and_sources() {
        let config = parse(&format!(
            "{CAMERA}[cameras.source]\nkind = \"snapshot\"\nurl = \"http://192.0.2.1/pic\"\n"
        ))
        .unwrap();
        let camera = &config.cameras[0];
        assert_eq!(camera.interval(), Duration::from_secs(10));
        assert_eq!(camera.grab_timeout(), Duration::from_secs(10));
        assert_eq!(camera.stuck_after(), Duration::from_secs(600));
        assert_eq!(*camera.offline_after_failures.get_ref(), 3);
        match camera.source.get_ref() {
            SourceConfig::Snapshot(s) => {
                assert_eq!(s.auth, HttpAuth::Digest);
                assert_eq!(s.login().load().unwrap(), None);
            }
            other => panic!("{other:?}"),
        }
        let v4l2 = parse(&format!(
            "{CAMERA}[cameras.source]\nkind = \"v4l2\"\ndevice = \"/dev/video0\"\n"
        ));
        let rtsp = parse(&format!(
            "{CAMERA}[cameras.source]\nkind = \"rtsp\"\nurl = \"rtsp://192.0.2.1/s\"\n"
        ));
        if cfg!(feature = "v4l2") {
            assert!(v4l2.is_ok());
        } else {
            let e = v4l2.unwrap_err();
            assert!(e.message.contains("--features v4l2"), "{e}");
            assert_eq!(e.line_col.map(|l| l.0), Some(11), "{e}");
        }
        if cfg!(feature = "video") {
            assert!(rtsp.is_ok());
            // A login outside the URL follows the snapshot's rules, and a
            // user name is given once.
            let login = |extra: &str| {
                parse(&format!(
                    "{CAMERA}[cameras.source]\nkind = \"rtsp\"\nurl = \"rtsp://u:p@192.0.2.1/s\"\n{extra}"
                ))
            };
            assert!(login("").is_ok());
            let both = login("username = \"u\"\npassword_file = \"/p\"\n").unwrap_err();
            assert!(both.message.contains("not both"), "{both}");
            let alone = parse(&format!(
                "{CAMERA}[cameras.source]\nkind = \"rtsp\"\nurl = \"rtsp://192.0.2.1/s\"\nusername = \"u\"\n"
            ))
            .unwrap_err();
            assert!(alone.message.contains("needs a password"), "{alone}");
            let config = parse(&format!(
                "{CAMERA}[cameras.source]\nkind = \"rtsp\"\nurl = \"rtsp://192.0.2.1/s\"\nusername = \"u\"\npassword_credential = \"cam\"\n"
            ))
            .unwrap();
            let login = config.cameras[0].source.get_ref().login().unwrap();
            assert_eq!(login.password_credential, Some("cam"));
        } else {
            assert!(rtsp.unwrap_err().message.contains("--features video"));
        }
    }

    #[test]
    fn camera_mistakes_name_the_field() {
        let source = "[cameras.source]\nkind = \"snapshot\"\nurl = \"http://192.0.2.1/pic\"\n";
        for (extra, expected) in [
            ("interval_s = 0.0\n", "cameras[0].interval_s"),
            ("ignore = [\"1,2,3\"]\n", "cameras[0].ignore"),
            ("ignore = [\"0,0,0,5\"]\n", "width and height"),
        ] {
            let e = parse(&format!("{CAMERA}{extra}{source}")).unwrap_err();
            assert!(e.message.contains(expected), "{extra}: {e}");
            assert_eq!(e.line_col.map(|l| l.0), Some(11), "{e}");
        }
        // The default rule (2 hot frames within 150 s) at one frame in 180 s
        // could never start an incident; the same interval with a wider
        // window can.
        let e = parse(&format!("{CAMERA}interval_s = 180.0\n{source}")).unwrap_err();
        assert!(e.message.contains("no incident could ever start"), "{e}");
        assert_eq!(e.line_col.map(|l| l.0), Some(11), "{e}");
        parse(&format!(
            "{CAMERA}interval_s = 180.0\n{source}[cameras.confirm]\nwindow_s = 400.0\n"
        ))
        .unwrap();
        let e = parse(&format!("{CAMERA}[cameras.source]\nkind = \"ftp\"\n")).unwrap_err();
        assert!(e.message.contains("ftp"), "{e}");
        let e = parse(&format!(
            "{CAMERA}[cameras.source]\nkind = \"snapshot\"\nurl = \"http://x/\"\nusername = \"u\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("needs a password"), "{e}");
        let e = parse(&format!(
            "{CAMERA}[cameras.source]\nkind = \"snapshot\"\nurl = \"http://x/\"\nuser = \"u\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("user"), "{e}");
        let twice = format!(
            "{CAMERA}{source}{}{source}",
            &CAMERA[CAMERA.find("[[cameras]]").unwrap()..]
        );
        let e = parse(&twice).unwrap_err();
        assert!(e.message.contains("repeats"), "{e}");
        let e = parse("[device]\nid = \"t\"\nname = \"T\"\n[status]\nlisten = \"localhost\"\n")
            .unwrap_err();
        assert!(e.message.contains("status.listen"), "{e}");
        // Placement goes into every alert: out-of-range values are refused.
        for (field, bad) in [
            ("lat = 35.17", "lat = 135.1"),
            ("lon = 127.68", "lon = -200.0"),
            ("azimuth_deg = 265.0", "azimuth_deg = 900.0"),
            ("fov_deg = 62.0", "fov_deg = -5.0"),
        ] {
            let e = parse(&format!("{}{source}", CAMERA.replace(field, bad))).unwrap_err();
            let name = bad.split(' ').next().unwrap();
            assert!(
                e.message.contains(&format!("cameras[0].{name}"))
                    && e.message.contains("out of range"),
                "{bad}: {e}"
            );
        }
        // A bearing the other way round is read as the compass bearing.
        let config = parse(&format!(
            "{}{source}",
            CAMERA.replace("azimuth_deg = 265.0", "azimuth_deg = -30.0")
        ))
        .unwrap();
        assert_eq!(config.cameras[0].azimuth_deg, 330.0);
        // An unknown class in thresholds is a mistake, not ignored.
        let e = parse(&format!(
            "{CAMERA}{source}[cameras.confirm]\nthresholds = {{ smoke = 0.9, flame = 0.9, fire = 0.5 }}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("fire"), "{e}");
    }

    #[test]
    fn defaults_fill_missing_sections() {
        let config = parse("[device]\nid = \"tower-7\"\nname = \"Tower 7\"\n").unwrap();
        assert_eq!(
            config.outbox.path,
            Path::new("/var/lib/wildfire-watch/outbox.sqlite3")
        );
        assert_eq!(config.outbox.max_age(), Duration::from_secs(72 * 3600));
        assert!(config.webhooks.is_empty());
    }

    #[test]
    fn unknown_fields_are_errors_with_their_line() {
        let e =
            parse("[device]\nid = \"t\"\nname = \"T\"\n\n[outbox]\nmax_event = 5\n").unwrap_err();
        assert_eq!(e.line_col.map(|l| l.0), Some(6), "{e}");
        assert!(e.message.contains("max_event"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field_and_line() {
        let e = parse("[device]\nid = \"t\"\nname = \"T\"\n[delivery]\nconnect_timeout_s = -1.0\n")
            .unwrap_err();
        assert_eq!(e.line_col, Some((5, 21)), "{e}");
        assert!(e.message.contains("delivery.connect_timeout_s"), "{e}");
        let e = parse(
            "[device]\nid = \"t\"\nname = \"T\"\n[[webhooks]]\nurl = \"ftp://x\"\nsecret_files = [\"/s\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.line_col.map(|l| l.0), Some(5), "{e}");
        assert!(e.to_string().contains("webhooks[0].url"), "{e}");
        let e =
            parse("[device]\nid = \"t\"\nname = \"T\"\n[[webhooks]]\nurl = \"https://x.org/\"\n")
                .unwrap_err();
        assert!(e.message.contains("no secret"), "{e}");
        let e = parse("[device]\nid = \"t w\"\nname = \"T\"\n").unwrap_err();
        assert_eq!(e.line_col.map(|l| l.0), Some(2), "{e}");
    }
}
