//! wildfire-watch: an on-device wildfire monitor.
//!
//! Frames from a camera or recorded footage are cut into views
//! ([`views`]), scored by a smoke-and-flame classifier ([`detector`],
//! [`model`]), and confirmed over time into incidents ([`confirm`],
//! [`events`]). [`replay`] runs recorded footage through the same path and
//! scores it against labels ([`labels`]); [`report`] renders what it saw.
//!
//! The live monitor alerts control rooms: [`config`] reads its file,
//! [`payload`] builds event bodies, [`outbox`] keeps them durably (on a
//! thread of its own, [`outbox_thread`]) until
//! [`delivery`] has POSTed them, signed by [`webhook`], to each control room;
//! [`receiver`] is the reference receiving end. [`logging`] writes log
//! lines for a terminal or the systemd journal.
//!
//! [`fuzzing`] holds the bodies of the fuzz targets (`fuzz/`) that feed
//! arbitrary bytes to every parser of outside input.

pub mod camera;
pub mod classify;
pub mod clock;
pub mod config;
pub mod confirm;
pub mod delivery;
pub mod detector;
pub mod events;
pub mod footage;
pub mod fuzzing;
pub mod labels;
pub mod logging;
pub mod mask;
pub mod model;
pub mod monitor;
pub mod outbox;
pub mod outbox_thread;
pub mod payload;
pub mod pipeline;
pub mod receiver;
pub mod redact;
pub mod replay;
pub mod report;
pub mod resample;
pub mod sdnotify;
pub mod status;
pub mod synth;
#[cfg(feature = "video")]
pub mod video;
pub mod views;
pub mod webhook;
