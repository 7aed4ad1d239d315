//! One camera's path from a decoded frame to incident events: its ignore
//! mask, the shared detector, and its own temporal confirmer.
//!
//! Replay and the live monitor both feed frames through [`CameraPipeline`],
//! so a recorded sequence and a live camera are judged identically (but for
//! a step of the live clock, [`CameraPipeline::clock_stepped`]). Both first
//! leave out the frames that are no evidence ([`FrameGate`]): one of another
//! size than the camera's and one that repeats the frame before it to the
//! pixel.

use std::sync::Arc;

use anyhow::Result;
use image::RgbImage;

use crate::confirm::{ConfirmConfig, Confirmer, OpenIncident};
use crate::detector::{Detector, FrameScores};
use crate::events::IncidentEvent;
use crate::mask::IgnoreMask;
use crate::model::{Class, PerClass};

/// How many frames in a row of a new size it takes to accept that size.
/// Running incidents end at a change of size (the tiles cover other places,
/// `confirm.rs`), so one odd frame (a rebooting camera's boot screen, a
/// snapshot from the sub-stream while the main encoder was busy) ended a
/// burning fire's incident, and the next frame, back at the old size, ended
/// the new one's start: a camera mixing sizes never confirmed a fire. Three
/// frames (30 s at the default interval) is a real change of settings.
pub const NEW_SIZE_AFTER_FRAMES: u32 = 3;

/// A camera's frame size, as the detector should see it.
#[derive(Default)]
pub struct FrameSizes {
    /// The size accepted.
    current: Option<(u32, u32)>,
    /// Another size, and how many frames in a row have had it.
    candidate: Option<((u32, u32), u32)>,
    /// Frames of an odd size so far.
    odd: u64,
}

/// What [`FrameSizes::check`] makes of a frame's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeVerdict {
    /// The accepted size (at start, the first frame's, or the one
    /// [`FrameSizes::expecting`] was given).
    Same,
    /// A new size, accepted after [`NEW_SIZE_AFTER_FRAMES`] frames in a row
    /// had it: the frame goes on, and running incidents end.
    Changed { was: (u32, u32) },
    /// Not the accepted size, not yet accepted: the frame is skipped.
    /// `count`: odd frames so far (to log 1, 2, 4, 8, ...).
    Odd { usual: (u32, u32), count: u64 },
}

impl FrameSizes {
    /// Frames of `size` expected from the first: those of the camera's
    /// running incidents at a restart. Without it, the first frame's size
    /// was the camera's, and a camera's boot screen as the first frame back
    /// ended them unseen (a new size), then its usual frames, odd for two
    /// frames, changed the size back on the third.
    pub fn expecting(size: (u32, u32)) -> FrameSizes {
        FrameSizes {
            current: Some(size),
            ..FrameSizes::default()
        }
    }

    pub fn check(&mut self, size: (u32, u32)) -> SizeVerdict {
        let Some(usual) = self.current.filter(|usual| *usual != size) else {
            self.current = Some(size);
            self.candidate = None;
            return SizeVerdict::Same;
        };
        let run = match self.candidate {
            Some((candidate, run)) if candidate == size => run + 1,
            _ => 1,
        };
        if run >= NEW_SIZE_AFTER_FRAMES {
            self.current = Some(size);
            self.candidate = None;
            return SizeVerdict::Changed { was: usual };
        }
        self.candidate = Some((size, run));
        self.odd += 1;
        SizeVerdict::Odd {
            usual,
            count: self.odd,
        }
    }
}

/// Which of a camera's frames are evidence, live and in replay alike: one
/// of another size than the camera's is not ([`FrameSizes`]), nor one the
/// same to the last pixel as the frame before it. A cached snapshot or a
/// frozen encoder repeats its picture so; a live sensor's noise never does.
/// Scored again, one frozen frame with glare in it was hot long enough to
/// start an incident, minutes before the picture counted as stuck
/// (`stuck_after_minutes`).
#[derive(Default)]
pub struct FrameGate {
    sizes: FrameSizes,
    /// The last frame of the camera's size (the live status shares it).
    last: Option<Arc<RgbImage>>,
    repeats: u64,
}

/// What [`FrameGate::admit`] makes of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Scored. `resized_from`: the camera's size before, where this frame's
    /// is new to it ([`SizeVerdict::Changed`]).
    Score { resized_from: Option<(u32, u32)> },
    /// Skipped: not the camera's size ([`SizeVerdict::Odd`]).
    OddSize { usual: (u32, u32), count: u64 },
    /// Skipped: the frame before it again; `count` so far (to log 1, 2, 4,
    /// 8, ...).
    Repeat { count: u64 },
}

impl Admission {
    /// The reason a skipped frame is counted under
    /// (`wildfire_frames_skipped_total`).
    pub fn skip_reason(self) -> Option<&'static str> {
        match self {
            Admission::Score { .. } => None,
            Admission::OddSize { .. } => Some("size"),
            Admission::Repeat { .. } => Some("repeat"),
        }
    }
}

impl FrameGate {
    /// Expecting frames of `size` from the first ([`FrameSizes::expecting`]).
    pub fn expecting(size: (u32, u32)) -> FrameGate {
        FrameGate {
            sizes: FrameSizes::expecting(size),
            ..FrameGate::default()
        }
    }

    pub fn admit(&mut self, image: &Arc<RgbImage>) -> Admission {
        let resized_from = match self.sizes.check(image.dimensions()) {
            SizeVerdict::Odd { usual, count } => return Admission::OddSize { usual, count },
            SizeVerdict::Same => None,
            SizeVerdict::Changed { was } => Some(was),
        };
        if self.last.as_deref() == Some(&**image) {
            self.repeats += 1;
            return Admission::Repeat {
                count: self.repeats,
            };
        }
        self.last = Some(image.clone());
        Admission::Score { resized_from }
    }
}

pub struct CameraPipeline {
    confirmer: Confirmer,
    mask: IgnoreMask,
}

impl CameraPipeline {
    /// A pipeline for `camera` (used in incident ids); thresholds the config
    /// does not set come from the detector's model.
    pub fn new(
        camera: &str,
        confirm: ConfirmConfig,
        mask: IgnoreMask,
        detector: &Detector,
    ) -> CameraPipeline {
        CameraPipeline {
            confirmer: Confirmer::new(camera, confirm, detector.info().thresholds),
            mask,
        }
    }

    /// The alarm thresholds in force.
    pub fn thresholds(&self) -> PerClass<f32> {
        PerClass {
            smoke: self.confirmer.alarm_threshold(Class::Smoke),
            flame: self.confirmer.alarm_threshold(Class::Flame),
        }
    }

    /// The incidents running now, for a restart to continue.
    pub fn open_incidents(&self) -> Vec<OpenIncident> {
        self.confirmer.open_incidents()
    }

    /// The start of the ids of this camera's incidents of `class`.
    pub fn id_prefix(&self, class: crate::model::Class) -> String {
        self.confirmer.id_prefix(class)
    }

    /// Ids of incidents started before a restart, never to be given again
    /// ([`Confirmer::remember_started`]).
    pub fn remember_started(&mut self, ids: &[String]) {
        self.confirmer.remember_started(ids);
    }

    /// Continues incidents saved before a restart ([`Confirmer::resume`]).
    pub fn resume(&mut self, incidents: Vec<OpenIncident>) {
        self.confirmer.resume(incidents);
    }

    /// The wall clock stepped by `step` seconds since the last frame
    /// ([`Confirmer::clock_stepped`]).
    pub fn clock_stepped(&mut self, step: f64) {
        self.confirmer.clock_stepped(step);
    }

    /// Scores `image`, taken at `time` (unix seconds) and called `frame`, and
    /// returns its scores with the incident events it causes.
    pub fn process(
        &mut self,
        detector: &mut Detector,
        time: f64,
        frame: &str,
        image: &RgbImage,
    ) -> Result<(FrameScores, Vec<IncidentEvent>)> {
        let scores = detector.detect(image, Some(&mut self.mask))?;
        let events = self.confirmer.push(time, frame, &scores);
        Ok((scores, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_odd_frame_is_skipped_and_a_new_size_is_taken_after_three_in_a_row() {
        let (big, small) = ((1920, 1080), (640, 360));
        let mut sizes = FrameSizes::default();
        assert_eq!(sizes.check(big), SizeVerdict::Same);
        assert_eq!(
            sizes.check(small),
            SizeVerdict::Odd {
                usual: big,
                count: 1
            }
        );
        assert_eq!(sizes.check(big), SizeVerdict::Same);
        // Sizes that alternate frame by frame: the usual one goes on.
        for _ in 0..10 {
            assert!(matches!(sizes.check(small), SizeVerdict::Odd { .. }));
            assert_eq!(sizes.check(big), SizeVerdict::Same);
        }
        // Two other sizes between: neither is a run.
        assert!(matches!(sizes.check(small), SizeVerdict::Odd { .. }));
        assert!(matches!(sizes.check((800, 600)), SizeVerdict::Odd { .. }));
        assert!(matches!(sizes.check(small), SizeVerdict::Odd { .. }));
        assert!(matches!(sizes.check(small), SizeVerdict::Odd { .. }));
        assert_eq!(sizes.check(small), SizeVerdict::Changed { was: big });
        assert_eq!(sizes.check(small), SizeVerdict::Same);
        assert_eq!(
            sizes.check(big),
            SizeVerdict::Odd {
                usual: small,
                count: 16
            }
        );

        // Expecting the size of the incidents a restart resumes: a boot
        // screen as the first frame back is odd, not the camera's size.
        let mut sizes = FrameSizes::expecting(big);
        assert!(matches!(sizes.check(small), SizeVerdict::Odd { .. }));
        assert_eq!(sizes.check(big), SizeVerdict::Same);
    }

    #[test]
    fn the_gate_scores_new_pictures_and_skips_odd_sizes_and_repeats() {
        let frame = |w, h, level| Arc::new(RgbImage::from_pixel(w, h, image::Rgb([level; 3])));
        let score = Admission::Score { resized_from: None };
        let mut gate = FrameGate::default();
        assert_eq!(gate.admit(&frame(64, 36, 1)), score);
        assert_eq!(gate.admit(&frame(64, 36, 2)), score);
        // The same picture again, in another buffer: a repeat, twice.
        assert_eq!(
            gate.admit(&frame(64, 36, 2)),
            Admission::Repeat { count: 1 }
        );
        assert_eq!(
            gate.admit(&frame(64, 36, 2)),
            Admission::Repeat { count: 2 }
        );
        assert_eq!(Admission::Repeat { count: 2 }.skip_reason(), Some("repeat"));
        // An odd size between does not make the next frame new.
        let odd = gate.admit(&frame(32, 18, 2));
        assert_eq!(
            odd,
            Admission::OddSize {
                usual: (64, 36),
                count: 1
            }
        );
        assert_eq!(odd.skip_reason(), Some("size"));
        assert_eq!(
            gate.admit(&frame(64, 36, 2)),
            Admission::Repeat { count: 3 }
        );
        assert_eq!(gate.admit(&frame(64, 36, 3)), score);
        assert_eq!(score.skip_reason(), None);
        // A new size, three frames in a row: scored from the third.
        assert!(matches!(
            gate.admit(&frame(32, 18, 4)),
            Admission::OddSize { .. }
        ));
        assert!(matches!(
            gate.admit(&frame(32, 18, 5)),
            Admission::OddSize { .. }
        ));
        assert_eq!(
            gate.admit(&frame(32, 18, 6)),
            Admission::Score {
                resized_from: Some((64, 36))
            }
        );
        // Expecting a size from a restart: another first frame is odd.
        let mut gate = FrameGate::expecting((64, 36));
        assert!(matches!(
            gate.admit(&frame(32, 18, 1)),
            Admission::OddSize { .. }
        ));
        assert_eq!(gate.admit(&frame(64, 36, 1)), score);
    }
}
