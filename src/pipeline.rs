//! One camera's path from a decoded frame to incident events: its ignore
//! mask, the shared detector, and its own temporal confirmer.
//!
//! Replay and the live monitor both feed frames through [`CameraPipeline`],
//! so a recorded sequence and a live camera are judged identically (but for
//! a step of the live clock, [`CameraPipeline::clock_stepped`]).

use anyhow::Result;
use image::RgbImage;

use crate::confirm::{ConfirmConfig, Confirmer, OpenIncident};
use crate::detector::{Detector, FrameScores};
use crate::events::IncidentEvent;
use crate::mask::IgnoreMask;
use crate::model::{Class, PerClass};

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
