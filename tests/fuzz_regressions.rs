//! The fuzz targets on stable, in `cargo test`: every file of the committed
//! corpus (`fuzz/corpus/<target>/`: the seeds and any input a fuzzer once
//! crashed on) is replayed through its target's body in
//! `wildfire_watch::fuzzing`, then each target runs on a fixed number of
//! deterministic mutations of its corpus, so a change that breaks a property
//! the fuzzers checked shows here without nightly or an instrumented build.
//! The long runs are `cargo +nightly fuzz run` (README.md, Fuzzing).

use std::path::{Path, PathBuf};

use wildfire_watch::fuzzing;

/// Mutated inputs per target: a few seconds each in a debug test build.
const MUTATIONS: usize = 1500;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn body(target: &str) -> fn(&[u8]) {
    fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1
}

/// Replays the corpus, then runs the mutations; a failure names the input.
fn run(target: &str) {
    let body = body(target);
    let corpus = corpus(target);
    assert!(!corpus.is_empty(), "{target} has no corpus");
    for (path, bytes) in &corpus {
        if let Err(panic) = std::panic::catch_unwind(|| body(bytes)) {
            panic!("{target} fails on {}: {panic:?}", path.display());
        }
    }
    // Seeded by the target's name: the same inputs on every run.
    let seed = target
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) + u64::from(b));
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..MUTATIONS {
        let input = &corpus[rng.usize(..corpus.len())].1;
        let other = &corpus[rng.usize(..corpus.len())].1;
        let mutated = fuzzing::mutate(&mut rng, input, other);
        if std::panic::catch_unwind(|| body(&mutated)).is_err() {
            panic!(
                "{target} fails on mutation {i}: {:?}",
                String::from_utf8_lossy(&mutated)
            );
        }
    }
    fuzzing::remove_scratch();
}

#[test]
fn the_seed_corpus_is_committed_and_current() {
    // WILDFIRE_FUZZ_WRITE_SEEDS=1 writes the seeds `fuzzing::seeds` makes.
    let write = std::env::var_os("WILDFIRE_FUZZ_WRITE_SEEDS").is_some();
    for (target, name, bytes) in fuzzing::seeds() {
        let path = corpus_dir(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} differs from fuzzing::seeds(): rerun with WILDFIRE_FUZZ_WRITE_SEEDS=1",
            path.display()
        );
    }
    for (target, _) in fuzzing::TARGETS {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "{target} has no cargo-fuzz target"
        );
    }
}

#[test]
fn config_toml() {
    run("config_toml");
}

#[test]
fn labels_csv() {
    run("labels_csv");
}

#[test]
fn digest_challenge() {
    run("digest_challenge");
}

#[test]
fn webhook_verify() {
    run("webhook_verify");
}

#[test]
fn receiver_request() {
    run("receiver_request");
}

#[test]
fn frame_decode() {
    run("frame_decode");
}

#[test]
fn footage_names() {
    run("footage_names");
}
