//! The live monitor, `wildfire-watch run`: cameras in, signed alerts out.
//!
//! Owns the wiring and the per-camera frame loop:
//!
//! - one tokio task per camera grabs a frame every `interval_s` (bounded by
//!   `grab_timeout_s`), tracks failures with backoff, notices a frozen
//!   picture, and reports `camera.offline` / `camera.online`; one camera's
//!   trouble never delays another's;
//! - one inference thread owns the detector and each camera's
//!   [`CameraPipeline`]; cameras hand it frames through a [`Mailbox`] that
//!   holds at most the newest frame per camera (older ones are dropped and
//!   counted as `busy`);
//! - incident events become webhook bodies with a snapshot, are committed to
//!   the outbox before any network I/O, and wake the delivery worker, which
//!   runs here as a task; each camera's running incidents are saved in the
//!   same transaction, and handed back to its confirmer after a restart;
//! - the outbox has a thread of its own ([`OutboxHandle`]): no task here
//!   ever waits for SQLite or its fsync, so a slow SD card delays alerts'
//!   storing but never a camera, a status answer or the watchdog;
//! - a heartbeat every `[heartbeat] interval_minutes`, the status endpoint,
//!   and systemd notification: `READY=1` once the model is loaded and the
//!   outbox open, `WATCHDOG=1` only while every camera task and the inference
//!   thread keep their deadlines (see [`crate::sdnotify`]) and no outbox call
//!   has run for [`OUTBOX_LIMIT`];
//! - with the outbox in memory (a disk that would not open it at the
//!   start), a look every 5 minutes for the disk's return
//!   ([`file_outbox_back`]), which ends the run; any stop then stores what
//!   memory holds in the file first ([`store_memory_in_file`]).
//!
//! The frame's capture wall time (when its grab began) is the event time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use image::RgbImage;
use serde_json::json;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::camera::{self, GrabError, Source, StuckDetector};
use crate::clock;
use crate::config::{CameraConfig, Config};
use crate::confirm::{OpenIncident, RECENT_IDS};
use crate::delivery::{self, DeliveryOptions, Endpoint, Until};
use crate::detector::Detector;
use crate::model::{Class, ModelInfo};
use crate::outbox::{self, now_unix, Enqueued, OfflineCamera, Outbox, OutgoingEvent, Storage};
use crate::outbox_thread::OutboxHandle;
use crate::payload::{self, CameraChange};
use crate::pipeline::{Admission, CameraPipeline, FrameGate, NEW_SIZE_AFTER_FRAMES};
use crate::sdnotify::{self, Liveness};
use crate::status::{self, CameraState, HeldBy, LiveState, OUTBOX_LIMIT};

/// Extra time a worker gets beyond what its next step should take.
const SLACK: Duration = Duration::from_secs(15);
/// How long the idle inference thread waits for a frame before checking in.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// An inference that takes longer than this is considered hung.
pub const INFERENCE_LIMIT: Duration = Duration::from_secs(180);
/// How long a stop waits for the inference thread to finish the frame it is
/// on, and commit the incident events that frame causes; a frame takes a
/// second or two on a Pi.
const INFERENCE_STOP: Duration = Duration::from_secs(10);
/// How long a stop then waits for the outbox thread to store what was sent
/// to it (camera events, a heartbeat). With INFERENCE_STOP, inside the unit's
/// TimeoutStopSec (30 s), so a slow disk's error is logged before systemd
/// kills the process.
const OUTBOX_DRAIN: Duration = Duration::from_secs(15);

/// How often `run`, with its outbox in memory, looks whether the disk takes
/// the file again ([`file_outbox_back`]). Each look is a `statvfs`, and only
/// when that finds room, an open of the file (checked whole, as at a start).
const FILE_OUTBOX_CHECK: Duration = Duration::from_secs(300);
/// Room wanted on that disk before going back, besides twice the bytes held
/// in memory (written once into the file, once into its log): about 60
/// alerts with pictures, so that a disk with a few kilobytes free, which
/// would take the copy and then refuse the next alert, is not taken for one
/// that is back.
const FILE_OUTBOX_SPARE: u64 = 8 << 20;
/// A stop's whole budget, inside the unit's TimeoutStopSec (30 s): what is
/// left of it after the inference thread and the outbox drain goes to
/// storing an outbox in memory in the file.
const STOP_BUDGET: Duration = Duration::from_secs(28);
/// Test seam: milliseconds between [`file_outbox_back`]'s looks, for
/// tests/fault_campaign.rs, which cannot wait 5 minutes.
pub const FILE_CHECK_ENV: &str = "WILDFIRE_WATCH_TEST_FILE_CHECK_MS";

/// How long a start may take to open (and check) the outbox before systemd
/// gives up on it: 10 minutes, a gigabyte read at under 2 MB/s.
const OUTBOX_OPEN_LIMIT: Duration = Duration::from_secs(600);

/// Test seam: milliseconds every outbox commit of `run` sleeps first
/// ([`Outbox::slow_commits`]), as on an SD card whose fsync stalls.
/// tests/monitor.rs sets it to prove that a stalled store stalls no camera,
/// status answer or watchdog ping; it has no use in service.
pub const COMMIT_DELAY_ENV: &str = "WILDFIRE_WATCH_TEST_COMMIT_DELAY_MS";
/// Test seam: milliseconds the inference thread sleeps between scoring a
/// frame and committing the incident events it caused, as a frame that takes
/// seconds on a Pi. tests/monitor.rs sets it to stop the service while the
/// frame that confirms a fire is in flight; it has no use in service.
pub const FRAME_DELAY_ENV: &str = "WILDFIRE_WATCH_TEST_FRAME_DELAY_MS";
/// The milliseconds a test seam's variable (`COMMIT_DELAY_ENV`,
/// `FRAME_DELAY_ENV`) sets; `None` when unset or not a number.
fn test_delay(var: &str) -> Option<Duration> {
    let ms = std::env::var(var).ok()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ms))
}
/// Events the outbox refused (a full disk) are kept in memory, at most this
/// many, and stored as soon as it takes writes again.
const MAX_HELD: usize = 100;
/// How often held events are tried again when nothing else is emitted.
const HELD_RETRY: Duration = Duration::from_secs(5);

/// A frame on its way to the detector.
pub struct Frame {
    pub image: Arc<RgbImage>,
    /// Unix seconds when its grab began.
    pub captured_at: f64,
    /// [`clock::steady_s`] at the same moment: the inference thread tells a
    /// step of the wall clock from time passing by the two.
    pub steady_at: f64,
    /// Per-camera sequence number, the `frame` of incident events.
    pub seq: u64,
}

/// At most one waiting frame per camera; the inference thread takes them in
/// turn, so a fast camera cannot starve a slow one.
pub struct Mailbox {
    slots: Mutex<(Vec<Option<Frame>>, usize)>,
    ready: Condvar,
}

impl Mailbox {
    pub fn new(cameras: usize) -> Mailbox {
        Mailbox {
            slots: Mutex::new(((0..cameras).map(|_| None).collect(), 0)),
            ready: Condvar::new(),
        }
    }

    /// Leaves `frame` for camera `index`; returns `true` when it replaced a
    /// frame the detector had not got to (that one is dropped).
    pub fn put(&self, index: usize, frame: Frame) -> bool {
        let mut guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let replaced = guard.0[index].replace(frame).is_some();
        self.ready.notify_one();
        replaced
    }

    /// The next waiting frame, cameras in turn, waiting up to `wait`.
    pub fn take(&self, wait: Duration) -> Option<(usize, Frame)> {
        let guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = self
            .ready
            .wait_timeout_while(guard, wait, |(slots, _)| slots.iter().all(Option::is_none))
            .unwrap_or_else(|e| e.into_inner());
        let (slots, next) = &mut *guard;
        let n = slots.len();
        for k in 0..n {
            let i = (*next + k) % n;
            if let Some(frame) = slots[i].take() {
                *next = (i + 1) % n;
                return Some((i, frame));
            }
        }
        None
    }
}

/// Everything the workers share.
struct Shared {
    config: Config,
    state: Arc<LiveState>,
    outbox: OutboxHandle,
    new_events: Arc<Notify>,
    mailbox: Mailbox,
    liveness: Liveness,
    /// Events the outbox could not store yet, oldest first; only the outbox
    /// thread touches them.
    held: Arc<Mutex<Vec<OutgoingEvent>>>,
}

impl Shared {
    /// Hands `event` to the outbox thread, which commits it after any events
    /// held before it and wakes delivery; returns at once, so a camera task
    /// never waits for the disk. An outbox that cannot store (a full disk) is
    /// logged loudly and the event held in memory until it can; the monitor
    /// keeps watching.
    fn emit(&self, event: OutgoingEvent) {
        let new_events = self.new_events.clone();
        let held = self.held.clone();
        let state = self.state.clone();
        self.outbox.send(move |outbox| {
            let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
            let id = event.id.clone();
            held.push(event);
            if let Err(e) = store_held(outbox, &new_events, &mut held) {
                error!(
                    "cannot store {id} in the outbox: {e:#}: free space on the disk under [outbox] path; {} event(s) held in memory until it takes writes",
                    held.len()
                );
                if held.len() > MAX_HELD {
                    let dropped = held.remove(0);
                    error!(
                        "dropping {} held in memory: more than {MAX_HELD} events wait for the outbox",
                        dropped.id
                    );
                }
            }
            state.set_held(HeldBy::OutboxThread, held.len());
        });
    }

    /// Tries the held events again (on the outbox thread); logs when the
    /// outbox takes them.
    fn retry_held(&self) {
        let new_events = self.new_events.clone();
        let held = self.held.clone();
        let state = self.state.clone();
        self.outbox.send(move |outbox| {
            let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
            let waiting = held.len();
            if waiting > 0 && store_held(outbox, &new_events, &mut held).is_ok() {
                info!("the outbox takes writes again: {waiting} held event(s) stored");
            }
            state.set_held(HeldBy::OutboxThread, held.len());
        });
    }

    /// Commits `camera`'s incident `events` together with its running
    /// incidents (JSON, `None` for none), as [`Outbox::record`], waiting for
    /// the commit (the inference thread's own time, no task's); true once
    /// stored.
    fn record(
        &self,
        events: &[OutgoingEvent],
        camera: &str,
        open_incidents: Option<String>,
    ) -> bool {
        let new_events = self.new_events.clone();
        let camera = camera.to_string();
        // kept by the caller too, to try again when this commit fails
        let events = events.to_vec();
        let recorded = self.outbox.call_blocking(move |outbox| {
            match outbox.record(&events, &camera, open_incidents.as_deref()) {
                Ok(enqueued) => {
                    for (event, enqueued) in events.iter().zip(enqueued) {
                        stored(&new_events, event, enqueued);
                    }
                    true
                }
                Err(e) => {
                    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
                    error!(
                        "camera {camera}: cannot store its events {ids:?} and running incidents in the outbox: {e:#}: check the disk under [outbox] path"
                    );
                    false
                }
            }
        });
        recorded.unwrap_or_else(|e| {
            error!("{e:#}");
            false
        })
    }
}

/// Stores the held events, oldest first, until one fails (on the outbox
/// thread).
fn store_held(outbox: &Outbox, new_events: &Notify, held: &mut Vec<OutgoingEvent>) -> Result<()> {
    while let Some(event) = held.first() {
        let enqueued = outbox.enqueue(event)?;
        stored(new_events, event, enqueued);
        held.remove(0);
    }
    Ok(())
}

/// After an event's commit (on the outbox thread): wakes delivery.
fn stored(new_events: &Notify, event: &OutgoingEvent, enqueued: Enqueued) {
    match enqueued {
        Enqueued::Stored { .. } | Enqueued::AlreadyQueued => new_events.notify_one(),
        Enqueued::DroppedFull => {
            warn!("outbox full of more important events: {} dropped", event.id)
        }
    }
}

/// Runs the monitor until SIGTERM or SIGINT; prints `status on http://ADDR`
/// on stdout once the status endpoint is bound.
pub fn run(config: Config, detector: Detector) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run_async(config, detector));
    // A grab hung in a blocking call must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run_async(config: Config, detector: Detector) -> Result<()> {
    if config.cameras.is_empty() {
        anyhow::bail!("no [[cameras]] in the configuration: add one (see systemd/wildfire-watch.example.toml)");
    }
    let endpoints = Endpoint::from_config(&config)?;
    if endpoints.is_empty() {
        warn!("no [[webhooks]]: events are kept in the outbox (incidents until taken, others up to [outbox] max_age_hours) for the first webhook added; until then they alert nobody");
    }
    let options = DeliveryOptions::from_config(&config);
    match crate::clock::synchronized() {
        Some(false) => warn!("the system clock is not synchronized to network time yet: events are stamped on it, marked \"clock_synchronized\": false, until it is (timedatectl shows its state)"),
        None if cfg!(target_os = "linux") => warn!("cannot read the clock's state (adjtimex refused: a system call filter?): events are marked \"clock_synchronized\": null; the shipped unit allows adjtimex and clock_adjtime"),
        _ => {}
    }
    // Opening checks every page of the outbox (PRAGMA quick_check): after a
    // long outage it can hold thousands of incidents with pictures (up to
    // ~1 GB at max_events = 10000), and an SD card reads 10-40 MB/s, so the
    // check may need longer than the unit's TimeoutStartSec (120 s). Without
    // this, systemd would kill the start and restart it, over and over,
    // right when the backlog matters most.
    if let Err(e) = sdnotify::notify(&format!(
        "EXTEND_TIMEOUT_USEC={}\nSTATUS=checking the outbox",
        OUTBOX_OPEN_LIMIT.as_micros()
    )) {
        warn!("cannot tell systemd the start may take longer: {e}");
    }
    let (mut outbox, set_aside, storage) = Outbox::for_service(&config)?;
    // The control room hears first that alerts no longer survive a stop.
    let in_memory = match storage {
        Storage::File => None,
        Storage::InMemory { problem } => {
            let event = payload::outbox_unavailable(&config.device, &problem, now_unix());
            outbox
                .enqueue(&event)
                .context("cannot store outbox.unavailable in the outbox in memory")?;
            Some(problem)
        }
    };
    // The control room hears of every damaged outbox set aside, first in the
    // new outbox. A copy's notice file is removed only once its event is
    // stored on disk: in an outbox in memory a stop loses it, and a copy
    // without a notice counts as reported, so the disk may reclaim it.
    // Should the disk refuse one (full), it and the rest are held in memory
    // like any other event, in order, and their notices stay: the next
    // start sends them again under the same ids.
    let mut unstored = Vec::new();
    for set_aside in &set_aside {
        let event = payload::outbox_replaced(&config.device, set_aside);
        if !unstored.is_empty() {
            unstored.push(event);
            continue;
        }
        match outbox.enqueue(&event) {
            Ok(Enqueued::Stored { .. } | Enqueued::AlreadyQueued) if in_memory.is_none() => {
                set_aside.reported()
            }
            Ok(Enqueued::Stored { .. } | Enqueued::AlreadyQueued) => {}
            Ok(Enqueued::DroppedFull) => warn!(
                "{} did not fit in the outbox (full of incidents); its notice stays for the next start",
                event.id
            ),
            Err(e) => {
                error!("cannot store {} in the outbox: {e:#}; held in memory", event.id);
                unstored.push(event);
            }
        }
    }
    // The cameras the last run reported offline: each stays offline until
    // its frames return, which then reports camera.online. Before, a
    // restart while a camera was out forgot it: its return was never
    // reported, and every restart reported it offline again.
    let configured: Vec<&str> = config
        .cameras
        .iter()
        .map(|c| c.id.get_ref().as_str())
        .collect();
    let offline_at_start = outbox.offline_cameras(&configured).unwrap_or_else(|e| {
        warn!("cannot read which cameras were offline: {e:#}; each is reported afresh");
        Vec::new()
    });
    unstored.extend(end_incidents_of_unconfigured_cameras(
        &outbox,
        &config,
        &configured,
        detector.info(),
    ));
    let gates: Vec<FrameGate> = configured
        .iter()
        .map(|camera| frame_gate_at_start(&outbox, camera))
        .collect();
    if let Some(delay) = test_delay(COMMIT_DELAY_ENV) {
        warn!("{COMMIT_DELAY_ENV}={}: every outbox commit sleeps that long first (a test seam; unset it in service)", delay.as_millis());
        outbox.slow_commits(delay);
    }
    // In `run` the outbox thread is the only user of the connection.
    let outbox = OutboxHandle::spawn(Arc::new(outbox))?;
    let sources = config
        .cameras
        .iter()
        .map(camera::open)
        .collect::<Result<Vec<Box<dyn Source>>>>()?;
    let listen = config.status.listen.get_ref().clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} ([status] listen): is the address right and free?")
        })?;
    let ids: Vec<String> = config
        .cameras
        .iter()
        .map(|c| c.id.get_ref().clone())
        .collect();
    let mut state = LiveState::new(ids.clone(), outbox.clone());
    state.outbox_in_memory = in_memory;
    let state = Arc::new(state);
    let mut workers: Vec<String> = ids.iter().map(|id| format!("camera {id}")).collect();
    workers.push("inference".into());
    let first_deadline = config
        .cameras
        .iter()
        .map(|c| c.grab_timeout())
        .max()
        .unwrap_or_default()
        + SLACK;
    let shared = Arc::new(Shared {
        liveness: Liveness::new(workers, first_deadline),
        held: Arc::new(Mutex::new(Vec::new())),
        mailbox: Mailbox::new(config.cameras.len()),
        state: state.clone(),
        outbox: outbox.clone(),
        new_events: Arc::new(Notify::new()),
        config,
    });

    for event in unstored {
        shared.emit(event);
    }

    // Tests and scripts read this line to learn the port of `listen = "...:0"`.
    println!("status on http://{}", listener.local_addr()?);
    info!(
        "watching {} camera(s) with model {} {}; status on http://{}",
        shared.config.cameras.len(),
        detector.info().name,
        detector.info().version,
        listener.local_addr()?
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (inference_done_tx, mut inference_done) = tokio::sync::oneshot::channel();
    let inference = std::thread::Builder::new()
        .name("inference".into())
        .spawn({
            let (shared, stop) = (shared.clone(), stop.clone());
            move || {
                let result = inference_loop(&shared, detector, &stop);
                let _ = inference_done_tx.send(result);
            }
        })
        .context("cannot start the inference thread")?;

    let mut tasks = tokio::task::JoinSet::new();
    for ((index, source), gate) in sources.into_iter().enumerate().zip(gates) {
        let offline = offline_at_start
            .iter()
            .find(|c| c.camera == *shared.config.cameras[index].id.get_ref())
            .cloned();
        tasks.spawn(camera_task(shared.clone(), index, source, offline, gate));
    }
    tasks.spawn(heartbeat_task(shared.clone()));
    tasks.spawn(held_task(shared.clone()));
    tasks.spawn(watchdog_task(shared.clone()));
    let status_server = tokio::spawn(status::serve(listener, state));
    let delivery_task = tokio::spawn(delivery::run(
        outbox,
        endpoints,
        options,
        shared.new_events.clone(),
        Until::Forever,
    ));
    // Without webhooks delivery ends at once: that is no reason to stop.
    let delivery = async {
        match delivery_task.await {
            Ok(Ok(())) => std::future::pending().await,
            Ok(Err(e)) => Err(e.context("delivery stopped")),
            Err(e) => Err(anyhow!("delivery panicked: {e}")),
        }
    };

    if let Err(e) = sdnotify::notify("READY=1\nSTATUS=watching") {
        warn!("cannot tell systemd we are ready: {e}");
    }

    // With the outbox in memory, a disk that takes the file again ends the
    // run: the stop below stores what memory holds in the file, and systemd
    // (Restart=always) starts the service again on it.
    let back_to_file = async {
        if shared.state.outbox_in_memory.is_some() {
            file_outbox_back(&shared).await
        } else {
            std::future::pending().await
        }
    };
    let mut inference_ended = false;
    let mut file_back = None;
    let outcome = tokio::select! {
        r = shutdown_signal() => r.map(|name| info!("{name}: stopping")),
        (why, file) = back_to_file => {
            file_back = Some(file);
            Err(anyhow!(
                "{why}: stopping, to be started again on the outbox file (systemd restarts the service; the events kept in memory are stored in the file first)"
            ))
        }
        r = &mut inference_done => {
            inference_ended = true;
            Err(match r {
                Ok(Err(e)) => e.context("the inference thread stopped"),
                _ => anyhow!("the inference thread stopped"),
            })
        }
        r = delivery => r,
        r = status_server => Err(match r {
            Ok(Err(e)) => e.context("the status endpoint stopped"),
            _ => anyhow!("the status endpoint stopped"),
        }),
        Some(r) = tasks.join_next() => Err(anyhow!("a camera or timer task ended: {r:?}")),
    };
    let _ = sdnotify::notify("STOPPING=1");
    let stopping = Instant::now();
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    // The frame being scored may be the one that confirms a fire: its
    // incident.started and running incident are committed before the drain
    // below, not lost with the process.
    if !inference_ended
        && tokio::time::timeout(INFERENCE_STOP, &mut inference_done)
            .await
            .is_err()
    {
        error!(
            "the inference thread did not finish its frame within {} s of the stop: that frame's events may be lost",
            INFERENCE_STOP.as_secs()
        );
    }
    drop(inference);
    // Calls run in order: once this one answers, every event sent before it
    // (a camera going offline just now) is on disk.
    match tokio::time::timeout(OUTBOX_DRAIN, shared.outbox.call(|_| ())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!("{e:#}"),
        Err(_) => error!(
            "the outbox did not store what it was given within {} s of the stop: the disk under [outbox] path is stuck; the last events may be lost",
            OUTBOX_DRAIN.as_secs()
        ),
    }
    let lost: Vec<String> = (shared.held.lock().unwrap_or_else(|e| e.into_inner()))
        .iter()
        .map(|e| e.id.clone())
        .collect();
    if !lost.is_empty() {
        error!(
            "stopping with events the outbox could not store: {lost:?} are lost; free space on the disk under [outbox] path"
        );
    }
    if shared.state.outbox_in_memory.is_some() {
        let budget = STOP_BUDGET.saturating_sub(stopping.elapsed());
        store_memory_in_file(&shared, file_back, budget).await;
    }
    outcome
}

/// Waits, with the outbox in memory, until the disk under `[outbox] path`
/// takes the file again ([`Outbox::file_takes_writes`]: not read-only, room
/// for twice what memory holds and [`FILE_OUTBOX_SPARE`], the file opens and
/// commits a write); returns what it found, and the file opened. The look
/// runs on a blocking thread: opening checks the whole file, which can take
/// minutes on a card, and the outbox thread must go on storing alerts
/// meanwhile. The stop copies into the file this look opened, rather than
/// check it again inside the stop's budget.
async fn file_outbox_back(shared: &Arc<Shared>) -> (String, Outbox) {
    let every = test_delay(FILE_CHECK_ENV).unwrap_or(FILE_OUTBOX_CHECK);
    let mut last_refusal = String::new();
    loop {
        tokio::time::sleep(every).await;
        let held = match shared.outbox.call(|memory| memory.held_bytes()).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) | Err(e) => {
                warn!("cannot measure the outbox in memory: {e:#}");
                continue;
            }
        };
        let needed = held.saturating_mul(2).saturating_add(FILE_OUTBOX_SPARE);
        let look = tokio::task::spawn_blocking({
            let shared = shared.clone();
            move || Outbox::file_takes_writes(&shared.config, needed)
        })
        .await;
        match look {
            Ok(Ok(file)) => {
                let why = format!(
                    "the disk under [outbox] path takes the outbox file {} again",
                    shared.config.outbox.path.display()
                );
                return (why, file);
            }
            Ok(Err(e)) => {
                let refusal = format!("{e:#}");
                if refusal != last_refusal {
                    info!("the outbox stays in memory: {refusal}");
                    last_refusal = refusal;
                }
            }
            Err(e) => warn!("the look at the outbox file failed: {e}"),
        }
    }
}

/// At a stop with the outbox in memory, stores what it holds in the file at
/// `[outbox] path` ([`Outbox::copy_into`]), if the disk takes it now, within
/// `budget`, and after it an `outbox.restored` event: the next start sends
/// those events and continues those incidents. `file` is the file
/// [`file_outbox_back`] opened, where it ended the run; a stop for another
/// reason opens it here. A copy cut short by the
/// budget (systemd then kills the process) commits nothing; what memory held
/// is lost, as it was before.
async fn store_memory_in_file(shared: &Arc<Shared>, file: Option<Outbox>, budget: Duration) {
    let copy = shared.outbox.call({
        let shared = shared.clone();
        move |memory| -> Result<outbox::Copied> {
            let file = match file {
                Some(file) => file,
                None => Outbox::for_config(&shared.config)?,
            };
            let copied = memory.copy_into(&file)?;
            // What memory held is safe whether or not this notice is.
            let problem = shared.state.outbox_in_memory.as_deref().unwrap_or_default();
            let restored =
                payload::outbox_restored(&shared.config.device, problem, copied.events, now_unix());
            if let Err(e) = file.enqueue(&restored) {
                warn!("cannot store {} in the outbox file: {e:#}", restored.id);
            }
            Ok(copied)
        }
    });
    match tokio::time::timeout(budget, copy).await {
        Ok(Ok(Ok(copied))) => info!(
            "stored the {} event(s) and the running incidents of {} camera(s) kept in memory in the outbox file: the next start sends them",
            copied.events, copied.cameras_with_running_incidents
        ),
        Ok(Ok(Err(e)) | Err(e)) => error!(
            "the outbox is in memory and the file still refuses it ({e:#}): what memory holds is lost at this stop"
        ),
        Err(_) => error!(
            "storing the outbox in memory in the file took over {:.0} s: what memory holds may be lost at this stop",
            budget.as_secs_f64()
        ),
    }
}

async fn shutdown_signal() -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// One camera: grab, judge health, hand frames to the detector.
/// `offline`: the camera as the last run reported it offline, if it did;
/// `gate`: which of its frames to score ([`frame_gate_at_start`]).
async fn camera_task(
    shared: Arc<Shared>,
    index: usize,
    mut source: Box<dyn Source>,
    offline: Option<OfflineCamera>,
    mut gate: FrameGate,
) {
    let camera: &CameraConfig = &shared.config.cameras[index];
    let id = camera.id.get_ref();
    let status = &shared.state.cameras[index];
    let (interval, timeout) = (camera.interval(), camera.grab_timeout());
    let offline_after = *camera.offline_after_failures.get_ref();
    let mut stuck = StuckDetector::new(*camera.stuck_tolerance.get_ref(), camera.stuck_after());
    let mut failures = 0u32;
    // Reported stuck by the last run: back once the picture changes, not at
    // the first frame (the detector, new, has nothing to compare it with).
    let mut stuck_at_start = offline.as_ref().is_some_and(|o| o.stuck);
    // On the steady clock, as go_offline returns it.
    let mut offline_since: Option<f64> = offline.map(|o| {
        info!(
            "camera {id}: reported offline by the last run ({}): it stays so until its frames return",
            o.reason
        );
        let mut s = status.lock();
        s.state = CameraState::Offline;
        s.last_error = Some(o.reason);
        clock::steady_s() - (now_unix() - o.since).max(0.0)
    });
    let mut seq = 0u64;
    loop {
        let started = Instant::now();
        let (captured_at, steady_at) = (now_unix(), clock::steady_s());
        shared.liveness.expect_within(index, timeout + SLACK);
        let result = match tokio::time::timeout(timeout, source.grab()).await {
            Ok(r) => r,
            Err(_) => Err(GrabError::Failed(anyhow!(
                "no frame within {:.1} s (grab_timeout_s)",
                timeout.as_secs_f64()
            ))),
        };
        let result = result.map(Arc::new);
        let admission = result.as_ref().ok().map(|image| gate.admit(image));
        let delay = match (result, admission) {
            // A frame of another size than the camera's (a boot screen, a
            // sub-stream's snapshot) is no evidence either way: skipped, it
            // neither ends running incidents nor brings the camera online.
            (Ok(image), Some(Admission::OddSize { usual, count })) => {
                if count.is_power_of_two() {
                    warn!(
                        "camera {id}: a {}x{} frame among {}x{} ones, skipped ({count} so far): a boot screen, or snapshots from another stream? A new size is taken after {NEW_SIZE_AFTER_FRAMES} frames in a row",
                        image.width(), image.height(), usual.0, usual.1
                    );
                }
                status.skip("size");
                interval.saturating_sub(started.elapsed())
            }
            (Ok(image), admission) => {
                failures = 0;
                seq += 1;
                // A camera reset or a firmware update can change the size:
                // tiles then cover other places, so running incidents end
                // unseen and fires start again over the new tiles
                // (src/confirm.rs).
                if let Some(Admission::Score {
                    resized_from: Some(was),
                }) = admission
                {
                    warn!(
                        "camera {id}: frames are now {}x{}, not {}x{}: running incidents end, and a fire still burning starts again; check the camera's settings",
                        image.width(), image.height(), was.0, was.1
                    );
                }
                // Steady time: a step of the wall clock is neither a picture
                // frozen for a day nor one that just changed.
                let stuck_for = stuck.check(&image, steady_at);
                {
                    let mut s = status.lock();
                    s.frames += 1;
                    s.last_frame = Some((Instant::now(), captured_at));
                    s.latest = Some(image.clone());
                }
                // A picture judged unchanged is reported, and still scored:
                // the comparison cannot tell a frozen encoder from a still
                // night smoothed by the camera's noise reduction with a
                // distant fire starting in it (an 80 px flame in a 1080p
                // frame covers 16 of the 5,184 sampled pixels: brighter by
                // 150 grey levels, it moves their mean by about 0.5, under
                // the default tolerance of 1). A repeat to the pixel is not
                // scored ([`FrameGate`]).
                if let Some(Admission::Repeat { .. }) = admission {
                    status.skip("repeat");
                } else {
                    let frame = Frame {
                        image,
                        captured_at,
                        steady_at,
                        seq,
                    };
                    if shared.mailbox.put(index, frame) {
                        status.skip("busy");
                    }
                }
                match stuck_for {
                    Some(seconds) => {
                        let reason = format!(
                            "the picture has not changed for {} (stuck_after_minutes): a frozen encoder or a cached snapshot",
                            if seconds >= 120.0 {
                                format!("{:.0} min", seconds / 60.0)
                            } else {
                                format!("{seconds:.0} s")
                            }
                        );
                        status.lock().last_error = Some(reason.clone());
                        if offline_since.is_none() {
                            offline_since = Some(go_offline(&shared, index, &reason, true));
                        }
                    }
                    // The same picture as the last run reported stuck.
                    None if stuck_at_start && !stuck.changed() => {}
                    None => {
                        stuck_at_start = false;
                        if let Some(since) = offline_since.take() {
                            go_online(&shared, index, since);
                        }
                        status.lock().state = CameraState::Online;
                    }
                }
                interval.saturating_sub(started.elapsed())
            }
            (Err(GrabError::Wedged(e)), _) => {
                // Ends the monitor (run_async): systemd restarts the service
                // and the process's end frees the device.
                status.skip("wedged");
                error!(
                    "camera {id}: {e:#}: stopping, so that the service restarts and the device is freed"
                );
                return;
            }
            (Err(e), _) => {
                failures += 1;
                let reason = if started.elapsed() >= timeout {
                    "timeout"
                } else {
                    e.reason()
                };
                status.skip(reason);
                let message = e.to_string();
                // Once offline (the control room knows), the journal gets
                // failures 4, 8, 16, ... rather than one line per grab.
                if offline_since.is_none() || failures.is_power_of_two() {
                    warn!("camera {id}: {message} (failure {failures} in a row)");
                }
                status.lock().last_error = Some(message.clone());
                if failures >= offline_after && offline_since.is_none() {
                    offline_since = Some(go_offline(
                        &shared,
                        index,
                        &format!("{failures} grabs failed in a row; last: {message}"),
                        false,
                    ));
                }
                // Reported offline, the camera is tried every interval, so
                // that detection resumes within one interval of its return
                // (a camera back after 10 minutes waited up to max_backoff_s,
                // 5 minutes, before: tests/fault_campaign.rs). Before that,
                // failures back off as configured.
                if offline_since.is_some() {
                    interval
                } else {
                    camera::retry_delay(failures, interval, camera.max_backoff())
                }
            }
        };
        shared
            .liveness
            .expect_within(index, delay + timeout + SLACK);
        tokio::time::sleep(delay).await;
    }
}

/// Reports camera `index` offline, `stuck` (its picture stopped changing)
/// or for failed grabs; returns when, in [`clock::steady_s`].
fn go_offline(shared: &Shared, index: usize, reason: &str, stuck: bool) -> f64 {
    let camera = &shared.config.cameras[index];
    let at = now_unix();
    warn!("camera {} offline: {reason}", camera.id.get_ref());
    shared.state.cameras[index].lock().state = CameraState::Offline;
    shared.emit(payload::camera_event(
        &shared.config.device,
        camera,
        CameraChange::Offline,
        reason,
        at,
    ));
    let offline = OfflineCamera {
        camera: camera.id.get_ref().clone(),
        since: at,
        reason: reason.to_string(),
        stuck,
    };
    note_camera(shared, index, Some(offline));
    clock::steady_s()
}

/// Notes in the outbox, after the camera event, that camera `index` is
/// offline, or (`None`) back: for the next start.
fn note_camera(shared: &Shared, index: usize, offline: Option<OfflineCamera>) {
    let id = shared.config.cameras[index].id.get_ref().clone();
    shared.outbox.send(move |outbox| {
        let noted = match &offline {
            Some(offline) => outbox.note_offline(offline),
            None => outbox.note_online(&id),
        };
        if let Err(e) = noted {
            warn!("camera {id}: cannot note its state in the outbox: {e:#}; a restart reports it afresh");
        }
    });
}

fn go_online(shared: &Shared, index: usize, offline_since: f64) {
    let camera = &shared.config.cameras[index];
    let at = now_unix();
    let reason = format!(
        "frames again after {:.0} s offline",
        clock::steady_s() - offline_since
    );
    info!("camera {} online: {reason}", camera.id.get_ref());
    shared.state.cameras[index].lock().last_error = None;
    shared.emit(payload::camera_event(
        &shared.config.device,
        camera,
        CameraChange::Online,
        &reason,
        at,
    ));
    note_camera(shared, index, None);
}

/// The detector's thread: frames in, incident events out to the outbox.
fn inference_loop(shared: &Shared, mut detector: Detector, stop: &AtomicBool) -> Result<()> {
    let slot = shared.config.cameras.len();
    let mut pipelines: Vec<CameraPipeline> = shared
        .config
        .cameras
        .iter()
        .map(|c| {
            CameraPipeline::new(
                c.id.get_ref(),
                c.confirm.clone(),
                c.ignore_mask(),
                &detector,
            )
        })
        .collect();
    // The running incidents last saved per camera.
    let mut saved: Vec<SavedIncidents> = Vec::new();
    saved.resize_with(pipelines.len(), SavedIncidents::default);
    // Incident events the outbox refused (a full disk), per camera: they go
    // again, first, with the camera's next frame, or every HELD_RETRY while
    // no frame comes (a camera lost to the fire it reported).
    let mut unsaved: Vec<Vec<OutgoingEvent>> = vec![Vec::new(); pipelines.len()];
    let mut unsaved_tried = Instant::now();
    let mut steps: Vec<clock::StepWatch> = Vec::new();
    steps.resize_with(pipelines.len(), clock::StepWatch::default);
    // Reading the running incidents waits for the outbox thread, which may
    // be committing the start's heartbeat or camera events first: held to a
    // frame's limit, as a frame's commit is. Held to the start's deadline
    // (grab timeout + 15 s), a worn card's 25-s commit ahead of the read
    // left the watchdog unfed at a start where the heartbeat went first
    // (CI, tests/monitor.rs).
    shared.liveness.expect_within(slot, INFERENCE_LIMIT);
    for (index, camera) in shared.config.cameras.iter().enumerate() {
        saved[index].json = resume_incidents(shared, camera, &mut pipelines[index]);
    }
    let (model_name, model_version) = (
        detector.info().name.clone(),
        detector.info().version.clone(),
    );
    let frame_delay = test_delay(FRAME_DELAY_ENV);
    if let Some(delay) = frame_delay {
        warn!("{FRAME_DELAY_ENV}={}: every frame's events wait that long before they are stored (a test seam; unset it in service)", delay.as_millis());
    }
    while !stop.load(Ordering::Relaxed) {
        shared.liveness.expect_within(slot, IDLE_WAIT + SLACK);
        if unsaved_tried.elapsed() >= HELD_RETRY {
            unsaved_tried = Instant::now();
            // It may commit to the outbox, as a frame does: held to a
            // frame's limit. Held to the idle wait's 16 s, a commit that a
            // worn card took 20 s over left the watchdog unfed, and systemd
            // killed the service mid-fire (tests/monitor.rs).
            shared.liveness.expect_within(slot, INFERENCE_LIMIT);
            retry_unsaved(shared, &pipelines, &mut saved, &mut unsaved);
            shared
                .state
                .set_held(HeldBy::Inference, unsaved.iter().map(Vec::len).sum());
        }
        let Some((index, frame)) = shared.mailbox.take(IDLE_WAIT) else {
            continue;
        };
        shared.liveness.expect_within(slot, INFERENCE_LIMIT);
        let camera = &shared.config.cameras[index];
        let status = &shared.state.cameras[index];
        if let Some(step) = steps[index].step(frame.captured_at, frame.steady_at) {
            warn!(
                "camera {}: the clock stepped {step:+.0} s since the last frame (network time?): running incidents, windows and cooldowns move with it",
                camera.id.get_ref()
            );
            pipelines[index].clock_stepped(step);
        }
        let started = Instant::now();
        let processed = pipelines[index].process(
            &mut detector,
            frame.captured_at,
            &frame.seq.to_string(),
            &frame.image,
        );
        let (scores, events) = match processed {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    "camera {}: cannot score frame {}: {e:#}",
                    camera.id.get_ref(),
                    frame.seq
                );
                status.skip("inference_error");
                continue;
            }
        };
        shared.state.observe_inference(started.elapsed());
        {
            let mut s = status.lock();
            s.scored += 1;
            s.scores = Some(scores.maxima());
        }
        let mut outgoing = Vec::new();
        for event in events {
            info!(
                "camera {}: {} {} score {:.3} ({})",
                camera.id.get_ref(),
                event.phase.as_str(),
                event.class.name(),
                event.score,
                event.id
            );
            outgoing.push(payload::incident(
                &shared.config.device,
                camera,
                &model_name,
                &model_version,
                &event,
                &frame.image,
                frame.captured_at,
            ));
        }
        if let Some(delay) = frame_delay {
            std::thread::sleep(delay);
        }
        commit_incidents(
            shared,
            index,
            &pipelines[index],
            outgoing,
            &mut saved[index],
            &mut unsaved[index],
        );
        shared
            .state
            .set_held(HeldBy::Inference, unsaved.iter().map(Vec::len).sum());
    }
    // Stopping: the running incidents as they are now (their last hot frame
    // included, which may have waited), with any incident events the outbox
    // refused, in one last try; the journal names any that go with the
    // process.
    for saved in &mut saved {
        saved.at = None;
    }
    retry_unsaved(shared, &pipelines, &mut saved, &mut unsaved);
    for (camera, lost) in shared.config.cameras.iter().zip(&unsaved) {
        if !lost.is_empty() {
            let ids: Vec<&str> = lost.iter().map(|e| e.id.as_str()).collect();
            error!(
                "camera {}: stopping with incident events the outbox could not store: {ids:?} are lost; free space on the disk under [outbox] path",
                camera.id.get_ref()
            );
        }
    }
    Ok(())
}

/// Tries again every camera's incident events the outbox refused before,
/// with its running incidents where they are due a save
/// ([`SavedIncidents::stale`]): a camera whose frames stopped still gets its
/// last hot frame saved.
fn retry_unsaved(
    shared: &Shared,
    pipelines: &[CameraPipeline],
    saved: &mut [SavedIncidents],
    unsaved: &mut [Vec<OutgoingEvent>],
) {
    for (index, pipeline) in pipelines.iter().enumerate() {
        commit_incidents(
            shared,
            index,
            pipeline,
            Vec::new(),
            &mut saved[index],
            &mut unsaved[index],
        );
    }
}

/// A camera's running incidents as last committed to the outbox.
#[derive(Default)]
struct SavedIncidents {
    /// Their JSON (`None`: none running).
    json: Option<String>,
    /// The same without per-frame fields
    /// ([`OpenIncident::without_per_frame_fields`]).
    lasting: Option<String>,
    /// When (monotonic) they were committed.
    at: Option<Instant>,
}

/// How long a running incident's per-frame fields (its last hot frame's
/// time, its peak) may wait to be saved when nothing else changed. Saving
/// them with every frame wrote and synced the SD card every `interval_s` for
/// as long as an incident ran (8,640 commits a day per camera at 10 s, for a
/// chimney or burn pile that runs for days). The cost: a restart reads a
/// last hot frame up to this much too old, so one within `clear_s` (180 s)
/// of it but over `clear_s` minus this may end the incident, and a fire
/// still burning starts a new one.
const SAVE_PER_FRAME_FIELDS_EVERY: Duration = Duration::from_secs(60);

impl SavedIncidents {
    /// Whether `json` (with `lasting`, as in [`SavedIncidents`]) must be
    /// committed now, given no events go with it.
    fn stale(&self, json: &Option<String>, lasting: &Option<String>, now: Instant) -> bool {
        *json != self.json
            && (*lasting != self.lasting
                || self
                    .at
                    .is_none_or(|at| now.duration_since(at) >= SAVE_PER_FRAME_FIELDS_EVERY))
    }
}

/// Commits camera `index`'s incident events, after those the outbox refused
/// before (`unsaved`), with its running incidents: with every event, and
/// otherwise when they changed ([`SavedIncidents::stale`]); `saved` is what
/// was last committed. What the outbox refuses stays in `unsaved` (at most
/// MAX_HELD, the newest), to go again.
fn commit_incidents(
    shared: &Shared,
    index: usize,
    pipeline: &CameraPipeline,
    events: Vec<OutgoingEvent>,
    saved: &mut SavedIncidents,
    unsaved: &mut Vec<OutgoingEvent>,
) {
    let mut outgoing = std::mem::take(unsaved);
    outgoing.extend(events);
    let camera = &shared.config.cameras[index];
    let open = pipeline.open_incidents();
    let (json, lasting) = if open.is_empty() {
        (None, None)
    } else {
        let lasting: Vec<OpenIncident> = open
            .iter()
            .map(OpenIncident::without_per_frame_fields)
            .collect();
        (
            serde_json::to_string(&open).ok(),
            serde_json::to_string(&lasting).ok(),
        )
    };
    let now = Instant::now();
    if outgoing.is_empty() && !saved.stale(&json, &lasting, now) {
        return;
    }
    if shared.record(&outgoing, camera.id.get_ref(), json.clone()) {
        *saved = SavedIncidents {
            json,
            lasting,
            at: Some(now),
        };
    } else {
        if outgoing.len() > MAX_HELD {
            let dropped = outgoing.len() - MAX_HELD;
            error!(
                "camera {}: dropping its {dropped} oldest events held in memory: more than {MAX_HELD} wait for the outbox",
                camera.id.get_ref()
            );
            outgoing.drain(..dropped);
        }
        *unsaved = outgoing;
    }
}

/// Ends, at start, the incidents still running for cameras that are no
/// longer configured (removed, or renamed: a new id is a new camera). No
/// frame of theirs will come to end them, and before this the control room
/// kept each such incident open for good. Each `incident.ended` goes with
/// its camera's id and no picture, stored in the same commit that forgets
/// the incidents. Returns the events of a commit the disk refused, to be
/// held in memory like any other; the incidents then stay saved, and the
/// next start sends the same events again (timed by the last hot frame, so
/// the same bodies), which a receiver keeps once.
fn end_incidents_of_unconfigured_cameras(
    outbox: &Outbox,
    config: &Config,
    configured: &[&str],
    model: &ModelInfo,
) -> Vec<OutgoingEvent> {
    let open = match outbox.unconfigured_open_incidents(configured) {
        Ok(open) => open,
        Err(e) => {
            warn!("cannot read the running incidents of cameras no longer configured: {e:#}; they are ended at a later start");
            return Vec::new();
        }
    };
    let mut refused = Vec::new();
    for (camera, state) in open {
        let incidents: Vec<OpenIncident> = match serde_json::from_str(&state) {
            Ok(incidents) => incidents,
            Err(e) => {
                // Kept: a later build may read it; forgetting it would
                // leave the incident open at the control room for good.
                warn!("camera {camera} (no longer configured): its saved running incidents cannot be read ({e}); they are kept, and not ended");
                continue;
            }
        };
        let events: Vec<OutgoingEvent> = incidents
            .iter()
            .map(|incident| {
                warn!(
                    "camera {camera} is no longer configured: its incident {} ends (incident.ended, without a picture)",
                    incident.incident_id()
                );
                let at = incident.last_kept();
                let ended = incident.ended_without_frame(&camera, at);
                payload::incident_of_unconfigured_camera(
                    &config.device,
                    &model.name,
                    &model.version,
                    &ended,
                    at,
                )
            })
            .collect();
        match outbox.record(&events, &camera, None) {
            Ok(enqueued) => {
                for (event, enqueued) in events.iter().zip(enqueued) {
                    if enqueued == Enqueued::DroppedFull {
                        warn!("outbox full of more important events: {} dropped", event.id);
                    }
                }
            }
            Err(e) => {
                error!("camera {camera} (no longer configured): cannot store the end of its running incidents: {e:#}; held in memory");
                refused.extend(events);
            }
        }
    }
    refused
}

/// What `camera`'s frames are judged by at start: the frame size its
/// running incidents were following, where it has some (they continue only
/// on frames of that size), else the first frame's. An outbox that cannot
/// be read here is [`resume_incidents`]' to report.
fn frame_gate_at_start(outbox: &Outbox, camera: &str) -> FrameGate {
    let size = outbox
        .open_incidents(camera)
        .ok()
        .flatten()
        .and_then(|saved| serde_json::from_str::<Vec<OpenIncident>>(&saved).ok())
        .and_then(|incidents| incidents.iter().find_map(OpenIncident::frame_size));
    size.map_or_else(FrameGate::default, FrameGate::expecting)
}

/// Hands `camera`'s incidents saved before a restart back to its pipeline;
/// returns them as saved. One that cannot be read is logged and dropped: the
/// worst that follows is a second `incident.started` for a running fire.
fn resume_incidents(
    shared: &Shared,
    camera: &CameraConfig,
    pipeline: &mut CameraPipeline,
) -> Option<String> {
    let id = camera.id.get_ref();
    // Per class: a prefix of the camera alone would also match a camera
    // whose id starts with this one's (`ridge`, `ridge-north`).
    let prefixes: Vec<String> = Class::ALL.iter().map(|&c| pipeline.id_prefix(c)).collect();
    let started = shared
        .outbox
        .call_blocking(move |outbox| -> anyhow::Result<Vec<String>> {
            let mut ids = Vec::new();
            for prefix in &prefixes {
                ids.extend(outbox.started_incident_ids(prefix, RECENT_IDS)?);
            }
            Ok(ids)
        });
    match started.and_then(|r| r) {
        Ok(ids) => pipeline.remember_started(&ids),
        Err(e) => warn!("camera {id}: cannot read the ids of incidents it started: {e:#}; a clock set back could repeat one"),
    }
    let read = shared.outbox.call_blocking({
        let id = id.clone();
        move |outbox| outbox.open_incidents(&id)
    });
    let saved = match read.and_then(|r| r) {
        Ok(saved) => saved?,
        Err(e) => {
            error!("camera {id}: cannot read its running incidents from the outbox: {e:#}");
            return None;
        }
    };
    let incidents: Vec<OpenIncident> = match serde_json::from_str(&saved) {
        Ok(incidents) => incidents,
        Err(e) => {
            warn!("camera {id}: its saved running incidents cannot be read ({e}); starting afresh");
            return None;
        }
    };
    let clear_s = camera.confirm.clear_s;
    for incident in &incidents {
        let quiet_s = now_unix() - incident.last_kept();
        info!(
            "camera {id}: incident {} was running before the restart ({quiet_s:.0} s since its last hot frame): {}",
            incident.incident_id(),
            if quiet_s < clear_s {
                "it continues under its id"
            } else {
                "the next frame ends it"
            }
        );
    }
    pipeline.resume(incidents);
    Some(saved)
}

/// A heartbeat at start and every `[heartbeat] interval_minutes`.
async fn heartbeat_task(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(shared.config.heartbeat.interval());
    loop {
        ticks.tick().await;
        let (cameras, _) = shared.state.cameras_json();
        let outbox = shared.outbox.figures().stats.ok();
        let status = json!({
            "uptime_s": shared.state.started.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
            "cameras": cameras,
            "outbox_depth": outbox.as_ref().map(|s| s.pending_events),
            // Whether a power cut would lose what the outbox holds: a start
            // on a good disk after one says it is over, which no
            // `outbox.restored` does (memory was lost with the power).
            "outbox_in_memory": shared.state.outbox_in_memory.is_some(),
        });
        shared.emit(payload::heartbeat(
            &shared.config.device,
            now_unix(),
            status,
        ));
    }
}

/// Stores events the outbox refused once it takes writes again, also when
/// nothing new is emitted.
async fn held_task(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(HELD_RETRY);
    loop {
        ticks.tick().await;
        shared.retry_held();
    }
}

/// Feeds the systemd watchdog while every worker keeps its deadline.
async fn watchdog_task(shared: Arc<Shared>) {
    let Some(interval) = sdnotify::watchdog_interval() else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval(interval / 2);
    let mut was_overdue = false;
    let mut notify_failed = false;
    loop {
        ticks.tick().await;
        let mut overdue = shared.liveness.overdue();
        if shared
            .outbox
            .stalled_for()
            .is_some_and(|s| s > OUTBOX_LIMIT)
        {
            overdue.push("the outbox (a call stuck on its disk)");
        }
        if overdue.is_empty() {
            if was_overdue {
                info!("all workers report again: feeding the watchdog");
            }
            was_overdue = false;
            match sdnotify::notify("WATCHDOG=1") {
                Ok(_) => notify_failed = false,
                Err(e) if !notify_failed => {
                    notify_failed = true;
                    warn!("cannot feed the systemd watchdog: {e}");
                }
                Err(_) => {}
            }
        } else if !was_overdue {
            was_overdue = true;
            error!(
                "not feeding the systemd watchdog: {} stopped reporting (hung grab, inference or disk?); systemd will restart the service",
                overdue.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_incident_is_saved_when_it_changes_and_its_last_hot_frame_once_a_minute() {
        let some = |s: &str| Some(s.to_string());
        let t0 = Instant::now();
        let saved = SavedIncidents {
            json: some("[kept at 100]"),
            lasting: some("[region A]"),
            at: Some(t0),
        };
        // Unchanged: nothing to write.
        assert!(!saved.stale(&some("[kept at 100]"), &some("[region A]"), t0));
        // Only its last hot frame moved: it waits, up to a minute.
        let later = t0 + Duration::from_secs(30);
        assert!(!saved.stale(&some("[kept at 130]"), &some("[region A]"), later));
        let later = t0 + SAVE_PER_FRAME_FIELDS_EVERY;
        assert!(saved.stale(&some("[kept at 160]"), &some("[region A]"), later));
        // Its region grew, or it ended: at once.
        assert!(saved.stale(&some("[kept at 110]"), &some("[region AB]"), t0));
        assert!(saved.stale(&None, &None, t0));
        // Never saved (after a restart, or at a stop): at once.
        let restarted = SavedIncidents {
            json: some("[kept at 100]"),
            ..SavedIncidents::default()
        };
        assert!(restarted.stale(&some("[kept at 110]"), &some("[region A]"), t0));
    }

    fn frame(seq: u64) -> Frame {
        Frame {
            image: Arc::new(RgbImage::new(1, 1)),
            captured_at: seq as f64,
            steady_at: seq as f64,
            seq,
        }
    }

    #[test]
    fn the_mailbox_keeps_the_newest_frame_per_camera_and_takes_cameras_in_turn() {
        let mailbox = Mailbox::new(2);
        assert!(!mailbox.put(0, frame(1)));
        assert!(mailbox.put(0, frame(2)), "the older frame is dropped");
        assert!(!mailbox.put(1, frame(10)));
        let (i, f) = mailbox.take(Duration::ZERO).unwrap();
        assert_eq!((i, f.seq), (0, 2));
        assert!(!mailbox.put(0, frame(3)));
        let (i, f) = mailbox.take(Duration::ZERO).unwrap();
        assert_eq!((i, f.seq), (1, 10), "camera 1 goes before camera 0 again");
        let (i, f) = mailbox.take(Duration::ZERO).unwrap();
        assert_eq!((i, f.seq), (0, 3));
        assert!(mailbox.take(Duration::from_millis(10)).is_none());
    }
}
