//! Decodes frames exactly as the runtime does and writes their raw RGB, for
//! `models/decode_skew.py`, which compares them with training's decoder
//! (Pillow) pixel for pixel and score for score.
//!
//! Usage:
//!   `cargo run --example decode_frames -- [--decoder runtime|image] OUT_DIR FILE...`
//!     writes OUT_DIR/NNNNN.rgb (width x height x 3 bytes, row-major) for the
//!     Nth file and prints one JSON line per file: file, width, height, rgb.
//!   `cargo run --example decode_frames -- [--decoder D] --time REPEATS FILE`
//!     prints the milliseconds per decode of FILE (median of REPEATS).
//!
//! `--decoder image` decodes with the `image` crate's JPEG decoder
//! (zune-jpeg), the runtime's decoder before it was matched to training, so
//! the skew it had can still be measured.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use image::RgbImage;
use wildfire_watch::footage::decode_bytes;

fn decode(decoder: &str, bytes: &[u8]) -> Result<RgbImage> {
    match decoder {
        "runtime" => decode_bytes(bytes),
        "image" => Ok(image::load_from_memory(bytes)?.into_rgb8()),
        other => bail!("unknown decoder {other}: runtime or image"),
    }
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut decoder = "runtime".to_string();
    if args.first().map(String::as_str) == Some("--decoder") && args.len() > 1 {
        decoder = args.remove(1);
        args.remove(0);
    }
    if args.first().map(String::as_str) == Some("--time") {
        let [_, repeats, file] = args.as_slice() else {
            bail!("usage: decode_frames [--decoder D] --time REPEATS FILE");
        };
        let repeats: usize = repeats.parse().context("REPEATS must be a whole number")?;
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
        let mut ms = Vec::with_capacity(repeats);
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            std::hint::black_box(decode(&decoder, &bytes)?);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{decoder}: {:.2} ms per decode (median of {})",
            ms[ms.len() / 2],
            ms.len()
        );
        return Ok(());
    }
    let Some((out, files)) = args.split_first() else {
        bail!("usage: decode_frames [--decoder runtime|image] OUT_DIR FILE...");
    };
    let out = Path::new(out);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
        let image = decode(&decoder, &bytes).with_context(|| format!("cannot decode {file}"))?;
        let rgb = out.join(format!("{i:05}.rgb"));
        std::fs::write(&rgb, image.as_raw())
            .with_context(|| format!("cannot write {}", rgb.display()))?;
        println!(
            "{}",
            serde_json::json!({
                "file": file,
                "width": image.width(),
                "height": image.height(),
                "rgb": rgb,
            })
        );
    }
    Ok(())
}
