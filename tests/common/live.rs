//! The live monitor as the end-to-end tests drive it: a fake snapshot camera
//! served by the test (Basic or Digest, frames chosen per request, able to
//! vanish and come back), the monitor's configuration file, the real binary
//! (`wildfire-watch run`) with its status endpoint, and bounded waits.
//! Shared by tests/monitor.rs and tests/fault_campaign.rs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::Digest as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{stored_events, PATIENCE, SECRET};
use wildfire_watch::camera::digest;

pub const USER: &str = "wildfire";
pub const PASSWORD: &str = "jirisan-west-1";

pub fn fixture_frame(i: usize) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hillside")
        .join(format!("frame_{i:04}.jpg"));
    std::fs::read(path).unwrap()
}

/// A small JPEG of fixture frame `i` (cheap to score, for tests that need no
/// detection).
pub fn small_frame(i: usize) -> Vec<u8> {
    let image = image::load_from_memory(&fixture_frame(i))
        .unwrap()
        .resize_exact(160, 90, image::imageops::FilterType::Triangle)
        .into_rgb8();
    wildfire_watch::synth::encode_jpeg(&image)
}

/// `jpeg` with one pixel set from `n`: the same picture to the eye (and to
/// the detector), but not the same to the last pixel, which the monitor
/// skips as a repeat (a cached snapshot) without scoring it.
pub fn with_pixel_changed(jpeg: &[u8], n: usize) -> Vec<u8> {
    let mut image = image::load_from_memory(jpeg).unwrap().into_rgb8();
    let x = (n as u32) % image.width();
    image.put_pixel(x, 0, image::Rgb([(n % 251) as u8, 255, 0]));
    wildfire_watch::synth::encode_jpeg(&image)
}

/// What the camera answers to authorised request `n`.
pub type Frames = Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync>;

#[derive(Clone, Copy, PartialEq)]
pub enum Auth {
    Basic,
    /// Digest MD5 with `qop=auth`, as Hikvision asks.
    Digest,
    /// RFC 7616 section 3.7: two challenges, SHA-256 first, then MD5 for
    /// older clients; an answer to either is accepted.
    DigestSha256First,
    /// Digest MD5 that declares the first nonce it sees answered stale
    /// (`stale=true`, a new nonce), as a camera does whose nonce expired
    /// between its challenge and the client's answer.
    DigestStaleOnce,
}

/// A snapshot camera: answers every GET with the JPEG `frames(n)` gives for
/// authorised request `n`, after checking Basic or Digest credentials.
pub struct FakeCamera {
    addr: std::net::SocketAddr,
    state: Arc<CameraState>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// What the camera's connections share.
pub struct CameraState {
    auth: Auth,
    frames: Frames,
    /// Authorised requests answered with a frame.
    served: AtomicUsize,
    /// Requests answered with 401 and a challenge.
    challenged: AtomicUsize,
    /// Which nonce is current: `{NONCE}{generation}`.
    nonce_generation: AtomicUsize,
    /// The `algorithm` of each accepted Digest answer, in order.
    algorithms: Mutex<Vec<String>>,
}

impl FakeCamera {
    pub async fn start(
        auth: Auth,
        frames: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut camera = FakeCamera {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(CameraState {
                auth,
                frames: Arc::new(frames),
                served: AtomicUsize::new(0),
                challenged: AtomicUsize::new(0),
                nonce_generation: AtomicUsize::new(0),
                algorithms: Mutex::new(Vec::new()),
            }),
            server: None,
        };
        camera.serve(listener);
        camera
    }

    pub fn url(&self) -> String {
        format!(
            "http://{}/ISAPI/Streaming/channels/101/picture?snapShotImageType=JPEG",
            self.addr
        )
    }

    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    pub fn challenged(&self) -> usize {
        self.state.challenged.load(Ordering::SeqCst)
    }

    pub fn algorithms(&self) -> Vec<String> {
        self.state.algorithms.lock().unwrap().clone()
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        self.server = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, &state).await;
                });
            }
        }));
    }

    /// The camera disappears: connections are refused.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// The camera comes back on the same address.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

const NONCE: &str = "4e6f6e6365466f7254657374696e67";
const REALM: &str = "IP Camera(C1234)";
const OPAQUE: &str = "0a1b";

async fn answer(mut stream: TcpStream, state: &CameraState) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let authorization = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    let nonce = format!("{NONCE}{}", state.nonce_generation.load(Ordering::SeqCst));
    let offered: &[&str] = match state.auth {
        Auth::Basic => &[],
        Auth::Digest | Auth::DigestStaleOnce => &["MD5"],
        Auth::DigestSha256First => &["SHA-256", "MD5"],
    };
    let mut stale = false;
    let authorised = match (state.auth, authorization) {
        (Auth::Basic, Some(a)) => {
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
            a == format!("Basic {expected}")
        }
        (_, Some(a)) => match digest_ok(&a, &target, &nonce, offered) {
            Some(algorithm) => {
                if state.auth == Auth::DigestStaleOnce
                    && state.nonce_generation.load(Ordering::SeqCst) == 0
                {
                    // Right credentials, but this nonce has just expired.
                    state.nonce_generation.fetch_add(1, Ordering::SeqCst);
                    stale = true;
                    false
                } else {
                    state.algorithms.lock().unwrap().push(algorithm);
                    true
                }
            }
            None => false,
        },
        (_, None) => false,
    };
    if !authorised {
        state.challenged.fetch_add(1, Ordering::SeqCst);
        let nonce = format!("{NONCE}{}", state.nonce_generation.load(Ordering::SeqCst));
        let challenges: Vec<String> = match state.auth {
            Auth::Basic => vec!["Basic realm=\"camera\"".to_string()],
            _ => offered
                .iter()
                .map(|algorithm| {
                    format!(
                        "Digest realm=\"{REALM}\", qop=\"auth\", algorithm={algorithm}, nonce=\"{nonce}\", opaque=\"{OPAQUE}\", stale=\"{}\"",
                        if stale { "TRUE" } else { "FALSE" }
                    )
                })
                .collect(),
        };
        let mut response = "HTTP/1.1 401 Unauthorized\r\n".to_string();
        for challenge in challenges {
            response.push_str(&format!("WWW-Authenticate: {challenge}\r\n"));
        }
        response.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(response.as_bytes()).await?;
        return stream.shutdown().await;
    }
    let n = state.served.fetch_add(1, Ordering::SeqCst);
    let body = (state.frames)(n);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// Checks a Digest `Authorization` the way a camera does, computed here
/// independently of the client's code (RFC 7616 section 3.4.1, qop=auth):
/// the algorithm it was answered with, if right and one of `offered`.
fn digest_ok(header: &str, target: &str, nonce: &str, offered: &[&str]) -> Option<String> {
    let fields = digest::parse_authorization(header)?;
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let algorithm = get("algorithm");
    let hash = |s: String| -> String {
        match algorithm.as_str() {
            "MD5" => hex(&md5::Md5::digest(s.as_bytes())),
            "SHA-256" => hex(&sha2::Sha256::digest(s.as_bytes())),
            other => panic!("the client answered with algorithm {other:?}"),
        }
    };
    if !offered.contains(&algorithm.as_str()) || get("qop") != "auth" {
        return None;
    }
    let ha1 = hash(format!("{USER}:{REALM}:{PASSWORD}"));
    let ha2 = hash(format!("GET:{target}"));
    let expected = hash(format!(
        "{ha1}:{nonce}:{}:{}:auth:{ha2}",
        get("nc"),
        get("cnonce")
    ));
    (get("username") == USER
        && get("realm") == REALM
        && get("uri") == target
        && get("nonce") == nonce
        && get("opaque") == OPAQUE
        && get("nc").len() == 8
        && get("response") == expected)
        .then_some(algorithm)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the monitor's configuration; `camera_extra` goes into the
/// `[[cameras]]` table.
pub fn write_config(
    dir: &Path,
    webhook: &str,
    camera: &FakeCamera,
    auth: &str,
    camera_extra: &str,
) -> PathBuf {
    write_config_with(
        dir,
        webhook,
        camera,
        &Setup {
            auth,
            camera_extra,
            ..Setup::default()
        },
    )
}

/// What a test changes in the configuration [`write_config_with`] writes.
pub struct Setup<'a> {
    /// `basic` or `digest`.
    pub auth: &'a str,
    pub interval_s: f64,
    /// More lines for the `[[cameras]]` table.
    pub camera_extra: &'a str,
    /// The outbox file; `outbox.sqlite3` in the test's folder by default.
    pub outbox: Option<&'a Path>,
    /// More lines for the `[outbox]` table.
    pub outbox_extra: &'a str,
    /// The `[delivery]` table's lines: short backoffs by default.
    pub delivery: &'a str,
    /// More tables at the end (`[heartbeat]`).
    pub tail: &'a str,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            auth: "basic",
            interval_s: 0.2,
            camera_extra: "",
            outbox: None,
            outbox_extra: "",
            delivery: "response_timeout_s = 600.0\ninitial_backoff_s = 0.05\nmax_backoff_s = 0.2",
            tail: "",
        }
    }
}

/// Writes the monitor's configuration for `camera` and `webhook` as `setup`
/// says, in `dir` (with the secret and password files).
pub fn write_config_with(dir: &Path, webhook: &str, camera: &FakeCamera, setup: &Setup) -> PathBuf {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let password = dir.join("camera.password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let config = dir.join("wildfire-watch.toml");
    let outbox = setup
        .outbox
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("outbox.sqlite3"));
    std::fs::write(
        &config,
        format!(
            r#"
[device]
id = "hadong-jirisan-1"
name = "Hadong, Jirisan west ridge tower"

[[cameras]]
id = "west"
name = "West ridge"
lat = 35.1712
lon = 127.6815
azimuth_deg = 265.0
fov_deg = 62.0
interval_s = {interval_s:?}
grab_timeout_s = 5.0
{camera_extra}

[cameras.source]
kind = "snapshot"
url = "{url}"
username = "{USER}"
password_file = "{password}"
auth = "{auth}"

[[webhooks]]
url = "{webhook}"
secret_files = ["{secret}"]

[outbox]
path = "{outbox}"
{outbox_extra}

[delivery]
{delivery}

[status]
listen = "127.0.0.1:0"
{tail}
"#,
            url = camera.url(),
            secret = secret.display(),
            password = password.display(),
            outbox = outbox.display(),
            interval_s = setup.interval_s,
            camera_extra = setup.camera_extra,
            auth = setup.auth,
            outbox_extra = setup.outbox_extra,
            delivery = setup.delivery,
            tail = setup.tail,
        ),
    )
    .unwrap();
    config
}

/// The running monitor and its status endpoint.
pub struct Monitor {
    pub child: Child,
    pub status: String,
}

impl Monitor {
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Monitor {
        Monitor::spawn(config, env, Stdio::inherit())
    }

    /// [`Monitor::start`] with its journal (stderr) written to `log`.
    pub fn start_logged(config: &Path, env: &[(&str, &str)], log: &Path) -> Monitor {
        Monitor::spawn(config, env, std::fs::File::create(log).unwrap().into())
    }

    fn spawn(config: &Path, env: &[(&str, &str)], stderr: Stdio) -> Monitor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wildfire-watch"))
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let status = line
            .trim()
            .strip_prefix("status on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Monitor { child, status }
    }

    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reqwest::get(format!("{}{path}", self.status))
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap().to_vec())
    }

    pub async fn health(&self) -> (u16, Value) {
        let (status, body) = self.get("/healthz").await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(self.get("/metrics").await.1).unwrap()
    }

    /// The value of one metric line (`name{labels}`), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().await.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
        })
    }

    /// Counter `series`, 0 while absent (nothing counted yet).
    pub async fn count(&self, series: &str) -> f64 {
        self.metric(series).await.unwrap_or(0.0)
    }

    /// Waits until counter `series` reaches `at_least`; returns its value.
    pub async fn count_reaches(&self, series: &str, at_least: f64) -> f64 {
        wait_for(&format!("{series} at {at_least}"), || async {
            self.metric(series).await.filter(|&n| n >= at_least)
        })
        .await
    }

    /// SIGTERM, then the exit status, within [`PATIENCE`].
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the monitor did not exit on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, within [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn events_of_type(store: &Path, kind: &str) -> Vec<Value> {
    stored_events(store)
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// Waits for the first event of type `kind` in `store`.
pub async fn first_event(store: &Path, kind: &str) -> Value {
    wait_for(kind, || async {
        events_of_type(store, kind).into_iter().next()
    })
    .await
}
