//! Writes the committed synthetic fixtures under `fixtures/`:
//! `fixtures/hillside/` (frames and labels.csv), drawn by `wildfire_watch::synth`.
//!
//! Run from the repository root: `cargo run --release --example make-fixtures`.
//! `tests/fixtures.rs` checks the committed files still match this code.

use std::path::Path;

use wildfire_watch::synth::{
    encode_jpeg, hillside_frame, hillside_labels, hillside_name, HillsideSpec, HILLSIDE_START_UNIX,
};

fn main() -> std::io::Result<()> {
    let dir = Path::new("fixtures/hillside");
    std::fs::create_dir_all(dir)?;
    let spec = HillsideSpec::default();
    for i in 0..spec.frames {
        std::fs::write(
            dir.join(hillside_name(i)),
            encode_jpeg(&hillside_frame(&spec, i)),
        )?;
    }
    std::fs::write(
        dir.join("labels.csv"),
        hillside_labels(&spec, HILLSIDE_START_UNIX),
    )?;
    println!("wrote {} frames to {}", spec.frames, dir.display());
    Ok(())
}
