//! The device's clock, with one test-only seam.
//!
//! [`now_unix`] is the clock of everything the monitor schedules and stamps:
//! event times, frame times, outbox expiry (`max_age_hours`) and retry
//! times (a delivery worker also holds the retry it set to a `std::time::
//! Instant`, so a step back cannot stretch it). The fault campaign (tests/fault_campaign.rs) has to
//! show what an hour without a receiver, or ten minutes without a camera, does
//! to the real binary without waiting that long, so the binary reads
//! `WILDFIRE_WATCH_TEST_CLOCK_FILE` once at start: when set, it names a file
//! holding a number of seconds that is added to the wall clock on every read
//! (the test rewrites it to move time forward), and optionally a second
//! number, added to the wall clock only: a step of it, as network time makes
//! after a boot without it. It is for tests only: the
//! systemd unit never sets it, and a file that cannot be read or parsed adds
//! nothing.
//!
//! [`wall_unix`] is the real wall clock, for what another machine checks
//! against its own clock: the `webhook-timestamp` a receiver holds to a
//! 5-minute tolerance, and that receiver's own check.
//!
//! [`steady_s`] is a clock that never steps, for what measures how long
//! something lasted (a picture unchanged, a camera offline), and
//! [`StepWatch`] tells the two apart: when network time steps the wall clock
//! (hours or months, after a boot without it) while an incident runs, the
//! confirmer moves its times by the step, rather than end a fire still
//! burning because its last hot frame suddenly looks a day old. The test
//! offset moves `steady_s` too: to the fault campaign it is time passing,
//! not a step.
//!
//! [`synchronized`] says whether that clock can be trusted yet. A Pi has no
//! battery-backed clock: it boots at the time it last saved (fake-hwclock) or
//! at its image's build date, and only network time steps it right. With the
//! LTE link down that can take hours, and every event stamped meanwhile
//! carries a wrong time. Each webhook body says so (`clock_synchronized`),
//! so a control room can tell a stale-looking alert from a wrongly stamped
//! one.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that names the test clock's offset file.
pub const TEST_CLOCK_FILE: &str = "WILDFIRE_WATCH_TEST_CLOCK_FILE";

/// Unix seconds on the real wall clock.
pub fn wall_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix seconds on the device's clock: the wall clock, plus the test
/// offset where [`TEST_CLOCK_FILE`] is set.
pub fn now_unix() -> f64 {
    let (offset, step) = test_clock();
    wall_unix() + offset + step
}

/// Seconds on a clock that only moves forward, at the rate of real time
/// (from the first call), plus the test offset: the wall clock's steps
/// leave it alone.
pub fn steady_s() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() + test_clock().0
}

/// The least difference between the wall clock's and [`steady_s`]'s advance
/// that counts as a step of the wall clock. Reading the two a few
/// microseconds apart, and a daemon slewing the clock (at most 0.5 ms a
/// second), stay far under it; what a step does to the confirmation windows
/// (50 s and more) starts well above it.
pub const STEP_MIN_S: f64 = 5.0;

/// Notices steps of the wall clock from readings of it each taken together
/// with [`steady_s`].
#[derive(Debug, Default)]
pub struct StepWatch {
    last: Option<(f64, f64)>,
}

impl StepWatch {
    /// Takes one reading; returns by how many seconds the wall clock stepped
    /// since the last one (forward positive), if by [`STEP_MIN_S`] or more.
    pub fn step(&mut self, wall: f64, steady: f64) -> Option<f64> {
        let step = self
            .last
            .map(|(last_wall, last_steady)| (wall - last_wall) - (steady - last_steady));
        self.last = Some((wall, steady));
        step.filter(|s| s.abs() >= STEP_MIN_S)
    }
}

/// The test clock file's two numbers: time passed, and a step of the wall
/// clock alone; zeros without it (or for what does not parse).
fn test_clock() -> (f64, f64) {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    let Some(path) = FILE.get_or_init(|| std::env::var_os(TEST_CLOCK_FILE).map(PathBuf::from))
    else {
        return (0.0, 0.0);
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut numbers = text.split_whitespace().map(|s| {
        s.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite())
            .unwrap_or(0.0)
    });
    (numbers.next().unwrap_or(0.0), numbers.next().unwrap_or(0.0))
}

/// Whether the kernel holds the wall clock to network time (NTP, chrony,
/// systemd-timesyncd), as `timedatectl` reports "System clock synchronized";
/// `None` where the kernel cannot be asked (not Linux).
pub fn synchronized() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `timex` is plain data; zeroed, its `modes` is 0, which
        // makes adjtimex(2) read the kernel's clock state and change nothing.
        let mut state: libc::timex = unsafe { std::mem::zeroed() };
        if unsafe { libc::adjtimex(&mut state) } < 0 {
            return None;
        }
        Some(synchronized_within(state.maxerror))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// systemd's rule (`ntp_synced`): synchronized while the kernel's estimate of
/// its maximum error is under 16 s. A time daemon lowers it at every
/// adjustment, and the kernel raises it by 500 ppm of the time since, so it
/// passes 16 s about 9 hours after the last one (`STA_UNSYNC` is not used:
/// some daemons set it only to keep the kernel off the hardware clock).
fn synchronized_within(maxerror_us: libc::c_long) -> bool {
    maxerror_us < 16_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_the_wall_clock_moving_unlike_the_steady_one() {
        let mut watch = StepWatch::default();
        assert_eq!(watch.step(1000.0, 10.0), None);
        // Ten seconds on both: no step; a second of drift: none either.
        assert_eq!(watch.step(1010.0, 20.0), None);
        assert_eq!(watch.step(1021.0, 30.0), None);
        // Network time steps the wall clock a day forward, then back.
        assert_eq!(watch.step(1021.0 + 86_400.0 + 10.0, 40.0), Some(86_400.0));
        assert_eq!(watch.step(1041.0, 50.0), Some(-86_400.0));
        let (a, b) = (steady_s(), steady_s());
        assert!(b >= a);
    }

    #[test]
    fn the_clock_is_synchronized_while_its_maximum_error_is_under_16_s() {
        assert!(synchronized_within(0));
        assert!(synchronized_within(15_999_999));
        // What the kernel holds before any time daemon has run, and the
        // most it ever holds (NTP_PHASE_LIMIT).
        assert!(!synchronized_within(16_000_000));
    }

    /// Fails where a seccomp filter forbids adjtimex(2), as the unit's did
    /// before it allowed it (systemd/wildfire-watch.service).
    #[test]
    fn the_kernel_answers_on_linux() {
        assert_eq!(synchronized().is_some(), cfg!(target_os = "linux"));
    }
}
