//! Helpers shared by the end-to-end tests: the shared webhook secret, the
//! reference receiver in-process, a hand-written HTTP server that answers
//! webhook requests as a script says (misbehaving on purpose), and where
//! the shared datasets are; [`live`] drives the real monitor and its fake
//! camera.
#![allow(dead_code)]

pub mod live;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use wildfire_watch::outbox::now_unix;
use wildfire_watch::receiver::{self, Receiver};
use wildfire_watch::webhook::{self, Secret};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Safety limit for waits that should end much sooner; not a speed target.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// `rel` inside the shared datasets folder (`$WILDFIRE_DATASETS`, default
/// `../shared/datasets` beside the clone), or `None` where it is absent: the
/// test then returns early, saying SKIPPED on stderr. With
/// `WILDFIRE_REQUIRE_DATASETS=1` (CI, where the data is always there) an
/// absent folder panics instead, so it cannot pass as a green run.
pub fn dataset(rel: &str) -> Option<PathBuf> {
    match find_dataset(
        rel,
        std::env::var_os("WILDFIRE_DATASETS"),
        std::env::var_os("WILDFIRE_REQUIRE_DATASETS"),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) {
        Ok(Some(dir)) => Some(dir),
        Ok(None) => None,
        Err(message) => panic!("{message}"),
    }
}

/// [`dataset`] with its environment passed in: `Ok(None)` (after the
/// SKIPPED line) where it may be skipped, `Err` with what to do where it is
/// required.
pub fn find_dataset(
    rel: &str,
    datasets: Option<OsString>,
    require: Option<OsString>,
    manifest_dir: &Path,
) -> Result<Option<PathBuf>, String> {
    let dir = datasets
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../shared/datasets"))
        .join(rel);
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    if require.is_some_and(|v| v == "1") {
        return Err(format!(
            "no {}, and WILDFIRE_REQUIRE_DATASETS=1: put the shared datasets beside the clone (../shared/datasets) or set WILDFIRE_DATASETS to them",
            dir.display()
        ));
    }
    eprintln!(
        "SKIPPED: no {}: set WILDFIRE_DATASETS to the shared datasets folder to run this test",
        dir.display()
    );
    Ok(None)
}

/// The events stored by the reference receiver, in arrival order.
pub fn stored_events(store: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(store) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect()
}

/// The ids of the events stored by the reference receiver, in arrival order.
pub fn stored_ids(store: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

pub async fn start_receiver(listener: TcpListener, store: &Path) {
    let receiver = Receiver::open(store, vec![Secret::parse(SECRET).unwrap()], 1 << 20).unwrap();
    tokio::spawn(receiver::serve(listener, Arc::new(receiver)));
}

/// [`start_receiver`] on a free loopback port; returns its webhook URL.
pub async fn serve_receiver(store: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    start_receiver(listener, store).await;
    url
}

/// One request as a hand-written server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub id: String,
    pub body: String,
    pub signature_ok: bool,
    /// The signature's timestamp (0 where it is missing or not a number).
    pub timestamp: i64,
}

/// What a hand-written server does with request number `n` (0-based).
#[derive(Clone)]
pub enum Reply {
    /// Status line, extra headers, body.
    Answer(u16, Vec<(&'static str, String)>, String),
    /// Reads the request and never answers (keeps the connection open).
    Silent,
    /// Answers 200 and then sends body bytes forever.
    Endless,
    /// Reads the request and closes the connection without an answer: a
    /// receiver (or the link to it) that is down.
    Hangup,
    /// Hands the request to the reference receiver and answers what it
    /// says, after `delay` (a slow way back, so a sender can be killed
    /// between the receiver's store and its own).
    Reference(Arc<Receiver>, Duration),
}

pub type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

/// Serves `script` on a fresh loopback port; returns its URL, the requests
/// seen and a notification for each request read.
pub async fn scripted_server(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(Notify::new());
    let (seen2, arrived2) = (seen.clone(), arrived.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, arrived, script) = (seen2.clone(), arrived2.clone(), script.clone());
            tokio::spawn(async move {
                let _ = handle_scripted(stream, seen, arrived, script).await;
            });
        }
    });
    (url, seen, arrived)
}

async fn handle_scripted(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<Notify>,
    script: Script,
) -> std::io::Result<()> {
    // Read the head, then Content-Length bytes of body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    let id = header(webhook::HEADER_ID);
    let (timestamp, signature) = (
        header(webhook::HEADER_TIMESTAMP),
        header(webhook::HEADER_SIGNATURE),
    );
    let signature_ok = webhook::verify(
        &[Secret::parse(SECRET).unwrap()],
        Some(&id),
        Some(&timestamp),
        Some(&signature),
        body.as_bytes(),
        now_unix() as i64,
    )
    .is_ok();
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            id: id.clone(),
            body: body.clone(),
            signature_ok,
            timestamp: timestamp.parse().unwrap_or(0),
        });
        seen.len() - 1
    };
    arrived.notify_one();
    let reply = match script(n) {
        Reply::Reference(receiver, delay) => {
            let answer = receiver.receive(
                Some(&id),
                Some(&timestamp),
                Some(&signature),
                body.as_bytes(),
                now_unix() as i64,
            );
            tokio::time::sleep(delay).await;
            Reply::Answer(answer.status.as_u16(), vec![], answer.message)
        }
        reply => reply,
    };
    match reply {
        Reply::Answer(status, headers, body) => {
            let mut response = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                response.push_str(&format!("{k}: {v}\r\n"));
            }
            response.push_str("\r\n");
            response.push_str(&body);
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await?;
        }
        Reply::Silent => {
            // Hold the connection open until the client gives up.
            let _ = stream.read(&mut chunk).await;
        }
        Reply::Hangup => {}
        Reply::Reference(..) => unreachable!("answered above"),
        Reply::Endless => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .await?;
            let block = vec![b'x'; 64 * 1024];
            loop {
                stream.write_all(&block).await?;
            }
        }
    }
    Ok(())
}

pub fn ok() -> Reply {
    Reply::Answer(200, vec![], "ok".into())
}
