//! The TOML configuration file: parsed, validated and used.
//! The body and its properties are in `wildfire_watch::fuzzing::config_toml`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wildfire_watch::fuzzing::config_toml(data));
