//! Times the detector's model on ready-made tiles, one thread, for
//! `benches/ort_compare.py`, which runs the same tiles through onnxruntime.
//!
//! Usage: `cargo run --release --example tile_latency -- TILES.f32 REPEATS`
//! where TILES.f32 holds `n x 3 x T x T` little-endian f32 values (pixel / 255).
//! Prints one JSON line: the median milliseconds per tile over REPEATS passes
//! and the scores of the first pass, so the caller can check both runtimes agree.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use wildfire_watch::detector::{Detector, DetectorOptions};
use wildfire_watch::model::ModelSource;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, repeats] = args.as_slice() else {
        bail!("usage: tile_latency TILES.f32 REPEATS");
    };
    let repeats: usize = repeats.parse().context("REPEATS must be a whole number")?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    let tiles: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // One thread, as onnxruntime is run in benches/ort_compare.py.
    let one_thread = DetectorOptions {
        threads: 1,
        ..DetectorOptions::default()
    };
    let mut detector = Detector::load(&ModelSource::Embedded, one_thread)?;
    let t = detector.info().tile_size as usize;
    let n = tiles.len() / (3 * t * t);
    if n == 0 || tiles.len() != n * 3 * t * t {
        bail!("{path} is not a whole number of 3 x {t} x {t} f32 tiles");
    }
    let scores = detector.infer_tiles(&tiles)?;
    let mut per_tile_ms = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        detector.infer_tiles(&tiles)?;
        per_tile_ms.push(start.elapsed().as_secs_f64() * 1e3 / n as f64);
    }
    per_tile_ms.sort_by(f64::total_cmp);
    let median = per_tile_ms[per_tile_ms.len() / 2];
    println!(
        "{}",
        serde_json::json!({"tiles": n, "ms_per_tile": median, "scores": scores})
    );
    Ok(())
}
