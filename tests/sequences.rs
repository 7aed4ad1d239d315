//! Replays the real tower-camera sequences in `../shared/datasets/sequences`
//! (or `$WILDFIRE_DATASETS/sequences`): no incident before ignition
//! (frame_0040), and the fire confirmed after it. Skips, saying so, where the
//! data is absent.

use std::path::PathBuf;

use indicatif::ProgressBar;
use wildfire_watch::confirm::ConfirmConfig;
use wildfire_watch::detector::{Detector, DetectorOptions};
use wildfire_watch::events::IncidentPhase;
use wildfire_watch::footage::Footage;
use wildfire_watch::labels::Labels;
use wildfire_watch::mask::IgnoreMask;
use wildfire_watch::model::ModelSource;
use wildfire_watch::replay::{replay, ReplayOptions};

fn datasets() -> Option<PathBuf> {
    let dir = std::env::var_os("WILDFIRE_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    if dir.join("sequences").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no sequences under {}: set WILDFIRE_DATASETS to the shared datasets folder to run this test",
            dir.display()
        );
        None
    }
}

fn check_sequence(name: &str) {
    let Some(data) = datasets() else { return };
    let dir = data.join("sequences").join(name);
    let footage = Footage::open(&dir).unwrap();
    let labels = Labels::read(&dir.join("labels.csv")).unwrap();
    let mut detector = Detector::load(&ModelSource::Embedded, DetectorOptions::default()).unwrap();
    let options = ReplayOptions {
        camera: name.to_string(),
        labels: Some(labels),
        interval_s: 60.0,
        confirm: ConfirmConfig::default(),
        mask: IgnoreMask::default(),
    };
    let outcome = replay(
        &mut detector,
        &footage,
        options,
        &ProgressBar::hidden(),
        |_| Ok(()),
    )
    .unwrap();
    let summary = &outcome.summary;
    eprintln!("{name}: {}", serde_json::to_string(summary).unwrap());
    for r in &outcome.records {
        if let Some(s) = r.scores {
            eprintln!("  {} smoke {:.3} flame {:.3}", r.name, s.smoke, s.flame);
        }
    }
    assert_eq!(summary.decoded, 81);
    let starts: Vec<_> = outcome
        .events
        .iter()
        .filter(|e| e.phase == IncidentPhase::Started)
        .collect();
    for e in &starts {
        assert!(
            e.frame.as_str() >= "frame_0040.jpg",
            "false alarm before ignition: {e:?}"
        );
    }
    assert_eq!(summary.false_alarms, Some(0));
    let ttd = summary.time_to_detect_s.flatten();
    assert!(ttd.is_some(), "{name}: the fire was never confirmed");
}

#[test]
fn wc_s_fire_is_confirmed_after_ignition_and_never_before() {
    check_sequence("hpwren_20190925_wc-s-mobo-c");
}

#[test]
fn rm_w_fire_is_confirmed_after_ignition_and_never_before() {
    check_sequence("hpwren_20180728_rm-w-mobo-c");
}
