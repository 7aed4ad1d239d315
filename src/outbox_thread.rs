//! The outbox's own thread: the one place where the running monitor (and
//! `deliver`) touch SQLite, so that no async task ever waits on the disk.
//!
//! Every outbox call commits with `synchronous = FULL`, one fsync each. On an
//! SD card one fsync can take seconds (a worn card, or one busy with its own
//! garbage collection). `run` drives every camera, `/healthz`, `/metrics`,
//! delivery and the watchdog from one current-thread runtime: a call made
//! there stalls all of them for as long, and before this thread existed the
//! inference thread held the connection's lock across its own commits, so
//! even a short status read waited for them (tests/monitor.rs,
//! `a_stalled_outbox_stalls_no_camera_status_answer_or_watchdog_ping`: with
//! every commit taking 5 s, `/healthz` went unanswered and frames stopped).
//!
//! [`OutboxHandle`] sends each call, as a closure, over a channel to the
//! thread that owns the [`Outbox`]; the caller awaits the answer
//! ([`OutboxHandle::call`], from tasks), blocks for it
//! ([`OutboxHandle::call_blocking`], from the inference thread), or does not
//! wait at all ([`OutboxHandle::send`], camera events and heartbeats: the
//! thread logs what it could not store). Calls run one at a time in the
//! order they were sent, so a camera's `offline` is stored before its
//! `online` however slow the disk. The channel is unbounded, but its
//! senders are few and mostly wait for their answer: each delivery worker
//! and the inference thread have at most one call queued, cameras one per
//! offline/online change, the heartbeat one per interval.
//!
//! After each call (and every [`REFRESH`] when idle, for what `test-alert`
//! or `deliver` wrote from another process) the thread reads the outbox's
//! counters into [`OutboxFigures`], which `/healthz`, `/metrics` and the
//! heartbeat read without touching the database. It also records when its
//! current call began, so a store stuck for good shows up: see
//! [`OutboxHandle::stalled_for`]. A call that panics ends the thread: later
//! calls fail with an error that says so, and the unfinished call's time
//! keeps growing, so `run` stops feeding the watchdog and systemd restarts
//! the service.
//!
//! The [`Outbox`] keeps its own mutex, for the commands that use it directly
//! (`test-alert`, tests); in `run` the thread is its only user, so nobody
//! waits on that lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::sync::{oneshot, watch};
use tracing::error;

use crate::outbox::{Outbox, OutboxStats};

/// How often the idle thread re-reads the figures, for writes by other
/// processes.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The outbox as last read by its thread, for status answers.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxFigures {
    /// The counters, or why they could not be read.
    pub stats: Result<OutboxStats, String>,
    /// Each configured endpoint (as messages show it, secrets left out), and
    /// whether it is disabled (`410 Gone`).
    pub endpoints: Vec<(String, bool)>,
}

impl OutboxFigures {
    fn read(outbox: &Outbox) -> OutboxFigures {
        OutboxFigures {
            stats: outbox.stats().map_err(|e| format!("{e:#}")),
            endpoints: shown_endpoints(outbox),
        }
    }
}

/// Each endpoint as `/metrics` labels it, and whether it is disabled: its
/// URL without secrets, numbered where two differ only in them (one
/// receiver with a token per control room), since a scrape with two samples
/// of one label set is refused whole.
fn shown_endpoints(outbox: &Outbox) -> Vec<(String, bool)> {
    let mut shown: Vec<(String, bool)> = Vec::new();
    for (i, url) in outbox.endpoints().iter().enumerate() {
        let disabled = outbox.disabled_reason(url).ok().flatten().is_some();
        let mut label = crate::redact::shown_webhook(url);
        if shown.iter().any(|(l, _)| *l == label) {
            label = format!("{label} (webhooks[{i}])");
        }
        shown.push((label, disabled));
    }
    shown
}

/// A call on the outbox thread; what it returns, if anything, runs once the
/// figures have been refreshed after it: the answer to a waiting caller, who
/// then sees figures that include its own write.
type Call = Box<dyn FnOnce(&Outbox) -> Option<Reply> + Send>;
type Reply = Box<dyn FnOnce() + Send>;

/// Sends calls to the outbox's thread; cheap to clone. The thread ends once
/// every handle is dropped and the calls already sent have run.
#[derive(Clone)]
pub struct OutboxHandle {
    calls: mpsc::Sender<Call>,
    figures: watch::Receiver<OutboxFigures>,
    /// When the current call began, in ms since `epoch`, plus one; 0 when idle.
    busy_since: Arc<AtomicU64>,
    epoch: Instant,
}

impl OutboxHandle {
    /// Starts the thread that owns `outbox`. In `run` nothing else holds it;
    /// tests may keep a clone to look inside.
    pub fn spawn(outbox: Arc<Outbox>) -> Result<OutboxHandle> {
        let (calls, queue) = mpsc::channel::<Call>();
        let (figures_tx, figures) = watch::channel(OutboxFigures::read(&outbox));
        let busy_since = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        std::thread::Builder::new()
            .name("outbox".into())
            .spawn({
                let busy_since = busy_since.clone();
                move || loop {
                    let call = match queue.recv_timeout(REFRESH) {
                        Ok(call) => Some(call),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    busy_since.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
                    let reply = call.and_then(|call| call(&outbox));
                    figures_tx.send_replace(OutboxFigures::read(&outbox));
                    busy_since.store(0, Ordering::Relaxed);
                    if let Some(reply) = reply {
                        reply();
                    }
                }
            })
            .context("cannot start the outbox thread")?;
        Ok(OutboxHandle {
            calls,
            figures,
            busy_since,
            epoch,
        })
    }

    /// Runs `f` on the outbox thread without waiting for it. The call is
    /// lost only if the thread has died, which [`OutboxHandle::call`]
    /// reports to its callers (delivery stops, and `run` with it).
    pub fn send(&self, f: impl FnOnce(&Outbox) + Send + 'static) {
        let call: Call = Box::new(move |outbox: &Outbox| {
            f(outbox);
            None
        });
        if self.calls.send(call).is_err() {
            error!("the outbox thread has stopped: a call to it is lost");
        }
    }

    fn queue<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>> {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Box::new(move |outbox: &Outbox| {
                let answer = f(outbox);
                Some(Box::new(move || {
                    let _ = tx.send(answer);
                }) as Reply)
            }))
            .map_err(|_| stopped())?;
        Ok(rx)
    }

    /// Runs `f` on the outbox thread and awaits its result, leaving the
    /// async thread free meanwhile.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> T + Send + 'static,
    ) -> Result<T> {
        self.queue(f)?.await.map_err(|_| stopped())
    }

    /// Runs `f` on the outbox thread and blocks until it is done; for
    /// threads outside the async runtime (it panics inside one).
    pub fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> T + Send + 'static,
    ) -> Result<T> {
        self.queue(f)?.blocking_recv().map_err(|_| stopped())
    }

    /// The figures as of the thread's last call (or idle refresh).
    pub fn figures(&self) -> OutboxFigures {
        self.figures.borrow().clone()
    }

    /// How long the call the thread is running now has taken so far;
    /// `None` while it is idle.
    pub fn stalled_for(&self) -> Option<Duration> {
        match self.busy_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                Duration::from_millis(self.epoch.elapsed().as_millis() as u64 + 1)
                    .saturating_sub(Duration::from_millis(since)),
            ),
        }
    }
}

fn stopped() -> anyhow::Error {
    anyhow!("the outbox thread has stopped (a call on it panicked; see the log above): restart the service")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{now_unix, EventKind, OutgoingEvent};

    /// A fresh outbox (in a folder kept alive with it) behind its thread.
    fn spawned(endpoints: Vec<String>) -> (tempfile::TempDir, OutboxHandle) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("outbox.sqlite3"),
            endpoints,
            100,
            Duration::from_secs(3600),
        )
        .unwrap();
        (dir, OutboxHandle::spawn(Arc::new(outbox)).unwrap())
    }

    fn event(id: &str) -> OutgoingEvent {
        OutgoingEvent {
            id: id.into(),
            kind: EventKind::Camera,
            created_at: now_unix(),
            body: "{}".into(),
            incident: None,
        }
    }

    #[test]
    fn webhooks_that_differ_only_in_a_secret_get_labels_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("outbox.sqlite3"),
            vec![
                "https://cr.example/hook?token=A".into(),
                "https://cr.example/hook?token=B".into(),
            ],
            100,
            Duration::from_secs(3600),
        )
        .unwrap();
        let labels: Vec<String> = shown_endpoints(&outbox)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(
            labels,
            [
                "https://cr.example/hook?token=***",
                "https://cr.example/hook?token=*** (webhooks[1])"
            ]
        );
    }

    #[tokio::test]
    async fn calls_run_in_order_and_figures_follow_each_write() {
        let (_dir, handle) = spawned(vec!["http://a/".into()]);
        assert_eq!(handle.figures().stats.unwrap().pending_events, 0);
        // Sent without waiting, then asked: the answer comes after both.
        handle.send(|o| {
            o.enqueue(&event("offline")).unwrap();
        });
        handle.send(|o| {
            o.enqueue(&event("online")).unwrap();
        });
        let head = handle
            .call(|o| o.head("http://a/"))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(head.event.id, "offline");
        assert_eq!(handle.figures().stats.unwrap().pending_events, 2);
        handle
            .call(move |o| o.disable_endpoint("http://a/", "410 Gone"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            handle.figures().endpoints,
            [("http://a/".to_string(), true)]
        );
        assert_eq!(handle.stalled_for(), None);
    }

    /// Polls `done` every millisecond; a generous bound, not a speed target.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..60_000 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("never {what}");
    }

    #[test]
    fn a_call_in_progress_shows_how_long_it_has_run() {
        let (_dir, handle) = spawned(vec![]);
        // A call stuck until released, as one on a stalled disk.
        let (began_tx, began) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        handle.send(move |_| {
            began_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        began.recv().unwrap();
        let first = handle.stalled_for().expect("a call is running");
        eventually("grew", || handle.stalled_for().unwrap() > first);
        release.send(()).unwrap();
        eventually("idle again", || handle.stalled_for().is_none());
    }

    #[test]
    fn a_call_that_panics_stops_the_thread_and_later_calls_say_so() {
        let (_dir, handle) = spawned(vec![]);
        let error = handle
            .call_blocking::<()>(|_| panic!("a bug in a call"))
            .unwrap_err();
        assert!(
            format!("{error}").contains("restart the service"),
            "{error}"
        );
        let error = handle.call_blocking(|o| o.stats()).unwrap_err();
        assert!(format!("{error}").contains("has stopped"), "{error}");
        // The call never finished: the watchdog sees it stuck.
        assert!(handle.stalled_for().is_some());
    }
}
