//! The detector: one frame in, per-view smoke and flame probabilities out.
//!
//! It owns the loaded model, the view layout for the current frame size and
//! the reusable input buffer. The views of a frame are packed into one
//! buffer and run through the model one after another (see `model.rs` for
//! why one at a time is faster in tract than a batch). Live
//! cameras, replay and `classify` all go through [`Detector::detect`], so they
//! score frames identically.

use anyhow::{Context, Result};
use image::RgbImage;
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::mask::IgnoreMask;
use crate::model::{Class, Model, ModelInfo, ModelSource, PerClass, Plan};
use crate::views::{BatchBuilder, Layout, Rect, DEFAULT_OVERLAP};

/// Views covered at least this much by an ignore-mask are not scored.
const MASKED_VIEW_LIMIT: f32 = 0.5;

/// The scores of one view of a frame.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ViewScore {
    /// Index into the frame's layout: 0 is the whole frame, then tiles.
    #[serde(skip)]
    pub view: usize,
    pub rect: Rect,
    pub smoke: f32,
    pub flame: f32,
}

impl ViewScore {
    pub fn score(&self, class: Class) -> f32 {
        match class {
            Class::Smoke => self.smoke,
            Class::Flame => self.flame,
        }
    }
}

/// Everything the detector says about one frame.
#[derive(Clone, Debug)]
pub struct FrameScores {
    pub layout: Layout,
    /// Scored views, in layout order; masked views are absent.
    pub views: Vec<ViewScore>,
}

impl FrameScores {
    /// The frame-level probability of `class`: the maximum over its views.
    pub fn max(&self, class: Class) -> f32 {
        self.views
            .iter()
            .map(|v| v.score(class))
            .fold(0.0, f32::max)
    }

    pub fn maxima(&self) -> PerClass<f32> {
        PerClass {
            smoke: self.max(Class::Smoke),
            flame: self.max(Class::Flame),
        }
    }
}

/// Settings that shape how a frame is looked at.
#[derive(Clone, Copy, Debug)]
pub struct DetectorOptions {
    pub overlap: f32,
    /// Threads that score a frame's views side by side (at least 1).
    pub threads: usize,
}

impl Default for DetectorOptions {
    /// The default overlap, and one thread per core.
    fn default() -> Self {
        DetectorOptions {
            overlap: DEFAULT_OVERLAP,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

pub struct Detector {
    model: Model,
    options: DetectorOptions,
    layout: Option<Layout>,
    batch: BatchBuilder,
    input: Vec<f32>,
    views: Vec<usize>,
}

impl Detector {
    pub fn load(source: &ModelSource, options: DetectorOptions) -> Result<Detector> {
        let model = Model::load(source)?;
        Ok(Detector::new(model, options))
    }

    pub fn new(model: Model, options: DetectorOptions) -> Detector {
        let tile = model.info.tile_size;
        Detector {
            model,
            options,
            layout: None,
            batch: BatchBuilder::new(tile),
            input: Vec::new(),
            views: Vec::new(),
        }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    /// Scores every view of `frame`, leaving out views mostly under `mask`.
    pub fn detect(
        &mut self,
        frame: &RgbImage,
        mut mask: Option<&mut IgnoreMask>,
    ) -> Result<FrameScores> {
        let (w, h) = frame.dimensions();
        let tile = self.model.info.tile_size;
        let layout = match &self.layout {
            Some(l) if l.width == w && l.height == h => l.clone(),
            _ => {
                let l = Layout::new(w, h, tile, self.options.overlap);
                self.layout = Some(l.clone());
                l
            }
        };
        if let Some(mask) = mask.as_deref_mut() {
            mask.prepare(w, h);
        }
        let mask = mask.as_deref();
        self.views.clear();
        for (i, rect) in layout.rects.iter().enumerate() {
            let masked = i > 0 && mask.is_some_and(|m| m.coverage(rect) >= MASKED_VIEW_LIMIT);
            if !masked {
                self.views.push(i);
            }
        }
        self.batch
            .fill(frame, &layout, &self.views, mask, &mut self.input);
        let scores = self.infer()?;
        let views = self
            .views
            .iter()
            .zip(scores.chunks_exact(2))
            .map(|(&view, s)| ViewScore {
                view,
                rect: layout.rects[view],
                smoke: s[0],
                flame: s[1],
            })
            .collect();
        Ok(FrameScores { layout, views })
    }

    /// Runs the model on each view of the packed input; returns
    /// `[smoke, flame]` per view. With several threads each takes a
    /// contiguous share of the views; the plan is shared, read-only.
    fn infer(&mut self) -> Result<Vec<f32>> {
        let t = self.model.info.tile_size as usize;
        let n = self.views.len();
        let threads = self.options.threads.clamp(1, n.max(1));
        let share = n.div_ceil(threads).max(1) * 3 * t * t;
        let plan = &self.model.plan;
        let parts: Vec<Result<Vec<f32>>> = if threads == 1 {
            vec![score_tiles(plan, t, &self.input)]
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> = self
                    .input
                    .chunks(share)
                    .map(|tiles| scope.spawn(move || score_tiles(plan, t, tiles)))
                    .collect();
                workers
                    .into_iter()
                    .map(|w| {
                        w.join().unwrap_or_else(|_| {
                            Err(anyhow::anyhow!("an inference thread panicked"))
                        })
                    })
                    .collect()
            })
        };
        let mut scores = Vec::with_capacity(n * 2);
        for part in parts {
            scores.extend(part?);
        }
        anyhow::ensure!(
            scores.len() == n * 2,
            "{n} views but {} scores",
            scores.len() / 2
        );
        Ok(scores)
    }

    /// Runs the model on ready-made `3 x T x T` tensors (pixel / 255), one per
    /// tile. Used by the golden tests and the benchmarks.
    pub fn infer_tiles(&mut self, tiles: &[f32]) -> Result<Vec<f32>> {
        let t = self.model.info.tile_size as usize;
        anyhow::ensure!(
            tiles.len().is_multiple_of(3 * t * t),
            "input is not a whole number of tiles"
        );
        self.views = (0..tiles.len() / (3 * t * t)).collect();
        self.input.clear();
        self.input.extend_from_slice(tiles);
        self.infer()
    }
}

/// Scores packed `3 x T x T` tiles one by one; `[smoke, flame]` per tile.
fn score_tiles(plan: &Plan, t: usize, tiles: &[f32]) -> Result<Vec<f32>> {
    let mut scores = Vec::with_capacity(tiles.len() / (3 * t * t) * 2);
    for tile in tiles.chunks_exact(3 * t * t) {
        let input = Tensor::from_shape(&[1, 3, t, t], tile)?;
        let outputs = plan.run(tvec!(input.into())).context("inference failed")?;
        let out = outputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
        anyhow::ensure!(
            out.len() == 2,
            "the model returned {} values for one view, not [smoke, flame]",
            out.len()
        );
        scores.extend_from_slice(out);
    }
    Ok(scores)
}
