//! File names in a footage folder: listing, frame names and label look-up.
//! The body and its properties are in `wildfire_watch::fuzzing::footage_names`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wildfire_watch::fuzzing::footage_names(data));
