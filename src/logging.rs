//! Log lines on stderr, in the form their reader wants: coloured for a
//! person at a terminal; for the systemd journal, no colour codes and each
//! line prefixed with its syslog priority (sd-daemon(3): `<3>` error, `<4>`
//! warning, `<6>` info, `<7>` debug), so `journalctl -p warning -u
//! wildfire-watch` finds the warnings; plain text into a file or a pipe.
//!
//! The journal is recognised as systemd.exec(5) describes: systemd puts
//! the device and inode of the stream it connected in `$JOURNAL_STREAM`,
//! and stderr is the journal only while it is still that stream (a child
//! whose stderr was redirected inherits the variable, not the stream).

use std::fmt;
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Where stderr goes, which decides how lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A terminal: coloured levels.
    Terminal,
    /// The systemd journal: a `<N>` priority before every line.
    Journal,
    /// A file or a pipe: plain text.
    Plain,
}

static DESTINATION: OnceLock<Destination> = OnceLock::new();

impl Destination {
    /// Where this process's stderr goes now.
    pub fn of_stderr() -> Destination {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Destination::choose(
            std::env::var("JOURNAL_STREAM").ok().as_deref(),
            stderr_device_inode(),
            io::stderr().is_terminal() && !no_color,
        )
    }

    /// `journal_stream` is `$JOURNAL_STREAM`, `stderr` the device and inode
    /// of stderr, `colour_terminal` whether stderr is a terminal that wants
    /// colour.
    fn choose(
        journal_stream: Option<&str>,
        stderr: Option<(u64, u64)>,
        colour_terminal: bool,
    ) -> Destination {
        let journal = journal_stream
            .and_then(parse_device_inode)
            .is_some_and(|stream| Some(stream) == stderr);
        if journal {
            Destination::Journal
        } else if colour_terminal {
            Destination::Terminal
        } else {
            Destination::Plain
        }
    }
}

/// `$JOURNAL_STREAM`'s `device:inode`, both decimal.
fn parse_device_inode(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// fstat(2) of stderr, through a duplicate of its descriptor.
fn stderr_device_inode() -> Option<(u64, u64)> {
    let fd = io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The syslog priority of `level` (sd-daemon(3)); tracing's TRACE is
/// below debug, so it shares `<7>`.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// What goes before a line at `level` written to stderr outside tracing
/// (the command's final error): the priority in the journal, else nothing.
pub fn line_prefix(level: Level) -> String {
    match DESTINATION.get() {
        Some(Destination::Journal) => format!("<{}>", priority(level)),
        _ => String::new(),
    }
}

/// Installs the global subscriber: `RUST_LOG` (default `info`) on stderr,
/// written as [`Destination::of_stderr`] says.
pub fn init() {
    let destination = *DESTINATION.get_or_init(Destination::of_stderr);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = tracing_subscriber::fmt::format()
        .with_target(false)
        .without_time()
        .with_ansi(destination == Destination::Terminal);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(destination == Destination::Terminal);
    match destination {
        Destination::Journal => builder.event_format(WithPriority(format)).init(),
        Destination::Terminal | Destination::Plain => builder.event_format(format).init(),
    }
}

/// An event format that puts the event's syslog priority before each line
/// the inner format writes, so a message's continuation lines keep the
/// priority of its first.
struct WithPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut text = String::new();
        self.0
            .format_event(ctx, format::Writer::new(&mut text), event)?;
        let priority = priority(*event.metadata().level());
        for line in text.lines() {
            writeln!(writer, "<{priority}>{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_stderr_only_while_it_is_the_stream_systemd_named() {
        let stderr = Some((64769, 1234));
        let choose = Destination::choose;
        assert_eq!(
            choose(Some("64769:1234"), stderr, false),
            Destination::Journal
        );
        // A terminal is still the journal's if systemd says so (it never
        // does), and colour never goes there.
        assert_eq!(
            choose(Some("64769:1234"), stderr, true),
            Destination::Journal
        );
        // Inherited from a parent whose stderr was the journal.
        assert_eq!(choose(Some("64769:99"), stderr, false), Destination::Plain);
        assert_eq!(
            choose(Some("64769:99"), stderr, true),
            Destination::Terminal
        );
        assert_eq!(choose(Some("garbage"), stderr, false), Destination::Plain);
        assert_eq!(choose(None, stderr, true), Destination::Terminal);
        assert_eq!(choose(None, None, false), Destination::Plain);
    }

    #[test]
    fn priorities_are_sd_daemon_s() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }

    #[test]
    fn every_line_of_an_event_carries_its_priority() {
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .event_format(WithPriority(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_target(false),
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("one line");
            tracing::warn!("first\nsecond");
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text, "<6> INFO one line\n<4> WARN first\n<4>second\n",
            "{text:?}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
