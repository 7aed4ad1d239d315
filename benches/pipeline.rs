//! Speed of the frame path on this machine (1 thread): cold start (loading
//! and optimising the model), JPEG decode, view packing, inference of one tile
//! and of a whole 1080p frame, at native resolution and at smaller working
//! resolutions, and replay throughput of a generated 1080p sequence. Run:
//! `cargo bench --bench pipeline`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wildfire_watch::confirm::{ConfirmConfig, Confirmer};
use wildfire_watch::detector::{Detector, DetectorOptions};
use wildfire_watch::footage::decode_bytes;
use wildfire_watch::model::{Model, ModelSource, Precision};
use wildfire_watch::synth::{encode_jpeg, hillside_frame, HillsideSpec};
use wildfire_watch::views::{Layout, ViewPacker, WorkingResolution, DEFAULT_OVERLAP};

fn spec_1080p() -> HillsideSpec {
    HillsideSpec {
        width: 1920,
        height: 1080,
        frames: 6,
        ignition: 2,
        seed: 7,
    }
}

fn bench_pipeline(c: &mut Criterion) {
    let spec = spec_1080p();
    let frames: Vec<Vec<u8>> = (0..spec.frames)
        .map(|i| encode_jpeg(&hillside_frame(&spec, i)))
        .collect();
    let image = decode_bytes(&frames[3]).unwrap();
    // One thread for the per-stage figures; `detect_all_views_threaded`
    // below shows what one thread per core buys.
    let one_thread = DetectorOptions {
        threads: 1,
        ..DetectorOptions::default()
    };
    let mut detector = Detector::load(&ModelSource::Embedded, one_thread).unwrap();
    let tile = detector.info().tile_size;
    let layout = Layout::at(1920, 1080, detector.resolution(), tile, DEFAULT_OVERLAP);
    let all: Vec<usize> = (0..layout.rects.len()).collect();
    eprintln!("1920x1080 at tile {tile}: {} views", layout.rects.len());

    let mut group = c.benchmark_group("cold_start");
    group.sample_size(10);
    group.bench_function("load_and_optimise", |b| {
        b.iter(|| Model::load(black_box(&ModelSource::Embedded), Precision::F32).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("frame_1080p");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("jpeg_decode", |b| {
        b.iter(|| decode_bytes(black_box(&frames[3])).unwrap())
    });
    let mut packer = ViewPacker::new(tile);
    let mut input = Vec::new();
    group.bench_function("resize_and_tile", |b| {
        b.iter(|| packer.fill(black_box(&image), &layout, &all, None, &mut input))
    });
    // Filled here too, so that a filter skipping `resize_and_tile` still works.
    packer.fill(&image, &layout, &all, None, &mut input);
    let one_tile = input[..3 * (tile * tile) as usize].to_vec();
    group.bench_function("infer_one_tile", |b| {
        b.iter(|| detector.infer_tiles(black_box(&one_tile)).unwrap())
    });
    group.bench_function("detect_all_views", |b| {
        b.iter(|| detector.detect(black_box(&image), None).unwrap())
    });
    let per_core = DetectorOptions::default();
    eprintln!("detect_all_views_threaded: {} threads", per_core.threads);
    let mut threaded = Detector::load(&ModelSource::Embedded, per_core).unwrap();
    group.bench_function("detect_all_views_threaded", |b| {
        b.iter(|| threaded.detect(black_box(&image), None).unwrap())
    });
    group.finish();

    // One 1080p frame, one thread, at the working resolutions measured for
    // the model card: shrinking and tiling included.
    let mut group = c.benchmark_group("working_resolution_1080p");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for long_side in [1280, 960, 640] {
        let mut shrunk = Detector::load(
            &ModelSource::Embedded,
            DetectorOptions {
                resolution: Some(WorkingResolution::LongSide(long_side)),
                ..one_thread
            },
        )
        .unwrap();
        let views = shrunk.detect(&image, None).unwrap().views.len();
        eprintln!("1920x1080 at working long side {long_side}: {views} views");
        group.bench_function(format!("detect_at_{long_side}"), |b| {
            b.iter(|| shrunk.detect(black_box(&image), None).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("replay_1080p");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("decode_detect_confirm", |b| {
        b.iter(|| {
            let mut confirmer = Confirmer::new(
                "bench",
                ConfirmConfig::default(),
                threaded.info().thresholds,
            );
            let mut events = 0;
            for (i, jpeg) in frames.iter().enumerate() {
                let frame = decode_bytes(jpeg).unwrap();
                let scores = threaded.detect(&frame, None).unwrap();
                events += confirmer.push(i as f64 * 10.0, "f", &scores).len();
            }
            events
        })
    });
    group.finish();
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
