//! RTSP cameras, decoded by libav (feature `video`).
//!
//! Each grab opens the stream (RTSP over TCP), decodes the first picture it
//! can and closes the connection. At one frame every few seconds that costs
//! a handshake per grab but no CPU in between, where keeping the stream open
//! would decode 25 frames a second only to throw them away, and a stale or
//! wedged session cannot outlive one grab. libav blocks, so the grab runs on
//! a blocking thread, which libav ends itself at the grab timeout: its
//! interrupt callback asks a deadline on every wait. The socket timeout alone
//! did not: a camera that keeps the session up but sends no picture (an
//! encoder frozen behind a live RTSP server, sending only RTCP reports)
//! held `avformat_find_stream_info` for over 600 s in a review's
//! measurement, one more thread and camera session every grab, until
//! tokio's 512 blocking threads were taken (about 3 h) and every camera's
//! decoding queued behind them. A camera keeps at most one grab in flight
//! all the same: while one has not returned, the next fails at once.

use std::ffi::{c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use ffmpeg::media::Type;
use ffmpeg::util::frame::video::Video;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::{Grab, GrabError, Source};
use crate::config::RtspConfig;
use crate::video::RgbConverter;

/// Packets read before giving up on a stream that never yields a picture
/// (no keyframe, or a codec that will not decode).
const MAX_PACKETS_PER_GRAB: usize = 1000;

pub struct RtspSource {
    url: String,
    timeout: Duration,
    /// Set while a grab's thread runs (cleared when it returns, even after
    /// the monitor has abandoned it).
    in_flight: Arc<AtomicBool>,
}

impl RtspSource {
    /// Fails (with what to do) when the password cannot be read.
    pub fn new(config: &RtspConfig, timeout: Duration) -> anyhow::Result<RtspSource> {
        Ok(RtspSource {
            url: url_with_login(&config.url, config.login().load()?)?,
            timeout,
            in_flight: Arc::default(),
        })
    }
}

/// `url` with the user name and password put in it, percent-encoded (a
/// password may hold `@` or `:`), which is how libav takes them. The URL
/// lives only in memory; messages show it through
/// [`crate::redact::shown_url_text`].
fn url_with_login(url: &str, login: Option<(String, String)>) -> anyhow::Result<String> {
    let Some((user, password)) = login else {
        return Ok(url.to_string());
    };
    let mut with =
        reqwest::Url::parse(url).map_err(|e| anyhow!("the RTSP url is not a valid URL: {e}"))?;
    // The url crate encodes `@`, `:` and `/` but keeps `%` as it is, and
    // libav decodes the login: a `%` of the password itself must go as `%25`.
    let (user, password) = (user.replace('%', "%25"), password.replace('%', "%25"));
    with.set_username(&user)
        .and_then(|()| with.set_password(Some(&password)))
        .map_err(|()| anyhow!("the RTSP url cannot carry a user name (it has no host)"))?;
    Ok(with.into())
}

impl Source for RtspSource {
    fn grab(&mut self) -> Grab<'_> {
        let (url, timeout) = (self.url.clone(), self.timeout);
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            if in_flight.swap(true, Ordering::SeqCst) {
                return Err(GrabError::Failed(anyhow!(
                    "{}: the last grab has not returned yet",
                    crate::redact::shown_url_text(&url, "the RTSP url")
                )));
            }
            // Made before the thread: a closure that never runs (a runtime
            // shutting down) drops it all the same.
            let in_flight = InFlight(in_flight);
            tokio::task::spawn_blocking(move || {
                let _in_flight = in_flight;
                grab_one(&url, timeout)
            })
            .await
            .map_err(|e| GrabError::Failed(anyhow!("the RTSP thread failed: {e}")))?
        })
    }
}

/// Clears a camera's in-flight flag when its grab's thread ends, by a panic
/// too: a flag left set would fail every later grab, for good.
struct InFlight(Arc<AtomicBool>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// When libav is to give up a grab: its interrupt callback
/// ([`past_deadline`]) reads it on every blocking wait.
struct Deadline(Instant);

extern "C" fn past_deadline(opaque: *mut c_void) -> c_int {
    // SAFETY: `opaque` is the `Deadline` that `open` was given, which
    // outlives the context it was set on (`Stream` drops the context first).
    let deadline = unsafe { &*(opaque as *const Deadline) };
    c_int::from(Instant::now() >= deadline.0)
}

/// An open stream and the deadline its interrupt callback reads. Fields drop
/// in order: the context is closed before its deadline is freed.
struct Stream {
    input: ffmpeg::format::context::Input,
    _deadline: Box<Deadline>,
}

/// Opens `url` as `ffmpeg::format::input_with_dictionary` does, with an
/// interrupt callback that ends every wait at `deadline`. (The crate's
/// `input_with_interrupt` takes no options, and leaks its callback's box on
/// every call: at a grab every 10 s, the years of a tower add up.)
fn open(
    url: &str,
    options: ffmpeg::Dictionary,
    deadline: Instant,
) -> Result<Stream, ffmpeg::Error> {
    use ffmpeg::ffi;
    let url = CString::new(url).map_err(|_| ffmpeg::Error::InvalidData)?;
    let deadline = Box::new(Deadline(deadline));
    // SAFETY: the calls libavformat documents for opening an input with a
    // context of one's own: allocated here, freed by avformat_open_input on
    // failure, and by avformat_close_input (or `Input`'s drop) otherwise.
    unsafe {
        let mut context = ffi::avformat_alloc_context();
        if context.is_null() {
            return Err(ffmpeg::Error::Other {
                errno: ffmpeg::error::ENOMEM,
            });
        }
        (*context).interrupt_callback = ffi::AVIOInterruptCB {
            callback: Some(past_deadline),
            opaque: &*deadline as *const Deadline as *mut c_void,
        };
        let mut options = options.disown();
        let opened = ffi::avformat_open_input(
            &mut context,
            url.as_ptr(),
            std::ptr::null_mut(),
            &mut options,
        );
        // The options libav did not take, freed.
        drop(ffmpeg::Dictionary::own(options));
        if opened != 0 {
            return Err(ffmpeg::Error::from(opened));
        }
        let found = ffi::avformat_find_stream_info(context, std::ptr::null_mut());
        if found < 0 {
            ffi::avformat_close_input(&mut context);
            return Err(ffmpeg::Error::from(found));
        }
        Ok(Stream {
            input: ffmpeg::format::context::Input::wrap(context),
            _deadline: deadline,
        })
    }
}

fn grab_one(url: &str, timeout: Duration) -> Result<RgbImage, GrabError> {
    let deadline = Instant::now() + timeout;
    let shown = crate::redact::shown_url_text(url, "the RTSP url");
    let failed = |what: String| {
        let what = if Instant::now() >= deadline {
            format!("no picture within the grab timeout ({} s) ({what}): the camera did not answer, or answered without a picture; check that it is up, and restart it if this lasts", timeout.as_secs_f64())
        } else {
            what
        };
        GrabError::Failed(anyhow!("{shown}: {what}"))
    };
    crate::video::start_libav().map_err(GrabError::Failed)?;
    let mut options = ffmpeg::Dictionary::new();
    options.set("rtsp_transport", "tcp");
    // Socket I/O timeout, microseconds.
    options.set("timeout", &timeout.as_micros().to_string());
    let mut stream = open(url, options, deadline)
        .map_err(|e| failed(format!("cannot open the stream: {e}: check the address, the user name and password and that the camera is up")))?;
    let input = &mut stream.input;
    let video = input
        .streams()
        .best(Type::Video)
        .ok_or_else(|| failed("the stream has no video".into()))?;
    let index = video.index();
    let context = ffmpeg::codec::context::Context::from_parameters(video.parameters())
        .map_err(|e| failed(format!("cannot read the codec: {e}")))?;
    let mut decoder = context
        .decoder()
        .video()
        .map_err(|e| failed(format!("no decoder for this stream's codec: {e}")))?;
    let mut converter = RgbConverter::default();
    let mut frame = Video::empty();
    for _ in 0..MAX_PACKETS_PER_GRAB {
        let packet = match crate::video::read_packet(|packet| packet.read(input), Some(deadline)) {
            Ok(Some(packet)) => packet,
            Ok(None) => return Err(failed("the stream ended before a picture".into())),
            Err(e) => return Err(failed(format!("cannot read the stream: {e}"))),
        };
        if packet.stream() != index || decoder.send_packet(&packet).is_err() {
            continue;
        }
        if decoder.receive_frame(&mut frame).is_ok() {
            return converter.convert(&frame).map_err(GrabError::Corrupt);
        }
    }
    Err(failed(format!(
        "no picture decoded from the first {MAX_PACKETS_PER_GRAB} packets"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grab_decodes_the_first_picture_of_a_stream() {
        // libav opens files and rtsp:// alike; a short H.264 file made by the
        // ffmpeg tool stands in for a camera (no RTSP server on loopback here).
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("clip.mp4");
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/hillside/frame_%04d.jpg");
        let made = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-framerate", "1", "-i"])
            .arg(&fixture)
            .args(["-frames:v", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(&video)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: cannot run ffmpeg to make a test clip: apt-get install ffmpeg");
            return;
        }
        let image = grab_one(video.to_str().unwrap(), Duration::from_secs(10)).unwrap();
        assert_eq!(image.dimensions(), (640, 360));
        let expected = crate::footage::decode(&fixture.with_file_name("frame_0000.jpg")).unwrap();
        let diff: u64 = image
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = diff as f64 / expected.as_raw().len() as f64;
        assert!(mean < 8.0, "mean difference {mean} from frame 0");
    }

    /// A loopback "camera" that answers each connection with the start of
    /// an RTSP reply and then one more header byte every 200 ms, for ever:
    /// every socket read succeeds well within libav's socket timeout, so
    /// only the grab's deadline can end it (as with a camera that keeps its
    /// session up and sends no picture).
    fn trickling_camera() -> String {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let _ = stream.write_all(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nX-Slow: ");
                    while stream.write_all(b"a").is_ok() {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
            }
        });
        format!("rtsp://127.0.0.1:{port}/stream")
    }

    #[test]
    fn a_camera_that_answers_but_sends_no_picture_ends_the_grab_at_its_timeout() {
        let url = trickling_camera();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(grab_one(&url, Duration::from_secs(2))));
        // Without the deadline the grab never returns (its socket reads all
        // succeed); 60 s only bounds the test.
        let grabbed = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the grab was still blocked 60 s after its 2-s timeout");
        match grabbed {
            Err(GrabError::Failed(e)) => {
                let message = format!("{e:#}");
                assert!(
                    message.contains("no picture within the grab timeout (2 s)"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_camera_keeps_one_grab_in_flight() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut source = RtspSource {
            url: trickling_camera(),
            timeout: Duration::from_secs(2),
            in_flight: Arc::default(),
        };
        runtime.block_on(async {
            // The monitor abandons a grab at its timeout; here sooner.
            let abandoned = tokio::time::timeout(Duration::from_millis(300), source.grab()).await;
            assert!(abandoned.is_err(), "the grab should still be blocked");
            match source.grab().await {
                Err(GrabError::Failed(e)) => {
                    assert!(format!("{e:#}").contains("has not returned yet"), "{e:#}")
                }
                other => panic!("{other:?}"),
            }
            // Once its thread has ended at the deadline, grabs go again
            // (and end at theirs).
            tokio::time::sleep(Duration::from_secs(3)).await;
            match source.grab().await {
                Err(GrabError::Failed(e)) => {
                    assert!(format!("{e:#}").contains("no picture within"), "{e:#}")
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn an_unreachable_camera_is_a_failure_without_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("rtsp://admin:hunter2@127.0.0.1:{port}/stream");
        match grab_one(&url, Duration::from_secs(5)) {
            Err(GrabError::Failed(e)) => {
                let message = format!("{e:#}");
                assert!(message.contains("cannot open the stream"), "{message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_login_from_a_file_goes_into_the_url_encoded() {
        let url = url_with_login(
            "rtsp://192.0.2.5:554/Streaming/Channels/102",
            Some(("wildfire".into(), "p@ss:w/rd%41".into())),
        )
        .unwrap();
        assert_eq!(
            url,
            "rtsp://wildfire:p%40ss%3Aw%2Frd%2541@192.0.2.5:554/Streaming/Channels/102"
        );
        let shown = crate::redact::shown_url_text(&url, "the RTSP url");
        assert_eq!(shown, "rtsp://192.0.2.5:554/Streaming/Channels/102");
        assert_eq!(
            url_with_login("rtsp://192.0.2.5/s", None).unwrap(),
            "rtsp://192.0.2.5/s"
        );
    }

    #[test]
    fn messages_never_show_the_password() {
        let shown = crate::redact::shown_url_text(
            "rtsp://admin:hunter2@192.0.2.5:554/Streaming/Channels/101",
            "the RTSP url",
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("admin"),
            "{shown}"
        );
        assert!(shown.contains("192.0.2.5"), "{shown}");
    }
}
