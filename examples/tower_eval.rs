//! Tower validation (issue 15): scores the validation side of `towersmoke`
//! through the runtime's own path (`footage::decode`, `Detector::detect`) and
//! reports smoke metrics at two levels, so the figures are what the device
//! would do with these frames, not what training's Python sees.
//!
//! Usage: `cargo run --release --example tower_eval -- [--model PATH]
//! [--datasets DIR] [--split models/tower_split.json] [--margin 32] [--json]`.
//! DIR defaults to `$WILDFIRE_DATASETS`, else `../shared/datasets` beside the
//! repository; the split is the one `models/tower_split.py` wrote.
//!
//! What is measured, on the frames of the validation groups:
//! - **Tile level**, the runtime's native 224 tiles of each frame. Smoke
//!   pixels are the frame's mask where it has one, else its smoke boxes
//!   filled. A tile is *positive* when smoke covers at least 10 % of it, or
//!   it holds at least 30 % of the smoke of one box: `models/data.py`
//!   `tile_labels`' rule, counted in smoke pixels, so a thin plume's empty
//!   box corners do not count. It is *negative* when no pixel of any mask or
//!   box (any class) lies within `--margin` pixels of it, and is left out
//!   otherwise: smoke thins into haze past its outline. Every tile of a
//!   smoke-free frame is negative. Reported: recall and the share of negative
//!   tiles at or over the model's smoke threshold, ROC AUC, and the threshold
//!   that would leave at most 1 % of negative tiles over it. For a model with
//!   a working resolution the tiles are those of the working frame; they are
//!   labelled where `detect` reports them, in the frame's own pixels.
//! - **Image level**, scored as the runtime scores a frame: the maximum over
//!   all its views, whole frame included. Positives are the frames with
//!   smoke. Negatives are the smoke-free frames plus one smoke-free crop of
//!   each smoke frame where there is room: the largest strip left of, right
//!   of or above every mask pixel and box (less the margin), at native scale,
//!   at least one tile in both sides, scored as a frame of its own (its own
//!   whole view and tiles). Reported: precision, recall and F1 at the model's
//!   threshold, ROC AUC, and the threshold of best F1.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};
use wildfire_watch::detector::{Detector, DetectorOptions};
use wildfire_watch::footage::decode;
use wildfire_watch::model::{Class, ModelSource};
use wildfire_watch::views::{Rect, WorkingResolution};

/// A tile is positive when smoke covers this share of it...
const POS_TILE_FRAC: f64 = 0.10;
/// ...or when it holds this share of one box's smoke (as `tile_labels`).
const POS_BOX_FRAC: f64 = 0.30;
/// Negatives may be over the threshold for at most this share.
const TILE_FP_TARGET: f64 = 0.01;

#[derive(Parser)]
#[command(
    about = "Tower validation: the runtime's smoke scores on the validation side of towersmoke"
)]
struct Args {
    /// ONNX model (its sidecar .json beside it); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Working resolution, `native` or a long side in pixels [default: the model's].
    #[arg(long, value_name = "PX|native")]
    working_resolution: Option<WorkingResolution>,
    /// Folder holding towersmoke/ (default: $WILDFIRE_DATASETS, else ../shared/datasets).
    #[arg(long)]
    datasets: Option<PathBuf>,
    /// The split written by models/tower_split.py.
    #[arg(long)]
    split: Option<PathBuf>,
    /// This project's boxes for smoke the pool left unlabelled, added to
    /// boxes.jsonl's [default: models/tower_extra_boxes.jsonl].
    #[arg(long)]
    extra_boxes: Option<PathBuf>,
    /// Pixels around masks and boxes in which a tile or crop is not a negative.
    #[arg(long, default_value_t = 32)]
    margin: u32,
    /// Print one JSON object (metrics and per-frame scores) instead of tables.
    #[arg(long)]
    json: bool,
}

/// One row of towersmoke's labels.csv.
#[derive(Deserialize)]
struct Row {
    file: String,
    smoke: i8,
    split_hint: String,
}

/// One line of boxes.jsonl: `[class, xc, yc, w, h]`, normalised.
#[derive(Deserialize)]
struct BoxLine {
    file: String,
    boxes: Vec<(String, f64, f64, f64, f64)>,
}

/// Summed-area table of a 0/1 map: pixel counts of any rectangle in O(1).
struct Integral {
    w: u32,
    h: u32,
    sums: Vec<u32>,
}

impl Integral {
    fn new(w: u32, h: u32, on: impl Fn(u32, u32) -> bool) -> Integral {
        let stride = w as usize + 1;
        let mut sums = vec![0u32; stride * (h as usize + 1)];
        for y in 0..h {
            let mut row = 0;
            for x in 0..w {
                row += u32::from(on(x, y));
                let i = (y as usize + 1) * stride + x as usize + 1;
                sums[i] = sums[i - stride] + row;
            }
        }
        Integral { w, h, sums }
    }

    /// Set pixels in `r`, clipped to the map.
    fn count(&self, r: Rect) -> u32 {
        let (x0, y0) = (r.x.min(self.w) as usize, r.y.min(self.h) as usize);
        let x1 = (r.x + r.w).min(self.w) as usize;
        let y1 = (r.y + r.h).min(self.h) as usize;
        let s = self.w as usize + 1;
        self.sums[y1 * s + x1] + self.sums[y0 * s + x0]
            - self.sums[y0 * s + x1]
            - self.sums[y1 * s + x0]
    }
}

/// Where the smoke of one frame is, in its pixels.
struct SmokeMap {
    /// The mask where there is one, else the smoke boxes filled.
    smoke: Integral,
    /// Every mask pixel and every box of any class: what negatives keep away from.
    near: Integral,
    /// The smoke boxes, to measure how much of each one's smoke a tile holds.
    boxes: Vec<Rect>,
}

/// Tile label: smoke, no smoke, or neither (left out).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Label {
    Pos = 0,
    Neg = 1,
    Unknown = 2,
}

/// A normalised box `(xc, yc, w, h)`.
type NormBox = (f64, f64, f64, f64);

/// Box `[xc, yc, w, h]` (normalised) to whole pixels, rounded outwards.
fn box_rect(b: NormBox, w: u32, h: u32) -> Rect {
    let (xc, yc, bw, bh) = b;
    let clamp = |v: f64, max: u32| (v.max(0.0) as u32).min(max);
    let x0 = clamp(((xc - bw / 2.0) * f64::from(w)).floor(), w);
    let y0 = clamp(((yc - bh / 2.0) * f64::from(h)).floor(), h);
    let x1 = clamp(((xc + bw / 2.0) * f64::from(w)).ceil(), w);
    let y1 = clamp(((yc + bh / 2.0) * f64::from(h)).ceil(), h);
    Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

fn inside(r: &Rect, x: u32, y: u32) -> bool {
    x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h
}

impl SmokeMap {
    /// `smoke_boxes` and `other_boxes` in pixels; `mask` frame-sized, non-zero = smoke.
    fn new(
        w: u32,
        h: u32,
        mask: Option<&GrayImage>,
        smoke_boxes: Vec<Rect>,
        other_boxes: &[Rect],
    ) -> SmokeMap {
        let in_box = |x, y| smoke_boxes.iter().any(|b| inside(b, x, y));
        let in_mask = |x, y| mask.is_some_and(|m| m.get_pixel(x, y)[0] != 0);
        let smoke = match mask {
            Some(_) => Integral::new(w, h, in_mask),
            None => Integral::new(w, h, in_box),
        };
        let near = Integral::new(w, h, |x, y| {
            in_mask(x, y) || in_box(x, y) || other_boxes.iter().any(|b| inside(b, x, y))
        });
        SmokeMap {
            smoke,
            near,
            boxes: smoke_boxes,
        }
    }

    fn label(&self, tile: Rect, margin: u32) -> Label {
        let (x, y) = (tile.x.saturating_sub(margin), tile.y.saturating_sub(margin));
        let grown = Rect {
            x,
            y,
            w: tile.x + tile.w + margin - x,
            h: tile.y + tile.h + margin - y,
        };
        if self.near.count(grown) == 0 {
            return Label::Neg;
        }
        let area = f64::from(tile.w * tile.h);
        if f64::from(self.smoke.count(tile)) >= POS_TILE_FRAC * area {
            return Label::Pos;
        }
        let holds_a_box = self.boxes.iter().any(|b| {
            let total = self.smoke.count(*b);
            let shared = intersect(*b, tile).map_or(0, |r| self.smoke.count(r));
            total > 0 && f64::from(shared) >= POS_BOX_FRAC * f64::from(total)
        });
        if holds_a_box {
            Label::Pos
        } else {
            Label::Unknown
        }
    }

    /// The largest strip of the frame left of, right of or above everything
    /// in `near` (less `margin`), if both its sides are at least `tile`.
    fn clear_crop(&self, tile: u32, margin: u32) -> Option<Rect> {
        let (w, h) = (self.near.w, self.near.h);
        let (x0, y0, x1) = extent(&self.near)?;
        let left = x0.saturating_sub(margin);
        let right = (x1 + margin).min(w);
        let top = y0.saturating_sub(margin);
        let candidates = [
            Rect {
                x: 0,
                y: 0,
                w: left,
                h,
            },
            Rect {
                x: right,
                y: 0,
                w: w - right,
                h,
            },
            Rect {
                x: 0,
                y: 0,
                w,
                h: top,
            },
        ];
        candidates
            .into_iter()
            .filter(|r| r.w >= tile && r.h >= tile && self.near.count(*r) == 0)
            .max_by_key(|r| r.w * r.h)
    }
}

/// Left, top and right (exclusive) of the set pixels, or None when there are none.
fn extent(map: &Integral) -> Option<(u32, u32, u32)> {
    let all = Rect {
        x: 0,
        y: 0,
        w: map.w,
        h: map.h,
    };
    if map.count(all) == 0 {
        return None;
    }
    let col = |x| {
        map.count(Rect {
            x,
            y: 0,
            w: 1,
            h: map.h,
        }) > 0
    };
    let row = |y| {
        map.count(Rect {
            x: 0,
            y,
            w: map.w,
            h: 1,
        }) > 0
    };
    let x0 = (0..map.w).find(|&x| col(x))?;
    let x1 = (0..map.w).rev().find(|&x| col(x))? + 1;
    let y0 = (0..map.h).find(|&y| row(y))?;
    Some((x0, y0, x1))
}

fn intersect(a: Rect, b: Rect) -> Option<Rect> {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.w).min(b.x + b.w);
    let y1 = (a.y + a.h).min(b.y + b.h);
    (x1 > x0 && y1 > y0).then(|| Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    })
}

/// A validation frame as listed in towersmoke.
struct Frame {
    file: String,
    group: String,
    smoke: bool,
    path: PathBuf,
    mask: Option<PathBuf>,
    boxes: Vec<(String, NormBox)>,
}

fn default_datasets() -> PathBuf {
    std::env::var_os("WILDFIRE_DATASETS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"),
        PathBuf::from,
    )
}

/// Adds the boxes of a boxes.jsonl file to `boxes`, after those a frame
/// already has.
fn read_boxes(path: &Path, boxes: &mut BTreeMap<String, Vec<(String, NormBox)>>) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let b: BoxLine = serde_json::from_str(line)
            .with_context(|| format!("line {} of {} is not valid", n + 1, path.display()))?;
        let list = b
            .boxes
            .into_iter()
            .map(|(c, xc, yc, w, h)| (c, (xc, yc, w, h)));
        boxes.entry(b.file).or_default().extend(list);
    }
    Ok(())
}

/// The frames of the validation groups, in labels.csv order, with the
/// pool's boxes and then `extra_boxes`' (smoke the pool left unlabelled).
/// Frames whose smoke is unknown (-1) are left out.
fn validation_frames(root: &Path, split: &Path, extra_boxes: &Path) -> Result<Vec<Frame>> {
    #[derive(Deserialize)]
    struct Split {
        groups: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(split).with_context(|| {
        format!(
            "cannot read the split {}: run models/tower_split.py or pass --split",
            split.display()
        )
    })?;
    let split: Split = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a split from models/tower_split.py",
            split.display()
        )
    })?;
    let labels = root.join("labels.csv");
    let mut reader = csv::Reader::from_path(&labels).with_context(|| {
        format!(
            "cannot read {}: pass --datasets with the folder that holds towersmoke/ (or set WILDFIRE_DATASETS)",
            labels.display()
        )
    })?;
    let mut boxes = BTreeMap::new();
    read_boxes(&root.join("boxes.jsonl"), &mut boxes)?;
    let mut extra = BTreeMap::new();
    read_boxes(extra_boxes, &mut extra)?;
    let mut unmatched: Vec<String> = extra.keys().cloned().collect();
    for (file, list) in extra {
        boxes.entry(file).or_default().extend(list);
    }
    let mut frames = Vec::new();
    for row in reader.deserialize() {
        let row: Row =
            row.with_context(|| format!("a row of {} is not valid", labels.display()))?;
        unmatched.retain(|f| *f != row.file);
        let Some(side) = split.groups.get(&row.split_hint) else {
            bail!(
                "{}: group {} is not in the split; rerun models/tower_split.py after changing towersmoke",
                row.file,
                row.split_hint
            );
        };
        if side != "val" || row.smoke < 0 {
            continue;
        }
        let stem = Path::new(&row.file)
            .file_stem()
            .context("a file without a name")?;
        let mask = root.join("masks").join(stem).with_extension("png");
        frames.push(Frame {
            path: root.join(&row.file),
            mask: mask.exists().then_some(mask),
            boxes: boxes.get(&row.file).cloned().unwrap_or_default(),
            group: row.split_hint.trim_start_matches("group:").to_string(),
            smoke: row.smoke == 1,
            file: row.file,
        });
    }
    ensure!(
        unmatched.is_empty(),
        "{} names frames that towersmoke does not hold: {}; fix its file names",
        extra_boxes.display(),
        unmatched.join(", ")
    );
    ensure!(!frames.is_empty(), "the split has no validation frames");
    Ok(frames)
}

fn smoke_map(frame: &Frame, w: u32, h: u32) -> Result<SmokeMap> {
    let mask = match &frame.mask {
        Some(p) => {
            let m = image::open(p)
                .with_context(|| format!("cannot read mask {}", p.display()))?
                .into_luma8();
            ensure!(
                m.dimensions() == (w, h),
                "mask {} is {:?}, its frame {w}x{h}",
                p.display(),
                m.dimensions()
            );
            Some(m)
        }
        None => None,
    };
    let (smoke, other): (Vec<_>, Vec<_>) = frame.boxes.iter().partition(|(c, _)| c == "smoke");
    let px = |list: Vec<&(String, NormBox)>| {
        list.into_iter()
            .map(|(_, b)| box_rect(*b, w, h))
            .collect::<Vec<_>>()
    };
    Ok(SmokeMap::new(w, h, mask.as_ref(), px(smoke), &px(other)))
}

/// Per-frame results, kept for `--json` and the per-group table.
#[derive(Serialize)]
struct FrameResult {
    file: String,
    group: String,
    smoke: bool,
    /// Frame score: the maximum over all views.
    score: f32,
    /// The smoke-free crop, `[x, y, w, h]`, and its own frame score.
    crop: Option<(Rect, f32)>,
    tiles_pos: usize,
    tiles_neg: usize,
    tiles_unknown: usize,
}

/// ROC AUC: the chance that a random positive outscores a random negative (ties count half).
fn auc(pos: &[f32], neg: &[f32]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let j = (i..all.len())
            .find(|&j| all[j].0 != all[i].0)
            .unwrap_or(all.len());
        let mid_rank = (i + j + 1) as f64 / 2.0; // ranks i+1..=j share their mean
        rank_sum += mid_rank * all[i..j].iter().filter(|e| e.1).count() as f64;
        i = j;
    }
    let (p, n) = (pos.len() as f64, neg.len() as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

fn over(scores: &[f32], t: f32) -> usize {
    scores.iter().filter(|&&s| s >= t).count()
}

/// The smallest threshold at which at most `rate` of `neg` score at or over it.
fn threshold_for(neg: &[f32], rate: f64) -> f32 {
    let mut sorted = neg.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (rate * sorted.len() as f64).floor() as usize;
    sorted.get(allowed).map_or(0.0, |s| s.next_up())
}

#[derive(Serialize)]
struct Prf {
    threshold: f32,
    precision: f64,
    recall: f64,
    f1: f64,
    tp: usize,
    fp: usize,
    fn_: usize,
}

fn prf(pos: &[f32], neg: &[f32], t: f32) -> Prf {
    let (tp, fp) = (over(pos, t), over(neg, t));
    let fn_ = pos.len() - tp;
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        0.0
    };
    let recall = tp as f64 / pos.len().max(1) as f64;
    let f1 = if tp > 0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Prf {
        threshold: t,
        precision,
        recall,
        f1,
        tp,
        fp,
        fn_,
    }
}

/// The threshold (one of the positives' scores) of best F1; the higher one on ties.
fn best_f1(pos: &[f32], neg: &[f32]) -> Prf {
    let mut best = prf(pos, neg, f32::INFINITY);
    for &t in pos {
        let p = prf(pos, neg, t);
        if p.f1 > best.f1 || (p.f1 == best.f1 && t > best.threshold) {
            best = p;
        }
    }
    best
}

#[derive(Serialize)]
struct Report {
    model: String,
    threshold: f32,
    margin: u32,
    frames: usize,
    groups: usize,
    seconds: f64,
    views: usize,
    tiles: TileReport,
    images: ImageReport,
    per_frame: Vec<FrameResult>,
}

#[derive(Serialize)]
struct TileReport {
    positives: usize,
    negatives: usize,
    unknown: usize,
    recall: f64,
    negatives_over: f64,
    auc: f64,
    threshold_1pct: f32,
    recall_at_1pct: f64,
}

#[derive(Serialize)]
struct ImageReport {
    positives: usize,
    negative_frames: usize,
    negative_crops: usize,
    at_threshold: Prf,
    auc: f64,
    best_f1: Prf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let datasets = args.datasets.clone().unwrap_or_else(default_datasets);
    let split = args
        .split
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tower_split.json"));
    let extra_boxes = args.extra_boxes.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tower_extra_boxes.jsonl")
    });
    let frames = validation_frames(&datasets.join("towersmoke"), &split, &extra_boxes)?;
    let mut detector = Detector::load(
        &ModelSource::from_arg(args.model.as_deref()),
        DetectorOptions {
            resolution: args.working_resolution,
            ..DetectorOptions::default()
        },
    )?;
    let info = detector.info().clone();
    let (threshold, tile) = (info.thresholds.smoke, info.tile_size);
    let start = Instant::now();
    // A frame counter for people watching; not in logs or redirected output.
    let progress = !args.json && std::io::stderr().is_terminal();
    let (mut tile_pos, mut tile_neg, mut unknown) = (Vec::new(), Vec::new(), 0);
    let (mut img_pos, mut img_neg, mut crops, mut views) = (Vec::new(), Vec::new(), 0, 0);
    let mut per_frame = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let image = decode(&frame.path)?;
        let (w, h) = image.dimensions();
        let map = smoke_map(frame, w, h)?;
        let scores = detector.detect(&image, None)?;
        views += scores.views.len();
        let mut counts = [0usize; 3];
        for v in scores.views.iter().filter(|v| v.view > 0) {
            let label = map.label(v.rect, args.margin);
            counts[label as usize] += 1;
            match label {
                Label::Pos => tile_pos.push(v.smoke),
                Label::Neg => tile_neg.push(v.smoke),
                Label::Unknown => {}
            }
        }
        unknown += counts[2];
        let score = scores.max(Class::Smoke);
        let crop = if frame.smoke {
            img_pos.push(score);
            match map.clear_crop(tile, args.margin) {
                Some(r) => {
                    let part: RgbImage =
                        image::imageops::crop_imm(&image, r.x, r.y, r.w, r.h).to_image();
                    let crop_scores = detector.detect(&part, None)?;
                    views += crop_scores.views.len();
                    let s = crop_scores.max(Class::Smoke);
                    img_neg.push(s);
                    crops += 1;
                    Some((r, s))
                }
                None => None,
            }
        } else {
            img_neg.push(score);
            None
        };
        per_frame.push(FrameResult {
            file: frame.file.clone(),
            group: frame.group.clone(),
            smoke: frame.smoke,
            score,
            crop,
            tiles_pos: counts[0],
            tiles_neg: counts[1],
            tiles_unknown: counts[2],
        });
        if progress {
            eprint!("\r{}/{} frames", i + 1, frames.len());
        }
    }
    if progress {
        eprintln!();
    }
    let t1 = threshold_for(&tile_neg, TILE_FP_TARGET);
    let report = Report {
        model: format!("{} {}", info.name, info.version),
        threshold,
        margin: args.margin,
        frames: frames.len(),
        groups: per_frame
            .iter()
            .map(|f| &f.group)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        seconds: start.elapsed().as_secs_f64(),
        views,
        tiles: TileReport {
            positives: tile_pos.len(),
            negatives: tile_neg.len(),
            unknown,
            recall: over(&tile_pos, threshold) as f64 / tile_pos.len().max(1) as f64,
            negatives_over: over(&tile_neg, threshold) as f64 / tile_neg.len().max(1) as f64,
            auc: auc(&tile_pos, &tile_neg),
            threshold_1pct: t1,
            recall_at_1pct: over(&tile_pos, t1) as f64 / tile_pos.len().max(1) as f64,
        },
        images: ImageReport {
            positives: img_pos.len(),
            negative_frames: img_neg.len() - crops,
            negative_crops: crops,
            at_threshold: prf(&img_pos, &img_neg, threshold),
            auc: auc(&img_pos, &img_neg),
            best_f1: best_f1(&img_pos, &img_neg),
        },
        per_frame,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    Ok(())
}

fn print_tables(r: &Report) {
    let (t, i) = (&r.tiles, &r.images);
    println!(
        "tower validation: {} frames of {} groups, {}, smoke threshold {}",
        r.frames, r.groups, r.model, r.threshold
    );
    println!("tile level (native tiles; margin {} px):", r.margin);
    println!(
        "  tiles: {} positive, {} negative, {} left out",
        t.positives, t.negatives, t.unknown
    );
    println!(
        "  at {}: recall {:.3}, negatives over threshold {:.2} %",
        r.threshold,
        t.recall,
        100.0 * t.negatives_over
    );
    println!(
        "  ROC AUC {:.3}; <= 1 % negatives over at {:.4} (recall there {:.3})",
        t.auc, t.threshold_1pct, t.recall_at_1pct
    );
    println!("image level (max over views, as the runtime):");
    println!(
        "  {} smoke frames; negatives: {} smoke-free frames + {} smoke-free crops",
        i.positives, i.negative_frames, i.negative_crops
    );
    let line = |name: &str, p: &Prf| {
        println!(
            "  {name} {:.4}: precision {:.3}, recall {:.3}, F1 {:.3} (TP {}, FP {}, FN {})",
            p.threshold, p.precision, p.recall, p.f1, p.tp, p.fp, p.fn_
        )
    };
    line("at threshold", &i.at_threshold);
    line("best F1 at", &i.best_f1);
    println!("  ROC AUC {:.3}", i.auc);
    println!("per group (image level at {}):", r.threshold);
    let mut groups: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for f in &r.per_frame {
        let g = groups.entry(&f.group).or_default();
        let hot = f.score >= r.threshold;
        if f.smoke {
            g[0] += 1;
            g[1] += usize::from(hot);
        } else {
            g[2] += 1;
            g[4] += usize::from(hot);
        }
        if let Some((_, s)) = f.crop {
            g[3] += 1;
            g[4] += usize::from(s >= r.threshold);
        }
    }
    println!(
        "  {:<42} {:>6} {:>6} {:>9} {:>6}",
        "group", "smoke", "found", "negatives", "FP"
    );
    for (name, g) in groups {
        println!(
            "  {name:<42} {:>6} {:>6} {:>9} {:>6}",
            g[0],
            g[1],
            g[2] + g[3],
            g[4]
        );
    }
    println!("{} views in {:.0} s", r.views, r.seconds);
}

#[cfg(test)]
mod tests {
    use super::*;
    use wildfire_watch::views::{Layout, DEFAULT_OVERLAP};

    fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    /// A 640x480 frame whose mask is a thin upright plume (10 x 100 px) at x 300..310, y 200..300,
    /// with its mask-derived box.
    fn plume_map() -> SmokeMap {
        let plume = rect(300, 200, 10, 100);
        let mut mask = GrayImage::new(640, 480);
        for y in 200..300 {
            for x in 300..310 {
                mask.put_pixel(x, y, image::Luma([255]));
            }
        }
        SmokeMap::new(640, 480, Some(&mask), vec![plume], &[])
    }

    #[test]
    fn tiles_are_labelled_by_smoke_share_and_distance() {
        let map = plume_map();
        // Holds the whole plume: 1,000 px is 2 % of the tile, but all of the box's smoke.
        assert_eq!(map.label(rect(200, 150, 224, 224), 32), Label::Pos);
        // Holds 6 of its 100 rows: neither rule, but it touches the smoke.
        assert_eq!(map.label(rect(200, 0, 224, 206), 32), Label::Unknown);
        // Ends 20 px left of the plume: inside the margin, so left out.
        assert_eq!(map.label(rect(56, 200, 224, 224), 32), Label::Unknown);
        // Ends 40 px left of it: negative.
        assert_eq!(map.label(rect(36, 200, 224, 224), 32), Label::Neg);
        // At the frame's left edge the margin is cut off there, not moved to the right: this tile ends
        // 40 px left of the plume (a margin grown to 2 x 32 px on its right would reach it).
        assert_eq!(map.label(rect(0, 200, 260, 224), 32), Label::Neg);
    }

    #[test]
    fn a_box_frame_uses_the_tile_labels_rule() {
        // A 100 x 50 box: a tile with 40 % of it (4 % of the tile) is positive, one with 20 % is not.
        let map = SmokeMap::new(640, 480, None, vec![rect(100, 100, 100, 50)], &[]);
        assert_eq!(map.label(rect(160, 0, 224, 224), 0), Label::Pos);
        assert_eq!(map.label(rect(180, 0, 224, 224), 0), Label::Unknown);
        // A large box: 10 % of the tile is enough even if it is a small share of the box.
        let big = SmokeMap::new(640, 480, None, vec![rect(0, 0, 640, 300)], &[]);
        assert_eq!(big.label(rect(416, 250, 224, 224), 0), Label::Pos);
    }

    #[test]
    fn the_crop_is_the_largest_clear_side() {
        let map = plume_map();
        // Right strip 342..640 (310 + 32; 298 wide) beats left 0..268 (300 - 32) and above 0..168
        // (too low for a tile).
        assert_eq!(map.clear_crop(224, 32), Some(rect(342, 0, 298, 480)));
        // A plume in the middle of a narrow frame leaves no side of a whole tile.
        let mut mask = GrayImage::new(400, 480);
        mask.put_pixel(200, 100, image::Luma([255]));
        let small = SmokeMap::new(400, 480, Some(&mask), vec![], &[]);
        assert_eq!(small.clear_crop(224, 32), None);
        // A flame box also keeps the crop away.
        let flame = SmokeMap::new(
            640,
            480,
            None,
            vec![rect(500, 300, 20, 20)],
            &[rect(100, 300, 20, 20)],
        );
        assert_eq!(flame.clear_crop(224, 32), Some(rect(0, 0, 640, 268)));
    }

    #[test]
    fn metrics_on_known_scores() {
        assert_eq!(auc(&[0.9, 0.8], &[0.1, 0.2]), 1.0);
        assert_eq!(auc(&[0.5], &[0.5]), 0.5);
        // 200 negatives: 1 % lets two score at or over the threshold.
        let neg: Vec<f32> = (0..200).map(|i| i as f32 / 200.0).collect();
        let t = threshold_for(&neg, 0.01);
        assert_eq!(over(&neg, t), 2);
        assert_eq!(over(&neg, t.next_down()), 3);
        let p = prf(&[0.9, 0.4], &[0.95, 0.1], 0.5);
        assert_eq!((p.tp, p.fp, p.fn_), (1, 1, 1));
        assert_eq!(best_f1(&[0.9, 0.4], &[0.95, 0.1]).threshold, 0.4);
    }

    /// A towersmoke folder of two validation frames (one with a pool box) and its split.
    fn tiny_pool(dir: &Path) -> PathBuf {
        std::fs::write(
            dir.join("labels.csv"),
            "file,smoke,flame,source,license,split_hint\n\
             images/a.jpg,1,-1,s,l,group:g\nimages/b.jpg,1,-1,s,l,group:g\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("boxes.jsonl"),
            r#"{"file": "images/a.jpg", "boxes": [["smoke", 0.5, 0.5, 0.1, 0.1]]}"#,
        )
        .unwrap();
        let split = dir.join("split.json");
        std::fs::write(&split, r#"{"groups": {"group:g": "val"}}"#).unwrap();
        split
    }

    #[test]
    fn extra_boxes_add_to_the_pools_and_must_name_its_frames() {
        let dir = tempfile::tempdir().unwrap();
        let split = tiny_pool(dir.path());
        let extra = dir.path().join("extra.jsonl");
        std::fs::write(
            &extra,
            r#"{"file": "images/a.jpg", "boxes": [["distant-smoke", 0.18, 0.35, 0.36, 0.2]]}"#,
        )
        .unwrap();
        let frames = validation_frames(dir.path(), &split, &extra).unwrap();
        let classes: Vec<&str> = frames[0].boxes.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(classes, ["smoke", "distant-smoke"]);
        assert!(frames[1].boxes.is_empty());
        // A box on a frame the pool does not hold is a typo, not a label.
        std::fs::write(
            &extra,
            r#"{"file": "images/c.jpg", "boxes": [["distant-smoke", 0.18, 0.35, 0.36, 0.2]]}"#,
        )
        .unwrap();
        let Err(err) = validation_frames(dir.path(), &split, &extra) else {
            panic!("a box on a frame the pool does not hold was taken");
        };
        assert!(err.to_string().contains("images/c.jpg"), "{err}");
    }

    #[test]
    fn a_distant_smoke_box_keeps_negatives_and_the_crop_away_without_being_smoke() {
        // The plume of plume_map on the right, an unlabelled distant plume boxed on the left (0..230,
        // 120..216): the left strip is no longer a crop, and a tile on that box is left out, not a
        // positive.
        let plume = rect(300, 200, 10, 100);
        let mut mask = GrayImage::new(640, 480);
        mask.put_pixel(305, 250, image::Luma([255]));
        let map = SmokeMap::new(640, 480, Some(&mask), vec![plume], &[rect(0, 120, 230, 96)]);
        assert_eq!(map.label(rect(0, 0, 224, 224), 32), Label::Unknown);
        assert_eq!(map.clear_crop(224, 32), Some(rect(342, 0, 298, 480)));
        let clear = SmokeMap::new(640, 480, Some(&mask), vec![plume], &[]);
        assert_eq!(clear.label(rect(0, 0, 224, 224), 32), Label::Neg);
    }

    #[test]
    fn layout_gives_the_tiles_the_labeller_sees() {
        // The example labels the detector's own tiles; check the 640x480 layout it will get.
        let l = Layout::new(640, 480, 224, DEFAULT_OVERLAP);
        assert_eq!((l.rows, l.cols), (3, 4));
    }
}
