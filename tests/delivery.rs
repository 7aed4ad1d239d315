//! Webhook delivery end to end, on loopback only: the outbox, the delivery
//! worker (in-process and as the real binary), the reference receiver, and
//! small hand-written servers that misbehave on purpose.
//!
//! No test asserts how fast anything happens: waits are bounded loops with a
//! generous safety limit, and backoffs and timeouts are configured short only
//! so the suite finishes quickly.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;

use common::{
    ok, scripted_server, serve_receiver, start_receiver, stored_ids, Reply, Seen, PATIENCE, SECRET,
};

use wildfire_watch::delivery::{self, DeliveryOptions, Endpoint, Outcome, Until};
use wildfire_watch::events::IncidentPhase;
use wildfire_watch::outbox::{now_unix, EventKind, IncidentRef, Outbox, OutgoingEvent};
use wildfire_watch::outbox_thread::OutboxHandle;
use wildfire_watch::webhook::Secret;

fn options() -> DeliveryOptions {
    DeliveryOptions {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(10),
        max_response_bytes: 4096,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

fn endpoint(url: &str) -> Endpoint {
    Endpoint::new(url.to_string(), vec![Secret::parse(SECRET).unwrap()])
}

fn open_outbox(dir: &Path, url: &str) -> Outbox {
    Outbox::open(
        &dir.join("outbox.sqlite3"),
        vec![url.to_string()],
        1000,
        Duration::from_secs(3600),
    )
    .unwrap()
}

fn event(i: usize) -> OutgoingEvent {
    OutgoingEvent {
        id: format!("tower-7-e{i}"),
        kind: EventKind::Incident,
        created_at: now_unix(),
        body: format!("{{\"type\":\"incident.started\",\"id\":\"tower-7-e{i}\",\"n\":{i}}}"),
        incident: None,
    }
}

/// Event `i` as a camera event (`camera.offline`).
fn camera_event(i: usize) -> OutgoingEvent {
    OutgoingEvent {
        id: format!("tower-7-c{i}"),
        kind: EventKind::Camera,
        body: format!("{{\"type\":\"camera.offline\",\"id\":\"tower-7-c{i}\",\"n\":{i}}}"),
        ..event(i)
    }
}

/// Runs the worker until the outbox is idle, within [`PATIENCE`].
async fn deliver_all(outbox: &Arc<Outbox>, url: &str, options: DeliveryOptions) {
    tokio::time::timeout(
        PATIENCE,
        delivery::run(
            OutboxHandle::spawn(outbox.clone()).unwrap(),
            vec![endpoint(url)],
            options,
            Arc::new(Notify::new()),
            Until::Idle,
        ),
    )
    .await
    .expect("delivery did not finish")
    .unwrap();
}

#[tokio::test]
async fn a_signed_event_arrives_at_the_reference_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = serve_receiver(&store).await;
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(stored_ids(&store), ["tower-7-e0"]);
    assert_eq!(
        std::fs::read_to_string(store.join("000001-tower-7-e0.json")).unwrap(),
        event(0).body
    );
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.pending_events, stats.delivered), (0, 1));
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_is_down_and_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then leave it closed: connections are refused.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/hook");
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    for i in 0..5 {
        outbox.enqueue(&event(i)).unwrap();
    }
    let worker = tokio::spawn({
        let (outbox, url) = (outbox.clone(), url.clone());
        async move { deliver_all(&outbox, &url, options()).await }
    });
    // Wait until the first event has failed a few times.
    let mut polls = 0;
    while outbox.head(&url).unwrap().unwrap().attempts < 3 {
        polls += 1;
        assert!(polls < 12_000, "the worker never retried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = dir.path().join("store");
    start_receiver(TcpListener::bind(addr).await.unwrap(), &store).await;
    worker.await.unwrap();
    let expected: Vec<String> = (0..5).map(|i| event(i).id).collect();
    assert_eq!(stored_ids(&store), expected);
    assert_eq!(outbox.stats().unwrap().pending_events, 0);
}

fn ids(seen: &Mutex<Vec<Seen>>) -> Vec<String> {
    seen.lock().unwrap().iter().map(|s| s.id.clone()).collect()
}

#[tokio::test]
async fn a_500_is_retried_until_taken() {
    let (url, seen, _) = scripted_server(Arc::new(|n| {
        if n < 2 {
            Reply::Answer(500, vec![], "boom".into())
        } else {
            ok()
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    outbox.enqueue(&event(1)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(
        ids(&seen),
        ["tower-7-e0", "tower-7-e0", "tower-7-e0", "tower-7-e1"]
    );
    assert!(seen.lock().unwrap().iter().all(|s| s.signature_ok));
    assert_eq!(outbox.stats().unwrap().delivered, 2);
}

#[tokio::test]
async fn retry_after_sets_the_next_attempt_between_the_backoff_bounds() {
    let (url, _, _) = scripted_server(Arc::new(|n| {
        let after = match n {
            0 => "1800".to_string(),
            1 => httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2700)),
            _ => "0".to_string(),
        };
        Reply::Answer(429, vec![("Retry-After", after)], "slow down".into())
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path(), &url);
    outbox.enqueue(&event(0)).unwrap();
    // The second answer asks for 2700 s, more than max_backoff: an incident
    // queued behind this event must not wait that long. The third asks for
    // none at all: resending at once, over and over, is not a retry policy.
    let options = DeliveryOptions {
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(2000),
        ..options()
    };
    let client = delivery::http_client(&options).unwrap();
    for expected_s in [1800.0, 2000.0, 60.0] {
        let pending = outbox.head(&url).unwrap().unwrap();
        let attempt = delivery::post(&client, &endpoint(&url), &pending, &options).await;
        assert_eq!(attempt.status, Some(429));
        let before = now_unix();
        delivery::settle(&outbox, &endpoint(&url), &pending, &attempt, &options).unwrap();
        let next = outbox.head(&url).unwrap().unwrap().next_attempt_at;
        // Seconds are exact; an HTTP date has one-second resolution.
        assert!(
            (next - before - expected_s).abs() < 3.0,
            "next attempt in {} s, expected {expected_s}",
            next - before
        );
    }
}

#[tokio::test]
async fn a_device_clock_a_day_behind_signs_with_the_receivers_time_after_a_401() {
    // A Pi booted to the time it saved before a day without power, with no
    // network time: the receiver refuses the stale signature, in an answer
    // dated by its own clock. The event goes again at once, signed with the
    // receiver's time, and so do the next ones; when the device's clock is
    // right again (here: a 401 dated by it), it signs with its own.
    let day = 86_400;
    let dated = |ahead: u64| {
        vec![(
            "Date",
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(ahead)),
        )]
    };
    let (url, seen, _) = scripted_server(Arc::new(move |n| match n {
        0 => Reply::Answer(401, dated(day), "webhook-timestamp is stale".into()),
        3 => Reply::Answer(401, dated(0), "webhook-timestamp is ahead".into()),
        _ => ok(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    for i in 0..4 {
        outbox.enqueue(&event(i)).unwrap();
    }
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(
        ids(&seen),
        [
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e1",
            "tower-7-e2",
            "tower-7-e2",
            "tower-7-e3"
        ]
    );
    let seen = seen.lock().unwrap().clone();
    let ahead: Vec<i64> = seen
        .iter()
        .map(|s| ((s.timestamp - now_unix() as i64) as f64 / day as f64).round() as i64)
        .collect();
    assert_eq!(
        ahead,
        [0, 1, 1, 1, 0, 0],
        "days ahead of the device's clock"
    );
    // The retries went at once: neither 401 counts as a failed attempt.
    assert_eq!(outbox.stats().unwrap().failed_attempts, 0);
}

#[tokio::test]
async fn a_redirect_is_retried_not_followed_and_says_where_it_leads() {
    let (url, seen, _) = scripted_server(Arc::new(|_| {
        Reply::Answer(
            308,
            vec![("Location", "/hook/?token=s3cret".to_string())],
            String::new(),
        )
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path(), &url);
    outbox.enqueue(&event(0)).unwrap();
    let client = delivery::http_client(&options()).unwrap();
    let pending = outbox.head(&url).unwrap().unwrap();
    let attempt = delivery::post(&client, &endpoint(&url), &pending, &options()).await;
    assert!(
        matches!(attempt.outcome, Outcome::Retry { .. }),
        "{attempt:?}"
    );
    // Where it leads, resolved against the configured URL, secrets hidden:
    // the line the journal and `test-alert` show.
    let shown = attempt.describe();
    let target = format!("{}/?token=***", url);
    assert!(
        shown.contains(&format!("redirects to {target}")) && !shown.contains("s3cret"),
        "{shown}"
    );
    delivery::settle(&outbox, &endpoint(&url), &pending, &attempt, &options()).unwrap();
    // Kept, and not sent on to the Location: the one request is the POST to
    // the configured URL.
    assert_eq!(
        outbox.head(&url).unwrap().unwrap().event.id,
        pending.event.id
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn a_webhook_that_cannot_be_reached_is_logged_without_its_token() {
    // A port nothing listens on: the link down, as the journal shows it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook?token=s3cret");
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path(), &url);
    outbox.enqueue(&event(0)).unwrap();
    let client = delivery::http_client(&options()).unwrap();
    let pending = outbox.head(&url).unwrap().unwrap();
    let attempt = delivery::post(&client, &endpoint(&url), &pending, &options()).await;
    let shown = attempt.describe();
    assert!(
        attempt.status.is_none() && shown.contains("error"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[tokio::test]
async fn a_410_disables_the_endpoint_for_good() {
    let (url, seen, _) =
        scripted_server(Arc::new(|_| Reply::Answer(410, vec![], "gone".into()))).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    outbox.enqueue(&event(1)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(ids(&seen), ["tower-7-e0"]);
    drop(outbox);
    // Persisted: after a restart nothing is sent, nor newly enqueued.
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    assert!(outbox.disabled_reason(&url).unwrap().is_some());
    outbox.enqueue(&event(2)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(ids(&seen).len(), 1);
    assert_eq!(outbox.stats().unwrap().endpoints_disabled, 1);
}

/// `wildfire-watch test-alert --config config`, run to its end.
async fn test_alert(config: PathBuf) -> std::process::Output {
    let binary = env!("CARGO_BIN_EXE_wildfire-watch");
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .args(["test-alert", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn events_no_webhook_could_take_go_out_once_test_alert_re_enables_it() {
    // The receiver answers 410 once (a misconfigured route), then is fixed.
    let (url, seen, _) = scripted_server(Arc::new(|n| {
        if n == 0 {
            Reply::Answer(410, vec![], "gone".into())
        } else {
            ok()
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &url);
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert!(outbox.disabled_reason(&url).unwrap().is_some());
    // A fire while the only webhook is disabled: kept, not deleted.
    outbox.enqueue(&event(1)).unwrap();
    assert_eq!(outbox.stats().unwrap().pending_events, 2);

    let test_alert = test_alert(config).await;
    let stdout = String::from_utf8_lossy(&test_alert.stdout);
    assert!(test_alert.status.success(), "{stdout}");
    assert!(stdout.contains("re-enabled"), "{stdout}");
    deliver_all(&outbox, &url, options()).await;

    let ids = ids(&seen);
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[0], "tower-7-e0");
    assert!(ids[1].starts_with("tower-7-test"), "{ids:?}");
    // The test event is not sent twice; both fires go, in order.
    assert_eq!(ids[2..], ["tower-7-e0", "tower-7-e1"]);
    assert_eq!(outbox.stats().unwrap().pending_events, 0);
}

#[tokio::test]
async fn test_alert_finds_a_size_limit_on_the_way_before_a_fire_does() {
    // A firewall in front of the receiver that answers 403 to any body over
    // 8 KB (AWS WAF's common rule set): test-alert fails, as the first
    // alert with its picture would, where a test of a few hundred bytes
    // passed.
    let (url, seen, _) = scripted_server(Arc::new(|_| {
        Reply::Answer(403, vec![], "<html>403 Forbidden</html>".into())
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &url);
    let test_alert = test_alert(config).await;
    let stdout = String::from_utf8_lossy(&test_alert.stdout);
    assert_eq!(test_alert.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("403"), "{stdout}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].body.len() > 120_000, "{} bytes", seen[0].body.len());
    assert!(seen[0].signature_ok);
}

#[tokio::test]
async fn a_retry_set_before_the_clock_stepped_back_does_not_hold_the_queue() {
    let (url, seen, _) = scripted_server(Arc::new(|_| ok())).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    outbox.enqueue(&event(1)).unwrap();
    // A retry 10 s ahead, set while the clock ran three days fast; network
    // time has since stepped it back.
    let head = outbox.head(&url).unwrap().unwrap();
    let three_days = 3.0 * 86_400.0;
    outbox
        .mark_failed(&url, head.seq, now_unix() + three_days + 10.0, "503")
        .unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(ids(&seen), ["tower-7-e0", "tower-7-e1"]);
    assert_eq!(outbox.stats().unwrap().delivered, 2);
}

#[tokio::test]
async fn a_short_retry_is_not_stretched_by_a_step_back_under_max_backoff() {
    let (url, seen, arrived) = scripted_server(Arc::new(|n| match n {
        0 => Reply::Answer(503, vec![("Retry-After", "2".into())], "busy".into()),
        _ => ok(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    let options = DeliveryOptions {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(900),
        ..options()
    };
    let worker = tokio::spawn(deliver_all_owned(outbox.clone(), url.clone(), options));
    arrived.notified().await;
    // Once the worker has stored its 2-s retry, the clock steps back 800 s:
    // the stored time is now 802 s ahead, under max_backoff, so only the
    // worker's own steady deadline keeps the retry at 2 s.
    let head = loop {
        let head = outbox.head(&url).unwrap().unwrap();
        if head.attempts > 0 {
            break head;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stepped = head.next_attempt_at + 800.0;
    let conn = rusqlite::Connection::open(dir.path().join("outbox.sqlite3")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?1 WHERE seq = ?2",
        rusqlite::params![stepped, head.seq],
    )
    .unwrap();
    // Without the steady deadline it would wait the 800 s.
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the retry waited out the step")
        .unwrap();
    assert_eq!(ids(&seen), ["tower-7-e0", "tower-7-e0"]);
    assert_eq!(outbox.stats().unwrap().delivered, 1);
}

async fn deliver_all_owned(outbox: Arc<Outbox>, url: String, options: DeliveryOptions) {
    deliver_all(&outbox, &url, options).await
}

#[tokio::test]
async fn an_incident_refused_as_too_large_goes_again_without_its_picture() {
    // Request 0: the incident with its snapshot, refused (an Express
    // receiver's default JSON limit is 100 KB); 1: the same id without the
    // picture, taken; 2: an event with no picture to take out, refused.
    let (url, seen, _) = scripted_server(Arc::new(|n| match n {
        0 | 2 => Reply::Answer(413, vec![], "request entity too large".into()),
        _ => ok(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    let picture = "A".repeat(120_000);
    outbox
        .enqueue(&OutgoingEvent {
            body: format!(
                "{{\"type\":\"incident.started\",\"id\":\"tower-7-e0\",\"snapshot\":{{\"data\":\"{picture}\"}}}}"
            ),
            ..event(0)
        })
        .unwrap();
    outbox.enqueue(&event(1)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(ids(&seen), ["tower-7-e0", "tower-7-e0", "tower-7-e1"]);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.signature_ok));
    let resent: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(resent["type"], "incident.started");
    assert!(resent["snapshot"].is_null(), "{resent}");
    assert!(
        resent["snapshot_error"].as_str().unwrap().contains("413"),
        "{resent}"
    );
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.delivered, stats.rejected), (1, 1));
}

#[tokio::test]
async fn an_incident_refused_for_good_with_its_picture_goes_again_without_it() {
    // A receiver that caps the body's size and answers 400 (Go's
    // MaxBytesReader), or refuses the snapshot with 422: each incident goes
    // again without its picture and is taken; an event with no picture to
    // take out is dropped as before.
    let (url, seen, _) = scripted_server(Arc::new(|n| match n {
        0 | 4 => Reply::Answer(400, vec![], "http: request body too large".into()),
        2 => Reply::Answer(422, vec![], "snapshot: invalid".into()),
        _ => ok(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    let picture = "A".repeat(20_000);
    for i in 0..2 {
        outbox
            .enqueue(&OutgoingEvent {
                body: format!(
                    "{{\"type\":\"incident.started\",\"id\":\"tower-7-e{i}\",\"snapshot\":{{\"data\":\"{picture}\"}}}}"
                ),
                ..event(i)
            })
            .unwrap();
    }
    outbox.enqueue(&event(2)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(
        ids(&seen),
        [
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e1",
            "tower-7-e1",
            "tower-7-e2"
        ]
    );
    let seen = seen.lock().unwrap().clone();
    for (resent, status) in [(&seen[1], "400"), (&seen[3], "422")] {
        let resent: serde_json::Value = serde_json::from_str(&resent.body).unwrap();
        assert!(resent["snapshot"].is_null(), "{resent}");
        assert!(
            resent["snapshot_error"].as_str().unwrap().contains(status),
            "{resent}"
        );
    }
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.delivered, stats.rejected), (2, 1));
}

#[tokio::test]
async fn an_incident_that_times_out_three_times_goes_on_without_its_picture() {
    // A link too slow to carry the picture within response_timeout_s: the
    // first three attempts get no answer, then the receiver answers.
    let (url, seen, _) = scripted_server(Arc::new(|n| {
        if n < delivery::TIMEOUTS_BEFORE_NO_PICTURE as usize {
            Reply::Silent
        } else {
            ok()
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    let picture = "A".repeat(120_000);
    outbox
        .enqueue(&OutgoingEvent {
            body: format!(
                "{{\"type\":\"incident.started\",\"id\":\"tower-7-e0\",\"snapshot\":{{\"data\":\"{picture}\"}}}}"
            ),
            ..event(0)
        })
        .unwrap();
    outbox.enqueue(&event(1)).unwrap();
    let options = DeliveryOptions {
        response_timeout: Duration::from_millis(300),
        ..options()
    };
    deliver_all(&outbox, &url, options).await;
    assert_eq!(
        ids(&seen),
        [
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e1"
        ]
    );
    let seen = seen.lock().unwrap().clone();
    let taken: serde_json::Value = serde_json::from_str(&seen[3].body).unwrap();
    assert!(taken["snapshot"].is_null(), "{taken}");
    assert!(
        taken["snapshot_error"]
            .as_str()
            .unwrap()
            .contains("response_timeout_s"),
        "{taken}"
    );
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.delivered, stats.failed_attempts), (2, 2));
}

#[tokio::test]
async fn updates_of_a_growing_fire_count_their_timeouts_together() {
    // A link too slow for a picture, and a fire that grows: its next update
    // is stored while the one out times out, and drops it. The timeouts
    // count for the incident, so the third takes the picture out of the
    // update then at the head, and the receiver gets the fire's news.
    let update = |n: usize| {
        OutgoingEvent {
        id: format!("tower-7-u{n}"),
        body: format!(
            "{{\"type\":\"incident.updated\",\"id\":\"tower-7-u{n}\",\"snapshot\":{{\"data\":\"{}\"}}}}",
            "A".repeat(50_000)
        ),
        incident: Some(IncidentRef {
            id: "tower-7-smoke".into(),
            phase: IncidentPhase::Updated,
        }),
        ..event(n)
    }
    };
    // The outbox, opened once the server's URL is known.
    let opened: Arc<std::sync::OnceLock<Arc<Outbox>>> = Arc::default();
    let grows = {
        let opened = opened.clone();
        move |n: usize| {
            // The fire grows while the second attempt is out.
            if n == 1 {
                opened.get().unwrap().enqueue(&update(2)).unwrap();
            }
            if n < delivery::TIMEOUTS_BEFORE_NO_PICTURE as usize {
                Reply::Silent
            } else {
                ok()
            }
        }
    };
    let (url, seen, _) = scripted_server(Arc::new(grows)).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = opened.get_or_init(|| Arc::new(open_outbox(dir.path(), &url)));
    outbox.enqueue(&update(1)).unwrap();
    let options = DeliveryOptions {
        response_timeout: Duration::from_millis(300),
        ..options()
    };
    deliver_all(outbox, &url, options).await;
    assert_eq!(
        ids(&seen),
        ["tower-7-u1", "tower-7-u1", "tower-7-u2", "tower-7-u2"]
    );
    let seen = seen.lock().unwrap().clone();
    let taken: serde_json::Value = serde_json::from_str(&seen[3].body).unwrap();
    assert!(
        taken["snapshot"].is_null(),
        "the picture went again ({} bytes)",
        seen[3].body.len()
    );
}

#[tokio::test]
async fn a_receiver_that_stored_the_picture_after_all_is_not_counted_as_refusing() {
    // Three timeouts take the picture out; the receiver had stored the
    // first attempt, answering too late, and refuses the changed body under
    // the same id with 409: it holds the alert, with its picture.
    let (url, seen, _) = scripted_server(Arc::new(|n| {
        if n < delivery::TIMEOUTS_BEFORE_NO_PICTURE as usize {
            Reply::Silent
        } else {
            Reply::Answer(409, vec![], "id reused with another body".into())
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    let picture = "A".repeat(1_000);
    outbox
        .enqueue(&OutgoingEvent {
            body: format!(
                "{{\"type\":\"incident.started\",\"id\":\"tower-7-e0\",\"snapshot\":{{\"data\":\"{picture}\"}}}}"
            ),
            ..event(0)
        })
        .unwrap();
    let options = DeliveryOptions {
        response_timeout: Duration::from_millis(300),
        ..options()
    };
    deliver_all(&outbox, &url, options).await;
    assert_eq!(ids(&seen).len(), 4);
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.delivered, stats.rejected), (1, 0));
}

#[tokio::test]
async fn a_refused_event_is_dropped_but_an_endpoint_that_cannot_take_any_is_retried() {
    // 401 is what a receiver answers when the device's clock is off after a
    // boot without network time: dropping on it would lose every alert.
    let (url, seen, _) = scripted_server(Arc::new(|n| match n {
        0 => Reply::Answer(408, vec![], String::new()),
        1 => Reply::Answer(425, vec![], String::new()),
        2 => Reply::Answer(429, vec![], String::new()),
        3 => Reply::Answer(401, vec![], "timestamp too old".into()),
        4 => Reply::Answer(403, vec![], String::new()),
        5 => Reply::Answer(404, vec![], String::new()),
        6 => Reply::Answer(400, vec![], "bad".into()),
        _ => ok(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    outbox.enqueue(&event(1)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    assert_eq!(
        ids(&seen),
        [
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e0",
            "tower-7-e1"
        ]
    );
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.rejected, stats.delivered), (1, 1));
    assert_eq!(stats.failed_attempts, 6);
}

#[tokio::test]
async fn an_endless_answer_is_cut_off_and_its_status_counts() {
    let (url, _, _) = scripted_server(Arc::new(|_| Reply::Endless)).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    let pending = outbox.head(&url).unwrap().unwrap();
    let client = delivery::http_client(&options()).unwrap();
    let attempt = delivery::post(&client, &endpoint(&url), &pending, &options()).await;
    assert_eq!(attempt.outcome, Outcome::Delivered);
    assert_eq!(attempt.body_preview.len(), delivery::BODY_PREVIEW_BYTES);
    assert!(
        attempt
            .error
            .as_deref()
            .unwrap_or("")
            .contains("cut off at 4096 bytes"),
        "{attempt:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_retried() {
    let (url, seen, _) =
        scripted_server(Arc::new(|n| if n == 0 { Reply::Silent } else { ok() })).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    outbox.enqueue(&event(0)).unwrap();
    let options = DeliveryOptions {
        response_timeout: Duration::from_millis(300),
        ..options()
    };
    let client = delivery::http_client(&options).unwrap();
    let pending = outbox.head(&url).unwrap().unwrap();
    let attempt = delivery::post(&client, &endpoint(&url), &pending, &options).await;
    assert_eq!(attempt.outcome, Outcome::Retry { after: None });
    assert!(
        attempt
            .error
            .as_deref()
            .unwrap_or("")
            .contains("response_timeout_s"),
        "{attempt:?}"
    );
    delivery::settle(&outbox, &endpoint(&url), &pending, &attempt, &options).unwrap();
    deliver_all(&outbox, &url, options).await;
    assert_eq!(ids(&seen), ["tower-7-e0", "tower-7-e0"]);
    assert_eq!(outbox.stats().unwrap().delivered, 1);
}

#[tokio::test]
async fn the_worker_and_other_processes_share_the_outbox_without_failing() {
    // `deliver` and `test-alert` run beside the service: each opens the
    // outbox file on its own connection, stores an event and ends. Here a
    // thread does that, over and over, while the worker delivers.
    const EVENTS: usize = 450;
    let (url, seen, _) = scripted_server(Arc::new(|_| ok())).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    let new_events = Arc::new(Notify::new());
    let worker = tokio::spawn(delivery::run(
        OutboxHandle::spawn(outbox.clone()).unwrap(),
        vec![endpoint(&url)],
        options(),
        new_events.clone(),
        Until::Forever,
    ));
    // Three at a time, as `deliver`, `test-alert` and a script might be.
    let other_processes: Vec<_> = (0..3)
        .map(|p| {
            let (dir, url) = (dir.path().to_path_buf(), url.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                for i in (p..EVENTS).step_by(3) {
                    let outbox = Outbox::open(
                        &dir.join("outbox.sqlite3"),
                        vec![url.clone()],
                        1000,
                        Duration::from_secs(3600),
                    )?;
                    outbox.enqueue(&event(i))?;
                    outbox.expire_old()?;
                }
                Ok(())
            })
        })
        .collect();
    for other in other_processes {
        other
            .await
            .unwrap()
            .expect("another process failed on the shared outbox");
    }
    // The server records a request before its answer reaches the worker,
    // so the last event is seen a moment before the worker marks it
    // delivered: wait for both, or the check below races the worker (it
    // did on CI, 1 of 450 still pending).
    let all_settled =
        || seen.lock().unwrap().len() >= EVENTS && outbox.stats().unwrap().pending_events == 0;
    tokio::time::timeout(PATIENCE, async {
        while !all_settled() && !worker.is_finished() {
            new_events.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("not every event was delivered");
    assert!(
        !worker.is_finished(),
        "the worker stopped: {:?}",
        worker.await
    );
    worker.abort();
    let mut delivered = ids(&seen);
    delivered.sort_by_key(|id| id[9..].parse::<usize>().unwrap());
    let expected: Vec<String> = (0..EVENTS).map(|i| event(i).id).collect();
    assert_eq!(delivered, expected, "each event exactly once");
    assert_eq!(outbox.stats().unwrap().pending_events, 0);
}

/// Writes a configuration for the real binary pointing at `url`.
fn write_config(dir: &Path, url: &str) -> PathBuf {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let config = dir.join("wildfire-watch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[device]
id = "tower-7"
name = "Tower 7"

[[webhooks]]
url = "{url}"
secret_files = ["{secret}"]

[outbox]
path = "{outbox}"

[delivery]
response_timeout_s = 600.0
initial_backoff_s = 0.02
max_backoff_s = 0.1
"#,
            secret = secret.display(),
            outbox = dir.join("outbox.sqlite3").display(),
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn a_sender_killed_mid_delivery_loses_nothing_and_resends_under_the_same_id() {
    // Request 1 (the second event's first attempt) is read and never answered:
    // the sender is then killed while it waits.
    let (url, seen, arrived) =
        scripted_server(Arc::new(|n| if n == 1 { Reply::Silent } else { ok() })).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &url);
    {
        let outbox = open_outbox(dir.path(), &url);
        for i in 0..4 {
            outbox.enqueue(&event(i)).unwrap();
        }
    }
    let binary = env!("CARGO_BIN_EXE_wildfire-watch");
    let mut sender = std::process::Command::new(binary)
        .args(["deliver", "--config"])
        .arg(&config)
        .spawn()
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while seen.lock().unwrap().len() < 2 {
            arrived.notified().await;
        }
    })
    .await
    .expect("the sender never reached the second event");
    sender.kill().unwrap(); // SIGKILL
    sender.wait().unwrap();

    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .args(["deliver", "--config"])
            .arg(&config)
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());

    assert_eq!(
        ids(&seen),
        [
            "tower-7-e0",
            "tower-7-e1",
            "tower-7-e1",
            "tower-7-e2",
            "tower-7-e3"
        ]
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[1].body, seen[2].body);
    assert!(seen.iter().all(|s| s.signature_ok));
    let outbox = open_outbox(dir.path(), &url);
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.pending_events, stats.delivered), (0, 4));
}

/// Three events delivered by `run`'s worker to a receiver following
/// `script`, while the outbox refuses every write (a full SD card), then
/// again once it takes writes. Returns the outbox once nothing is pending
/// (with the folder that holds it), and the ids the receiver saw while
/// writes were refused.
async fn deliver_three_on_a_full_disk(
    script: common::Script,
    events: [OutgoingEvent; 3],
) -> (Arc<Outbox>, tempfile::TempDir, Vec<String>) {
    let (url, seen, _) = scripted_server(script).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    for e in &events {
        outbox.enqueue(e).unwrap();
    }
    outbox.refuse_writes(true);
    let worker = tokio::spawn(delivery::run(
        OutboxHandle::spawn(outbox.clone()).unwrap(),
        vec![endpoint(&url)],
        options(),
        Arc::new(Notify::new()),
        Until::Forever,
    ));
    let mut polls = 0;
    while ids(&seen).len() < 3 {
        polls += 1;
        assert!(polls < 12_000, "delivery stood still: {:?}", ids(&seen));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A few more turns of the worker (it polls every second): nothing goes
    // again while nothing can be recorded.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let while_full = ids(&seen);
    assert_eq!(outbox.stats().unwrap().pending_events, 3);
    outbox.refuse_writes(false);
    let mut polls = 0;
    while outbox.stats().unwrap().pending_events > 0 {
        polls += 1;
        assert!(polls < 12_000, "the settlings were never recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ids(&seen), while_full, "sent again once recorded");
    worker.abort();
    (outbox, dir, while_full)
}

#[tokio::test]
async fn with_the_disk_full_delivery_goes_on_and_sends_nothing_twice() {
    // The receiver takes everything: each stored event goes once, in
    // order, and what was taken is recorded once the disk takes writes.
    let (outbox, _dir, sent) =
        deliver_three_on_a_full_disk(Arc::new(|_| ok()), [event(0), event(1), event(2)]).await;
    assert_eq!(sent, ["tower-7-e0", "tower-7-e1", "tower-7-e2"]);
    assert_eq!(outbox.stats().unwrap().delivered, 3);
}

#[tokio::test]
async fn with_the_disk_full_a_refused_event_holds_back_nothing_and_goes_once() {
    // The receiver refuses e0 for good (400) and takes the rest: e0 is not
    // sent again, e1 and e2 go, and all three are settled once writes work.
    let (outbox, _dir, sent) = deliver_three_on_a_full_disk(
        Arc::new(|n| {
            if n == 0 {
                Reply::Answer(400, vec![], "bad".into())
            } else {
                ok()
            }
        }),
        [event(0), event(1), event(2)],
    )
    .await;
    assert_eq!(sent, ["tower-7-e0", "tower-7-e1", "tower-7-e2"]);
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.rejected, stats.delivered), (1, 2));
}

#[tokio::test]
async fn with_the_disk_full_an_incident_goes_first_and_the_rest_follow_once() {
    // An incident stored after a camera event goes first; the worker then
    // goes back to the older camera event, past the incident it holds as
    // taken in memory, and on to the newer one: none twice, none left.
    let (outbox, _dir, sent) = deliver_three_on_a_full_disk(
        Arc::new(|_| ok()),
        [camera_event(0), event(1), camera_event(2)],
    )
    .await;
    assert_eq!(sent, ["tower-7-e1", "tower-7-c0", "tower-7-c2"]);
    assert_eq!(outbox.stats().unwrap().delivered, 3);
}

#[tokio::test]
async fn after_an_outage_a_new_fire_goes_before_the_camera_events_queued_earlier() {
    // A camera that lost power again and again while the link was down left
    // 300 events; the fire that follows reaches the control room first,
    // and the camera events follow in the order they were raised.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = serve_receiver(&store).await;
    let outbox = Arc::new(open_outbox(dir.path(), &url));
    for i in 0..300 {
        outbox.enqueue(&camera_event(i)).unwrap();
    }
    outbox.enqueue(&event(300)).unwrap();
    outbox.enqueue(&camera_event(301)).unwrap();
    deliver_all(&outbox, &url, options()).await;
    let arrived = stored_ids(&store);
    let mut expected = vec!["tower-7-e300".to_string()];
    expected.extend((0..300).chain([301]).map(|i| format!("tower-7-c{i}")));
    assert_eq!(arrived, expected);
}
