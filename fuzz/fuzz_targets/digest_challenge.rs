//! Digest challenges from a camera's 401, answered and re-read.
//! The body and its properties are in `wildfire_watch::fuzzing::digest_challenge`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wildfire_watch::fuzzing::digest_challenge(data));
