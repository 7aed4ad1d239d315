//! Webhook delivery: takes events from the outbox and POSTs them, signed, to
//! each control room, retrying until they are taken or expire.
//!
//! Per endpoint, events go one at a time, incidents first: the oldest
//! undelivered incident event, else the oldest undelivered event, is retried
//! until it is settled before the next one is tried ([`Outbox::head`]: after
//! a long outage a new fire does not wait behind the camera events queued
//! meanwhile). How an answer settles an attempt:
//!
//! - `2xx`: delivered.
//! - `410 Gone`: the endpoint is disabled (logged, counted, kept across
//!   restarts); a `test-alert` it answers with 2xx re-enables it.
//! - `408`, `425`, `429`, `5xx`, `3xx` (redirects are not followed: a signed
//!   POST must not turn into a GET elsewhere; the log says where one leads,
//!   since only a fixed `url` ends it), timeouts and network errors:
//!   retried after `Retry-After` (seconds or an HTTP date, at least
//!   `initial_backoff_s` and at most `max_backoff_s`) when the answer has
//!   one, else after an exponential
//!   backoff with full jitter.
//! - `401`, `403`, `404`, `405`, `407`, `421`: retried the same way. These say
//!   the endpoint cannot take anything now, not that this event is bad: a
//!   device clock more than 5 minutes off after a boot without network time
//!   (the receiver refuses the signature's timestamp with `401`), a secret
//!   being rotated, a proxy or a receiver being redeployed. Dropping on them
//!   would empty the outbox of every alert within seconds, one after another.
//!   A `401` dated (`Date`) more than the signature's tolerance from the
//!   device's clock goes again at once, signed with the receiver's time
//!   (`Endpoint::follow_receiver_clock`).
//! - `413` to an incident with a snapshot: it goes again at once without the
//!   picture (`"snapshot": null`, `snapshot_error` saying why), to every
//!   endpoint that has not taken it yet. A body of up to ~130 KB is over some
//!   frameworks' defaults (100 KB in Express's JSON parser), and an alert
//!   without its picture beats none. So does any other refusal for good of
//!   a body with a picture (below; `409` aside): a receiver that caps the
//!   body's size and answers `400` (Go's `MaxBytesReader` with
//!   `http.Error(w, err, 400)`), or one whose schema refuses the snapshot
//!   with `422`, dropped the alert.
//! - [`TIMEOUTS_BEFORE_NO_PICTURE`] attempts in a row of an incident with a
//!   snapshot that got no answer within `response_timeout_s`: it goes on
//!   without the picture, as for a `413`. Sending the body is part of that
//!   time, and 130 KB in 30 s needs 35 kbit/s: an LTE cell at the edge of
//!   its range can give less, and delivery is in order, so the picture would
//!   hold back this alert and every one behind it for as long as the link
//!   stays that slow.
//! - `409` to an incident whose picture was taken out (above): taken. Ids
//!   are never reused, so the other body the receiver holds under this id
//!   is the one with the picture, stored by an attempt it answered too late.
//! - any other `4xx` (`400`, `409`, `422`, ...) to a body with no picture
//!   to take out, or taken out already (`409` whatever the body): the
//!   receiver refuses this event for good; it is dropped for this endpoint
//!   (logged, counted) and the next one goes.
//!
//! No retry waits longer than `max_backoff_s`, also when the clock steps back
//! after it was set: delivery is in order, so one long wait would hold back
//! every alert queued behind it. Nor longer than it was set for, while the
//! worker that set it runs: it keeps that deadline on a clock that never
//! steps, as a step back under `max_backoff_s` would stretch it too.
//!
//! The connection has `connect_timeout_s`; the whole exchange, from sending to
//! the last byte of the answer read, has `response_timeout_s`. At most
//! `max_response_bytes` of an answer's body are read; the rest is cut off, so
//! a huge or endless answer costs bounded memory and time. An answer whose
//! status arrived counts by its status even if its body was cut off.
//!
//! Delivery is at-least-once: an event is marked delivered only after its
//! 2xx, so a crash in between sends it again, with the same `webhook-id`.
//! With the disk under the outbox full, `run`'s workers go on in memory
//! (see `Worker`): what a webhook takes is not sent again, and is recorded
//! once the outbox takes writes.
//!
//! The workers reach the outbox only through its thread
//! ([`OutboxHandle`]): in `run` they share the async thread with every
//! camera and the watchdog, which must not wait for an fsync.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::config::{Config, DeliveryConfig};
use crate::outbox::{self, now_unix, Outbox, Pending};
use crate::outbox_thread::OutboxHandle;
use crate::webhook::{self, Secret};

/// How many bytes of an answer body are shown in logs and by `test-alert`.
pub const BODY_PREVIEW_BYTES: usize = 200;

/// One control room: where to POST and the secrets that sign.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Where to POST, as configured; also the outbox's key for it.
    pub url: String,
    /// `url` as logs and messages show it ([`crate::redact::shown_url`]): a
    /// receiver may take a token in its query.
    pub shown: String,
    pub secrets: Vec<Secret>,
    /// Seconds added to the device's clock for the signature's timestamp:
    /// 0, or how far the receiver's clock is ahead once a `401` showed the
    /// two too far apart ([`Endpoint::follow_receiver_clock`]). Shared by
    /// the clones of this endpoint.
    signing_offset_s: Arc<AtomicI64>,
}

impl Endpoint {
    pub fn new(url: String, secrets: Vec<Secret>) -> Endpoint {
        let shown = crate::redact::shown_webhook(&url);
        Endpoint {
            url,
            shown,
            secrets,
            signing_offset_s: Arc::default(),
        }
    }

    /// The timestamp to sign with now: the device's clock, or the
    /// receiver's where they differ past its tolerance.
    fn signing_time(&self) -> i64 {
        crate::clock::wall_unix().floor() as i64 + self.signing_offset_s.load(Ordering::Relaxed)
    }

    /// After a `401` whose answer was dated `receiver_ahead_s` ahead of the
    /// device's clock: signs with the receiver's time from now on where the
    /// two are further apart than the receiver's tolerance, with the
    /// device's own where they are not (network time has set it since).
    /// Returns whether that changed how this endpoint is signed for, and so
    /// whether the refused event should go again at once.
    ///
    /// A Pi has no clock battery: after a power cut it boots to the time
    /// it last saved, and where the link lets HTTPS through but not network
    /// time (an APN that only reaches the control room's host), every
    /// signature was refused as stale and every alert waited, retried,
    /// until someone set the clock. Only a `401` moves the offset: an answer
    /// the receiver took shows its verifier agrees with the device, whatever
    /// a proxy in front of it writes in `Date`.
    fn follow_receiver_clock(&self, receiver_ahead_s: Option<i64>) -> bool {
        let Some(ahead) = receiver_ahead_s else {
            return false;
        };
        let offset = if ahead.abs() > webhook::TOLERANCE_S {
            ahead
        } else {
            0
        };
        let before = self.signing_offset_s.swap(offset, Ordering::Relaxed);
        if before == offset {
            return false;
        }
        if offset == 0 {
            info!(
                "{}: the device's clock agrees with the receiver's again: signing with it",
                self.shown
            );
        } else {
            warn!(
                "{}: refused (401) with an answer dated {offset} s from the device's clock, past the signature's {} s tolerance: signing with the receiver's time until the device's clock is set (network time)",
                self.shown,
                webhook::TOLERANCE_S
            );
        }
        true
    }

    /// The configured webhooks with their secrets read.
    pub fn from_config(config: &Config) -> Result<Vec<Endpoint>> {
        config
            .webhooks
            .iter()
            .map(|w| {
                let url = w.url.get_ref().clone();
                let secrets = w
                    .load_secrets()
                    .with_context(|| format!("webhook {}", crate::redact::shown_webhook(&url)))?;
                Ok(Endpoint::new(url, secrets))
            })
            .collect()
    }
}

/// Timeouts, limits and backoff for delivery.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_response_bytes: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl DeliveryOptions {
    pub fn from_config(config: &Config) -> DeliveryOptions {
        let d: &DeliveryConfig = &config.delivery;
        DeliveryOptions {
            connect_timeout: d.connect_timeout(),
            response_timeout: d.response_timeout(),
            max_response_bytes: *d.max_response_bytes.get_ref() as usize,
            initial_backoff: d.initial_backoff(),
            max_backoff: d.max_backoff(),
        }
    }
}

/// The HTTP client for webhooks: HTTPS through rustls, no redirects, no proxy
/// from the environment surprises beyond reqwest's defaults.
pub fn http_client(options: &DeliveryOptions) -> Result<reqwest::Client> {
    // reqwest is built without a default crypto provider; ring is ours. A
    // second install (another client) reports an error that changes nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wildfire-watch/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again; `after` is the receiver's `Retry-After`, if it gave one.
    Retry {
        after: Option<Duration>,
    },
    /// `410 Gone`: stop sending to this endpoint.
    Gone,
    /// A `4xx` that will not change on retry.
    Rejected,
}

/// One attempt: the outcome, and what the receiver said.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub outcome: Outcome,
    pub status: Option<u16>,
    /// The first [`BODY_PREVIEW_BYTES`] of the answer, lossy UTF-8.
    pub body_preview: String,
    /// Why there was no usable answer, or what went wrong reading it.
    pub error: Option<String>,
    /// No answer came within `response_timeout_s` (sending the body
    /// included), although a connection was made.
    pub timed_out: bool,
    /// How far the answer's `Date` is ahead of the device's clock, in
    /// seconds, where it has one.
    pub receiver_ahead_s: Option<i64>,
}

impl Attempt {
    /// A one-line description: `200 OK "stored"` or `error: timed out`.
    pub fn describe(&self) -> String {
        let mut s = match self.status {
            Some(code) => {
                let reason = reqwest::StatusCode::from_u16(code)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("");
                format!("{code} {reason} {:?}", self.body_preview)
            }
            None => String::from("no answer"),
        };
        if let Some(e) = &self.error {
            s.push_str(": ");
            s.push_str(e);
        }
        s
    }
}

/// What a status code means for delivery (see the module docs).
pub fn outcome_for_status(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        408 | 425 | 429 => Outcome::Retry { after: retry_after },
        // The endpoint, not the event: see the module docs.
        401 | 403 | 404 | 405 | 407 | 421 => Outcome::Retry { after: retry_after },
        400..=499 => Outcome::Rejected,
        _ => Outcome::Retry { after: retry_after },
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// "Now" for an HTTP-date `Retry-After`: the answer's own `Date`, where it
/// has one, as that date was set on the receiver's clock; the device's
/// clock can be months behind before network time sets it, and read
/// against it a date 30 s ahead looked months away (held at
/// `max_backoff_s`, 900 s, on every retry: clock review).
fn answered_at(headers: &reqwest::header::HeaderMap) -> std::time::SystemTime {
    receiver_date(headers).unwrap_or_else(std::time::SystemTime::now)
}

/// The answer's `Date`, if it has a valid one.
fn receiver_date(headers: &reqwest::header::HeaderMap) -> Option<std::time::SystemTime> {
    headers
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// The delay before retry number `attempts` (1 = the first retry): uniform
/// between zero and [`backoff_ceiling`] ("full jitter").
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    backoff_ceiling(attempts, initial, max).mul_f64(fastrand::f64())
}

/// `min(max, initial * 2^(attempts-1))`: the longest wait before retry
/// number `attempts`.
pub fn backoff_ceiling(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    initial.saturating_mul(1u32 << exponent).min(max)
}

/// POSTs one event to one endpoint, signed now, and reads the answer within
/// the limits. Never fails: every problem is an [`Attempt`] to retry.
pub async fn post(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    pending: &Pending,
    options: &DeliveryOptions,
) -> Attempt {
    let event = &pending.event;
    // The receiver holds this to its own clock: the real one (src/clock.rs),
    // or the receiver's where they disagree.
    let timestamp = endpoint.signing_time();
    let signature = webhook::sign(
        &endpoint.secrets,
        &event.id,
        timestamp,
        event.body.as_bytes(),
    );
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in [
        (webhook::HEADER_ID, event.id.as_str()),
        (webhook::HEADER_TIMESTAMP, &timestamp.to_string()),
        (webhook::HEADER_SIGNATURE, &signature),
    ] {
        match HeaderValue::from_str(value) {
            Ok(v) => {
                headers.insert(name, v);
            }
            Err(_) => {
                return Attempt {
                    outcome: Outcome::Rejected,
                    status: None,
                    body_preview: String::new(),
                    error: Some(format!(
                        "the event id {:?} cannot be an HTTP header",
                        event.id
                    )),
                    timed_out: false,
                    receiver_ahead_s: None,
                }
            }
        }
    }
    let request = client
        .post(&endpoint.url)
        .headers(headers)
        .body(event.body.clone());
    let deadline = tokio::time::Instant::now() + options.response_timeout;
    let response = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => {
            return Attempt {
                timed_out: true,
                ..no_answer(format!(
                    "no answer within {:?} (response_timeout_s)",
                    options.response_timeout
                ))
            }
        }
        // Without the URL reqwest appends: a receiver may take a token in it,
        // and this goes to the journal, the outbox and `test-alert`.
        Ok(Err(e)) => return no_answer(error_chain(&e.without_url())),
        Ok(Ok(r)) => r,
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, answered_at(response.headers())));
    let receiver_ahead_s = receiver_date(response.headers()).map(|date| {
        let date = date
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        (date - crate::clock::wall_unix()).round() as i64
    });
    let redirect = redirect_note(&response, &endpoint.url);
    let (body, error) = read_capped(response, options.max_response_bytes, deadline).await;
    let error = match (redirect, error) {
        (Some(note), Some(e)) => Some(format!("{note}; {e}")),
        (note, e) => note.or(e),
    };
    let preview = String::from_utf8_lossy(&body[..body.len().min(BODY_PREVIEW_BYTES)]).into_owned();
    // At most max_backoff: delivery per endpoint is in order, so one answer
    // asking for an hour would hold back every alert behind it for that hour.
    // At least initial_backoff: `Retry-After: 0`, or a date the device clock
    // has passed, would otherwise resend a 130 KB incident back to back over
    // LTE, with an fsync of the SD card for every attempt.
    let retry_after = retry_after.map(|d| d.max(options.initial_backoff).min(options.max_backoff));
    Attempt {
        outcome: outcome_for_status(status, retry_after),
        status: Some(status),
        body_preview: preview,
        error,
        timed_out: false,
        receiver_ahead_s,
    }
}

/// For a `3xx`, where it points and what to do: redirects are not followed
/// (module docs) and are retried like a `5xx`, so a URL that redirects (an
/// `http://` moved to `https://`, a path missing its trailing slash) holds
/// every alert until the configuration names where it leads. `None` for any
/// other answer.
fn redirect_note(response: &reqwest::Response, url: &str) -> Option<String> {
    if !response.status().is_redirection() {
        return None;
    }
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| reqwest::Url::parse(url).ok()?.join(location).ok());
    Some(match target {
        Some(target) => format!(
            "redirects to {}: set [[webhooks]] url to that address (redirects are not followed)",
            crate::redact::shown_url(&target)
        ),
        None => "a redirect without a usable Location: check [[webhooks]] url (redirects are not followed)".into(),
    })
}

fn no_answer(error: String) -> Attempt {
    Attempt {
        outcome: Outcome::Retry { after: None },
        status: None,
        body_preview: String::new(),
        error: Some(error),
        timed_out: false,
        receiver_ahead_s: None,
    }
}

/// An error with its sources, `outer: inner: innermost`, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Reads at most `cap` bytes of the body before `deadline`; the rest is never
/// read (dropping the response closes the connection).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    deadline: tokio::time::Instant,
) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return (
                    body,
                    Some("answer body cut off at response_timeout_s".into()),
                )
            }
            Ok(Err(e)) => {
                return (
                    body,
                    Some(format!(
                        "answer body broken: {}",
                        error_chain(&e.without_url())
                    )),
                )
            }
            Ok(Ok(None)) => return (body, None),
            Ok(Ok(Some(chunk))) => {
                let room = cap.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (
                        body,
                        Some(format!(
                            "answer body cut off at {cap} bytes (max_response_bytes)"
                        )),
                    );
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// Records an attempt's outcome in the outbox and logs it. Returns the delay
/// to wait before the next attempt at this endpoint (zero when it may go on).
pub fn settle(
    outbox: &Outbox,
    endpoint: &Endpoint,
    pending: &Pending,
    attempt: &Attempt,
    options: &DeliveryOptions,
) -> Result<Duration> {
    let id = &pending.event.id;
    let (url, shown) = (&endpoint.url, &endpoint.shown);
    match &attempt.outcome {
        Outcome::Delivered => {
            info!("{shown} took {id}: {}", attempt.describe());
            outbox.mark_delivered(url, pending.seq)?;
            Ok(Duration::ZERO)
        }
        Outcome::Rejected => {
            let size = pending.event.body.len();
            let (cause, hint) = match attempt.status {
                Some(413) => (
                    format!("a webhook refused the {size}-byte body as too large (413)"),
                    "raise the receiver's request size limit to get pictures",
                ),
                status => (
                    format!(
                        "a webhook refused the {size}-byte body with its picture for good ({})",
                        status.unwrap_or_default()
                    ),
                    "the receiver's logs say why it refused the body with the picture",
                ),
            };
            if refusal_takes_picture_out(attempt.status)
                && take_picture_out(outbox, endpoint, pending, &cause, hint)?
            {
                return Ok(Duration::ZERO);
            }
            warn!(
                "{shown} refused {id} for good: {}; dropped for this endpoint, check the receiver's logs",
                attempt.describe()
            );
            outbox.mark_rejected(url, pending.seq)?;
            Ok(Duration::ZERO)
        }
        Outcome::Gone => {
            warn!(
                "{shown} answered 410 Gone to {id}: endpoint disabled; fix [[webhooks]] url, or run `wildfire-watch test-alert` once the receiver is back to re-enable it"
            );
            outbox.disable_endpoint(url, &format!("410 Gone to {id}"))?;
            Ok(Duration::ZERO)
        }
        Outcome::Retry { after } => {
            let attempts = pending.attempts + 1;
            let delay = after
                .unwrap_or_else(|| backoff(attempts, options.initial_backoff, options.max_backoff));
            let hint = match attempt.status {
                Some(401 | 403) => " (a receiver refuses a signature whose timestamp is over 5 minutes from its clock: check `timedatectl` on the device and the webhook's secret)",
                Some(404 | 405 | 421) => " (check [[webhooks]] url and the receiver's route)",
                _ => "",
            };
            warn!(
                "{shown} did not take {id} (attempt {attempts}): {}{hint}; retrying in {:.1} s",
                attempt.describe(),
                delay.as_secs_f64()
            );
            outbox.mark_failed(
                url,
                pending.seq,
                now_unix() + delay.as_secs_f64(),
                &attempt.describe(),
            )?;
            Ok(delay)
        }
    }
}

/// When [`run`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// When no enabled endpoint has anything left to send.
    Idle,
    /// Never: waits for new events (woken by `new_events`, or polling).
    Forever,
}

/// How often an idle worker looks at the outbox for events another process
/// (or a missed wake-up) put there.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Delivers the outbox to every endpoint, one task per endpoint.
pub async fn run(
    outbox: OutboxHandle,
    endpoints: Vec<Endpoint>,
    options: DeliveryOptions,
    new_events: Arc<Notify>,
    until: Until,
) -> Result<()> {
    let client = http_client(&options)?;
    let mut tasks = tokio::task::JoinSet::new();
    for endpoint in endpoints {
        let (outbox, options, client, new_events) = (
            outbox.clone(),
            options.clone(),
            client.clone(),
            new_events.clone(),
        );
        tasks.spawn(async move {
            run_endpoint(&outbox, &endpoint, &options, &client, &new_events, until).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a delivery task panicked")??;
    }
    Ok(())
}

async fn run_endpoint(
    outbox: &OutboxHandle,
    endpoint: &Endpoint,
    options: &DeliveryOptions,
    client: &reqwest::Client,
    new_events: &Notify,
    until: Until,
) -> Result<()> {
    // Since when the outbox has refused writes (a full disk), if it does.
    let mut storage_failing: Option<std::time::Instant> = None;
    let mut worker = Worker {
        goes_on_without_writes: until == Until::Forever,
        ..Worker::default()
    };
    loop {
        let step = deliver_next(outbox, endpoint, options, client, &mut worker).await;
        let refused =
            worker.writes_refused || matches!(&step, Err(e) if outbox::is_storage_error(e));
        match (refused, storage_failing) {
            (true, None) if until == Until::Forever => {
                storage_failing = Some(std::time::Instant::now());
                error!(
                    "{}: cannot write to the outbox: free space on the disk under [outbox] path; delivery goes on, and what this webhook takes is recorded once there is room",
                    endpoint.shown
                );
            }
            (false, Some(since)) if worker.wrote => {
                storage_failing = None;
                info!(
                    "{}: the outbox takes writes again after {:.0} s: delivery goes on",
                    endpoint.shown,
                    since.elapsed().as_secs_f64()
                );
            }
            _ => {}
        }
        match step {
            Ok(Step::Went) => {}
            Ok(Step::NotDue(wait)) => {
                // Re-check at least every IDLE_POLL: the event may expire or
                // be settled by another process (test-alert) meanwhile.
                tokio::time::sleep(wait.min(IDLE_POLL)).await;
            }
            Ok(Step::Nothing) => {
                if until == Until::Idle {
                    return Ok(());
                }
                let _ = tokio::time::timeout(IDLE_POLL, new_events.notified()).await;
            }
            // Another process held the outbox past the busy timeout. If that
            // was the settling of an answered attempt, the event goes again
            // under the same id (at-least-once), which receivers expect.
            Err(e) if outbox::is_busy(&e) => {
                warn!(
                    "{}: the outbox is busy (another process is writing to it): {e:#}; retrying in {:.0} s",
                    endpoint.shown,
                    IDLE_POLL.as_secs_f64()
                );
                tokio::time::sleep(IDLE_POLL).await;
            }
            // The disk under the outbox is full (or fails writes) where the
            // worker could not go on without it (logged above); tried again
            // every IDLE_POLL. `deliver` (Until::Idle) stops with the error
            // instead.
            Err(e) if until == Until::Forever && outbox::is_storage_error(&e) => {
                tokio::time::sleep(IDLE_POLL).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What one turn of an endpoint's worker did.
enum Step {
    /// An attempt was made and settled, or left due to go again at once.
    Went,
    /// The oldest event is not due for this long.
    NotDue(Duration),
    /// Nothing to send: the endpoint is idle or disabled.
    Nothing,
}

/// Attempts of an incident with a picture after which, all without an
/// answer in `response_timeout_s`, it goes on without the picture (module
/// docs). Three, so that one slow moment of a link that is coming back does
/// not cost the control room its picture.
pub const TIMEOUTS_BEFORE_NO_PICTURE: u32 = 3;

/// The attempts in a row of one event, or of one incident's events, that
/// timed out.
#[derive(Default)]
struct TimeoutsInARow {
    of: TimedOut,
    count: u32,
}

/// What [`TimeoutsInARow`] counts for. An incident's updates count together:
/// on a link too slow for a picture, a growing fire stores its next update
/// (every `update_interval_s`, 60 s) before the one out times out a third
/// time (about 100 s) and drops it, and a count kept per event began again
/// at every update, so none was ever delivered, and everything behind
/// them, heartbeats and camera events, waited for the fire's end.
#[derive(Default, PartialEq)]
enum TimedOut {
    #[default]
    Nothing,
    Event(i64),
    Incident(String),
}

impl TimedOut {
    fn of(pending: &Pending) -> TimedOut {
        match &pending.event.incident {
            Some(incident) => TimedOut::Incident(incident.id.clone()),
            None => TimedOut::Event(pending.seq),
        }
    }
}

/// What an endpoint's worker keeps between attempts.
///
/// With the disk under the outbox full, nothing can be recorded, and the
/// worker goes on in memory rather than stand still: an event this webhook
/// took, or refused for good, is kept in `settled` (recorded as soon as the
/// outbox takes writes, and not sent again meanwhile: before, the same
/// ~130 KB incident went again every second, for as long as the disk stayed
/// full), the events behind it
/// go in turn, and an attempt whose outcome cannot be recorded (a failure,
/// a refusal) waits out a growing backoff here before it goes again.
#[derive(Default)]
struct Worker {
    /// Whether to go on without writes (`run`); `deliver` stops instead.
    goes_on_without_writes: bool,
    timeouts: TimeoutsInARow,
    /// Events this webhook took (true) or refused for good (false) whose
    /// settling the outbox could not record, oldest first.
    settled: Vec<(i64, bool)>,
    /// An event whose attempt's outcome the outbox could not record.
    unrecorded: Option<Unrecorded>,
    /// Whether this turn met an outbox that refuses writes.
    writes_refused: bool,
    /// Whether this turn committed a write.
    wrote: bool,
    /// The event whose retry this worker set, and when that retry is due on
    /// a clock that never steps: the time stored in the outbox is on the
    /// wall clock, and a step back of up to `max_backoff_s` would stretch a
    /// 5-s retry of a new fire, and every alert behind it, by the step.
    retry_due: Option<(i64, std::time::Instant)>,
}

/// An attempt the outbox could not record: when its event may go again.
struct Unrecorded {
    seq: i64,
    at: std::time::Instant,
    /// Its failures since the outbox last recorded one, for the backoff.
    failures: u32,
    /// The newest start when it failed: a later one makes it go at once.
    newest_start: Option<i64>,
}

/// What a turn reads before its attempt.
struct Turn {
    /// The oldest event owed to the endpoint, past those settled in memory.
    head: Option<Pending>,
    /// [`Outbox::newest_start`].
    newest_start: Option<i64>,
    /// Whether the expiry pass dropped something (a write).
    expired: bool,
    /// Whether the expiry pass met a disk that refuses writes.
    expiry_refused: bool,
}

async fn deliver_next(
    outbox: &OutboxHandle,
    endpoint: &Endpoint,
    options: &DeliveryOptions,
    client: &reqwest::Client,
    worker: &mut Worker,
) -> Result<Step> {
    worker.writes_refused = false;
    worker.wrote = false;
    let go_on = worker.goes_on_without_writes;
    if !worker.settled.is_empty() {
        let (url, settled) = (endpoint.url.clone(), worker.settled.clone());
        let recorded = outbox
            .call(move |outbox| -> Result<()> {
                for (seq, taken) in settled {
                    if taken {
                        outbox.mark_delivered(&url, seq)?;
                    } else {
                        outbox.mark_rejected(&url, seq)?;
                    }
                }
                Ok(())
            })
            .await?;
        match recorded {
            Ok(()) => {
                info!(
                    "{}: recorded {} deliveries the outbox could not record when they were settled",
                    endpoint.shown,
                    worker.settled.len()
                );
                worker.settled.clear();
                worker.wrote = true;
            }
            Err(e) if outbox::is_storage_error(&e) => worker.writes_refused = true,
            Err(e) => return Err(e),
        }
    }
    let (url, skip) = (
        endpoint.url.clone(),
        worker
            .settled
            .iter()
            .map(|(seq, _)| *seq)
            .collect::<Vec<i64>>(),
    );
    let turn = outbox
        .call(move |outbox| -> Result<Turn> {
            let (expired, expiry_refused) = match outbox.expire_old() {
                Ok(n) => (n > 0, false),
                Err(e) if go_on && outbox::is_storage_error(&e) => (false, true),
                Err(e) => return Err(e),
            };
            let (head, newest_start) = if outbox.disabled_reason(&url)?.is_some() {
                (None, None)
            } else {
                (outbox.head_skipping(&url, &skip)?, outbox.newest_start()?)
            };
            Ok(Turn {
                head,
                newest_start,
                expired,
                expiry_refused,
            })
        })
        .await??;
    let (head, newest_start) = (turn.head, turn.newest_start);
    worker.writes_refused |= turn.expiry_refused;
    worker.wrote |= turn.expired;
    let Some(pending) = head else {
        return Ok(Step::Nothing);
    };
    if let Some(u) = &worker.unrecorded {
        let now = std::time::Instant::now();
        if u.seq != pending.seq {
            worker.unrecorded = None;
        } else if now < u.at && u.newest_start == newest_start {
            return Ok(Step::NotDue(u.at - now));
        }
    }
    // Every retry is set at most max_backoff ahead, so a longer wait means
    // the clock stepped back since (network time correcting a clock that ran
    // ahead): waiting out the step would hold back every alert behind this
    // one for as long, so it goes now.
    let mut wait = pending.next_attempt_at - now_unix();
    if let Some((seq, due)) = worker.retry_due {
        if seq == pending.seq {
            let steady = due.saturating_duration_since(std::time::Instant::now());
            wait = wait.min(steady.as_secs_f64());
        }
    }
    if wait > 0.0 && wait <= options.max_backoff.as_secs_f64() + 1.0 {
        return Ok(Step::NotDue(Duration::from_secs_f64(wait)));
    }
    let attempt = post(client, endpoint, &pending, options).await;
    if attempt.status == Some(401) && endpoint.follow_receiver_clock(attempt.receiver_ahead_s) {
        // Left due: it goes again at once, signed anew.
        return Ok(Step::Went);
    }
    let timeouts = &mut worker.timeouts;
    let of = TimedOut::of(&pending);
    if timeouts.of != of {
        *timeouts = TimeoutsInARow { of, count: 0 };
    }
    timeouts.count = if attempt.timed_out {
        timeouts.count + 1
    } else {
        0
    };
    let too_slow = timeouts.count >= TIMEOUTS_BEFORE_NO_PICTURE;
    // A receiver that stored the picture body after all, answering too
    // late, holds this id and refuses the body without the picture (409):
    // taken (module docs).
    let held_already =
        attempt.status == Some(409) && crate::payload::picture_taken_out(&pending.event.body);
    let (seq, attempts, outcome) = (pending.seq, pending.attempts, attempt.outcome.clone());
    let (endpoint, options) = (endpoint.clone(), options.clone());
    let (initial, max) = (options.initial_backoff, options.max_backoff);
    // A refusal for good can wait in memory; one of a body with a picture
    // cannot (its picture is yet to be taken out).
    let refused_for_good = outcome == Outcome::Rejected
        && !(refusal_takes_picture_out(attempt.status)
            && crate::payload::has_snapshot(&pending.event.body));
    let settled = outbox
        .call(move |outbox| -> Result<Option<Duration>> {
            if too_slow
                && take_picture_out(
                    outbox,
                    &endpoint,
                    &pending,
                    &format!(
                        "a webhook gave no answer within {:?} (response_timeout_s) to the {}-byte body {TIMEOUTS_BEFORE_NO_PICTURE} times in a row",
                        options.response_timeout,
                        pending.event.body.len()
                    ),
                    "a faster link or a longer response_timeout_s keeps pictures",
                )?
            {
                return Ok(None);
            }
            if held_already {
                info!(
                    "{} holds {} already, with its picture (409 to the body without it): taken",
                    endpoint.shown, pending.event.id
                );
                outbox.mark_delivered(&endpoint.url, pending.seq)?;
                return Ok(None);
            }
            let delay = settle(outbox, &endpoint, &pending, &attempt, &options)?;
            let retrying = matches!(attempt.outcome, Outcome::Retry { .. });
            // A new fire stored while this attempt was out found it due and
            // woke nothing: it goes now, not after the backoff just set.
            if retrying
                && outbox.retry_now_if_started_since(&endpoint.url, pending.seq, newest_start)?
            {
                info!(
                    "{}: an incident started during the attempt: {} goes again at once",
                    endpoint.shown, pending.event.id
                );
                return Ok(None);
            }
            Ok(retrying.then_some(delay))
        })
        .await?;
    match settled {
        Ok(retry) => {
            worker.wrote = true;
            worker.unrecorded = None;
            worker.retry_due = retry.map(|delay| (seq, std::time::Instant::now() + delay));
            Ok(Step::Went)
        }
        Err(e) if go_on && outbox::is_storage_error(&e) => {
            worker.writes_refused = true;
            if outcome == Outcome::Delivered || held_already {
                worker.settled.push((seq, true));
                return Ok(Step::Went);
            }
            if refused_for_good && !too_slow {
                worker.settled.push((seq, false));
                return Ok(Step::Went);
            }
            // A failure, or a refusal the outbox cannot record: this event
            // goes again after a backoff that grows with each one, as the
            // outbox would have had it (a hot loop of ~130 KB otherwise).
            let failures = worker.unrecorded.as_ref().map_or(0, |u| u.failures) + 1;
            let delay = match outcome {
                Outcome::Retry { after: Some(after) } => after,
                _ => backoff(attempts + failures, initial, max),
            };
            worker.unrecorded = Some(Unrecorded {
                seq,
                at: std::time::Instant::now() + delay,
                failures,
                newest_start,
            });
            Ok(Step::NotDue(delay))
        }
        Err(e) => Err(e),
    }
}

/// Whether a refusal for good with `status` of a body with a picture sends
/// it again without the picture: every answer but `409`, whose receiver
/// holds another body under this id (see `held_already`); not a refusal
/// made here, with no answer (an id that cannot be a header).
fn refusal_takes_picture_out(status: Option<u16>) -> bool {
    matches!(status, Some(s) if s != 409)
}

/// Takes the picture out of `pending` (a refusal for good, or
/// [`TIMEOUTS_BEFORE_NO_PICTURE`] attempts without an answer: `cause`); it
/// stays due, so it goes again at once. Returns false, changing nothing,
/// when it has no picture. The reason goes into the body every webhook
/// gets, so `cause` names no URL (a webhook's URL can hold its token); the
/// journal gets the URL and `hint`.
fn take_picture_out(
    outbox: &Outbox,
    endpoint: &Endpoint,
    pending: &Pending,
    cause: &str,
    hint: &str,
) -> Result<bool> {
    let why = format!("{cause}; {}", crate::payload::TAKEN_OUT);
    let Some(body) = crate::payload::without_snapshot(&pending.event.body, &why) else {
        return Ok(false);
    };
    warn!(
        "{}: {why}: {} goes again at once; {hint}",
        endpoint.shown, pending.event.id
    );
    outbox.replace_body(pending.seq, &body)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome_for_status(204, None), Outcome::Delivered);
        assert_eq!(outcome_for_status(410, None), Outcome::Gone);
        assert_eq!(outcome_for_status(400, None), Outcome::Rejected);
        assert_eq!(outcome_for_status(409, None), Outcome::Rejected);
        assert_eq!(outcome_for_status(413, None), Outcome::Rejected);
        for s in [408, 425, 429, 500, 503, 301, 401, 403, 404, 405, 407, 421] {
            assert_eq!(
                outcome_for_status(s, None),
                Outcome::Retry { after: None },
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        // 2015-10-21 07:28:00 UTC is 1445412480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);

        // A date read against the answer's Date, not a device clock months
        // behind.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::DATE,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", answered_at(&headers)),
            Some(Duration::from_secs(30))
        );
        headers.insert(reqwest::header::DATE, "not a date".parse().unwrap());
        let fallback = answered_at(&headers);
        assert!(fallback
            .duration_since(SystemTime::now() - Duration::from_secs(60))
            .is_ok());
    }

    /// A log that tests can read, for the current thread.
    #[derive(Clone, Default)]
    struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test]
    async fn a_busy_outbox_is_waited_out_and_logged_not_fatal() {
        let log = Log::default();
        let _logging = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer({
                    let log = log.clone();
                    move || log.clone()
                })
                .finish(),
        );
        const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let store = dir.path().join("store");
        let receiver =
            crate::receiver::Receiver::open(&store, vec![Secret::parse(SECRET).unwrap()], 1 << 20)
                .unwrap();
        tokio::spawn(crate::receiver::serve(listener, Arc::new(receiver)));
        let path = dir.path().join("outbox.sqlite3");
        let outbox = Arc::new(
            Outbox::open(&path, vec![url.clone()], 100, Duration::from_secs(3600)).unwrap(),
        );
        outbox
            .enqueue(&crate::outbox::OutgoingEvent {
                id: "tower-7-e0".into(),
                kind: crate::outbox::EventKind::Incident,
                created_at: now_unix(),
                body: "{}".into(),
                incident: None,
            })
            .unwrap();
        outbox.set_busy_timeout(Duration::from_millis(20));

        // Another process holds the write lock past the busy timeout.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let options = DeliveryOptions {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            max_response_bytes: 4096,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        };
        let endpoint = Endpoint::new(url, vec![Secret::parse(SECRET).unwrap()]);
        let worker = tokio::spawn(run(
            OutboxHandle::spawn(outbox.clone()).unwrap(),
            vec![endpoint],
            options,
            Arc::new(Notify::new()),
            Until::Idle,
        ));
        // Bounded by a generous limit; not a speed target.
        for _ in 0..12_000 {
            if log.text().contains("the outbox is busy") || worker.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !worker.is_finished(),
            "the worker stopped: {:?}",
            worker.await
        );
        other.execute_batch("COMMIT").unwrap();
        tokio::time::timeout(Duration::from_secs(120), worker)
            .await
            .expect("delivery did not finish once the lock was released")
            .unwrap()
            .unwrap();
        let stats = outbox.stats().unwrap();
        assert_eq!((stats.pending_events, stats.delivered), (0, 1));
        assert!(store.join("000001-tower-7-e0.json").exists());
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(60));
        for attempts in 1..40 {
            let ceiling =
                Duration::from_secs(2u64.saturating_mul(1 << (attempts - 1).min(20))).min(max);
            let d = backoff(attempts, initial, max);
            assert!(d <= ceiling, "attempt {attempts}: {d:?} > {ceiling:?}");
        }
    }
}
