//! Runs the embedded model on one golden tile a given number of times, one
//! thread, so that an instruction counter can price one inference: the
//! difference between two runs with different REPEATS, divided by the
//! difference in REPEATS, is the cost of one tile with loading taken out.
//! `benches/arm_cost.sh` does this under qemu-user for aarch64 CPU models.
//!
//! Usage: `tile_insns PRECISION REPEATS` (PRECISION is f32 or f16). Prints the
//! tile's scores as one JSON line, so the precisions can be compared too.

use std::path::Path;

use anyhow::{bail, Context, Result};
use wildfire_watch::detector::{Detector, DetectorOptions};
use wildfire_watch::footage::decode;
use wildfire_watch::model::{ModelSource, Precision};
use wildfire_watch::views::{Layout, ViewPacker, DEFAULT_OVERLAP};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [precision, repeats] = args.as_slice() else {
        bail!("usage: tile_insns f32|f16 REPEATS");
    };
    let precision = match precision.as_str() {
        "f32" => Precision::F32,
        "f16" => Precision::F16,
        other => bail!("PRECISION must be f32 or f16, not {other:?}"),
    };
    let repeats: usize = repeats.parse().context("REPEATS must be a whole number")?;
    let options = DetectorOptions {
        threads: 1,
        precision,
        ..DetectorOptions::default()
    };
    let mut detector = Detector::load(&ModelSource::Embedded, options)?;
    let t = detector.info().tile_size;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/tile_0.png");
    let img = decode(&path)?;
    if img.dimensions() != (t, t) {
        bail!("{} is not a {t} x {t} tile", path.display());
    }
    // A T x T image has exactly one native tile, view 1: the image itself.
    let mut planes = Vec::new();
    ViewPacker::new(t).fill(
        &img,
        &Layout::new(t, t, t, DEFAULT_OVERLAP),
        &[1],
        None,
        &mut planes,
    );
    let mut scores = Vec::new();
    for _ in 0..repeats {
        scores = detector.infer_tiles(&planes)?;
    }
    println!(
        "{}",
        serde_json::json!({"precision": format!("{precision:?}"), "repeats": repeats, "scores": scores})
    );
    Ok(())
}
