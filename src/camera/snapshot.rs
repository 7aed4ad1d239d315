//! Snapshot cameras: one JPEG per HTTP GET (Hikvision ISAPI
//! `/ISAPI/Streaming/channels/101/picture`, Reolink
//! `/cgi-bin/api.cgi?cmd=Snap&channel=0`, Dahua `/cgi-bin/snapshot.cgi`).
//!
//! Owns the HTTP exchange with the camera: Basic or Digest authentication
//! (the first digest challenge whose algorithm is supported is kept and
//! reused with a counting `nc`, and renewed when the camera answers 401 to
//! it later or says `stale=true`), a cap on the body size, and decoding
//! the answer off the async threads. A truncated or corrupt JPEG is a
//! [`GrabError::Corrupt`], not a frame.

use std::time::Duration;

use anyhow::{anyhow, Context};
use image::RgbImage;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::digest::{self, Challenge};
use super::{Grab, GrabError, Source};
use crate::config::{HttpAuth, SnapshotConfig};
use crate::delivery::error_chain;

/// Larger answers are not a snapshot; they are cut off and the grab fails.
pub const MAX_SNAPSHOT_BYTES: usize = 32 * 1024 * 1024;

/// Digest challenges taken in one grab: the first, and renewals on
/// `stale=true`, so a camera that calls every nonce stale fails the grab
/// instead of looping.
const MAX_CHALLENGES_PER_GRAB: usize = 3;

pub struct SnapshotSource {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `url` for messages, secrets left out ([`crate::redact::shown_url`]).
    shown: String,
    credentials: Option<(String, String)>,
    auth: HttpAuth,
    challenge: Option<Challenge>,
    nc: u32,
}

impl SnapshotSource {
    pub fn new(config: &SnapshotConfig, timeout: Duration) -> anyhow::Result<SnapshotSource> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = reqwest::Url::parse(&config.url)
            .with_context(|| format!("snapshot url {:?} is not a valid URL", config.url))?;
        let credentials = config.login().load()?;
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("wildfire-watch/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(SnapshotSource {
            client,
            shown: crate::redact::shown_url(&url),
            url,
            credentials,
            auth: config.auth,
            challenge: None,
            nc: 0,
        })
    }

    /// The request-target that digest signs: path and query.
    fn uri(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        }
    }

    async fn send(&mut self) -> Result<reqwest::Response, GrabError> {
        let mut request = self.client.get(self.url.clone());
        if let Some((user, password)) = &self.credentials {
            match (self.auth, &self.challenge) {
                (HttpAuth::Basic, _) => request = request.basic_auth(user, Some(password)),
                (HttpAuth::Digest, Some(challenge)) => {
                    self.nc += 1;
                    let value = digest::authorization(
                        challenge,
                        user,
                        password,
                        "GET",
                        &self.uri(),
                        self.nc,
                        &digest::cnonce(),
                    );
                    request = request.header(AUTHORIZATION, value);
                }
                (HttpAuth::Digest, None) => {}
            }
        }
        request.send().await.map_err(|e| {
            GrabError::Failed(anyhow!(
                "GET {}: {}",
                self.shown,
                error_chain(&e.without_url())
            ))
        })
    }

    async fn fetch(&mut self) -> Result<Vec<u8>, GrabError> {
        let mut response = self.send().await?;
        // A 401 to a challenge kept from earlier grabs, or one that says
        // stale=true, asks for the new challenge; a 401 to a challenge just
        // taken without stale=true means wrong credentials.
        let mut answered_fresh_challenge = false;
        for _ in 0..MAX_CHALLENGES_PER_GRAB {
            if response.status() != StatusCode::UNAUTHORIZED
                || self.auth != HttpAuth::Digest
                || self.credentials.is_none()
            {
                break;
            }
            let challenge = Challenge::pick(
                response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            )
            .map_err(|e| GrabError::Failed(anyhow!("{}: {e:#}", self.shown)))?;
            if answered_fresh_challenge && !challenge.stale {
                break;
            }
            self.challenge = Some(challenge);
            self.nc = 0;
            answered_fresh_challenge = true;
            response = self.send().await?;
        }
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(GrabError::Failed(anyhow!(
                "{} refused the credentials ({status}): check username, the password file and auth = \"digest\" or \"basic\"",
                self.shown
            )));
        }
        if !status.is_success() {
            return Err(GrabError::Failed(anyhow!(
                "{} answered {status} instead of a JPEG",
                self.shown
            )));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_SNAPSHOT_BYTES {
                        return Err(GrabError::Failed(anyhow!(
                            "{} sent more than {MAX_SNAPSHOT_BYTES} bytes: is this URL a snapshot?",
                            self.shown
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return not_a_page(&self.shown, body),
                // The camera answered and then broke off: what came is a
                // truncated picture.
                Err(e) => {
                    return Err(GrabError::Corrupt(anyhow!(
                        "the answer from {} broke off after {} bytes: {}",
                        self.shown,
                        body.len(),
                        error_chain(&e.without_url())
                    )))
                }
            }
        }
    }
}

/// `body`, unless it is text (it starts with `<`, or is all printable):
/// a login page, an ISAPI `<ResponseStatus>` or a CGI's `Error` that a
/// camera answers with 200 OK. Decoded, it said only that the picture's
/// format could not be determined, which sent the technician to the
/// camera's encoder where the URL or the account was wrong.
fn not_a_page(shown: &str, body: Vec<u8>) -> Result<Vec<u8>, GrabError> {
    let start = &body[..body.len().min(200)];
    let text = !start.is_empty()
        && (start.first() == Some(&b'<')
            || start
                .iter()
                .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()));
    if !text {
        return Ok(body);
    }
    let excerpt: String = String::from_utf8_lossy(start)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(80)
        .collect();
    Err(GrabError::Failed(anyhow!(
        "{shown} answered text, not a picture ({} bytes: \"{excerpt}\"): a login page or an error; check the URL, the user and auth",
        body.len()
    )))
}

impl Source for SnapshotSource {
    fn grab(&mut self) -> Grab<'_> {
        Box::pin(async move {
            let bytes = self.fetch().await?;
            decode(bytes).await
        })
    }
}

/// Decodes a JPEG or PNG on a blocking thread.
pub(crate) async fn decode(bytes: Vec<u8>) -> Result<RgbImage, GrabError> {
    tokio::task::spawn_blocking(move || crate::footage::decode_bytes(&bytes))
        .await
        .map_err(|e| GrabError::Failed(anyhow!("the decoding thread failed: {e}")))?
        .map_err(GrabError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_failed_grab_says_where_without_the_password_in_the_url() {
        // A Reolink-style URL, password in the query; the camera answers 404
        // and then is gone.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        });
        let config: SnapshotConfig = toml::from_str(&format!(
            "url = \"http://{addr}/cgi-bin/api.cgi?cmd=Snap&channel=0&user=admin&password=S3cretPw\""
        ))
        .unwrap();
        let mut source = SnapshotSource::new(&config, Duration::from_secs(10)).unwrap();
        for _ in 0..2 {
            let err = match source.grab().await {
                Err(GrabError::Failed(e)) => format!("{e:#}"),
                other => panic!("{:?}", other.map(|f| f.dimensions())),
            };
            assert!(!err.contains("S3cretPw"), "{err}");
            assert!(err.contains(&format!("{addr}/cgi-bin/api.cgi")), "{err}");
        }
    }

    #[test]
    fn a_page_in_place_of_the_picture_is_named_as_text() {
        let page = b"<!DOCTYPE html>\n<html><head><title>Login</title></head></html>".to_vec();
        let err = match not_a_page("http://cam/snap.jpg", page) {
            Err(GrabError::Failed(e)) => format!("{e:#}"),
            other => panic!("{:?}", other.map(|b| b.len())),
        };
        assert!(
            err.contains("answered text, not a picture")
                && err.contains("<!DOCTYPE html> <html><head><title>Login"),
            "{err}"
        );
        let cgi = match not_a_page("http://cam/cgi", b"Error: no permission\r\n".to_vec()) {
            Err(GrabError::Failed(e)) => format!("{e:#}"),
            other => panic!("{:?}", other.map(|b| b.len())),
        };
        assert!(cgi.contains("\"Error: no permission\""), "{cgi}");
        // A JPEG goes through, as does an empty answer (to the decoder).
        let jpeg = crate::synth::encode_jpeg(&RgbImage::new(8, 8));
        assert_eq!(not_a_page("x", jpeg.clone()).ok(), Some(jpeg));
        assert_eq!(not_a_page("x", Vec::new()).ok(), Some(Vec::new()));
    }
}
