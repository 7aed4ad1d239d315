//! Temporal confirmation: turning per-frame scores into incidents.
//!
//! A single hot frame is not a fire: glare, a bird or a passing cloud can
//! score high once. Per class, an incident starts when one region of the
//! frame (a tile together with its neighbours) scores at or above the alarm
//! threshold in at least `required` frames taken within the last `window_s`
//! seconds, the newest included, and those hot frames span at least
//! `span_s` seconds. While it runs, a lower keep threshold (`keep_factor` x
//! alarm) holds it alive; once no frame has reached that for `clear_s`
//! seconds it ends. For `cooldown_s` seconds after that, the region it
//! covered (every cell that was hot while it ran) cannot start a new incident
//! of that class, so one flickering cloud does not page the control room
//! every few minutes; a fire anywhere else in the frame starts one at once.
//!
//! Starting and ending both count seconds, not frames: a camera that grabs
//! every 10 s asks the same persistence of a region as footage of one frame a
//! minute, on which the defaults were chosen. (Counting frames, the old rule's
//! 2 hot frames of 3 were 10-20 s apart live but 1-2 minutes apart on the
//! footage, so a cloud lingering for 10 s could page the control room live.)
//!
//! The confirmer only sees frame times handed to it, never the wall clock, so
//! replay at footage time behaves exactly as the live camera did.
//!
//! Running incidents outlive a restart: the monitor saves
//! [`Confirmer::open_incidents`] and hands them back to [`Confirmer::resume`].
//! A frame reaching the keep threshold within `clear_s` of the last one before
//! the restart continues the incident under its id; the first frame after a
//! longer gap ends it (whatever that frame shows: nobody watched in between),
//! and a fire still burning then starts a new incident by the start rule.
//!
//! Frame times come from the device's clock, which network time can step
//! back (a Pi without a clock battery that ran ahead, or a restart that
//! restored an older saved time). A frame older than what came before is
//! taken as now: history newer than it is dropped, times of a running
//! incident and a cooldown are brought back to it, and an incident resumed
//! on a clock behind its last hot frame ends unseen, as the gap is unknown.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::detector::FrameScores;
use crate::events::{compact_stamp, rfc3339, IncidentEvent, IncidentPhase};
use crate::model::{Class, PerClass};
use crate::views::Rect;

/// Tuning of the confirmation. The defaults are the rule first chosen on
/// footage of one frame a minute ("2 hot frames of the last 3"), put in
/// seconds; the training-side rm-n fire could not rank other settings
/// (README, "An incident of a class starts ...").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfirmConfig {
    /// Seconds looked back over when starting an incident: frames taken
    /// at most this long before the newest count (W).
    pub window_s: f64,
    /// Hot frames within the window, the newest included, needed to start an
    /// incident (N).
    pub required: usize,
    /// Least seconds between the oldest and the newest of those hot frames
    /// (S): the region must stay hot for this long.
    pub span_s: f64,
    /// Seconds since the last frame at or above the keep threshold that end
    /// an incident, counted at frame times. The default, 180 s, is the 3 frames
    /// of 60 s footage the defaults were chosen on.
    pub clear_s: f64,
    /// Keep threshold as a fraction of the alarm threshold (hysteresis).
    pub keep_factor: f32,
    /// Seconds after an incident ends during which its region cannot start
    /// another incident of the class; the rest of the frame can.
    pub cooldown_s: f64,
    /// Least seconds between two `incident.updated` events of one incident.
    pub update_interval_s: f64,
    /// Alarm thresholds; absent values take the model's operating thresholds.
    pub thresholds: Option<PerClass<f32>>,
}

impl Default for ConfirmConfig {
    fn default() -> Self {
        ConfirmConfig {
            window_s: 150.0,
            required: 2,
            span_s: 50.0,
            clear_s: 180.0,
            keep_factor: 0.7,
            cooldown_s: 600.0,
            update_interval_s: 60.0,
            thresholds: None,
        }
    }
}

impl ConfirmConfig {
    /// Checks the settings make sense, saying which one does not.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.window_s > 0.0 && self.window_s <= 3600.0) {
            return Err(format!(
                "window_s = {} must be more than 0 and at most 3600 seconds",
                self.window_s
            ));
        }
        if self.required == 0 || self.required > 100 {
            return Err(format!(
                "required = {} must be between 1 and 100 frames",
                self.required
            ));
        }
        if !(self.span_s >= 0.0 && self.span_s <= self.window_s) {
            return Err(format!(
                "span_s = {} must be between 0 and window_s ({}) seconds",
                self.span_s, self.window_s
            ));
        }
        if !(self.clear_s > 0.0 && self.clear_s.is_finite()) {
            return Err(format!(
                "clear_s = {} must be more than 0 seconds",
                self.clear_s
            ));
        }
        if !(self.keep_factor > 0.0 && self.keep_factor <= 1.0) {
            return Err(format!(
                "keep_factor = {} must be in (0, 1]",
                self.keep_factor
            ));
        }
        if !(self.cooldown_s >= 0.0 && self.update_interval_s >= 0.0) {
            return Err("cooldown_s and update_interval_s must be 0 or more".into());
        }
        if let Some(t) = &self.thresholds {
            for class in Class::ALL {
                let v = t.get(class);
                if !(v > 0.0 && v < 1.0) {
                    return Err(format!(
                        "thresholds.{} = {v} must be in (0, 1)",
                        class.name()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Active {
    incident_id: String,
    started_at: f64,
    seq: u32,
    peak: f32,
    reported_peak: f32,
    reported_boxes: Vec<Rect>,
    last_report: f64,
    /// Time of the last frame at or above the keep threshold.
    last_kept: f64,
    /// Grid cells hot at the alarm threshold while it ran: its region.
    cells: Vec<bool>,
    /// Handed back after a restart: the next frame first checks how long
    /// frames stopped.
    #[serde(skip)]
    resumed: bool,
}

/// A running incident as a restart keeps it (the monitor stores it in the
/// outbox database): what it takes to continue it under the same id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub class: Class,
    /// The tile grid its region's cells are laid out on.
    grid: (usize, usize),
    state: Active,
}

impl OpenIncident {
    pub fn incident_id(&self) -> &str {
        &self.state.incident_id
    }

    /// Frame time (unix seconds) of its last frame at or above the keep
    /// threshold.
    pub fn last_kept(&self) -> f64 {
        self.state.last_kept
    }
}

struct ClassState {
    class: Class,
    alarm: f32,
    /// Per frame in the window, oldest first: its time and which grid cells
    /// were hot (after spreading to neighbours).
    history: VecDeque<(f64, Vec<bool>)>,
    active: Option<Active>,
    cooldown_until: f64,
    /// The region of the last ended incident, held back until `cooldown_until`.
    cooldown_cells: Vec<bool>,
}

/// Confirms incidents for one camera.
pub struct Confirmer {
    camera: String,
    config: ConfirmConfig,
    classes: Vec<ClassState>,
    grid: (usize, usize),
}

impl Confirmer {
    /// `model_thresholds` are used for classes the config does not override.
    pub fn new(camera: &str, config: ConfirmConfig, model_thresholds: PerClass<f32>) -> Confirmer {
        let thresholds = config.thresholds.unwrap_or(model_thresholds);
        let classes = Class::ALL
            .iter()
            .map(|&class| ClassState {
                class,
                alarm: thresholds.get(class),
                history: VecDeque::new(),
                active: None,
                cooldown_until: f64::NEG_INFINITY,
                cooldown_cells: Vec::new(),
            })
            .collect();
        Confirmer {
            camera: camera.to_string(),
            config,
            classes,
            grid: (0, 0),
        }
    }

    pub fn alarm_threshold(&self, class: Class) -> f32 {
        self.classes[class.index()].alarm
    }

    pub fn keep_threshold(&self, class: Class) -> f32 {
        self.alarm_threshold(class) * self.config.keep_factor
    }

    /// True while an incident of `class` is running.
    pub fn is_active(&self, class: Class) -> bool {
        self.classes[class.index()].active.is_some()
    }

    /// The incidents running now, for a restart to continue.
    pub fn open_incidents(&self) -> Vec<OpenIncident> {
        self.classes
            .iter()
            .filter_map(|state| {
                Some(OpenIncident {
                    class: state.class,
                    grid: self.grid,
                    state: state.active.clone()?,
                })
            })
            .collect()
    }

    /// Takes back the incidents [`Confirmer::open_incidents`] gave before a
    /// restart; each continues or ends with the next frame (module docs).
    pub fn resume(&mut self, incidents: Vec<OpenIncident>) {
        for incident in incidents {
            if self.grid == (0, 0) {
                self.grid = incident.grid;
            }
            let state = &mut self.classes[incident.class.index()];
            state.active = Some(Active {
                resumed: true,
                ..incident.state
            });
        }
    }

    /// Feeds one frame taken at `time` (unix seconds); returns the events it causes.
    pub fn push(&mut self, time: f64, frame: &str, scores: &FrameScores) -> Vec<IncidentEvent> {
        let layout = &scores.layout;
        let grid = (layout.rows.max(1), layout.cols.max(1));
        if grid != self.grid {
            // A new frame size: old cells mean nothing any more. A running
            // incident's region and a cooldown now cover the whole frame.
            self.grid = grid;
            let all = vec![true; grid.0 * grid.1];
            for state in &mut self.classes {
                state.history.clear();
                state.cooldown_cells = all.clone();
                if let Some(a) = &mut state.active {
                    a.cells = all.clone();
                }
            }
        }
        let mut events = Vec::new();
        for i in 0..self.classes.len() {
            let hot = self.hot_cells(i, scores);
            let state = &mut self.classes[i];
            // Frames newer than this one are from before a clock step back.
            while state.history.back().is_some_and(|(t, _)| *t > time) {
                state.history.pop_back();
            }
            state.history.push_back((time, hot));
            while state
                .history
                .front()
                .is_some_and(|(t, _)| *t < time - self.config.window_s)
            {
                state.history.pop_front();
            }
            // After a step back, a cooldown would last for the step too.
            state.cooldown_until = state.cooldown_until.min(time + self.config.cooldown_s);
            if let Some(event) = self.step(i, time, frame, scores) {
                events.push(event);
            }
        }
        events
    }

    /// Grid cells whose own tile or a neighbour's scored at or above the alarm
    /// threshold; a hot whole-frame view heats every cell.
    fn hot_cells(&self, i: usize, scores: &FrameScores) -> Vec<bool> {
        let state = &self.classes[i];
        let (rows, cols) = self.grid;
        let mut hot = vec![false; rows * cols];
        for v in &scores.views {
            if v.score(state.class) < state.alarm {
                continue;
            }
            match scores.layout.grid_pos(v.view) {
                None => hot.iter_mut().for_each(|h| *h = true),
                Some((r, c)) => {
                    for rr in r.saturating_sub(1)..=(r + 1).min(rows - 1) {
                        for cc in c.saturating_sub(1)..=(c + 1).min(cols - 1) {
                            hot[rr * cols + cc] = true;
                        }
                    }
                }
            }
        }
        hot
    }

    fn step(
        &mut self,
        i: usize,
        time: f64,
        frame: &str,
        scores: &FrameScores,
    ) -> Option<IncidentEvent> {
        let config = &self.config;
        let camera = &self.camera;
        let state = &mut self.classes[i];
        let class = state.class;
        let score = scores.max(class);
        let keep = state.alarm * config.keep_factor;
        let boxes = boxes_at_or_above(scores, class, keep);

        let event = |phase, a: &Active, boxes: Vec<Rect>| IncidentEvent {
            phase,
            id: format!("{}.{}", a.incident_id, a.seq),
            incident_id: a.incident_id.clone(),
            camera: camera.clone(),
            time: rfc3339(time),
            class,
            started_at: rfc3339(a.started_at),
            peak_score: a.peak,
            score,
            boxes,
            frame: frame.to_string(),
        };

        if let Some(a) = &mut state.active {
            let resumed = std::mem::take(&mut a.resumed);
            if resumed && (time - a.last_kept >= config.clear_s || time < a.last_kept) {
                // The monitor was down for longer than clear_s (or for a time
                // unknown, its clock now behind the last hot frame): the
                // incident ended unseen, whatever this frame shows. No
                // cooldown, as nobody saw it end: a fire still burning starts
                // anew.
                a.seq += 1;
                let ended = event(IncidentPhase::Ended, a, a.reported_boxes.clone());
                state.active = None;
                return Some(ended);
            }
            // A clock stepped back: otherwise the incident could not end, nor
            // report, until the clock caught up again.
            a.last_kept = a.last_kept.min(time);
            a.last_report = a.last_report.min(time);
            a.peak = a.peak.max(score);
            if let Some((_, newest)) = state.history.back() {
                for (cell, hot) in a.cells.iter_mut().zip(newest) {
                    *cell |= *hot;
                }
            }
            if score >= keep {
                a.last_kept = time;
            }
            if time - a.last_kept >= config.clear_s {
                a.seq += 1;
                let ended = event(IncidentPhase::Ended, a, a.reported_boxes.clone());
                state.cooldown_until = time + config.cooldown_s;
                state.cooldown_cells = std::mem::take(&mut a.cells);
                state.active = None;
                state.history.clear();
                return Some(ended);
            }
            let grew = a.peak >= a.reported_peak + 0.05;
            let moved = !boxes.is_empty() && boxes != a.reported_boxes;
            if (grew || moved) && time - a.last_report >= config.update_interval_s {
                a.seq += 1;
                a.reported_peak = a.peak;
                a.reported_boxes = boxes.clone();
                a.last_report = time;
                return Some(event(IncidentPhase::Updated, a, boxes));
            }
            return None;
        }

        let (_, newest) = state.history.back()?;
        let cooling = time < state.cooldown_until;
        let persisted = |cell: usize| {
            let mut hot_times = state
                .history
                .iter()
                .filter(|(_, h)| h[cell])
                .map(|(t, _)| *t);
            let oldest = hot_times.next().unwrap_or(time);
            1 + hot_times.count() >= config.required && time - oldest >= config.span_s
        };
        let confirmed: Vec<bool> = (0..newest.len())
            .map(|cell| {
                newest[cell]
                    && !(cooling && state.cooldown_cells.get(cell).copied().unwrap_or(true))
                    && persisted(cell)
            })
            .collect();
        if !confirmed.contains(&true) {
            return None;
        }
        let a = Active {
            incident_id: format!("{}-{}-{}", camera, class.name(), compact_stamp(time)),
            started_at: time,
            seq: 0,
            peak: score,
            reported_peak: score,
            reported_boxes: boxes.clone(),
            last_report: time,
            last_kept: time,
            cells: confirmed,
            resumed: false,
        };
        let started = event(IncidentPhase::Started, &a, boxes);
        state.active = Some(a);
        Some(started)
    }
}

/// Rects of the views scoring at or above `threshold` for `class`. Tiles are
/// preferred; the whole frame is given only when no tile qualifies.
fn boxes_at_or_above(scores: &FrameScores, class: Class, threshold: f32) -> Vec<Rect> {
    let hot = scores.views.iter().filter(|v| v.score(class) >= threshold);
    let tiles: Vec<Rect> = hot.clone().filter(|v| v.view > 0).map(|v| v.rect).collect();
    if tiles.is_empty() {
        hot.map(|v| v.rect).collect()
    } else {
        tiles
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::ViewScore;
    use crate::views::Layout;

    /// A frame of 3x4 tiles where the listed tiles score the given smoke
    /// probability and everything else 0.01.
    fn frame(hot: &[((usize, usize), f32)]) -> FrameScores {
        let layout = Layout::new(52, 40, 16, 0.25);
        assert_eq!((layout.rows, layout.cols), (3, 4));
        let views = layout
            .rects
            .iter()
            .enumerate()
            .map(|(view, rect)| {
                let smoke = hot
                    .iter()
                    .find(|(pos, _)| layout.grid_pos(view) == Some(*pos))
                    .map_or(0.01, |(_, s)| *s);
                ViewScore {
                    view,
                    rect: *rect,
                    smoke,
                    flame: 0.01,
                }
            })
            .collect();
        FrameScores { layout, views }
    }

    fn confirmer() -> Confirmer {
        confirmer_with(ConfirmConfig::default())
    }

    /// A confirmer with alarm thresholds of 0.5.
    fn confirmer_with(config: ConfirmConfig) -> Confirmer {
        Confirmer::new(
            "cam",
            config,
            PerClass {
                smoke: 0.5,
                flame: 0.5,
            },
        )
    }

    /// Feeds `frames` one minute apart, named by their index; returns the
    /// `incident.started` events.
    fn starts(c: &mut Confirmer, frames: &[&FrameScores]) -> Vec<IncidentEvent> {
        let mut starts = Vec::new();
        for (t, f) in frames.iter().enumerate() {
            let events = c.push(t as f64 * 60.0, &t.to_string(), f);
            starts.extend(
                events
                    .into_iter()
                    .filter(|e| e.phase == IncidentPhase::Started),
            );
        }
        starts
    }

    #[test]
    fn one_hot_frame_is_not_an_incident() {
        let mut c = confirmer();
        let mut events = Vec::new();
        for (t, hot) in [false, true, false, false, true, false].iter().enumerate() {
            let f = if *hot {
                frame(&[((1, 1), 0.9)])
            } else {
                frame(&[])
            };
            events.extend(c.push(t as f64 * 60.0, "f", &f));
        }
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn neighbouring_tiles_confirm_and_hysteresis_keeps_it_alive() {
        let mut c = confirmer();
        let mut events = Vec::new();
        let frames = [
            frame(&[((0, 0), 0.9)]),
            frame(&[((1, 1), 0.8)]), // neighbour of (0, 0): confirmed
            frame(&[((1, 1), 0.4)]), // below alarm, above keep (0.35)
            frame(&[]),
            frame(&[]),
            frame(&[]), // third clear frame: ended
        ];
        for (t, f) in frames.iter().enumerate() {
            events.extend(c.push(1_000.0 + t as f64 * 60.0, &format!("f{t}"), f));
        }
        let phases: Vec<_> = events.iter().map(|e| e.phase).collect();
        assert_eq!(phases, [IncidentPhase::Started, IncidentPhase::Ended]);
        let started = &events[0];
        assert_eq!(started.frame, "f1");
        assert_eq!(started.class, Class::Smoke);
        assert_eq!(started.id, format!("{}.0", started.incident_id));
        assert_eq!(started.boxes, vec![frames[1].views[6].rect]);
        assert_eq!(events[1].frame, "f5");
        assert_eq!(events[1].incident_id, started.incident_id);
        assert!((events[1].peak_score - 0.8).abs() < 1e-6);
    }

    #[test]
    fn distant_tiles_do_not_confirm_each_other() {
        // Frames a minute apart; a window of 60 s holds the newest frame and
        // the one before: two hot frames in a row are needed, in one region.
        let run = |positions: &[(usize, usize)]| {
            let mut c = confirmer_with(ConfirmConfig {
                window_s: 60.0,
                ..ConfirmConfig::default()
            });
            let mut starts = Vec::new();
            for (t, pos) in positions.iter().enumerate() {
                starts.extend(
                    c.push(t as f64 * 60.0, &format!("f{t}"), &frame(&[(*pos, 0.9)]))
                        .into_iter()
                        .map(|e| e.frame),
                );
            }
            starts
        };
        // (0,0) and (2,3) share no neighbour.
        assert!(run(&[(0, 0), (2, 3), (0, 0), (2, 3), (0, 0)]).is_empty());
        // (0,0) and (1,1) are neighbours: the second frame confirms.
        assert_eq!(run(&[(0, 0), (1, 1)]), ["f1"]);
    }

    #[test]
    fn starting_asks_the_region_to_stay_hot_for_span_s() {
        // Every 10 s: a region hot for 40 s does not start an incident; one
        // hot for 50 s (span_s) starts it on the frame that completes the span.
        let run = |hot_frames: usize| {
            let mut c = confirmer();
            let hot = frame(&[((1, 1), 0.9)]);
            let cold = frame(&[]);
            let frames: Vec<&FrameScores> = std::iter::repeat_n(&hot, hot_frames)
                .chain(std::iter::repeat_n(&cold, 30))
                .collect();
            let mut started = Vec::new();
            for (t, f) in frames.iter().enumerate() {
                started.extend(
                    c.push(t as f64 * 10.0, &format!("f{t}"), f)
                        .into_iter()
                        .filter(|e| e.phase == IncidentPhase::Started)
                        .map(|e| e.frame),
                );
            }
            started
        };
        assert!(run(5).is_empty(), "hot at 0..40 s");
        assert_eq!(run(6), ["f5"], "hot at 0..50 s");
    }

    /// Smoke-tile scores of a generated hour of footage, one frame every 10 s:
    /// clouds that linger over one place for 10 to 40 s, and from t = 2000 s
    /// a plume that stays. (A plume that dipped under the threshold before it
    /// was confirmed would delay the 60 s footage by a whole frame whenever a
    /// dip fell on one of its frames: that is the cadence, not the rule.)
    fn generated_hour() -> Vec<(f64, FrameScores)> {
        let clouds = [
            (300.0, 310.0, (0, 0)),
            (900.0, 930.0, (0, 3)),
            (1490.0, 1520.0, (2, 0)),
            (2600.0, 2640.0, (0, 0)),
        ];
        (0..360)
            .map(|i| {
                let t = f64::from(i) * 10.0;
                let mut hot: Vec<((usize, usize), f32)> = clouds
                    .iter()
                    .filter(|(from, to, _)| (*from..=*to).contains(&t))
                    .map(|(_, _, cell)| (*cell, 0.95))
                    .collect();
                if t >= 2000.0 {
                    // Once confirmed, it thins under the threshold in one frame of four.
                    let thin = t >= 2300.0 && i % 4 == 3;
                    hot.push(((2, 2), if thin { 0.45 } else { 0.9 }));
                }
                (1_700_000_000.0 + t, frame(&hot))
            })
            .collect()
    }

    /// Start times of the incidents `config` confirms on `frames`.
    fn start_times(config: &ConfirmConfig, frames: &[&(f64, FrameScores)]) -> Vec<f64> {
        let mut c = confirmer_with(config.clone());
        let mut times = Vec::new();
        for (t, scores) in frames {
            for e in c.push(*t, "f", scores) {
                if e.phase == IncidentPhase::Started {
                    times.push(*t);
                }
            }
        }
        times
    }

    #[test]
    fn a_10_s_camera_starts_the_incidents_of_the_same_footage_at_60_s() {
        let hour = generated_hour();
        let every_10_s: Vec<_> = hour.iter().collect();
        let config = ConfirmConfig::default();
        let live = start_times(&config, &every_10_s);
        assert_eq!(live.len(), 1, "only the plume starts an incident: {live:?}");
        // The same footage thinned to every 6th frame, at each of the 6 phases.
        for phase in 0..6 {
            let every_60_s: Vec<_> = hour.iter().skip(phase).step_by(6).collect();
            let thinned = start_times(&config, &every_60_s);
            assert_eq!(thinned.len(), 1, "phase {phase}: {thinned:?}");
            assert!(
                (thinned[0] - live[0]).abs() <= 60.0,
                "phase {phase}: started at {} at 60 s, {} at 10 s",
                thinned[0],
                live[0]
            );
        }
        // Counting frames (2 hot of the last 3, whatever their times), the
        // 10 s camera pages the control room for the first cloud.
        let frame_counting = ConfirmConfig {
            window_s: 25.0,
            span_s: 0.0,
            ..ConfirmConfig::default()
        };
        let by_frames = start_times(&frame_counting, &every_10_s);
        assert_eq!(by_frames.first(), Some(&1_700_000_310.0), "{by_frames:?}");
    }

    #[test]
    fn ending_takes_clear_s_whatever_the_frame_interval() {
        // A camera grabbing every 10 s: a plume hot for 50 s starts an
        // incident; thinning for 2 minutes (12 low frames) keeps it; 3 minutes
        // without it end it.
        let mut c = confirmer();
        let hot = frame(&[((1, 1), 0.9)]);
        let cold = frame(&[]);
        let pattern = [&hot; 6]
            .into_iter()
            .chain([&cold; 12])
            .chain([&hot])
            .chain([&cold; 18]);
        let mut events = Vec::new();
        for (t, f) in pattern.enumerate() {
            events.extend(c.push(t as f64 * 10.0, &format!("f{t}"), f));
        }
        let phases: Vec<_> = events.iter().map(|e| (e.phase, e.frame.as_str())).collect();
        // Last kept at f18 (t = 180 s); t = 360 s is f36, 180 s later.
        assert_eq!(
            phases,
            [
                (IncidentPhase::Started, "f5"),
                (IncidentPhase::Ended, "f36")
            ]
        );
    }

    #[test]
    fn cooldown_holds_back_the_same_region() {
        let mut c = confirmer_with(ConfirmConfig {
            cooldown_s: 300.0,
            clear_s: 60.0,
            ..ConfirmConfig::default()
        });
        let hot = frame(&[((1, 1), 0.9)]);
        let cold = frame(&[]);
        let frames = [&hot, &hot, &cold, &hot, &hot, &hot, &hot, &hot, &hot];
        let started: Vec<_> = starts(&mut c, &frames)
            .into_iter()
            .map(|e| e.frame)
            .collect();
        // Ends at t=120; cooldown until 420 (frame 7); needs 2 hot frames again.
        assert_eq!(started, ["1", "7"]);
    }

    #[test]
    fn cooldown_does_not_hold_back_a_fire_elsewhere() {
        let mut c = confirmer_with(ConfirmConfig {
            cooldown_s: 600.0,
            clear_s: 60.0,
            ..ConfirmConfig::default()
        });
        // A cloud at (0, 0) confirms and ends; a minute later smoke rises at
        // (2, 3), which shares no cell with the cloud's region, and the cloud
        // comes back beside it.
        let cloud = frame(&[((0, 0), 0.9)]);
        let both = frame(&[((0, 0), 0.9), ((2, 3), 0.9)]);
        let cold = frame(&[]);
        let started = starts(&mut c, &[&cloud, &cloud, &cold, &both, &both, &both]);
        assert_eq!(started.len(), 2, "{started:?}");
        assert_eq!(started[0].frame, "1");
        // The smoke starts an incident at its second hot frame, inside the
        // cloud's cooldown (until t = 720 s); its boxes, every tile at or
        // above keep, include the smoke's tile.
        assert_eq!(started[1].frame, "4");
        let smoke_tile = both
            .views
            .iter()
            .find(|v| both.layout.grid_pos(v.view) == Some((2, 3)))
            .unwrap()
            .rect;
        assert!(started[1].boxes.contains(&smoke_tile), "{started:?}");
    }

    /// The open incidents of a confirmer that started one on hot frames at
    /// 1000 and 1060 s, through JSON as the outbox keeps them, and its id.
    fn saved_after_a_start() -> (Vec<OpenIncident>, String) {
        let mut c = confirmer();
        let hot = frame(&[((1, 1), 0.9)]);
        let mut started = Vec::new();
        for t in 0..2 {
            started.extend(c.push(1_000.0 + t as f64 * 60.0, "f", &hot));
        }
        assert_eq!(started.len(), 1, "{started:?}");
        let json = serde_json::to_string(&c.open_incidents()).unwrap();
        (
            serde_json::from_str(&json).unwrap(),
            started[0].incident_id.clone(),
        )
    }

    #[test]
    fn an_incident_resumed_within_clear_s_continues_under_its_id() {
        let (saved, id) = saved_after_a_start();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].incident_id(), id);
        assert_eq!(saved[0].last_kept(), 1_060.0);
        let mut c = confirmer();
        c.resume(saved);
        assert!(c.is_active(Class::Smoke));
        // Back 120 s after the last hot frame (clear_s 180) and still hot:
        // no second start; clear frames then end it under the same id.
        let mut events = c.push(1_180.0, "back", &frame(&[((1, 1), 0.9)]));
        for t in 1..=3 {
            events.extend(c.push(1_180.0 + t as f64 * 60.0, "clear", &frame(&[])));
        }
        let phases: Vec<_> = events.iter().map(|e| e.phase).collect();
        assert_eq!(phases, [IncidentPhase::Ended], "{events:?}");
        assert_eq!(events[0].incident_id, id);
        assert_eq!(events[0].id, format!("{id}.1"));
        assert_eq!(events[0].started_at, rfc3339(1_060.0));
        assert!(c.open_incidents().is_empty());
    }

    #[test]
    fn an_incident_resumed_after_clear_s_ends_first_and_a_fire_starts_anew() {
        let (saved, id) = saved_after_a_start();
        let mut c = confirmer();
        c.resume(saved);
        // Ten minutes down, and the fire still burning: the first frame ends
        // the old incident, the next one starts a new one.
        let hot = frame(&[((1, 1), 0.9)]);
        let ended = c.push(1_660.0, "back", &hot);
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0].phase, IncidentPhase::Ended);
        assert_eq!(ended[0].incident_id, id);
        assert_eq!(ended[0].id, format!("{id}.1"));
        let started = c.push(1_720.0, "next", &hot);
        assert_eq!(started.len(), 1, "{started:?}");
        assert_eq!(started[0].phase, IncidentPhase::Started);
        assert_ne!(started[0].incident_id, id);
    }

    #[test]
    fn a_clock_stepped_back_neither_holds_an_incident_open_nor_grows_history() {
        let hot = frame(&[((1, 1), 0.9)]);
        let day = 86_400.0;
        // Started while the clock ran a day ahead; network time then steps it
        // back and the fire is out. The first frame after the step counts as
        // the last hot one, and clear_s (180 s) after it the incident ends.
        let mut c = confirmer();
        let mut events = Vec::new();
        for t in 0..2 {
            events.extend(c.push(1_000_000.0 + t as f64 * 60.0, "ahead", &hot));
        }
        assert_eq!(events.len(), 1, "{events:?}");
        let back = 1_000_060.0 - day;
        let mut ended = Vec::new();
        for t in 1..=4 {
            ended.extend(c.push(back + t as f64 * 60.0, "clear", &frame(&[])));
        }
        let phases: Vec<_> = ended.iter().map(|e| e.phase).collect();
        assert_eq!(phases, [IncidentPhase::Ended], "{ended:?}");
        assert_eq!(ended[0].time, rfc3339(back + 240.0));
        // The history keeps only the window's frames, none from before the
        // step, so it stays bounded.
        for t in 4..100 {
            c.push(back + t as f64 * 60.0, "clear", &frame(&[]));
        }
        assert!(c.classes.iter().all(|s| s.history.len() <= 3));

        // Ended while the clock ran ahead: after the step, the region's
        // cooldown (600 s) lasts 600 s, not 600 s and a day.
        let clear = frame(&[]);
        let mut c = confirmer();
        let mut ended = Vec::new();
        for t in 0..6 {
            let f = if t < 2 { &hot } else { &clear };
            ended.extend(c.push(1_000_000.0 + t as f64 * 60.0, "ahead", f));
        }
        let phases: Vec<_> = ended.iter().map(|e| e.phase).collect();
        assert_eq!(phases, [IncidentPhase::Started, IncidentPhase::Ended]);
        let back = 1_000_300.0 - day;
        let mut started = Vec::new();
        for t in 1..=13 {
            let f = if t >= 12 { &hot } else { &clear };
            started.extend(c.push(back + t as f64 * 60.0, "back", f));
        }
        assert_eq!(started.len(), 1, "{started:?}");
        assert_eq!(started[0].phase, IncidentPhase::Started);
        assert_eq!(started[0].time, rfc3339(back + 13.0 * 60.0));
    }

    #[test]
    fn an_incident_resumed_on_a_clock_behind_its_last_hot_frame_ends_unseen() {
        // A power cut, and the clock restored to a time before the crash.
        let (saved, id) = saved_after_a_start();
        let mut c = confirmer();
        c.resume(saved);
        let ended = c.push(1_030.0, "back", &frame(&[((1, 1), 0.9)]));
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0].phase, IncidentPhase::Ended);
        assert_eq!(ended[0].incident_id, id);
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let bad = ConfirmConfig {
            required: 0,
            ..ConfirmConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("required"));
        let bad = ConfirmConfig {
            span_s: 200.0,
            ..ConfirmConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("span_s"));
        let bad = ConfirmConfig {
            clear_s: 0.0,
            ..ConfirmConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("clear_s"));
        assert!(ConfirmConfig::default().validate().is_ok());
    }
}
