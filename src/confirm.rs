//! Temporal confirmation: turning per-frame scores into incidents.
//!
//! A single hot frame is not a fire: glare, a bird or a passing cloud can
//! score high once. Per class, an incident starts when one region of the
//! frame (a tile together with its neighbours) scores at or above the alarm
//! threshold in at least `required` frames taken within the last `window_s`
//! seconds, the newest included, and those hot frames span at least
//! `span_s` seconds. While it runs, a lower keep threshold (`keep_factor` x
//! alarm) reached by a view of its region holds it alive; once its region has
//! not reached that for `clear_s` seconds it ends. Time with no frame (a gap
//! over `window_s`: the camera out) does not count ([`Confirmer::push`]).
//! For `cooldown_s` seconds
//! after that, the tiles that were hot while it ran cannot start a new
//! incident of that class, so one flickering cloud does not page the control
//! room every few minutes; smoke on any other tile, the one beside them
//! included, starts one as the rule says.
//!
//! Incidents of a class run side by side, each over its own region (its hot
//! tiles and their neighbours). A cluster of neighbouring hot tiles with a
//! tile in a running incident's region is that fire spreading or drifting
//! and joins it (the oldest such incident, only); one with a cold tile or
//! more between it and every running incident's hot tiles is another fire
//! and starts its own incident by the same rule, one per cluster. A region
//! follows its fire: a cell with no view of the region at the keep
//! threshold on or beside it for `clear_s` (counted back from the
//! incident's last frame at that threshold, so a fire that stays put keeps
//! its region) leaves it, as a whole incident would end, and its cooldown
//! will not hold that tile. (Before 2026-12-03 a region only grew: a burn
//! pile that ran for days took in the path of every cloud that drifted past
//! it, one tile a frame, and a new fire anywhere along that path was only an
//! `incident.updated` of the burn pile's incident.) The whole-frame view
//! belongs only to an incident it started, with nothing running and no tile
//! hot: smoke anywhere lifts it, so it must not hold a localised incident
//! open. (Until 2026-12 a running
//! incident took in every hot tile of the frame and was kept alive by any of
//! them: a smouldering burn pile or a fog bank the control room had already
//! looked at turned a new fire elsewhere into an `incident.updated` of the old
//! incident, and held it open as long as that fire burned.)
//!
//! Starting and ending both count seconds, not frames: a camera that grabs
//! every 10 s asks the same persistence of a region as footage of one frame a
//! minute, on which the defaults were chosen. (Counting frames, the old rule's
//! 2 hot frames of 3 were 10-20 s apart live but 1-2 minutes apart on the
//! footage, so a cloud lingering for 10 s could page the control room live.)
//!
//! The confirmer only sees frame times handed to it, never the wall clock, so
//! replay at footage time behaves exactly as the live camera did; where the
//! live clock stepped (network time after a boot without it), the monitor
//! moves the confirmer's times by the step ([`Confirmer::clock_stepped`]),
//! and a replay of footage stamped across such a step sees a gap instead.
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

use crate::detector::{FrameScores, ViewScore};
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
    /// Seconds after an incident ends during which the tiles that were hot
    /// while it ran cannot start another incident of the class; every other
    /// tile can.
    pub cooldown_s: f64,
    /// Least seconds between two `incident.updated` events of one incident.
    pub update_interval_s: f64,
    /// Alarm thresholds, both classes; absent, the model's operating thresholds.
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
    /// Whether the start rule can be met by frames `interval_s` apart: its
    /// `required` hot frames, spanning `span_s`, must fit in `window_s`.
    /// Farther apart, no incident could ever start, and nothing else would
    /// say so.
    pub fn can_start_at_interval(&self, interval_s: f64) -> bool {
        let needs = (self.required.saturating_sub(1) as f64 * interval_s).max(self.span_s);
        needs <= self.window_s
    }

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
    /// Grid cells hot at the alarm threshold while it ran (its hot tiles and
    /// their neighbours), less those that have since gone cold
    /// (`kept_at`): its region.
    cells: Vec<bool>,
    /// Its own hot tiles among `cells`. Empty in state saved before
    /// 2026-12-03, or on a frame of a new size: `cells` stand in.
    #[serde(default)]
    tiles: Vec<bool>,
    /// Per grid cell, the time of the last frame in which a view of the
    /// region at or above the keep threshold looked at the cell or at a
    /// neighbour of it (the whole-frame view, where it is the incident's,
    /// looks at every cell). A cell not so looked at within `clear_s` before
    /// `last_kept` leaves `cells` (and `tiles`). Empty in state saved before
    /// 2026-12-03, or on a frame of a new size: every cell counts as
    /// looked at on `last_kept`.
    #[serde(default)]
    kept_at: Vec<f64>,
    /// Started on the whole-frame view (no tile said where), or on the frame
    /// of a new size that ends it: the whole-frame view is then its view too.
    /// A localised incident is not kept alive by it, as a fire or cloud
    /// elsewhere lifts it as well.
    #[serde(default)]
    whole_frame: bool,
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
    /// The size of the frames it ran on, in pixels; `None` in state saved
    /// before 2026-12-05.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame_size: Option<(u32, u32)>,
    state: Active,
}

impl OpenIncident {
    pub fn incident_id(&self) -> &str {
        &self.state.incident_id
    }

    /// The size of the frames it ran on, in pixels (`None` if saved by a
    /// version that did not keep it).
    pub fn frame_size(&self) -> Option<(u32, u32)> {
        self.frame_size
    }

    /// Frame time (unix seconds) of its last frame at or above the keep
    /// threshold.
    pub fn last_kept(&self) -> f64 {
        self.state.last_kept
    }

    /// Itself without what changes on every hot frame (the time of its last
    /// hot frame, its peak score): what a restart needs to continue it under
    /// its id with the same region, for the monitor to tell a change worth
    /// a write to the SD card from one it can save later.
    pub fn without_per_frame_fields(&self) -> OpenIncident {
        let mut lasting = self.clone();
        lasting.state.last_kept = 0.0;
        lasting.state.peak = 0.0;
        // Its region's cells leaving it show in `cells`.
        lasting.state.kept_at = Vec::new();
        lasting
    }

    /// Its `incident.ended` at `time` (unix seconds) on no frame, for an
    /// incident that no frame will end: its camera was removed from the
    /// configuration, or renamed, while it ran. The score is NaN (`null` in
    /// a body: no frame was looked at); peak and boxes are as last saved.
    pub fn ended_without_frame(&self, camera: &str, time: f64) -> IncidentEvent {
        let a = &self.state;
        let seq = a.seq + 1;
        IncidentEvent {
            phase: IncidentPhase::Ended,
            id: format!("{}.{seq}", a.incident_id),
            incident_id: a.incident_id.clone(),
            camera: camera.to_string(),
            time: rfc3339(time),
            class: self.class,
            started_at: rfc3339(a.started_at),
            peak_score: a.peak,
            score: f32::NAN,
            boxes: a.reported_boxes.clone(),
            frame: String::new(),
        }
    }
}

struct ClassState {
    class: Class,
    alarm: f32,
    /// Per frame in the window, oldest first: its time, which grid cells
    /// were hot (after spreading to neighbours) and which tiles themselves.
    history: VecDeque<(f64, Vec<bool>, Vec<bool>)>,
    /// Running incidents, oldest first, each over its own region.
    active: Vec<Active>,
    /// Ended incidents whose hot tiles are held back, each until its time.
    cooldowns: Vec<Cooldown>,
    /// Ids of the incidents started lately, newest last, so that a new one
    /// never takes the id of one that ended in the same second (the outbox
    /// would drop its events as repeats).
    recent_ids: VecDeque<String>,
}

/// Ids kept in [`ClassState::recent_ids`]: more than can start within one
/// second.
pub const RECENT_IDS: usize = 32;

/// An ended incident, whose hot tiles cannot start another incident of its
/// class before `until`.
struct Cooldown {
    until: f64,
    /// The ended incident's hot tiles (its cells where it kept none). Only
    /// these are held: the same cloud back on a tile it covered pages
    /// nobody, while smoke on the tile beside it is let through, as a fire
    /// next to where a cloud was must not wait out the cooldown.
    tiles: Vec<bool>,
    /// Its region: cells whose heat (from a neighbour) does not count
    /// towards a start; a free tile's own heat still does.
    cells: Vec<bool>,
}

/// Confirms incidents for one camera.
pub struct Confirmer {
    camera: String,
    config: ConfirmConfig,
    classes: Vec<ClassState>,
    grid: (usize, usize),
    /// The size of the frames, in pixels, the grid was laid on.
    frame_size: Option<(u32, u32)>,
    /// When the last frame was taken, for the gaps of a camera outage.
    last_frame: Option<f64>,
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
                active: Vec::new(),
                cooldowns: Vec::new(),
                recent_ids: VecDeque::new(),
            })
            .collect();
        Confirmer {
            camera: camera.to_string(),
            config,
            classes,
            grid: (0, 0),
            frame_size: None,
            last_frame: None,
        }
    }

    pub fn alarm_threshold(&self, class: Class) -> f32 {
        self.classes[class.index()].alarm
    }

    pub fn keep_threshold(&self, class: Class) -> f32 {
        self.alarm_threshold(class) * self.config.keep_factor
    }

    /// How many incidents of `class` are running.
    pub fn running(&self, class: Class) -> usize {
        self.classes[class.index()].active.len()
    }

    /// The incidents running now, for a restart to continue.
    pub fn open_incidents(&self) -> Vec<OpenIncident> {
        self.classes
            .iter()
            .flat_map(|state| {
                state.active.iter().map(|a| OpenIncident {
                    class: state.class,
                    grid: self.grid,
                    frame_size: self.frame_size,
                    state: a.clone(),
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
                self.frame_size = incident.frame_size;
            }
            let state = &mut self.classes[incident.class.index()];
            state.remember_id(incident.state.incident_id.clone());
            state.active.push(Active {
                resumed: true,
                ..incident.state
            });
        }
    }

    /// The start of the ids this camera gives to incidents of `class`.
    pub fn id_prefix(&self, class: Class) -> String {
        id_prefix(&self.camera, class)
    }

    /// Takes the ids of incidents this camera started before a restart
    /// (newest first), so none is given again: a clock set back to the same
    /// saved time at each boot would otherwise repeat them.
    pub fn remember_started(&mut self, ids: &[String]) {
        for state in &mut self.classes {
            let prefix = id_prefix(&self.camera, state.class);
            let mine: Vec<&String> = ids
                .iter()
                .filter(|id| id.starts_with(&prefix))
                .take(RECENT_IDS)
                .collect();
            for id in mine.into_iter().rev() {
                state.remember_id(id.clone());
            }
        }
    }

    /// The wall clock stepped by `step` seconds (forward positive) since the
    /// last frame ([`crate::clock::StepWatch`]): every time held moves with
    /// it, so windows, cooldowns and the time since a running incident's
    /// last hot frame stay what they were in real time, and its
    /// `started_at` reads on the new clock as the events' times do. Without
    /// it a step forward of a day ended a burning fire at the next frame that
    /// dipped under the keep threshold (`clear_s` looked long past), and held
    /// its tiles for the cooldown after; a step back held every cooldown
    /// for the length of the step.
    pub fn clock_stepped(&mut self, step: f64) {
        if let Some(t) = &mut self.last_frame {
            *t += step;
        }
        for state in &mut self.classes {
            for (t, _, _) in &mut state.history {
                *t += step;
            }
            for a in &mut state.active {
                a.started_at += step;
                a.last_kept += step;
                a.last_report += step;
                for t in &mut a.kept_at {
                    *t += step;
                }
            }
            for c in &mut state.cooldowns {
                c.until += step;
            }
        }
    }

    /// Feeds one frame taken at `time` (unix seconds); returns the events it
    /// causes: those of the running incidents, oldest first, then a start.
    pub fn push(&mut self, time: f64, frame: &str, scores: &FrameScores) -> Vec<IncidentEvent> {
        if let Some(gap) = self.last_frame.map(|t| time - t) {
            self.outage(gap);
        }
        self.last_frame = Some(time);
        let layout = &scores.layout;
        self.frame_size = Some(layout.frame);
        let grid = (layout.rows.max(1), layout.cols.max(1));
        let resized = grid != self.grid;
        if resized {
            // A new frame size: old cells mean nothing any more. Running
            // incidents end unseen on this frame, as after a restart longer
            // than clear_s: no cooldown, so a fire still burning starts again
            // by the start rule, over the cells it has now. (They were carried
            // on over the whole frame, whose region then took in every new
            // fire for clear_s, and kept it: a fire that broke out within 3
            // minutes of a camera's firmware reset, beside a burn pile's
            // incident, was only ever an update of the burn pile's.)
            // Cooldowns now cover the whole frame.
            self.grid = grid;
            let all = vec![true; grid.0 * grid.1];
            for state in &mut self.classes {
                state.history.clear();
                // Held as a whole-frame incident's cooldown is: the
                // whole-frame view cannot start it again, and a tile must
                // persist on its own.
                for c in &mut state.cooldowns {
                    c.cells = all.clone();
                    c.tiles = vec![false; all.len()];
                }
                for a in &mut state.active {
                    a.cells = all.clone();
                    a.tiles = Vec::new();
                    a.kept_at = Vec::new();
                    a.whole_frame = true;
                }
            }
        }
        let mut events = Vec::new();
        for state in &mut self.classes {
            let clusters = hot_clusters(scores, state.class, state.alarm, grid);
            let whole_frame_hot = scores
                .views
                .iter()
                .any(|v| v.view == 0 && v.score(state.class) >= state.alarm);
            // A hot whole-frame view heats every cell: the start rule counts
            // it wherever a tile later confirms it.
            let mut hot = vec![whole_frame_hot; grid.0 * grid.1];
            let mut hot_tiles = vec![false; grid.0 * grid.1];
            for cluster in &clusters {
                union(&mut hot, &cluster.cells);
                union(&mut hot_tiles, &cluster.tiles);
            }
            // Frames newer than this one are from before a clock step back.
            while state.history.back().is_some_and(|(t, _, _)| *t > time) {
                state.history.pop_back();
            }
            state.history.push_back((time, hot, hot_tiles));
            while state
                .history
                .front()
                .is_some_and(|(t, _, _)| *t < time - self.config.window_s)
            {
                state.history.pop_front();
            }
            // After a step back, a cooldown would last for the step too.
            for c in &mut state.cooldowns {
                c.until = c.until.min(time + self.config.cooldown_s);
            }
            state.cooldowns.retain(|c| time < c.until);
            events.extend(state.step(
                &self.config,
                &self.camera,
                grid.1,
                (time, frame, scores),
                (&clusters, whole_frame_hot),
                resized,
            ));
        }
        events
    }
}

impl Confirmer {
    /// A gap of `gap` seconds since the last frame: longer than `window_s`,
    /// the camera was out (offline, or its frames refused), and its running
    /// incidents' times move forward by the gap, so that only time seen
    /// counts towards `clear_s`. Otherwise the first frame after an outage
    /// longer than `clear_s` ended a burning fire if it showed no smoke (a
    /// rebooted camera's first frame is often black or wrongly exposed), and
    /// the cooldown held the fire's own tiles for `cooldown_s` more: the
    /// control room heard it ended, and of the fire again 10 minutes after
    /// the camera was back (review). A restart of the monitor is another
    /// case: its incidents, resumed, end unseen ([`ClassState::step`]).
    fn outage(&mut self, gap: f64) {
        if gap <= self.config.window_s {
            return;
        }
        for a in self.classes.iter_mut().flat_map(|s| s.active.iter_mut()) {
            a.last_kept += gap;
            for t in &mut a.kept_at {
                *t += gap;
            }
        }
    }
}

impl ClassState {
    /// Runs one frame, already in the history, through the running incidents
    /// and then through the start rule. `resized`: the frame is the first of
    /// a new size, on which the running incidents end unseen
    /// ([`Confirmer::push`]).
    fn step(
        &mut self,
        config: &ConfirmConfig,
        camera: &str,
        cols: usize,
        (time, frame, scores): (f64, &str, &FrameScores),
        (clusters, whole_frame_hot): (&[Cluster], bool),
        resized: bool,
    ) -> Vec<IncidentEvent> {
        let class = self.class;
        let keep = self.alarm * config.keep_factor;
        let event = |phase, a: &Active, score: f32, boxes: Vec<Rect>| IncidentEvent {
            phase,
            id: format!("{}.{}", a.incident_id, a.seq),
            incident_id: a.incident_id.clone(),
            camera: camera.to_string(),
            time: rfc3339(time),
            class,
            started_at: rfc3339(a.started_at),
            peak_score: a.peak,
            score,
            boxes,
            frame: frame.to_string(),
        };
        let mut events = Vec::new();
        let mut running = Vec::new();
        // Each cluster of hot tiles joins one incident at most, the oldest
        // it touches, so two incidents never come to share one plume.
        let mut claimed = vec![false; clusters.len()];
        for mut a in std::mem::take(&mut self.active) {
            let resumed = std::mem::take(&mut a.resumed);
            if resized || resumed && (time - a.last_kept >= config.clear_s || time < a.last_kept) {
                // The monitor was down for longer than clear_s (or for a time
                // unknown, its clock now behind the last hot frame), or the
                // frame changed size: the incident ended unseen, whatever
                // this frame shows. No cooldown, as nobody saw it end: a fire
                // still burning starts anew.
                a.seq += 1;
                let score = region_score(scores, class, (&a.cells, a.whole_frame), cols);
                events.push(event(
                    IncidentPhase::Ended,
                    &a,
                    score,
                    a.reported_boxes.clone(),
                ));
                continue;
            }
            if a.kept_at.len() != a.cells.len() {
                a.kept_at = vec![a.last_kept; a.cells.len()];
            }
            // A clock stepped back: otherwise the incident could not end, nor
            // report, until the clock caught up again.
            a.last_kept = a.last_kept.min(time);
            a.last_report = a.last_report.min(time);
            for t in &mut a.kept_at {
                *t = t.min(time);
            }
            // Its smoke spreading or drifting: a cluster with a hot tile in
            // the region (its tiles and their neighbours) joins it. One
            // farther away is another fire, left to the start rule below.
            for (cluster, claimed) in clusters.iter().zip(&mut claimed) {
                if !*claimed && overlaps(&cluster.tiles, &a.cells) {
                    union(&mut a.cells, &cluster.cells);
                    union(&mut a.tiles, &cluster.tiles);
                    *claimed = true;
                }
            }
            // Only the region keeps it alive and shapes its updates: a cloud
            // or a second fire elsewhere in the frame is not this incident.
            let score = region_score(scores, class, (&a.cells, a.whole_frame), cols);
            let boxes = boxes_at_or_above(
                region_views(scores, (&a.cells, a.whole_frame), cols),
                class,
                keep,
            );
            a.peak = a.peak.max(score);
            if score >= keep {
                a.last_kept = time;
            }
            // The region follows where the fire is now: a cell with no view
            // at the keep threshold on or beside it for clear_s while the
            // incident was kept alive elsewhere leaves it, as the whole
            // incident would end. Without this a chimney or burn pile that
            // runs for days took in the path of every cloud that drifted
            // past it, one tile a frame, until a new fire anywhere along it
            // was only an update of the old incident. The keep threshold,
            // not the alarm one, as it is what keeps the incident alive: at
            // the alarm one a fire thinning to between the two emptied its
            // region clear_s later and ended clear_s after that (test
            // a_fire_thinning_under_the_alarm_threshold_...). Counted back
            // from its last frame at keep, not from now, so a fire that
            // stays put keeps its region (every cell is looked at on that
            // frame), and one that thins away ends over the region it last
            // had, which its cooldown then holds. No cooldown holds the cells
            // it leaves (what heated them never paged on its own), and with
            // the default window_s under clear_s none of their hot frames is
            // left in the history.
            look_over_region(&mut a, scores, class, keep, (time, cols));
            for cell in 0..a.cells.len() {
                if a.last_kept - a.kept_at[cell] >= config.clear_s {
                    a.cells[cell] = false;
                    if let Some(tile) = a.tiles.get_mut(cell) {
                        *tile = false;
                    }
                }
            }
            if time - a.last_kept >= config.clear_s {
                a.seq += 1;
                events.push(event(
                    IncidentPhase::Ended,
                    &a,
                    score,
                    a.reported_boxes.clone(),
                ));
                // Its region's hot frames are spent: after the cooldown it
                // starts again only on new ones.
                for (_, hot, hot_tiles) in &mut self.history {
                    for ((h, t), &ran) in hot.iter_mut().zip(hot_tiles.iter_mut()).zip(&a.cells) {
                        *h &= !ran;
                        *t &= !ran;
                    }
                }
                // One the whole-frame view started (or a change of frame
                // size turned whole-frame) holds no tile: its region is
                // every cell, and holding every tile would let no fire
                // anywhere in the frame start for the cooldown after a hazy
                // hour. Its region still keeps the whole-frame view from
                // starting it again, and a tile must persist on its own.
                let tiles = if a.tiles.contains(&true) {
                    a.tiles
                } else if a.whole_frame {
                    vec![false; a.cells.len()]
                } else {
                    a.cells.clone()
                };
                self.cooldowns.push(Cooldown {
                    until: time + config.cooldown_s,
                    tiles,
                    cells: a.cells,
                });
                continue;
            }
            let grew = a.peak >= a.reported_peak + 0.05;
            let moved = !boxes.is_empty() && boxes != a.reported_boxes;
            if (grew || moved) && time - a.last_report >= config.update_interval_s {
                a.seq += 1;
                a.reported_peak = a.peak;
                a.reported_boxes = boxes.clone();
                a.last_report = time;
                events.push(event(IncidentPhase::Updated, &a, score, boxes));
            }
            running.push(a);
        }
        self.active = running;

        let Some((_, newest, newest_tiles)) = self.history.back() else {
            return events;
        };
        // Whether the start rule holds for a cell: hot (heated, `tile`
        // false) or itself a hot tile (`tile` true) in enough frames.
        let persisted = |cell: usize, tile: bool| {
            let mut hot_times = self
                .history
                .iter()
                .filter(|(_, cells, tiles)| if tile { tiles[cell] } else { cells[cell] })
                .map(|(t, _, _)| *t);
            let oldest = hot_times.next().unwrap_or(time);
            1 + hot_times.count() >= config.required && time - oldest >= config.span_s
        };
        // Free: held by no running incident and no cooldown region. A tile
        // is free of a cooldown unless it was one of its hot tiles.
        let running = |cell: usize| covered(self.active.iter().map(|a| &a.cells), cell);
        let free =
            |cell: usize| !running(cell) && !covered(self.cooldowns.iter().map(|c| &c.cells), cell);
        let free_tile =
            |cell: usize| !running(cell) && !covered(self.cooldowns.iter().map(|c| &c.tiles), cell);
        // A cell confirms when it is free and persisted; inside a cooldown
        // region, a free hot tile confirms when that tile itself persisted
        // (a fire beside where a cloud was, whose neighbours all lie in the
        // cloud's region, must not wait out the cooldown, while a cloud
        // drifting onto the tile has been on it once).
        let confirmed: Vec<bool> = (0..newest.len())
            .map(|cell| {
                newest[cell]
                    && ((free(cell) && persisted(cell, false))
                        || (newest_tiles[cell] && free_tile(cell) && persisted(cell, true)))
            })
            .collect();
        if !confirmed.contains(&true) {
            return events;
        }
        // The new regions: each cluster of hot tiles with a confirmed cell
        // is a fire of its own, over its confirmed cells and its free hot
        // tiles (so that its start carries the tile that is hot: a plume
        // that moved a tile confirms around where it was). A cluster whose
        // hot tiles are all held (a cloud back on its tile in its cooldown)
        // starts nothing. A cell between two clusters goes to the one found
        // first.
        let mut taken = vec![false; confirmed.len()];
        let mut regions: Vec<(Vec<bool>, Vec<bool>, bool)> = Vec::new();
        for cluster in clusters {
            let tiles: Vec<bool> = (0..confirmed.len())
                .map(|cell| cluster.tiles[cell] && !taken[cell] && free_tile(cell))
                .collect();
            let cells: Vec<bool> = (0..confirmed.len())
                .map(|cell| tiles[cell] || (cluster.cells[cell] && confirmed[cell] && !taken[cell]))
                .collect();
            if tiles.contains(&true) && (0..cells.len()).any(|cell| cells[cell] && confirmed[cell])
            {
                union(&mut taken, &cells);
                regions.push((cells, tiles, false));
            }
        }
        // With no tile hot to say where and nothing running, a hot
        // whole-frame view starts one incident over every confirmed cell;
        // with an incident running it starts nothing (what runs may be
        // lifting it), nor with a hot tile that is held (the whole-frame
        // view may be seeing that cloud).
        if clusters.is_empty() && whole_frame_hot && self.active.is_empty() {
            regions.push((confirmed, Vec::new(), true));
        }
        for (cells, tiles, whole_frame) in regions {
            let incident_id = self.new_id(camera, time);
            let region = (cells.as_slice(), whole_frame);
            let score = region_score(scores, class, region, cols);
            let boxes = boxes_at_or_above(region_views(scores, region, cols), class, keep);
            let a = Active {
                incident_id,
                started_at: time,
                seq: 0,
                peak: score,
                reported_peak: score,
                reported_boxes: boxes.clone(),
                last_report: time,
                last_kept: time,
                kept_at: vec![time; cells.len()],
                cells,
                tiles,
                whole_frame,
                resumed: false,
            };
            events.push(event(IncidentPhase::Started, &a, score, boxes));
            self.active.push(a);
        }
        events
    }

    /// An id for an incident starting at `time`: its camera, class and
    /// second, with `-2`, `-3`... when a running or lately started incident
    /// has that id already (two fires confirmed on one frame, or a clock
    /// stepped back into the second of an earlier one).
    fn new_id(&mut self, camera: &str, time: f64) -> String {
        let stamp = format!("{}{}", id_prefix(camera, self.class), compact_stamp(time));
        let taken = |id: &str| {
            self.active.iter().any(|a| a.incident_id == id)
                || self.recent_ids.iter().any(|r| r == id)
        };
        let mut id = stamp.clone();
        let mut n = 2;
        while taken(&id) {
            id = format!("{stamp}-{n}");
            n += 1;
        }
        self.remember_id(id.clone());
        id
    }

    /// Keeps `id` among the last [`RECENT_IDS`] ids, for [`Self::new_id`].
    fn remember_id(&mut self, id: String) {
        if self.recent_ids.len() == RECENT_IDS {
            self.recent_ids.pop_front();
        }
        self.recent_ids.push_back(id);
    }
}

/// The start of the ids `camera` gives to incidents of `class`:
/// `<camera>-<class>-`, then the second it started.
fn id_prefix(camera: &str, class: Class) -> String {
    format!("{camera}-{}-", class.name())
}

/// Neighbouring hot tiles of one frame: one plume, or one cloud.
struct Cluster {
    /// Grid cells of its hot tiles.
    tiles: Vec<bool>,
    /// Those cells and their 8 neighbours: what it heats.
    cells: Vec<bool>,
}

/// The frame's tiles at or above `alarm` for `class`, gathered into
/// clusters: tiles next to each other (8 neighbours) are one cluster, tiles
/// with a cold tile or more between them are not. The whole-frame view is
/// no tile and in no cluster.
fn hot_clusters(
    scores: &FrameScores,
    class: Class,
    alarm: f32,
    grid: (usize, usize),
) -> Vec<Cluster> {
    let (rows, cols) = grid;
    let mut tiles: Vec<Vec<(usize, usize)>> = Vec::new();
    for v in scores.views.iter().filter(|v| v.score(class) >= alarm) {
        let Some(tile) = scores.layout.grid_pos(v.view) else {
            continue;
        };
        let near = |t: &(usize, usize)| t.0.abs_diff(tile.0) <= 1 && t.1.abs_diff(tile.1) <= 1;
        let (joined, apart): (Vec<_>, Vec<_>) = tiles.into_iter().partition(|c| c.iter().any(near));
        tiles = apart;
        let mut merged: Vec<_> = joined.into_iter().flatten().collect();
        merged.push(tile);
        tiles.push(merged);
    }
    tiles
        .into_iter()
        .map(|cluster| {
            let mut own = vec![false; rows * cols];
            let mut cells = vec![false; rows * cols];
            for (r, c) in cluster {
                own[r * cols + c] = true;
                mark_around(&mut cells, (r, c), grid);
            }
            Cluster { tiles: own, cells }
        })
        .collect()
}

/// Marks on `cells` (a `grid` of rows and columns) the tile at `(r, c)`
/// and the 8 around it.
fn mark_around(cells: &mut [bool], (r, c): (usize, usize), (rows, cols): (usize, usize)) {
    for rr in r.saturating_sub(1)..=(r + 1).min(rows - 1) {
        for cc in c.saturating_sub(1)..=(c + 1).min(cols - 1) {
            if let Some(cell) = cells.get_mut(rr * cols + cc) {
                *cell = true;
            }
        }
    }
}

fn union(into: &mut [bool], cells: &[bool]) {
    for (a, b) in into.iter_mut().zip(cells) {
        *a |= *b;
    }
}

/// Whether one of `regions` holds `cell` (a region from another grid holds
/// every cell).
fn covered<'a>(mut regions: impl Iterator<Item = &'a Vec<bool>>, cell: usize) -> bool {
    regions.any(|cells| cells.get(cell).copied().unwrap_or(true))
}

fn overlaps(a: &[bool], b: &[bool]) -> bool {
    a.iter().zip(b).any(|(x, y)| *x && *y)
}

/// The views that look at the region `(cells, whole_frame)`: the tiles in
/// its cells, and the whole-frame view for a region that has it
/// ([`Active::whole_frame`]).
fn region_views<'a>(
    scores: &'a FrameScores,
    (cells, whole_frame): (&'a [bool], bool),
    cols: usize,
) -> impl Iterator<Item = &'a ViewScore> + Clone {
    scores
        .views
        .iter()
        .filter(move |v| match scores.layout.grid_pos(v.view) {
            None => whole_frame,
            Some((r, c)) => cells.get(r * cols + c).copied().unwrap_or(false),
        })
}

/// Marks on `a.kept_at` the cells of `a`'s region that a view of it at or
/// above `keep` looks at or is beside on the frame of `time`: a tile its
/// cell and the 8 around it, the incident's whole-frame view every cell.
fn look_over_region(
    a: &mut Active,
    scores: &FrameScores,
    class: Class,
    keep: f32,
    (time, cols): (f64, usize),
) {
    let rows = scores.layout.rows.max(1);
    let mut warm = vec![false; a.cells.len()];
    for v in region_views(scores, (&a.cells, a.whole_frame), cols) {
        if v.score(class) < keep {
            continue;
        }
        match scores.layout.grid_pos(v.view) {
            None => warm.fill(true),
            Some(tile) => mark_around(&mut warm, tile, (rows, cols)),
        }
    }
    for ((t, &warm), &cell) in a.kept_at.iter_mut().zip(&warm).zip(&a.cells) {
        if warm && cell {
            *t = time;
        }
    }
}

/// The highest score of `class` over the views that look at a region.
fn region_score(scores: &FrameScores, class: Class, region: (&[bool], bool), cols: usize) -> f32 {
    region_views(scores, region, cols)
        .map(|v| v.score(class))
        .fold(0.0, f32::max)
}

/// Rects of the views scoring at or above `threshold` for `class`. Tiles are
/// preferred; the whole frame is given only when no tile qualifies.
fn boxes_at_or_above<'a>(
    views: impl Iterator<Item = &'a ViewScore> + Clone,
    class: Class,
    threshold: f32,
) -> Vec<Rect> {
    let hot = views.filter(|v| v.score(class) >= threshold);
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
        let f = frame_of(Layout::new(52, 40, 16, 0.25), hot);
        assert_eq!((f.layout.rows, f.layout.cols), (3, 4));
        f
    }

    /// [`frame`] 3x8 tiles.
    fn wide_frame(hot: &[((usize, usize), f32)]) -> FrameScores {
        let f = frame_of(Layout::new(100, 40, 16, 0.25), hot);
        assert_eq!((f.layout.rows, f.layout.cols), (3, 8));
        f
    }

    fn frame_of(layout: Layout, hot: &[((usize, usize), f32)]) -> FrameScores {
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

    /// Feeds `frames` one minute apart from t = 0, named by their index;
    /// returns the events they cause.
    fn run(c: &mut Confirmer, frames: &[&FrameScores]) -> Vec<IncidentEvent> {
        let mut events = Vec::new();
        for (t, f) in frames.iter().enumerate() {
            events.extend(c.push(t as f64 * 60.0, &t.to_string(), f));
        }
        events
    }

    /// The `incident.started` events of [`run`].
    fn starts(c: &mut Confirmer, frames: &[&FrameScores]) -> Vec<IncidentEvent> {
        run(c, frames)
            .into_iter()
            .filter(|e| e.phase == IncidentPhase::Started)
            .collect()
    }

    /// Each event's phase and frame name.
    fn phases(events: &[IncidentEvent]) -> Vec<(IncidentPhase, &str)> {
        events.iter().map(|e| (e.phase, e.frame.as_str())).collect()
    }

    #[test]
    fn a_change_of_frame_size_ends_running_incidents_and_each_fire_starts_on_its_own() {
        // A burn pile's incident runs; the camera comes back from a firmware
        // reset at another size, and a fire breaks out beside the pile at
        // once. The pile's incident ends unseen, and the fire and the pile,
        // each on its own tiles, start incidents of their own.
        let mut c = confirmer();
        let pile = ((1, 1), 0.9);
        let before = frame(&[pile]);
        let after = wide_frame(&[pile, ((1, 6), 0.9)]);
        let events = run(&mut c, &[&before, &before, &before, &after, &after, &after]);
        let pile_id = events[0].incident_id.clone();
        assert_eq!(
            phases(&events)[..2],
            [(IncidentPhase::Started, "1"), (IncidentPhase::Ended, "3")]
        );
        assert_eq!(events[1].incident_id, pile_id);
        let started: Vec<&IncidentEvent> = events[2..]
            .iter()
            .filter(|e| e.phase == IncidentPhase::Started)
            .collect();
        assert_eq!(started.len(), 2, "{events:?}");
        assert!(started.iter().all(|e| e.incident_id != pile_id));
        // The fire's own incident is over the fire's tile, not the pile's.
        let fire_tile = after.layout.frame_rect(
            (0..after.layout.rects.len())
                .find(|&v| after.layout.grid_pos(v) == Some((1, 6)))
                .unwrap(),
        );
        assert!(
            started.iter().any(|e| e.boxes == [fire_tile]),
            "{started:?}"
        );
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
        let phases = phases(&events);
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
    fn a_camera_outage_does_not_count_towards_the_end_of_a_fire() {
        // A camera grabbing every 10 s: an incident starts at 50 s; the
        // camera is out from 100 s to 400 s (longer than clear_s) and its
        // first frame back is black. The fire, hot again from the next
        // frame, stays the one incident; once it is gone, it ends clear_s
        // of frames later, as without the outage.
        let mut c = confirmer();
        let hot = frame(&[((1, 1), 0.9)]);
        let black = frame(&[]);
        let mut frames: Vec<(f64, &FrameScores)> = Vec::new();
        frames.extend((0..=10).map(|i| (i as f64 * 10.0, &hot)));
        frames.push((400.0, &black));
        frames.extend((41..=60).map(|i| (i as f64 * 10.0, &hot)));
        frames.extend((61..=90).map(|i| (i as f64 * 10.0, &black)));
        let mut events = Vec::new();
        for (t, f) in frames {
            events.extend(c.push(t, &format!("t{t}"), f));
        }
        let phases: Vec<(IncidentPhase, String)> = events
            .iter()
            .filter(|e| e.phase != IncidentPhase::Updated)
            .map(|e| (e.phase, e.frame.clone()))
            .collect();
        // Last kept at 600 s: ended at 780 s.
        assert_eq!(
            phases,
            [
                (IncidentPhase::Started, "t50".to_string()),
                (IncidentPhase::Ended, "t780".to_string())
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

    #[test]
    fn a_fire_elsewhere_while_an_incident_runs_starts_its_own_incident() {
        // A cloud bank at (0, 0) is confirmed and lingers at the keep level
        // (the control room may have dismissed it); smoke then rises at
        // (2, 3). It must page as a fire of its own, not as an update of the
        // cloud's incident.
        let mut c = confirmer();
        let cloud = frame(&[((0, 0), 0.9)]);
        let lingering = frame(&[((0, 0), 0.4)]);
        let smoke = frame(&[((0, 0), 0.4), ((2, 3), 0.9)]);
        let events = run(
            &mut c,
            &[&cloud, &cloud, &lingering, &smoke, &smoke, &smoke],
        );
        let started: Vec<_> = events
            .iter()
            .filter(|e| e.phase == IncidentPhase::Started)
            .collect();
        assert_eq!(started.len(), 2, "{events:?}");
        assert_eq!(started[1].frame, "4");
        assert_ne!(started[0].incident_id, started[1].incident_id);
        let tile = |f: &FrameScores, pos| {
            let v = f
                .views
                .iter()
                .find(|v| f.layout.grid_pos(v.view) == Some(pos));
            v.unwrap().rect
        };
        assert_eq!(started[1].boxes, [tile(&smoke, (2, 3))]);
        assert!((started[1].score - 0.9).abs() < 1e-6);
        // The cloud's incident neither took the smoke's tile into its boxes
        // nor its score.
        for e in events
            .iter()
            .filter(|e| e.incident_id == started[0].incident_id)
        {
            assert!(!e.boxes.contains(&tile(&smoke, (2, 3))), "{e:?}");
            assert!(e.score < 0.9 || e.frame == "0" || e.frame == "1", "{e:?}");
        }
        // Both run on, and a restart continues both under their ids.
        assert_eq!(c.running(Class::Smoke), 2);
        let saved: Vec<OpenIncident> =
            serde_json::from_str(&serde_json::to_string(&c.open_incidents()).unwrap()).unwrap();
        let ids: Vec<_> = saved.iter().map(|i| i.incident_id().to_string()).collect();
        assert_eq!(
            ids,
            [
                started[0].incident_id.clone(),
                started[1].incident_id.clone()
            ]
        );
        let mut resumed = confirmer();
        resumed.resume(saved);
        assert!(resumed.push(360.0, "6", &smoke).is_empty());
        assert_eq!(resumed.running(Class::Smoke), 2);
    }

    #[test]
    fn an_incident_is_kept_alive_by_its_own_region_only() {
        // A cloud at (0, 0) is confirmed and goes; a haze far away at (2, 3)
        // stays over the keep threshold (0.35) but under the alarm one. The
        // cloud's incident ends clear_s after its region cleared.
        let mut c = confirmer();
        let cloud = frame(&[((0, 0), 0.9), ((2, 3), 0.4)]);
        let haze = frame(&[((2, 3), 0.4)]);
        let events = run(&mut c, &[&cloud, &cloud, &haze, &haze, &haze, &haze]);
        let phases = phases(&events);
        assert_eq!(
            phases,
            [(IncidentPhase::Started, "1"), (IncidentPhase::Ended, "4")]
        );
        assert_eq!(c.running(Class::Smoke), 0);
    }

    #[test]
    fn a_plume_drifting_across_tiles_stays_one_incident() {
        // Hot at (1, 0), then (1, 1), then two and three tiles on: each new
        // tile touches the region it has grown to, so it is the same fire.
        let mut c = confirmer();
        let mut events = Vec::new();
        for (t, col) in [0, 0, 1, 2, 3, 3].into_iter().enumerate() {
            let f = frame(&[((1, col), 0.9)]);
            events.extend(c.push(t as f64 * 60.0, &t.to_string(), &f));
        }
        let started = events
            .iter()
            .filter(|e| e.phase == IncidentPhase::Started)
            .count();
        assert_eq!(started, 1, "{events:?}");
        assert!(events.iter().any(|e| e.phase == IncidentPhase::Updated));
    }

    #[test]
    fn a_cloud_that_drifted_past_a_long_incident_leaves_no_trail_for_a_fire_to_hide_in() {
        // A chimney at (1, 0) is hot in every frame and keeps its incident
        // running (as a steam plume or a farmer's burn may for days). A hot
        // cloud drifts past it along row 2, one tile a minute, and off the
        // frame: each of its tiles touches the region, so it joins the
        // chimney's incident. Five minutes after the cloud left (2, 7), smoke
        // rises at (1, 7), seven tiles from the chimney: another fire, which
        // must start an incident of its own, not update the chimney's.
        let chimney = ((1, 0), 0.9);
        let mut frames: Vec<FrameScores> = (0..2).map(|_| wide_frame(&[chimney])).collect();
        frames.extend((1..8).map(|col| wide_frame(&[chimney, ((2, col), 0.9)])));
        frames.extend((0..4).map(|_| wide_frame(&[chimney])));
        let fire = wide_frame(&[chimney, ((1, 7), 0.9)]);
        frames.extend((0..3).map(|_| fire.clone()));
        let mut c = confirmer();
        let events = run(&mut c, &frames.iter().collect::<Vec<_>>());
        let started: Vec<_> = events
            .iter()
            .filter(|e| e.phase == IncidentPhase::Started)
            .collect();
        let frames_started: Vec<_> = started.iter().map(|e| e.frame.as_str()).collect();
        assert_eq!(frames_started, ["1", "14"], "{events:?}");
        let tile = |pos| {
            let v = fire
                .views
                .iter()
                .find(|v| fire.layout.grid_pos(v.view) == Some(pos));
            v.unwrap().rect
        };
        assert_eq!(started[1].boxes, [tile((1, 7))]);
        // The chimney's incident runs on, over the chimney's tiles again:
        // the cells the cloud crossed left its region once clear_s passed
        // without a view there at the keep threshold.
        assert_eq!(c.running(Class::Smoke), 2);
        let chimney_region: Vec<bool> = (0..24).map(|cell| cell % 8 <= 1).collect();
        assert_eq!(c.open_incidents()[0].state.cells, chimney_region);
        for e in events
            .iter()
            .filter(|e| e.incident_id == started[0].incident_id)
        {
            assert!(!e.boxes.contains(&tile((1, 7))), "{e:?}");
        }
    }

    #[test]
    fn a_fire_creeping_slower_than_clear_s_stays_one_incident_and_its_region_follows_it() {
        // A plume moves one tile every 4 minutes (longer than clear_s) along
        // row 1, its old tile going cold: each new tile is beside the one
        // hot a minute before, so it is the same fire all the way, and its
        // region comes to be only where it is now and was lately.
        let mut c = confirmer();
        let frames: Vec<FrameScores> = (0..32).map(|t| wide_frame(&[((1, t / 4), 0.9)])).collect();
        let events = run(&mut c, &frames.iter().collect::<Vec<_>>());
        let phases: Vec<_> = events.iter().map(|e| e.phase).collect();
        assert_eq!(phases.first(), Some(&IncidentPhase::Started));
        assert!(
            phases[1..].iter().all(|p| *p == IncidentPhase::Updated),
            "{events:?}"
        );
        // On (1, 7) since frame 28; (1, 6) last hot on frame 27, 4 minutes
        // back: its cell stays, beside (1, 7), and the column before it goes.
        let region: Vec<bool> = (0..24).map(|cell| cell % 8 >= 6).collect();
        assert_eq!(c.open_incidents()[0].state.cells, region);
        let tiles: Vec<bool> = (0..24).map(|cell| cell == 14 || cell == 15).collect();
        assert_eq!(c.open_incidents()[0].state.tiles, tiles);
    }

    #[test]
    fn a_fire_thinning_under_the_alarm_threshold_keeps_its_region_and_runs_on() {
        // Hot at (1, 1) for two frames, then for 15 minutes between the keep
        // threshold (0.35) and the alarm one (0.5): it runs on over the same
        // region, as before regions could shrink. (Had only views at the
        // alarm threshold held a region's cells, every cell would have left
        // 3 minutes after the last one and the fire ended 3 minutes later.)
        let mut c = confirmer();
        let hot = frame(&[((1, 1), 0.9)]);
        let thin = frame(&[((1, 1), 0.4)]);
        let frames: Vec<&FrameScores> = [&hot, &hot].into_iter().chain([&thin; 15]).collect();
        let events = run(&mut c, &frames);
        assert_eq!(phases(&events), [(IncidentPhase::Started, "1")]);
        let around: Vec<bool> = (0..12).map(|cell| cell % 4 <= 2).collect();
        assert_eq!(c.open_incidents()[0].state.cells, around);
    }

    /// `frame(hot)` with the whole-frame view scoring `whole` for smoke.
    fn frame_whole(whole: f32, hot: &[((usize, usize), f32)]) -> FrameScores {
        let mut f = frame(hot);
        assert_eq!(f.layout.grid_pos(f.views[0].view), None);
        f.views[0].smoke = whole;
        f
    }

    #[test]
    fn the_whole_frame_view_neither_holds_open_nor_swallows_a_localised_incident() {
        // A cloud at (0, 0) is confirmed; then it goes while the whole-frame
        // view is hot (smoke somewhere no tile catches yet). The cloud's
        // incident ends clear_s later, and its region has not become the
        // whole frame: smoke at (2, 3) starts its own incident at once, the
        // whole-frame view's two hot frames counting for it.
        let mut c = confirmer();
        let cloud = frame(&[((0, 0), 0.9)]);
        let hazy = frame_whole(0.9, &[]);
        let smoke = frame_whole(0.9, &[((2, 3), 0.9)]);
        let events = run(
            &mut c,
            &[&cloud, &cloud, &hazy, &hazy, &smoke, &smoke, &smoke],
        );
        let phases = phases(&events);
        assert_eq!(
            phases,
            [
                (IncidentPhase::Started, "1"),
                (IncidentPhase::Ended, "4"),
                (IncidentPhase::Started, "4")
            ],
            "{events:?}"
        );
        assert_ne!(events[0].incident_id, events[2].incident_id);
    }

    #[test]
    fn the_whole_frame_view_alone_starts_and_keeps_an_incident() {
        // No tile hot enough to say where: the whole-frame view starts one
        // incident and holds it while it stays over the keep threshold.
        let mut c = confirmer();
        let hazy = frame_whole(0.9, &[]);
        let thinning = frame_whole(0.4, &[]);
        let clear = frame(&[]);
        let events = run(
            &mut c,
            &[
                &hazy, &hazy, &thinning, &thinning, &thinning, &clear, &clear, &clear,
            ],
        );
        let phases = phases(&events);
        assert_eq!(
            phases,
            [(IncidentPhase::Started, "1"), (IncidentPhase::Ended, "7")],
            "{events:?}"
        );
        assert_eq!(events[0].boxes, [hazy.views[0].rect]);
    }

    #[test]
    fn after_a_whole_frame_incident_a_fire_on_a_tile_starts_within_the_cooldown() {
        // Haze lifts the whole-frame view for two frames and no tile: an
        // incident over the whole frame, ended at frame 4. Smoke on one tile
        // from frame 5 starts on its second hot frame, not after the
        // cooldown; the haze coming back in the cooldown starts nothing.
        let hazy = frame_whole(0.9, &[]);
        let clear = frame(&[]);
        let smoke = frame(&[((2, 3), 0.9)]);
        let mut c = confirmer();
        let events = run(
            &mut c,
            &[&hazy, &hazy, &clear, &clear, &clear, &smoke, &smoke],
        );
        assert_eq!(
            phases(&events),
            [
                (IncidentPhase::Started, "1"),
                (IncidentPhase::Ended, "4"),
                (IncidentPhase::Started, "6")
            ],
            "{events:?}"
        );
        assert_eq!(events[2].boxes, [smoke.views[c.grid.1 * 2 + 3 + 1].rect]);
        let mut c = confirmer();
        let events = run(
            &mut c,
            &[&hazy, &hazy, &clear, &clear, &clear, &hazy, &hazy, &hazy],
        );
        assert_eq!(
            phases(&events),
            [(IncidentPhase::Started, "1"), (IncidentPhase::Ended, "4")],
            "{events:?}"
        );
    }

    #[test]
    fn two_fires_confirmed_on_one_frame_start_two_incidents() {
        let mut c = confirmer();
        let both = frame(&[((0, 0), 0.9), ((2, 3), 0.8)]);
        let started = starts(&mut c, &[&both, &both]);
        assert_eq!(started.len(), 2, "{started:?}");
        assert_eq!(
            started[1].incident_id,
            format!("{}-2", started[0].incident_id)
        );
        assert_eq!(started[0].boxes, [both.views[1].rect]);
        assert!((started[1].score - 0.8).abs() < 1e-6);
        assert_eq!(c.running(Class::Smoke), 2);
    }

    #[test]
    fn a_cloud_back_on_its_tile_in_its_cooldown_starts_nothing_but_smoke_beside_it_does() {
        let config = ConfirmConfig {
            clear_s: 60.0,
            ..ConfirmConfig::default()
        };
        let cloud = frame(&[((0, 0), 0.9)]);
        let clear = frame(&[]);
        // The cloud at (0, 0), lifting the whole-frame view too, is
        // confirmed and ends; back on its tile within its cooldown it starts
        // nothing, and neither does the whole-frame view it lifts.
        let mut c = confirmer_with(config.clone());
        let lifting = frame_whole(0.9, &[((0, 0), 0.9)]);
        let events = run(
            &mut c,
            &[&cloud, &cloud, &clear, &lifting, &lifting, &lifting],
        );
        assert_eq!(
            phases(&events),
            [(IncidentPhase::Started, "1"), (IncidentPhase::Ended, "2")]
        );
        // Smoke on the tile beside where the cloud was is let through at
        // once, with its own tile's box; so is smoke in the corner beside a
        // cloud that was at (1, 1), though every neighbour of the corner lies
        // in the cloud's region: the corner tile itself was hot in two
        // frames 60 s apart.
        for (was, beside, view) in [((0, 0), (0, 1), 2), ((1, 1), (0, 0), 1)] {
            let mut c = confirmer_with(config.clone());
            let cloud = frame(&[(was, 0.9)]);
            let smoke = frame(&[(beside, 0.8)]);
            let events = run(&mut c, &[&cloud, &cloud, &clear, &smoke, &smoke]);
            assert_eq!(
                phases(&events),
                [
                    (IncidentPhase::Started, "1"),
                    (IncidentPhase::Ended, "2"),
                    (IncidentPhase::Started, "4")
                ],
                "cloud at {was:?}, smoke at {beside:?}"
            );
            assert_eq!(events[2].boxes, [smoke.views[view].rect]);
            assert!((events[2].score - 0.8).abs() < 1e-6);
        }
    }

    #[test]
    fn a_plume_that_moved_starts_on_the_tile_where_it_is() {
        // Hot at (1, 0), then two tiles on at (1, 2): only the cells between
        // persisted, and the start carries the hot tile's score and box.
        let mut c = confirmer();
        let before = frame(&[((1, 0), 0.9)]);
        let now = frame(&[((1, 2), 0.8)]);
        let started = starts(&mut c, &[&before, &now]);
        assert_eq!(started.len(), 1, "{started:?}");
        assert_eq!(started[0].frame, "1");
        assert!((started[0].score - 0.8).abs() < 1e-6, "{started:?}");
        let tile = now
            .views
            .iter()
            .find(|v| now.layout.grid_pos(v.view) == Some((1, 2)))
            .unwrap();
        assert_eq!(started[0].boxes, [tile.rect]);
    }

    #[test]
    fn fires_two_tiles_apart_start_incidents_over_separate_regions() {
        // A cold tile between them: two clusters, whose neighbourhoods share
        // the column between. Each incident has its own tile, and only that.
        let mut c = confirmer();
        let both = frame(&[((0, 0), 0.9), ((0, 2), 0.8)]);
        let started = starts(&mut c, &[&both, &both]);
        assert_eq!(started.len(), 2, "{started:?}");
        assert_eq!(started[0].boxes, [both.views[1].rect]);
        assert_eq!(started[1].boxes, [both.views[3].rect]);
        let open = c.open_incidents();
        let (a, b) = (&open[0].state.cells, &open[1].state.cells);
        assert!(!overlaps(a, b), "{a:?} {b:?}");
    }

    #[test]
    fn an_incident_never_takes_the_id_of_one_that_ended_in_its_second() {
        // An incident starts at t = 60 s and ends; the clock is then stepped
        // back and a fire elsewhere confirms in that same second. Its
        // incident.started must not share the ended incident's id, which the
        // outbox would drop as a repeat.
        let mut c = confirmer_with(ConfirmConfig {
            clear_s: 60.0,
            ..ConfirmConfig::default()
        });
        let cloud = frame(&[((0, 0), 0.9)]);
        let smoke = frame(&[((2, 3), 0.9)]);
        let clear = frame(&[]);
        let mut events = Vec::new();
        for (t, f) in [(0.0, &cloud), (60.0, &cloud), (120.0, &clear)] {
            events.extend(c.push(t, "ahead", f));
        }
        for (t, f) in [(0.5, &smoke), (60.5, &smoke)] {
            events.extend(c.push(t, "back", f));
        }
        let ids: Vec<_> = events
            .iter()
            .filter(|e| e.phase == IncidentPhase::Started)
            .map(|e| e.incident_id.clone())
            .collect();
        assert_eq!(ids.len(), 2, "{events:?}");
        assert_ne!(ids[0], ids[1]);
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
    fn an_id_started_before_a_restart_is_not_given_again() {
        let hot = frame(&[((1, 1), 0.9)]);
        let mut before = confirmer();
        let first = before.push(1_000.0, "f", &hot);
        assert!(first.is_empty());
        let started = before.push(1_060.0, "f", &hot);
        let id = started[0].incident_id.clone();
        // After a power cut the clock is back at the same saved time, and
        // the same fire confirms in the same second.
        let mut after = confirmer();
        after.remember_started(&[id.clone(), "cam-flame-x".into()]);
        after.push(1_000.0, "f", &hot);
        let again = after.push(1_060.0, "f", &hot);
        assert_eq!(again[0].incident_id, format!("{id}-2"));
    }

    #[test]
    fn an_incident_on_its_next_hot_frame_differs_only_in_per_frame_fields() {
        let mut c = confirmer();
        let hot = frame(&[((1, 1), 0.9)]);
        let hotter = frame(&[((1, 1), 0.95)]);
        c.push(1_000.0, "f", &hot);
        c.push(1_060.0, "f", &hot);
        let before = c.open_incidents();
        c.push(1_070.0, "f", &hotter);
        let after = c.open_incidents();
        assert_ne!(before, after);
        assert_eq!(
            before[0].without_per_frame_fields(),
            after[0].without_per_frame_fields()
        );
        // Its region growing is not per frame.
        c.push(1_080.0, "f", &frame(&[((1, 1), 0.9), ((1, 2), 0.9)]));
        assert_ne!(
            after[0].without_per_frame_fields(),
            c.open_incidents()[0].without_per_frame_fields()
        );
    }

    #[test]
    fn an_incident_resumed_within_clear_s_continues_under_its_id() {
        let (saved, id) = saved_after_a_start();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].incident_id(), id);
        assert_eq!(saved[0].last_kept(), 1_060.0);
        // The frames' size goes with it, for the camera to expect.
        assert_eq!(saved[0].frame_size(), Some((52, 40)));
        let mut c = confirmer();
        c.resume(saved);
        assert_eq!(c.running(Class::Smoke), 1);
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
    fn an_incident_no_frame_will_end_ends_after_its_last_event_with_its_boxes() {
        let mut c = confirmer();
        let hot = frame(&[((1, 1), 0.9)]);
        let started: Vec<_> = (0..2)
            .flat_map(|t| c.push(1_000.0 + t as f64 * 60.0, "f", &hot))
            .collect();
        let saved: Vec<OpenIncident> =
            serde_json::from_str(&serde_json::to_string(&c.open_incidents()).unwrap()).unwrap();
        let ended = saved[0].ended_without_frame("cam-old", 5_000.0);
        assert_eq!(ended.phase, IncidentPhase::Ended);
        assert_eq!(ended.incident_id, started[0].incident_id);
        assert_eq!(ended.id, format!("{}.1", started[0].incident_id));
        assert_eq!(ended.camera, "cam-old");
        assert_eq!(ended.time, rfc3339(5_000.0));
        assert_eq!(ended.started_at, started[0].started_at);
        assert_eq!(ended.boxes, started[0].boxes);
        assert_eq!(ended.peak_score, 0.9);
        assert!(ended.score.is_nan(), "no frame was scored: {}", ended.score);
        assert!(ended.frame.is_empty());
    }

    #[test]
    fn an_incident_saved_before_its_region_could_shrink_resumes() {
        // State saved by a version without `kept_at`: its region counts as
        // looked over on its last hot frame, and it continues and ends as
        // any resumed incident does.
        let (saved, id) = saved_after_a_start();
        let mut json = serde_json::to_value(&saved).unwrap();
        let state = json[0]["state"].as_object_mut().unwrap();
        assert!(state.remove("kept_at").is_some());
        assert!(json[0]
            .as_object_mut()
            .unwrap()
            .remove("frame_size")
            .is_some());
        let saved: Vec<OpenIncident> = serde_json::from_value(json).unwrap();
        assert_eq!(saved[0].frame_size(), None);
        let mut c = confirmer();
        c.resume(saved);
        assert!(c.push(1_180.0, "back", &frame(&[((1, 1), 0.9)])).is_empty());
        assert_eq!(c.open_incidents()[0].state.cells, {
            let mut around = vec![true; 12];
            around[3] = false;
            around[7] = false;
            around[11] = false;
            around
        });
        let mut ended = Vec::new();
        for t in 1..=3 {
            ended.extend(c.push(1_180.0 + t as f64 * 60.0, "clear", &frame(&[])));
        }
        assert_eq!(phases(&ended), [(IncidentPhase::Ended, "clear")]);
        assert_eq!(ended[0].incident_id, id);
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
    fn a_clock_stepped_forward_mid_fire_neither_ends_it_nor_loses_its_start_history() {
        let hot = frame(&[((1, 1), 0.9)]);
        // Under the keep threshold (0.35) for one frame: smoke thinning.
        let thin = frame(&[((1, 1), 0.3)]);
        let day = 86_400.0;
        let feed = |stepped: bool| {
            let mut c = confirmer();
            let mut events = Vec::new();
            for t in 0..2 {
                events.extend(c.push(1_000.0 + t as f64 * 60.0, "before", &hot));
            }
            // Network time steps the clock a day forward between frames.
            if stepped {
                c.clock_stepped(day);
            }
            events.extend(c.push(1_070.0 + day, "after", &thin));
            events.extend(c.push(1_130.0 + day, "after", &hot));
            (events, c)
        };
        let phases = |events: &[IncidentEvent]| events.iter().map(|e| e.phase).collect::<Vec<_>>();
        // Without being told, the confirmer takes the day for a camera
        // outage, which does not end the fire (before outages were, it saw a
        // day with no hot frame and ended it), but its start reads a day
        // before the times of its events.
        let (events, c) = feed(false);
        assert!(!phases(&events).contains(&IncidentPhase::Ended));
        assert_eq!(c.classes[0].active[0].started_at, 1_060.0);
        let (events, c) = feed(true);
        assert!(
            !phases(&events).contains(&IncidentPhase::Ended),
            "{events:?}"
        );
        // Its start reads on the new clock, as the events' times do, and
        // its region is whole: the day the clock jumped was no day without
        // smoke on its cells.
        assert_eq!(c.classes[0].active[0].started_at, 1_060.0 + day);
        let around: Vec<bool> = (0..12).map(|cell| cell % 4 <= 2).collect();
        assert_eq!(c.classes[0].active[0].cells, around);

        // A start half confirmed before the step completes after it: one hot
        // frame, the step, and a second 60 real seconds later.
        let mut c = confirmer();
        assert!(c.push(1_000.0, "before", &hot).is_empty());
        c.clock_stepped(day);
        let started = c.push(1_060.0 + day, "after", &hot);
        assert_eq!(phases(&started), [IncidentPhase::Started]);
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
