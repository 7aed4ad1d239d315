//! Video footage (MP4, MKV, AVI) decoded through libav (`ffmpeg-next`).
//!
//! libav handles H.264 High profile with B-frames: frames come out of the
//! decoder in presentation order with their own timestamps, which become the
//! replay clock. Frames are sampled every `sample_interval_s` of footage time
//! so that a 25 fps recording is not scored 25 times a second. A packet or
//! frame the decoder rejects is yielded as an error (replay counts it as
//! skipped) and decoding goes on.
//!
//! [`start_libav`] is the one way into libav for this crate (the RTSP camera
//! uses it too): it silences libav's own logging, which would otherwise
//! print stray lines such as `[mov @ 0x...] error reading header` (and, for
//! RTSP, the camera address with its credentials) beside our one-line
//! errors, which already carry libav's reason.

use std::collections::VecDeque;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::software::scaling::{context::Context as Scaler, flag::Flags};
use ffmpeg::util::frame::video::Video;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::footage::FootageFrame;

pub struct VideoFrames {
    input: ffmpeg::format::context::Input,
    stream: usize,
    time_base: f64,
    decoder: ffmpeg::decoder::Video,
    converter: RgbConverter,
    sample_interval_s: f64,
    /// Seconds between frames by the stream's frame rate, if it gives one:
    /// the time of a frame without a timestamp (a raw `.h264`).
    frame_s: Option<f64>,
    next_sample_s: f64,
    decoded: usize,
    pending: VecDeque<FootageFrame>,
    eof_sent: bool,
    first_pts: Option<i64>,
}

/// Initialises libav once per call site (cheap to repeat) with its logging off.
pub fn start_libav() -> Result<()> {
    ffmpeg::init().map_err(|e| anyhow!("cannot start libav: {e}"))?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
    Ok(())
}

impl VideoFrames {
    pub fn open(path: &Path, sample_interval_s: f64) -> Result<VideoFrames> {
        start_libav()?;
        let input = ffmpeg::format::input(path)
            .map_err(|e| anyhow!("cannot open video {}: {e}", path.display()))?;
        let stream = input
            .streams()
            .best(Type::Video)
            .with_context(|| format!("{} has no video stream", path.display()))?;
        let index = stream.index();
        let rate = stream.avg_frame_rate();
        let frame_s = (rate.numerator() > 0 && rate.denominator() > 0)
            .then(|| f64::from(rate.denominator()) / f64::from(rate.numerator()));
        let tb = stream.time_base();
        let time_base = f64::from(tb.numerator()) / f64::from(tb.denominator().max(1));
        let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| anyhow!("cannot read the codec of {}: {e}", path.display()))?;
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| anyhow!("no decoder for the video in {}: {e}", path.display()))?;
        Ok(VideoFrames {
            input,
            stream: index,
            time_base,
            decoder,
            converter: RgbConverter::default(),
            sample_interval_s,
            frame_s,
            next_sample_s: 0.0,
            decoded: 0,
            pending: VecDeque::new(),
            eof_sent: false,
            first_pts: None,
        })
    }

    /// Moves every frame the decoder has ready into `pending`, keeping samples.
    fn drain_decoder(&mut self) {
        let mut frame = Video::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            let index = self.decoded;
            self.decoded += 1;
            let pts = frame.timestamp().or(frame.pts());
            let offset = match pts {
                Some(pts) => {
                    let first = *self.first_pts.get_or_insert(pts);
                    (pts - first) as f64 * self.time_base
                }
                // Spaced by the frame rate: spaced by the sample interval,
                // every frame of a 5-fps raw stream was a sample a second
                // apart, and its clock ran 5 times too slow.
                None => index as f64 * self.frame_s.unwrap_or(self.sample_interval_s),
            };
            if offset + 1e-6 < self.next_sample_s {
                continue;
            }
            self.next_sample_s = offset + self.sample_interval_s;
            let image = self.converter.convert(&frame);
            self.pending.push_back(FootageFrame {
                name: format!("frame_{index:06}"),
                offset_s: Some(offset),
                image,
            });
        }
    }
}

/// Converts decoded frames of any pixel format to RGB8, keeping the scaler
/// while the format and size stay the same. Replay and RTSP cameras share it.
#[derive(Default)]
pub struct RgbConverter {
    scaler: Option<(Scaler, Pixel, u32, u32)>,
}

impl RgbConverter {
    pub fn convert(&mut self, frame: &Video) -> Result<RgbImage> {
        let (format, w, h) = (frame.format(), frame.width(), frame.height());
        let rebuild =
            !matches!(&self.scaler, Some((_, f, sw, sh)) if *f == format && *sw == w && *sh == h);
        if rebuild {
            let scaler = Scaler::get(format, w, h, Pixel::RGB24, w, h, Flags::BILINEAR)
                .map_err(|e| anyhow!("cannot convert {format:?} {w}x{h} frames to RGB: {e}"))?;
            self.scaler = Some((scaler, format, w, h));
        }
        let (scaler, ..) = self.scaler.as_mut().expect("scaler was just built");
        let mut rgb = Video::empty();
        scaler
            .run(frame, &mut rgb)
            .map_err(|e| anyhow!("cannot convert a frame to RGB: {e}"))?;
        // libav pads rows; copy them out tightly.
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let row = w as usize * 3;
        let mut pixels = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            pixels.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        RgbImage::from_raw(w, h, pixels).context("frame buffer has the wrong size")
    }
}

/// A stream's next packet (`read` is `Packet::read` on it), or `None` at
/// its end. "Not now" (`EAGAIN`) is tried again after 10 ms, until
/// `deadline` where there is one (an RTSP grab's); any other error ends the
/// reading, as the `ffmpeg` tool ends an input. ffmpeg-next's own iterator (`Input::packets`) tries again after
/// any error but the end, at once and for ever: an error that repeats (a
/// connection reset, or libav's interrupt answering every read past the
/// deadline) would spin the grab's thread at full speed for good, and with
/// one grab in flight per camera, leave the camera offline until a restart;
/// a replay of a file on a disk failing under it would never end.
pub fn read_packet(
    mut read: impl FnMut(&mut ffmpeg::Packet) -> Result<(), ffmpeg::Error>,
    deadline: Option<std::time::Instant>,
) -> Result<Option<ffmpeg::Packet>, ffmpeg::Error> {
    let not_now = ffmpeg::Error::Other {
        errno: ffmpeg::error::EAGAIN,
    };
    loop {
        let mut packet = ffmpeg::Packet::empty();
        match read(&mut packet) {
            Ok(()) => return Ok(Some(packet)),
            Err(ffmpeg::Error::Eof) => return Ok(None),
            Err(e) if e == not_now && deadline.is_none_or(|d| std::time::Instant::now() < d) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Iterator for VideoFrames {
    type Item = FootageFrame;

    fn next(&mut self) -> Option<FootageFrame> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.eof_sent {
                return None;
            }
            let input = &mut self.input;
            let (next, error) = match read_packet(|packet| packet.read(input), None) {
                Ok(next) => (next, None),
                // Read as the end, then said: what was decoded still counts.
                Err(e) => (None, Some(e)),
            };
            match next {
                Some(packet) => {
                    if packet.stream() != self.stream {
                        continue;
                    }
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        self.pending.push_back(FootageFrame {
                            name: format!("packet_at_{}", packet.pts().unwrap_or(-1)),
                            offset_s: None,
                            image: Err(anyhow!("the decoder rejected a packet: {e}")),
                        });
                    }
                    self.drain_decoder();
                }
                None => {
                    self.eof_sent = true;
                    let _ = self.decoder.send_eof();
                    self.drain_decoder();
                    if let Some(e) = error {
                        self.pending.push_back(FootageFrame {
                            name: "read_error".into(),
                            offset_s: None,
                            image: Err(anyhow!("cannot read the video further: {e}")),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_error_ends_the_stream_where_ffmpeg_nexts_iterator_tried_again_for_ever() {
        let far = None;
        // An error that repeats: one read, and the grab ends with it.
        let mut reads = 0;
        let read = read_packet(
            |_| {
                reads += 1;
                Err(ffmpeg::Error::Exit)
            },
            far,
        );
        assert!(matches!(read, Err(ffmpeg::Error::Exit)));
        assert_eq!(reads, 1);
        // The end of the stream.
        assert!(matches!(
            read_packet(|_| Err(ffmpeg::Error::Eof), far),
            Ok(None)
        ));
        // "Not now" is tried again, until the deadline.
        let mut reads = 0;
        let read = read_packet(
            |_| {
                reads += 1;
                match reads {
                    1..=3 => Err(ffmpeg::Error::Other {
                        errno: ffmpeg::error::EAGAIN,
                    }),
                    _ => Ok(()),
                }
            },
            far,
        );
        assert!(matches!(read, Ok(Some(_))));
        assert_eq!(reads, 4);
        let past = Some(std::time::Instant::now());
        let read = read_packet(
            |_| {
                Err(ffmpeg::Error::Other {
                    errno: ffmpeg::error::EAGAIN,
                })
            },
            past,
        );
        assert!(read.is_err());
    }
}
