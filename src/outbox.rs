//! The durable outbox: every event the device wants to send, kept in SQLite
//! until each configured webhook has taken it, it expires, or room is needed.
//!
//! An event is committed here before any network I/O, so an alert survives a
//! crash or a power cut the moment [`Outbox::enqueue`] returns, and after a
//! restart undelivered events go out again under the same id (at-least-once
//! delivery; receivers drop duplicates by id). The one exception is `run`
//! on a disk that will not open or write the file (full, or gone read-only):
//! it keeps an outbox in memory instead ([`Outbox::for_service`],
//! [`Storage::InMemory`], at most [`IN_MEMORY_MAX_EVENTS`]), whose events are
//! sent as usual, and says so to the control room first. Once the disk takes
//! the file again ([`Outbox::file_takes_writes`]), and at any stop before,
//! what memory holds is stored in the file ([`Outbox::copy_into`]); a power
//! cut or a crash meanwhile loses it.
//!
//! Tables: `events` (one row per event, `seq` is creation order; `settled`
//! once some endpoint took it or refused it for good, `taken` once some
//! endpoint took it; the incident and phase of incident events),
//! `deliveries` (one row per event and endpoint while that endpoint has not
//! taken it), `endpoints` (endpoints a receiver disabled with `410 Gone`),
//! `known_endpoints` (every endpoint the outbox was opened for), `counters`
//! (events delivered, expired, dropped, superseded, rejected, and the
//! service's `starts`, whose count is the write that proves the disk takes
//! them; they survive restarts), `open_incidents` (each camera's running incidents, saved with
//! the events they cause, so a restart continues them: src/confirm.rs) and
//! `started_incidents` (the ids of the last 1,000 incidents started, so a
//! restart never gives one again) and `offline_cameras` (the cameras last
//! reported offline, so a restart reports their return).
//!
//! Each endpoint is owed its events one at a time, incident events first
//! and each kind in creation order ([`Outbox::head_skipping`]), so a fire
//! does not wait behind a backlog of camera events after an outage.
//!
//! An event is deleted once it is settled and no delivery of it is pending.
//! Until an endpoint has taken it (or refused it for good), it is kept, also
//! when no endpoint can take it (no webhook configured, or every one
//! disabled), and each endpoint that appears gets it: one added to the configuration (when the outbox is next
//! opened) or re-enabled after a `410 Gone`. An event some endpoint already
//! took is not owed to endpoints that appear later, except to one that
//! appears as another is removed (a changed URL), which takes over what the
//! removed one was still owed. The schema's version is
//! `PRAGMA user_version`: opening an outbox an older build wrote upgrades it
//! in place, step by step ([`MIGRATIONS`]), keeping its events.
//!
//! Bounds: at most `max_events` undelivered events. Past it, events some
//! endpoint has already taken go first, whatever their kind (with two
//! webhooks and one down, the other's control room has them), then the
//! oldest event of the lowest priority (heartbeats and snapshots, then tests,
//! camera offline/online and device events, then incidents), so an incident
//! no endpoint has taken is never dropped to keep a heartbeat; only when the
//! outbox is all incidents does the
//! oldest incident make room for a new one. Undelivered heartbeats and tests
//! expire when older than `max_age`; incidents, camera and device events
//! never do, as the age of an event is measured on the device's clock, and a
//! Pi without a battery-backed clock can run days behind until network time
//! steps it forward: every alert raised before the step would look days old
//! and go. (A camera that failed to come up at such a boot, with the link
//! down, lost its `camera.offline` that way. A device event,
//! `outbox.replaced`, is stamped when its outbox was set aside, maybe long
//! before it is stored.) Only room makes them go.
//! Both are logged and counted. An `incident.updated` not yet delivered is
//! dropped when a later update or the end of its incident is stored, and a
//! new incident's start makes retries waiting on a backoff due at once
//! ([`IncidentRef`]).
//!
//! A file SQLite cannot read whole is refused at open ([`Damaged`]), or for
//! `run` with `[outbox] on_damage = "set_aside"` renamed aside for an empty
//! outbox, the control room told by an `outbox.replaced` event
//! ([`Outbox::for_service`], [`SetAside`]). Copies are kept until the disk
//! needs their room (each is as large as its outbox ever grew, up to
//! ~1.3 GB, and a card damaged again and again would fill, leaving every
//! later start stopping): then the oldest of those the control room was
//! told of (no notice left) are deleted with their `-wal` and `-shm`, one
//! WARN each, before a set-aside while less than twice the damaged file's
//! size is free ([`room_for`]), and while the outbox cannot be opened or
//! made for lack of space ([`Outbox::open_making_room`]). A copy still owed
//! its event and the file being set aside are never deleted.
//!
//! The connection is synchronous, and each call that writes waits for an
//! fsync, which on an SD card can take seconds: async code never calls it
//! directly but through the outbox's own thread
//! ([`crate::outbox_thread::OutboxHandle`]); `test-alert` and tests, which
//! have nothing else to keep going, call it directly.
//!
//! Other processes (`deliver`, `test-alert`) open the same file beside the
//! service. Every transaction that writes takes the write lock when it
//! begins (IMMEDIATE) and waits up to [`BUSY_TIMEOUT`] for it; an error that
//! is still "busy" after that is retryable ([`is_busy`]), not fatal.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::events::IncidentPhase;

/// What an event is, which sets its priority when room is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Incident,
    Test,
    /// `camera.offline` and `camera.online`.
    Camera,
    /// `outbox.replaced`, `outbox.unavailable`: the device itself needs a
    /// person.
    Device,
    Heartbeat,
    Snapshot,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Incident => "incident",
            EventKind::Test => "test",
            EventKind::Camera => "camera",
            EventKind::Device => "device",
            EventKind::Heartbeat => "heartbeat",
            EventKind::Snapshot => "snapshot",
        }
    }

    fn from_name(name: &str) -> EventKind {
        match name {
            "incident" => EventKind::Incident,
            "test" => EventKind::Test,
            "camera" => EventKind::Camera,
            "device" => EventKind::Device,
            "heartbeat" => EventKind::Heartbeat,
            _ => EventKind::Snapshot,
        }
    }

    /// Higher is kept longer.
    pub fn priority(self) -> i64 {
        match self {
            EventKind::Incident => 2,
            EventKind::Test | EventKind::Camera | EventKind::Device => 1,
            EventKind::Heartbeat | EventKind::Snapshot => 0,
        }
    }
}

/// The incident an event is about, and what it says of it. The outbox acts
/// on it in two ways, both for alerts that waited through an outage:
///
/// - A start wakes every delivery waiting out a retry, so a new fire goes as
///   soon as the link answers, not after up to `max_backoff_s` (15 min).
/// - An update or the end of an incident makes its undelivered updates
///   stale: they are dropped (counted as `superseded`). A running incident
///   updates up to once a minute with a ~100 KB picture; after hours
///   without a link those would go first, in order, ahead of any new fire,
///   and say nothing the newest one does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentRef {
    /// The incident's id (`confirm`'s, unique per camera and class).
    pub id: String,
    pub phase: IncidentPhase,
}

/// An event ready to send: its id, kind, creation time and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingEvent {
    /// Stable id: the `webhook-id` header on every attempt.
    pub id: String,
    pub kind: EventKind,
    /// Unix seconds.
    pub created_at: f64,
    pub body: String,
    /// For incident events: which incident, and its phase.
    pub incident: Option<IncidentRef>,
}

/// An undelivered event as one endpoint sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// Creation order.
    pub seq: i64,
    pub event: OutgoingEvent,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Unix seconds before which it must not be tried again.
    pub next_attempt_at: f64,
}

/// What [`Outbox::enqueue`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored durably, to be sent to this many endpoints; with none, it waits
    /// for an endpoint to be added or re-enabled.
    Stored { endpoints: usize },
    /// An event with this id is already in the outbox; nothing changed.
    AlreadyQueued,
    /// The outbox was full of events that matter more; this one was dropped.
    DroppedFull,
}

/// The incidents an outbox follows: the ids of those started lately, oldest
/// first, and each camera's running incidents (camera, state, saved_at), as
/// one outbox hands them to another ([`Outbox::copy_into`],
/// [`Outbox::remember_from_file`]).
struct Followed {
    started: Vec<String>,
    running: Vec<(String, String, f64)>,
    offline: Vec<OfflineCamera>,
}

impl Followed {
    fn read(conn: &Connection) -> rusqlite::Result<Followed> {
        let started = conn
            .prepare("SELECT incident_id FROM started_incidents ORDER BY rowid")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        let running = conn
            .prepare("SELECT camera, state, saved_at FROM open_incidents")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<(String, String, f64)>>>()?;
        // A file an older build wrote (schema 6), read without upgrading
        // it on a full disk, has no such table: no camera was noted offline.
        let noted: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'offline_cameras'",
            [],
            |r| r.get(0),
        )?;
        Ok(Followed {
            started,
            running,
            offline: if noted {
                offline_cameras(conn)?
            } else {
                Vec::new()
            },
        })
    }

    fn write(&self, tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
        for id in &self.started {
            remember_started(tx, id)?;
        }
        for (camera, state, saved_at) in &self.running {
            tx.execute(
                "INSERT OR REPLACE INTO open_incidents (camera, state, saved_at) VALUES (?1, ?2, ?3)",
                params![camera, state, saved_at],
            )?;
        }
        for camera in &self.offline {
            note_offline(tx, camera)?;
        }
        Ok(())
    }
}

/// A camera last reported offline ([`Outbox::note_offline`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OfflineCamera {
    pub camera: String,
    /// When it was reported offline (Unix seconds).
    pub since: f64,
    pub reason: String,
    /// For a picture that stopped changing, not for failed grabs: it is
    /// back once the picture changes, not at its first frame.
    pub stuck: bool,
}

fn offline_cameras(conn: &Connection) -> rusqlite::Result<Vec<OfflineCamera>> {
    conn.prepare("SELECT camera, since, reason, stuck FROM offline_cameras ORDER BY camera")?
        .query_map([], |r| {
            Ok(OfflineCamera {
                camera: r.get(0)?,
                since: r.get(1)?,
                reason: r.get(2)?,
                stuck: r.get(3)?,
            })
        })?
        .collect()
}

fn note_offline(conn: &Connection, camera: &OfflineCamera) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR REPLACE INTO offline_cameras (camera, since, reason, stuck) VALUES (?1, ?2, ?3, ?4)",
        params![camera.camera, camera.since, camera.reason, camera.stuck],
    )
}

/// What [`Outbox::copy_into`] stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copied {
    /// Events stored (not counting those the file held already).
    pub events: usize,
    pub cameras_with_running_incidents: usize,
}

/// Counts kept across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events still waiting for an endpoint: not yet taken by one, or taken
    /// by some and pending for others.
    pub pending_events: u64,
    pub delivered: u64,
    pub expired: u64,
    pub dropped_full: u64,
    /// Deliveries of `incident.updated` events dropped undelivered because
    /// a later update or the end of the same incident was stored.
    pub superseded: u64,
    pub rejected: u64,
    pub endpoints_disabled: u64,
    /// Delivery attempts that did not end in a 2xx (retried later).
    pub failed_attempts: u64,
}

pub struct Outbox {
    conn: Mutex<Connection>,
    /// Configured endpoints (webhook URLs), in configuration order.
    endpoints: Vec<String>,
    max_events: u64,
    max_age: Duration,
    /// Test seam: how long every commit sleeps first ([`Outbox::slow_commits`]).
    commit_delay: Duration,
    /// Test seam: every commit fails as on a full disk ([`Outbox::refuse_writes`]).
    refuse_writes: std::sync::atomic::AtomicBool,
    /// In memory: the cameras whose running incidents it took from the
    /// file at its start ([`Outbox::remember_from_file`]), for
    /// [`Outbox::copy_into`] to replace in the file.
    taken_from_file: Mutex<Vec<String>>,
}

/// The schema, one step per version: step `i` takes a database at
/// `PRAGMA user_version = i` to version `i + 1`. Steps are only ever
/// appended, so an outbox written by any earlier build opens in this one with
/// its undelivered events intact.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema. Builds before schema versions created these same
    // tables and left user_version at 0, hence IF NOT EXISTS.
    "
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    priority   INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    endpoint        TEXT NOT NULL,
    seq             INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (endpoint, seq)
);
CREATE INDEX IF NOT EXISTS deliveries_by_seq ON deliveries(seq);
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint    TEXT PRIMARY KEY,
    disabled_at REAL NOT NULL,
    reason      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
",
    // 2: `settled`, so that an event no endpoint has taken yet is kept with no
    // delivery row, for an endpoint that appears later. Every event a version
    // 1 build left still has a delivery (that build deleted the rest) and may
    // have been taken by another endpoint already: they count as settled and
    // finish when their deliveries do, as they would have.
    "
ALTER TABLE events ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
UPDATE events SET settled = 1;
",
    // 3: the incidents running when the monitor stopped, one row per camera
    // (its JSON list of confirm::OpenIncident), so a restart continues them.
    "
CREATE TABLE open_incidents (
    camera   TEXT PRIMARY KEY,
    state    TEXT NOT NULL,
    saved_at REAL NOT NULL
);
",
    // 4: the incident an event is about and its phase (IncidentRef), so a
    // start can wake waiting deliveries and a later update drop stale ones.
    // Events stored before have neither and are sent as they are. And every
    // endpoint the outbox has been opened for, so that one new to it can be
    // told from one that had taken everything (`known_endpoints`). And the
    // ids of the incidents started lately (`started_incidents`), so a
    // restart never starts another under one of them. And `taken`: whether
    // some endpoint took an event (`settled` also counts refusals), which
    // make_room drops first.
    "
CREATE TABLE started_incidents (incident_id TEXT PRIMARY KEY);
ALTER TABLE events ADD COLUMN taken INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN incident_id TEXT;
ALTER TABLE events ADD COLUMN phase TEXT;
CREATE INDEX events_by_incident ON events(incident_id) WHERE incident_id IS NOT NULL;
CREATE TABLE known_endpoints (endpoint TEXT PRIMARY KEY);
INSERT OR IGNORE INTO known_endpoints SELECT DISTINCT endpoint FROM deliveries;
INSERT OR IGNORE INTO known_endpoints SELECT endpoint FROM endpoints;
",
    // 5: indexes for the queries that pick events by `settled`, `taken` or
    // `created_at`. Without them `delete_finished_events` (every settled
    // delivery), `offer_unsettled` (every start), `make_room` (every event
    // stored into a full outbox) and `expire` (every delivery turn, once a
    // second while idle) scan the table, and a row with a picture keeps up
    // to 4 KB of it on its b-tree page, among its overflow pages. 9.5 ms
    // per scan warm here at 6,000 events (9 us indexed), so draining a
    // backlog of N cost N scans of N rows; on a Pi whose page cache no longer
    // holds them, each scan is N random reads from the SD card (review,
    // stop 28).
    "
CREATE INDEX events_by_settled ON events(settled, seq);
CREATE INDEX events_by_age ON events(created_at)
    WHERE kind NOT IN ('incident', 'device', 'camera');
CREATE INDEX events_for_room ON events(taken DESC, priority, seq);
",
    // 6: incident events, which each endpoint gets before any other event
    // it is owed (Outbox::head_skipping), found without a walk over the
    // camera and device events queued before them.
    "
CREATE INDEX events_incidents ON events(seq) WHERE kind = 'incident';
",
    // 7: the cameras last reported offline, since when and why, so a restart
    // while one is out neither reports it offline again nor forgets to
    // report its return (offline_cameras).
    "
CREATE TABLE offline_cameras (
    camera TEXT PRIMARY KEY,
    since  REAL NOT NULL,
    reason TEXT NOT NULL,
    stuck  INTEGER NOT NULL
);
",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Unix seconds now, on the device's clock (src/clock.rs).
pub use crate::clock::now_unix;

/// The most events an outbox in memory holds: 500 incidents with pictures
/// (~130 KB each) are 65 MB, where the configured `max_events` (10,000 by
/// default, ~1.3 GB) would have a long outage end in the kernel killing a
/// 1 GB Pi's service, and the restart in memory again with nothing. When it
/// is full, the lowest priority events go first, as on disk.
pub const IN_MEMORY_MAX_EVENTS: u32 = 500;

/// A connection that reads the outbox file at `path` on a disk that takes
/// no write, full or mounted read-only, and writes nothing into it. Each
/// state of the disk and of the file's `-wal` and `-shm` (both removed when
/// the last connection closes, both left by a kill or a power cut) needs its
/// own way in, so the three are tried in turn (each measured with the
/// bundled SQLite 3.54 on a full and on a read-only tmpfs, in both states):
///
/// 1. Read-write, in exclusive locking mode, which keeps the WAL index in
///    this connection's memory instead of the `-shm`: a plain reader must
///    size a `-shm` of 32 KB, which a full disk refuses (SQLITE_IOERR_SHMSIZE:
///    stop 31's CI run, where the file was closed cleanly). No checkpoint at
///    close, so no page is written: at most an empty `-wal` is made.
/// 2. A plain reader, for a disk mounted read-only, where the exclusive lock
///    of 1 cannot be had (SQLITE_IOERR_LOCK): it reads where the last run
///    left its `-shm`, as when a card goes read-only under a running service.
/// 3. `immutable`, which reads the file alone: on a read-only disk after a
///    clean stop no `-shm` can be made, and the file alone then holds all
///    (the last close moved the WAL into it). A `-wal` without its `-shm`,
///    which a kill does not leave, would be skipped: the file as of the
///    last checkpoint.
fn open_unwritable(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        anyhow::bail!("no such file");
    }
    type Way = fn(&Path) -> rusqlite::Result<Connection>;
    let ways: [(&str, Way); 3] = [
        ("exclusive", open_exclusive),
        ("reader", open_reader),
        ("immutable", open_immutable),
    ];
    let mut failed = Vec::new();
    for (way, open) in ways {
        // Opening reads nothing: a first query shows whether this way reads.
        let read = open(path).and_then(|conn| {
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok(conn)
        });
        match read {
            Ok(conn) => return Ok(conn),
            Err(e) => failed.push(format!("{way}: {e}")),
        }
    }
    anyhow::bail!("{}", failed.join("; "))
}

/// [`open_unwritable`]'s first way.
fn open_exclusive(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    conn.pragma_update(None, "locking_mode", "exclusive")?;
    Ok(conn)
}

/// [`open_unwritable`]'s second way.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// [`open_unwritable`]'s third way.
fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    // A URI: its path escapes what SQLite would read as query or
    // fragment.
    let name = path
        .to_str()
        .ok_or_else(|| rusqlite::Error::InvalidPath(path.to_path_buf()))?;
    let escaped = name
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    Connection::open_with_flags(
        format!("file:{escaped}?immutable=1"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
}

/// [`Outbox::for_service`]'s outbox in memory, when the disk under the
/// outbox would not open or write it (`error`).
fn keep_in_memory(
    config: &crate::config::Config,
    error: anyhow::Error,
    fresh: Option<SetAside>,
) -> Result<(Outbox, Vec<SetAside>, Storage)> {
    let problem = format!("{error:#}");
    error!(
        "{problem}: keeping new events in memory instead, where they are sent as usual but lost at a stop (events stored before stay in the file, sent after a start that can write it); free space on the disk under [outbox] path (or replace a card gone read-only; or, where the disk is fine, let the unit write there: the shipped one writes only under /var/lib/wildfire-watch), and the service goes back to the file by itself once the disk takes it, storing what memory holds there first"
    );
    let (endpoints, max_events, max_age) = configured(config);
    let outbox = Outbox::in_memory(endpoints, max_events.min(IN_MEMORY_MAX_EVENTS), max_age)?;
    match outbox.remember_from_file(&config.outbox.path) {
        Ok((ids, cameras)) => info!(
            "read from the outbox file: {ids} incident id(s) started lately, running incidents of {cameras} camera(s)"
        ),
        Err(e) => warn!(
            "cannot read the outbox file either ({e:#}): incidents running before this start begin again, and an incident may repeat the id of one from before a power cut"
        ),
    }
    Ok((
        outbox,
        owed(&config.outbox.path, fresh),
        Storage::InMemory { problem },
    ))
}

/// The copies beside `path` whose `outbox.replaced` is owed: those with a
/// notice, and `fresh` (set aside by this start) even if its notice is gone
/// since (a person tidying up): still told, from memory.
fn owed(path: &Path, fresh: Option<SetAside>) -> Vec<SetAside> {
    let mut owed = unreported(path);
    if let Some(fresh) = fresh.filter(|f| {
        owed.iter()
            .all(|u| u.copy.file_name() != f.copy.file_name())
    }) {
        owed.push(fresh);
    }
    owed
}

/// Where `run`'s outbox keeps its events ([`Outbox::for_service`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// In the file at `[outbox] path`, as designed.
    File,
    /// In memory, since the disk would not open the file: `problem` says why.
    InMemory { problem: String },
}

/// The webhooks, `max_events` and `max_age` that `config` gives the outbox.
fn configured(config: &crate::config::Config) -> (Vec<String>, u32, Duration) {
    (
        config
            .webhooks
            .iter()
            .map(|w| w.url.get_ref().clone())
            .collect(),
        *config.outbox.max_events.get_ref(),
        config.outbox.max_age(),
    )
}

/// Whether `error` is the outbox's disk refusing a write: full, read-only,
/// or an I/O error (SQLite's `-shm` that a full disk cannot make among
/// them). Nothing was committed; the same call can be tried again.
pub fn is_storage_error(error: &anyhow::Error) -> bool {
    sqlite_errors(error).any(|e| {
        matches!(
            e.code,
            rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::ReadOnly
        )
    })
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path` for these endpoints.
    /// Deliveries pending for endpoints no longer configured go to the
    /// configured endpoints new to this outbox (a changed URL), or are
    /// dropped when there is none;
    /// configured endpoints get the events no endpoint has taken yet.
    pub fn open(
        path: &Path,
        endpoints: Vec<String>,
        max_events: u32,
        max_age: Duration,
    ) -> Result<Outbox> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the outbox folder {}: create it writable by the service user, or set [outbox] path",
                    dir.display()
                )
            })?;
        }
        // An empty file is what SQLite makes of a database it is creating.
        let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let mut conn = Connection::open(path).with_context(|| {
            format!(
                "cannot open the outbox {}: check [outbox] path and its permissions",
                path.display()
            )
        })?;
        if existed {
            conn.busy_timeout(BUSY_TIMEOUT)
                .with_context(|| format!("cannot set up the outbox {}", path.display()))?;
            check_intact(&conn, path)?;
        }
        // WAL: readers (test-alert, a status query) never block the writer,
        // and a commit is one append to the log.
        //
        // synchronous = FULL: in WAL mode, NORMAL does not sync the log on each
        // commit, so a power cut can roll back the last transactions, and an
        // alert `enqueue` had already reported stored would be lost; on a tower
        // with unstable power that is the case to design for. FULL syncs the
        // log on every commit. Events are rare (minutes apart), so one fsync
        // each costs nothing that matters.
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|_| conn.pragma_update(None, "foreign_keys", "ON"))
            .with_context(|| format!("cannot set up the outbox {}", path.display()))?;
        migrate(&mut conn, path)?;
        if !existed {
            // Expected on a first start; otherwise the operator learns here
            // that whatever the old outbox held is gone.
            warn!(
                "no outbox at {}: created an empty outbox (expected on the first start; if one was there before, the events it held are gone)",
                path.display()
            );
        }
        Outbox::over(conn, endpoints, max_events, max_age).map_err(|e| {
            let read_only = sqlite_errors(&e).any(|c| {
                matches!(
                    c.code,
                    rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied
                )
            });
            let hint = if read_only {
                ": the service user must be able to write the file and its folder (the shipped unit writes only under /var/lib/wildfire-watch)"
            } else {
                ""
            };
            e.context(format!("cannot write to the outbox {}{hint}", path.display()))
        })
    }

    /// Counts a start of the service (`starts`), the write that proves the
    /// disk takes them.
    fn count_start(&self) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        count(&tx, "starts", 1)?;
        Ok(self.commit(tx)?)
    }

    /// The outbox over an open, migrated connection.
    fn over(
        conn: Connection,
        endpoints: Vec<String>,
        max_events: u32,
        max_age: Duration,
    ) -> Result<Outbox> {
        let outbox = Outbox {
            conn: Mutex::new(conn),
            endpoints,
            max_events: u64::from(max_events),
            max_age,
            commit_delay: Duration::ZERO,
            refuse_writes: std::sync::atomic::AtomicBool::new(false),
            taken_from_file: Mutex::new(Vec::new()),
        };
        outbox.match_configured_endpoints()?;
        Ok(outbox)
    }

    /// An empty outbox in memory, for `run` when the disk under the outbox
    /// will not open one ([`Outbox::for_service`]): its events live until
    /// the process stops.
    pub fn in_memory(endpoints: Vec<String>, max_events: u32, max_age: Duration) -> Result<Outbox> {
        let mut conn = Connection::open_in_memory().context("cannot make an outbox in memory")?;
        migrate(&mut conn, Path::new(":memory:"))?;
        Outbox::over(conn, endpoints, max_events, max_age)
    }

    /// Opens the outbox `[outbox]` describes, for the configured webhooks.
    pub fn for_config(config: &crate::config::Config) -> Result<Outbox> {
        let path = &config.outbox.path;
        // A set-aside a crash cut short leaves the damaged file in place,
        // maybe without its log and then passing the check; only `run`
        // finishes it (Outbox::for_service), so nothing else may write to it.
        if let Some(begun) = unreported(path).iter().find(|s| s.begun_on(path)) {
            anyhow::bail!(
                "the outbox {} was being set aside as {} when the service stopped ({}); \
                 start the service (`run`) to finish that first",
                path.display(),
                begun.copy.display(),
                begun.problem
            );
        }
        Outbox::open_configured(config)
    }

    /// [`Outbox::open`] with `[outbox]` and the configured webhooks.
    fn open_configured(config: &crate::config::Config) -> Result<Outbox> {
        let (endpoints, max_events, max_age) = configured(config);
        Outbox::open(&config.outbox.path, endpoints, max_events, max_age)
    }

    /// [`Outbox::for_config`] for the service: an outbox found damaged is
    /// refused, or with `[outbox] on_damage = "set_aside"` renamed aside and
    /// replaced by an empty one. Returns with it every copy set aside, now or
    /// at an earlier start, that the control room has not been told of yet:
    /// the caller stores an `outbox.replaced` for each, then calls
    /// [`SetAside::reported`]. Only `run` does this: a tower left alone must
    /// keep watching, while `deliver` and `test-alert` are run by a person,
    /// who can be told.
    ///
    /// A disk that will not open the outbox at all (full, so SQLite cannot
    /// make its `-shm`; or remounted read-only, as a worn SD card ends) gives
    /// an outbox in memory instead, and its problem as `Storage::InMemory`:
    /// the tower keeps watching and alerting, and the caller tells the
    /// control room that alerts no longer survive a restart. Before, `run`
    /// exited, and systemd restarted it every 5 s for good, unwatched.
    pub fn for_service(config: &crate::config::Config) -> Result<(Outbox, Vec<SetAside>, Storage)> {
        let path = &config.outbox.path;
        // A set-aside a crash cut short is finished before the file is
        // opened: with its log already moved, the file alone may pass the
        // check and be taken for the live outbox, without the log's writes.
        finish_begun(path)?;
        let mut fresh = None;
        let opened = match Outbox::open_making_room(config) {
            Err(error) => {
                let damaged = match (config.outbox.on_damage, error.downcast_ref::<Damaged>()) {
                    (crate::config::OnDamage::SetAside, Some(damaged)) => damaged,
                    (_, None) if disk_refuses(path, &error) => {
                        return keep_in_memory(config, error, fresh)
                    }
                    _ => return Err(error),
                };
                prune_copies(path, room_for(path), free_space);
                // No room even for its notice: watched all the same, from
                // memory; the next start tries the set-aside again.
                let set_aside = match begin(damaged, now_unix()) {
                    Ok(set_aside) => set_aside,
                    Err(e) => return keep_in_memory(config, e, fresh),
                };
                finish(&set_aside, path)?;
                // Logged before the new outbox is made, which can fail too.
                log_set_aside(path, &set_aside);
                fresh = Some(set_aside);
                Outbox::open_making_room(config)
            }
            opened => opened,
        };
        let outbox = match opened {
            Ok(outbox) => outbox,
            Err(error) if disk_refuses(path, &error) => {
                return keep_in_memory(config, error, fresh)
            }
            Err(error) => return Err(error),
        };
        Ok((outbox, owed(path, fresh), Storage::File))
    }

    /// [`Outbox::open_configured`], then a write to it: on a full disk an
    /// outbox left with its -wal and -shm by a power cut opens, then refuses
    /// every event, which waits in memory and is not sent.
    fn open_writable(config: &crate::config::Config) -> Result<Outbox> {
        let outbox = Outbox::open_configured(config)?;
        outbox.count_start().with_context(|| {
            format!(
                "cannot write to the outbox {}",
                config.outbox.path.display()
            )
        })?;
        Ok(outbox)
    }

    /// [`Outbox::open_writable`] for `run`; with `[outbox] on_damage =
    /// "set_aside"`, an outbox that cannot be opened or made for lack of
    /// space gets the room of reported copies, oldest first, one at a time
    /// until it opens or none is left ([`delete_oldest_reported`]): a start
    /// that set a file aside and then could not make the new outbox had left
    /// every later start stopping on a full disk.
    fn open_making_room(config: &crate::config::Config) -> Result<Outbox> {
        loop {
            match Outbox::open_writable(config) {
                Err(e)
                    if config.outbox.on_damage == crate::config::OnDamage::SetAside
                        && is_full(&e)
                        && delete_oldest_reported(
                            &config.outbox.path,
                            "the outbox cannot be opened or made for lack of space",
                        )
                        .is_some() => {}
                opened => return opened,
            }
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Test seam: from now on every commit first sleeps `delay`, holding the
    /// connection and the write lock, as a commit whose fsync stalls on a
    /// worn SD card does. Tests of the running monitor set it through
    /// [`crate::monitor::COMMIT_DELAY_ENV`]; nothing else should.
    #[doc(hidden)]
    pub fn slow_commits(&mut self, delay: Duration) {
        self.commit_delay = delay;
    }

    /// Test seam: while `refuse` is set, every commit fails with SQLite's
    /// "database or disk is full" and rolls back, as on a full SD card.
    #[doc(hidden)]
    pub fn refuse_writes(&self, refuse: bool) {
        self.refuse_writes
            .store(refuse, std::sync::atomic::Ordering::SeqCst);
    }

    /// Commits `tx` (after the test seams' delay or refusal, if set).
    fn commit(&self, tx: rusqlite::Transaction) -> rusqlite::Result<()> {
        if !self.commit_delay.is_zero() {
            std::thread::sleep(self.commit_delay);
        }
        if self.refuse_writes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("refused by the test seam".into()),
            ));
        }
        tx.commit()
    }

    /// Tests meet a held lock without waiting the whole [`BUSY_TIMEOUT`].
    #[cfg(test)]
    pub(crate) fn set_busy_timeout(&self, timeout: Duration) {
        self.conn().busy_timeout(timeout).unwrap();
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn match_configured_endpoints(&self) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let stale: Vec<(String, i64)> = {
            let mut stmt =
                tx.prepare("SELECT endpoint, COUNT(*) FROM deliveries GROUP BY endpoint")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .filter(|(e, _)| !self.endpoints.contains(e))
                .collect()
        };
        let now = now_unix();
        let mut new = Vec::new();
        for endpoint in &self.endpoints {
            let known = tx
                .query_row(
                    "SELECT 1 FROM known_endpoints WHERE endpoint = ?1",
                    [endpoint],
                    |_| Ok(()),
                )
                .optional()?;
            if known.is_none() {
                new.push(endpoint);
            }
        }
        // A webhook gone from the configuration while a webhook new to this
        // outbox appeared is most often the same control room at a fixed or
        // moved URL: what the old one was still owed goes to the new one
        // (the ids are the same, so a receiver that has some drops the
        // repeats). With no new webhook it is dropped, and said so.
        use crate::redact::shown_webhook as shown;
        for (endpoint, n) in stale {
            if new.is_empty() {
                warn!(
                    "{} is no longer configured: the {n} deliveries still owed to it are dropped (no webhook new to this outbox to take them)",
                    shown(&endpoint)
                );
            }
            for to in &new {
                tx.execute(
                    "INSERT OR IGNORE INTO deliveries (endpoint, seq, next_attempt_at)
                     SELECT ?1, seq, ?3 FROM deliveries WHERE endpoint = ?2",
                    params![to, endpoint, now],
                )?;
                warn!(
                    "{} is no longer configured and {} is new: the {n} deliveries still owed to it go to the new one",
                    shown(&endpoint),
                    shown(to)
                );
            }
            tx.execute("DELETE FROM deliveries WHERE endpoint = ?1", [&endpoint])?;
        }
        for endpoint in &self.endpoints {
            tx.execute(
                "INSERT OR IGNORE INTO known_endpoints (endpoint) VALUES (?1)",
                [endpoint],
            )?;
        }
        delete_finished_events(&tx)?;
        for endpoint in &self.endpoints {
            let n = offer_unsettled(&tx, endpoint, now)?;
            if n > 0 {
                info!(
                    "{}: queued {n} earlier events that no webhook has taken yet",
                    shown(endpoint)
                );
            }
        }
        self.commit(tx)?;
        Ok(())
    }

    /// Stores `event` durably for every configured endpoint that is not
    /// disabled (with none, it waits for one), then applies the age and size
    /// bounds. Returns once the event is on disk.
    pub fn enqueue(&self, event: &OutgoingEvent) -> Result<Enqueued> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let enqueued = self.insert_event(&tx, event, now_unix())?;
        self.commit(tx)
            .context("cannot commit the event to the outbox")?;
        Ok(enqueued)
    }

    /// Stores `events` as [`Outbox::enqueue`] does and, in the same
    /// transaction, `camera`'s running incidents (`None` when it has none),
    /// so a crash keeps both or neither: never an `incident.started` sent
    /// for an incident a restart forgets, nor an incident kept whose start
    /// was never sent.
    pub fn record(
        &self,
        events: &[OutgoingEvent],
        camera: &str,
        open_incidents: Option<&str>,
    ) -> Result<Vec<Enqueued>> {
        let now = now_unix();
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let enqueued = events
            .iter()
            .map(|event| self.insert_event(&tx, event, now))
            .collect::<Result<Vec<_>>>()?;
        match open_incidents {
            Some(state) => tx.execute(
                "INSERT OR REPLACE INTO open_incidents (camera, state, saved_at) VALUES (?1, ?2, ?3)",
                params![camera, state, now],
            )?,
            None => tx.execute("DELETE FROM open_incidents WHERE camera = ?1", [camera])?,
        };
        self.commit(tx)
            .context("cannot commit the events and running incidents to the outbox")?;
        Ok(enqueued)
    }

    /// Stores what this outbox (one in memory: [`Outbox::in_memory`]) still
    /// holds into `file`, in one transaction of `file`, so a stop keeps all
    /// of it or none: every event some endpoint is still owed, under its id
    /// (an endpoint that took it already may get it again, as after any
    /// crash: receivers drop repeats by id), each camera's running
    /// incidents and the ids of the incidents started lately. For `run`,
    /// whose outbox in memory would otherwise be lost at its stop, once the
    /// disk takes the file again (src/monitor.rs).
    pub fn copy_into(&self, file: &Outbox) -> Result<Copied> {
        let (events, followed) = {
            let conn = self.conn();
            let events = conn
                .prepare(
                    "SELECT id, kind, created_at, body, incident_id, phase FROM events ORDER BY seq",
                )?
                .query_map([], event_from_row)?
                .collect::<rusqlite::Result<Vec<OutgoingEvent>>>()?;
            (events, Followed::read(&conn)?)
        };
        let now = now_unix();
        let mut conn = file.conn();
        let tx = write_transaction(&mut conn)?;
        // Memory took the file's notes and running incidents at its start
        // (remember_from_file) and followed the cameras since: a camera
        // back meanwhile must not stay noted offline in the file, to be
        // reported back again, nor an incident ended meanwhile stay running
        // in it, to be resumed and ended a second time. Running incidents
        // memory never took (the file unreadable at its start) stay, for
        // the next start to end.
        tx.execute("DELETE FROM offline_cameras", [])?;
        for camera in self
            .taken_from_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            tx.execute("DELETE FROM open_incidents WHERE camera = ?1", [camera])?;
        }
        followed.write(&tx)?;
        let mut stored = 0;
        for event in &events {
            if let Enqueued::Stored { .. } = file.insert_event(&tx, event, now)? {
                stored += 1;
            }
        }
        file.commit(tx)
            .context("cannot commit the events kept in memory to the outbox file")?;
        Ok(Copied {
            events: stored,
            cameras_with_running_incidents: followed.running.len(),
        })
    }

    /// Takes into this outbox (one in memory) the ids of the incidents
    /// started lately and each camera's running incidents from the file at
    /// `path`, without writing it (`open_unwritable`). A start on a full
    /// or read-only disk then continues the fires the last run was
    /// following, under their ids, rather than starting them again, and
    /// gives no new incident an id the control room already has (ids are
    /// camera, class and second, and a Pi without network time boots to the
    /// same saved time). Returns how many ids and cameras it took.
    pub fn remember_from_file(&self, path: &Path) -> Result<(usize, usize)> {
        let file = open_unwritable(path)
            .with_context(|| format!("cannot read the outbox {}", path.display()))?;
        let followed = Followed::read(&file)?;
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        followed.write(&tx)?;
        self.commit(tx)?;
        *self
            .taken_from_file
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = followed
            .running
            .iter()
            .map(|(camera, ..)| camera.clone())
            .collect();
        Ok((followed.started.len(), followed.running.len()))
    }

    /// The bytes of the events this outbox holds (their bodies): what
    /// [`Outbox::copy_into`] would write.
    pub fn held_bytes(&self) -> Result<u64> {
        let bytes: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(length(body)), 0) FROM events",
            [],
            |r| r.get(0),
        )?;
        Ok(bytes.max(0) as u64)
    }

    /// Whether `run`, keeping its outbox in memory, can go back to the file
    /// at `[outbox] path`: its disk is not mounted read-only, has `needed`
    /// bytes free, and the file opens (checked whole, as at a start) and
    /// commits a write (the `returns_to_file` counter). Returns the file
    /// opened; `Err` says why not.
    pub fn file_takes_writes(config: &crate::config::Config, needed: u64) -> Result<Outbox> {
        let path = &config.outbox.path;
        if mounted_read_only(path) {
            anyhow::bail!("the disk under {} is mounted read-only", path.display());
        }
        if let Some(free) = free_space(path).filter(|free| *free < needed) {
            anyhow::bail!(
                "{:.1} MB free under {}, {:.1} MB wanted",
                free as f64 / 1e6,
                folder_of(path).display(),
                needed as f64 / 1e6
            );
        }
        let outbox = Outbox::for_config(config)?;
        {
            let mut conn = outbox.conn();
            let tx = write_transaction(&mut conn)?;
            count(&tx, "returns_to_file", 1)?;
            outbox
                .commit(tx)
                .with_context(|| format!("cannot write to the outbox {}", path.display()))?;
        }
        Ok(outbox)
    }

    /// The ids, newest first, of at most `n` incidents started lately whose
    /// id begins with `prefix` (a camera's id and `-`). A Pi without a clock
    /// battery and without network time boots to the same saved time after
    /// every power cut, and ids are made of camera, class and second: a
    /// restart must not start an incident under the id of one it started
    /// before (the outbox would drop its events as repeats, a receiver
    /// refuse them as a reused id).
    pub fn started_incident_ids(&self, prefix: &str, n: usize) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT incident_id FROM started_incidents
             WHERE substr(incident_id, 1, length(?1)) = ?1 ORDER BY rowid DESC LIMIT ?2",
        )?;
        let ids = stmt
            .query_map(params![prefix, n as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Notes a camera reported offline.
    pub fn note_offline(&self, camera: &OfflineCamera) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        note_offline(&tx, camera)?;
        self.commit(tx)
            .context("cannot commit a camera's state to the outbox")?;
        Ok(())
    }

    /// Notes `camera` back online (or forgotten).
    pub fn note_online(&self, camera: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        tx.execute("DELETE FROM offline_cameras WHERE camera = ?1", [camera])?;
        self.commit(tx)
            .context("cannot commit a camera's state to the outbox")?;
        Ok(())
    }

    /// The cameras last reported offline and not back since, forgetting
    /// those not in `configured` (removed or renamed: nothing will report
    /// their return).
    pub fn offline_cameras(&self, configured: &[&str]) -> Result<Vec<OfflineCamera>> {
        let offline = offline_cameras(&self.conn())?;
        let (kept, gone): (Vec<_>, Vec<_>) = offline
            .into_iter()
            .partition(|c| configured.contains(&c.camera.as_str()));
        for camera in &gone {
            // A disk that refuses it now (full) leaves it for a later start.
            let _ = self.note_online(&camera.camera);
        }
        Ok(kept)
    }

    /// The running incidents [`Outbox::record`] last saved for `camera`.
    pub fn open_incidents(&self, camera: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT state FROM open_incidents WHERE camera = ?1",
                [camera],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The running incidents saved for cameras not in `configured` (removed
    /// or renamed while they ran: no frame of theirs will end them), as
    /// (camera, state), by camera.
    pub fn unconfigured_open_incidents(
        &self,
        configured: &[&str],
    ) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT camera, state FROM open_incidents ORDER BY camera")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut unconfigured = Vec::new();
        for row in rows {
            let (camera, state): (String, String) = row?;
            if !configured.contains(&camera.as_str()) {
                unconfigured.push((camera, state));
            }
        }
        Ok(unconfigured)
    }

    /// One event into `tx`; see [`Outbox::enqueue`].
    fn insert_event(
        &self,
        tx: &rusqlite::Transaction,
        event: &OutgoingEvent,
        now: f64,
    ) -> Result<Enqueued> {
        let (incident_id, phase) = match &event.incident {
            Some(r) => (Some(r.id.as_str()), Some(r.phase.as_str())),
            None => (None, None),
        };
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO events (id, kind, priority, created_at, body, incident_id, phase)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                event.id,
                event.kind.name(),
                event.kind.priority(),
                event.created_at,
                event.body,
                incident_id,
                phase
            ],
        )?;
        if inserted == 0 {
            return Ok(Enqueued::AlreadyQueued);
        }
        let seq = tx.last_insert_rowid();
        match &event.incident {
            Some(r) if r.phase == IncidentPhase::Started => {
                remember_started(tx, &r.id)?;
                wake_waiting(tx, &self.endpoints, now, &event.id)?;
            }
            Some(r) => supersede_updates(tx, &r.id, seq)?,
            None => {}
        }
        let mut endpoints = 0;
        for endpoint in &self.endpoints {
            endpoints += tx.execute(
                "INSERT INTO deliveries (endpoint, seq, next_attempt_at)
                 SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM endpoints WHERE endpoint = ?1)",
                params![endpoint, seq, now],
            )?;
        }
        expire(tx, now, self.max_age)?;
        let dropped_self = make_room(tx, self.max_events, seq)?;
        Ok(if dropped_self {
            Enqueued::DroppedFull
        } else {
            Enqueued::Stored { endpoints }
        })
    }

    /// Drops undelivered events older than the age limit, incidents and
    /// device events excepted (see the module docs); returns how many.
    pub fn expire_old(&self) -> Result<u64> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let n = expire(&tx, now_unix(), self.max_age)?;
        self.commit(tx)?;
        Ok(n)
    }

    /// The event `endpoint` is owed next, due or not: its oldest incident
    /// event, else its oldest event of any kind. Nothing else goes before it.
    pub fn head(&self, endpoint: &str) -> Result<Option<Pending>> {
        self.head_skipping(endpoint, &[])
    }

    /// A number that grows with every `incident.started` stored (`None`
    /// before the first): read with the head before an attempt, and after it
    /// by [`Outbox::retry_now_if_started_since`].
    pub fn newest_start(&self) -> Result<Option<i64>> {
        Ok(newest_start(&self.conn())?)
    }

    /// Makes `endpoint`'s delivery of `seq` due now if an incident started
    /// after `before` (the newest start when its attempt began): the wake a
    /// start gives ([`IncidentRef`]) misses a delivery that was in flight,
    /// whose failure then sets its retry up to `max_backoff_s` ahead.
    pub fn retry_now_if_started_since(
        &self,
        endpoint: &str,
        seq: i64,
        before: Option<i64>,
    ) -> Result<bool> {
        let conn = self.conn();
        if newest_start(&conn)? <= before {
            return Ok(false);
        }
        let n = conn.execute(
            "UPDATE deliveries SET next_attempt_at = ?3 WHERE endpoint = ?1 AND seq = ?2 AND next_attempt_at > ?3",
            params![endpoint, seq, now_unix()],
        )?;
        Ok(n > 0)
    }

    /// [`Outbox::head`] past the events in `skip`: the webhook took those
    /// already, with the outbox unable to record it (a full disk).
    ///
    /// Incidents go first because delivery is one event at a time: after a
    /// long outage, a backlog of camera and device events (a camera that
    /// lost power every few minutes for a day) would hold a new fire back by
    /// 2-5 minutes a thousand (review, stop 28), up to about 50 minutes at
    /// the default `max_events`. Among themselves incident events keep their
    /// order, so a receiver still gets each incident's start before its
    /// updates and end; every event carries the time it was raised for
    /// receivers that order the rest.
    pub fn head_skipping(&self, endpoint: &str, skip: &[i64]) -> Result<Option<Pending>> {
        let conn = self.conn();
        let Some(seq) = next_owed(&conn, endpoint, skip)? else {
            return Ok(None);
        };
        let pending = conn
            .query_row(
                &format!("{SELECT_PENDING} WHERE d.endpoint = ?1 AND d.seq = ?2"),
                params![endpoint, seq],
                pending_from_row,
            )
            .optional()?;
        Ok(pending)
    }

    /// The undelivered delivery of event `id` to `endpoint`, if any.
    pub fn pending_for(&self, endpoint: &str, id: &str) -> Result<Option<Pending>> {
        let conn = self.conn();
        let pending = conn
            .query_row(
                &format!("{SELECT_PENDING} WHERE d.endpoint = ?1 AND e.id = ?2"),
                params![endpoint, id],
                pending_from_row,
            )
            .optional()?;
        Ok(pending)
    }

    /// `endpoint` took event `seq` (answered 2xx).
    pub fn mark_delivered(&self, endpoint: &str, seq: i64) -> Result<()> {
        self.finish(endpoint, seq, "delivered")
    }

    /// `endpoint` refused event `seq` for good (a 4xx that is not retried).
    pub fn mark_rejected(&self, endpoint: &str, seq: i64) -> Result<()> {
        self.finish(endpoint, seq, "rejected")
    }

    fn finish(&self, endpoint: &str, seq: i64, counter: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let n = tx.execute(
            "DELETE FROM deliveries WHERE endpoint = ?1 AND seq = ?2",
            params![endpoint, seq],
        )?;
        if n > 0 {
            count(&tx, counter, 1)?;
            tx.execute(
                "UPDATE events SET settled = 1, taken = taken OR ?2 WHERE seq = ?1",
                params![seq, counter == "delivered"],
            )?;
        }
        delete_finished_events(&tx)?;
        self.commit(tx)?;
        Ok(())
    }

    /// Replaces event `seq`'s body, for every endpoint that has not taken it
    /// yet; its id stays. For a receiver that refused the body as too large
    /// (src/delivery.rs).
    pub fn replace_body(&self, seq: i64, body: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        tx.execute(
            "UPDATE events SET body = ?2 WHERE seq = ?1",
            params![seq, body],
        )?;
        self.commit(tx)?;
        Ok(())
    }

    /// An attempt failed; try again no earlier than `next_attempt_at`.
    pub fn mark_failed(
        &self,
        endpoint: &str,
        seq: i64,
        next_attempt_at: f64,
        error: &str,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let n = tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4
             WHERE endpoint = ?1 AND seq = ?2",
            params![endpoint, seq, next_attempt_at, error],
        )?;
        if n > 0 {
            count(&tx, "failed_attempts", 1)?;
        }
        self.commit(tx)?;
        Ok(())
    }

    /// The receiver said `410 Gone`: stop sending to `endpoint` until it is
    /// re-enabled. Its pending deliveries stay (until they expire, or room is
    /// needed, for incidents); new events
    /// are not queued for it.
    pub fn disable_endpoint(&self, endpoint: &str, reason: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO endpoints (endpoint, disabled_at, reason) VALUES (?1, ?2, ?3)",
            params![endpoint, now_unix(), reason],
        )?;
        if n > 0 {
            count(&tx, "endpoints_disabled", 1)?;
        }
        self.commit(tx)?;
        Ok(())
    }

    /// Re-enables an endpoint that answered `410 Gone` earlier; it gets the
    /// events no endpoint has taken meanwhile. Returns whether it was disabled.
    pub fn enable_endpoint(&self, endpoint: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = write_transaction(&mut conn)?;
        let n = tx.execute("DELETE FROM endpoints WHERE endpoint = ?1", [endpoint])?;
        if n > 0 {
            offer_unsettled(&tx, endpoint, now_unix())?;
        }
        self.commit(tx)?;
        Ok(n > 0)
    }

    /// Why `endpoint` is disabled, if it is.
    pub fn disabled_reason(&self, endpoint: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT reason FROM endpoints WHERE endpoint = ?1",
                [endpoint],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether any enabled, configured endpoint still has something to send.
    pub fn has_work(&self) -> Result<bool> {
        for endpoint in &self.endpoints {
            if self.disabled_reason(endpoint)?.is_none() && self.head(endpoint)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn stats(&self) -> Result<OutboxStats> {
        let conn = self.conn();
        let counter = |name: &str| -> rusqlite::Result<u64> {
            conn.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|v| v.unwrap_or(0).max(0) as u64)
        };
        Ok(OutboxStats {
            pending_events: conn
                .query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))?
                .max(0) as u64,
            delivered: counter("delivered")?,
            expired: counter("expired")?,
            dropped_full: counter("dropped_full")?,
            superseded: counter("superseded")?,
            rejected: counter("rejected")?,
            endpoints_disabled: counter("endpoints_disabled")?,
            failed_attempts: counter("failed_attempts")?,
        })
    }
}

/// How long a statement waits for another connection's write lock before
/// failing with "database is locked". Every write here is one small
/// transaction with one fsync, so a wait this long means something else holds
/// the lock (an open `sqlite3` shell, a stalled disk).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `error` is SQLite's "database is busy/locked": another connection
/// held the write lock past [`BUSY_TIMEOUT`]. Nothing was changed; the same
/// call can be tried again later.
pub fn is_busy(error: &anyhow::Error) -> bool {
    sqlite_errors(error).any(|e| {
        matches!(
            e.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        )
    })
}

/// What SQLite said, in each link of `error`'s chain that is its error.
fn sqlite_errors(error: &anyhow::Error) -> impl Iterator<Item = rusqlite::ffi::Error> + '_ {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<rusqlite::Error>()?.sqlite_error().copied())
}

/// Begins a transaction that may write. IMMEDIATE takes the write lock at
/// BEGIN, waiting for it under the busy timeout. A DEFERRED one that reads
/// first and then writes must upgrade its read snapshot, and in WAL mode that
/// fails at once with SQLITE_BUSY_SNAPSHOT, without waiting, when another
/// process committed in between: `test-alert` failed that way beside a
/// delivering service (tests/delivery.rs,
/// the_worker_and_other_processes_share_the_outbox_without_failing: 10 of 10
/// runs failed with DEFERRED).
fn write_transaction(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// An outbox SQLite cannot read whole: what [`Outbox::open`] returns (inside
/// its `anyhow::Error`) for a file that is not a database, or one with
/// damaged pages.
#[derive(Debug)]
pub struct Damaged {
    pub path: PathBuf,
    /// What SQLite said, on one line.
    pub problem: String,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the outbox {path} is damaged ({problem}); not starting over it, so that its undelivered events are not silently lost: \
             stop the service and move it aside (with any {path}-wal and {path}-shm) to start with an empty outbox, \
             or set [outbox] on_damage = \"set_aside\" to let `run` do that and keep watching; \
             keep the copy, `sqlite3 COPY .recover` may save its events",
            path = self.path.display(),
            problem = self.problem
        )
    }
}

impl std::error::Error for Damaged {}

/// Refuses an outbox SQLite cannot read whole (`PRAGMA quick_check`): a
/// file that is not a database, or one with damaged pages. Starting an
/// empty outbox over it would drop its undelivered alerts without a word,
/// and writing to it could spread the damage, so the service stops with
/// one line that names the file and what to do ([`Damaged`]), or `run`
/// sets it aside ([`Outbox::for_service`]). wildfire-watch never writes to
/// it (SQLite itself, closing the refused connection, removes a `-wal` it
/// found invalid, or folds a valid one in, as any open of the file would).
/// The check reads every page once, which for an outbox of a few thousand
/// events is a fraction of a second.
fn check_intact(conn: &Connection, path: &Path) -> Result<()> {
    let quick_check = || conn.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0));
    // A read error is tried once more: one that stays is a bad block (the
    // -wal, rewritten most, is where an SD card wears first).
    let answer = match quick_check() {
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure) => {
            quick_check()
        }
        answer => answer,
    };
    let problem = match answer {
        Ok(answer) if answer == "ok" => return Ok(()),
        Ok(answer) => answer,
        Err(e) if is_damage(&e) => e.to_string(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the outbox {}", path.display()))
        }
    };
    Err(Damaged {
        path: path.to_owned(),
        problem: problem.split_whitespace().collect::<Vec<_>>().join(" "),
    }
    .into())
}

/// Whether an error reading the outbox means the file is damaged: SQLite
/// finds it corrupt or not a database, or the disk fails to read it (not
/// any I/O error: a healthy outbox must not be set aside for a lock). A read
/// error had been a plain error, which no `on_damage` setting covers: the
/// service stopped at every start, for good, where setting the file aside
/// (a rename, which reads nothing) keeps the tower watching (power review,
/// stop 28).
fn is_damage(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    e.sqlite_error().is_some_and(|e| {
        matches!(
            e.code,
            rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
        ) || matches!(
            // Only a failed read of the file: a lock, the -shm's mapping or
            // memory running short says nothing of the data.
            e.extended_code,
            ffi::SQLITE_IOERR_READ | ffi::SQLITE_IOERR_SHORT_READ | ffi::SQLITE_IOERR_CORRUPTFS
        )
    })
}

/// A damaged outbox that `run` set aside at start to begin an empty one
/// (`[outbox] on_damage = "set_aside"`), whose `outbox.replaced` event is not
/// in the new outbox yet.
///
/// The duty to send that event is kept on disk, not in memory: a file
/// `COPY.notice` holds the event's making (what SQLite said, when, the id's
/// tag) and which file was damaged ([`FileId`]), written whole and synced
/// *before* the first rename ([`begin`]; without it nothing moves), and
/// removed ([`SetAside::reported`]) only once the event is stored. A crash or a
/// power cut anywhere in between leaves it; the next start finishes the
/// renames of that same file under that name ([`finish`]) and sends the
/// event, with the same id and body, so a receiver that already has it
/// keeps one ([`Outbox::for_service`] finds every notice beside the outbox).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetAside {
    /// Where the damaged file is now; its `-wal` and `-shm`, if it had them,
    /// sit beside it under the same name, so `sqlite3 COPY` reads all three.
    #[serde(skip)]
    pub copy: PathBuf,
    /// What SQLite said of it.
    pub problem: String,
    /// When it was set aside, unix seconds on the device's clock.
    pub at: f64,
    /// Whether network time had set that clock then (src/clock.rs).
    pub clock_synchronized: Option<bool>,
    /// Random, for the event's id: copies of one name (a clock stepped back)
    /// never share an id.
    pub tag: String,
    /// Which file was damaged: a set-aside is finished only on the file it
    /// began on, never on a later one at the same path.
    #[serde(default)]
    pub file: Option<FileId>,
}

/// A file told apart from a later one at the same path: its length, its
/// modification time and a digest of its first 4 KiB (the SQLite header and
/// first page). Not its inode or device: vfat and exFAT number files afresh
/// at each mount, and the mount after a power cut is when this is read
/// again. The damaged file is synced before this is taken and never written
/// to after, so the same file gives the same id after a reboot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    len: u64,
    modified_ns: i64,
    head_sha256: [u8; 32],
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        use sha2::{Digest, Sha256};
        use std::io::Read as _;
        use std::os::unix::fs::MetadataExt as _;
        let mut file = std::fs::File::open(path).ok()?;
        let m = file.metadata().ok()?;
        let mut head = Vec::with_capacity(4096);
        file.by_ref().take(4096).read_to_end(&mut head).ok()?;
        Some(FileId {
            len: m.len(),
            modified_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            head_sha256: Sha256::digest(&head).into(),
        })
    }
}

impl SetAside {
    fn notice(&self) -> PathBuf {
        with_suffix(&self.copy, NOTICE)
    }

    /// Call once the `outbox.replaced` event is stored: the next start will
    /// not send it again.
    pub fn reported(&self) {
        if let Err(e) = std::fs::remove_file(self.notice()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(
                    "cannot remove {}: {e}; the next start sends outbox.replaced for {} again",
                    self.notice().display(),
                    self.copy.display()
                );
            }
        }
    }

    /// Whether this is a set-aside of the file now at `path` that a crash
    /// cut short: its copy is not there yet, and the file is the one it
    /// began on.
    fn begun_on(&self, path: &Path) -> bool {
        !self.copy.exists() && self.file.is_some() && FileId::of(path) == self.file
    }

    /// The notice on disk, whole or not at all (written beside it, synced,
    /// then renamed over it), and its folder synced.
    fn write_notice(&self) -> std::io::Result<()> {
        use std::io::Write as _;
        let notice = self.notice();
        let partial = with_suffix(&notice, ".partial");
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(serde_json::to_string(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, &notice)?;
        sync_folder(&self.copy)
    }

    /// The notice at `notice`; one that cannot be read still owes the
    /// control room its event, with what is known.
    fn read_notice(notice: &Path) -> Option<SetAside> {
        let copy = PathBuf::from(notice.to_str()?.strip_suffix(NOTICE)?);
        let problem = match std::fs::read_to_string(notice) {
            Ok(text) => match serde_json::from_str::<SetAside>(&text) {
                Ok(set_aside) => return Some(SetAside { copy, ..set_aside }),
                Err(e) => format!("unknown (its notice is damaged: {e})"),
            },
            Err(e) => format!("unknown (its notice could not be read: {e})"),
        };
        Some(SetAside {
            problem,
            at: std::fs::metadata(notice)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64()),
            clock_synchronized: None,
            tag: copy.file_name()?.to_string_lossy().into_owned(),
            file: None,
            copy,
        })
    }
}

/// The ending of the file that says a set-aside copy is not reported yet.
const NOTICE: &str = ".notice";
/// What a damaged outbox's file name gets, before its time stamp.
const DAMAGED: &str = ".damaged-";
/// The files SQLite keeps beside a database in WAL mode.
const SIDE_FILES: [&str; 2] = ["-wal", "-shm"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes the renames and new files in `path`'s folder survive a power cut.
fn sync_folder(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder_of(path))?.sync_all()
}

/// The notices in the outbox's folder (`OUTBOX.damaged-*.notice`, files
/// only; names this build makes are UTF-8, as the configured path is).
fn notices(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let prefix = format!("{}{DAMAGED}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(folder_of(path)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|f| f.starts_with(&prefix) && f.ends_with(NOTICE))
        })
        .map(|e| e.path())
        .collect()
}

/// Begins setting the damaged outbox `damaged.path` aside: picks its name,
/// `PATH.damaged-STAMP` (`-2`, `-3`... if that is taken, by a copy, its
/// side files or its notice), and writes the notice, before anything moves.
/// A notice that cannot be written stops the set-aside (and the start):
/// moved without one, the copy would be forgotten by a start that then
/// fails too (a full disk), where left in place the next start tries again.
fn begin(damaged: &Damaged, now: f64) -> Result<SetAside> {
    let path = &damaged.path;
    let stamp = format!("{DAMAGED}{}", crate::events::compact_stamp(now));
    let copy = (1..)
        .map(|n| match n {
            1 => with_suffix(path, &stamp),
            n => with_suffix(path, &format!("{stamp}-{n}")),
        })
        .find(|c| {
            [NOTICE, "", SIDE_FILES[0], SIDE_FILES[1]]
                .iter()
                .all(|s| !with_suffix(c, s).exists())
        })
        .expect("an unused name");
    // Its metadata on disk as the id below reads it, whatever a power cut
    // does next.
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.sync_all()) {
        warn!("cannot sync {}: {e}", path.display());
    }
    let set_aside = SetAside {
        copy,
        problem: damaged.problem.clone(),
        at: now,
        clock_synchronized: crate::clock::synchronized(),
        tag: format!("{:08x}", fastrand::u32(..)),
        file: FileId::of(path),
    };
    if let Err(e) = set_aside.write_notice() {
        let _ = std::fs::remove_file(with_suffix(&set_aside.notice(), ".partial"));
        anyhow::bail!(
            "the outbox {} is damaged ({}) and [outbox] on_damage = \"set_aside\" cannot record setting it aside: \
             writing {} failed: {e}; nothing was moved: free space on the disk under [outbox] path (the next start tries again)",
            path.display(),
            damaged.problem,
            set_aside.notice().display()
        );
    }
    Ok(set_aside)
}

/// Moves the damaged outbox at `path`, with its `-wal` and `-shm`, to the
/// set-aside's name; after a crash, what is left of it. The log goes before
/// the main file: SQLite deletes a `-wal` it finds beside a new, empty
/// database, so left behind it would be lost to the copy. No file of a
/// copy is ever replaced.
fn finish(set_aside: &SetAside, path: &Path) -> Result<()> {
    let mut moved = Vec::new();
    for suffix in SIDE_FILES.into_iter().chain([""]) {
        let from = with_suffix(path, suffix);
        let to = with_suffix(&set_aside.copy, suffix);
        if !from.exists() || to.exists() {
            continue;
        }
        std::fs::rename(&from, &to).with_context(|| {
            format!(
                "the outbox {} is damaged ({}) and could not be set aside: renaming {} to {} failed \
                 (already moved: {moved:?}); stop the service and move the files aside by hand",
                path.display(),
                set_aside.problem,
                from.display(),
                to.display()
            )
        })?;
        moved.push(to);
    }
    if let Err(e) = sync_folder(path) {
        warn!("cannot sync the folder of {}: {e}", path.display());
    }
    Ok(())
}

/// Finishes every set-aside of the file at `path` that a crash cut short.
fn finish_begun(path: &Path) -> Result<()> {
    for begun in unreported(path).iter().filter(|s| s.begun_on(path)) {
        finish(begun, path)?;
        log_set_aside(path, begun);
    }
    Ok(())
}

fn log_set_aside(path: &Path, set_aside: &SetAside) {
    tracing::error!(
        "the outbox {} was damaged ({}): set it aside as {} and starting an empty one ([outbox] on_damage = \"set_aside\"); events it had not delivered are not sent; keep the copy, `sqlite3 COPY .recover` may save them",
        path.display(),
        set_aside.problem,
        set_aside.copy.display()
    );
}

/// The room [`Outbox::for_service`] wants free under the outbox at `path`
/// before setting the damaged file there aside: twice its size, with its
/// `-wal` and `-shm`.
///
/// The file never shrinks (no auto_vacuum), so its size is the most this
/// tower's outbox has needed; the empty one that replaces it, under the same
/// `max_events`, grows back towards it (10,000 events of up to ~130 KB:
/// ~1.3 GB), hence once its size. Once more for what else writes there
/// while it grows: its `-wal`, the journal, an outbox that grows past the old
/// one. On a 16 GB card with ~4 GB of system and 1.3 GB copies, that keeps
/// about 6 copies (12 GB - 1.3 GB live - 2.6 GB free); nothing is deleted
/// while that much is free. (An empty outbox itself takes ~130 KB: file,
/// `-wal` and `-shm` measured on tmpfs; [`Outbox::open_making_room`] frees
/// that where twice a tiny damaged file is not enough.)
fn room_for(path: &Path) -> u64 {
    size_with_side_files(path).saturating_mul(2)
}

/// The bytes of the database at `path` with its `-wal` and `-shm`.
fn size_with_side_files(path: &Path) -> u64 {
    ["", SIDE_FILES[0], SIDE_FILES[1]]
        .iter()
        .filter_map(|s| std::fs::metadata(with_suffix(path, s)).ok())
        .map(|m| m.len())
        .sum()
}

/// Whether the disk under `path`, not the service's setup, refuses the
/// outbox: full, failing, or mounted read-only. SQLite says "read-only" too
/// of a file or folder the service user may not write (a file `sudo` made,
/// a path outside the unit's StateDirectory): an install mistake, for which
/// `run` stops and says what to fix, rather than send someone up the
/// mountain to replace a card. A disk mounted read-only refuses whatever
/// SQLite calls it: a file closed cleanly there, with no `-shm` left and
/// none to be made, "cannot open" (SQLITE_CANTOPEN), and `run` stopped for
/// good.
fn disk_refuses(path: &Path, error: &anyhow::Error) -> bool {
    if mounted_read_only(path) {
        return true;
    }
    let read_only = sqlite_errors(error).any(|e| e.code == rusqlite::ErrorCode::ReadOnly);
    is_storage_error(error) && !read_only
}

/// Whether the file system holding the folder of `path` is mounted
/// read-only (`statvfs`), as the kernel remounts a failing ext4 card.
fn mounted_read_only(path: &Path) -> bool {
    statvfs(path).is_some_and(|stat| stat.f_flag & libc::ST_RDONLY != 0)
}

/// `statvfs` of the folder of `path`, if it can tell.
fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt as _;
    let folder = std::ffi::CString::new(folder_of(path).as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes the struct it is given, and the path is a
    // NUL-terminated string that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(folder.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat)
}

/// Bytes free to the service under the folder of `path` (`statvfs`), if it
/// can tell.
// The block counts are u64 here and on aarch64, u32 on a 32-bit Pi OS.
#[allow(clippy::useless_conversion)]
fn free_space(path: &Path) -> Option<u64> {
    let stat = statvfs(path)?;
    Some(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

/// Whether `e` says the disk is full: SQLite's "database or disk is full",
/// a `-shm` it could not grow (what a full tmpfs gives at open), or the OS's
/// "no space left".
fn is_full(e: &anyhow::Error) -> bool {
    sqlite_errors(e).any(|e| {
        e.code == rusqlite::ErrorCode::DiskFull
            || e.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
    }) || e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(libc::ENOSPC))
    })
}

/// Deletes the oldest reported copies beside the outbox at `path` while
/// `free` says less than `needed` bytes are free there; returns them. Never
/// a copy still owed its `outbox.replaced`, nor the outbox itself.
fn prune_copies(path: &Path, needed: u64, free: impl Fn(&Path) -> Option<u64>) -> Vec<PathBuf> {
    let mut deleted = Vec::new();
    while let Some(short) = free(path).filter(|f| *f < needed) {
        let why = format!(
            "{short} bytes free under [outbox] path, under twice the size of the damaged outbox now set aside ({needed} bytes)"
        );
        match delete_oldest_reported(path, &why) {
            Some(copy) => deleted.push(copy),
            None => break,
        }
    }
    deleted
}

/// Whether `rest`, after `OUTBOX.damaged-`, is what [`begin`] names a copy:
/// a stamp (`20250101T000000Z`) and maybe `-N`. Anything else beside the
/// copies (a person's `.recovered` database, an archive of one, a side
/// file or a notice) is not a copy, and never deleted. Read as bytes: a
/// name with a multi-byte character where the stamp ends must not panic
/// every start that prunes.
fn is_copy_stamp(rest: &str) -> bool {
    let rest = rest.as_bytes();
    let (stamp, n) = rest.split_at(rest.len().min(16));
    let digits = |r: std::ops::Range<usize>| stamp[r].iter().all(u8::is_ascii_digit);
    stamp.len() == 16
        && digits(0..8)
        && stamp[8] == b'T'
        && digits(9..15)
        && stamp[15] == b'Z'
        && (n.is_empty()
            || n.strip_prefix(b"-")
                .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit)))
}

/// The copies set aside beside the outbox at `path` whose `outbox.replaced`
/// is stored (no notice left), oldest first (by modification time, then
/// name), each with its size and that of its `-wal` and `-shm`.
fn reported_copies(path: &Path) -> Vec<(PathBuf, u64)> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let prefix = format!("{}{DAMAGED}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(folder_of(path)) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf, u64)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .is_some_and(is_copy_stamp)
        })
        .map(|e| e.path())
        .filter(|copy| {
            [NOTICE, ".notice.partial"]
                .iter()
                .all(|s| !with_suffix(copy, s).exists())
        })
        .filter_map(|copy| {
            let modified = std::fs::metadata(&copy).and_then(|m| m.modified()).ok()?;
            let size = size_with_side_files(&copy);
            Some((modified, copy, size))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(_, copy, size)| (copy, size))
        .collect()
}

/// Deletes the oldest reported copy beside the outbox at `path`, with its
/// `-wal` and `-shm`, and logs one WARN naming it, its size and `why`;
/// returns it, or `None` where there is none (or it could not be deleted).
fn delete_oldest_reported(path: &Path, why: &str) -> Option<PathBuf> {
    let (copy, size) = reported_copies(path).into_iter().next()?;
    // The log and the index first: a copy is never left without its main
    // file while they remain.
    for suffix in [SIDE_FILES[0], SIDE_FILES[1], ""] {
        if let Err(e) = std::fs::remove_file(with_suffix(&copy, suffix)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(
                    "cannot delete {}{suffix} to make room for the outbox: {e}",
                    copy.display()
                );
                return None;
            }
        }
    }
    if let Err(e) = sync_folder(path) {
        warn!("cannot sync the folder of {}: {e}", path.display());
    }
    warn!(
        "deleted {} ({:.1} MB with its -wal and -shm), a damaged outbox set aside at an earlier start whose outbox.replaced was stored, the oldest such copy: {why}",
        copy.display(),
        size as f64 / 1e6
    );
    Some(copy)
}

/// The copies set aside beside the outbox at `path` whose `outbox.replaced`
/// is not stored yet, in the order they were set aside.
fn unreported(path: &Path) -> Vec<SetAside> {
    let mut found: Vec<SetAside> = notices(path)
        .iter()
        .filter_map(|n| SetAside::read_notice(n))
        .collect();
    found.sort_by(|a, b| a.at.total_cmp(&b.at).then_with(|| a.copy.cmp(&b.copy)));
    found
}

/// Brings the outbox at `path` to [`SCHEMA_VERSION`], one step at a time, in
/// one transaction: a crash mid-way leaves it at its old version, whole.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = write_transaction(conn)
        .with_context(|| format!("cannot open the outbox {}", path.display()))?;
    let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        anyhow::bail!(
            "the outbox {} has schema version {version}, newer than this build's {SCHEMA_VERSION}: \
             it was written by a newer wildfire-watch; run that one, or move the file aside to start an empty outbox",
            path.display()
        );
    }
    for (from, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(step).with_context(|| {
            format!(
                "cannot upgrade the outbox {} from schema version {from}",
                path.display()
            )
        })?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        if version > 0 {
            info!(
                "outbox {}: schema upgraded from version {version} to {SCHEMA_VERSION}",
                path.display()
            );
        }
    }
    tx.commit()
        .with_context(|| format!("cannot upgrade the outbox {}", path.display()))?;
    Ok(())
}

/// An endpoint's delivery of an event with the event, as [`pending_from_row`]
/// reads it; a `WHERE` on `d` (deliveries) and `e` (events) follows.
const SELECT_PENDING: &str = "SELECT e.id, e.kind, e.created_at, e.body, e.incident_id, e.phase,
        e.seq, d.attempts, d.next_attempt_at
    FROM deliveries d JOIN events e ON e.seq = d.seq";

/// The seqs owed to endpoint `?1`, oldest first, at most `?2`: of incident
/// events ([`FIRST_OWED_INCIDENT`], through the index of incident events)
/// or of all events ([`FIRST_OWED`]).
///
/// The index and the join order are forced: left to itself, SQLite (3.54)
/// walks every delivery the endpoint is owed and sorts the incidents among
/// them, a pass over the whole backlog on every turn: 859 us against 28 us
/// at 10,000 events, warm (`cargo bench --bench outbox`).
const FIRST_OWED_INCIDENT: &str = "SELECT e.seq FROM events e INDEXED BY events_incidents
    CROSS JOIN deliveries d ON d.endpoint = ?1 AND d.seq = e.seq
    WHERE e.kind = 'incident' ORDER BY e.seq LIMIT ?2";
const FIRST_OWED: &str = "SELECT seq FROM deliveries WHERE endpoint = ?1 ORDER BY seq LIMIT ?2";

/// The seq `endpoint` is sent next, past those in `skip`: its first incident
/// event owed, else its first event owed ([`Outbox::head_skipping`]).
fn next_owed(conn: &Connection, endpoint: &str, skip: &[i64]) -> Result<Option<i64>> {
    match first_owed(conn, FIRST_OWED_INCIDENT, endpoint, skip)? {
        Some(seq) => Ok(Some(seq)),
        None => first_owed(conn, FIRST_OWED, endpoint, skip),
    }
}

/// The first seq `sql` ([`FIRST_OWED_INCIDENT`], [`FIRST_OWED`]) gives for
/// `endpoint` that is not in `skip`. Asking for one more row than `skip`
/// holds finds it when there is one, without a query of unbounded length.
fn first_owed(conn: &Connection, sql: &str, endpoint: &str, skip: &[i64]) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![endpoint, skip.len() as i64 + 1])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        if !skip.contains(&seq) {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

fn pending_from_row(r: &rusqlite::Row) -> rusqlite::Result<Pending> {
    Ok(Pending {
        event: event_from_row(r)?,
        seq: r.get(6)?,
        attempts: r.get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_at: r.get(8)?,
    })
}

/// The event in a row's first six columns: id, kind, created_at, body,
/// incident_id and phase, as [`SELECT_PENDING`] and [`Outbox::copy_into`]
/// select them.
fn event_from_row(r: &rusqlite::Row) -> rusqlite::Result<OutgoingEvent> {
    let incident_id: Option<String> = r.get(4)?;
    let phase: Option<String> = r.get(5)?;
    let incident = match (
        incident_id,
        phase.as_deref().and_then(IncidentPhase::from_name),
    ) {
        (Some(id), Some(phase)) => Some(IncidentRef { id, phase }),
        _ => None,
    };
    Ok(OutgoingEvent {
        id: r.get(0)?,
        kind: EventKind::from_name(&r.get::<_, String>(1)?),
        created_at: r.get(2)?,
        body: r.get(3)?,
        incident,
    })
}

fn count(tx: &rusqlite::Transaction, name: &str, n: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + ?2",
        params![name, n as i64],
    )?;
    Ok(())
}

/// Deletes the events an endpoint has settled that no endpoint still waits for.
fn delete_finished_events(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM events WHERE settled = 1
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq)",
        [],
    )?;
    Ok(())
}

/// Queues for `endpoint`, unless it is disabled, every event no endpoint has
/// settled yet that it does not already have; returns how many.
fn offer_unsettled(
    tx: &rusqlite::Transaction,
    endpoint: &str,
    now: f64,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT OR IGNORE INTO deliveries (endpoint, seq, next_attempt_at)
         SELECT ?1, seq, ?2 FROM events
         WHERE settled = 0 AND NOT EXISTS (SELECT 1 FROM endpoints WHERE endpoint = ?1)",
        params![endpoint, now],
    )
}

/// The events [`expire`] drops, older than `?1`: the kinds that can expire
/// (the same condition as schema 5's `events_by_age`, so it is used).
const EXPIRED: &str =
    "FROM events WHERE created_at < ?1 AND kind NOT IN ('incident', 'device', 'camera')";

fn expire(tx: &rusqlite::Transaction, now: f64, max_age: Duration) -> rusqlite::Result<u64> {
    let cutoff = now - max_age.as_secs_f64();
    let old: Vec<(String, String)> = {
        let mut stmt = tx.prepare(&format!("SELECT id, kind {EXPIRED}"))?;
        let rows = stmt.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, kind) in &old {
        warn!(
            "dropping {kind} event {id}: undelivered after {:.0} h, the outbox age limit ([outbox] max_age_hours)",
            max_age.as_secs_f64() / 3600.0
        );
    }
    if !old.is_empty() {
        tx.execute(&format!("DELETE {EXPIRED}"), [cutoff])?;
        count(tx, "expired", old.len() as u64)?;
    }
    Ok(old.len() as u64)
}

/// Incident ids [`Outbox::started_incident_ids`] keeps: far more than start
/// between two restarts.
const STARTED_INCIDENTS_KEPT: i64 = 1000;

/// A number that grows with every incident started: the newest row of
/// `started_incidents` (one lookup; `events` would be a scan).
fn newest_start(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT MAX(rowid) FROM started_incidents", [], |r| r.get(0))
}

/// Keeps `incident_id` among the ids of incidents started lately.
fn remember_started(tx: &rusqlite::Transaction, incident_id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO started_incidents (incident_id) VALUES (?1)",
        [incident_id],
    )?;
    tx.execute(
        "DELETE FROM started_incidents WHERE rowid <= (SELECT MAX(rowid) FROM started_incidents) - ?1",
        [STARTED_INCIDENTS_KEPT],
    )?;
    Ok(())
}

/// Makes the delivery each of `endpoints` sends next ([`Outbox::head`])
/// due now, where it was waiting out a retry: a new incident has started
/// (see [`IncidentRef`]). Its backoff goes on growing from its attempts if
/// this try fails too. (It woke the oldest delivery owed, which stopped
/// being the one sent next when incidents went first: after an outage, with
/// a heartbeat older than the incident retrying, a new fire waited out that
/// incident's backoff, up to `max_backoff_s`.)
fn wake_waiting(
    tx: &rusqlite::Transaction,
    endpoints: &[String],
    now: f64,
    id: &str,
) -> Result<()> {
    let mut woken = 0;
    for endpoint in endpoints {
        if let Some(seq) = next_owed(tx, endpoint, &[])? {
            woken += tx.execute(
                "UPDATE deliveries SET next_attempt_at = ?1
                 WHERE endpoint = ?2 AND seq = ?3 AND next_attempt_at > ?1",
                params![now, endpoint, seq],
            )?;
        }
    }
    if woken > 0 {
        info!("{id} is a new incident: {woken} webhook(s) waiting out a retry try again now");
    }
    Ok(())
}

/// Drops every endpoint's undelivered `incident.updated` of incident
/// `incident_id` stored before `seq` (see [`IncidentRef`]). An attempt of one
/// in flight still ends normally; settling it finds nothing to mark.
fn supersede_updates(
    tx: &rusqlite::Transaction,
    incident_id: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    let stale = "SELECT seq FROM events WHERE incident_id = ?1 AND phase = ?2 AND seq < ?3";
    let args = params![incident_id, IncidentPhase::Updated.as_str(), seq];
    let dropped = tx.execute(
        &format!("DELETE FROM deliveries WHERE seq IN ({stale})"),
        args,
    )?;
    // Settled, so that they are deleted rather than kept for an endpoint
    // added later: a stale update is stale for every endpoint.
    tx.execute(
        &format!("UPDATE events SET settled = 1 WHERE seq IN ({stale})"),
        args,
    )?;
    delete_finished_events(tx)?;
    if dropped > 0 {
        count(tx, "superseded", dropped as u64)?;
    }
    Ok(())
}

/// Drops events until at most `max_events` remain: first those some
/// endpoint has already taken (a control room has them; another, maybe down
/// for days, waits for them), then the lowest priority, oldest first.
/// Returns whether `new_seq` itself went.
fn make_room(tx: &rusqlite::Transaction, max_events: u64, new_seq: i64) -> rusqlite::Result<bool> {
    let total: i64 = tx.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    let excess = (total.max(0) as u64).saturating_sub(max_events);
    if excess == 0 {
        return Ok(false);
    }
    let victims: Vec<(i64, String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT seq, id, kind FROM events ORDER BY taken DESC, priority ASC, seq ASC LIMIT ?1",
        )?;
        let rows = stmt.query_map([excess as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut dropped_self = false;
    for (seq, id, kind) in &victims {
        warn!("dropping undelivered {kind} event {id}: the outbox holds [outbox] max_events = {max_events} events");
        tx.execute("DELETE FROM events WHERE seq = ?1", [seq])?;
        dropped_self |= *seq == new_seq;
    }
    count(tx, "dropped_full", victims.len() as u64)?;
    Ok(dropped_self)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_error_counts_as_damage_and_a_busy_or_full_disk_does_not() {
        let error = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        for code in [
            rusqlite::ffi::SQLITE_IOERR_READ,
            rusqlite::ffi::SQLITE_IOERR_SHORT_READ,
            rusqlite::ffi::SQLITE_CORRUPT,
            rusqlite::ffi::SQLITE_NOTADB,
        ] {
            assert!(is_damage(&error(code)), "{code}");
        }
        for code in [
            rusqlite::ffi::SQLITE_IOERR_SHMMAP,
            rusqlite::ffi::SQLITE_IOERR_LOCK,
            rusqlite::ffi::SQLITE_IOERR_NOMEM,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_CANTOPEN,
            rusqlite::ffi::SQLITE_READONLY,
        ] {
            assert!(!is_damage(&error(code)), "{code}");
        }
    }

    #[test]
    fn the_queries_that_pick_events_use_an_index_not_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        let conn = outbox.conn();
        for sql in [
            "DELETE FROM events WHERE settled = 1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq)",
            "SELECT 'x', seq, 0 FROM events WHERE settled = 0 AND NOT EXISTS (SELECT 1 FROM endpoints WHERE endpoint = 'x')",
            "SELECT seq, id, kind FROM events ORDER BY taken DESC, priority ASC, seq ASC LIMIT 3",
            &format!("SELECT id, kind {EXPIRED}").replace("?1", "5"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let on_events: Vec<&String> =
                plan.iter().filter(|p| p.contains(" events")).collect();
            assert!(
                !on_events.is_empty() && on_events.iter().all(|p| p.contains("INDEX")),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn the_next_event_owed_is_found_in_order_without_a_sort() {
        // Each turn of delivery asks for the first owed event: read in
        // index order and stopped at the first row, not sorted from all.
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        let conn = outbox.conn();
        for sql in [FIRST_OWED_INCIDENT, FIRST_OWED] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params!["http://a/", 1], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                plan.iter()
                    .all(|p| !p.contains("TEMP B-TREE") && !p.starts_with("SCAN d")),
                "{sql}: {plan:?}"
            );
        }
    }

    fn event(id: &str, kind: EventKind, created_at: f64) -> OutgoingEvent {
        OutgoingEvent {
            id: id.into(),
            kind,
            created_at,
            body: format!("{{\"id\":\"{id}\"}}"),
            incident: None,
        }
    }

    fn open(dir: &Path, max_events: u32) -> Outbox {
        Outbox::open(
            &dir.join("outbox.sqlite3"),
            vec!["http://a/".into(), "http://b/".into()],
            max_events,
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    /// An outbox in `dir` (webhooks a and b) holding `events`, stored in
    /// this order now.
    fn holding(dir: &Path, events: &[(&str, EventKind)]) -> Outbox {
        let outbox = open(dir, 100);
        for (id, kind) in events {
            outbox.enqueue(&event(id, *kind, now_unix())).unwrap();
        }
        outbox
    }

    /// A configuration whose outbox is at `path`, with `outbox` (lines of
    /// `[outbox]`) added.
    fn config_for(path: &Path, outbox: &str) -> crate::config::Config {
        crate::config::Config::parse(
            Path::new("test.toml"),
            &format!(
                "[device]\nid = \"t\"\nname = \"T\"\n[outbox]\npath = {:?}\n{outbox}",
                path.to_str().unwrap()
            ),
        )
        .unwrap()
    }

    fn user_version(path: &Path) -> u32 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_damaged_outbox_is_set_aside_whole_under_a_name_not_yet_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let now = 1_764_000_000.0;
        let mut copies = Vec::new();
        for round in 0..2u8 {
            std::fs::write(&path, [b'x', round].repeat(3000)).unwrap();
            let Err(error) = Outbox::open(&path, vec![], 10, Duration::from_secs(60)) else {
                panic!("a damaged outbox opened");
            };
            // A log beside it when it is set aside (SQLite itself removes
            // one it finds invalid when the refused connection closes).
            std::fs::write(dir.path().join("outbox.sqlite3-wal"), [round]).unwrap();
            let damaged = error.downcast_ref::<Damaged>().expect("a Damaged error");
            assert!(error.to_string().contains("on_damage"), "{error}");
            let aside = set_aside(damaged, now);
            // Nothing left under the old names for the new outbox to pick up.
            assert!(!path.exists());
            assert!(!dir.path().join("outbox.sqlite3-wal").exists());
            assert_eq!(
                std::fs::read(&aside.copy).unwrap(),
                [b'x', round].repeat(3000)
            );
            assert_eq!(
                std::fs::read(with_suffix(&aside.copy, "-wal")).unwrap(),
                [round]
            );
            copies.push(
                aside
                    .copy
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        // The same second twice (a crash loop): the second copy does not
        // replace the first.
        assert_eq!(
            copies,
            [
                "outbox.sqlite3.damaged-20251124T160000Z",
                "outbox.sqlite3.damaged-20251124T160000Z-2"
            ]
        );
        let outbox = Outbox::open(&path, vec![], 10, Duration::from_secs(60)).unwrap();
        assert_eq!(outbox.stats().unwrap().pending_events, 0);
        drop(outbox);

        // Each copy owes the control room a notice until it is reported.
        let owed = unreported(&path);
        assert_eq!(
            owed.iter()
                .map(|s| s.copy.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            copies
        );
        assert!(
            owed.iter().all(|s| s.problem == "file is not a database"),
            "{owed:?}"
        );
        owed[0].reported();
        assert_eq!(unreported(&path), owed[1..]);
        owed[1].reported();
        assert!(unreported(&path).is_empty());
    }

    /// [`begin`] and [`finish`], as [`Outbox::for_service`] runs them.
    fn set_aside(damaged: &Damaged, now: f64) -> SetAside {
        let set_aside = begin(damaged, now).unwrap();
        finish(&set_aside, &damaged.path).unwrap();
        set_aside
    }

    #[test]
    fn a_set_aside_cut_short_is_finished_on_the_same_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let damaged = Damaged {
            path: path.clone(),
            problem: "file is not a database".into(),
        };
        let now = 1_764_000_000.0;
        let name = |n: &str| dir.path().join(format!("outbox.sqlite3.damaged-{n}"));
        // The first try wrote its notice and moved the log, then the power
        // went.
        std::fs::write(&path, b"main").unwrap();
        std::fs::write(dir.path().join("outbox.sqlite3-wal"), b"log").unwrap();
        let begun = begin(&damaged, now).unwrap();
        std::fs::rename(
            dir.path().join("outbox.sqlite3-wal"),
            name("20251124T160000Z-wal"),
        )
        .unwrap();
        assert_eq!(unreported(&path), std::slice::from_ref(&begun));
        // The next start finishes it before opening anything, under the
        // same name and notice, whatever the file now looks like.
        finish_begun(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read(&begun.copy).unwrap(), b"main");
        assert_eq!(std::fs::read(name("20251124T160000Z-wal")).unwrap(), b"log");
        assert_eq!(unreported(&path), std::slice::from_ref(&begun));

        // Its copy taken away by a person while its notice stays: a later
        // damage at the same path is another file, set aside on its own.
        std::fs::remove_file(&begun.copy).unwrap();
        std::fs::write(&path, b"main again").unwrap();
        finish_begun(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"main again");
        let again = set_aside(&damaged, now);
        assert_eq!(again.copy, name("20251124T160000Z-2"));
        assert_ne!(again.tag, begun.tag);
        assert_eq!(std::fs::read(&again.copy).unwrap(), b"main again");

        // Every notice is owed, in the order set aside; one that cannot be
        // read is still owed, saying so.
        std::fs::write(name("20251124T160000Z-10"), b"copy").unwrap();
        std::fs::write(name("20251124T160000Z-10.notice"), "").unwrap();
        let owed = unreported(&path);
        let copies: Vec<&Path> = owed.iter().map(|s| s.copy.as_path()).collect();
        assert_eq!(
            copies,
            [
                name("20251124T160000Z"),
                name("20251124T160000Z-2"),
                name("20251124T160000Z-10")
            ]
        );
        assert!(
            owed[2]
                .problem
                .starts_with("unknown (its notice is damaged"),
            "{owed:?}"
        );
        assert_eq!(owed[2].tag, "outbox.sqlite3.damaged-20251124T160000Z-10");
    }

    #[test]
    fn only_run_opens_an_outbox_whose_set_aside_was_cut_short_and_finishes_it_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let config = config_for(&path, "on_damage = \"set_aside\"\n");
        std::fs::write(&path, b"this is not an outbox ".repeat(200)).unwrap();
        let damaged = Damaged {
            path: path.clone(),
            problem: "file is not a database".into(),
        };
        // Begun, then the power went before anything moved.
        let begun = begin(&damaged, 1_764_000_000.0).unwrap();
        // `deliver` and `test-alert` open with for_config: refused, saying
        // what to do.
        let Err(e) = Outbox::for_config(&config) else {
            panic!("opened an outbox being set aside");
        };
        assert!(e.to_string().contains("start the service"), "{e}");
        // `run` finishes the set-aside, starts an empty outbox and owes the
        // control room the one notice.
        let (outbox, owed, storage) = Outbox::for_service(&config).unwrap();
        assert_eq!(storage, Storage::File);
        assert_eq!(owed, std::slice::from_ref(&begun));
        assert!(begun.copy.exists());
        assert_eq!(outbox.stats().unwrap().pending_events, 0);
        drop(outbox);
        Outbox::for_config(&config).unwrap();
    }

    #[test]
    fn a_set_aside_that_cannot_write_its_notice_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        std::fs::write(&path, b"main").unwrap();
        let damaged = Damaged {
            path: path.clone(),
            problem: "file is not a database".into(),
        };
        // Where the notice would be written, something it cannot replace
        // (as root, a read-only folder would not stop it).
        std::fs::create_dir(
            dir.path()
                .join("outbox.sqlite3.damaged-20251124T160000Z.notice.partial"),
        )
        .unwrap();
        let Err(e) = begin(&damaged, 1_764_000_000.0) else {
            panic!("began without a notice");
        };
        assert!(e.to_string().contains("nothing was moved"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"main");
        assert!(unreported(&path).is_empty());
    }

    /// The rule [`Outbox::for_service`] applies before a set-aside, on a
    /// disk simulated through [`prune_copies`]'s free-space seam: 100 KB,
    /// less what the folder holds.
    #[test]
    fn a_set_aside_short_of_room_deletes_the_oldest_reported_copies_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let name = |n: &str| dir.path().join(format!("outbox.sqlite3.damaged-{n}"));
        let disk = |path: &Path| {
            let used: u64 = std::fs::read_dir(folder_of(path))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            Some(100_000u64.saturating_sub(used))
        };
        let now = std::time::SystemTime::now();
        let write = |p: &Path, bytes: usize, age_s: u64| {
            std::fs::write(p, vec![b'x'; bytes]).unwrap();
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(now - Duration::from_secs(age_s))
                .unwrap();
        };
        // The damaged outbox, 20 KB: 40 KB wanted free.
        write(&path, 20_000, 0);
        assert_eq!(room_for(&path), 40_000);
        // The oldest copy of all is still owed its outbox.replaced.
        let owed = name("20250101T000000Z");
        write(&owed, 30_000, 400);
        write(&with_suffix(&owed, NOTICE), 0, 400);
        // Reported copies, oldest first; by name "-10" sorts before "-2".
        let oldest = name("20250201T000000Z");
        write(&oldest, 10_000, 300);
        write(&with_suffix(&oldest, "-wal"), 5_000, 300);
        write(&with_suffix(&oldest, "-shm"), 1_000, 300);
        let older = name("20250201T000000Z-2");
        write(&older, 10_000, 200);
        let newest = name("20250201T000000Z-10");
        write(&newest, 10_000, 100);
        // A person's work beside the copies, older than all: never a copy.
        let recovered = name("20250201T000000Z.recovered");
        write(&recovered, 1_000, 500);
        let archive = name("20250201T000000Z-2.tar.gz");
        write(&archive, 1_000, 500);
        assert!(!is_copy_stamp("20250101-résumé") && is_copy_stamp("20250101T000000Z-3"));
        assert_eq!(disk(&path), Some(12_000));
        let disk = |path: &Path| disk(path).map(|free| free + 2_000);

        // Enough free, or no way to tell: nothing goes.
        assert!(prune_copies(&path, 14_000, disk).is_empty());
        assert!(prune_copies(&path, 40_000, |_| None).is_empty());
        // Short: the oldest reported copies go, with their side files,
        // until there is room (16 KB, then 10 KB more); the newest stays.
        assert_eq!(
            prune_copies(&path, 40_000, disk),
            [oldest.clone(), older.clone()]
        );
        assert_eq!(disk(&path), Some(40_000));
        assert!(!with_suffix(&oldest, "-wal").exists() && !with_suffix(&oldest, "-shm").exists());
        assert!(newest.exists());
        // Never enough: every reported copy goes, never the owed one nor the
        // damaged file, and it stops.
        assert_eq!(
            prune_copies(&path, u64::MAX, disk),
            std::slice::from_ref(&newest)
        );
        assert!(owed.exists() && with_suffix(&owed, NOTICE).exists());
        assert!(recovered.exists() && archive.exists());
        assert_eq!(std::fs::read(&path).unwrap().len(), 20_000);
        assert!(reported_copies(&path).is_empty());

        // What a full disk says at open counts as full; damage does not.
        let sqlite = |code| {
            anyhow::Error::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
            .context("cannot open the outbox")
        };
        assert!(is_full(&sqlite(rusqlite::ffi::SQLITE_FULL)));
        assert!(is_full(&sqlite(rusqlite::ffi::SQLITE_IOERR_SHMSIZE)));
        assert!(is_full(&anyhow::Error::from(
            std::io::Error::from_raw_os_error(libc::ENOSPC)
        )));
        // `run` keeps watching from memory where the disk refuses the
        // outbox; "read-only" on a disk mounted writable is a file or folder
        // the service may not write, an install mistake to stop on.
        assert!(disk_refuses(&path, &sqlite(rusqlite::ffi::SQLITE_FULL)));
        assert!(disk_refuses(
            &path,
            &sqlite(rusqlite::ffi::SQLITE_IOERR_SHMSIZE)
        ));
        assert!(!mounted_read_only(&path));
        assert!(!disk_refuses(
            &path,
            &sqlite(rusqlite::ffi::SQLITE_READONLY)
        ));
        assert!(!disk_refuses(&path, &sqlite(rusqlite::ffi::SQLITE_CORRUPT)));
        assert!(!is_full(&sqlite(rusqlite::ffi::SQLITE_CORRUPT)));
        assert!(!is_full(&sqlite(rusqlite::ffi::SQLITE_IOERR_READ)));
    }

    #[test]
    fn an_outbox_from_before_schema_versions_is_upgraded_with_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            // What a build without schema versions left: the first schema,
            // user_version 0, an event waiting for one endpoint.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(MIGRATIONS[0]).unwrap();
            old.execute_batch(
                "INSERT INTO events (id, kind, priority, created_at, body)
                 VALUES ('e0', 'incident', 2, 1e12, '{}');
                 INSERT INTO deliveries (endpoint, seq, next_attempt_at) VALUES ('http://a/', 1, 0);",
            )
            .unwrap();
        }
        assert_eq!(user_version(&path), 0);
        let outbox = open(dir.path(), 100);
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        assert_eq!(outbox.head("http://a/").unwrap().unwrap().event.id, "e0");
        drop(outbox);
        // Opening again changes nothing.
        let outbox = open(dir.path(), 100);
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        assert_eq!(outbox.stats().unwrap().pending_events, 1);
        // Its one delivery done, the event is finished, as it was before.
        let head = outbox.head("http://a/").unwrap().unwrap();
        outbox.mark_delivered("http://a/", head.seq).unwrap();
        assert_eq!(outbox.stats().unwrap().pending_events, 0);
    }

    #[test]
    fn running_incidents_are_kept_with_their_events_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix();
        {
            let outbox = open(dir.path(), 100);
            assert_eq!(outbox.open_incidents("west").unwrap(), None);
            let stored = outbox
                .record(
                    &[event("west-smoke.0", EventKind::Incident, now)],
                    "west",
                    Some("[\"smoke\"]"),
                )
                .unwrap();
            assert_eq!(stored, [Enqueued::Stored { endpoints: 2 }]);
            outbox.record(&[], "east", Some("[\"flame\"]")).unwrap();
        }
        let outbox = open(dir.path(), 100);
        assert_eq!(outbox.stats().unwrap().pending_events, 1);
        assert_eq!(
            outbox.open_incidents("west").unwrap().as_deref(),
            Some("[\"smoke\"]")
        );
        // Ended: the row goes, the other camera's stays.
        outbox
            .record(
                &[event("west-smoke.1", EventKind::Incident, now)],
                "west",
                None,
            )
            .unwrap();
        assert_eq!(outbox.open_incidents("west").unwrap(), None);
        assert_eq!(
            outbox.open_incidents("east").unwrap().as_deref(),
            Some("[\"flame\"]")
        );
        assert_eq!(outbox.stats().unwrap().pending_events, 2);
        // Only a camera no longer configured has incidents no frame ends.
        assert!(outbox
            .unconfigured_open_incidents(&["east", "west"])
            .unwrap()
            .is_empty());
        assert_eq!(
            outbox.unconfigured_open_incidents(&["west"]).unwrap(),
            [("east".to_string(), "[\"flame\"]".to_string())]
        );
    }

    #[test]
    fn running_incidents_ended_in_memory_do_not_come_back_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(dir.path(), 100);
        file.record(&[], "west", Some("[\"west\"]")).unwrap();
        file.record(&[], "north", Some("[\"north\"]")).unwrap();
        let endpoints = vec!["http://a/".to_string()];
        let memory = Outbox::in_memory(endpoints.clone(), 100, Duration::from_secs(3600)).unwrap();
        assert_eq!(
            memory
                .remember_from_file(&dir.path().join("outbox.sqlite3"))
                .unwrap(),
            (0, 2)
        );
        // While the disk was full, west's incident ended and east's began.
        memory.record(&[], "west", None).unwrap();
        memory.record(&[], "east", Some("[\"east\"]")).unwrap();
        memory.copy_into(&file).unwrap();
        assert_eq!(file.open_incidents("west").unwrap(), None);
        assert_eq!(
            file.open_incidents("north").unwrap().as_deref(),
            Some("[\"north\"]")
        );
        assert_eq!(
            file.open_incidents("east").unwrap().as_deref(),
            Some("[\"east\"]")
        );

        // A file memory could not read at its start keeps its own, for the
        // next start to end.
        file.record(&[], "south", Some("[\"south\"]")).unwrap();
        let blind = Outbox::in_memory(endpoints, 100, Duration::from_secs(3600)).unwrap();
        blind.copy_into(&file).unwrap();
        assert_eq!(
            file.open_incidents("south").unwrap().as_deref(),
            Some("[\"south\"]")
        );
    }

    #[test]
    fn an_outbox_in_memory_is_stored_in_the_file_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let endpoints = vec!["http://a/".to_string(), "http://b/".to_string()];
        let memory = Outbox::in_memory(endpoints, 100, Duration::from_secs(3600)).unwrap();
        let now = now_unix();
        // a took the camera event, b not yet; the fire is owed to both and
        // still burning; an older incident, delivered to both, is gone but
        // for its id.
        let old = incident_event("west-smoke-1.0", "west-smoke-1", IncidentPhase::Started);
        memory.enqueue(&old).unwrap();
        for endpoint in ["http://a/", "http://b/"] {
            drain(&memory, endpoint);
        }
        memory
            .enqueue(&event("offline", EventKind::Camera, now))
            .unwrap();
        let taken = memory.head("http://a/").unwrap().unwrap();
        memory.mark_delivered("http://a/", taken.seq).unwrap();
        let fire = incident_event("west-smoke-2.0", "west-smoke-2", IncidentPhase::Started);
        memory
            .record(std::slice::from_ref(&fire), "west", Some("[\"running\"]"))
            .unwrap();
        let held = memory.held_bytes().unwrap();
        assert_eq!(held, (taken.event.body.len() + fire.body.len()) as u64);
        let east = OfflineCamera {
            camera: "east".into(),
            since: now,
            reason: "3 grabs failed in a row".into(),
            stuck: false,
        };
        memory.note_offline(&east).unwrap();

        // The file already holds an event of its own, and a camera noted
        // offline that came back while the outbox was in memory.
        let file = open(dir.path(), 100);
        file.enqueue(&event("before", EventKind::Heartbeat, now))
            .unwrap();
        let south = OfflineCamera {
            camera: "south".into(),
            since: now,
            reason: "the picture has not changed".into(),
            stuck: true,
        };
        file.note_offline(&south).unwrap();
        let copied = memory.copy_into(&file).unwrap();
        assert_eq!(
            copied,
            Copied {
                events: 2,
                cameras_with_running_incidents: 1
            }
        );
        // Again: nothing twice.
        assert_eq!(memory.copy_into(&file).unwrap().events, 0);
        drop(file);

        let file = open(dir.path(), 100);
        assert_eq!(
            drain(&file, "http://a/"),
            ["west-smoke-2.0", "before", "offline"]
        );
        assert_eq!(
            drain(&file, "http://b/"),
            ["west-smoke-2.0", "before", "offline"]
        );
        let fire_in_file = file
            .head("http://a/")
            .unwrap()
            .map(|p| p.event)
            .unwrap_or(fire.clone());
        assert_eq!(fire_in_file, fire);
        assert_eq!(
            file.open_incidents("west").unwrap().as_deref(),
            Some("[\"running\"]")
        );
        assert_eq!(
            file.started_incident_ids("west-", 10).unwrap(),
            ["west-smoke-2", "west-smoke-1"]
        );
        assert_eq!(
            file.offline_cameras(&["west", "east", "south"]).unwrap(),
            std::slice::from_ref(&east)
        );
        // A camera no longer configured is forgotten; one back, too.
        let north = OfflineCamera {
            camera: "north".into(),
            ..south
        };
        file.note_offline(&north).unwrap();
        assert_eq!(file.offline_cameras(&["east"]).unwrap(), [east]);
        assert_eq!(file.offline_cameras(&["east", "north"]).unwrap().len(), 1);
        file.note_online("east").unwrap();
        assert!(file.offline_cameras(&["east"]).unwrap().is_empty());
    }

    #[test]
    fn an_outbox_in_memory_remembers_the_files_incidents_without_writing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            let file = open(dir.path(), 100);
            let fire = incident_event("west-smoke-1.0", "west-smoke-1", IncidentPhase::Started);
            file.record(&[fire], "west", Some("[\"running\"]")).unwrap();
        }
        // Closed cleanly: no -wal or -shm left, as on a disk that then
        // filled up.
        assert!(!with_suffix(&path, SIDE_FILES[1]).exists());
        let before = std::fs::read(&path).unwrap();
        let memory =
            Outbox::in_memory(vec!["http://a/".into()], 100, Duration::from_secs(3600)).unwrap();
        assert_eq!(memory.remember_from_file(&path).unwrap(), (1, 1));
        assert_eq!(
            memory.started_incident_ids("west-", 10).unwrap(),
            ["west-smoke-1"]
        );
        assert_eq!(
            memory.open_incidents("west").unwrap().as_deref(),
            Some("[\"running\"]")
        );
        // Read-only: the file is as it was (on a disk that lets it, the
        // first way in makes at most an empty -wal; on a full or read-only
        // one the others read it all the same: tests/fault_campaign.rs).
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was written"
        );
        assert!(memory
            .remember_from_file(&dir.path().join("none.sqlite3"))
            .is_err());

        // A file the last build wrote (schema 6, no offline_cameras), on a
        // disk too full to upgrade it: its incidents are remembered all
        // the same.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("DROP TABLE offline_cameras; PRAGMA user_version = 6;")
                .unwrap();
        }
        let memory =
            Outbox::in_memory(vec!["http://a/".into()], 100, Duration::from_secs(3600)).unwrap();
        assert_eq!(memory.remember_from_file(&path).unwrap(), (1, 1));
    }

    #[test]
    fn the_immutable_way_reads_a_file_whose_name_sqlite_would_split() {
        // The last way in for a read-only disk names the file by URI.
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("out?box#1%2.sqlite3");
        {
            let file = Outbox::open(
                &name,
                vec!["http://a/".into()],
                100,
                Duration::from_secs(3600),
            )
            .unwrap();
            let fire = incident_event("west-smoke-1.0", "west-smoke-1", IncidentPhase::Started);
            file.record(&[fire], "west", Some("[\"running\"]")).unwrap();
        }
        let conn = open_immutable(&name).unwrap();
        assert_eq!(Followed::read(&conn).unwrap().started.len(), 1);
        assert!(open_immutable(&dir.path().join("out")).is_err());
    }

    #[test]
    fn the_file_is_not_taken_back_while_its_disk_lacks_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let config = config_for(&path, "");
        let Err(refused) = Outbox::file_takes_writes(&config, u64::MAX) else {
            panic!("a disk without room was taken back");
        };
        assert!(format!("{refused:#}").contains("MB wanted"), "{refused:#}");
        assert!(!path.exists(), "a disk without room was written to");
        drop(Outbox::file_takes_writes(&config, 1).unwrap());
        let outbox = open(dir.path(), 100);
        let returns: i64 = outbox
            .conn()
            .query_row(
                "SELECT value FROM counters WHERE name = 'returns_to_file'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(returns, 1);
    }

    #[test]
    fn an_outbox_from_a_newer_build_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        drop(open(dir.path(), 100));
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let error = Outbox::open(&path, vec![], 100, Duration::from_secs(3600))
            .err()
            .expect("a newer schema must be refused");
        assert!(
            format!("{error:#}").contains("newer than this build"),
            "{error:#}"
        );
        assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
    }

    #[test]
    fn events_survive_reopening_and_go_in_creation_order() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix();
        {
            let outbox = open(dir.path(), 100);
            for i in 0..3 {
                let stored = outbox
                    .enqueue(&event(&format!("e{i}"), EventKind::Incident, now))
                    .unwrap();
                assert_eq!(stored, Enqueued::Stored { endpoints: 2 });
            }
            assert_eq!(
                outbox
                    .enqueue(&event("e1", EventKind::Incident, now))
                    .unwrap(),
                Enqueued::AlreadyQueued
            );
        }
        let outbox = open(dir.path(), 100);
        let head = outbox.head("http://a/").unwrap().unwrap();
        assert_eq!(head.event.id, "e0");
        outbox.mark_delivered("http://a/", head.seq).unwrap();
        assert_eq!(outbox.head("http://a/").unwrap().unwrap().event.id, "e1");
        // b has not taken e0 yet, so e0 is still stored.
        assert_eq!(outbox.head("http://b/").unwrap().unwrap().event.id, "e0");
        assert_eq!(outbox.stats().unwrap().pending_events, 3);
        outbox.mark_delivered("http://b/", head.seq).unwrap();
        let stats = outbox.stats().unwrap();
        assert_eq!((stats.pending_events, stats.delivered), (2, 2));
    }

    /// An event of incident `incident` in `phase`, for the tests of
    /// [`IncidentRef`].
    fn incident_event(id: &str, incident: &str, phase: IncidentPhase) -> OutgoingEvent {
        OutgoingEvent {
            incident: Some(IncidentRef {
                id: incident.into(),
                phase,
            }),
            ..event(id, EventKind::Incident, now_unix())
        }
    }

    /// Every event still owed to `endpoint`, oldest first (marking each
    /// delivered).
    fn drain(outbox: &Outbox, endpoint: &str) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(p) = outbox.head(endpoint).unwrap() {
            ids.push(p.event.id.clone());
            outbox.mark_delivered(endpoint, p.seq).unwrap();
        }
        ids
    }

    #[test]
    fn a_new_incident_wakes_the_deliveries_waiting_out_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        let now = now_unix();
        // Older than the fire, as after an outage: the incident is sent
        // first all the same, and it is the one woken.
        outbox
            .enqueue(&event("camera-1", EventKind::Camera, now - 60.0))
            .unwrap();
        outbox
            .enqueue(&incident_event("x.1", "x", IncidentPhase::Started))
            .unwrap();
        // The link is down: both webhooks wait out a long backoff.
        for endpoint in ["http://a/", "http://b/"] {
            let head = outbox.head(endpoint).unwrap().unwrap();
            outbox
                .mark_failed(endpoint, head.seq, now + 900.0, "no answer")
                .unwrap();
        }
        // An update of a running fire is no reason to try again sooner.
        outbox
            .enqueue(&incident_event("x.2", "x", IncidentPhase::Updated))
            .unwrap();
        let head = outbox.head("http://a/").unwrap().unwrap();
        assert!(head.next_attempt_at > now + 800.0, "{head:?}");
        // A new fire is: every webhook's head goes at once, and its backoff
        // still grows from its attempts.
        outbox
            .enqueue(&incident_event("y.1", "y", IncidentPhase::Started))
            .unwrap();
        for endpoint in ["http://a/", "http://b/"] {
            let head = outbox.head(endpoint).unwrap().unwrap();
            assert_eq!(head.event.id, "x.1");
            assert!(head.next_attempt_at <= now_unix(), "{head:?}");
            assert_eq!(head.attempts, 1);
        }
    }

    #[test]
    fn the_ids_of_started_incidents_are_kept_per_camera_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        for (id, incident) in [
            ("a", "west-smoke-20261203T101500Z"),
            ("b", "west_2-smoke-20261203T101500Z"),
            ("c", "west-flame-20261203T101600Z"),
        ] {
            outbox
                .enqueue(&incident_event(id, incident, IncidentPhase::Started))
                .unwrap();
        }
        // Updates and ends start nothing.
        outbox
            .enqueue(&incident_event("d", "west-smoke-x", IncidentPhase::Updated))
            .unwrap();
        drop(outbox);
        let outbox = open(dir.path(), 100);
        assert_eq!(
            outbox.started_incident_ids("west-", 10).unwrap(),
            ["west-flame-20261203T101600Z", "west-smoke-20261203T101500Z"]
        );
        assert_eq!(outbox.started_incident_ids("west-", 1).unwrap().len(), 1);
        assert_eq!(
            outbox.started_incident_ids("west_2-", 10).unwrap(),
            ["west_2-smoke-20261203T101500Z"]
        );
    }

    #[test]
    fn a_start_during_an_attempt_makes_its_retry_go_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        outbox
            .enqueue(&incident_event("x.1", "x", IncidentPhase::Started))
            .unwrap();
        // An attempt at x.1 begins; a new fire is stored while it is out
        // (x.1 is due, so the start wakes nothing), and then it fails.
        let head = outbox.head("http://a/").unwrap().unwrap();
        let before = outbox.newest_start().unwrap();
        assert!(!outbox
            .retry_now_if_started_since("http://a/", head.seq, before)
            .unwrap());
        outbox
            .enqueue(&incident_event("y.1", "y", IncidentPhase::Started))
            .unwrap();
        outbox
            .mark_failed("http://a/", head.seq, now_unix() + 900.0, "no answer")
            .unwrap();
        assert!(outbox
            .retry_now_if_started_since("http://a/", head.seq, before)
            .unwrap());
        let head = outbox.head("http://a/").unwrap().unwrap();
        assert!(head.next_attempt_at <= now_unix(), "{head:?}");
    }

    #[test]
    fn a_later_update_or_the_end_drops_the_undelivered_updates_of_its_incident() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        for (id, incident, phase) in [
            ("x.1", "x", IncidentPhase::Started),
            ("x.2", "x", IncidentPhase::Updated),
            ("y.1", "y", IncidentPhase::Started),
            ("y.2", "y", IncidentPhase::Updated),
        ] {
            outbox
                .enqueue(&incident_event(id, incident, phase))
                .unwrap();
        }
        // Webhook a took x.2 before x.3 came; b had not.
        assert_eq!(drain(&outbox, "http://a/"), ["x.1", "x.2", "y.1", "y.2"]);
        outbox
            .enqueue(&incident_event("x.3", "x", IncidentPhase::Updated))
            .unwrap();
        // The read-back event knows its incident.
        let head = outbox.head("http://b/").unwrap().unwrap();
        assert_eq!(
            head.event.incident,
            Some(IncidentRef {
                id: "x".into(),
                phase: IncidentPhase::Started
            })
        );
        outbox
            .enqueue(&incident_event("x.4", "x", IncidentPhase::Updated))
            .unwrap();
        outbox
            .enqueue(&incident_event("x.5", "x", IncidentPhase::Ended))
            .unwrap();
        // Starts, ends and the other incident's update stay; of x's updates
        // only those some webhook took went out.
        assert_eq!(drain(&outbox, "http://a/"), ["x.5"]);
        assert_eq!(drain(&outbox, "http://b/"), ["x.1", "y.1", "y.2", "x.5"]);
        let stats = outbox.stats().unwrap();
        // b: x.2, x.3, x.4; a: x.3, x.4.
        assert_eq!(stats.superseded, 5);
        assert_eq!(stats.pending_events, 0);
        // Settling an attempt of an update dropped meanwhile finds nothing.
        outbox.mark_delivered("http://a/", head.seq + 1).unwrap();
        outbox
            .mark_failed("http://a/", head.seq + 1, 0.0, "x")
            .unwrap();
        assert_eq!(outbox.stats().unwrap().delivered, 9);
    }

    /// An outbox for two events, holding two incidents (fire0, fire1).
    fn full_of_two_fires(dir: &Path) -> (Outbox, f64) {
        let outbox = open(dir, 2);
        let now = now_unix();
        for id in ["fire0", "fire1"] {
            outbox
                .enqueue(&event(id, EventKind::Incident, now))
                .unwrap();
        }
        (outbox, now)
    }

    #[test]
    fn when_full_what_a_webhook_already_took_goes_first() {
        // Webhook a takes everything; b is down. Full of incidents a took,
        // a new camera event is kept (for both) and the oldest of those
        // incidents goes.
        let dir = tempfile::tempdir().unwrap();
        let (outbox, now) = full_of_two_fires(dir.path());
        assert_eq!(drain(&outbox, "http://a/"), ["fire0", "fire1"]);
        assert!(matches!(
            outbox
                .enqueue(&event("offline", EventKind::Camera, now))
                .unwrap(),
            Enqueued::Stored { endpoints: 2 }
        ));
        assert_eq!(drain(&outbox, "http://a/"), ["offline"]);
        assert_eq!(drain(&outbox, "http://b/"), ["fire1", "offline"]);
        assert_eq!(outbox.stats().unwrap().dropped_full, 1);
    }

    #[test]
    fn when_full_an_incident_a_webhook_refused_is_not_taken_for_one_it_has() {
        // a refused fire0 for good and took fire1; b is down. Full, a new
        // camera event pushes out fire1 (a control room has it), not fire0
        // (nobody has).
        let dir = tempfile::tempdir().unwrap();
        let (outbox, now) = full_of_two_fires(dir.path());
        let fire0 = outbox.head("http://a/").unwrap().unwrap();
        outbox.mark_rejected("http://a/", fire0.seq).unwrap();
        assert_eq!(drain(&outbox, "http://a/"), ["fire1"]);
        outbox
            .enqueue(&event("offline", EventKind::Camera, now))
            .unwrap();
        assert_eq!(drain(&outbox, "http://b/"), ["fire0", "offline"]);
    }

    #[test]
    fn incidents_go_before_other_events_and_each_kind_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = holding(
            dir.path(),
            &[
                ("offline0", EventKind::Camera),
                ("beat", EventKind::Heartbeat),
                ("fire0", EventKind::Incident),
                ("online0", EventKind::Camera),
                ("fire1", EventKind::Incident),
            ],
        );
        // Webhook a takes the first incident; one stored meanwhile still
        // goes before the older camera events.
        let head = outbox.head("http://a/").unwrap().unwrap();
        assert_eq!(head.event.id, "fire0");
        outbox.mark_delivered("http://a/", head.seq).unwrap();
        outbox
            .enqueue(&event("fire2", EventKind::Incident, now_unix()))
            .unwrap();
        assert_eq!(
            drain(&outbox, "http://a/"),
            ["fire1", "fire2", "offline0", "beat", "online0"]
        );
        assert_eq!(
            drain(&outbox, "http://b/"),
            ["fire0", "fire1", "fire2", "offline0", "beat", "online0"]
        );
    }

    #[test]
    fn the_head_skips_what_a_webhook_took_while_the_disk_was_full() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = holding(
            dir.path(),
            &[
                ("offline0", EventKind::Camera),
                ("fire0", EventKind::Incident),
                ("online0", EventKind::Camera),
                ("fire1", EventKind::Incident),
            ],
        );
        let mut taken = Vec::new();
        let mut order = Vec::new();
        while let Some(p) = outbox.head_skipping("http://a/", &taken).unwrap() {
            order.push(p.event.id.clone());
            taken.push(p.seq);
        }
        assert_eq!(order, ["fire0", "fire1", "offline0", "online0"]);
        // Nothing was recorded: the outbox still owes all four.
        assert_eq!(drain(&outbox, "http://a/").len(), 4);
    }

    #[test]
    fn when_full_incidents_outlive_heartbeats() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 3);
        let now = now_unix();
        outbox
            .enqueue(&event("hb0", EventKind::Heartbeat, now))
            .unwrap();
        outbox
            .enqueue(&event("fire0", EventKind::Incident, now))
            .unwrap();
        outbox
            .enqueue(&event("fire1", EventKind::Incident, now))
            .unwrap();
        // Full: a new incident pushes out the heartbeat.
        outbox
            .enqueue(&event("fire2", EventKind::Incident, now))
            .unwrap();
        // Full of incidents: a new heartbeat is itself dropped.
        assert_eq!(
            outbox
                .enqueue(&event("hb1", EventKind::Heartbeat, now))
                .unwrap(),
            Enqueued::DroppedFull
        );
        let mut ids = Vec::new();
        while let Some(p) = outbox.head("http://a/").unwrap() {
            ids.push(p.event.id.clone());
            outbox.mark_delivered("http://a/", p.seq).unwrap();
        }
        assert_eq!(ids, ["fire0", "fire1", "fire2"]);
        assert_eq!(outbox.stats().unwrap().dropped_full, 2);
    }

    #[test]
    fn old_undelivered_events_expire_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        let now = now_unix();
        outbox
            .enqueue(&event("old", EventKind::Heartbeat, now - 7200.0))
            .unwrap();
        outbox
            .enqueue(&event("new", EventKind::Heartbeat, now))
            .unwrap();
        assert_eq!(outbox.head("http://a/").unwrap().unwrap().event.id, "new");
        assert_eq!(outbox.stats().unwrap().expired, 1);
    }

    #[test]
    fn alerts_stamped_before_the_clock_stepped_forward_are_kept() {
        // A Pi without a clock battery boots days behind; an alert raised
        // before network time steps the clock forward looks days old after.
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        let now = now_unix();
        let before_the_step = now - 100.0 * 86_400.0;
        outbox
            .enqueue(&event("fire", EventKind::Incident, before_the_step))
            .unwrap();
        // So is an outbox.replaced, stamped when its outbox was set aside.
        outbox
            .enqueue(&event("replaced", EventKind::Device, before_the_step))
            .unwrap();
        // And a camera going offline at that boot (a camera slow to power
        // up, the link still down).
        outbox
            .enqueue(&event("camera", EventKind::Camera, before_the_step))
            .unwrap();
        // A heartbeat that old goes as the next event comes in; the others
        // stay through later checks too.
        outbox
            .enqueue(&event("beat", EventKind::Heartbeat, before_the_step))
            .unwrap();
        outbox
            .enqueue(&event("test", EventKind::Test, now))
            .unwrap();
        assert_eq!(outbox.expire_old().unwrap(), 0);
        assert_eq!(outbox.head("http://a/").unwrap().unwrap().event.id, "fire");
        let stats = outbox.stats().unwrap();
        assert_eq!((stats.expired, stats.pending_events), (1, 4));
    }

    #[test]
    fn with_no_webhook_configured_events_wait_for_one_to_be_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            let outbox = Outbox::open(&path, vec![], 100, Duration::from_secs(3600)).unwrap();
            assert_eq!(
                outbox
                    .enqueue(&event("fire0", EventKind::Incident, now_unix()))
                    .unwrap(),
                Enqueued::Stored { endpoints: 0 }
            );
            assert_eq!(outbox.stats().unwrap().pending_events, 1);
        }
        // Two webhooks added to the configuration: each gets it on the next start.
        let outbox = open(dir.path(), 100);
        for endpoint in ["http://a/", "http://b/"] {
            let head = outbox.head(endpoint).unwrap().unwrap();
            assert_eq!(head.event.id, "fire0");
            outbox.mark_delivered(endpoint, head.seq).unwrap();
        }
        assert_eq!(outbox.stats().unwrap().pending_events, 0);
    }

    #[test]
    fn while_every_endpoint_is_disabled_events_wait_for_one_to_be_re_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        outbox.disable_endpoint("http://a/", "410 Gone").unwrap();
        outbox.disable_endpoint("http://b/", "410 Gone").unwrap();
        assert_eq!(
            outbox
                .enqueue(&event("fire0", EventKind::Incident, now_unix()))
                .unwrap(),
            Enqueued::Stored { endpoints: 0 }
        );
        assert_eq!(outbox.stats().unwrap().pending_events, 1);
        assert!(!outbox.has_work().unwrap());
        assert!(outbox.enable_endpoint("http://a/").unwrap());
        assert!(outbox.has_work().unwrap());
        let head = outbox.head("http://a/").unwrap().unwrap();
        assert_eq!(head.event.id, "fire0");
        outbox.mark_delivered("http://a/", head.seq).unwrap();
        // Taken by a webhook: done, and not owed to one re-enabled later.
        assert_eq!(outbox.stats().unwrap().pending_events, 0);
        assert!(outbox.enable_endpoint("http://b/").unwrap());
        assert!(outbox.head("http://b/").unwrap().is_none());
    }

    #[test]
    fn an_event_waiting_for_an_endpoint_removed_from_the_configuration_goes_to_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        outbox.disable_endpoint("http://b/", "410 Gone").unwrap();
        assert_eq!(
            outbox
                .enqueue(&event("e0", EventKind::Test, now_unix()))
                .unwrap(),
            Enqueued::Stored { endpoints: 1 }
        );
        drop(outbox);
        // a, the only endpoint that could take e0, is removed; c is added.
        let outbox = Outbox::open(
            &dir.path().join("outbox.sqlite3"),
            vec!["http://b/".into(), "http://c/".into()],
            100,
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(outbox.head("http://c/").unwrap().unwrap().event.id, "e0");
        assert!(outbox.head("http://b/").unwrap().is_none(), "b is disabled");
    }

    #[test]
    fn a_disabled_endpoint_gets_no_new_events_and_removed_endpoints_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), 100);
        outbox.disable_endpoint("http://b/", "410 Gone").unwrap();
        assert_eq!(
            outbox
                .enqueue(&event("e0", EventKind::Test, now_unix()))
                .unwrap(),
            Enqueued::Stored { endpoints: 1 }
        );
        assert!(outbox.has_work().unwrap());
        drop(outbox);
        let outbox = Outbox::open(
            &dir.path().join("outbox.sqlite3"),
            vec!["http://b/".into()],
            100,
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(
            outbox.disabled_reason("http://b/").unwrap().as_deref(),
            Some("410 Gone")
        );
        assert!(!outbox.has_work().unwrap());
        // Nobody took e0: it waits for b to be re-enabled (or to expire).
        assert_eq!(outbox.stats().unwrap().pending_events, 1);
    }

    #[test]
    fn a_webhook_whose_url_changed_gets_what_the_old_url_was_owed() {
        let dir = tempfile::tempdir().unwrap();
        let reopen = |endpoints: &[&str]| {
            Outbox::open(
                &dir.path().join("outbox.sqlite3"),
                endpoints.iter().map(|e| e.to_string()).collect(),
                100,
                Duration::from_secs(3600),
            )
            .unwrap()
        };
        // a takes both events; b, a wrong URL, takes neither.
        let outbox = reopen(&["http://a/", "http://b/"]);
        for id in ["e0", "e1"] {
            outbox
                .enqueue(&event(id, EventKind::Incident, now_unix()))
                .unwrap();
        }
        assert_eq!(drain(&outbox, "http://a/"), ["e0", "e1"]);
        drop(outbox);
        // b's URL fixed to c: c gets what b was owed, a nothing again.
        let outbox = reopen(&["http://a/", "http://c/"]);
        assert!(outbox.head("http://a/").unwrap().is_none());
        assert_eq!(drain(&outbox, "http://c/"), ["e0", "e1"]);
        outbox
            .enqueue(&event("e2", EventKind::Incident, now_unix()))
            .unwrap();
        assert_eq!(drain(&outbox, "http://a/"), ["e2"]);
        drop(outbox);
        // c removed with no new webhook, and a known one back: nobody new
        // to give c's e2 to, so it goes (logged), and b, known, gets nothing.
        let outbox = reopen(&["http://a/", "http://b/"]);
        assert!(outbox.head("http://b/").unwrap().is_none());
        assert_eq!(outbox.stats().unwrap().pending_events, 0);
    }
}
