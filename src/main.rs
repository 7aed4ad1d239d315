//! The `wildfire-watch` command line: argument parsing and output formatting.
//! The work itself lives in the library; each subcommand here is a thin shell
//! around one library entry point.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tracing::{info, warn, Level};

use wildfire_watch::classify::{classify, collect_images};
use wildfire_watch::config::Config;
use wildfire_watch::confirm::ConfirmConfig;
use wildfire_watch::delivery::{self, DeliveryOptions, Endpoint};
use wildfire_watch::detector::{Detector, DetectorOptions};
use wildfire_watch::footage::Footage;
use wildfire_watch::labels::Labels;
use wildfire_watch::logging;
use wildfire_watch::mask::{IgnoreMask, IgnoreShape};
use wildfire_watch::model::ModelSource;
use wildfire_watch::outbox::{self, Outbox};
use wildfire_watch::outbox_thread::OutboxHandle;
use wildfire_watch::payload;
use wildfire_watch::receiver::{self, Receiver};
use wildfire_watch::replay::{replay, ReplayOptions};
use wildfire_watch::report::write_report;
use wildfire_watch::views::WorkingResolution;
use wildfire_watch::webhook::Secret;

/// jemalloc rather than glibc's malloc, which kept a fragmented arena per
/// inference thread: see the note in Cargo.toml (peak memory of `run`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "wildfire-watch",
    version,
    about = "On-device wildfire monitor: smoke and flame detection for tower cameras"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score still images (files or folders) for smoke and flame.
    Classify(ClassifyArgs),
    /// Replay recorded footage (a folder of frames or a video) through the detector and
    /// temporal confirmation; prints incident events and a summary (`--json`: JSON lines).
    Replay(ReplayArgs),
    /// Check a configuration file; errors name the line and the field.
    CheckConfig(CheckConfigArgs),
    /// Send a signed test event to every webhook now and print each answer.
    TestAlert(ConfigArgs),
    /// Deliver everything the outbox holds to the webhooks, retrying as
    /// configured, and exit when nothing is left to send.
    Deliver(ConfigArgs),
    /// Run the reference webhook receiver: verify, deduplicate and store events.
    Receive(ReceiveArgs),
    /// Run the live monitor: watch the configured cameras, confirm fires and
    /// alert the webhooks (the systemd service runs this).
    Run(RunArgs),
    /// List local capture devices (V4L2) and their formats.
    Cameras,
}

#[derive(Args)]
struct RunArgs {
    /// The configuration file (see systemd/wildfire-watch.example.toml).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
struct CheckConfigArgs {
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

#[derive(Args)]
struct ConfigArgs {
    /// The configuration file (see systemd/wildfire-watch.example.toml).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
}

#[derive(Args)]
struct ReceiveArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// File holding a secret (whsec_<base64> or raw text). Repeat to accept
    /// several during a rotation.
    #[arg(long = "secret-file", value_name = "FILE", required = true)]
    secret_files: Vec<PathBuf>,
    /// Folder where events are stored, one JSON file each.
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// Larger bodies are answered 413.
    #[arg(long, value_name = "BYTES", default_value_t = wildfire_watch::receiver::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
}

#[derive(Args)]
struct ModelArgs {
    /// ONNX model to use instead of the embedded one; its sidecar is the same
    /// path with a .json extension.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Fraction by which neighbouring tiles overlap.
    #[arg(long, default_value_t = wildfire_watch::views::DEFAULT_OVERLAP, value_parser = parse_overlap)]
    overlap: f32,
    /// Threads that score a frame's tiles side by side [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Long side in pixels that larger frames are shrunk to before tiling, or
    /// `native` [default: the model's working_long_side].
    #[arg(long, value_name = "PX|native")]
    working_resolution: Option<WorkingResolution>,
}

impl ModelArgs {
    fn load(&self) -> Result<Detector> {
        Detector::load(
            &ModelSource::from_arg(self.model.as_deref()),
            DetectorOptions {
                overlap: self.overlap,
                threads: self
                    .threads
                    .map_or(DetectorOptions::default().threads, usize::from),
                resolution: self.working_resolution,
                ..DetectorOptions::default()
            },
        )
    }
}

#[derive(Args)]
struct ClassifyArgs {
    /// Image files (.jpg, .jpeg, .png) or folders searched recursively.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// One JSON object per image instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
struct ReplayArgs {
    /// A folder of frames, replayed in file-name order, or a video (MP4, MKV,
    /// AVI; needs a build with `--features video`).
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// CSV with columns frame,smoke,flame[,unix_time]; -1 means unknown.
    #[arg(long, value_name = "CSV")]
    labels: Option<PathBuf>,
    /// Folder of frames: seconds between frames that have no unix_time label
    /// (default 60), used instead of times in the file names when given.
    /// Video: seconds of footage between scored frames (default 1).
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    interval: Option<f64>,
    /// Print events and the summary as JSON lines instead of readable text.
    #[arg(long)]
    json: bool,
    /// Write an HTML report with a score timeline and alert thumbnails here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// A `run` configuration file: the footage is judged as its camera would
    /// be live, by that camera's [cameras.confirm] settings (its thresholds
    /// included), its ignore shapes and its interval_s (the default for
    /// --interval).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Name used in incident ids (default `replay`); with --config, the id of
    /// the camera whose settings to use (needed when it has several).
    #[arg(long, value_name = "ID")]
    camera: Option<String>,
    /// Region never to alarm on: x,y,w,h for a rectangle, or "x1,y1 x2,y2 x3,y3 ..."
    /// for a polygon, in frame pixels. Repeatable; with --config, added to the
    /// camera's shapes.
    #[arg(long = "ignore", value_name = "SHAPE")]
    ignore: Vec<IgnoreShape>,
    #[command(flatten)]
    model: ModelArgs,
}

fn parse_overlap(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..0.9).contains(&v) {
        Ok(v)
    } else {
        Err("overlap must be at least 0 and below 0.9".into())
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("the interval must be a positive number of seconds".into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let result = match cli.command {
        Command::Classify(args) => run_classify(args),
        Command::Replay(args) => run_replay(args),
        Command::CheckConfig(args) => run_check_config(args),
        Command::TestAlert(args) => run_test_alert(args),
        Command::Deliver(args) => run_deliver(args),
        Command::Receive(args) => run_receive(args),
        Command::Run(args) => run_monitor(args),
        Command::Cameras => run_cameras(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`| head`) is not an error worth reporting.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            // In the journal at priority err, with the lines tracing wrote.
            eprintln!("{}error: {e:#}", logging::line_prefix(Level::ERROR));
            ExitCode::from(2)
        }
    }
}

/// A progress bar on stderr, shown only when both output streams are terminals.
fn progress_bar() -> ProgressBar {
    if io::stdout().is_terminal() && io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} frames, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    }
}

fn run_classify(args: ClassifyArgs) -> Result<ExitCode> {
    let images = collect_images(&args.paths)?;
    let mut detector = args.model.load()?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if !args.json {
        writeln!(out, "{:>7} {:>7}  {:<11} path", "smoke", "flame", "alarm")?;
    }
    let mut failed = 0usize;
    for path in &images {
        match classify(&mut detector, path) {
            Ok(c) => {
                if args.json {
                    serde_json::to_writer(&mut out, &c)?;
                    writeln!(out)?;
                } else {
                    let alarm = match (c.smoke_alarm, c.flame_alarm) {
                        (true, true) => "SMOKE+FLAME",
                        (true, false) => "SMOKE",
                        (false, true) => "FLAME",
                        (false, false) => "-",
                    };
                    writeln!(
                        out,
                        "{:>7.3} {:>7.3}  {:<11} {}",
                        c.smoke, c.flame, alarm, c.path
                    )?;
                }
            }
            Err(e) => {
                warn!("{e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} images could not be classified",
            images.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_replay(args: ReplayArgs) -> Result<ExitCode> {
    let footage = Footage::open(&args.path)?;
    if let Some(dir) = &args.report {
        // Before the replay, which can take an hour: not after it.
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the report folder {}: give --report a folder that is or can be made",
                dir.display()
            )
        })?;
    }
    let labels = args.labels.as_deref().map(Labels::read).transpose()?;
    let camera = ReplayCamera::from_args(&args)?;
    let mut detector = args.model.load()?;
    let options = ReplayOptions {
        camera: camera.id,
        labels,
        interval_s: args
            .interval
            .or(camera.interval_s)
            .unwrap_or(match footage {
                Footage::Stills(_) => 60.0,
                Footage::Video(_) => 1.0,
            }),
        times_from_names: args.interval.is_none(),
        confirm: camera.confirm,
        mask: camera.mask,
        keep_event_frames: args.report.is_some(),
    };
    let stdout = io::stdout();
    let progress = progress_bar();
    let outcome = replay(&mut detector, &footage, options, &progress, |event| {
        let mut out = stdout.lock();
        if args.json {
            serde_json::to_writer(&mut out, event)?;
            writeln!(out)?;
        } else {
            let boxes: Vec<String> = event
                .boxes
                .iter()
                .map(|b| format!("{},{},{},{}", b.x, b.y, b.w, b.h))
                .collect();
            writeln!(
                out,
                "{}  {:<16} {:<5}  score {:.3}  peak {:.3}  frame {}  boxes {}  id {}",
                event.time,
                event.phase.as_str(),
                event.class.name(),
                event.score,
                event.peak_score,
                event.frame,
                boxes.join(" "),
                event.id
            )?;
        }
        Ok(())
    })?;
    {
        let mut out = stdout.lock();
        if args.json {
            serde_json::to_writer(&mut out, &json!({ "summary": outcome.summary }))?;
            writeln!(out)?;
        } else {
            writeln!(out, "summary:")?;
            let value = serde_json::to_value(&outcome.summary)?;
            if let Some(map) = value.as_object() {
                for (key, value) in map {
                    writeln!(out, "  {key}: {value}")?;
                }
            }
        }
    }
    if let Some(dir) = &args.report {
        write_report(dir, &args.path.display().to_string(), &outcome)
            .with_context(|| format!("cannot write the report to {}", dir.display()))?;
        eprintln!("report written to {}", dir.join("index.html").display());
    }
    if outcome.summary.decoded == 0 {
        eprintln!(
            "error: none of the {} frames could be decoded (the log says why)",
            outcome.summary.frames
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The camera a replay judges footage as: `--camera` alone names it in
/// incident ids; `--config` gives it the settings of a configured camera.
struct ReplayCamera {
    id: String,
    confirm: ConfirmConfig,
    mask: IgnoreMask,
    /// The camera's `interval_s`, from `--config`.
    interval_s: Option<f64>,
}

impl ReplayCamera {
    fn from_args(args: &ReplayArgs) -> Result<ReplayCamera> {
        let Some(path) = &args.config else {
            return Ok(ReplayCamera {
                id: args.camera.clone().unwrap_or_else(|| "replay".into()),
                confirm: ConfirmConfig::default(),
                mask: IgnoreMask::new(args.ignore.clone()).owned_by("--ignore"),
                interval_s: None,
            });
        };
        let config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ids = || {
            config
                .cameras
                .iter()
                .map(|c| c.id.get_ref().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let camera = match (&args.camera, config.cameras.as_slice()) {
            (_, []) => bail!("{} has no [[cameras]]", path.display()),
            (None, [only]) => only,
            (None, _) => bail!(
                "{} has {} cameras ({}): name the one that took the footage with --camera ID",
                path.display(),
                config.cameras.len(),
                ids()
            ),
            (Some(id), cameras) => {
                cameras
                    .iter()
                    .find(|c| c.id.get_ref() == id)
                    .with_context(|| {
                        format!(
                            "{} has no camera {id:?}; its cameras are: {}",
                            path.display(),
                            ids()
                        )
                    })?
            }
        };
        let id = camera.id.get_ref();
        let mut shapes = camera.ignore_shapes();
        shapes.extend(args.ignore.iter().cloned());
        let owner = if args.ignore.is_empty() {
            format!("camera {id}")
        } else {
            format!("camera {id} with --ignore")
        };
        info!(
            "judging the footage as camera {id} of {}: its [cameras.confirm] settings, {} ignore shape(s) and interval_s = {} s",
            path.display(),
            camera.ignore.len(),
            camera.interval_s.get_ref()
        );
        Ok(ReplayCamera {
            id: id.clone(),
            confirm: camera.confirm.clone(),
            mask: IgnoreMask::new(shapes).owned_by(&owner),
            interval_s: Some(*camera.interval_s.get_ref()),
        })
    }
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load_config(path: &std::path::Path) -> Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn open_outbox(config: &Config) -> Result<Outbox> {
    Outbox::for_config(config)
}

fn run_check_config(args: CheckConfigArgs) -> Result<ExitCode> {
    let config = match Config::load(&args.path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut problems = 0;
    for webhook in &config.webhooks {
        if webhook.secret_credential.is_some()
            && std::env::var_os("CREDENTIALS_DIRECTORY").is_none()
        {
            eprintln!(
                "note: {}: secret_credential is read only under systemd ($CREDENTIALS_DIRECTORY unset); not checked",
                wildfire_watch::redact::shown_webhook(webhook.url.get_ref())
            );
            continue;
        }
        if let Err(e) = webhook.load_secrets() {
            eprintln!(
                "error: webhook {}: {e:#}",
                wildfire_watch::redact::shown_webhook(webhook.url.get_ref())
            );
            problems += 1;
        }
    }
    for camera in &config.cameras {
        if let Some(login) = camera.source.get_ref().login() {
            if login.password_credential.is_some()
                && std::env::var_os("CREDENTIALS_DIRECTORY").is_none()
            {
                eprintln!(
                    "note: camera {}: password_credential is read only under systemd ($CREDENTIALS_DIRECTORY unset); not checked",
                    camera.id.get_ref()
                );
            } else if let Err(e) = login.load() {
                eprintln!("error: camera {}: {e:#}", camera.id.get_ref());
                problems += 1;
            }
        }
    }
    if config.cameras.is_empty() {
        eprintln!("error: no [[cameras]]: `run` needs at least one (see systemd/wildfire-watch.example.toml)");
        problems += 1;
    }
    if config.webhooks.is_empty() {
        eprintln!("warning: no [[webhooks]]: events wait in the outbox (heartbeats and tests up to [outbox] max_age_hours, the rest until taken) and alert nobody until one is added");
    }
    if problems > 0 {
        return Ok(ExitCode::from(1));
    }
    println!(
        "{}: ok: device {}, {} camera(s), {} webhook(s), outbox {}",
        args.path.display(),
        config.device.id.get_ref(),
        config.cameras.len(),
        config.webhooks.len(),
        config.outbox.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_test_alert(args: ConfigArgs) -> Result<ExitCode> {
    let config = load_config(&args.config)?;
    if config.webhooks.is_empty() {
        anyhow::bail!(
            "{} has no [[webhooks]]: add one to send a test alert",
            args.config.display()
        );
    }
    let endpoints = Endpoint::from_config(&config)?;
    let options = DeliveryOptions::from_config(&config);
    let outbox = open_outbox(&config)?;
    let event = payload::test_event(&config.device, outbox::now_unix());
    outbox.enqueue(&event)?;
    println!("test event {}", event.id);
    let client = delivery::http_client(&options)?;
    let mut failed = 0;
    tokio_runtime()?.block_on(async {
        for endpoint in &endpoints {
            // An endpoint disabled by an earlier 410 gets the test too; a 2xx
            // re-enables it.
            let (pending, disabled) = match outbox.pending_for(&endpoint.url, &event.id)? {
                Some(p) => (p, false),
                None => (
                    outbox::Pending {
                        seq: -1,
                        event: event.clone(),
                        attempts: 0,
                        next_attempt_at: 0.0,
                    },
                    true,
                ),
            };
            let attempt = delivery::post(&client, endpoint, &pending, &options).await;
            println!("{}: {}", endpoint.shown, attempt.describe());
            if disabled {
                if attempt.outcome == delivery::Outcome::Delivered
                    && outbox.enable_endpoint(&endpoint.url)?
                {
                    println!("{}: re-enabled (it had answered 410 Gone)", endpoint.shown);
                    // Re-enabled, it was given the events nobody has taken,
                    // this test among them: it has just taken that one.
                    if let Some(pending) = outbox.pending_for(&endpoint.url, &event.id)? {
                        delivery::settle(&outbox, endpoint, &pending, &attempt, &options)?;
                    }
                }
            } else {
                delivery::settle(&outbox, endpoint, &pending, &attempt, &options)?;
            }
            if attempt.outcome != delivery::Outcome::Delivered {
                failed += 1;
            }
        }
        anyhow::Ok(())
    })?;
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} webhooks did not take the test event; it stays in the outbox for the running service to retry",
            endpoints.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_deliver(args: ConfigArgs) -> Result<ExitCode> {
    let config = load_config(&args.config)?;
    let endpoints = Endpoint::from_config(&config)?;
    let options = DeliveryOptions::from_config(&config);
    let outbox = std::sync::Arc::new(open_outbox(&config)?);
    tokio_runtime()?.block_on(delivery::run(
        OutboxHandle::spawn(outbox.clone())?,
        endpoints,
        options,
        std::sync::Arc::new(tokio::sync::Notify::new()),
        delivery::Until::Idle,
    ))?;
    let stats = outbox.stats()?;
    println!(
        "{}",
        serde_json::to_string(&json!({
            "pending_events": stats.pending_events,
            "delivered": stats.delivered,
            "expired": stats.expired,
            "dropped_full": stats.dropped_full,
            "superseded": stats.superseded,
            "rejected": stats.rejected,
            "endpoints_disabled": stats.endpoints_disabled,
        }))?
    );
    Ok(ExitCode::SUCCESS)
}

fn run_receive(args: ReceiveArgs) -> Result<ExitCode> {
    let secrets = args
        .secret_files
        .iter()
        .map(|f| Secret::read(f))
        .collect::<Result<Vec<_>>>()?;
    let receiver = std::sync::Arc::new(Receiver::open(&args.store, secrets, args.max_body_bytes)?);
    tokio_runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is the address right and free?",
                    args.listen
                )
            })?;
        // Tests and scripts read this line to learn the port of --listen ADDR:0.
        println!("listening on {}", listener.local_addr()?);
        io::stdout().flush()?;
        receiver::serve(listener, receiver).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_monitor(args: RunArgs) -> Result<ExitCode> {
    let config = load_config(&args.config)?;
    let detector = args.model.load()?;
    wildfire_watch::monitor::run(config, detector)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "v4l2")]
fn run_cameras() -> Result<ExitCode> {
    print!("{}", wildfire_watch::camera::v4l2::list_devices()?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "v4l2"))]
fn run_cameras() -> Result<ExitCode> {
    anyhow::bail!(
        "this build cannot list capture devices: rebuild with `cargo build --release --features v4l2` \
         (after `apt-get install libclang-dev`); snapshot and RTSP cameras need no listing"
    )
}
