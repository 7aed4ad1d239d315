//! RTSP cameras, decoded by libav (feature `video`).
//!
//! Each grab opens the stream (RTSP over TCP), decodes the first picture it
//! can and closes the connection. At one frame every few seconds that costs
//! a handshake per grab but no CPU in between, where keeping the stream open
//! would decode 25 frames a second only to throw them away, and a stale or
//! wedged session cannot outlive one grab. libav blocks, so the grab runs on
//! a blocking thread; the monitor's grab timeout abandons it if it hangs, and
//! libav's own socket timeout ends it soon after.

use std::time::Duration;

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
}

impl RtspSource {
    /// Fails (with what to do) when the password cannot be read.
    pub fn new(config: &RtspConfig, timeout: Duration) -> anyhow::Result<RtspSource> {
        Ok(RtspSource {
            url: url_with_login(&config.url, config.login().load()?)?,
            timeout,
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
        Box::pin(async move {
            tokio::task::spawn_blocking(move || grab_one(&url, timeout))
                .await
                .map_err(|e| GrabError::Failed(anyhow!("the RTSP thread failed: {e}")))?
        })
    }
}

fn grab_one(url: &str, timeout: Duration) -> Result<RgbImage, GrabError> {
    let shown = crate::redact::shown_url_text(url, "the RTSP url");
    let failed = |what: String| GrabError::Failed(anyhow!("{shown}: {what}"));
    crate::video::start_libav().map_err(GrabError::Failed)?;
    let mut options = ffmpeg::Dictionary::new();
    options.set("rtsp_transport", "tcp");
    // Socket I/O timeout, microseconds.
    options.set("timeout", &timeout.as_micros().to_string());
    let mut input = ffmpeg::format::input_with_dictionary(&url, options)
        .map_err(|e| failed(format!("cannot open the stream: {e}: check the address, the user name and password and that the camera is up")))?;
    let stream = input
        .streams()
        .best(Type::Video)
        .ok_or_else(|| failed("the stream has no video".into()))?;
    let index = stream.index();
    let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| failed(format!("cannot read the codec: {e}")))?;
    let mut decoder = context
        .decoder()
        .video()
        .map_err(|e| failed(format!("no decoder for this stream's codec: {e}")))?;
    let mut converter = RgbConverter::default();
    let mut frame = Video::empty();
    for (packets, (stream, packet)) in input.packets().enumerate() {
        if packets >= MAX_PACKETS_PER_GRAB {
            break;
        }
        if stream.index() != index || decoder.send_packet(&packet).is_err() {
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
