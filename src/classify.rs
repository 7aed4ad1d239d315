//! `wildfire-watch classify`: score still images one by one.
//!
//! This module owns finding the images under the given paths and the shape of
//! one result; the CLI prints results as JSON lines or as a table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::detector::{Detector, ViewScore};
use crate::footage::{decode, is_hidden, is_image};
use crate::model::Class;

/// The result for one image, as printed by `classify --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Classification {
    pub path: String,
    pub smoke: f32,
    pub flame: f32,
    pub smoke_alarm: bool,
    pub flame_alarm: bool,
    /// Every view: the whole frame first, then the native-scale tiles.
    pub tiles: Vec<ViewScore>,
}

/// Expands files and folders (recursively, in name order) into image files.
/// A path that does not exist is an error; so is an explicit file that is
/// not a JPEG or PNG.
pub fn collect_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out)?;
        } else if path.is_file() {
            if !is_image(path) {
                bail!("{} is not a .jpg, .jpeg or .png image", path.display());
            }
            out.push(path.clone());
        } else {
            bail!(
                "{} does not exist: give image files or folders of images",
                path.display()
            );
        }
    }
    if out.is_empty() {
        bail!(
            "no .jpg, .jpeg or .png image in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort_by(|a, b| crate::footage::natural_order(a, b));
    for path in entries.into_iter().filter(|p| !is_hidden(p)) {
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Classifies one image file.
pub fn classify(detector: &mut Detector, path: &Path) -> Result<Classification> {
    let image = decode(path)?;
    let scores = detector.detect(&image, None)?;
    let thresholds = detector.info().thresholds;
    let smoke = scores.max(Class::Smoke);
    let flame = scores.max(Class::Flame);
    Ok(Classification {
        path: path.display().to_string(),
        smoke,
        flame,
        smoke_alarm: smoke >= thresholds.smoke,
        flame_alarm: flame >= thresholds.flame,
        tiles: scores.views,
    })
}
