//! Replays the real tower-camera sequences in `../shared/datasets/sequences`
//! (or `$WILDFIRE_DATASETS/sequences`): no incident before ignition
//! (frame_0040), and the fire confirmed at most 3 minutes after it. Skips,
//! saying so, where the data is absent; fails instead with
//! `WILDFIRE_REQUIRE_DATASETS=1` (as CI runs it).
//!
//! The shipped model (2026.12.04.1, at its 960-px working resolution)
//! confirms the rm-w fire 4 minutes after ignition (its plume is over the
//! 0.98 threshold from +3 min, and the start rule's second hot frame is +4's)
//! and starts no wc-s incident (models/README.md). So only `rm_w_fire_is_confirmed` guards a
//! detection; the 3-minute tests are `#[ignore]`d with the reason and
//! run with `cargo test --release --test sequences -- --ignored`. They are
//! the targets of issue 3; `models/README.md` has the evidence.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;
use wildfire_watch::confirm::ConfirmConfig;
use wildfire_watch::detector::{Detector, DetectorOptions};
use wildfire_watch::events::IncidentPhase;
use wildfire_watch::footage::Footage;
use wildfire_watch::labels::Labels;
use wildfire_watch::mask::IgnoreMask;
use wildfire_watch::model::ModelSource;
use wildfire_watch::replay::{replay, ReplayOptions, ReplayOutcome};

/// Frames are 60 s apart and the fire starts at this one.
const IGNITION: &str = "frame_0040.jpg";

/// The replay of sequence `name`, run once per test binary and shared by the
/// tests that look at it (a replay takes about a minute); `None` where the
/// datasets are absent and not required.
fn replayed(name: &'static str) -> Option<Arc<ReplayOutcome>> {
    static OUTCOMES: Mutex<BTreeMap<&str, Arc<ReplayOutcome>>> = Mutex::new(BTreeMap::new());
    // Looked up before the lock, so a required folder's panic is the
    // message each test shows, not a poisoned lock.
    let sequences = common::dataset("sequences")?;
    let mut outcomes = OUTCOMES.lock().unwrap();
    Some(
        outcomes
            .entry(name)
            .or_insert_with(|| Arc::new(replay_sequence(&sequences.join(name))))
            .clone(),
    )
}

fn replay_sequence(dir: &Path) -> ReplayOutcome {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let footage = Footage::open(dir).unwrap();
    let labels = Labels::read(&dir.join("labels.csv")).unwrap();
    let mut detector = Detector::load(&ModelSource::Embedded, DetectorOptions::default()).unwrap();
    let options = ReplayOptions {
        camera: name.clone(),
        labels: Some(labels),
        interval_s: 60.0,
        times_from_names: true,
        confirm: ConfirmConfig::default(),
        mask: IgnoreMask::default(),
        keep_event_frames: false,
    };
    let outcome = replay(
        &mut detector,
        &footage,
        options,
        &ProgressBar::hidden(),
        |_| Ok(()),
    )
    .unwrap();
    eprintln!(
        "{name}: {}",
        serde_json::to_string(&outcome.summary).unwrap()
    );
    for r in &outcome.records {
        if let Some(s) = r.scores {
            eprintln!("  {} smoke {:.3} flame {:.3}", r.name, s.smoke, s.flame);
        }
    }
    assert_eq!(outcome.summary.decoded, 81);
    outcome
}

fn assert_no_alarm_before_ignition(name: &'static str) {
    let Some(outcome) = replayed(name) else {
        return;
    };
    for e in &outcome.events {
        if e.phase == IncidentPhase::Started {
            assert!(
                e.frame.as_str() >= IGNITION,
                "false alarm before ignition: {e:?}"
            );
        }
    }
    assert_eq!(outcome.summary.false_alarms, Some(0));
}

fn assert_confirmed_within_3_minutes(name: &'static str) {
    let Some(outcome) = replayed(name) else {
        return;
    };
    let ttd = outcome.summary.time_to_detect_s.flatten();
    assert!(
        ttd.is_some_and(|s| s <= 180.0),
        "{name}: time to detect {ttd:?}, target at most 180 s after ignition"
    );
}

#[test]
fn wc_s_raises_no_alarm_before_ignition() {
    assert_no_alarm_before_ignition("hpwren_20190925_wc-s-mobo-c");
}

#[test]
fn rm_w_raises_no_alarm_before_ignition() {
    assert_no_alarm_before_ignition("hpwren_20180728_rm-w-mobo-c");
}

#[test]
#[ignore = "known miss: model 2026.12.04.1 starts no incident on wc-s (models/README.md, Targets)"]
fn wc_s_fire_is_confirmed_within_3_minutes() {
    assert_confirmed_within_3_minutes("hpwren_20190925_wc-s-mobo-c");
}

#[test]
#[ignore = "known miss: model 2026.12.04.1 confirms this plume at +4 min, not within 3 (models/README.md, Targets)"]
fn rm_w_fire_is_confirmed_within_3_minutes() {
    assert_confirmed_within_3_minutes("hpwren_20180728_rm-w-mobo-c");
}

/// The rm-w fire is confirmed at all while the footage lasts (40 minutes
/// after ignition), by an incident that starts after ignition.
#[test]
fn rm_w_fire_is_confirmed() {
    let Some(outcome) = replayed("hpwren_20180728_rm-w-mobo-c") else {
        return;
    };
    let ttd = outcome.summary.time_to_detect_s.flatten();
    assert!(ttd.is_some(), "rm-w: the fire was never confirmed");
    // No report asked for: no alert picture is made or held.
    assert!(outcome.pictures.is_empty());
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.phase == IncidentPhase::Started && e.frame.as_str() >= IGNITION),
        "no incident started after ignition: {:?}",
        outcome.events
    );
}

/// An absent datasets folder skips these tests, unless CI says it must be
/// there: then it is a failure that says what to do.
#[test]
fn absent_datasets_fail_only_where_required() {
    let absent = || Some(OsString::from("/nonexistent/datasets"));
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        common::find_dataset("sequences", absent(), None, here),
        Ok(None)
    );
    assert_eq!(
        common::find_dataset("sequences", absent(), Some("0".into()), here),
        Ok(None)
    );
    let e = common::find_dataset("sequences", absent(), Some("1".into()), here).unwrap_err();
    assert!(
        e.contains("/nonexistent/datasets/sequences") && e.contains("WILDFIRE_DATASETS"),
        "{e}"
    );
    let present = tempfile::tempdir().unwrap();
    std::fs::create_dir(present.path().join("sequences")).unwrap();
    assert_eq!(
        common::find_dataset(
            "sequences",
            Some(present.path().into()),
            Some("1".into()),
            here
        ),
        Ok(Some(present.path().join("sequences")))
    );
}
