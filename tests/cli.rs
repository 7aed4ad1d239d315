//! The `wildfire-watch` binary end to end: replay of the shipped fixture,
//! classify, the report, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wildfire-watch"))
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn replay_of_the_hillside_fixture_scores_against_labels() {
    let out = bin()
        .args(["replay", "--json", "--labels"])
        .arg(fixture("hillside/labels.csv"))
        .arg(fixture("hillside"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["frames"], 18);
    assert_eq!(summary["decoded"], 18);
    assert_eq!(summary["skipped"], 0);
    assert_eq!(
        summary["false_alarms"], 0,
        "an incident started before the plume: {lines:?}"
    );
    // The labels hold 10 smoke frames, 8 clear ones and no flame: each
    // class counts every frame once, and its F1 is a number in [0, 1] exactly
    // when precision and recall are both defined.
    for (class, positives) in [("smoke", 10), ("flame", 0)] {
        let m = &summary[class];
        let count = |k: &str| {
            m[k].as_u64()
                .unwrap_or_else(|| panic!("no {class}.{k} in the summary: {summary}"))
        };
        assert_eq!(
            (
                count("true_positives") + count("false_negatives"),
                count("false_positives") + count("true_negatives")
            ),
            (positives, 18 - positives),
            "{class}: {m}"
        );
        let defined = !m["precision"].is_null() && !m["recall"].is_null();
        let f1 = m["f1"].as_f64();
        assert_eq!(f1.is_some(), defined, "{class}: {m}");
        assert!(f1.is_none_or(|f| (0.0..=1.0).contains(&f)), "{class}: {m}");
    }
    // Peaks: over every frame, and over the 8 clear ones, which stay under
    // the threshold (no false alarm above) and under the plume's peak.
    for class in ["smoke", "flame"] {
        let all = summary["peak_score"][class].as_f64().unwrap();
        let clear = summary["peak_clear_score"][class].as_f64().unwrap();
        assert!((0.0..=all).contains(&clear), "{class}: {summary}");
    }
    let clear_smoke = summary["peak_clear_score"]["smoke"].as_f64().unwrap();
    let sidecar: serde_json::Value =
        serde_json::from_str(include_str!("../models/wildfire-tiles.json")).unwrap();
    let smoke_threshold = sidecar["thresholds"]["smoke"].as_f64().unwrap();
    assert!(clear_smoke < smoke_threshold, "{summary}");
    assert!(summary["peak_score"]["smoke"].as_f64().unwrap() >= smoke_threshold);
    // The README's first command: the shipped model confirms the drawn plume
    // (frame_0008 on, 60 s apart) within two frames.
    assert_eq!(summary["incidents"], 1, "{lines:?}");
    let ttd = summary["time_to_detect_s"].as_f64();
    assert!(ttd.is_some_and(|s| s <= 120.0), "time to detect {ttd:?}");
    // Every event line is a well-formed incident event, starting after ignition.
    for event in &lines[..lines.len() - 1] {
        let frame = event["frame"].as_str().unwrap();
        assert!(frame >= "frame_0008.jpg", "event before ignition: {event}");
        assert!(event["id"]
            .as_str()
            .unwrap()
            .starts_with(event["incident_id"].as_str().unwrap()));
        assert!(event["boxes"].as_array().is_some());
    }
}

/// The hillside fixture's frames copied into a folder under names that give
/// the time each was taken: `seconds_apart` apart, from the fixture's first
/// labelled time.
fn hillside_named_by_time(seconds_apart: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..18u64 {
        std::fs::copy(
            fixture(&format!("hillside/frame_{i:04}.jpg")),
            dir.path()
                .join(format!("{}.jpg", 1_743_476_400 + i * seconds_apart)),
        )
        .unwrap();
    }
    dir
}

/// `replay --json ARGS FOLDER`, which must succeed.
fn replay_json(args: &[&std::ffi::OsStr], folder: &Path) -> Output {
    let out = bin()
        .args(["replay", "--json"])
        .args(args)
        .arg(folder)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// [`replay_json`]: the frame and time of its first `incident.started`,
/// and its log.
fn first_start(args: &[&std::ffi::OsStr], folder: &Path) -> (String, String, String) {
    let out = replay_json(args, folder);
    let lines = json_lines(&out);
    let started = lines
        .iter()
        .find(|l| l["type"] == "incident.started")
        .unwrap_or_else(|| panic!("no incident started: {lines:?}"));
    (
        started["frame"].as_str().unwrap().to_string(),
        started["time"].as_str().unwrap().to_string(),
        stderr(&out),
    )
}

#[test]
fn replay_times_stills_by_their_file_names() {
    // The plume (from the 9th frame) must stay hot for 50 s to start an
    // incident: 2 frames of footage a minute apart, 6 of footage 10 s apart.
    // Named by their times, the same frames start it where a camera at that
    // cadence would have.
    let a_minute = hillside_named_by_time(60);
    let (frame, time, log) = first_start(&[], a_minute.path());
    assert_eq!(
        (frame.as_str(), time.as_str()),
        ("1743476940.jpg", "2025-04-01T03:09:00Z")
    );
    assert!(log.contains("frames timed by their file names"), "{log}");

    let ten_s = hillside_named_by_time(10);
    let (frame, time, _) = first_start(&[], ten_s.path());
    assert_eq!(
        (frame.as_str(), time.as_str()),
        ("1743476530.jpg", "2025-04-01T03:02:10Z"),
        "the 6th hot frame"
    );
    // A stray name among them (a camera's `latest.jpg` beside its archive)
    // is timed after the last: the rest keep their clock. Before, it put
    // every frame a minute apart from 1970.
    let first = ten_s.path().join("1743476400.jpg");
    let stray = ten_s.path().join("latest.jpg");
    std::fs::copy(&first, &stray).unwrap();
    let (frame, time, log) = first_start(&[], ten_s.path());
    assert_eq!(
        (frame.as_str(), time.as_str()),
        ("1743476530.jpg", "2025-04-01T03:02:10Z")
    );
    assert!(
        log.contains("1 of 19 frames give no time in their names") && log.contains("latest.jpg"),
        "{log}"
    );
    std::fs::remove_file(&stray).unwrap();

    // Labels that give times come first, for every frame: the names are
    // then no clock at all, not even for a frame the labels leave out.
    let labels = ten_s.path().join("labels.csv");
    let mut csv = String::from("frame,smoke,flame,unix_time\n");
    for i in 0..17u64 {
        let name = format!("{}.jpg", 1_743_476_400 + i * 10);
        csv += &format!("{name},-1,-1,{}\n", 1_743_476_400 + i * 60);
    }
    std::fs::write(&labels, csv).unwrap();
    let (frame, time, log) = first_start(&["--labels".as_ref(), labels.as_os_str()], ten_s.path());
    assert_eq!(
        (frame.as_str(), time.as_str()),
        ("1743476490.jpg", "2025-04-01T03:09:00Z")
    );
    assert!(!log.contains("timed by their file names"), "{log}");
    std::fs::remove_file(&labels).unwrap();

    // --interval is what the user says: it overrides the names.
    let (frame, time, _) = first_start(&["--interval".as_ref(), "60".as_ref()], ten_s.path());
    assert_eq!(
        (frame.as_str(), time.as_str()),
        ("1743476490.jpg", "1970-01-01T00:09:00Z")
    );
}

#[test]
fn replay_warns_of_footage_the_start_rule_cannot_use() {
    let replay = |args: &[&std::ffi::OsStr], folder: &Path| {
        let out = replay_json(args, folder);
        let starts = json_lines(&out)
            .iter()
            .filter(|l| l["type"] == "incident.started")
            .count();
        (starts, stderr(&out))
    };
    // Three minutes apart, two hot frames never fit in the 150-s window:
    // the plume is over the threshold in 9 frames and starts nothing.
    let sparse = hillside_named_by_time(180);
    let (starts, log) = replay(&[], sparse.path());
    assert_eq!(starts, 0);
    assert!(
        log.contains("frames are 180 s apart") && log.contains("no incident could start"),
        "{log}"
    );
    let (_, log) = replay(&[], hillside_named_by_time(60).path());
    assert!(!log.contains("apart (the median)"), "{log}");

    // Labels that time a frame before the one before it.
    let folder = fixture("hillside");
    let labels = sparse.path().join("back.csv");
    let mut csv = String::from("frame,smoke,flame,unix_time\n");
    for i in 0..18u64 {
        let t = 1_743_476_400 + 60 * if i == 9 { 7 } else { i };
        csv += &format!("frame_{i:04}.jpg,-1,-1,{t}\n");
    }
    std::fs::write(&labels, csv).unwrap();
    let (_, log) = replay(&["--labels".as_ref(), labels.as_os_str()], &folder);
    assert!(
        log.contains(
            "frame frame_0009.jpg is timed 2025-04-01T03:07:00Z, not after the frame before it"
        ),
        "{log}"
    );

    // A partial copy: the fire's first four frames are not in the folder,
    // though the labels name them.
    let partial = tempfile::tempdir().unwrap();
    for i in (0..8).chain(12..18) {
        let name = format!("frame_{i:04}.jpg");
        std::fs::copy(folder.join(&name), partial.path().join(&name)).unwrap();
    }
    let labels = fixture("hillside/labels.csv");
    let (_, log) = replay(&["--labels".as_ref(), labels.as_os_str()], partial.path());
    assert!(
        log.contains("4 of 18 labels name no frame in the folder (the first: frame_0008.jpg), 4 of them labelled smoke or flame"),
        "{log}"
    );
}

/// The frames the live monitor does not score, replay does not score
/// either: one of another size than the camera's (a boot screen, a
/// sub-stream's snapshot) and one the same to the pixel as the frame before
/// it (a cached snapshot). Before, replay scored both, and the odd frame in
/// the middle of the fire ended its incident, which live would not have.
#[test]
fn replay_skips_the_frames_live_would_skip() {
    let folder = fixture("hillside");
    // The incidents' starts and ends, by frame (updates may move to other
    // frames with the frames left out).
    let starts_and_ends = |out: &Output| -> Vec<(String, String)> {
        json_lines(out)
            .iter()
            .filter(|l| l["type"] == "incident.started" || l["type"] == "incident.ended")
            .map(|l| (l["type"].to_string(), l["frame"].to_string()))
            .collect()
    };
    let clean = starts_and_ends(&replay_json(&[], &folder));
    assert!(
        clean.iter().any(|(kind, _)| kind == "\"incident.started\""),
        "{clean:?}"
    );
    let mixed = tempfile::tempdir().unwrap();
    for i in 0..18 {
        let name = format!("frame_{i:04}.jpg");
        let to = mixed.path().join(&name);
        match i {
            // In the middle of the fire, after its start.
            13 => image::open(folder.join(&name))
                .unwrap()
                .resize_exact(1280, 720, image::imageops::FilterType::Triangle)
                .save(to)
                .unwrap(),
            // Frame 12 served again.
            14 => drop(std::fs::copy(folder.join("frame_0012.jpg"), to).unwrap()),
            _ => drop(std::fs::copy(folder.join(&name), to).unwrap()),
        }
    }
    let out = replay_json(&[], mixed.path());
    let log = stderr(&out);
    assert_eq!(starts_and_ends(&out), clean, "{log}");
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["frames"], 18, "{summary}");
    assert_eq!(summary["decoded"], 18, "{summary}");
    assert_eq!(summary["skipped"], 2, "{summary}");
    assert!(
        log.contains("frame frame_0013.jpg is 1280x720 among 640x360 frames: skipped")
            && log
                .contains("frame frame_0014.jpg is the frame before it to the last pixel: skipped"),
        "{log}"
    );
}

#[test]
fn replay_judges_footage_by_a_configured_cameras_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tower.toml");
    let camera = |id: &str, rest: &str| {
        format!(
            "[[cameras]]\nid = \"{id}\"\nname = \"{id}\"\nlat = 35.17\nlon = 127.68\nazimuth_deg = 265.0\nfov_deg = 62.0\n\
             [cameras.source]\nkind = \"snapshot\"\nurl = \"http://192.0.2.1/pic\"\n{rest}"
        )
    };
    std::fs::write(
        &config,
        format!(
            "[device]\nid = \"t\"\nname = \"T\"\n{}{}",
            camera(
                "west",
                "[cameras.confirm]\nthresholds = { smoke = 0.9999, flame = 0.9999 }\n"
            ),
            camera("east", "")
        ),
    )
    .unwrap();
    let replay = |camera: Option<&str>| {
        let mut command = bin();
        command
            .args(["replay", "--json", "--labels"])
            .arg(fixture("hillside/labels.csv"))
            .arg("--config")
            .arg(&config);
        if let Some(id) = camera {
            command.args(["--camera", id]);
        }
        command.arg(fixture("hillside")).output().unwrap()
    };

    let out = replay(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "2 cameras (west, east): name the one that took the footage with --camera ID"
        ),
        "{}",
        stderr(&out)
    );
    let out = replay(Some("north"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no camera \"north\""),
        "{}",
        stderr(&out)
    );

    // West's own thresholds quiet the plume: an analyst sees what they cost.
    let out = replay(Some("west"));
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["incidents"], 0, "{lines:?}");
    assert_eq!(summary["thresholds"]["smoke"], 0.9999);
    assert!(
        summary["smoke"]["recall"].as_f64().unwrap() < 0.5,
        "{summary}"
    );
    assert!(stderr(&out).contains("judging the footage as camera west"));

    // East has the model's (its sidecar's): the plume starts an incident, named for east.
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/wildfire-tiles.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let out = replay(Some("east"));
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let started = lines
        .iter()
        .find(|l| l["type"] == "incident.started")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(started["id"].as_str().unwrap().starts_with("east-smoke-"));
    assert_eq!(
        lines.last().unwrap()["summary"]["thresholds"]["smoke"],
        sidecar["thresholds"]["smoke"]
    );
}

#[test]
fn replay_skips_a_corrupt_frame_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        let name = format!("frame_{i:04}.jpg");
        std::fs::copy(fixture("hillside").join(&name), dir.path().join(&name)).unwrap();
    }
    // Truncate one frame mid-stream and add a file that is not an image at all.
    let whole = std::fs::read(dir.path().join("frame_0001.jpg")).unwrap();
    std::fs::write(dir.path().join("frame_0001.jpg"), &whole[..whole.len() / 3]).unwrap();
    std::fs::write(dir.path().join("frame_0002.jpg"), b"not a jpeg").unwrap();
    let out = bin()
        .args(["replay", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["frames"], 4);
    assert_eq!(summary["skipped"], 2);
    assert_eq!(summary["decoded"], 2);
    assert!(
        summary.get("false_alarms").is_none(),
        "no labels, no scores: {summary}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("frame_0001.jpg") && err.contains("frame_0002.jpg"),
        "{err}"
    );
}

#[test]
fn replay_writes_an_html_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let thumbnails_are_one_per_alert = |args: &[&str], folder: &Path| {
        let out = bin()
            .args(["replay", "--labels"])
            .arg(fixture("hillside/labels.csv"))
            .arg("--report")
            .arg(&report)
            .args(args)
            .arg(folder)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        check_report(&report, &out);
    };
    thumbnails_are_one_per_alert(&[], &fixture("hillside"));

    // Two plumes side by side confirm on one frame as two incidents: each
    // gets its own thumbnail (they once shared one file, the second's).
    let twice = tempfile::tempdir().unwrap();
    for i in 0..18 {
        let name = format!("frame_{i:04}.jpg");
        let frame = image::open(fixture(&format!("hillside/{name}")))
            .unwrap()
            .to_rgb8();
        let mut wide = image::RgbImage::new(frame.width() * 2, frame.height());
        image::imageops::replace(&mut wide, &frame, 0, 0);
        image::imageops::replace(&mut wide, &frame, i64::from(frame.width()), 0);
        wide.save(twice.path().join(name)).unwrap();
    }
    std::fs::remove_dir_all(&report).unwrap();
    thumbnails_are_one_per_alert(&["--working-resolution", "native"], twice.path());
}

/// The report in `report` of the replay that printed `out`: a timeline and
/// one thumbnail per started or updated incident event.
fn check_report(report: &Path, out: &Output) {
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("polyline"),
        "no timeline"
    );
    let pictures: Vec<_> = std::fs::read_dir(report)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("alert_")
        })
        .collect();
    // Each the picture an alert carries: at most 640 px wide, under 96 KB.
    for picture in &pictures {
        let bytes = std::fs::read(picture).unwrap();
        assert!(bytes.len() <= 96 * 1024, "{}", picture.display());
        let image = image::load_from_memory(&bytes).unwrap();
        assert!(image.width() <= 640, "{}", picture.display());
    }
    let thumbs = pictures.len();
    let text = String::from_utf8_lossy(&out.stdout);
    let alerts = text
        .lines()
        .filter(|l| l.contains("incident.started") || l.contains("incident.updated"))
        .count();
    assert_eq!(thumbs, alerts, "{text}");
}

#[test]
fn classify_prints_one_json_line_per_image() {
    let out = bin()
        .args(["classify", "--json"])
        .arg(fixture("hillside/frame_0000.jpg"))
        .arg(fixture("hillside/frame_0017.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        for key in [
            "path",
            "smoke",
            "flame",
            "smoke_alarm",
            "flame_alarm",
            "tiles",
        ] {
            assert!(line.get(key).is_some(), "missing {key}: {line}");
        }
        let tiles = line["tiles"].as_array().unwrap();
        // 640x360 at the shipped tile size: the whole frame plus at least two tiles.
        assert!(tiles.len() >= 3, "{line}");
        assert_eq!(tiles[0]["rect"], serde_json::json!([0, 0, 640, 360]));
        let max = tiles
            .iter()
            .map(|t| t["smoke"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!((max - line["smoke"].as_f64().unwrap()).abs() < 1e-6);
    }
}

#[test]
fn classify_table_has_a_header_and_a_row_per_image() {
    let out = bin()
        .arg("classify")
        .arg(fixture("hillside/frame_0003.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("smoke") && lines[1].ends_with("frame_0003.jpg"),
        "{text}"
    );
}

#[test]
fn bad_input_gets_a_one_line_error_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let video = dir.path().join("clip.mp4");
    std::fs::write(&video, b"\0\0\0\x18ftypmp42").unwrap();
    let garbage_model = dir.path().join("model.onnx");
    std::fs::write(&garbage_model, b"definitely not protobuf").unwrap();
    std::fs::write(
        dir.path().join("model.json"),
        include_str!("../models/wildfire-tiles.json"),
    )
    .unwrap();
    let no_sidecar = dir.path().join("lonely.onnx");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/wildfire-tiles.onnx"),
        &no_sidecar,
    )
    .unwrap();
    let frame = fixture("hillside/frame_0000.jpg");
    let hillside = fixture("hillside");

    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec!["replay".as_ref(), "/no/such/folder".as_ref()],
            "does not exist",
        ),
        (
            vec!["replay".as_ref(), text.as_os_str()],
            "not a folder of frames",
        ),
        (vec!["replay".as_ref(), video.as_os_str()], "video"),
        (vec!["replay".as_ref(), dir.path().as_os_str()], "no .jpg"),
        (
            vec!["classify".as_ref(), "/no/such/image.jpg".as_ref()],
            "does not exist",
        ),
        (vec!["classify".as_ref(), text.as_os_str()], "not a .jpg"),
        (vec!["classify".as_ref(), dir.path().as_os_str()], "no .jpg"),
        (
            vec![
                "replay".as_ref(),
                "--report".as_ref(),
                text.as_os_str(),
                hillside.as_os_str(),
            ],
            "cannot create the report folder",
        ),
        (
            vec![
                "classify".as_ref(),
                "--model".as_ref(),
                garbage_model.as_os_str(),
                frame.as_os_str(),
            ],
            "model contract",
        ),
        (
            vec![
                "classify".as_ref(),
                "--model".as_ref(),
                no_sidecar.as_os_str(),
                frame.as_os_str(),
            ],
            "sidecar",
        ),
    ];
    for (args, expected) in cases {
        let out = bin().args(&args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected '{expected}' in: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bad_labels_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, "frame,smoke,flame\nframe_0000.jpg,maybe,0\n").unwrap();
    let out = bin()
        .args(["replay", "--labels"])
        .arg(&labels)
        .arg(fixture("hillside"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("line 2") && err.contains("smoke"), "{err}");
    // Labels that name no frame (paths in the frame column), and times in
    // milliseconds: refused, not read as a missed fire or a 1000-fold clock.
    for (csv, expected) in [
        (
            "frame,smoke,flame\nhillside/frame_0000.jpg,0,0\n",
            "none of the 1 labels names one of the 18 frames",
        ),
        (
            "frame,smoke,flame,unix_time\nframe_0000.jpg,0,0,1743476400000\n",
            "milliseconds",
        ),
    ] {
        std::fs::write(&labels, csv).unwrap();
        let out = bin()
            .args(["replay", "--labels"])
            .arg(&labels)
            .arg(fixture("hillside"))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn a_replay_with_no_frame_decoded_fails() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..2 {
        std::fs::write(dir.path().join(format!("frame_{i}.jpg")), b"not a jpeg").unwrap();
    }
    let out = bin().arg("replay").arg(dir.path()).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("none of the 2 frames could be decoded"),
        "{err}"
    );
}

/// `wildfire-watch receive` on a store whose index a crash tore and on an
/// address already taken: a warning (the repair), then the fatal error.
/// Its stderr goes to a file; `journal_stream` says what `$JOURNAL_STREAM`
/// holds, `None` for unset. Returns the bytes written.
fn receive_log(journal_stream: impl Fn(&Path) -> Option<String>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("index.jsonl"), "{\"n\":1,\"id\":\"ev").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let log = dir.path().join("stderr.log");
    let mut command = bin();
    command
        .args(["receive", "--listen"])
        .arg(taken.local_addr().unwrap().to_string())
        .arg("--secret-file")
        .arg(&secret)
        .arg("--store")
        .arg(&store)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(value) = journal_stream(&log) {
        command.env("JOURNAL_STREAM", value);
    }
    let out = command.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    std::fs::read(&log).unwrap()
}

/// `device:inode` of `path`, as systemd writes `$JOURNAL_STREAM`.
fn device_inode(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    format!("{}:{}", meta.dev(), meta.ino())
}

#[test]
fn log_lines_into_a_file_carry_no_colour_codes() {
    for journal_stream in [None, Some("1:1".to_string())] {
        // Unset, or the journal stream of a parent, not this stderr.
        let log = receive_log(|_| journal_stream.clone());
        let text = String::from_utf8(log).unwrap();
        assert!(!text.contains('\x1b'), "colour codes in {text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(lines[0].trim_start().starts_with("WARN "), "{text:?}");
        assert!(lines[0].contains("torn by a crash"), "{text:?}");
        assert!(lines[1].starts_with("error: cannot listen on"), "{text:?}");
    }
}

#[test]
fn log_lines_into_the_journal_carry_their_syslog_priority() {
    let log = receive_log(|path| Some(device_inode(path)));
    let text = String::from_utf8(log).unwrap();
    assert!(!text.contains('\x1b'), "colour codes in {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    // sd-daemon(3): <4> warning, <3> error; journalctl -p warning shows both.
    assert!(lines[0].starts_with("<4>"), "{text:?}");
    assert!(lines[0].contains("torn by a crash"), "{text:?}");
    assert!(
        lines[1].starts_with("<3>error: cannot listen on"),
        "{text:?}"
    );
}

#[test]
fn an_ignore_shape_that_blinds_the_frame_is_warned() {
    // Shapes written for another resolution: one over the whole 640x360
    // frame and beyond, one wholly outside it.
    let out = bin()
        .args([
            "replay",
            "--ignore",
            "0,0,5000,5000",
            "--ignore",
            "1500,900,200,100",
        ])
        .arg(fixture("hillside"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("--ignore: the ignore shapes mask 100 % of the 640x360 frame"),
        "{err}"
    );
    assert!(
        err.contains("\"1500,900,200,100\" lies outside the 640x360 frame"),
        "{err}"
    );
}
