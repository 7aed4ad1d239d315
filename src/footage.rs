//! Recorded footage: frames read back in order for replay and `classify`.
//!
//! Footage is a folder of still images taken in name order, or a video file
//! (with the `video` feature, see `video.rs`). Frames are decoded one at a
//! time as they are read; a frame that cannot be decoded comes back as an
//! error and the caller decides (replay skips it with a warning).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::RgbImage;

/// File extensions read as still frames.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// File extensions recognised as video.
pub const VIDEO_EXTENSIONS: [&str; 3] = ["mp4", "mkv", "avi"];

pub fn is_image(path: &Path) -> bool {
    has_extension(path, &IMAGE_EXTENSIONS)
}

fn has_extension(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The image files directly inside `dir`, sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot list {}: check the path and its permissions",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.is_file() && is_image(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One frame read from footage.
pub struct FootageFrame {
    /// File name for stills; `frame_NNNNNN` (decoded-frame index) for video.
    pub name: String,
    /// Seconds from the start of the footage, where the footage says (video).
    pub offset_s: Option<f64>,
    /// The decoded frame, or why it could not be decoded.
    pub image: Result<RgbImage>,
}

/// Recorded footage: a folder of stills or a video file.
pub enum Footage {
    Stills(Vec<PathBuf>),
    Video(PathBuf),
}

impl Footage {
    /// Opens a folder of frames or a video; says what to do when `path` is not usable.
    pub fn open(path: &Path) -> Result<Footage> {
        if !path.exists() {
            bail!(
                "{} does not exist: give a folder of frames (JPEG or PNG) or a video (MP4, MKV, AVI)",
                path.display()
            );
        }
        if path.is_file() {
            if has_extension(path, &VIDEO_EXTENSIONS) {
                return Ok(Footage::Video(path.to_path_buf()));
            }
            bail!(
                "{} is not a folder of frames or a video: replay takes a folder of JPEG or PNG frames, \
                 or an .mp4, .mkv or .avi file",
                path.display()
            );
        }
        let frames = images_in(path)?;
        if frames.is_empty() {
            bail!("{} holds no .jpg, .jpeg or .png frames", path.display());
        }
        Ok(Footage::Stills(frames))
    }

    /// The number of frames, where known before decoding.
    pub fn len_hint(&self) -> Option<usize> {
        match self {
            Footage::Stills(frames) => Some(frames.len()),
            Footage::Video(_) => None,
        }
    }

    /// The frames in order. Video is sampled every `sample_interval_s` seconds
    /// of footage time.
    pub fn frames(
        &self,
        sample_interval_s: f64,
    ) -> Result<Box<dyn Iterator<Item = FootageFrame> + '_>> {
        match self {
            Footage::Stills(paths) => Ok(Box::new(paths.iter().map(|path| FootageFrame {
                name: frame_name(path),
                offset_s: None,
                image: decode(path),
            }))),
            Footage::Video(path) => open_video(path, sample_interval_s),
        }
    }
}

#[cfg(feature = "video")]
fn open_video(
    path: &Path,
    sample_interval_s: f64,
) -> Result<Box<dyn Iterator<Item = FootageFrame>>> {
    Ok(Box::new(crate::video::VideoFrames::open(
        path,
        sample_interval_s,
    )?))
}

#[cfg(not(feature = "video"))]
fn open_video(
    path: &Path,
    _sample_interval_s: f64,
) -> Result<Box<dyn Iterator<Item = FootageFrame>>> {
    bail!(
        "{} is a video, and this build has no video support: rebuild with `--features video` \
         (after `apt-get install libavformat-dev libavcodec-dev libswscale-dev libclang-dev pkg-config`), \
         or extract frames with `ffmpeg -i VIDEO -vf fps=1 frames/frame_%05d.jpg` and replay the folder",
        path.display()
    )
}

/// Decodes one still image to RGB8, saying which file failed and why.
pub fn decode(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_bytes(&bytes).with_context(|| format!("cannot decode {}", path.display()))
}

/// Decodes an in-memory JPEG or PNG to RGB8. A JPEG cut short (no end-of-image
/// marker) is an error even though the decoder would fill in the missing rows:
/// half a frame of grey must not be scored as a real view.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let tail = &bytes[bytes.len().saturating_sub(64)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            bail!("truncated JPEG: no end-of-image marker");
        }
    }
    let img = image::load_from_memory(bytes)?;
    Ok(img.into_rgb8())
}

/// The file name of `path`, for labels and reports.
pub fn frame_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
