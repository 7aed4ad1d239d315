//! Where one tile's inference time goes: runs the detector's optimised plan on
//! a generated tile, times every node, and prints the total per kind of
//! operator, slowest first. Used to compare tract with onnxruntime
//! (`benches/ort_compare.py`) operator by operator.
//!
//! Usage: `cargo run --release --example op_profile [REPEATS]` (default 50).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use tract_onnx::prelude::*;
use wildfire_watch::model::{Model, ModelSource, Precision};

fn main() -> Result<()> {
    let repeats: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().context("REPEATS must be a whole number")?,
        None => 50,
    };
    let model = Model::load(&ModelSource::Embedded, Precision::F32)?;
    let t = model.info.tile_size as usize;
    // A deterministic textured tile: the values do not change the work done.
    let tile = Tensor::from_shape(
        &[1, 3, t, t],
        &(0..3 * t * t)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect::<Vec<f32>>(),
    )?;
    let mut state = model.plan.spawn()?;
    // Per node: (kind of operator, seconds over all repeats).
    let mut per_node: BTreeMap<usize, (String, f64)> = BTreeMap::new();
    let mut wall = Vec::with_capacity(repeats);
    for pass in 0..=repeats {
        let start = Instant::now();
        state.run_plan_with_eval(tvec!(tile.clone().into()), |ctx, op_state, node, inputs| {
            let started = Instant::now();
            let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
            // Pass 0 warms caches and allocations; it is not counted.
            if pass > 0 {
                let entry = per_node
                    .entry(node.id)
                    .or_insert_with(|| (node.op().name().to_string(), 0.0));
                entry.1 += started.elapsed().as_secs_f64();
            }
            out
        })?;
        if pass > 0 {
            wall.push(start.elapsed().as_secs_f64());
        }
    }
    let mut per_kind: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (kind, secs) in per_node.values() {
        let e = per_kind.entry(kind.clone()).or_default();
        e.0 += 1;
        e.1 += secs;
    }
    let total: f64 = per_kind.values().map(|(_, s)| s).sum();
    let mut kinds: Vec<_> = per_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    wall.sort_by(f64::total_cmp);
    println!(
        "one {t}x{t} tile, {repeats} passes: median {:.2} ms per pass",
        wall[wall.len() / 2] * 1e3
    );
    println!(
        "{:<28} {:>5} {:>9} {:>6}",
        "operator", "nodes", "ms/tile", "share"
    );
    for (kind, (nodes, secs)) in kinds {
        println!(
            "{kind:<28} {nodes:>5} {:>9.3} {:>5.1}%",
            secs * 1e3 / repeats as f64,
            100.0 * secs / total
        );
    }
    Ok(())
}
