//! The events wildfire-watch emits, as they appear on stdout in replay and in
//! the webhook body in live mode.
//!
//! Every event has a stable `id`: replaying the same footage gives the same ids,
//! and a redelivered event keeps its id, so a receiver can drop duplicates.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::Class;
use crate::views::Rect;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentPhase {
    #[serde(rename = "incident.started")]
    Started,
    #[serde(rename = "incident.updated")]
    Updated,
    #[serde(rename = "incident.ended")]
    Ended,
}

impl IncidentPhase {
    /// The event type, as in the JSON: `incident.started` and so on.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentPhase::Started => "incident.started",
            IncidentPhase::Updated => "incident.updated",
            IncidentPhase::Ended => "incident.ended",
        }
    }

    /// The phase whose [`IncidentPhase::as_str`] is `name`.
    pub fn from_name(name: &str) -> Option<IncidentPhase> {
        [
            IncidentPhase::Started,
            IncidentPhase::Updated,
            IncidentPhase::Ended,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// A change in a confirmed fire: it started, grew or moved, or ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    #[serde(rename = "type")]
    pub phase: IncidentPhase,
    /// Unique per event: `<incident_id>.<sequence number>`.
    pub id: String,
    pub incident_id: String,
    pub camera: String,
    /// When the frame behind this event was taken (RFC 3339, UTC).
    pub time: String,
    pub class: Class,
    pub started_at: String,
    /// Highest score seen in the incident so far.
    pub peak_score: f32,
    /// Highest score in this event's frame.
    pub score: f32,
    /// Where in the frame, in frame pixel coordinates `[x, y, w, h]`.
    pub boxes: Vec<Rect>,
    /// The frame's name (replay) or sequence number (live), for review.
    pub frame: String,
}

/// Formats unix seconds as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(unix: f64) -> String {
    let nanos = (unix * 1e3).round() as i128 * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// A compact UTC stamp for ids: `20250728T101500Z`.
pub fn compact_stamp(unix: f64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix.floor() as i64) {
        Ok(t) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{}", unix.floor() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_reads_as_its_json_type() {
        for phase in [
            IncidentPhase::Started,
            IncidentPhase::Updated,
            IncidentPhase::Ended,
        ] {
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::Value::from(phase.as_str())
            );
        }
    }

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(rfc3339(1_532_813_226.0), "2018-07-28T21:27:06Z");
        assert_eq!(rfc3339(0.25), "1970-01-01T00:00:00.25Z");
        assert_eq!(compact_stamp(1_532_813_226.9), "20180728T212706Z");
    }
}
