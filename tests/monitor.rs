//! The live monitor end to end, on loopback only: the real binary
//! (`wildfire-watch run`) watching a fake snapshot camera served by this
//! test, alerting the reference receiver (or a scripted webhook server).
//!
//! No test asserts how fast anything happens: waits are bounded loops with
//! a generous safety limit. Intervals are configured short only so the suite
//! finishes quickly; inference in a debug build takes seconds per frame, and
//! the camera serves frames faster than that on purpose (the monitor keeps
//! only the newest).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use common::live::{
    events_of_type, first_event, fixture_frame, small_frame, wait_for, with_pixel_changed,
    write_config, write_config_with, Auth, FakeCamera, Monitor, Setup, PASSWORD, USER,
};
use common::{ok, scripted_server, serve_receiver, Reply, Seen, PATIENCE};
use wildfire_watch::camera::snapshot::SnapshotSource;
use wildfire_watch::camera::Source as _;
use wildfire_watch::config::{HttpAuth, SnapshotConfig};

/// The counters of camera west's frames: grabbed, and scored.
const FRAMES: &str = "wildfire_frames_total{camera=\"west\"}";
const SCORED: &str = "wildfire_frames_scored_total{camera=\"west\"}";

/// Receives notification datagrams until one equals `expected`.
fn wait_for_datagram(socket: &UnixDatagram, expected: &str) {
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {expected} from the monitor: {e}"));
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == expected)
        {
            return;
        }
    }
}

/// The camera's alarm thresholds in the tests that must tell the fixture's
/// plume frames from its clear ones. The shipped model (2026.12.04.1) scores
/// the plume frames 8-17 0.994-0.998 and the clear frames 0-7 0.29-0.71
/// (2026.12.02.7: 0.09-0.33; 2026.12.02.6: 0.28-0.93), so smoke is set to
/// 0.96, in that gap.
const PLUME_NOT_CLEAR: &str = "[cameras.confirm]\nthresholds = { smoke = 0.96, flame = 0.95 }";

#[tokio::test]
async fn a_rising_plume_becomes_a_signed_incident_with_snapshot_and_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    // The fixture in order, then its last plume frames over and over, at
    // the thresholds of `PLUME_NOT_CLEAR`.
    let camera = FakeCamera::start(Auth::Digest, |n| {
        fixture_frame(if n < 18 { n } else { 15 + (n - 18) % 3 })
    })
    .await;
    let config = write_config(dir.path(), &webhook, &camera, "digest", PLUME_NOT_CLEAR);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let monitor = Monitor::start(
        &config,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let notify = tokio::task::spawn_blocking(move || {
        // The outbox check may outlast TimeoutStartSec: the start asks for
        // more time first.
        wait_for_datagram(&notify, "EXTEND_TIMEOUT_USEC=600000000");
        wait_for_datagram(&notify, "READY=1");
        wait_for_datagram(&notify, "WATCHDOG=1");
    });

    let started = first_event(&store, "incident.started").await;
    notify.await.unwrap();
    assert!(
        started["id"]
            .as_str()
            .unwrap()
            .starts_with("hadong-jirisan-1-west-smoke-"),
        "{started}"
    );
    assert_eq!(started["camera"]["id"], "west");
    assert_eq!(started["camera"]["lat"], 35.1712);
    assert!(started["camera"].get("source").is_none());
    assert_eq!(started["incident"]["class"], "smoke");
    assert!(started["incident"]["score"].as_f64().unwrap() >= 0.96);
    let boxes = started["incident"]["boxes"].as_array().unwrap();
    assert!(!boxes.is_empty(), "{started}");
    let snapshot = &started["snapshot"];
    assert_eq!(snapshot["frame_width"], 640);
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(snapshot["data"].as_str().unwrap())
        .unwrap();
    let decoded = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(
        u64::from(decoded.width()),
        snapshot["width"].as_u64().unwrap()
    );
    // The receiver stores only events whose signature it verified; a
    // heartbeat went out at start as well.
    let heartbeats = events_of_type(&store, "heartbeat");
    assert_eq!(heartbeats.len(), 1);
    assert_eq!(heartbeats[0]["status"]["outbox_in_memory"], false);
    // Each says whether network time had set the clock, as the kernel
    // tells this test process (a bool on Linux).
    let synchronized = serde_json::json!(wildfire_watch::clock::synchronized());
    assert!(synchronized.is_boolean() || cfg!(not(target_os = "linux")));
    assert_eq!(started["clock_synchronized"], synchronized, "{started}");
    assert_eq!(heartbeats[0]["clock_synchronized"], synchronized);

    // Digest: one challenge, then the nonce is reused with a counting nc.
    assert_eq!(camera.challenged(), 1);
    assert!(camera.served() >= 3);

    let (status, health) = monitor.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["cameras"][0]["id"], "west");
    assert_eq!(health["cameras"][0]["state"], "online");
    assert!(health["cameras"][0]["last_frame_age_s"].as_f64().unwrap() >= 0.0);
    assert!(health["outbox"]["pending_events"].is_u64());
    assert_eq!(health["clock_synchronized"], synchronized, "{health}");

    let metrics = monitor.metrics().await;
    for series in [
        "wildfire_frames_total{camera=\"west\"} ",
        "wildfire_frames_scored_total{camera=\"west\"} ",
        "wildfire_smoke_score{camera=\"west\"} ",
        "wildfire_flame_score{camera=\"west\"} ",
        "wildfire_inference_seconds_bucket{le=\"+Inf\"} ",
        "wildfire_inference_seconds_count ",
        "wildfire_outbox_depth ",
        "wildfire_delivered_total ",
        "wildfire_delivery_failures_total 0",
        &format!("wildfire_endpoint_disabled{{endpoint=\"{webhook}\"}} 0"),
        "# TYPE wildfire_inference_seconds histogram",
    ] {
        assert!(metrics.contains(series), "no {series:?} in\n{metrics}");
    }
    // The receiver stores an event before it answers: the monitor counts
    // it delivered once the answer is in and marked in the outbox, which
    // may be after the test has read the stored file.
    wait_for("both counted delivered", || async {
        monitor
            .metric("wildfire_delivered_total")
            .await
            .filter(|&delivered| delivered >= 2.0)
    })
    .await;
    assert_eq!(
        monitor.metric("wildfire_clock_synchronized").await,
        synchronized.as_bool().map(|s| f64::from(u8::from(s)))
    );

    let (status, jpeg) = monitor.get("/snapshot/west.jpg").await;
    assert_eq!(status, 200);
    assert_eq!(image::load_from_memory(&jpeg).unwrap().width(), 640);
    assert_eq!(monitor.get("/snapshot/east.jpg").await.0, 404);
}

#[tokio::test]
async fn a_camera_that_vanishes_goes_offline_and_comes_back_online() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    // The first answer is cut short mid-JPEG; then two pictures alternate.
    let frames = [small_frame(0), small_frame(1)];
    let camera = FakeCamera::start(Auth::Basic, move |n| {
        if n == 0 {
            let whole = &frames[0];
            whole[..whole.len() / 2].to_vec()
        } else {
            frames[n % 2].clone()
        }
    })
    .await;
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        "offline_after_failures = 2\nmax_backoff_s = 0.5",
    );
    let monitor = Monitor::start(&config, &[]);
    let mut camera = camera;

    // Frames after the corrupt one.
    monitor.count_reaches(FRAMES, 2.0).await;
    assert_eq!(
        monitor
            .metric("wildfire_frames_skipped_total{camera=\"west\",reason=\"corrupt\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(monitor.health().await.0, 200);
    assert!(events_of_type(&store, "camera.offline").is_empty());

    camera.stop();
    let offline = first_event(&store, "camera.offline").await;
    assert_eq!(offline["camera"]["id"], "west");
    assert!(
        offline["reason"].as_str().unwrap().contains("in a row"),
        "{offline}"
    );
    let (status, health) = monitor.health().await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["cameras"][0]["state"], "offline");
    assert!(health["cameras"][0]["last_error"].is_string(), "{health}");
    let frames_before = monitor.count(FRAMES).await;

    camera.restart().await;
    let online = first_event(&store, "camera.online").await;
    assert_eq!(online["camera"]["id"], "west");
    // Frames flowing again.
    monitor.count_reaches(FRAMES, frames_before + 2.0).await;
    let (status, health) = monitor.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(events_of_type(&store, "camera.offline").len(), 1);

    let mut monitor = monitor;
    assert!(
        monitor.terminate().await.success(),
        "SIGTERM is a clean stop"
    );
}

/// A camera serving one picture over and over, to the last pixel (a cached
/// snapshot), with a plume in it: scored once, the repeats skipped. Scored
/// each time, the one picture was hot in two frames 50 s apart and started
/// an incident, minutes before it counted as stuck.
#[tokio::test]
async fn a_picture_repeated_to_the_pixel_is_scored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let camera = FakeCamera::start(Auth::Basic, |_| fixture_frame(15)).await;
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        &format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0"),
    );
    let mut monitor = Monitor::start(&config, &[]);
    // The first frame is scored once the inference thread is up; the
    // repeats are counted as they come, from the start.
    const REPEATS: &str = "wildfire_frames_skipped_total{camera=\"west\",reason=\"repeat\"}";
    monitor.count_reaches(SCORED, 1.0).await;
    let before = monitor.count(REPEATS).await;
    monitor.count_reaches(REPEATS, before + 5.0).await;
    assert_eq!(monitor.count(SCORED).await, 1.0);
    assert!(monitor.terminate().await.success());
    assert!(events_of_type(&store, "incident.started").is_empty());
}

/// A restart while a camera is out (a power cut, the service restarted for
/// a wedged device): the camera stays reported offline, so its return is
/// reported, and it is not reported offline again. Before, the restart
/// forgot it: the control room heard camera.offline twice and never
/// camera.online.
#[tokio::test]
async fn a_camera_out_across_a_restart_is_reported_back_once_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let frames = [small_frame(0), small_frame(1)];
    let mut camera = FakeCamera::start(Auth::Basic, move |n| frames[n % 2].clone()).await;
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        "offline_after_failures = 2\nmax_backoff_s = 0.5",
    );
    let mut monitor = Monitor::start(&config, &[]);
    camera.stop();
    first_event(&store, "camera.offline").await;
    // Killed (a power cut) while the camera is out, and started again.
    monitor.kill();
    let monitor = Monitor::start(&config, &[]);
    wait_for("the restart's heartbeat", || async {
        let heartbeats = events_of_type(&store, "heartbeat");
        (heartbeats.len() >= 2).then_some(heartbeats)
    })
    .await;
    let (status, health) = monitor.health().await;
    assert_eq!(health["cameras"][0]["state"], "offline", "{health}");
    assert_eq!(status, 503, "{health}");
    camera.restart().await;
    let online = first_event(&store, "camera.online").await;
    assert!(
        online["reason"]
            .as_str()
            .unwrap()
            .contains("frames again after"),
        "{online}"
    );
    assert_eq!(events_of_type(&store, "camera.offline").len(), 1);
    // Back online is noted too: another restart reports nothing.
    let mut monitor = monitor;
    assert!(monitor.terminate().await.success());
    let mut monitor = Monitor::start(&config, &[]);
    monitor.count_reaches(FRAMES, 2.0).await;
    assert!(monitor.terminate().await.success());
    assert_eq!(events_of_type(&store, "camera.online").len(), 1);
    assert_eq!(events_of_type(&store, "camera.offline").len(), 1);
    // Nor is one still on its way in the outbox.
    let outbox = rusqlite::Connection::open(dir.path().join("outbox.sqlite3")).unwrap();
    let owed: i64 = outbox
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'camera'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(owed, 0);
}

#[tokio::test]
async fn a_frozen_picture_is_reported_offline_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Neighbouring fixture frames differ too little to count as a change;
    // the moving picture alternates with a clearly brighter one.
    let brighter = {
        let mut image = image::load_from_memory(&small_frame(0))
            .unwrap()
            .into_rgb8();
        for p in image.pixels_mut() {
            p.0 = p.0.map(|v| v.saturating_add(40));
        }
        wildfire_watch::synth::encode_jpeg(&image)
    };
    let frames = [small_frame(0), brighter];
    let camera = FakeCamera::start(Auth::Basic, {
        let frozen = frozen.clone();
        move |n| {
            if frozen.load(Ordering::SeqCst) {
                // Frozen but for one pixel: the same picture, not a repeat.
                with_pixel_changed(&frames[0], n)
            } else {
                frames[n % 2].clone()
            }
        }
    })
    .await;
    // Unchanged for 0.6 s counts as stuck here (10 minutes by default).
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        "stuck_after_minutes = 0.01",
    );
    let monitor = Monitor::start(&config, &[]);
    let offline = first_event(&store, "camera.offline").await;
    assert!(
        offline["reason"]
            .as_str()
            .unwrap()
            .contains("has not changed"),
        "{offline}"
    );
    assert_eq!(monitor.health().await.0, 503);
    // Still scored while reported stuck: a fire starting in a still scene
    // may change the picture too little to unstick it.
    let when_offline = monitor.count(SCORED).await;
    monitor.count_reaches(SCORED, when_offline + 2.0).await;
    assert!(monitor
        .metric("wildfire_frames_skipped_total{camera=\"west\",reason=\"stuck\"}")
        .await
        .is_none());
    // Killed and started again while the picture is still frozen: its first
    // frames are not its return (the new run has nothing to compare them
    // with), so no camera.online, and no second camera.offline.
    let mut monitor = monitor;
    monitor.kill();
    let monitor = Monitor::start(&config, &[]);
    monitor.count_reaches(SCORED, 3.0).await;
    assert_eq!(monitor.health().await.0, 503);
    assert!(events_of_type(&store, "camera.online").is_empty());
    frozen.store(false, Ordering::SeqCst);
    first_event(&store, "camera.online").await;
    assert_eq!(monitor.health().await.0, 200);
    assert_eq!(events_of_type(&store, "camera.offline").len(), 1);
}

#[tokio::test]
async fn a_monitor_killed_mid_delivery_loses_nothing_and_resends_under_the_same_id() {
    // Request 0 is the heartbeat sent at start; request 1, the first
    // incident event, is read and never answered, and the monitor is killed
    // while it waits. Every other request is taken.
    let (webhook, seen, arrived) =
        scripted_server(Arc::new(|n| if n == 1 { Reply::Silent } else { ok() })).await;
    let camera = FakeCamera::start(Auth::Digest, |n| fixture_frame(15 + n % 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &webhook, &camera, "digest", PLUME_NOT_CLEAR);
    let seen_count = |seen: &Arc<Mutex<Vec<Seen>>>| seen.lock().unwrap().len();
    let mut monitor = Monitor::start(&config, &[]);
    tokio::time::timeout(PATIENCE * 2, async {
        while seen_count(&seen) < 2 {
            arrived.notified().await;
        }
    })
    .await
    .expect("the incident never reached the webhook");
    monitor.kill();
    let silenced = seen.lock().unwrap()[1].clone();
    let body: Value = serde_json::from_str(&silenced.body).unwrap();
    assert_eq!(body["type"], "incident.started", "{body}");

    let _monitor = Monitor::start(&config, &[]);
    tokio::time::timeout(PATIENCE * 2, async {
        while seen_count(&seen) < 3 {
            arrived.notified().await;
        }
    })
    .await
    .expect("nothing was sent after the restart");
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].body.contains("\"heartbeat\""), "{}", seen[0].body);
    // The restarted monitor sends the unanswered event first, unchanged.
    assert_eq!(seen[2].id, silenced.id);
    assert_eq!(seen[2].body, silenced.body);
    assert!(seen.iter().all(|s| s.signature_ok));
}

/// The `incident.id` of each stored event of type `kind`, in arrival order.
fn incident_ids(store: &Path, kind: &str) -> Vec<String> {
    events_of_type(store, kind)
        .iter()
        .map(|e| e["incident"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// For [`wait_for`]: the `incident.id`s of the stored events of type `kind`,
/// once there are at least `n`.
fn incident_ids_once(
    store: &Path,
    kind: &'static str,
    n: usize,
) -> impl FnMut() -> std::future::Ready<Option<Vec<String>>> {
    let store = store.to_path_buf();
    move || {
        let ids = incident_ids(&store, kind);
        std::future::ready((ids.len() >= n).then_some(ids))
    }
}

/// A camera whose snapshots mix sizes (every other one a 160x90 frame, as
/// from a sub-stream): the odd frames are skipped, so the plume in the
/// usual ones starts one incident, which nothing ends. Before, each change
/// of size ended the running incidents and started the start rule over, so
/// this camera never confirmed the fire.
#[tokio::test]
async fn frames_of_an_odd_size_between_the_usual_ones_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let camera = FakeCamera::start(Auth::Basic, |n| match n % 2 {
        0 => fixture_frame(15 + (n / 2) % 3),
        _ => small_frame(4),
    })
    .await;
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        &format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0"),
    );
    let monitor = Monitor::start(&config, &[]);
    let started = first_event(&store, "incident.started").await;
    assert_eq!(started["snapshot"]["frame_width"], 640, "{started}");
    const ODD: &str = "wildfire_frames_skipped_total{camera=\"west\",reason=\"size\"}";
    let after_start = monitor.count(ODD).await;
    monitor.count_reaches(ODD, after_start + 4.0).await;
    assert_eq!(events_of_type(&store, "incident.started").len(), 1);
    assert!(events_of_type(&store, "incident.ended").is_empty());
    let mut monitor = monitor;
    assert!(monitor.terminate().await.success());
}

/// Restarted mid-fire with the camera's boot screen (another size) as the
/// first frame back: it is skipped as an odd size, and the incident goes on
/// under its id. Before, the first frame's size was the camera's, so the
/// boot screen ended the incident unseen, and the plume, back at its own
/// size, started a second one three frames later.
#[tokio::test]
async fn a_boot_screen_first_after_a_restart_does_not_end_the_running_incident() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let boot_screen = Arc::new(AtomicBool::new(false));
    let camera = {
        let boot_screen = boot_screen.clone();
        FakeCamera::start(Auth::Basic, move |n| {
            match boot_screen.swap(false, Ordering::SeqCst) {
                true => small_frame(4),
                false => fixture_frame(15 + n % 3),
            }
        })
        .await
    };
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        &format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0"),
    );
    let mut monitor = Monitor::start(&config, &[]);
    let started = first_event(&store, "incident.started").await;
    monitor.kill();
    // A grab the killed monitor sent just before may still be answered:
    // the boot screen is for the next monitor's first grab, not for it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    boot_screen.store(true, Ordering::SeqCst);
    let monitor = Monitor::start(&config, &[]);
    monitor.count_reaches(SCORED, 4.0).await;
    assert!(!boot_screen.load(Ordering::SeqCst), "no boot screen served");
    const ODD: &str = "wildfire_frames_skipped_total{camera=\"west\",reason=\"size\"}";
    assert_eq!(monitor.count(ODD).await, 1.0);
    assert!(events_of_type(&store, "incident.ended").is_empty());
    assert_eq!(
        incident_ids(&store, "incident.started"),
        [started["incident"]["id"].as_str().unwrap()]
    );
    let mut monitor = monitor;
    assert!(monitor.terminate().await.success());
}

/// A camera showing plume frames while `plume` is set, else clear frames
/// 4-7 (told apart by `PLUME_NOT_CLEAR`).
async fn plume_camera(plume: &Arc<AtomicBool>) -> FakeCamera {
    let plume = plume.clone();
    FakeCamera::start(Auth::Basic, move |n| match plume.load(Ordering::SeqCst) {
        true => fixture_frame(15 + n % 3),
        false => fixture_frame(4 + n % 4),
    })
    .await
}

#[tokio::test]
async fn a_restart_continues_a_running_incident_and_ends_one_it_outlived() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    // Plume frames while `plume` is set, else clear frames 4-7, told apart
    // by `PLUME_NOT_CLEAR`. Two hot frames start an incident; one ends
    // after 30 s without a hot frame (keep threshold = alarm threshold).
    let plume = Arc::new(AtomicBool::new(true));
    let camera = plume_camera(&plume).await;
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        &format!(
            "{PLUME_NOT_CLEAR}\nspan_s = 0.0\nclear_s = 30.0\nkeep_factor = 1.0\ncooldown_s = 0.0"
        ),
    );
    let started = |n| incident_ids_once(&store, "incident.started", n);
    let ended = |n| incident_ids_once(&store, "incident.ended", n);

    // Killed mid-fire, back at once: the same incident goes on.
    let mut monitor = Monitor::start(&config, &[]);
    let first = wait_for("the first incident.started", started(1)).await[0].clone();
    monitor.kill();
    let monitor = Monitor::start(&config, &[]);
    // Four frames scored after the restart.
    monitor.count_reaches(SCORED, 4.0).await;
    assert_eq!(
        incident_ids(&store, "incident.started"),
        vec![first.clone()]
    );
    assert!(incident_ids(&store, "incident.ended").is_empty());
    plume.store(false, Ordering::SeqCst);
    let ids = wait_for("the incident's end", ended(1)).await;
    assert_eq!(ids, vec![first.clone()]);
    assert_eq!(
        incident_ids(&store, "incident.started"),
        vec![first.clone()]
    );
    drop(monitor);

    // Killed mid-fire and down for longer than clear_s: the old incident
    // ends with the first frame back, and the fire still burning starts a
    // new one.
    plume.store(true, Ordering::SeqCst);
    let mut monitor = Monitor::start(&config, &[]);
    let second = wait_for("the second incident.started", started(2)).await[1].clone();
    assert_ne!(second, first);
    monitor.kill();
    tokio::time::sleep(Duration::from_secs(35)).await;
    let _monitor = Monitor::start(&config, &[]);
    let started = wait_for("the third incident.started", started(3)).await;
    assert_eq!(
        incident_ids(&store, "incident.ended"),
        [first.clone(), second.clone()]
    );
    assert!(!started[..2].contains(&started[2]), "{started:?}");
    let ended_second = events_of_type(&store, "incident.ended")[1].clone();
    let started_third = events_of_type(&store, "incident.started")[2].clone();
    assert!(
        ended_second["timestamp"].as_str() <= started_third["timestamp"].as_str(),
        "{ended_second} {started_third}"
    );
}

/// A camera renamed (or removed) while its incident runs: the next start
/// ends that incident, under the old camera's id and without a picture,
/// where before the control room kept it open for good. The renamed camera
/// is a new one: its fire is a new incident.
#[tokio::test]
async fn a_camera_renamed_mid_fire_has_its_incident_ended_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    // The plume throughout: it burns on across the rename.
    let camera = FakeCamera::start(Auth::Basic, |n| fixture_frame(15 + n % 3)).await;
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        &format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0"),
    );
    let mut monitor = Monitor::start(&config, &[]);
    let started = first_event(&store, "incident.started").await;
    monitor.kill();
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(text.matches("id = \"west\"").count(), 1, "{text}");
    std::fs::write(&config, text.replace("id = \"west\"", "id = \"north\"")).unwrap();
    let _monitor = Monitor::start(&config, &[]);
    let ended = first_event(&store, "incident.ended").await;
    assert_eq!(ended["incident"]["id"], started["incident"]["id"]);
    assert_eq!(ended["camera"], serde_json::json!({"id": "west"}));
    assert_eq!(
        ended["incident"]["started_at"],
        started["incident"]["started_at"]
    );
    assert!(ended["incident"]["score"].is_null(), "{ended}");
    assert!(ended["snapshot"].is_null(), "{ended}");
    assert!(
        ended["snapshot_error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer in the configuration")),
        "{ended}"
    );
    // The plume still burning, the camera under its new id starts anew.
    let ids = wait_for(
        "the renamed camera's incident.started",
        incident_ids_once(&store, "incident.started", 2),
    )
    .await;
    assert!(ids[1].starts_with("north-"), "{ids:?}");
    assert_eq!(events_of_type(&store, "incident.ended").len(), 1);
}

#[tokio::test]
async fn a_clock_step_forward_does_not_end_a_running_incident() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let plume = Arc::new(AtomicBool::new(true));
    let camera = plume_camera(&plume).await;
    // An incident ends after 60 s without a hot frame.
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        &format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0\nclear_s = 60.0\nkeep_factor = 1.0"),
    );
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "0 0\n").unwrap();
    let clock_env = clock.to_str().unwrap();
    let monitor = Monitor::start(&config, &[("WILDFIRE_WATCH_TEST_CLOCK_FILE", clock_env)]);
    let first = wait_for(
        "incident.started",
        incident_ids_once(&store, "incident.started", 1),
    )
    .await;
    // Network time steps the wall clock a day forward, and the smoke thins
    // for a few frames: seconds, not a day, without a hot frame.
    let before = monitor.count(SCORED).await;
    std::fs::write(&clock, "0 86400\n").unwrap();
    plume.store(false, Ordering::SeqCst);
    // Four frames after the step.
    monitor.count_reaches(SCORED, before + 4.0).await;
    assert!(
        incident_ids(&store, "incident.ended").is_empty(),
        "a step of the clock ended {first:?}"
    );
    assert_eq!(incident_ids(&store, "incident.started"), first);
}

#[tokio::test]
async fn a_second_fire_while_an_incident_runs_is_alerted_as_its_own_incident() {
    // Frames two fixture frames wide: on the left a plume from the start
    // (a burn pile the control room already knows of), on the right clear
    // hillside until `second` is set, then another plume, with a cold tile
    // between the two. The second fire must come as an incident.started of
    // its own, not as an update of the burn pile's incident.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let side_by_side = |left: usize, right: usize| {
        let half = |i| {
            image::load_from_memory(&fixture_frame(i))
                .unwrap()
                .into_rgb8()
        };
        let (left, right) = (half(left), half(right));
        let mut frame = image::RgbImage::new(left.width() * 2, left.height());
        image::imageops::replace(&mut frame, &left, 0, 0);
        image::imageops::replace(&mut frame, &right, i64::from(left.width()), 0);
        wildfire_watch::synth::encode_jpeg(&frame)
    };
    let burn_pile: Vec<_> = (0..3).map(|i| side_by_side(15 + i, 4 + i)).collect();
    let two_fires: Vec<_> = (0..3)
        .map(|i| side_by_side(15 + i, 15 + (i + 1) % 3))
        .collect();
    let second = Arc::new(AtomicBool::new(false));
    let camera = FakeCamera::start(Auth::Basic, {
        let second = second.clone();
        move |n| match second.load(Ordering::SeqCst) {
            false => burn_pile[n % 3].clone(),
            true => two_fires[n % 3].clone(),
        }
    })
    .await;
    let config = write_config(
        dir.path(),
        &webhook,
        &camera,
        "basic",
        &format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0"),
    );
    let monitor = Monitor::start(&config, &[]);
    let first = wait_for(
        "the burn pile's incident.started",
        incident_ids_once(&store, "incident.started", 1),
    )
    .await[0]
        .clone();
    second.store(true, Ordering::SeqCst);
    let ids = wait_for(
        "the second fire's incident.started",
        incident_ids_once(&store, "incident.started", 2),
    )
    .await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[1], first);
    // Its boxes are on the right half, and the burn pile's incident runs on.
    let started = events_of_type(&store, "incident.started");
    let width = started[1]["snapshot"]["frame_width"].as_u64().unwrap();
    assert_eq!(width, 1280);
    let boxes = started[1]["incident"]["boxes"].as_array().unwrap();
    assert!(!boxes.is_empty(), "{}", started[1]);
    for b in boxes {
        assert!(b[0].as_u64().unwrap() >= width / 2, "{}", started[1]);
    }
    assert!(incident_ids(&store, "incident.ended").is_empty());
    drop(monitor);
}

#[tokio::test]
async fn real_tower_frames_are_watched_without_a_false_alarm() {
    // The real tower sequence of the shared datasets.
    let Some(sequence) = common::dataset("sequences/hpwren_20180728_rm-w-mobo-c") else {
        return;
    };
    // The 40 frames before ignition (overcast sky, lens vignette, caption),
    // served in a loop at full 1600x1200 size.
    let frames: Vec<Vec<u8>> = (0..40)
        .map(|i| std::fs::read(sequence.join(format!("frame_{i:04}.jpg"))).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let camera = FakeCamera::start(Auth::Basic, move |n| frames[n % frames.len()].clone()).await;
    let config = write_config(dir.path(), &webhook, &camera, "basic", "");
    let monitor = Monitor::start(&config, &[]);
    let scored = monitor.count_reaches(SCORED, 6.0).await;
    assert!(scored >= 6.0);
    first_event(&store, "heartbeat").await;
    assert!(
        events_of_type(&store, "incident.started").is_empty(),
        "an incident on clear pre-ignition sky"
    );
    let (status, health) = monitor.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["cameras"][0]["state"], "online");
    let (status, jpeg) = monitor.get("/snapshot/west.jpg").await;
    assert_eq!(status, 200);
    let snapshot = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((snapshot.width(), snapshot.height()), (1600, 1200));
}

/// The camera client alone (no monitor, no model) for `camera`, with
/// `auth = "digest"` and `password`.
fn digest_client(camera: &FakeCamera, dir: &Path, password: &str) -> SnapshotSource {
    let password_file = dir.join("camera.password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let config = SnapshotConfig {
        url: camera.url(),
        username: Some(USER.into()),
        password_file: Some(password_file),
        password_credential: None,
        auth: HttpAuth::Digest,
    };
    SnapshotSource::new(&config, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn a_camera_offering_sha_256_first_is_answered_with_sha_256() {
    let dir = tempfile::tempdir().unwrap();
    let camera = FakeCamera::start(Auth::DigestSha256First, small_frame).await;
    let mut client = digest_client(&camera, dir.path(), PASSWORD);
    for _ in 0..2 {
        if let Err(e) = client.grab().await {
            panic!("grab failed: {e}");
        }
    }
    assert_eq!(camera.algorithms(), ["SHA-256", "SHA-256"]);
    // One challenge, then its nonce is reused with a counting nc.
    assert_eq!(camera.challenged(), 1);
}

#[tokio::test]
async fn a_stale_nonce_is_renewed_not_taken_for_wrong_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let camera = FakeCamera::start(Auth::DigestStaleOnce, small_frame).await;
    let mut client = digest_client(&camera, dir.path(), PASSWORD);
    for _ in 0..2 {
        if let Err(e) = client.grab().await {
            panic!("grab failed: {e}");
        }
    }
    assert_eq!(camera.served(), 2);
    // The first challenge, the stale answer; none after the renewal.
    assert_eq!(camera.challenged(), 2);

    // A wrong password is still refused after one fresh challenge, not
    // retried as if stale.
    let mut client = digest_client(&camera, dir.path(), "wrong");
    let Err(e) = client.grab().await else {
        panic!("a wrong password was let in");
    };
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    assert_eq!(camera.challenged(), 4);
}

#[tokio::test]
async fn a_stalled_outbox_stalls_no_camera_status_answer_or_watchdog_ping() {
    // Every outbox commit sleeps 5 s (the test seam), as a commit whose fsync
    // stalls on a worn SD card. The monitor's first commits (the start
    // heartbeat, delivery's expiry pass) come right after READY=1, and each
    // further one waits behind the last: the store is stuck throughout.
    const COMMIT_DELAY_MS: &str = "5000";
    // How long the test watches: two stalled commits and more.
    const WATCH: Duration = Duration::from_secs(12);
    // The deadlines a stall behind a 5 s commit breaks; camera frames come
    // every 0.2 s, WATCHDOG=1 every 1 s.
    const ANSWER_WITHIN: Duration = Duration::from_secs(1);
    const FRAME_AGE_BELOW_S: f64 = 2.0;
    const WATCHDOG_SEC: Duration = Duration::from_secs(2);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    let frames = [small_frame(0), small_frame(1)];
    let camera = FakeCamera::start(Auth::Basic, move |n| frames[n % 2].clone()).await;
    let config = write_config(dir.path(), &webhook, &camera, "basic", "");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let watchdog_usec = WATCHDOG_SEC.as_micros().to_string();
    let monitor = Monitor::start(
        &config,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", &watchdog_usec),
            (wildfire_watch::monitor::COMMIT_DELAY_ENV, COMMIT_DELAY_MS),
        ],
    );
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        wait_for_datagram(&notify, "READY=1");
        notify
    });
    let notify = ready.await.unwrap();
    let ready_at = Instant::now();

    // The watchdog pings from READY=1 on, as they arrive, on a thread of
    // their own, until `done` (a plain thread: a failing test must not wait
    // for it).
    let done = Arc::new(AtomicBool::new(false));
    let pings = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut pings = Vec::new();
            let mut buf = [0u8; 256];
            notify
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            while !done.load(Ordering::SeqCst) {
                if let Ok(n) = notify.recv(&mut buf) {
                    if String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == "WATCHDOG=1")
                    {
                        pings.push(ready_at.elapsed());
                    }
                }
            }
            pings
        }
    });

    // /healthz, over and over while the store is stuck: each answer comes
    // within the deadline; once the first frame is in, every answer shows
    // the camera online with a fresh frame.
    let mut answers = 0;
    let mut frames_seen = Vec::new();
    while ready_at.elapsed() < WATCH {
        let asked = ready_at.elapsed().as_secs_f64();
        let (status, health) = tokio::time::timeout(ANSWER_WITHIN, monitor.health())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "/healthz asked {asked:.1} s after READY=1 gave no answer within {ANSWER_WITHIN:?}: stalled behind the outbox"
                )
            });
        answers += 1;
        let camera = &health["cameras"][0];
        let frames = camera["frames"].as_u64().unwrap();
        if frames > 0 || !frames_seen.is_empty() {
            assert_eq!(status, 200, "{asked:.1} s after READY=1: {health}");
            let age = camera["last_frame_age_s"].as_f64().unwrap();
            assert!(
                age < FRAME_AGE_BELOW_S,
                "{asked:.1} s after READY=1 the last frame was {age} s old: grabs stalled behind the outbox; {health}"
            );
            frames_seen.push(frames);
        }
        // The store is indeed stuck: the start heartbeat cannot have been
        // committed, let alone delivered, before its 5 s commit ends.
        if ready_at.elapsed() < Duration::from_secs(4) {
            assert!(
                events_of_type(&store, "heartbeat").is_empty(),
                "the heartbeat was delivered before its slow commit could end: is the test seam working?"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(answers >= 10, "only {answers} answers");
    assert!(
        frames_seen.len() >= 10 && frames_seen.last() > frames_seen.first(),
        "too few new frames: {frames_seen:?}"
    );

    // WATCHDOG=1 kept coming: never a gap systemd would restart us for.
    // The watch ends before the ping thread is told to: a ping it takes
    // after the end is left out (the end less it underflowed and panicked).
    let end = ready_at.elapsed();
    done.store(true, Ordering::SeqCst);
    let pings: Vec<Duration> = pings
        .join()
        .unwrap()
        .into_iter()
        .filter(|&at| at <= end)
        .collect();
    assert!(
        pings.len() >= 3,
        "only {} watchdog pings: {pings:?}",
        pings.len()
    );
    let mut last = Duration::ZERO;
    for &at in pings.iter().chain([end].iter()) {
        assert!(
            at - last < WATCHDOG_SEC,
            "no WATCHDOG=1 from {:.1} s to {:.1} s after READY (WatchdogSec {WATCHDOG_SEC:?}): {pings:?}",
            last.as_secs_f64(),
            at.as_secs_f64()
        );
        last = at;
    }

    // Stuck is not lost: the heartbeat is stored, slowly, and delivered.
    first_event(&store, "heartbeat").await;
    let mut monitor = monitor;
    assert!(monitor.terminate().await.success());
}

/// A running incident's per-frame fields (its last hot frame) are saved once
/// a minute; where no frame comes in that minute (a camera grabbing every
/// 40 s here, or one lost to the fire), the inference thread saves them
/// between frames (`retry_unsaved`). Every commit takes 25 s, as on a worn
/// SD card. That save is held to the inference thread's limit for a frame
/// (180 s), where it was held to the 16 s of its idle wait: the watchdog went
/// unfed 16 s into the save, and systemd killed the service mid-fire, once a
/// minute for as long as the card stayed slow. The start too: its read of
/// the running incidents waits for the outbox thread, which may be
/// committing the first heartbeat (25 s) first; that read was held to the
/// start's 20 s. Which goes first is a race: CI's run lost it.
#[tokio::test]
async fn a_slow_save_of_a_running_incident_between_frames_keeps_the_watchdog_fed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    // One plume frame throughout: the incident's region stays as it is, so
    // only its per-frame fields change, and a frame saves them only once
    // the minute is up (a changed region is saved at once).
    let plume = fixture_frame(15);
    let camera = FakeCamera::start(Auth::Basic, move |n| with_pixel_changed(&plume, n)).await;
    let config = write_config_with(
        dir.path(),
        &webhook,
        &camera,
        &Setup {
            // Frames f0, f1 (which starts the incident), f2 40 s later (its
            // last hot frame moves, 40 s after the save: not due yet), and
            // the minute is up before f3: the save falls between frames.
            interval_s: 40.0,
            camera_extra: &format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0"),
            ..Setup::default()
        },
    );
    // Nobody reads the pings: what matters is whether the monitor withholds
    // them, which its journal says.
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    let log = dir.path().join("run.log");
    let _monitor = Monitor::start_logged(
        &config,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
            (wildfire_watch::monitor::COMMIT_DELAY_ENV, "25000"),
        ],
        &log,
    );
    // The running incident as saved in the outbox, once it is.
    let outbox = dir.path().join("outbox.sqlite3");
    let saved = move || -> Option<String> {
        let conn = rusqlite::Connection::open(&outbox).ok()?;
        conn.query_row(
            "SELECT state FROM open_incidents WHERE camera = 'west'",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    let started = wait_for("the incident saved with its start", || async { saved() }).await;
    let later = wait_for("the incident saved again, with f2's time", || async {
        saved().filter(|s| *s != started)
    })
    .await;
    assert_ne!(later, started);
    let journal = std::fs::read_to_string(&log).unwrap();
    assert!(
        !journal.contains("not feeding the systemd watchdog"),
        "{journal}"
    );
}

/// A stop while the frame that confirms a fire is still in flight (a frame
/// takes seconds on a Pi): the stop waits for that frame, so its
/// `incident.started` and the running incident are stored before the
/// process ends, to go out after the restart. Before, the outbox drained
/// and the process exited first, and both were lost.
#[tokio::test]
async fn a_stop_during_the_frame_that_confirms_a_fire_keeps_its_alert() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let webhook = serve_receiver(&store).await;
    // Plume frames only (8-17), so the first frames confirm.
    let camera = FakeCamera::start(Auth::Basic, |n| fixture_frame(8 + n % 10)).await;
    // Two hot frames in a row start an incident (the default 50 s span would
    // only make the test longer).
    let confirm = format!("{PLUME_NOT_CLEAR}\nspan_s = 0.0");
    let config = write_config(dir.path(), &webhook, &camera, "basic", &confirm);
    let log = dir.path().join("run.log");
    // Each frame's events wait 4 s before they are stored: the stop below
    // comes inside that wait.
    let mut monitor = Monitor::start_logged(
        &config,
        &[(wildfire_watch::monitor::FRAME_DELAY_ENV, "4000")],
        &log,
    );
    let id = wait_for(
        "the journal line of the frame that starts an incident",
        || async {
            let journal = std::fs::read_to_string(&log).ok()?;
            let line = journal
                .lines()
                .find(|l| l.contains("incident.started smoke"))?;
            let id = line.rsplit_once('(')?.1.strip_suffix(')')?;
            Some(id.to_string())
        },
    )
    .await;
    assert!(monitor.terminate().await.success());
    let journal = std::fs::read_to_string(&log).unwrap();
    assert!(!journal.contains("did not finish its frame"), "{journal}");

    // Stored (or, had delivery still been running, delivered), and the
    // incident saved as running, so a restart continues it.
    let outbox = rusqlite::Connection::open(dir.path().join("outbox.sqlite3")).unwrap();
    let stored: i64 = outbox
        .query_row(
            "SELECT COUNT(*) FROM events WHERE id LIKE '%-' || ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    let delivered = events_of_type(&store, "incident.started")
        .iter()
        .any(|e| e["id"].as_str().is_some_and(|i| i.ends_with(&id)));
    assert!(stored == 1 || delivered, "{id} was lost: {journal}");
    let running: i64 = outbox
        .query_row(
            "SELECT COUNT(*) FROM open_incidents WHERE camera = 'west'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(running, 1, "{journal}");
}
