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

/// Whether a folder's entry is hidden (its name starts with a dot), and so
/// not footage: copying frames from a Mac leaves an AppleDouble `._NAME.jpg`
/// beside each, which counted as an undecodable frame and, by breaking the
/// folder's name clock, moved every frame onto the 60-s default spacing.
pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn has_extension(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The image files directly inside `dir`, in [`natural_order`], hidden ones
/// left out ([`is_hidden`]).
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
        if path.is_file() && is_image(&path) && !is_hidden(&path) {
            files.push(path);
        }
    }
    files.sort_by(|a, b| natural_order(a, b));
    Ok(files)
}

/// Paths by name, with runs of digits compared as numbers: `frame_9.jpg`
/// before `frame_10.jpg`, as a camera that does not pad its counter means
/// them (plain string order put frame_10 to frame_17 between frame_1 and
/// frame_2, and replayed the footage out of order). Zero-padded and
/// timestamped names keep their order.
pub fn natural_order(a_path: &Path, b_path: &Path) -> std::cmp::Ordering {
    let (a, b) = (a_path.to_string_lossy(), b_path.to_string_lossy());
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => {
                return a
                    .cmp(&b)
                    .then_with(|| a_path.as_os_str().cmp(b_path.as_os_str()))
            }
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (m, n) = (run(x), run(y));
                let strip = |s: &[u8]| {
                    let zeros = s.iter().take_while(|&&c| c == b'0').count();
                    s[zeros.min(s.len() - 1)..].to_vec()
                };
                let (u, v) = (strip(&x[..m]), strip(&y[..n]));
                let order = u.len().cmp(&v.len()).then_with(|| u.cmp(&v));
                if order.is_ne() {
                    return order;
                }
                (x, y) = (&x[m..], &y[n..]);
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
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
         or extract frames with `mkdir frames && ffmpeg -i VIDEO -vf fps=1 frames/frame_%05d.jpg` and replay the folder with `--interval 1`",
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
///
/// A JPEG ends at its end-of-image marker, found by walking its segments
/// ([`jpeg_end`]); what follows it is not part of the picture. A V4L2
/// camera's MJPEG frame comes in the driver's whole buffer (nokhwa hands
/// over the buffer, not the bytes the frame used: about 200 KB of JPEG in a
/// `width x height x 2` buffer, the rest zeros or an older frame's tail), and
/// some cameras and phones append data to their files. Where the walk finds
/// no end, an end-of-image marker in the last 64 bytes still counts.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let tail = &bytes[bytes.len().saturating_sub(64)..];
        let end = jpeg_end(bytes)
            .or_else(|| {
                tail.windows(2)
                    .any(|w| w == [0xFF, 0xD9])
                    .then_some(bytes.len())
            })
            .context("truncated JPEG: no end-of-image marker")?;
        return decode_jpeg(&bytes[..end]);
    }
    decode_other(bytes)
}

/// Where a JPEG's end-of-image marker ends: found by stepping over each
/// segment by its length and, after a start of scan, over the entropy-coded
/// data, in which a 0xFF byte is always followed by a stuffed 0x00 or a
/// restart marker (so an end marker inside a thumbnail segment, or after the
/// end in a buffer's stale bytes, is never taken for this one). `None` when
/// the walk runs off the end or meets something that is not a marker.
fn jpeg_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 2; // after the start-of-image marker
    loop {
        if *bytes.get(i)? != 0xFF {
            return None;
        }
        while *bytes.get(i)? == 0xFF {
            i += 1; // fill bytes before a marker's code
        }
        let code = bytes[i];
        i += 1;
        match code {
            0xD9 => return Some(i),
            0x01 | 0xD0..=0xD7 => continue, // markers without a length
            0x00 => return None,
            _ => {
                let len = usize::from(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
                if len < 2 {
                    return None;
                }
                i += len;
                if code == 0xDA {
                    // Entropy-coded data, up to the next marker.
                    loop {
                        i += bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
                        match *bytes.get(i + 1)? {
                            0x00 | 0xD0..=0xD7 => i += 2,
                            _ => break,
                        }
                    }
                }
            }
        }
    }
}

/// Decodes a PNG (or a CMYK JPEG) with `image`, held to the same size as a
/// JPEG: the header is read first, and the decoder may not allocate more than
/// `MAX_FRAME_BYTES` (a 16-bit RGBA 4K frame is 66 MB), where `image`'s
/// default let one PNG header ask for 512 MiB.
fn decode_other(bytes: &[u8]) -> Result<RgbImage> {
    let reader = || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format();
    let (width, height) = reader()?.into_dimensions()?;
    if (width as usize)
        .saturating_mul(height as usize)
        .saturating_mul(3)
        > MAX_FRAME_BYTES
    {
        bail!("{width}x{height} is larger than any camera frame");
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_FRAME_BYTES as u64);
    let mut reader = reader()?;
    reader.limits(limits);
    Ok(reader.decode()?.into_rgb8())
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
        Ok(Ok(None)) => decode_other(bytes),
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

/// Whether a time read from a file name can be one: from 2000 up to a day
/// from now, as footage is never from the future (a counter, or a short
/// `YYMMDDhhmm` stamp such as `2509161430`, reads as a unix time in 2049).
/// The upper bound is never before 2027, so that a machine whose clock has
/// not been set (a Pi without its clock battery, before network time) still
/// reads this decade's footage.
fn plausible(t: f64) -> bool {
    const Y2000: f64 = 946_684_800.0;
    const Y2027: f64 = 1_798_761_600.0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (Y2000..=(now + 86_400.0).max(Y2027)).contains(&t)
}

/// The time a still's file name says it was taken, in unix seconds. Camera
/// archives and FTP uploads name frames by it: a leading unix time
/// (`1465063200_-02400.jpg` in FIgLib, `1546362010.jpg` in HPWREN's archive;
/// 13 digits are milliseconds), or a calendar date and time anywhere in the
/// name (`20260916_143000.jpg`, `cam1_2026-09-16T14-30-00.jpg`,
/// `..._20260916143000123_...` with milliseconds), read as UTC. `None` for a
/// name that gives no time, such as `frame_0001.jpg`, or a time before 2000
/// or in the future.
pub fn time_from_name(name: &str) -> Option<f64> {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let bytes = stem.as_bytes();
    // Maximal runs of digits, as (start, end) byte offsets.
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    let digits = |(start, end): (usize, usize)| &stem[start..end];
    if let Some(&(0, end)) = runs.first() {
        // Ten digits that are also a date and hour (`2025091614`, an hourly
        // archive's name) are not read as a unix time.
        let hourly =
            end == 10 && calendar_time(&format!("{}0000", &stem[..end])).is_some_and(plausible);
        let unix = match end {
            10 if !hourly => stem[..end].parse::<f64>().ok(),
            13 => stem[..end].parse::<f64>().ok().map(|ms| ms / 1000.0),
            _ => None,
        };
        if let Some(t) = unix.filter(|t| plausible(*t)) {
            return Some(t);
        }
    }
    // Runs `k - 1` and `k` from `at` are parts of one stamp when a single
    // separator stands between them.
    let joined = |at: usize, k: usize| {
        let (Some(a), Some(b)) = (runs.get(at + k - 1), runs.get(at + k)) else {
            return false;
        };
        b.0 == a.1 + 1 && b"-_T :.".contains(&bytes[a.1])
    };
    for at in 0..runs.len() {
        let run = |k: usize| runs.get(at + k).map(|&r| digits(r)).unwrap_or("");
        let lens: Vec<usize> = (0..7).map(|k| run(k).len()).collect();
        // Year, month, day, hour, minute, second, milliseconds.
        let fields: String = match lens[..] {
            [14 | 17, ..] => run(0).to_string(),
            [8, 6 | 9, ..] if joined(at, 1) => format!("{}{}", run(0), run(1)),
            [4, 2, 2, 2, 2, 2, n] if (1..=5).all(|k| joined(at, k)) => {
                let ms = if n == 3 && joined(at, 6) { run(6) } else { "" };
                format!(
                    "{}{}{}{}{}{}{ms}",
                    run(0),
                    run(1),
                    run(2),
                    run(3),
                    run(4),
                    run(5)
                )
            }
            _ => continue,
        };
        if let Some(t) = calendar_time(&fields).filter(|t| plausible(*t)) {
            return Some(t);
        }
    }
    None
}

/// `YYYYMMDDHHMMSS`, optionally followed by 3 digits of milliseconds, as
/// unix seconds (UTC); `None` when it is no real date and time.
fn calendar_time(fields: &str) -> Option<f64> {
    use time::{Date, Month, PrimitiveDateTime, Time};
    let num = |from: usize, to: usize| fields.get(from..to)?.parse::<u16>().ok();
    let month = Month::try_from(num(4, 6)? as u8).ok()?;
    let date = Date::from_calendar_date(i32::from(num(0, 4)?), month, num(6, 8)? as u8).ok()?;
    let time = Time::from_hms(num(8, 10)? as u8, num(10, 12)? as u8, num(12, 14)? as u8).ok()?;
    let ms = if fields.len() == 17 {
        f64::from(num(14, 17)?) / 1000.0
    } else {
        0.0
    };
    let seconds = PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp();
    Some(seconds as f64 + ms)
}

/// The times of a folder of stills timed by their file names.
#[derive(Debug, PartialEq)]
pub struct NamedTimes {
    /// One per frame, in order, each later than the one before.
    pub times: Vec<f64>,
    /// The frames whose names gave no time, or one out of order with the
    /// others (a stray `latest.jpg`, a burst's `_1` in the same second):
    /// timed evenly between the frames around them, or `interval_s` apart
    /// before the first and after the last frame that gave one.
    pub guessed: Vec<String>,
}

/// The times the file names of `paths` give, when more than half of them
/// give one in order (rising with the frames); otherwise why not. One stray name
/// put every frame on the default spacing, dated 1970, where the rest of the
/// folder gave the camera's own clock.
pub fn times_from_names(paths: &[PathBuf], interval_s: f64) -> Result<NamedTimes, String> {
    let parsed: Vec<Option<f64>> = paths
        .iter()
        .map(|p| time_from_name(&frame_name(p)))
        .collect();
    // The longest run of names whose times rise in frame order is the
    // camera's clock; the rest are guessed. Taking each name later than the
    // last one taken instead let one name far ahead (a clock set back after
    // it) make every frame after it a guess.
    let mut tails: Vec<usize> = Vec::new();
    let mut before: Vec<Option<usize>> = vec![None; paths.len()];
    for (i, t) in parsed.iter().enumerate() {
        let Some(t) = *t else { continue };
        let length = tails.partition_point(|&k| parsed[k].is_some_and(|tk| tk < t));
        before[i] = length.checked_sub(1).map(|l| tails[l]);
        match tails.get_mut(length) {
            // The same time again (a burst in one second): the first keeps it.
            Some(tail) if parsed[*tail] == Some(t) => {}
            Some(tail) => *tail = i,
            None => tails.push(i),
        }
    }
    let mut kept = vec![false; paths.len()];
    let mut at = tails.last().copied();
    while let Some(i) = at {
        kept[i] = true;
        at = before[i];
    }
    let named: Vec<Option<f64>> = parsed
        .iter()
        .zip(&kept)
        .map(|(t, &kept)| t.filter(|_| kept))
        .collect();
    let guessed: Vec<String> = paths
        .iter()
        .zip(&named)
        .filter(|(_, t)| t.is_none())
        .map(|(p, _)| frame_name(p))
        .collect();
    if guessed.len() * 2 >= paths.len() {
        return Err(match guessed.first() {
            Some(first) => format!(
                "{} of {} names give no time, or one out of order with the others (the first: {first}; a time before 2000 or in the future counts as none)",
                guessed.len(),
                paths.len()
            ),
            None => "no frames".into(),
        });
    }
    let known: Vec<(usize, f64)> = named
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i, t)))
        .collect();
    let times = (0..paths.len())
        .map(|i| {
            if let Some(t) = named[i] {
                return t;
            }
            // The frames that gave a time on either side of frame i.
            let after = known.partition_point(|&(k, _)| k < i);
            match (after.checked_sub(1).map(|b| known[b]), known.get(after)) {
                (Some((b, tb)), Some(&(a, ta))) => tb + (ta - tb) * (i - b) as f64 / (a - b) as f64,
                (Some((b, tb)), None) => tb + interval_s * (i - b) as f64,
                (None, Some(&(a, ta))) => ta - interval_s * (a - i) as f64,
                (None, None) => unreachable!("more than half the frames gave a time"),
            }
        })
        .collect();
    Ok(NamedTimes { times, guessed })
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
    fn a_frame_name_gives_the_time_it_was_taken() {
        // FIgLib and HPWREN's archive: a leading unix time.
        assert_eq!(
            time_from_name("1465063200_-02400.jpg"),
            Some(1_465_063_200.0)
        );
        assert_eq!(time_from_name("1546362010.jpg"), Some(1_546_362_010.0));
        assert_eq!(time_from_name("1546362010123.jpg"), Some(1_546_362_010.123));
        // Calendar stamps, anywhere in the name, read as UTC.
        let t = 1_758_033_000.0; // 2025-09-16 14:30:00 UTC
        for name in [
            "20250916_143000.jpg",
            "frame_20250916T143000.jpg",
            "20250916143000.jpg",
            "cam1_2025-09-16_14-30-00.jpg",
            "tower 2025-09-16 14:30:00.png",
        ] {
            assert_eq!(time_from_name(name), Some(t), "{name}");
        }
        assert_eq!(
            time_from_name("192.168.1.64_01_20250916143000250_MOTION.jpg"),
            Some(t + 0.25)
        );
        assert_eq!(
            time_from_name("2025-09-16T14-30-00.120.jpg"),
            Some(t + 0.12)
        );
        // Names that give no time: counters, serials, impossible dates, an
        // hourly `YYYYMMDDHH` stamp (as unix time, 2034), times before 2000
        // or in the future.
        for name in [
            "2025091614.jpg",
            "3025091614.jpg",
            "frame_0001.jpg",
            "0000000042.jpg",
            "image_00038.jpg",
            "20251316_143000.jpg",
            "20250916_250000.jpg",
            "9999999999.jpg",
            "20250916.jpg",
        ] {
            assert_eq!(time_from_name(name), None, "{name}");
        }
    }

    #[test]
    fn a_folder_is_timed_by_its_names_when_most_give_a_later_time() {
        let paths = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(PathBuf::from).collect() };
        let times = |names: &[&str]| times_from_names(&paths(names), 60.0);
        assert_eq!(
            times(&["1700000000.jpg", "1700000010.jpg", "1700000070.jpg"]),
            Ok(NamedTimes {
                times: vec![1_700_000_000.0, 1_700_000_010.0, 1_700_000_070.0],
                guessed: vec![],
            })
        );
        // A stray name at the end, a burst's second frame in the same
        // second, one named far ahead of its neighbours (a clock set back
        // after it): timed around them.
        assert_eq!(
            times(&[
                "20250916_143000.jpg",
                "20250916_143000_1.jpg",
                "20250916_143030.jpg",
                "20250916_183000.jpg",
                "20250916_143100.jpg",
                "20250916_143130.jpg",
                "20250916_143200.jpg",
                "latest.jpg",
            ]),
            Ok(NamedTimes {
                times: [0.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0]
                    .map(|s| 1_758_033_000.0 + s)
                    .to_vec(),
                guessed: vec![
                    "20250916_143000_1.jpg".into(),
                    "20250916_183000.jpg".into(),
                    "latest.jpg".into()
                ],
            })
        );
        // Before the first name that gives a time: interval_s apart.
        assert_eq!(
            times(&["first.jpg", "1700000000.jpg", "1700000010.jpg"])
                .unwrap()
                .times,
            vec![1_699_999_940.0, 1_700_000_000.0, 1_700_000_010.0]
        );
        // Half or more without a time: not a folder named by time.
        let err = times(&["1700000000.jpg", "frame_0001.jpg"]).unwrap_err();
        assert!(
            err.contains("1 of 2") && err.contains("frame_0001.jpg"),
            "{err}"
        );
        let err = times(&["1700000010.jpg", "20000101_000000.jpg"]).unwrap_err();
        assert!(err.contains("1 of 2"), "{err}");
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
    fn a_png_header_larger_than_any_camera_frame_is_refused_before_decoding() {
        // A 1x1 PNG whose header (IHDR, with its CRC made good) claims 8000x8000.
        let mut png = Vec::new();
        image::RgbImage::new(1, 1)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let ihdr = 12; // 8-byte signature, 4-byte chunk length
        assert_eq!(&png[ihdr..ihdr + 4], b"IHDR");
        png[ihdr + 4..ihdr + 8].copy_from_slice(&8000u32.to_be_bytes());
        png[ihdr + 8..ihdr + 12].copy_from_slice(&8000u32.to_be_bytes());
        let crc = crc32(&png[ihdr..ihdr + 17]);
        png[ihdr + 17..ihdr + 21].copy_from_slice(&crc.to_be_bytes());
        let error = match decode_bytes(&png) {
            Ok(frame) => panic!("decoded to {:?}", frame.dimensions()),
            Err(e) => e,
        };
        assert!(
            format!("{error:#}").contains("8000x8000 is larger than any camera frame"),
            "{error:#}"
        );
        // Within the limit, a PNG still decodes.
        let mut small = Vec::new();
        image::RgbImage::from_pixel(5, 3, image::Rgb([9, 8, 7]))
            .write_to(
                &mut std::io::Cursor::new(&mut small),
                image::ImageFormat::Png,
            )
            .unwrap();
        assert_eq!(decode_bytes(&small).unwrap().get_pixel(4, 2).0, [9, 8, 7]);
    }

    /// PNG's chunk CRC (ISO 3309), bit by bit.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
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

    #[test]
    fn a_folder_lists_its_images_but_not_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "1758033040.jpg",
            "._1758033040.jpg",
            "1758033050.JPG",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.jpg")).unwrap();
        let names: Vec<String> = images_in(dir.path())
            .unwrap()
            .iter()
            .map(|p| frame_name(p))
            .collect();
        assert_eq!(names, ["1758033040.jpg", "1758033050.JPG"]);
    }

    #[test]
    fn frames_are_in_the_order_their_numbers_say() {
        let mut names: Vec<PathBuf> = [
            "frame_10.jpg",
            "frame_2.jpg",
            "frame_1.jpg",
            "frame_0003.jpg",
            "frame_11.jpg",
            "1465063260_-02340.jpg",
            "1465063200_-02400.jpg",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        names.sort_by(|a, b| natural_order(a, b));
        let names: Vec<&str> = names.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "1465063200_-02400.jpg",
                "1465063260_-02340.jpg",
                "frame_1.jpg",
                "frame_2.jpg",
                "frame_0003.jpg",
                "frame_10.jpg",
                "frame_11.jpg"
            ]
        );
        // Padded names keep their plain order; equal numbers fall back to it.
        let (a, b) = (Path::new("frame_0009.jpg"), Path::new("frame_0010.jpg"));
        assert!(natural_order(a, b).is_lt());
        let (a, b) = (Path::new("frame_01.jpg"), Path::new("frame_1.jpg"));
        assert!(natural_order(a, b).is_lt());
    }

    #[test]
    fn a_jpeg_in_a_capture_buffer_ends_at_its_end_marker() {
        // What nokhwa hands over for a V4L2 MJPEG frame: the whole driver
        // buffer, the frame first, then zeros or the tail of an older,
        // longer frame (end marker included).
        let jpeg = grey_jpeg();
        let expected = decode_bytes(&jpeg).unwrap();
        assert_eq!(jpeg_end(&jpeg), Some(jpeg.len()));
        let mut zeros = jpeg.clone();
        zeros.resize(37 * 21 * 2 + 4096, 0);
        assert_eq!(decode_bytes(&zeros).unwrap(), expected);
        let mut stale = jpeg.clone();
        stale.extend_from_slice(&[0x5A; 3000]);
        stale.extend_from_slice(&grey_jpeg()[100..]);
        assert_eq!(decode_bytes(&stale).unwrap(), expected);
        // A frame cut short in such a buffer is still truncated.
        let mut cut = jpeg[..jpeg.len() / 2].to_vec();
        cut.extend_from_slice(&[0; 2000]);
        let err = decode_bytes(&cut).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
