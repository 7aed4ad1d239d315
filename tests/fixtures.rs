//! The committed synthetic fixtures are exactly what the project's own code draws.

use std::path::Path;

use wildfire_watch::synth::{
    encode_jpeg, hillside_frame, hillside_labels, hillside_name, HillsideSpec, HILLSIDE_START_UNIX,
};

#[test]
fn hillside_fixture_matches_its_generator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hillside");
    let spec = HillsideSpec::default();
    for i in 0..spec.frames {
        let path = dir.join(hillside_name(i));
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == encode_jpeg(&hillside_frame(&spec, i)),
            "{} differs from what synth draws: run `cargo run --release --example make-fixtures`",
            path.display()
        );
    }
    let labels = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    assert_eq!(labels, hillside_labels(&spec, HILLSIDE_START_UNIX));
}
