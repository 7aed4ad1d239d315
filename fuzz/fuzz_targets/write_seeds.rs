//! Writes the seed corpus, `wildfire_watch::fuzzing::seeds()`, into
//! `corpus/<target>/`: `cargo +nightly fuzz run write_seeds` from `fuzz/`
//! (or `WILDFIRE_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_regressions` on
//! stable). Not a fuzz target: it has its own `main`.
fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in wildfire_watch::fuzzing::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
