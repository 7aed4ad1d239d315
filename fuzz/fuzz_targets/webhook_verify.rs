//! Standard Webhooks verification of hostile headers, and signing round trips.
//! The body and its properties are in `wildfire_watch::fuzzing::webhook_verify`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wildfire_watch::fuzzing::webhook_verify(data));
