//! The reference webhook receiver (`wildfire-watch receive`): what the tests
//! deliver to, and the specification integrators implement for their control
//! room.
//!
//! # Protocol
//!
//! The device sends each event as `POST <url>` with a JSON body
//! (`Content-Type: application/json`, bodies described in `payload.rs`) and
//! the Standard Webhooks headers (see `webhook.rs`):
//!
//! - `webhook-id`: the event's id, the same on every redelivery;
//! - `webhook-timestamp`: unix seconds when this attempt was signed;
//! - `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` over
//!   `"{id}.{timestamp}.{body}"`, one per secret the device holds.
//!
//! A receiver must:
//!
//! 1. Reject a message whose timestamp is more than 5 minutes from its own
//!    clock, or that no `v1` signature verifies for any of its secrets:
//!    `401`. (This stops a captured request from being replayed later.)
//! 2. Treat `webhook-id` as the idempotency key. Delivery is at-least-once: a
//!    crash or a lost answer makes the device send the same event again. A
//!    seen id with the same body is answered `200` (`duplicate`) and not
//!    stored again, so the device stops; a seen id with a different body is
//!    answered `409` and dropped by the device: ids are never reused. (The
//!    one different body the device sends under an id is the same incident
//!    without its picture, after the first attempts got no answer in time:
//!    a `409` to that counts as taken.)
//! 3. Answer `2xx` only once the event is stored durably: the device deletes
//!    it on a 2xx.
//! 4. Answer `410 Gone` only to stop the device sending to this URL for good;
//!    `429` or `503` with `Retry-After` to make it wait; any `5xx` to make it
//!    retry. `401`, `403`, `404`, `405`, `407` and `421` are retried too
//!    (they mean the endpoint takes nothing now: a clock, a secret, a
//!    route). `413` to an incident makes the device send it again without
//!    its snapshot. Any other `4xx` (`400`, `409`, `422`, ...) drops the
//!    event, so answer those only to an event that will never be taken.
//!
//! This receiver also answers `413` to a body over its limit, `400` to a body
//! that is not JSON and `405` to anything but POST. It accepts POST on any
//! path.
//!
//! # Store
//!
//! Each accepted event is written to `DIR/<arrival number>-<id>.json`
//! (`000001-tower-7-test-....json`, characters other than letters, digits,
//! `-`, `_` and `.` in the id replaced by `_`), exactly the bytes received.
//! `DIR/index.jsonl` lists one `{"n", "id", "sha256", "file"}` per event and is
//! what a restarted receiver reads to keep rejecting seen ids. Both are
//! synced to disk before the `200`. A last index line torn by a crash is cut
//! off when the receiver starts: its event had no `200` and comes again.
//!
//! Those syncs run on tokio's blocking threads, never on the async thread
//! that accepts connections and reads requests (`receive` runs one, as
//! the device's status endpoint does): a disk slow to sync holds up the
//! deliveries waiting for the store, not the others, nor a 401 or a 405.
//! One lock keeps the store's writes in turn; only blocking threads wait
//! on it.
//!
//! hyper is used directly rather than a framework: there is one route, and
//! hyper is already built for reqwest.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::webhook::{self, Secret};

/// Largest body accepted by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct IndexLine {
    n: u64,
    id: String,
    sha256: String,
    file: String,
}

struct Store {
    dir: PathBuf,
    index: File,
    /// id -> sha256 of the body stored under it.
    seen: HashMap<String, String>,
    count: u64,
    /// Test seam: how long each event file's sync takes extra.
    #[cfg(test)]
    sync_delay: Duration,
}

/// A receiver: its secrets and its store folder.
pub struct Receiver {
    secrets: Vec<Secret>,
    max_body_bytes: usize,
    store: Mutex<Store>,
}

/// What the receiver answered, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub message: String,
}

impl Answer {
    fn new(status: StatusCode, message: impl Into<String>) -> Answer {
        Answer {
            status,
            message: message.into(),
        }
    }
}

impl Receiver {
    /// Opens (creating) the store folder and reads the ids already seen.
    pub fn open(store: &Path, secrets: Vec<Secret>, max_body_bytes: usize) -> Result<Receiver> {
        if secrets.is_empty() {
            anyhow::bail!("the receiver needs at least one secret: pass --secret-file FILE");
        }
        std::fs::create_dir_all(store)
            .with_context(|| format!("cannot create the store folder {}", store.display()))?;
        let index_path = store.join("index.jsonl");
        let mut seen = HashMap::new();
        let mut count = 0;
        if index_path.exists() {
            repair_torn_end(&index_path)?;
            let file = File::open(&index_path)
                .with_context(|| format!("cannot read {}", index_path.display()))?;
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("cannot read {}", index_path.display()))?;
                match serde_json::from_str::<IndexLine>(&line) {
                    Ok(entry) => {
                        count = count.max(entry.n);
                        seen.insert(entry.id, entry.sha256);
                    }
                    // Only a file damaged some other way has one: a torn end
                    // was cut off above. Its event, if any, is redelivered.
                    Err(e) => warn!(
                        "{}:{}: skipping a damaged line: {e}",
                        index_path.display(),
                        i + 1
                    ),
                }
            }
        }
        let index = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&index_path)
            .with_context(|| format!("cannot write {}", index_path.display()))?;
        Ok(Receiver {
            secrets,
            max_body_bytes,
            store: Mutex::new(Store {
                dir: store.to_path_buf(),
                index,
                seen,
                count,
                #[cfg(test)]
                sync_delay: Duration::ZERO,
            }),
        })
    }

    /// Handles one delivery: headers (id, timestamp, signature), body, and the
    /// receiver's clock `now` (unix seconds).
    pub fn receive(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Answer {
        if let Err(e) = webhook::verify(&self.secrets, id, timestamp, signature, body, now) {
            return Answer::new(StatusCode::UNAUTHORIZED, e.to_string());
        }
        let id = id.unwrap_or_default();
        if serde_json::from_slice::<serde_json::Value>(body).is_err() {
            return Answer::new(StatusCode::BAD_REQUEST, "the body is not JSON");
        }
        let sha256 = hex(&Sha256::digest(body));
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        match store.seen.get(id) {
            Some(known) if *known == sha256 => return Answer::new(StatusCode::OK, "duplicate"),
            Some(_) => {
                return Answer::new(
                    StatusCode::CONFLICT,
                    format!("id {id} was already used for a different body"),
                )
            }
            None => {}
        }
        match store.write(id, &sha256, body) {
            Ok(file) => {
                info!("stored {id} as {file}");
                Answer::new(StatusCode::OK, "stored")
            }
            Err(e) => {
                warn!("cannot store {id}: {e:#}");
                Answer::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot store the event; retry later",
                )
            }
        }
    }

    /// Answers one request; the store's work (and its fsyncs) on a blocking
    /// thread.
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let answer = if request.method() != Method::POST {
            Answer::new(StatusCode::METHOD_NOT_ALLOWED, "POST events here")
        } else {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let id = header(webhook::HEADER_ID);
            let timestamp = header(webhook::HEADER_TIMESTAMP);
            let signature = header(webhook::HEADER_SIGNATURE);
            match Limited::new(request.into_body(), self.max_body_bytes)
                .collect()
                .await
            {
                Ok(body) => {
                    let body = body.to_bytes();
                    let now = crate::clock::wall_unix().floor() as i64;
                    let receiver = self.clone();
                    tokio::task::spawn_blocking(move || {
                        receiver.receive(
                            id.as_deref(),
                            timestamp.as_deref(),
                            signature.as_deref(),
                            &body,
                            now,
                        )
                    })
                    .await
                    .unwrap_or_else(|e| {
                        warn!("storing an event failed: {e}");
                        Answer::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "cannot store the event; retry later",
                        )
                    })
                }
                Err(e) if e.is::<http_body_util::LengthLimitError>() => Answer::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("bodies are limited to {} bytes", self.max_body_bytes),
                ),
                Err(e) => Answer::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                ),
            }
        };
        if !answer.status.is_success() {
            debug!("answering {}: {}", answer.status, answer.message);
        }
        let mut response = Response::new(Full::new(Bytes::from(answer.message + "\n")));
        *response.status_mut() = answer.status;
        response
    }
}

impl Store {
    /// Writes the event file and its index line, both synced; returns the file name.
    fn write(&mut self, id: &str, sha256: &str, body: &[u8]) -> Result<String> {
        let n = self.count + 1;
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(150)
            .collect();
        let name = format!("{n:06}-{safe}.json");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        {
            let mut file =
                File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
            file.write_all(body)?;
            #[cfg(test)]
            std::thread::sleep(self.sync_delay);
            file.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(&name))?;
        File::open(&self.dir)?.sync_all()?;
        let mut line = serde_json::to_string(&IndexLine {
            n,
            id: id.to_string(),
            sha256: sha256.to_string(),
            file: name.clone(),
        })?;
        line.push('\n');
        self.index.write_all(line.as_bytes())?;
        self.index.sync_data()?;
        self.count = n;
        self.seen.insert(id.to_string(), sha256.to_string());
        Ok(name)
    }
}

/// Cuts off a last line a crash left without its newline. Its event got no
/// 200, so the sender delivers it again; left in place, the next line would
/// be appended to it and both would read as one damaged line, forgetting
/// the next event too.
fn repair_torn_end(index_path: &Path) -> Result<()> {
    let bytes = std::fs::read(index_path)
        .with_context(|| format!("cannot read {}", index_path.display()))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    warn!(
        "{}: cutting off a last line torn by a crash ({} bytes); its event was not acknowledged and will be delivered again",
        index_path.display(),
        bytes.len() - whole
    );
    OpenOptions::new()
        .write(true)
        .open(index_path)
        .and_then(|file| {
            file.set_len(whole as u64)?;
            file.sync_all()
        })
        .with_context(|| {
            format!(
                "cannot repair {}: make it writable by the receiver's user",
                index_path.display()
            )
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves `receiver` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, receiver: Arc<Receiver>) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, don't spin.
                warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let receiver = receiver.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(receiver, stream).await {
                debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// Serves one connection's requests until it closes: what [`serve`] runs per
/// accepted connection, and what the fuzzer drives over an in-memory stream.
pub async fn serve_connection<S>(receiver: Arc<Receiver>, stream: S) -> hyper::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let receiver = receiver.clone();
        async move { Ok::<_, Infallible>(receiver.handle(request).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn signed(receiver: &Receiver, id: &str, body: &str, signed_at: i64, now: i64) -> Answer {
        let secret = Secret::parse(SECRET).unwrap();
        let signature = webhook::sign(&[secret], id, signed_at, body.as_bytes());
        receiver.receive(
            Some(id),
            Some(&signed_at.to_string()),
            Some(&signature),
            body.as_bytes(),
            now,
        )
    }

    /// A bare HTTP/1.1 exchange on a blocking socket: the status code, or
    /// the error (a read timeout) that came instead.
    fn exchange(addr: std::net::SocketAddr, request: &str, wait: Duration) -> std::io::Result<u16> {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(wait))?;
        stream.write_all(request.as_bytes())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0))
    }

    #[test]
    fn a_slow_disk_holds_up_only_the_delivery_being_stored() {
        let dir = tempfile::tempdir().unwrap();
        let receiver =
            Receiver::open(dir.path(), vec![Secret::parse(SECRET).unwrap()], 1024).unwrap();
        // Each event file's fsync takes 5 s more, as on a worn SD card.
        receiver.store.lock().unwrap().sync_delay = Duration::from_secs(5);
        let receiver = Arc::new(receiver);
        // Served as `receive` serves: one current-thread runtime.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = serve(listener, receiver).await;
            });
        });

        let now = crate::outbox::now_unix().floor() as i64;
        let body = "{\"a\":1}";
        let secret = Secret::parse(SECRET).unwrap();
        let signature = webhook::sign(&[secret], "e1", now, body.as_bytes());
        let post = format!(
            "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nwebhook-id: e1\r\nwebhook-timestamp: {now}\r\nwebhook-signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let stored = std::thread::spawn(move || exchange(addr, &post, Duration::from_secs(120)));
        // Wait (bounded) until its event file is written and being synced.
        let tmp = dir.path().join(".000001-e1.json.tmp");
        let mut polls = 0;
        while !tmp.exists() {
            polls += 1;
            assert!(polls < 12_000, "the event was never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Meanwhile another request is answered: not stalled behind the 5 s
        // sync. (1 s is the deadline that shows it, not a speed target.)
        let get = "GET /hook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        match exchange(addr, get, Duration::from_secs(1)) {
            Ok(status) => assert_eq!(status, 405),
            Err(e) => panic!("no answer to a GET while an event was being synced: {e}"),
        }
        assert!(
            tmp.exists(),
            "the sync ended before the GET's answer: no proof"
        );
        assert_eq!(stored.join().unwrap().unwrap(), 200);
        assert!(dir.path().join("000001-e1.json").exists());
    }

    #[test]
    fn a_torn_index_line_is_repaired_and_swallows_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || Receiver::open(dir.path(), vec![Secret::parse(SECRET).unwrap()], 1024).unwrap();
        let now = 1_700_000_000;
        {
            let r = open();
            assert_eq!(signed(&r, "e1", "{\"a\":1}", now, now).message, "stored");
            assert_eq!(signed(&r, "e2", "{\"a\":2}", now, now).message, "stored");
        }
        // A crash while writing e3's index line: half of it is on disk.
        let index = dir.path().join("index.jsonl");
        let mut file = OpenOptions::new().append(true).open(&index).unwrap();
        file.write_all(b"{\"n\":3,\"id\":\"e3\",\"sha").unwrap();
        drop(file);
        {
            let r = open();
            // e3 got no 200, so the sender delivers it again.
            assert_eq!(signed(&r, "e3", "{\"a\":3}", now, now).message, "stored");
            assert_eq!(signed(&r, "e4", "{\"a\":4}", now, now).message, "stored");
        }
        let r = open();
        for (id, body) in [("e1", 1), ("e2", 2), ("e3", 3), ("e4", 4)] {
            assert_eq!(
                signed(&r, id, &format!("{{\"a\":{body}}}"), now, now),
                Answer::new(StatusCode::OK, "duplicate"),
                "{id} was forgotten"
            );
        }
        let text = std::fs::read_to_string(&index).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn stores_once_and_remembers_ids_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || Receiver::open(dir.path(), vec![Secret::parse(SECRET).unwrap()], 1024).unwrap();
        let now = 1_700_000_000;
        {
            let r = open();
            assert_eq!(signed(&r, "e/1", "{\"a\":1}", now, now).message, "stored");
            assert_eq!(signed(&r, "e2", "{\"a\":2}", now, now).message, "stored");
        }
        let r = open();
        // A redelivery after the restart: 200, not stored again.
        assert_eq!(
            signed(&r, "e/1", "{\"a\":1}", now + 60, now + 60),
            Answer::new(StatusCode::OK, "duplicate")
        );
        // The same id with another body: refused.
        assert_eq!(
            signed(&r, "e2", "{\"a\":3}", now, now).status,
            StatusCode::CONFLICT
        );
        assert_eq!(signed(&r, "e3", "{\"a\":3}", now, now).message, "stored");
        // Replayed outside the tolerance: refused.
        assert_eq!(
            signed(&r, "e4", "{}", now - 301, now).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            signed(&r, "e5", "not json", now, now).status,
            StatusCode::BAD_REQUEST
        );
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "000001-e_1.json",
                "000002-e2.json",
                "000003-e3.json",
                "index.jsonl"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("000001-e_1.json")).unwrap(),
            "{\"a\":1}"
        );
    }
}
