//! Speed of the outbox's choice of the next event a webhook is owed, which
//! every turn of delivery makes, at the default bound of 10,000 undelivered
//! events: camera events queued through a long outage with one fire among
//! them (found first), or none. Run: `cargo bench --bench outbox`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use wildfire_watch::outbox::{now_unix, EventKind, Outbox, OutgoingEvent};

/// The default `[outbox] max_events`.
const BACKLOG: usize = 10_000;

fn event(id: String, kind: EventKind) -> OutgoingEvent {
    OutgoingEvent {
        // A camera event's body is about 300 bytes; 1 KB stands for it
        // with room to spare.
        body: format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat(1000)),
        id,
        kind,
        created_at: now_unix(),
        incident: None,
    }
}

/// An outbox holding `BACKLOG - 1` camera events and, when `fire`, an
/// incident stored after all of them.
fn backlog(dir: &std::path::Path, fire: bool) -> Outbox {
    let outbox = Outbox::open(
        &dir.join("outbox.sqlite3"),
        vec!["http://a/".into()],
        BACKLOG as u32,
        Duration::from_secs(3600),
    )
    .unwrap();
    for i in 0..BACKLOG - 1 {
        outbox
            .enqueue(&event(format!("c{i}"), EventKind::Camera))
            .unwrap();
    }
    if fire {
        outbox
            .enqueue(&event("fire".into(), EventKind::Incident))
            .unwrap();
    }
    outbox
}

fn bench_head(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbox_head_at_10000");
    for (name, fire) in [
        ("fire_behind_camera_events", true),
        ("camera_events_only", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let outbox = backlog(dir.path(), fire);
        let first = if fire { "fire" } else { "c0" };
        assert_eq!(outbox.head("http://a/").unwrap().unwrap().event.id, first);
        group.bench_function(name, |b| {
            b.iter(|| outbox.head(black_box("http://a/")).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_head);
criterion_main!(benches);
