//! Writes the seed corpus, `wildfire_watch::fuzzing::seeds()`, into
//! `corpus/<target>/` and exits: `cargo +nightly fuzz run write_seeds` from
//! `fuzz/` (or `WILDFIRE_FUZZ_WRITE_SEEDS=1 cargo test --test
//! fuzz_regressions` on stable). A libFuzzer binary only because every
//! binary of this crate links libFuzzer, whose `main` it cannot replace.
#![no_main]
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in wildfire_watch::fuzzing::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::process::exit(0);
});
