//! Recorded footage: frames read back in order for replay and `classify`,
//! and the one JPEG/PNG decoder that every frame goes through (footage,
//! snapshot cameras, MJPEG capture, the golden tests).
//!
//! Footage is a folder of still images taken in name order, or a video file
//! (with the `video` feature, see `video.rs`). Frames are decoded one at a
//! time as they are read; a frame that cannot be decoded comes back as an
//! error and the caller decides (replay skips it with a warning).
//!
//! JPEGs are decoded by libjpeg-turbo's code (through the `mozjpeg` crate),
//! not by `image`'s pure-Rust decoder, because training reads its JPEGs with
//! Pillow, which is libjpeg-turbo too: with the same integer IDCT, the same
//! "fancy" chroma upsampling and the same colour conversion, the model scores
//! the very pixels it was trained on. Over 1,178 real frames (all 716 tower
//! frames, 300 web photos, all 162 frames of the 1600 px sequences) this
//! decoder equals Pillow in every channel value, where `image` (zune-jpeg
//! 0.5.15) differed in 5-10 % of them, by up to 9 levels, and moved tile
//! scores by up to 0.2 (models/README.md, Decoding). Most of that was chroma
//! upsampling of 4:2:0 frames: zune-jpeg rounds the vertical pass to 8 bits
//! before the horizontal one, libjpeg keeps the column sums; its stb-style
//! IDCT adds +-1 in 0.5 % of values. `fixtures/golden/camera_500x300.jpg`
//! holds both sides to this (tests/golden.rs). Cost, in CPU time per 1080p
//! frame: 6.3 ms with libjpeg-turbo's SIMD (NEON on aarch64; on x86-64 when
//! `nasm` is installed at build time), 15 ms in plain C, zune-jpeg 7.5 ms.

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
        return decode_jpeg(bytes);
    }
    let img = image::load_from_memory(bytes)?;
    Ok(img.into_rgb8())
}

/// The largest frame decoded, in bytes of RGB8, so a corrupt or hostile
/// header cannot ask for more memory than the board has: 128 MiB holds an 8K
/// frame (7680x4320, 99.5 MB) and more than ten times the 3072x2048 of the
/// largest tower cameras, while `image`'s default limit (512 MiB), used
/// before, let one header take half of a 1 GB Pi's memory.
pub const MAX_FRAME_BYTES: usize = 128 << 20;

/// Decodes a JPEG as Pillow does (see the top of this file): libjpeg-turbo
/// with its defaults (integer IDCT, fancy upsampling), converted to RGB by
/// libjpeg itself. libjpeg reports a fatal error by unwinding out of its C
/// code (the `mozjpeg` crate's design), which is caught here and returned as
/// an error. CMYK and YCCK JPEGs, which no camera sends, go to `image`:
/// libjpeg has no conversion of them to RGB.
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    use mozjpeg::{ColorSpace, Decompress};
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<Option<RgbImage>> {
        let header = Decompress::new_mem(bytes)?;
        if matches!(
            header.color_space(),
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
        ) {
            return Ok(None);
        }
        let (width, height) = header.size();
        if width.saturating_mul(height).saturating_mul(3) > MAX_FRAME_BYTES {
            return Err(std::io::Error::other(format!(
                "{width}x{height} is larger than any camera frame"
            )));
        }
        let mut started = header.rgb()?;
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        Ok(RgbImage::from_raw(width as u32, height as u32, pixels))
    });
    match decoded {
        Ok(Ok(Some(image))) => Ok(image),
        Ok(Ok(None)) => Ok(image::load_from_memory(bytes)?.into_rgb8()),
        Ok(Err(e)) => Err(e.into()),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg fatal error");
            bail!("{why}")
        }
    }
}

/// The file name of `path`, for labels and reports.
pub fn frame_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, GrayImage, Luma};

    fn grey_jpeg() -> Vec<u8> {
        let grey = GrayImage::from_fn(37, 21, |x, y| Luma([(x * 6 + y * 3) as u8]));
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode(grey.as_raw(), 37, 21, ExtendedColorType::L8)
            .unwrap();
        jpeg
    }

    /// The frame size in the JPEG's start-of-frame header, patched.
    fn claiming(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline SOF0 marker");
        jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        jpeg
    }

    #[test]
    fn a_header_larger_than_any_camera_frame_is_refused_before_decoding() {
        let error = match decode_bytes(&claiming(grey_jpeg(), 8000, 8000)) {
            Ok(frame) => panic!("decoded to {:?}", frame.dimensions()),
            Err(e) => e,
        };
        assert!(
            format!("{error:#}").contains("8000x8000 is larger than any camera frame"),
            "{error:#}"
        );
    }

    #[test]
    fn a_greyscale_jpeg_comes_back_as_equal_rgb_channels() {
        let rgb = decode_bytes(&grey_jpeg()).unwrap();
        assert_eq!(rgb.dimensions(), (37, 21));
        assert!(rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    }

    #[test]
    fn a_corrupt_jpeg_is_an_error_not_a_crash() {
        // libjpeg's fatal error unwinds out of its C code; it must come back
        // as an error like any other undecodable frame.
        let mut jpeg = grey_jpeg();
        for b in &mut jpeg[2..40] {
            *b = 0xFF;
        }
        let err = decode_bytes(&jpeg).unwrap_err().to_string();
        assert!(err.contains("libjpeg"), "{err}");
        let mut cut = grey_jpeg();
        cut.truncate(cut.len() / 2);
        let err = decode_bytes(&cut).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
