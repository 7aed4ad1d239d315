//! JPEG and PNG frames through the one decoder every frame goes through.
//! The body and its properties are in `wildfire_watch::fuzzing::frame_decode`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wildfire_watch::fuzzing::frame_decode(data));
