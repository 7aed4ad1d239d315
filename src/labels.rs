//! Ground-truth labels for replayed footage, and the scores that compare a
//! replay against them.
//!
//! A labels file is CSV with a header holding at least `frame,smoke,flame`
//! and optionally `unix_time`; other columns are ignored. `smoke` and `flame`
//! are 1, 0 or -1 (unknown: left out of every metric).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::model::{Class, PerClass};

/// One frame's truth. `None` means unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameLabel {
    pub truth: PerClass<Option<bool>>,
    pub unix_time: Option<f64>,
}

impl FrameLabel {
    pub fn positive(&self) -> bool {
        Class::ALL.iter().any(|&c| self.truth.get(c) == Some(true))
    }
}

/// The lines of a labels file, as an editor numbers them, at the records
/// the CSV reader gives. Blank lines count: the reader skips them, and the
/// record's index, like the reader's own line count, left them out, so an
/// error named a line above the one at fault. Counted on from the record
/// before (a file of a day's frames at 1 fps is 86,400 rows), with a lone
/// `\r` (an old spreadsheet's export) a line end as for the reader.
struct Lines<'a> {
    input: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(input: &'a [u8]) -> Lines<'a> {
        Lines {
            input,
            at: 0,
            line: 1,
        }
    }

    /// The line `record` starts on.
    fn of(&mut self, record: &csv::StringRecord) -> usize {
        // The position is where the reader took up reading: before the
        // blank lines it skipped.
        let mut start = record.position().map_or(0, |p| p.byte() as usize);
        while matches!(self.input.get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        let start = start.min(self.input.len()).max(self.at);
        let skipped = &self.input[self.at..start];
        self.line += skipped
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || b == b'\r' && skipped.get(i + 1) != Some(&b'\n'))
            .count();
        self.at = start;
        self.line
    }
}

/// Labels keyed by frame file name.
#[derive(Debug, Default)]
pub struct Labels {
    by_frame: HashMap<String, FrameLabel>,
}

impl Labels {
    pub fn read(path: &Path) -> Result<Labels> {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read labels {}", path.display()))?;
        Labels::from_bytes(&text, path)
    }

    /// Reads a labels file's contents; `path` names it in error messages.
    pub fn from_bytes(input: &[u8], path: &Path) -> Result<Labels> {
        // Flexible: a spreadsheet's export gives a row without its empty
        // last fields, or with a notes column's extra one; a field missing
        // reads as empty, as unknown.
        // A spreadsheet's "CSV UTF-8" export starts with a byte-order mark,
        // which would be part of the first column's name.
        let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
        let mut lines = Lines::new(input);
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let headers = reader
            .headers()
            .with_context(|| format!("cannot read the header of {}", path.display()))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h.trim() == name);
        let (Some(frame), Some(smoke), Some(flame)) =
            (column("frame"), column("smoke"), column("flame"))
        else {
            bail!(
                "{} needs a header with the columns frame,smoke,flame (and optionally unix_time); it has: {}",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(",")
            );
        };
        let unix_time = column("unix_time");
        let mut by_frame = HashMap::new();
        // The line each frame was labelled on: a second label of the same
        // frame is refused, where keeping the last one silently turned a
        // fire frame into a false alarm in the summary.
        let mut line_of: HashMap<String, usize> = HashMap::new();
        for record in reader.records() {
            let record = record.with_context(|| format!("{} is malformed CSV", path.display()))?;
            let line = lines.of(&record);
            let field = |ix: usize| record.get(ix).unwrap_or("").trim();
            // The empty rows a spreadsheet leaves at the end (`,,,`).
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            if field(frame).is_empty() {
                bail!(
                    "{} line {line}: no frame name (column frame is empty)",
                    path.display()
                );
            }
            let truth = |ix: usize, name: &str| -> Result<Option<bool>> {
                match field(ix) {
                    "1" => Ok(Some(true)),
                    "0" => Ok(Some(false)),
                    "-1" | "" => Ok(None),
                    other => bail!(
                        "{} line {line}: {name} is '{other}', expected 1, 0 or -1 (unknown)",
                        path.display()
                    ),
                }
            };
            let time = match unix_time.map(field) {
                None | Some("") => None,
                Some(t) => {
                    let seconds = t
                        .parse::<f64>()
                        .ok()
                        .filter(|t| t.is_finite())
                        .with_context(|| {
                            format!(
                                "{} line {line}: unix_time '{t}' is not a number",
                                path.display()
                            )
                        })?;
                    // 1e11 s is the year 5138; 13-digit milliseconds since
                    // 1970 are over it, and would time frames 1000 times too
                    // far apart without a word.
                    if seconds.abs() >= 1e11 {
                        bail!(
                            "{} line {line}: unix_time {t} is not seconds since 1970 (milliseconds? divide by 1000)",
                            path.display()
                        );
                    }
                    Some(seconds)
                }
            };
            let label = FrameLabel {
                truth: PerClass {
                    smoke: truth(smoke, "smoke")?,
                    flame: truth(flame, "flame")?,
                },
                unix_time: time,
            };
            let name = field(frame).to_string();
            if let Some(first) = line_of.insert(name.clone(), line) {
                bail!(
                    "{} lines {first} and {line} both label {name:?}: keep one",
                    path.display()
                );
            }
            by_frame.insert(name, label);
        }
        // `get` finds a frame by its name, then by its name without the
        // extension: both in the file and one of them is never read.
        for (name, line) in &line_of {
            let stem = Some(Path::new(name))
                .filter(|p| crate::footage::is_image(p))
                .and_then(|p| p.file_stem()?.to_str());
            if let Some((stem, first)) = stem
                .filter(|stem| stem != name)
                .and_then(|stem| Some((stem, line_of.get(stem)?)))
            {
                let (a, b) = ((*first).min(*line), (*first).max(*line));
                bail!(
                    "{} lines {a} and {b} both label {name:?} (one as {stem:?}, without its extension): keep one",
                    path.display()
                );
            }
        }
        Ok(Labels { by_frame })
    }

    /// The label of a frame by file name, or by name without extension.
    pub fn get(&self, frame: &str) -> Option<&FrameLabel> {
        self.find(frame).map(|(_, label)| label)
    }

    /// As [`Labels::get`], with the name the label gives the frame.
    pub fn find(&self, frame: &str) -> Option<(&str, &FrameLabel)> {
        self.by_frame
            .get_key_value(frame)
            .or_else(|| {
                let stem = Path::new(frame).file_stem()?.to_str()?;
                self.by_frame.get_key_value(stem)
            })
            .map(|(name, label)| (name.as_str(), label))
    }

    /// Every frame name with its label, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FrameLabel)> {
        self.by_frame
            .iter()
            .map(|(frame, label)| (frame.as_str(), label))
    }

    pub fn len(&self) -> usize {
        self.by_frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_frame.is_empty()
    }
}

/// Frame-level precision, recall and F1 of one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub true_positives: u32,
    pub false_positives: u32,
    pub false_negatives: u32,
    pub true_negatives: u32,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

/// Counts predictions against truth; frames with unknown truth are left out.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfusionCounter {
    tp: u32,
    fp: u32,
    fn_: u32,
    tn: u32,
}

impl ConfusionCounter {
    pub fn add(&mut self, predicted: bool, truth: Option<bool>) {
        match (predicted, truth) {
            (_, None) => {}
            (true, Some(true)) => self.tp += 1,
            (true, Some(false)) => self.fp += 1,
            (false, Some(true)) => self.fn_ += 1,
            (false, Some(false)) => self.tn += 1,
        }
    }

    pub fn metrics(&self) -> ClassMetrics {
        let ratio = |a: u32, b: u32| (b > 0).then(|| f64::from(a) / f64::from(b));
        let precision = ratio(self.tp, self.tp + self.fp);
        let recall = ratio(self.tp, self.tp + self.fn_);
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        ClassMetrics {
            true_positives: self.tp,
            false_positives: self.fp,
            false_negatives: self.fn_,
            true_negatives: self.tn,
            precision,
            recall,
            f1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_labels_and_reports_bad_lines() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "frame,smoke,flame,offset_s,unix_time\nframe_0000.jpg,0,-1,-60,100\nframe_0001.jpg,1,0,0,160").unwrap();
        let labels = Labels::read(file.path()).unwrap();
        assert_eq!(labels.len(), 2);
        let l = labels.get("frame_0001.jpg").unwrap();
        assert_eq!(
            l.truth,
            PerClass {
                smoke: Some(true),
                flame: Some(false)
            }
        );
        assert_eq!(l.unix_time, Some(160.0));
        assert_eq!(labels.get("frame_0000.jpg").unwrap().truth.flame, None);

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "frame,smoke,flame\nframe_0000.jpg,yes,0").unwrap();
        let err = format!("{:#}", Labels::read(bad.path()).unwrap_err());
        assert!(err.contains("line 2") && err.contains("smoke"), "{err}");
        // Blank lines count, with any line ends; a byte-order mark is no
        // part of the header.
        for text in [
            "frame,smoke,flame\na.jpg,1,0\n\n\nb.jpg,yes,0\n",
            "frame,smoke,flame\r\na.jpg,1,0\r\n\r\n\r\nb.jpg,yes,0\r\n",
            "frame,smoke,flame\ra.jpg,1,0\r\r\rb.jpg,yes,0\r",
            "\u{feff}frame,smoke,flame\na.jpg,1,0\n\n\nb.jpg,yes,0\n",
        ] {
            let err = format!(
                "{:#}",
                Labels::from_bytes(text.as_bytes(), Path::new("l.csv")).unwrap_err()
            );
            assert!(err.contains("line 5: smoke is 'yes'"), "{text:?}: {err}");
        }

        for (rows, lines) in [
            ("a.jpg,1,0\nb.jpg,1,0\na.jpg,0,0", "lines 2 and 4"),
            // Blank lines count, as in an editor.
            ("\na.jpg,1,0\n\nb.jpg,1,0\na.jpg,0,0", "lines 3 and 6"),
            ("a.jpg,1,0\nb.jpg,1,0\na,0,0", "lines 2 and 4"),
            ("a,1,0\na.jpg,0,0", "lines 2 and 3"),
        ] {
            let mut twice = tempfile::NamedTempFile::new().unwrap();
            writeln!(twice, "frame,smoke,flame\n{rows}").unwrap();
            let err = format!("{:#}", Labels::read(twice.path()).unwrap_err());
            assert!(err.contains(lines) && err.contains("a.jpg"), "{err}");
        }
        // Two frames, `9999999999.jpg` and `9999999999.5.jpg`, by their
        // names without extensions: no clash.
        let mut two = tempfile::NamedTempFile::new().unwrap();
        writeln!(two, "frame,smoke,flame\n9999999999,1,0\n9999999999.5,0,0").unwrap();
        assert_eq!(Labels::read(two.path()).unwrap().len(), 2);

        // As a spreadsheet saves it: a row without its empty last field,
        // one with a notes field more, and empty rows at the end.
        let mut saved = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            saved,
            "frame,smoke,flame,unix_time\na.jpg,1,0\nb.jpg,0,0,160,clouds\n,,,\n,,,"
        )
        .unwrap();
        let labels = Labels::read(saved.path()).unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.get("a.jpg").unwrap().unix_time, None);
        assert_eq!(labels.get("b.jpg").unwrap().unix_time, Some(160.0));
        let mut nameless = tempfile::NamedTempFile::new().unwrap();
        writeln!(nameless, "frame,smoke,flame\na.jpg,1,0\n,1,0").unwrap();
        let err = format!("{:#}", Labels::read(nameless.path()).unwrap_err());
        assert!(err.contains("line 3: no frame name"), "{err}");

        let mut no_header = tempfile::NamedTempFile::new().unwrap();
        writeln!(no_header, "name,fire\na.jpg,1").unwrap();
        let err = format!("{:#}", Labels::read(no_header.path()).unwrap_err());
        assert!(err.contains("frame,smoke,flame"), "{err}");
    }

    #[test]
    fn metrics_ignore_unknown_truth() {
        let mut c = ConfusionCounter::default();
        for (p, t) in [
            (true, Some(true)),
            (true, Some(false)),
            (false, Some(true)),
            (true, None),
            (false, Some(false)),
        ] {
            c.add(p, t);
        }
        let m = c.metrics();
        assert_eq!(
            (
                m.true_positives,
                m.false_positives,
                m.false_negatives,
                m.true_negatives
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(m.precision, Some(0.5));
        assert_eq!(m.f1, Some(0.5));
        assert_eq!(ConfusionCounter::default().metrics().f1, None);
    }
}
