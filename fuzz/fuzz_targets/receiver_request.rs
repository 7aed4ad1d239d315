//! Raw and signed HTTP requests to the reference webhook receiver.
//! The body and its properties are in `wildfire_watch::fuzzing::receiver_request`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wildfire_watch::fuzzing::receiver_request(data));
