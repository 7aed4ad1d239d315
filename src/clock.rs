//! The device's clock, with one test-only seam.
//!
//! [`now_unix`] is the clock of everything the monitor schedules and stamps:
//! event times, outbox expiry (`max_age_hours`), retry times and camera
//! offline/online reasons. The fault campaign (tests/fault_campaign.rs) has to
//! show what an hour without a receiver, or ten minutes without a camera, does
//! to the real binary without waiting that long, so the binary reads
//! `WILDFIRE_WATCH_TEST_CLOCK_FILE` once at start: when set, it names a file
//! holding a number of seconds that is added to the wall clock on every read
//! (the test rewrites it to move time forward). It is for tests only: the
//! systemd unit never sets it, and a file that cannot be read or parsed adds
//! nothing.
//!
//! [`wall_unix`] is the real wall clock, for what another machine checks
//! against its own clock: the `webhook-timestamp` a receiver holds to a
//! 5-minute tolerance, and that receiver's own check.

use std::path::PathBuf;
use std::sync::OnceLock;

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
    wall_unix() + test_offset()
}

fn test_offset() -> f64 {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    let Some(path) = FILE.get_or_init(|| std::env::var_os(TEST_CLOCK_FILE).map(PathBuf::from))
    else {
        return 0.0;
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .unwrap_or(0.0)
}
