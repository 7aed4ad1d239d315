//! The classifier model: its ONNX graph and the sidecar that describes it.
//!
//! The default model (`models/wildfire-tiles.onnx` with `models/wildfire-tiles.json`)
//! is embedded in the binary so a fresh install needs no files beside it;
//! `--model PATH` loads another one, whose sidecar is `PATH` with a `.json`
//! extension. This module checks that a model keeps the contract the runtime
//! relies on (see `models/README.md`) and turns it into an optimised tract plan.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::views::WorkingResolution;

/// The two classes, in the order of the model's output columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Smoke,
    Flame,
}

impl Class {
    pub const ALL: [Class; 2] = [Class::Smoke, Class::Flame];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Smoke => "smoke",
            Class::Flame => "flame",
        }
    }
}

/// Per-class values, indexed by [`Class`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerClass<T> {
    pub smoke: T,
    pub flame: T,
}

impl<T: Copy> PerClass<T> {
    pub fn get(&self, class: Class) -> T {
        match class {
            Class::Smoke => self.smoke,
            Class::Flame => self.flame,
        }
    }

    pub fn set(&mut self, class: Class, value: T) {
        match class {
            Class::Smoke => self.smoke = value,
            Class::Flame => self.flame = value,
        }
    }
}

/// The sidecar file shipped beside each ONNX model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// Side of the square input tile, in pixels.
    pub tile_size: u32,
    pub classes: Vec<String>,
    /// Operating thresholds: a probability at or above one is an alarm.
    pub thresholds: PerClass<f32>,
    #[serde(default)]
    pub input: String,
    /// Long side, in pixels, that larger frames are shrunk to before they are
    /// cut into views: the scale the model was trained and validated at.
    /// Absent (or `null`) means native: frames are looked at as they come.
    #[serde(default)]
    pub working_long_side: Option<u32>,
}

impl ModelInfo {
    /// The resolution the model looks at frames at, unless overridden.
    pub fn working_resolution(&self) -> WorkingResolution {
        self.working_long_side
            .map_or(WorkingResolution::Native, WorkingResolution::LongSide)
    }

    fn validate(&self) -> Result<()> {
        if let Some(l) = self.working_long_side {
            ensure!(
                l >= self.tile_size && l <= 16384,
                "the model's working_long_side {l} must be between its tile_size ({}) and 16384 pixels",
                self.tile_size
            );
        }
        ensure!(
            self.classes == ["smoke", "flame"],
            "the model's classes are {:?}, but wildfire-watch needs [\"smoke\", \"flame\"] in that order",
            self.classes
        );
        ensure!(
            (16..=1024).contains(&self.tile_size),
            "the model's tile_size {} is outside 16..=1024",
            self.tile_size
        );
        for class in Class::ALL {
            let t = self.thresholds.get(class);
            ensure!(
                t > 0.0 && t < 1.0,
                "the model's {} threshold {t} is not a probability strictly between 0 and 1",
                class.name()
            );
        }
        Ok(())
    }
}

const DEFAULT_ONNX: &[u8] = include_bytes!("../models/wildfire-tiles.onnx");
const DEFAULT_INFO: &str = include_str!("../models/wildfire-tiles.json");

/// Where a model comes from.
#[derive(Clone, Debug, Default)]
pub enum ModelSource {
    /// The model embedded in this binary.
    #[default]
    Embedded,
    /// An ONNX file; its sidecar is the same path with a `.json` extension.
    File(PathBuf),
}

impl ModelSource {
    pub fn from_arg(path: Option<&Path>) -> ModelSource {
        path.map_or(ModelSource::Embedded, |p| {
            ModelSource::File(p.to_path_buf())
        })
    }
}

pub type Plan = Arc<TypedRunnableModel>;

/// The float type the plan computes in.
///
/// Only f32 is offered to users. F16 exists so that `benches/arm_cost.sh`
/// can price it and the golden tests can check it: under qemu, with tract's
/// native fp16 kernels for an ARMv8.2 core (the Raspberry Pi 5's Cortex-A76),
/// one tile took 1.79 times the instructions of f32, because only the matrix
/// products have f16 kernels; on the Pi 4's Cortex-A72, which has no fp16
/// arithmetic, 41 times. Scores move by up to about 3e-2. Measure again when
/// tract's f16 kernels grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats: the model as exported, and the golden values.
    #[default]
    F32,
    /// 16-bit floats: the graph's weights and activations translated to
    /// half precision before optimisation.
    F16,
}

/// A loaded model: its description and its optimised plan.
pub struct Model {
    pub info: ModelInfo,
    pub plan: Plan,
    pub precision: Precision,
}

impl Model {
    /// Loads, checks and optimises a model. Errors say what to do.
    pub fn load(source: &ModelSource, precision: Precision) -> Result<Model> {
        let (onnx, info_text, origin) = match source {
            ModelSource::Embedded => (
                Cow::Borrowed(DEFAULT_ONNX),
                DEFAULT_INFO.to_string(),
                "the embedded model".to_string(),
            ),
            ModelSource::File(path) => {
                let onnx = std::fs::read(path).with_context(|| {
                    format!(
                        "cannot read model {}: check the --model path",
                        path.display()
                    )
                })?;
                let sidecar = path.with_extension("json");
                let info = std::fs::read_to_string(&sidecar).with_context(|| {
                    format!(
                        "cannot read the model's sidecar {}: every model needs a .json file beside it \
                         (see models/README.md)",
                        sidecar.display()
                    )
                })?;
                (Cow::Owned(onnx), info, path.display().to_string())
            }
        };
        let info: ModelInfo = serde_json::from_str(&info_text)
            .with_context(|| format!("the sidecar of {origin} is not valid model metadata"))?;
        info.validate()
            .with_context(|| format!("{origin} breaks the model contract"))?;
        let plan = build_plan(&onnx, info.tile_size, precision)
            .with_context(|| format!("{origin} breaks the model contract"))?;
        Ok(Model {
            info,
            plan,
            precision,
        })
    }
}

fn build_plan(onnx: &[u8], tile: u32, precision: Precision) -> Result<Plan> {
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .context("not a readable ONNX graph")?;
    ensure!(
        model.inputs.len() == 1 && model.outputs.len() == 1,
        "expected one input and one output, found {} and {}",
        model.inputs.len(),
        model.outputs.len()
    );
    // The contract asks for a dynamic batch, but tract runs a plan made for
    // one tile 3 to 8 times faster per tile than one made for a symbolic or
    // larger batch (28 ms against 68 to 228 ms for this model on one x86
    // core: activations of one tile stay in cache). So the plan is for one
    // tile and the detector feeds views one by one.
    let t = tile as usize;
    model.set_input_fact(0, f32::fact([1, 3, t, t]).into())?;
    let mut model = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .context("cannot type the graph for an input of 1 x 3 x tile x tile floats")?;
    // Channels-last convolutions: with channels contiguous, tract's depthwise
    // kernel works across channels and the 1x1 products pack faster. One tile
    // on one x86-64 core: 32.1 ms before, 22.4 ms after (`examples/op_profile`:
    // depthwise 11.7 -> 5.0 ms, matrix products 15.6 -> 13.4 ms). The axis
    // moves it inserts cancel out between consecutive convolutions when the
    // graph is decluttered again in `into_optimized`.
    apply_transform(
        &mut model,
        "conv_nhwc",
        "turn the convolutions channels-last",
    )?;
    if precision == Precision::F16 {
        apply_transform(
            &mut model,
            "f32_to_f16",
            "translate the graph to 16-bit floats",
        )?;
    }
    let model = model
        .into_optimized()
        .context("cannot optimise the graph for an input of 1 x 3 x tile x tile floats")?;
    let output = model.output_fact(0)?;
    let float = match precision {
        Precision::F32 => f32::datum_type(),
        Precision::F16 => f16::datum_type(),
    };
    let rank_ok =
        output.rank() == 2 && output.shape[1] == 2.to_dim() && output.shape[0] == 1.to_dim();
    if !rank_ok || output.datum_type != float {
        bail!(
            "its output is {output:?}, but wildfire-watch needs 1 x 2 float probabilities for one tile [smoke, flame]"
        );
    }
    model.into_runnable()
}

/// Runs tract's model transform `name` on `model`; `what` says what it does,
/// for the error.
fn apply_transform(model: &mut TypedModel, name: &str, what: &str) -> Result<()> {
    tract_onnx::tract_core::transform::get_transform(name)?
        .with_context(|| format!("this tract has no {name} transform"))?
        .transform(model)
        .with_context(|| format!("cannot {what}"))
}
