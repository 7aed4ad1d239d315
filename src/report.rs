//! The replay report: one self-contained HTML page (`index.html`) with a
//! timeline of per-frame scores, thresholds, labels and incidents, and the
//! picture of each started or updated incident event as the control room
//! would get it, boxes drawn (`alert_<event id>.jpg` beside it: one per
//! event, since two fires confirmed on one frame are two incidents with
//! boxes of their own).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::events::{IncidentEvent, IncidentPhase};
use crate::model::{Class, PerClass};
use crate::replay::{FrameRecord, ReplayOutcome};

const THUMB_WIDTH: u32 = 480;
const SMOKE_COLOUR: &str = "#4a6fa5";
const FLAME_COLOUR: &str = "#d9480f";

/// Writes the report into `dir`, creating it if needed.
pub fn write_report(dir: &Path, title: &str, outcome: &ReplayOutcome) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create report folder {}", dir.display()))?;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>wildfire-watch replay: {t}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}figure{{display:inline-block;margin:.5em}}\
         figcaption{{font-size:.85em}}table{{border-collapse:collapse}}td,th{{padding:.2em .6em;border:1px solid #ccc}}</style>\
         </head><body><h1>Replay: {t}</h1>",
        t = escape(title)
    );
    let summary = serde_json::to_string_pretty(&outcome.summary)?;
    let _ = write!(html, "<h2>Summary</h2><pre>{}</pre>", escape(&summary));
    html.push_str("<h2>Timeline</h2>");
    html.push_str(&timeline_svg(
        &outcome.records,
        &outcome.events,
        &outcome.thresholds,
    ));
    html.push_str(
        "<p>Lines: frame-level smoke (blue) and flame (orange) scores; dashed: alarm thresholds; \
         bars under the plot: labelled smoke/flame frames; shaded: incidents.</p>",
    );

    html.push_str("<h2>Alert frames</h2>");
    if outcome.events.is_empty() {
        html.push_str("<p>No incident events.</p>");
    }
    for event in outcome
        .events
        .iter()
        .filter(|e| e.phase != IncidentPhase::Ended)
    {
        let (Some(record), Some(picture)) = (
            outcome.records.iter().find(|r| r.name == event.frame),
            outcome.pictures.get(&event.id),
        ) else {
            continue;
        };
        let file = format!("alert_{}.jpg", sanitise(&event.id));
        std::fs::write(dir.join(&file), picture)
            .with_context(|| format!("cannot write {}", dir.join(&file).display()))?;
        let _ = write!(
            html,
            "<figure><img src=\"{file}\" width=\"{THUMB_WIDTH}\"><figcaption>{phase} {class} at {frame} ({time}), score {score:.3}, peak {peak:.3}<br>{id}</figcaption></figure>",
            phase = match event.phase {
                IncidentPhase::Started => "started",
                IncidentPhase::Updated => "updated",
                IncidentPhase::Ended => "ended",
            },
            class = event.class.name(),
            frame = escape(&record.name),
            time = escape(&event.time),
            score = event.score,
            peak = event.peak_score,
            id = escape(&event.incident_id),
        );
    }
    html.push_str("</body></html>\n");
    let index = dir.join("index.html");
    std::fs::write(&index, html).with_context(|| format!("cannot write {}", index.display()))?;
    Ok(())
}

fn timeline_svg(
    records: &[FrameRecord],
    events: &[IncidentEvent],
    thresholds: &PerClass<f32>,
) -> String {
    let (width, plot_h, margin) = (1000.0f32, 260.0f32, 40.0f32);
    let n = records.len().max(2) as f32;
    let x_of = |i: usize| margin + i as f32 * (width - 2.0 * margin) / (n - 1.0);
    let y_of = |s: f32| margin + (1.0 - s.clamp(0.0, 1.0)) * (plot_h - margin);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" style=\"background:#fafafa\">",
        plot_h + 40.0
    );
    // Incidents as shaded spans, from their start frame to their end frame (or the end).
    let index_of = |frame: &str| records.iter().position(|r| r.name == frame);
    for start in events.iter().filter(|e| e.phase == IncidentPhase::Started) {
        let Some(a) = index_of(&start.frame) else {
            continue;
        };
        let end = events
            .iter()
            .find(|e| e.phase == IncidentPhase::Ended && e.incident_id == start.incident_id)
            .and_then(|e| index_of(&e.frame))
            .unwrap_or(records.len().saturating_sub(1));
        let colour = if start.class == Class::Smoke {
            SMOKE_COLOUR
        } else {
            FLAME_COLOUR
        };
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{margin}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" opacity=\"0.12\"><title>{}</title></rect>",
            x_of(a),
            (x_of(end) - x_of(a)).max(2.0),
            plot_h - margin,
            escape(&start.incident_id)
        );
    }
    for (class, colour) in [(Class::Smoke, SMOKE_COLOUR), (Class::Flame, FLAME_COLOUR)] {
        let t = thresholds.get(class);
        let _ = write!(
            svg,
            "<line x1=\"{margin}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-dasharray=\"6 4\"/>",
            width - margin,
            y = y_of(t)
        );
        let points: Vec<String> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.scores
                    .map(|s| format!("{:.1},{:.1}", x_of(i), y_of(s.get(class))))
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let row = if class == Class::Smoke {
            plot_h + 8.0
        } else {
            plot_h + 20.0
        };
        for (i, r) in records.iter().enumerate() {
            if r.label.and_then(|l| l.truth.get(class)) == Some(true) {
                let _ = write!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{row}\" width=\"{:.1}\" height=\"8\" fill=\"{colour}\"/>",
                    x_of(i) - 2.0,
                    4.0
                );
            }
        }
        for (i, r) in records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scores.is_none())
        {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" fill=\"#c00\"><title>{} skipped ({})</title>x</text>",
                x_of(i),
                margin - 4.0,
                escape(&r.name),
                r.skipped.unwrap_or("not scored")
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{:.1}\" font-size=\"11\">1.0</text><text x=\"4\" y=\"{:.1}\" font-size=\"11\">0.0</text></svg>",
        y_of(1.0) + 4.0,
        y_of(0.0)
    );
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
