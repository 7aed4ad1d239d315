//! Fuzz target bodies: each parser of outside input, fed arbitrary bytes,
//! with the properties that must hold for any input asserted.
//!
//! The libFuzzer targets in `fuzz/` (nightly, cargo-fuzz) only call these
//! functions, and `tests/fuzz_regressions.rs` (stable, `cargo test`) replays
//! the committed seed corpus through them and runs them on deterministic
//! mutations of it, so CI checks the same properties without rebuilding the
//! crate with coverage instrumentation. README.md, Fuzzing, says how to run
//! them.
//!
//! A body returns normally when the input was handled correctly (accepted or
//! refused with an error) and panics when a property does not hold: that
//! panic is what the fuzzer reports as a crash.
//!
//! Several targets take more than one string; their inputs are fields
//! separated by NUL bytes ([`fields`]), which no text field here can hold.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::camera::digest::{self, Challenge};
use crate::config::Config;
use crate::footage::{self, Footage};
use crate::labels::Labels;
use crate::receiver::Receiver;
use crate::webhook::{self, Secret, VerifyError};

/// A target's body: panics where an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target: its name (the `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/` it goes with) and its body.
pub const TARGETS: [(&str, Target); 7] = [
    ("config_toml", config_toml),
    ("labels_csv", labels_csv),
    ("digest_challenge", digest_challenge),
    ("webhook_verify", webhook_verify),
    ("receiver_request", receiver_request),
    ("frame_decode", frame_decode),
    ("footage_names", footage_names),
];

/// The input split at NUL bytes; missing fields are empty.
pub fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    let mut rest = data;
    for (i, field) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *field = rest;
            break;
        }
        match rest.iter().position(|&b| b == 0) {
            Some(nul) => {
                *field = &rest[..nul];
                rest = &rest[nul + 1..];
            }
            None => {
                *field = rest;
                rest = &[];
            }
        }
    }
    out
}

/// A scratch folder of this thread for targets that need files (tests run
/// targets on several threads at once): in `/dev/shm` where there is one, so
/// the receiver's fsyncs cost nothing and a million runs do not wear a disk.
fn scratch(name: &str) -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    base.join(format!(
        "wildfire-fuzz-{}-{thread}-{name}",
        std::process::id()
    ))
}

/// Removes this thread's scratch folders (a test calls it when done).
pub fn remove_scratch() {
    for name in ["receiver-raw", "receiver-signed", "footage"] {
        let _ = std::fs::remove_dir_all(scratch(name));
    }
}

/// An emptied scratch folder.
fn fresh_scratch(name: &str) -> PathBuf {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create a scratch folder");
    dir
}

/// The configuration file (`Config::parse`). A file that is accepted must
/// give settings the monitor can use without panicking (durations, ignore
/// masks rasterised for a frame), and must still be accepted, with the same
/// values, when its TOML is written out again in another layout: validation
/// depends on the values, not on where they sit in the text.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(Path::new("fuzz.toml"), text) {
        Ok(config) => config,
        Err(e) => {
            // The message names a real place in the file.
            if let Some((line, col)) = e.line_col {
                assert!(line >= 1 && col >= 1, "{e}");
                assert!(line <= text.split('\n').count(), "{e}");
            }
            let _ = e.to_string();
            return;
        }
    };
    use_config(&config);

    let table: toml::Table = toml::from_str(text).expect("a valid config is a valid TOML table");
    let rewritten = toml::to_string(&table).expect("a parsed TOML table can be written");
    let again = Config::parse(Path::new("rewritten.toml"), &rewritten)
        .unwrap_or_else(|e| panic!("the same config rewritten is refused: {e}\n{rewritten}"));
    assert_eq!(again.device.id.get_ref(), config.device.id.get_ref());
    assert_eq!(again.device.name, config.device.name);
    assert_eq!(again.webhooks.len(), config.webhooks.len());
    assert_eq!(again.cameras.len(), config.cameras.len());
    for (a, b) in again.cameras.iter().zip(&config.cameras) {
        // JSON, not `==`: a NaN latitude is the same setting both times.
        assert_eq!(
            serde_json::to_string(a).unwrap(),
            serde_json::to_string(b).unwrap()
        );
        assert_eq!(a.ignore_mask().is_empty(), b.ignore_mask().is_empty());
    }
}

/// What the monitor computes from an accepted config.
fn use_config(config: &Config) {
    for camera in &config.cameras {
        let _ = (
            camera.interval(),
            camera.grab_timeout(),
            camera.max_backoff(),
            camera.stuck_after(),
        );
        // A small frame: shapes reach outside it, as on a real camera whose
        // resolution changed after the mask was drawn.
        let mut mask = camera.ignore_mask();
        mask.prepare(40, 24);
        let whole = crate::views::Rect {
            x: 0,
            y: 0,
            w: 40,
            h: 24,
        };
        let covered = mask.coverage(&whole);
        assert!((0.0..=1.0).contains(&covered), "coverage {covered}");
        let frame = image::RgbImage::new(40, 24);
        let mut out = image::RgbImage::new(1, 1);
        mask.apply(&frame, &mut out);
        assert_eq!(out.dimensions(), (40, 24));
    }
    let _ = (
        config.outbox.max_age(),
        config.delivery.connect_timeout(),
        config.delivery.response_timeout(),
        config.delivery.initial_backoff(),
        config.delivery.max_backoff(),
        config.heartbeat.interval(),
    );
}

/// A labels CSV (`Labels::from_bytes`). Labels that are accepted, written
/// out again as a labels file, read back to the same labels, and each is
/// found by its frame name.
pub fn labels_csv(data: &[u8]) {
    let Ok(labels) = Labels::from_bytes(data, Path::new("fuzz.csv")) else {
        return;
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(["frame", "smoke", "flame", "unix_time"])
        .unwrap();
    let truth = |t: Option<bool>| match t {
        Some(true) => "1",
        Some(false) => "0",
        None => "-1",
    };
    for (frame, label) in labels.iter() {
        assert_eq!(labels.get(frame), Some(label), "{frame:?}");
        let time = label.unix_time.map(|t| t.to_string()).unwrap_or_default();
        writer
            .write_record([
                frame,
                truth(label.truth.smoke),
                truth(label.truth.flame),
                &time,
            ])
            .unwrap();
    }
    let written = writer.into_inner().unwrap();
    let again = Labels::from_bytes(&written[..], Path::new("rewritten.csv")).unwrap_or_else(|e| {
        panic!(
            "labels written back are refused: {e:#}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    assert_eq!(again.len(), labels.len());
    for (frame, label) in labels.iter() {
        assert_eq!(again.get(frame), Some(label), "{frame:?}");
    }
}

/// `WWW-Authenticate` values from a camera (one per line), through
/// `Challenge::pick`. A challenge that is accepted must be answered with an
/// `Authorization` header whose fields read back as sent, and the same
/// challenge written out again must parse to itself.
pub fn digest_challenge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Challenge::parse(text);
    let Ok(challenge) = Challenge::pick(text.split('\n')) else {
        return;
    };
    // A user name and a URI with the characters that need quoting.
    let (user, password, uri) = ("ad\"min\\", "pass", "/ISAPI/picture?q=\"a, b\"");
    let (nc, cnonce) = (7, "0a4f113b");
    let header = digest::authorization(&challenge, user, password, "GET", uri, nc, cnonce);
    let fields = digest::parse_authorization(&header).expect("our own header parses");
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let response = digest::response(&challenge, user, password, "GET", uri, nc, cnonce);
    assert_eq!(get("username"), Some(user), "{header}");
    assert_eq!(get("realm"), Some(challenge.realm.as_str()), "{header}");
    assert_eq!(get("nonce"), Some(challenge.nonce.as_str()), "{header}");
    assert_eq!(get("uri"), Some(uri), "{header}");
    assert_eq!(get("response"), Some(response.as_str()), "{header}");
    assert_eq!(
        get("algorithm"),
        Some(challenge.algorithm.name()),
        "{header}"
    );
    assert_eq!(get("opaque"), challenge.opaque.as_deref(), "{header}");

    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut rewritten = format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm={}",
        quote(&challenge.realm),
        quote(&challenge.nonce),
        challenge.algorithm.name()
    );
    if challenge.qop_auth {
        rewritten.push_str(", qop=\"auth\"");
    }
    if let Some(opaque) = &challenge.opaque {
        rewritten.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
    }
    if challenge.stale {
        rewritten.push_str(", stale=true");
    }
    let again =
        Challenge::parse(&rewritten).unwrap_or_else(|e| panic!("{rewritten} is refused: {e:#}"));
    assert_eq!(again, challenge, "{rewritten}");
}

/// The receiver's clock in [`webhook_verify`]; seeds sign near it.
pub const VERIFY_NOW: i64 = 1_700_000_000;

/// Standard Webhooks verification. Fields: secret, id, timestamp, signature
/// header, body. Whatever the headers, a message is accepted only when one
/// of its `v1` signatures is the real one; and a message we sign with the
/// same secret, id and body is accepted, while any single-byte change to its
/// id, timestamp, signature or body is refused.
pub fn webhook_verify(data: &[u8]) {
    let [secret, id, timestamp, signature, body] = fields::<5>(data);
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    let secret = text(secret)
        .and_then(|s| Secret::parse(&s).ok())
        .unwrap_or_else(|| Secret::parse("a fallback secret of 16+ bytes").unwrap());
    let secrets = [secret];
    let (id, timestamp, signature) = (text(id), text(timestamp), text(signature));
    let verdict = webhook::verify(
        &secrets,
        id.as_deref(),
        timestamp.as_deref(),
        signature.as_deref(),
        body,
        VERIFY_NOW,
    );
    if verdict.is_ok() {
        // Accepted: the headers must carry the genuine signature.
        use base64::Engine as _;
        let ts: i64 = timestamp.as_deref().unwrap().trim().parse().unwrap();
        let genuine = webhook::sign(&secrets, id.as_deref().unwrap(), ts, body);
        let bytes = |s: &str| {
            let b64 = s.strip_prefix("v1,")?;
            base64::engine::general_purpose::STANDARD.decode(b64).ok()
        };
        let genuine_bytes = bytes(&genuine);
        assert!(
            signature
                .as_deref()
                .unwrap()
                .split_whitespace()
                .any(|s| bytes(s).is_some() && bytes(s) == genuine_bytes),
            "accepted without the genuine signature {genuine}"
        );
    }

    // The round trip, with the fuzzer's id (made ASCII) and body.
    let id: String = id
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    let ts = VERIFY_NOW + i64::from(body.first().copied().unwrap_or(0)) - 128;
    let ts_text = ts.to_string();
    let signature = webhook::sign(&secrets, &id, ts, body);
    let check = |id: &str, ts: &str, signature: &str, body: &[u8]| {
        webhook::verify(
            &secrets,
            Some(id),
            Some(ts),
            Some(signature),
            body,
            VERIFY_NOW,
        )
    };
    assert_eq!(check(&id, &ts_text, &signature, body), Ok(()));
    // Another ASCII byte in place of byte `i` of `s`.
    let changed = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] >= b'~' { b'!' } else { b[i] + 1 };
        String::from_utf8(b).unwrap()
    };
    let refused = |r: Result<(), VerifyError>, what: &str| {
        assert!(r.is_err(), "a signature verified after a change to {what}");
    };
    for i in 0..signature.len() {
        refused(
            check(&id, &ts_text, &changed(&signature, i), body),
            "the signature",
        );
    }
    for i in 0..ts_text.len() {
        refused(
            check(&id, &changed(&ts_text, i), &signature, body),
            "the timestamp",
        );
    }
    for i in 0..id.len().min(64) {
        refused(
            check(&changed(&id, i), &ts_text, &signature, body),
            "the id",
        );
    }
    for i in 0..body.len().min(64) {
        let mut b = body.to_vec();
        b[i] ^= 1 << (i % 8);
        refused(check(&id, &ts_text, &signature, &b), "the body");
    }
}

/// The body limit of the fuzzed receivers: small, so the fuzzer reaches it.
const RECEIVER_MAX_BODY: usize = 512;

/// The receiver's secret in [`receiver_request`].
pub const RECEIVER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The reference receiver's request handling: bytes on a connection, through
/// hyper and `Receiver::handle`, over an in-memory stream (no network).
///
/// The first byte chooses the mode. Even: the rest is sent as raw bytes,
/// which cannot carry a valid signature, so no request may be answered 2xx
/// and nothing may be stored. Odd: fields id, body; the harness sends a
/// properly signed POST of them, then the same again, then the same id with
/// another body, to a fresh store: a JSON body is stored (200), its
/// redelivery is a duplicate (200), and the other body a conflict (409).
pub fn receiver_request(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        thread_local! {
            static RAW: Arc<Receiver> = {
                let dir = fresh_scratch("receiver-raw");
                let secret = Secret::parse(RECEIVER_SECRET).unwrap();
                Arc::new(Receiver::open(&dir, vec![secret], RECEIVER_MAX_BODY).unwrap())
            };
        }
        let answer = exchange(RAW.with(Arc::clone), rest, true);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            !answer.contains("HTTP/1.1 2"),
            "an unsigned request was accepted:\n{answer}"
        );
        let stored = std::fs::read_dir(scratch("receiver-raw")).unwrap().count();
        assert_eq!(stored, 1, "only index.jsonl may be in the store");
        return;
    }

    let [id, body] = fields::<2>(rest);
    let dir = fresh_scratch("receiver-signed");
    let secret = Secret::parse(RECEIVER_SECRET).unwrap();
    let receiver = Arc::new(Receiver::open(&dir, vec![secret.clone()], RECEIVER_MAX_BODY).unwrap());
    let now = crate::outbox::now_unix().floor() as i64;
    let request = |body: &[u8], last: bool| {
        let id_text = String::from_utf8_lossy(id);
        let signature = webhook::sign(std::slice::from_ref(&secret), &id_text, now, body);
        let mut r = format!(
            "POST /events HTTP/1.1\r\nhost: tower\r\ncontent-type: application/json\r\n\
             webhook-timestamp: {now}\r\nwebhook-signature: {signature}\r\ncontent-length: {}\r\nwebhook-id: ",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(id);
        r.extend_from_slice(b"\r\n");
        if last {
            // hyper drops what it has not answered when the client closes
            // its sending side: the server closes once this one is answered.
            r.extend_from_slice(b"connection: close\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(body);
        r
    };
    let mut other = body.to_vec();
    other.push(b' ');
    let mut requests = request(body, false);
    requests.extend(request(body, false));
    requests.extend(request(&other, true));
    // A header value hyper passes on unchanged: visible ASCII, no spaces at
    // either end (those it trims, and the signature is over the id as sent).
    // Any other id may break the requests apart, so the sending side is
    // closed instead of waiting for the server to.
    let clean_id = !id.is_empty() && id.iter().all(|b| (0x21..0x7f).contains(b));
    let answer = exchange(receiver, &requests, !clean_id);
    let answer = String::from_utf8_lossy(&answer);
    let statuses: Vec<&str> = answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r.get(..3).unwrap_or(r))
        .collect();

    if !clean_id {
        return;
    }
    if body.len() > RECEIVER_MAX_BODY {
        assert_eq!(statuses.first(), Some(&"413"), "{answer}");
        return;
    }
    // One byte under the limit, so the other body still fits.
    if body.len() == RECEIVER_MAX_BODY {
        return;
    }
    let json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    let expected = if json {
        ["200", "200", "409"]
    } else {
        ["400", "400", "400"]
    };
    assert_eq!(statuses, expected, "{answer}");
    if json {
        assert!(answer.contains("stored") && answer.contains("duplicate"));
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(files, 2, "one event and index.jsonl");
    }
}

/// Sends `request` to `receiver` on an in-memory connection and returns
/// everything answered until the server closes; `shutdown` closes the
/// sending side after the request (raw bytes, which may never complete a
/// request), otherwise the request must ask the server to close.
fn exchange(receiver: Arc<Receiver>, request: &[u8], shutdown: bool) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
    }
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (client, server) = tokio::io::duplex(16 * 1024);
            let connection = tokio::spawn(crate::receiver::serve_connection(receiver, server));
            let (mut read, mut write) = tokio::io::split(client);
            let send = async {
                // The server may close early (a malformed request): then the
                // rest cannot be written, which is no failure.
                let _ = write.write_all(request).await;
                if shutdown {
                    let _ = write.shutdown().await;
                }
            };
            let mut answer = Vec::new();
            let receive = read.read_to_end(&mut answer);
            let (_, received) = tokio::join!(send, receive);
            received.expect("in-memory reads cannot fail");
            let _ = connection.await.expect("the connection task panicked");
            answer
        })
    })
}

/// A JPEG or PNG frame through `footage::decode_bytes`, the decoder every
/// frame goes through: it errors, or returns an image whose buffer holds
/// exactly width x height RGB pixels, within the frame size limit.
pub fn frame_decode(data: &[u8]) {
    let Ok(image) = footage::decode_bytes(data) else {
        return;
    };
    let (w, h) = image.dimensions();
    assert!(w > 0 && h > 0, "{w}x{h}");
    assert!(
        w as usize * h as usize * 3 <= footage::MAX_FRAME_BYTES,
        "{w}x{h}"
    );
    assert_eq!(image.as_raw().len(), w as usize * h as usize * 3, "{w}x{h}");
}

/// File names in a footage folder, one per NUL-separated field (at most
/// eight). Each name that a file can have is created (empty) in a fresh
/// folder beside a sub-folder named like a frame; `Footage::open` must then
/// list exactly the image files, in name order, each frame named by its
/// file name, and a label written under a frame's stem must be found by
/// the frame's file name, as replay looks labels up. A time read from a
/// name is a whole or fractional unix second within 2000-2100, and the
/// folder's times, when replay would use them, rise frame by frame.
pub fn footage_names(data: &[u8]) {
    let dir = fresh_scratch("footage");
    std::fs::create_dir(dir.join("subfolder.jpg")).unwrap();
    let mut expected = Vec::new();
    for name in fields::<8>(data) {
        let name = OsStr::from_bytes(name);
        let path = dir.join(name);
        let single = Path::new(name).file_name() == Some(name);
        if !single || name.as_bytes().contains(&0) {
            continue;
        }
        assert_eq!(footage::frame_name(&path), name.to_string_lossy());
        // Only a new regular file: not a repeat, not the sub-folder, not a
        // name the file system refuses (too long).
        if path.exists() || std::fs::write(&path, b"").is_err() {
            continue;
        }
        if footage::is_image(&path) && !footage::is_hidden(&path) {
            expected.push(path);
        }
    }
    expected.sort_by(|a, b| footage::natural_order(a, b));
    for path in &expected {
        if let Some(t) = footage::time_from_name(&footage::frame_name(path)) {
            assert!(
                (946_684_800.0..4_102_444_800.0).contains(&t),
                "{path:?}: {t}"
            );
        }
    }
    if let Ok(named) = footage::times_from_names(&expected, 60.0) {
        let times = named.times;
        assert_eq!(times.len(), expected.len());
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }
    match Footage::open(&dir) {
        Ok(Footage::Stills(frames)) => assert_eq!(frames, expected),
        Ok(Footage::Video(_)) => panic!("a folder opened as a video"),
        Err(e) => assert!(expected.is_empty(), "{e:#}"),
    }

    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["frame", "smoke", "flame"]).unwrap();
    let mut stems = Vec::new();
    for path in &expected {
        let Some(stem) = path.file_stem().and_then(OsStr::to_str) else {
            continue;
        };
        // Labels trim their fields, as spreadsheets pad them.
        if stem.trim() != stem {
            continue;
        }
        csv.write_record([stem, "1", "0"]).unwrap();
        stems.push(footage::frame_name(path));
    }
    let labels = Labels::from_bytes(&csv.into_inner().unwrap()[..], Path::new("labels.csv"))
        .expect("labels we wrote are read");
    for name in &stems {
        let label = labels.get(name);
        assert!(
            label.is_some_and(|l| l.truth.smoke == Some(true)),
            "{name:?}"
        );
    }
}

/// A small deterministic mutator for the stable-toolchain regression runs
/// (`tests/fuzz_regressions.rs`): libFuzzer's mutations need nightly and an
/// instrumented build. Bytes that mean something to these parsers are
/// favoured.
pub fn mutate(rng: &mut fastrand::Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    const INTERESTING: &[&[u8]] = &[
        b"\0",
        b"\"",
        b"\\",
        b",",
        b"=",
        b"\n",
        b"\r\n",
        b" ",
        b"[",
        b"]",
        b"{",
        b"}",
        b"'",
        b"-1",
        b"0",
        b"1e999",
        b"nan",
        b"4294967295",
        b"\xff\xd8",
        b"\xff\xd9",
        b"\xff",
        b"\xc3\xa9",
        b"v1,",
        b"Digest ",
    ];
    let mut out = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let len = out.len();
        match rng.u8(0..7) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                out[i] ^= 1 << rng.u8(0..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                out[i] = rng.u8(..);
            }
            2 => {
                let i = rng.usize(..=len);
                let word = INTERESTING[rng.usize(..INTERESTING.len())];
                out.splice(i..i, word.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(16));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(16));
                let copy = out[i..i + n].to_vec();
                let at = rng.usize(..=len);
                out.splice(at..at, copy);
            }
            5 if !other.is_empty() => {
                // Splice: the start of this input, the end of another.
                let i = rng.usize(..=len);
                let j = rng.usize(..other.len());
                out.truncate(i);
                out.extend_from_slice(&other[j..]);
            }
            _ if len > 0 => {
                // A byte in a header-like field set to an extreme.
                let i = rng.usize(..len);
                out[i] = [0x00, 0xff, 0x7f, 0x80][rng.usize(..4)];
            }
            _ => out.push(rng.u8(..)),
        }
    }
    out.truncate(64 * 1024);
    out
}

/// The seed corpus: small inputs of each target's shape, written by this
/// crate (committed under `fuzz/corpus/<target>/`, kept current by
/// `tests/fuzz_regressions.rs`). `(target, file name, bytes)`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |target, name, bytes: &[u8]| seeds.push((target, name, bytes.to_vec()));

    let example = include_str!("../systemd/wildfire-watch.example.toml");
    add("config_toml", "example.toml", example.as_bytes());
    add(
        "config_toml",
        "minimal.toml",
        b"[device]\nid = \"t\"\nname = \"T\"\n[[cameras]]\nid = \"west\"\nname = \"W\"\nlat = 35.17\nlon = 127.68\n\
          azimuth_deg = 265.0\nfov_deg = 62.0\nignore = [\"0,0,10,10\", \"1,1 30,2 5,20\"]\n\
          [cameras.source]\nkind = \"snapshot\"\nurl = \"http://192.0.2.1/pic\"\n\
          [[webhooks]]\nurl = \"https://example.org/hook\"\nsecret_credential = \"hook\"\n",
    );

    add(
        "labels_csv",
        "labels.csv",
        b"frame,smoke,flame,offset_s,unix_time\nframe_0000.jpg,0,-1,-60,100\nframe_0001.jpg,1,0,0,160.5\n\"a, b.jpg\",,1,,\n",
    );
    add("labels_csv", "minimal.csv", b"smoke,frame,flame\n0,x,1\n");

    add(
        "digest_challenge",
        "rfc2617.txt",
        br#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
    );
    add(
        "digest_challenge",
        "two-headers.txt",
        b"Digest realm=\"IP Camera\", nonce=\"abc\", algorithm=SHA-256-sess, qop=\"auth\", stale=TRUE, Basic realm=\"x\"\nDigest realm=\"IP \\\"Camera\\\"\", nonce=\"n,1\", algorithm=MD5",
    );
    add(
        "digest_challenge",
        "no-qop.txt",
        b"Basic realm=\"cam\"\ndigest realm=cam,nonce=x,algorithm=md5-sess",
    );

    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let webhook = |id: &str, ts: i64, body: &[u8]| {
        let signature = webhook::sign(&[Secret::parse(secret).unwrap()], id, ts, body);
        let mut seed = format!("{secret}\0{id}\0{ts}\0{signature} v1,AAAA\0").into_bytes();
        seed.extend_from_slice(body);
        seed
    };
    add(
        "webhook_verify",
        "signed.bin",
        &webhook("tower-7-test", VERIFY_NOW + 12, b"{\"event\":\"fire\"}"),
    );
    add(
        "webhook_verify",
        "raw-secret.bin",
        b"raw secret not b64\x00e1\x001699999990\x00v1,5fdFNEtW5hdThOL4DwmX9xh+bkhrUn3Gw3CkaukBJos=\x00{}",
    );

    add(
        "receiver_request",
        "raw-post.bin",
        b"\0POST /events HTTP/1.1\r\nhost: x\r\nwebhook-id: e1\r\nwebhook-timestamp: 1700000000\r\n\
          webhook-signature: v1,5fdFNEtW5hdThOL4DwmX9xh+bkhrUn3Gw3CkaukBJos=\r\ncontent-length: 2\r\n\r\n{}\
          GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    add(
        "receiver_request",
        "raw-chunked.bin",
        b"\0POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nwebhook-id: a\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
    );
    add(
        "receiver_request",
        "signed.bin",
        b"\x01tower-7-2026-12-02T04:00:00Z\0{\"kind\":\"incident\",\"scores\":[0.9,1e3]}",
    );

    add("frame_decode", "grey.jpg", &tiny_jpeg(image::ColorType::L8));
    add(
        "frame_decode",
        "colour.jpg",
        &tiny_jpeg(image::ColorType::Rgb8),
    );
    add("frame_decode", "colour.png", &tiny_png());

    add(
        "footage_names",
        "names.bin",
        b"frame_0001.jpg\0frame_0000.JPEG\0notes.txt\0clip.mp4\0.jpg\0 a .png\0\xff\xfe.jpg\0x.jpg.bak",
    );
    add(
        "footage_names",
        "timed-names.bin",
        b"1465063200_-02400.jpg\x001546362010123.jpg\x0020260916_143000.jpg\x00cam1_2026-09-16T14-30-00.120.png\x00\
          192.168.1.64_01_20260916143000250_MOTION.jpg\x0020261316_250000.jpg\x009999999999.jpg",
    );
    seeds
}

/// A 16x8 JPEG with a gradient, made by `image`'s encoder.
fn tiny_jpeg(colour: image::ColorType) -> Vec<u8> {
    use image::ImageEncoder;
    let channels = colour.channel_count() as u32;
    let pixels: Vec<u8> = (0..16 * 8 * channels)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .write_image(&pixels, 16, 8, colour.into())
        .unwrap();
    jpeg
}

/// A 5x3 RGB PNG.
fn tiny_png() -> Vec<u8> {
    use image::ImageEncoder;
    let pixels: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 13) as u8).collect();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, 5, 3, image::ExtendedColorType::Rgb8)
        .unwrap();
    png
}
