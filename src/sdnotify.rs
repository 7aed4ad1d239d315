//! systemd integration: the `sd_notify` datagram protocol (`READY=1`,
//! `WATCHDOG=1`, `STATUS=...`, `STOPPING=1`) and the liveness bookkeeping
//! that decides whether the watchdog may be fed.
//!
//! The protocol is one datagram to the Unix socket named by `$NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace); without that variable
//! (not under systemd, or not `Type=notify`) every call does nothing.
//!
//! [`Liveness`] holds one deadline per worker (each camera task, the
//! inference thread). A worker moves its deadline forward each time round
//! its loop, by as long as its next step may take; the watchdog is fed only
//! while no deadline has passed, so a hung grab or a hung inference stops
//! the pings and systemd restarts the service. The monitor also withholds
//! them while one outbox call has run too long (a disk stuck for good:
//! `status::OUTBOX_LIMIT`).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sends `state` (newline-separated `KEY=value` lines) to systemd. Returns
/// `false` when not running under a notify-aware service manager.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    notify_to(&path, state)?;
    Ok(true)
}

/// Sends `state` to the notification socket `path`, without waiting: the
/// monitor calls this on its runtime's one thread, and a send that blocked
/// (the manager not reading, its queue full) stalled every camera,
/// `/healthz` and delivery with it. A message refused so is an error, which
/// the watchdog task logs; the next ping is another try.
fn notify_to(path: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// How often systemd expects `WATCHDOG=1` (`WatchdogSec=`), if it does and
/// the request is meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Per-worker deadlines (see the module docs).
pub struct Liveness {
    start: Instant,
    workers: Vec<(String, AtomicU64)>,
}

impl Liveness {
    /// One worker per name; each starts with `initial` to report.
    pub fn new(names: Vec<String>, initial: Duration) -> Liveness {
        let start = Instant::now();
        let at = initial.as_millis() as u64;
        Liveness {
            start,
            workers: names.into_iter().map(|n| (n, AtomicU64::new(at))).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Worker `index` promises to report again within `within`.
    pub fn expect_within(&self, index: usize, within: Duration) {
        let deadline = self.now_ms().saturating_add(within.as_millis() as u64);
        if let Some((_, d)) = self.workers.get(index) {
            d.store(deadline, Ordering::Relaxed);
        }
    }

    /// The workers whose deadline has passed.
    pub fn overdue(&self) -> Vec<&str> {
        let now = self.now_ms();
        self.workers
            .iter()
            .filter(|(_, d)| d.load(Ordering::Relaxed) < now)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_that_does_not_read_refuses_a_message_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let _unread = UnixDatagram::bind(&path).unwrap();
        // On a thread, so that a send that blocks fails the test, not hangs it.
        let (done, refused) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let error = (0..100_000)
                .find_map(|_| notify_to(path.as_os_str(), "WATCHDOG=1").err())
                .map(|e| e.kind());
            let _ = done.send(error);
        });
        let refused = refused
            .recv_timeout(Duration::from_secs(30))
            .expect("a send blocked on a full queue");
        assert_eq!(refused, Some(io::ErrorKind::WouldBlock));
    }

    #[test]
    fn a_worker_past_its_deadline_is_overdue() {
        let l = Liveness::new(
            vec!["cam".into(), "inference".into()],
            Duration::from_secs(60),
        );
        assert!(l.overdue().is_empty());
        l.expect_within(1, Duration::ZERO);
        // Bounded wait for the clock to move past the deadline.
        let mut polls = 0;
        while l.overdue().is_empty() {
            polls += 1;
            assert!(polls < 10_000, "the deadline never passed");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(l.overdue(), ["inference"]);
        l.expect_within(1, Duration::from_secs(60));
        assert!(l.overdue().is_empty());
    }

    #[test]
    fn notify_datagrams_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let e = notify_to(dir.path().join("absent").as_os_str(), "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
