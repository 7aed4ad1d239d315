//! Labels CSV files, read and written back.
//! The body and its properties are in `wildfire_watch::fuzzing::labels_csv`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wildfire_watch::fuzzing::labels_csv(data));
