//! Video replay through libav (`--features video`): an H.264 High-profile MP4
//! with B-frames, made from the hillside fixture by the ffmpeg command-line
//! tool, decodes to the right frames in the right order.
#![cfg(feature = "video")]

use std::path::{Path, PathBuf};
use std::process::Command;

use wildfire_watch::footage::{decode, Footage};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hillside")
}

/// Encodes the 18 hillside frames at 1 fps as H.264 High profile with up to
/// 3 consecutive B-frames. Returns None (and says why) without ffmpeg.
fn make_video(dir: &Path, container: &str) -> Option<PathBuf> {
    let out = dir.join(format!("hillside.{container}"));
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-framerate", "1", "-i"])
        .arg(fixture_dir().join("frame_%04d.jpg"))
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-bf",
            "3",
            "-g",
            "9",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            "16",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        other => {
            eprintln!("SKIPPED: cannot run ffmpeg to make a test video ({other:?}): apt-get install ffmpeg");
            None
        }
    }
}

fn has_b_frames(video: &Path) -> bool {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=pict_type",
            "-of",
            "csv=p=0",
        ])
        .arg(video)
        .output()
        .expect("ffprobe comes with ffmpeg");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "B")
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn b_frame_video_decodes_every_frame_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for container in ["mp4", "mkv"] {
        let Some(video) = make_video(dir.path(), container) else {
            return;
        };
        assert!(
            has_b_frames(&video),
            "the test video should contain B-frames"
        );
        let footage = Footage::open(&video).unwrap();
        let frames: Vec<_> = footage.frames(1.0).unwrap().collect();
        assert_eq!(frames.len(), 18, "{container}");
        let stills: Vec<_> = (0..18)
            .map(|i| decode(&fixture_dir().join(format!("frame_{i:04}.jpg"))).unwrap())
            .collect();
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(frame.offset_s, Some(i as f64), "{container} frame {i}");
            let image = frame.image.as_ref().unwrap();
            // Each decoded frame matches its own source frame far better than its neighbours.
            let own = mean_abs_diff(image, &stills[i]);
            assert!(
                own < 4.0,
                "{container} frame {i} differs from its source by {own}"
            );
            for j in [i.wrapping_sub(1), i + 1].into_iter().filter(|j| *j < 18) {
                assert!(
                    own < mean_abs_diff(image, &stills[j]),
                    "{container} frame {i} looks like frame {j}"
                );
            }
        }
        // Sampling every 5 s of footage keeps frames 0, 5, 10, 15.
        let sampled: Vec<_> = footage.frames(5.0).unwrap().map(|f| f.name).collect();
        assert_eq!(
            sampled,
            [
                "frame_000000",
                "frame_000005",
                "frame_000010",
                "frame_000015"
            ]
        );
    }
}

#[test]
fn replay_of_a_video_runs_the_same_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let Some(video) = make_video(dir.path(), "mp4") else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_wildfire-watch"))
        .args(["replay", "--json"])
        .arg(&video)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["frames"], 18);
    assert_eq!(summary["summary"]["decoded"], 18);

    // Labels made for frames extracted by ffmpeg name none of the video's
    // own: said, not a summary without figures in silence.
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        "frame,smoke,flame\nframe_00001.jpg,0,0\nframe_00009.jpg,1,0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wildfire-watch"))
        .args(["replay", "--json", "--labels"])
        .arg(&labels)
        .arg(&video)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("none of the 2 labels names a frame of the video"),
        "{log}"
    );
}

/// A stream without timestamps (raw H.264, which libav reads by its content
/// whatever the file is called) at 5 fps: timed by its frame rate, so a
/// sample a second is every fifth frame. Timed by the sample interval,
/// every frame was a sample, a second apart.
#[test]
fn frames_without_timestamps_are_timed_by_the_frame_rate() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.mkv");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-framerate", "5", "-i"])
        .arg(fixture_dir().join("frame_%04d.jpg"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "h264"])
        .arg(&raw)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot run ffmpeg to make a test video: apt-get install ffmpeg");
        return;
    }
    let footage = Footage::open(&raw).unwrap();
    assert!(matches!(footage, Footage::Video(_)));
    let frames: Vec<_> = footage.frames(1.0).unwrap().collect();
    let offsets: Vec<f64> = frames.iter().map(|f| f.offset_s.unwrap()).collect();
    assert_eq!(offsets, [0.0, 1.0, 2.0, 3.0], "{offsets:?}");
}

#[test]
fn a_damaged_video_is_skipped_frame_by_frame_or_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let Some(video) = make_video(dir.path(), "mp4") else {
        return;
    };
    // Overwrite a stretch in the middle of the file with garbage.
    let mut bytes = std::fs::read(&video).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 2000] {
        *b = 0x5A;
    }
    let damaged = dir.path().join("damaged.mp4");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wildfire-watch"))
        .args(["replay", "--json"])
        .arg(&damaged)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let frames = summary["summary"]["frames"].as_u64().unwrap();
    assert!(frames >= 9, "most frames should survive: {summary}");

    // A file with a video extension that is not a video at all: one clear error.
    let fake = dir.path().join("fake.mkv");
    std::fs::write(&fake, b"this is not a video").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wildfire-watch"))
        .arg("replay")
        .arg(&fake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open video"), "{stderr}");
}
