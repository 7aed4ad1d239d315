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

use crate::webhook::Secret;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub device: DeviceConfig,
    // ---- [[cameras]] ------------------------------------------------------
    // Owned by the frame loop (cameras, streams, masks). For now only what
    // webhook payloads need to place an incident on a map.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    // ---- end of [[cameras]] -------------------------------------------------
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
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

/// `[[cameras]]`: where a camera is and which way it looks.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: String,
    pub name: String,
    /// WGS 84 degrees.
    pub lat: f64,
    pub lon: f64,
    /// Compass bearing of the image centre, degrees clockwise from north.
    pub azimuth_deg: f64,
    /// Horizontal field of view, degrees.
    pub fov_deg: f64,
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
    /// Most undelivered events kept; past it heartbeats and snapshots go first,
    /// incidents last.
    pub max_events: Spanned<u32>,
    /// Undelivered events older than this are dropped (logged and counted).
    pub max_age_hours: Spanned<f64>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            path: PathBuf::from("/var/lib/wildfire-watch/outbox.sqlite3"),
            max_events: Spanned::new(0..0, 10_000),
            max_age_hours: Spanned::new(0..0, 72.0),
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
        let config: Config = toml::from_str(text)
            .map_err(|e| at.error(e.span(), e.message().trim_end().to_string()))?;
        config.validate(&at)?;
        Ok(config)
    }

    fn validate(&self, at: &Locator) -> Result<(), ConfigError> {
        let id = &self.device.id;
        if id.get_ref().is_empty()
            || !id
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
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
                let n = name.get_ref();
                if n.is_empty() || n.contains('/') || n == "." || n == ".." {
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
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").with_context(|| {
                format!(
                    "secret_credential = \"{}\" needs $CREDENTIALS_DIRECTORY: run under systemd with LoadCredential={}:/path/to/secret, or use secret_files",
                    name.get_ref(),
                    name.get_ref()
                )
            })?;
            let path = Path::new(&dir).join(name.get_ref());
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
