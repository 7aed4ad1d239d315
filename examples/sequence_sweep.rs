//! Measures detection on labelled tower sequences at several working
//! resolutions and temporal-confirmation settings, scoring each frame only
//! once per resolution.
//!
//! Usage:
//!
//! ```text
//! cargo run --release --example sequence_sweep -- [--model PATH]
//!     [--resolutions native,1280,1024,800,640] [--confirm W:S:N ...] DIR...
//! ```
//!
//! Each DIR is a folder of frames with a `labels.csv` (`frame,smoke,...,unix_time`,
//! as in `../shared/datasets/sequences`); ignition is its first frame labelled
//! smoke. `--confirm W:S:N` is a start rule: `N` hot frames within the last `W`
//! seconds spanning at least `S` seconds (`window_s:span_s:required`; the other
//! settings stay at their defaults). Without it, a fixed set of rules around the
//! defaults is tried.
//!
//! For each sequence and resolution it prints the views per frame, the
//! milliseconds per frame on this machine (all threads), the best pre-ignition
//! smoke score and how many pre-ignition frames reach the alarm threshold, the
//! first frame at or after ignition that does, and for each rule the false
//! alarms (incidents started before ignition) and the first true start, in
//! minutes after ignition. This is how the working resolution and the start
//! rule's defaults were chosen (README, "How a frame is scored").

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use wildfire_watch::confirm::{ConfirmConfig, Confirmer};
use wildfire_watch::detector::{Detector, DetectorOptions, FrameScores};
use wildfire_watch::events::IncidentPhase;
use wildfire_watch::footage::Footage;
use wildfire_watch::labels::Labels;
use wildfire_watch::model::{Class, ModelSource};
use wildfire_watch::views::WorkingResolution;

struct Args {
    model: ModelSource,
    resolutions: Vec<WorkingResolution>,
    rules: Vec<ConfirmConfig>,
    dirs: Vec<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        model: ModelSource::Embedded,
        resolutions: Vec::new(),
        rules: Vec::new(),
        dirs: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => args.model = ModelSource::File(value()?.into()),
            "--resolutions" => {
                for r in value()?.split(',') {
                    args.resolutions
                        .push(r.parse().map_err(anyhow::Error::msg)?);
                }
            }
            "--confirm" => args.rules.push(parse_rule(&value()?)?),
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => args.dirs.push(a.into()),
        }
    }
    if args.dirs.is_empty() {
        bail!("usage: sequence_sweep [--model PATH] [--resolutions native,1280,...] [--confirm W:S:N ...] DIR...");
    }
    if args.resolutions.is_empty() {
        args.resolutions = vec![WorkingResolution::Native];
    }
    if args.rules.is_empty() {
        for rule in [
            "150:50:2",
            "60:50:2",
            "210:50:2",
            "150:110:2",
            "150:50:3",
            "60:0:1",
        ] {
            args.rules.push(parse_rule(rule)?);
        }
    }
    Ok(args)
}

/// `W:S:N` as a start rule on top of the default confirmation settings.
fn parse_rule(s: &str) -> Result<ConfirmConfig> {
    let parts: Vec<&str> = s.split(':').collect();
    let [w, sp, n] = parts.as_slice() else {
        bail!("a rule is window_s:span_s:required, e.g. 150:50:2, not {s:?}");
    };
    let rule = ConfirmConfig {
        window_s: w.parse().context("window_s")?,
        span_s: sp.parse().context("span_s")?,
        required: n.parse().context("required")?,
        ..ConfirmConfig::default()
    };
    rule.validate().map_err(anyhow::Error::msg)?;
    Ok(rule)
}

/// One scored frame of a sequence.
struct Scored {
    name: String,
    time: f64,
    positive: bool,
    scores: FrameScores,
}

fn score_sequence(detector: &mut Detector, dir: &Path) -> Result<(Vec<Scored>, f64)> {
    let labels = Labels::read(&dir.join("labels.csv"))?;
    let footage = Footage::open(dir)?;
    let mut frames = Vec::new();
    let start = Instant::now();
    for frame in footage.frames(60.0)? {
        let label = labels
            .get(&frame.name)
            .with_context(|| format!("{} has no label", frame.name))?;
        let time = label
            .unix_time
            .with_context(|| format!("{} has no unix_time", frame.name))?;
        let scores = detector.detect(&frame.image?, None)?;
        frames.push(Scored {
            name: frame.name,
            time,
            positive: label.truth.smoke == Some(true),
            scores,
        });
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / frames.len().max(1) as f64;
    Ok((frames, ms))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    for dir in &args.dirs {
        let name = dir.file_name().map_or("?".into(), |n| n.to_string_lossy());
        for &resolution in &args.resolutions {
            let mut detector = Detector::load(
                &args.model,
                DetectorOptions {
                    resolution: Some(resolution),
                    ..DetectorOptions::default()
                },
            )?;
            let threshold = detector.info().thresholds.smoke;
            let (frames, ms) = score_sequence(&mut detector, dir)?;
            let ignition = frames
                .iter()
                .find(|f| f.positive)
                .with_context(|| format!("{} has no frame labelled smoke", dir.display()))?
                .time;
            let minutes = |t: f64| (t - ignition) / 60.0;
            let pre: Vec<&Scored> = frames.iter().filter(|f| f.time < ignition).collect();
            let pre_max = pre
                .iter()
                .map(|f| f.scores.max(Class::Smoke))
                .fold(0.0, f32::max);
            let pre_hot = pre
                .iter()
                .filter(|f| f.scores.max(Class::Smoke) >= threshold)
                .count();
            let first_hot = frames
                .iter()
                .find(|f| f.time >= ignition && f.scores.max(Class::Smoke) >= threshold)
                .map_or("never".into(), |f| format!("{:+.0} min", minutes(f.time)));
            println!(
                "{name} @ {resolution}: {} views/frame, {ms:.0} ms/frame; pre-ignition best {pre_max:.3}, \
                 {pre_hot} frames >= {threshold}; first hot frame {first_hot}",
                frames[0].scores.layout.rects.len(),
            );
            for rule in &args.rules {
                let mut confirmer = Confirmer::new(&name, rule.clone(), detector.info().thresholds);
                let mut false_alarms = Vec::new();
                let mut first_true = None;
                for f in &frames {
                    for e in confirmer.push(f.time, &f.name, &f.scores) {
                        if e.phase != IncidentPhase::Started || e.class != Class::Smoke {
                            continue;
                        }
                        if f.time < ignition {
                            false_alarms.push(f.name.clone());
                        } else if first_true.is_none() {
                            first_true = Some(minutes(f.time));
                        }
                    }
                }
                println!(
                    "    rule {}:{}:{}  false alarms {:?}  first start {}",
                    rule.window_s,
                    rule.span_s,
                    rule.required,
                    false_alarms,
                    first_true.map_or("missed".into(), |m| format!("{m:+.0} min")),
                );
            }
        }
    }
    Ok(())
}
