//! The detector: one frame in, per-view smoke and flame probabilities out.
//!
//! It owns the loaded model and the view layout for the current frame size.
//! Each inference thread packs the views it scores one at a time into its own
//! one-view buffer and runs the model on it (see `model.rs` for why one at a
//! time is faster in tract than a batch); no frame-sized batch is held. Live
//! cameras, replay and `classify` all go through [`Detector::detect`], so they
//! score frames identically.

use anyhow::{Context, Result};
use image::RgbImage;
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::mask::IgnoreMask;
use crate::model::{Class, Model, ModelInfo, ModelSource, PerClass, Precision};
use crate::views::{Layout, Rect, ViewPacker, WorkingResolution, DEFAULT_OVERLAP};

/// Views covered at least this much by an ignore-mask are not scored.
const MASKED_VIEW_LIMIT: f32 = 0.5;

/// The scores of one view of a frame.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ViewScore {
    /// Index into the frame's layout: 0 is the whole frame, then tiles.
    #[serde(skip)]
    pub view: usize,
    /// Where the view lies, in the pixels of the frame as it arrived.
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
    /// The float type inference computes in.
    pub precision: Precision,
    /// The resolution frames are looked at; `None` takes the model's
    /// (`working_long_side` in its sidecar).
    pub resolution: Option<WorkingResolution>,
}

impl Default for DetectorOptions {
    /// The default overlap, and one thread per core.
    fn default() -> Self {
        DetectorOptions {
            overlap: DEFAULT_OVERLAP,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            precision: Precision::F32,
            resolution: None,
        }
    }
}

pub struct Detector {
    model: Model,
    options: DetectorOptions,
    layout: Option<Layout>,
    packer: ViewPacker,
    views: Vec<usize>,
}

impl Detector {
    pub fn load(source: &ModelSource, options: DetectorOptions) -> Result<Detector> {
        let model = Model::load(source, options.precision)?;
        Ok(Detector::new(model, options))
    }

    pub fn new(model: Model, options: DetectorOptions) -> Detector {
        let tile = model.info.tile_size;
        Detector {
            model,
            options,
            layout: None,
            packer: ViewPacker::new(tile),
            views: Vec::new(),
        }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    /// The resolution frames are looked at.
    pub fn resolution(&self) -> WorkingResolution {
        self.options
            .resolution
            .unwrap_or_else(|| self.model.info.working_resolution())
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
            Some(l) if l.frame == (w, h) => l.clone(),
            _ => {
                let l = Layout::at(w, h, self.resolution(), tile, self.options.overlap);
                self.layout = Some(l.clone());
                l
            }
        };
        if let Some(mask) = mask.as_deref_mut() {
            mask.prepare(w, h);
        }
        let mask = mask.as_deref();
        self.views.clear();
        for i in 0..layout.rects.len() {
            let masked = i > 0
                && mask.is_some_and(|m| m.coverage(&layout.frame_rect(i)) >= MASKED_VIEW_LIMIT);
            if !masked {
                self.views.push(i);
            }
        }
        let prepared = self.packer.prepare(frame, &layout, mask);
        let scores = infer(
            &self.model,
            self.options.threads,
            self.views.len(),
            |slot, dst| prepared.write_view(&layout, self.views[slot], dst),
        )?;
        let views = self
            .views
            .iter()
            .zip(scores.chunks_exact(2))
            .map(|(&view, s)| ViewScore {
                view,
                rect: layout.frame_rect(view),
                smoke: s[0],
                flame: s[1],
            })
            .collect();
        Ok(FrameScores { layout, views })
    }

    /// Runs the model on ready-made `3 x T x T` tensors (pixel / 255), one per
    /// tile. Used by the golden tests and the benchmarks.
    pub fn infer_tiles(&mut self, tiles: &[f32]) -> Result<Vec<f32>> {
        let t = self.model.info.tile_size as usize;
        let size = 3 * t * t;
        anyhow::ensure!(
            tiles.len().is_multiple_of(size),
            "input is not a whole number of tiles"
        );
        infer(
            &self.model,
            self.options.threads,
            tiles.len() / size,
            |slot, dst| dst.copy_from_slice(&tiles[slot * size..(slot + 1) * size]),
        )
    }
}

/// Runs the model on `n` views; returns `[smoke, flame]` per view.
/// `write_view(slot, dst)` packs view `slot` into a `3 x T x T` buffer. With
/// several threads each takes a contiguous share of the views, packing one
/// view at a time into its own buffer: no frame-sized batch is ever held.
/// The plan is shared, read-only.
fn infer<W>(model: &Model, threads: usize, n: usize, write_view: W) -> Result<Vec<f32>>
where
    W: Fn(usize, &mut [f32]) + Sync,
{
    let threads = threads.clamp(1, n.max(1));
    let share = n.div_ceil(threads).max(1);
    let score_share = |first: usize| score_views(model, first..(first + share).min(n), &write_view);
    // The calling thread scores the first share itself, so `threads` threads
    // work in all (and each holds its own allocator arena, not one more).
    let parts: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (share..n)
            .step_by(share)
            .map(|first| scope.spawn(move || score_share(first)))
            .collect();
        let mut parts = vec![score_share(0)];
        parts.extend(helpers.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an inference thread panicked")))
        }));
        parts
    });
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

/// Scores views `slots` one by one; `[smoke, flame]` per view. A 16-bit plan
/// takes and gives half floats; the conversion is here.
fn score_views<W>(model: &Model, slots: std::ops::Range<usize>, write_view: &W) -> Result<Vec<f32>>
where
    W: Fn(usize, &mut [f32]) + Sync,
{
    let t = model.info.tile_size as usize;
    let f16 = model.precision == Precision::F16;
    let mut scores = Vec::with_capacity(slots.len() * 2);
    let mut buffer = vec![0.0f32; 3 * t * t];
    for slot in slots {
        write_view(slot, &mut buffer);
        let mut input = Tensor::from_shape(&[1, 3, t, t], &buffer)?;
        if f16 {
            input = input.cast_to::<f16>()?.into_owned();
        }
        let outputs = model
            .plan
            .run(tvec!(input.into()))
            .context("inference failed")?;
        let output = outputs[0].cast_to::<f32>()?;
        let out = output.try_as_plain_ram()?.as_slice::<f32>()?;
        anyhow::ensure!(
            out.len() == 2,
            "the model returned {} values for one view, not [smoke, flame]",
            out.len()
        );
        scores.extend_from_slice(out);
    }
    Ok(scores)
}
