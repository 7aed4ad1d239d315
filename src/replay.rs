//! Replay: recorded footage through the same detector and confirmation as a
//! live camera, at the footage's own timestamps.
//!
//! A frame's time is, in order: its `unix_time` label; the video's own
//! timestamp; for stills named by when they were taken (camera archives,
//! FIgLib, FTP uploads), the time in the file name, when more than half the
//! names in the folder give one in order and no label gives a time (the
//! other frames timed between their neighbours);
//! otherwise `interval_s` after the frame before. The start
//! and end rules count seconds, so footage replayed on the wrong clock starts
//! incidents at other frames than the live camera did.
//!
//! This module owns the replay loop and its summary. Events go to the caller
//! as they happen (the CLI prints them as JSON lines); with labels, the
//! summary scores the run against them.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;
use tracing::{info, warn};

use crate::confirm::ConfirmConfig;
use crate::detector::{Detector, ViewScore};
use crate::events::{rfc3339, IncidentEvent, IncidentPhase};
use crate::footage::{time_from_name, times_from_names, Footage};
use crate::labels::{ClassMetrics, ConfusionCounter, FrameLabel, Labels};
use crate::mask::IgnoreMask;
use crate::model::{Class, PerClass};
use crate::payload;
use crate::pipeline::{Admission, CameraPipeline, FrameGate, NEW_SIZE_AFTER_FRAMES};

pub struct ReplayOptions {
    pub camera: String,
    pub labels: Option<Labels>,
    /// Seconds between frames that have no `unix_time` label and no time in
    /// their names (stills), or between sampled frames (video).
    pub interval_s: f64,
    /// Stills: time frames by their file names when every name gives one
    /// ([`crate::footage::times_from_names`]); off, they are `interval_s`
    /// apart.
    pub times_from_names: bool,
    pub confirm: ConfirmConfig,
    pub mask: IgnoreMask,
    /// Keep the alert picture of each started or updated incident event
    /// (for `--report`), as the control room would get it: a snapshot's
    /// size ([`crate::payload::MAX_SNAPSHOT_BYTES`], unless one does not
    /// fit even 160 px wide). The frames themselves
    /// were kept before, 5.8 MB for a 1600x1200 one (rm-w replayed at native
    /// resolution peaked at 269 MB): a 6-hour fire of updates a minute from
    /// a 3072x2048 camera would have held 6.8 GB.
    pub keep_event_frames: bool,
}

/// What replay saw of one frame.
#[derive(Clone, Debug)]
pub struct FrameRecord {
    pub name: String,
    pub time: f64,
    /// `None` when the frame was not scored (`skipped` says why).
    pub scores: Option<PerClass<f32>>,
    /// Why the frame was not scored, in the live monitor's words
    /// (`wildfire_frames_skipped_total`): `corrupt` (it could not be
    /// decoded), `size` or `repeat` ([`FrameGate`]).
    pub skipped: Option<&'static str>,
    /// Per-view scores, kept for frames that raised an incident event.
    pub views: Vec<ViewScore>,
    pub label: Option<FrameLabel>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub frames: usize,
    pub decoded: usize,
    /// Frames not scored: not decoded, or skipped as live skips them
    /// ([`FrameRecord::skipped`]).
    pub skipped: usize,
    pub incidents: usize,
    /// The alarm thresholds the frames were judged by: the model's, or a
    /// camera's `[cameras.confirm] thresholds` (`--config`).
    pub thresholds: PerClass<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_alarms: Option<usize>,
    /// `Some(None)` is printed as `null`: labelled footage whose fire was
    /// missed; `None` (left out) where no frame is labelled positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_detect_s: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smoke: Option<ClassMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flame: Option<ClassMetrics>,
    /// The highest frame score of each class over the decoded frames (`null`
    /// with none).
    pub peak_score: PerClass<Option<f64>>,
    /// With labels: the highest frame score of each class over the frames
    /// labelled clear of it (`null` with none). An alarm threshold above it
    /// keeps those frames quiet whatever the start rule, so on a camera's
    /// own smoke-free footage it is the figure to set its `[cameras.confirm]
    /// thresholds` by, and its distance under the model's threshold is the
    /// headroom that camera's scenery leaves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_clear_score: Option<PerClass<Option<f64>>>,
}

pub struct ReplayOutcome {
    pub records: Vec<FrameRecord>,
    pub events: Vec<IncidentEvent>,
    /// Each started or updated event's alert picture (JPEG) by event id,
    /// where [`ReplayOptions::keep_event_frames`] asks for them.
    pub pictures: HashMap<String, Vec<u8>>,
    pub summary: Summary,
    pub thresholds: PerClass<f32>,
}

/// Refuses labels that name none of the frames (a wrong file, or paths where
/// the `frame` column wants file names): the summary would read as a fire
/// missed. Some frames without a label is normal, and said.
fn check_labels_name_frames(paths: &[std::path::PathBuf], labels: &Labels) -> Result<()> {
    let names: Vec<String> = paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    // The labels' names of the frames labelled: by Labels::find's rule.
    let found: HashSet<&str> = names
        .iter()
        .filter_map(|n| labels.find(n).map(|(name, _)| name))
        .collect();
    let labelled = names.iter().filter(|n| labels.get(n).is_some()).count();
    if labelled == 0 && !names.is_empty() {
        let example = labels.iter().map(|(name, _)| name).next().unwrap_or("none");
        anyhow::bail!(
            "none of the {} labels names one of the {} frames (a label's frame is, for example, {example:?}; frames are named like {:?}): the frame column holds file names, with or without the extension",
            labels.len(),
            names.len(),
            names[0]
        );
    }
    if labelled < names.len() {
        warn!(
            "{} of {} frames have no label: they are scored but left out of the summary's figures",
            names.len() - labelled,
            names.len()
        );
    }
    // Labels of frames not in the folder (a partial copy): where they are
    // the first frames of the fire, time_to_detect_s counts from a later
    // one and reads as a faster detection than it was.
    let mut missing: Vec<(&str, bool)> = labels
        .iter()
        .filter(|(name, _)| !found.contains(name))
        .map(|(name, label)| (name, label.positive()))
        .collect();
    if !missing.is_empty() {
        missing.sort();
        let fire = missing.iter().filter(|(_, positive)| *positive).count();
        warn!(
            "{} of {} labels name no frame in the folder (the first: {}){}",
            missing.len(),
            labels.len(),
            missing[0].0,
            if fire > 0 {
                format!(", {fire} of them labelled smoke or flame: with the fire's first frames missing, time_to_detect_s counts from a later frame than the labels do")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// Replays `footage`, handing each event to `on_event` as it happens.
pub fn replay(
    detector: &mut Detector,
    footage: &Footage,
    options: ReplayOptions,
    progress: &ProgressBar,
    mut on_event: impl FnMut(&IncidentEvent) -> Result<()>,
) -> Result<ReplayOutcome> {
    let mut pipeline = CameraPipeline::new(
        &options.camera,
        options.confirm.clone(),
        options.mask.clone(),
        detector,
    );
    let thresholds = pipeline.thresholds();
    let mut records = Vec::new();
    let mut events = Vec::new();
    let mut pictures = HashMap::new();
    let mut next_time = 0.0;
    if let Some(n) = footage.len_hint() {
        progress.set_length(n as u64);
    }
    // Names are a clock only where labels give none: two clocks (labels in
    // UTC, names in the camera's local time, or relative label times) would
    // send frame times back and forth.
    let labels_timed = options
        .labels
        .as_ref()
        .is_some_and(|l| l.iter().any(|(_, label)| label.unix_time.is_some()));
    if let (Footage::Stills(paths), Some(labels)) = (footage, &options.labels) {
        check_labels_name_frames(paths, labels)?;
    }
    if let (true, Some(labels)) = (labels_timed, &options.labels) {
        // The span of the frames replayed, not of every row: a labels file
        // often covers more of the day than the folder holds.
        let times: Vec<f64> = match footage {
            Footage::Stills(paths) => paths
                .iter()
                .filter_map(|p| labels.get(&crate::footage::frame_name(p))?.unix_time)
                .collect(),
            _ => labels.iter().filter_map(|(_, l)| l.unix_time).collect(),
        };
        let (first, last) = times
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
                (a.min(t), b.max(t))
            });
        if first <= last {
            info!(
                "frames timed by their labels' unix_time, {} to {} (--interval after the frame before where a label gives none)",
                rfc3339(first),
                rfc3339(last)
            );
        }
    } else if !options.times_from_names {
        info!(
            "frames taken {} s apart (--interval){}",
            options.interval_s,
            match footage {
                Footage::Video(_) => " where the video gives no time",
                _ => "",
            }
        );
    }
    let named_times = match footage {
        Footage::Stills(paths) if options.times_from_names && !labels_timed => {
            match times_from_names(paths, options.interval_s) {
                Ok(named) => {
                    if let (Some(first), Some(last)) = (named.times.first(), named.times.last()) {
                        info!(
                            "frames timed by their file names, {} to {} (--interval sets a spacing instead)",
                            rfc3339(*first),
                            rfc3339(*last)
                        );
                    }
                    if let Some(example) = named.guessed.first() {
                        warn!(
                            "{} of {} frames give no time in their names, or one out of order with the others ({example}): each is timed between the frames around it",
                            named.guessed.len(),
                            paths.len()
                        );
                    }
                    Some(named.times)
                }
                Err(why) => {
                    // A folder whose first name gives a time was meant to be
                    // timed by its names: with half or more of them giving
                    // none in order, every frame goes onto the default
                    // spacing.
                    let meant = paths
                        .first()
                        .is_some_and(|p| time_from_name(&crate::footage::frame_name(p)).is_some());
                    let message = format!(
                        "frames taken {} s apart (--interval, or --config's interval_s, sets it), not by their names: {why}",
                        options.interval_s
                    );
                    if meant {
                        warn!("{message}");
                    } else {
                        info!("{message}");
                    }
                    None
                }
            }
        }
        _ => None,
    };
    let mut seen = FramesSeen::default();
    let mut gate = FrameGate::default();
    for (index, frame) in footage.frames(options.interval_s)?.enumerate() {
        let label = options
            .labels
            .as_ref()
            .and_then(|l| l.get(&frame.name))
            .copied();
        let time = label
            .and_then(|l| l.unix_time)
            .or(frame.offset_s)
            .or(named_times
                .as_ref()
                .and_then(|times| times.get(index).copied()))
            .unwrap_or(next_time);
        next_time = time + options.interval_s;
        let mut record = FrameRecord {
            name: frame.name,
            time,
            scores: None,
            skipped: None,
            views: Vec::new(),
            label,
        };
        match frame.image {
            Err(e) => {
                warn!("skipping frame {}: {e:#}", record.name);
                record.skipped = Some("corrupt");
            }
            Ok(image) => 'scored: {
                seen.check(&record.name, time);
                // The frames live would not score are not scored here
                // either, so footage recorded from a camera is judged as the
                // camera was (src/monitor.rs, the camera task).
                let image = std::sync::Arc::new(image);
                let admission = gate.admit(&image);
                match admission {
                    Admission::Score { resized_from: None } => {}
                    Admission::Score {
                        resized_from: Some(was),
                    } => warn!(
                        "frame {} is {}x{}, where the frames before it were {}x{}: running incidents end, and a fire still burning starts again; --ignore shapes are in one size's pixels",
                        record.name, image.width(), image.height(), was.0, was.1
                    ),
                    Admission::OddSize { usual, count } if count.is_power_of_two() => warn!(
                        "frame {} is {}x{} among {}x{} frames: skipped, as live ({count} so far; a new size is taken after {NEW_SIZE_AFTER_FRAMES} frames in a row)",
                        record.name, image.width(), image.height(), usual.0, usual.1
                    ),
                    Admission::Repeat { count } if count.is_power_of_two() => warn!(
                        "frame {} is the frame before it to the last pixel: skipped, as live ({count} so far; a cached snapshot or a frozen encoder is no new evidence)",
                        record.name
                    ),
                    Admission::OddSize { .. } | Admission::Repeat { .. } => {}
                }
                record.skipped = admission.skip_reason();
                if record.skipped.is_some() {
                    break 'scored;
                }
                let (scores, new_events) =
                    pipeline.process(detector, time, &record.name, &image)?;
                record.scores = Some(scores.maxima());
                if !new_events.is_empty() {
                    record.views = scores.views.clone();
                }
                for event in new_events {
                    if options.keep_event_frames && event.phase != IncidentPhase::Ended {
                        let picture = payload::alert_picture(&image, &event)
                            .with_context(|| format!("cannot draw the picture of {}", event.id))?;
                        pictures.insert(event.id.clone(), picture.jpeg);
                    }
                    on_event(&event)?;
                    events.push(event);
                }
            }
        }
        records.push(record);
        progress.inc(1);
    }
    progress.finish_and_clear();
    // A video's frames are named by replay, not by the labels' author: labels
    // made for frames extracted with ffmpeg (frame_00001.jpg, counted from
    // 1) named none of them, and the summary had no figures without a word.
    if let (Footage::Video(_), Some(labels)) = (footage, &options.labels) {
        if !records.is_empty() && records.iter().all(|r| r.label.is_none()) {
            warn!(
                "none of the {} labels names a frame of the video: its frames are named frame_000000, frame_000001, ... by their place among all decoded frames (from 0), whatever --interval samples; the summary has no labelled figures",
                labels.len()
            );
        }
    }
    seen.check_spacing(&options.confirm);
    let summary = summarise(&records, &events, &thresholds, options.labels.is_some());
    Ok(ReplayOutcome {
        records,
        events,
        pictures,
        summary,
        thresholds,
    })
}

/// What replay has seen of the decoded frames' times, to say where footage
/// defeats the confirmer: live, the clock keeps them in order, and a replay
/// that breaks it starts incidents late or never without a word. (Sizes are
/// [`FrameGate`]'s, as live.)
#[derive(Default)]
struct FramesSeen {
    last: Option<f64>,
    gaps: Vec<f64>,
}

impl FramesSeen {
    fn check(&mut self, frame: &str, time: f64) {
        if let Some(before) = self.last {
            if time <= before {
                // The confirmer takes a frame timed before the last one for
                // a clock stepped back and forgets the frames after it.
                warn!(
                    "frame {frame} is timed {}, not after the frame before it ({}): the start rule counts seconds (and drops frames timed after a frame it is given), so incidents start late or not at all; check the labels' unix_time or the names",
                    rfc3339(time),
                    rfc3339(before)
                );
            } else {
                self.gaps.push(time - before);
            }
        }
        self.last = Some(time);
    }

    /// Warns when the frames' usual spacing is too wide for the start rule
    /// to be met at all (as `check-config` refuses such an `interval_s`).
    fn check_spacing(&mut self, confirm: &ConfirmConfig) {
        if self.gaps.is_empty() {
            return;
        }
        self.gaps.sort_by(f64::total_cmp);
        let median = self.gaps[self.gaps.len() / 2];
        if !confirm.can_start_at_interval(median) {
            warn!(
                "frames are {median} s apart (the median): at that spacing the start rule's {} hot frames spanning {} s cannot fit in its {} s window, so no incident could start; replay footage at the camera's own spacing",
                confirm.required, confirm.span_s, confirm.window_s
            );
        }
    }
}

/// Per class, the highest score over the decoded frames `counts` keeps, as
/// the f32 prints (0.3343055, not the f64 widening's 0.33430546522140503).
fn peak(
    records: &[FrameRecord],
    counts: impl Fn(&FrameRecord, Class) -> bool,
) -> PerClass<Option<f64>> {
    let mut peak = PerClass::<Option<f64>>::default();
    for class in Class::ALL {
        let highest = records
            .iter()
            .filter(|r| counts(r, class))
            .filter_map(|r| r.scores.map(|s| s.get(class)))
            .reduce(f32::max)
            .map(as_printed);
        peak.set(class, highest);
    }
    peak
}

/// `v` as the f32 prints it, in an f64 (0.97, not 0.9700000286102295).
fn as_printed(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

fn summarise(
    records: &[FrameRecord],
    events: &[IncidentEvent],
    thresholds: &PerClass<f32>,
    labelled: bool,
) -> Summary {
    let decoded = records
        .iter()
        .filter(|r| r.skipped != Some("corrupt"))
        .count();
    let scored = records.iter().filter(|r| r.scores.is_some()).count();
    let starts: Vec<&IncidentEvent> = events
        .iter()
        .filter(|e| e.phase == IncidentPhase::Started)
        .collect();
    let mut summary = Summary {
        frames: records.len(),
        decoded,
        skipped: records.len() - scored,
        incidents: starts.len(),
        thresholds: PerClass {
            smoke: as_printed(thresholds.smoke),
            flame: as_printed(thresholds.flame),
        },
        false_alarms: None,
        time_to_detect_s: None,
        smoke: None,
        flame: None,
        peak_score: peak(records, |_, _| true),
        peak_clear_score: None,
    };
    if !labelled {
        return summary;
    }
    summary.peak_clear_score = Some(peak(records, |r, class| {
        r.label.and_then(|l| l.truth.get(class)) == Some(false)
    }));
    let record_of = |frame: &str| records.iter().find(|r| r.name == frame);
    let truth_at_start = |e: &IncidentEvent| {
        record_of(&e.frame)
            .and_then(|r| r.label)
            .and_then(|l| l.truth.get(e.class))
    };
    summary.false_alarms = Some(
        starts
            .iter()
            .filter(|e| truth_at_start(e) == Some(false))
            .count(),
    );

    // The earliest positive frame by time (frames named out of time order
    // are warned of, not reordered).
    let first_positive = records
        .iter()
        .filter(|r| r.label.is_some_and(|l| l.positive()))
        .map(|r| r.time)
        .reduce(f64::min);
    // The fire is detected by the first incident running at or after its
    // first positive frame that did not start on a frame labelled clear of
    // its class (that one is a false alarm). One started on a frame left
    // unlabelled or unknown (-1) while the fire was already visible, and
    // still running when the labels say fire, detected it with no delay:
    // before, it counted as a fire missed.
    let ended_at = |id: &str| {
        events
            .iter()
            .filter(|e| e.phase == IncidentPhase::Ended && e.incident_id == id)
            .filter_map(|e| record_of(&e.frame).map(|r| r.time))
            .reduce(f64::min)
    };
    let detected_at = first_positive.and_then(|p| {
        starts
            .iter()
            .filter(|e| truth_at_start(e) != Some(false))
            .filter_map(|e| Some((record_of(&e.frame)?.time, e)))
            .filter(|(start, e)| *start >= p || ended_at(&e.incident_id).is_none_or(|end| end > p))
            .map(|(start, _)| start.max(p))
            .reduce(f64::min)
    });
    // Left out where no frame is labelled positive: footage of no fire (a
    // day replayed to tune a camera) has nothing to miss, where `null`
    // said its fire was missed.
    summary.time_to_detect_s = first_positive.map(|p| detected_at.map(|s| s - p));

    for class in Class::ALL {
        let mut counter = ConfusionCounter::default();
        for r in records {
            if let (Some(scores), Some(label)) = (r.scores, r.label) {
                counter.add(
                    scores.get(class) >= thresholds.get(class),
                    label.truth.get(class),
                );
            }
        }
        match class {
            Class::Smoke => summary.smoke = Some(counter.metrics()),
            Class::Flame => summary.flame = Some(counter.metrics()),
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, scores: Option<(f32, f32)>, truth: Option<(i8, i8)>) -> FrameRecord {
        let known = |v: i8| (v >= 0).then_some(v == 1);
        FrameRecord {
            name: name.into(),
            time: 0.0,
            scores: scores.map(|(smoke, flame)| PerClass { smoke, flame }),
            skipped: scores.is_none().then_some("corrupt"),
            views: Vec::new(),
            label: truth.map(|(smoke, flame)| FrameLabel {
                truth: PerClass {
                    smoke: known(smoke),
                    flame: known(flame),
                },
                unix_time: None,
            }),
        }
    }

    /// Frame `name` at `time` with its smoke label (1, 0, -1; None: none).
    fn timed(name: &str, time: f64, smoke: Option<i8>) -> FrameRecord {
        FrameRecord {
            time,
            ..record(name, Some((0.5, 0.0)), smoke.map(|s| (s, 0)))
        }
    }

    fn event(phase: IncidentPhase, incident: &str, frame: &str) -> IncidentEvent {
        IncidentEvent {
            phase,
            id: format!("{incident}.0"),
            incident_id: incident.into(),
            camera: "replay".into(),
            time: String::new(),
            class: Class::Smoke,
            started_at: String::new(),
            peak_score: 0.99,
            score: 0.99,
            boxes: Vec::new(),
            frame: frame.into(),
        }
    }

    #[test]
    fn a_fire_is_detected_by_an_incident_running_when_it_is_first_labelled() {
        use IncidentPhase::{Ended, Started};
        let thresholds = PerClass {
            smoke: 0.97,
            flame: 0.95,
        };
        let detect = |smoke: [Option<i8>; 5], events: &[IncidentEvent]| {
            let records: Vec<FrameRecord> = smoke
                .iter()
                .enumerate()
                .map(|(i, s)| timed(&format!("f{i}"), 60.0 * i as f64, *s))
                .collect();
            let summary = summarise(&records, events, &thresholds, true);
            (
                summary.time_to_detect_s.unwrap(),
                summary.false_alarms.unwrap(),
            )
        };
        let started_at_f1 = [event(Started, "a", "f1")];
        // Started on the first positive frame, or 60 s after it.
        let fire = [Some(0), Some(1), Some(1), Some(1), Some(1)];
        assert_eq!(detect(fire, &started_at_f1), (Some(0.0), 0));
        assert_eq!(detect(fire, &[event(Started, "a", "f2")]), (Some(60.0), 0));
        // Started on a frame left unknown or unlabelled while the smoke was
        // already there, and running when the labels first say fire: found
        // at once (before, a fire missed).
        for early in [Some(-1), None] {
            let fire = [Some(0), early, Some(1), Some(1), Some(1)];
            assert_eq!(detect(fire, &started_at_f1), (Some(0.0), 0));
            // Ended before the fire is labelled: it found something else.
            let ended = [event(Started, "a", "f1"), event(Ended, "a", "f2")];
            let fire = [Some(0), early, Some(0), Some(1), Some(1)];
            assert_eq!(detect(fire, &ended), (None, 0));
        }
        // Started on a frame labelled clear: a false alarm, which does not
        // count as finding the fire; a later start does.
        let fire = [Some(0), Some(0), Some(1), Some(1), Some(1)];
        assert_eq!(detect(fire, &started_at_f1), (None, 1));
        let both = [event(Started, "a", "f1"), event(Started, "b", "f3")];
        assert_eq!(detect(fire, &both), (Some(60.0), 1));
        // The first positive frame is the earliest by time, not by name.
        let mut records: Vec<FrameRecord> = (0..3)
            .map(|i| timed(&format!("f{i}"), 60.0 * i as f64, Some(1)))
            .collect();
        records[0].time = 150.0;
        let summary = summarise(&records, &[event(Started, "a", "f2")], &thresholds, true);
        assert_eq!(summary.time_to_detect_s, Some(Some(60.0)));
        // Footage of no fire: nothing to detect, nothing missed.
        let clear = [Some(0), Some(0), Some(-1), Some(0), Some(0)];
        let records: Vec<FrameRecord> = clear
            .iter()
            .enumerate()
            .map(|(i, s)| timed(&format!("f{i}"), 60.0 * i as f64, *s))
            .collect();
        let summary = summarise(&records, &started_at_f1, &thresholds, true);
        assert_eq!(summary.time_to_detect_s, None);
        assert_eq!(summary.false_alarms, Some(1));
    }

    #[test]
    fn peak_clear_score_counts_only_decoded_frames_labelled_clear_of_the_class() {
        let records = [
            record("a", Some((0.40, 0.90)), Some((0, 1))),
            // Unknown smoke (-1): not clear of smoke; its flame is.
            record("b", Some((0.80, 0.20)), Some((-1, 0))),
            record("c", Some((0.99, 0.10)), Some((1, 0))),
            // Not decoded: no score to count.
            record("d", None, Some((0, 0))),
            // Not in the labels.
            record("e", Some((0.95, 0.95)), None),
        ];
        let thresholds = PerClass {
            smoke: 0.97,
            flame: 0.95,
        };
        let summary = summarise(&records, &[], &thresholds, true);
        assert_eq!(
            summary.peak_score,
            PerClass {
                smoke: Some(0.99),
                flame: Some(0.95)
            }
        );
        assert_eq!(
            summary.peak_clear_score,
            Some(PerClass {
                smoke: Some(0.4),
                flame: Some(0.2)
            })
        );
        let unlabelled = summarise(&records[3..4], &[], &thresholds, false);
        assert_eq!(unlabelled.peak_score, PerClass::default());
        assert_eq!(unlabelled.peak_clear_score, None);
    }
}
