//! Ignore-masks: parts of a camera's view that must never raise an alarm
//! (a chimney, a road with dust, the tower's own light).
//!
//! A mask is a list of rectangles and polygons in frame pixel coordinates. It
//! is rasterised once per frame size; masked pixels are painted with the mean
//! colour of the unmasked rest of the frame before views are cut, and a tile
//! that is mostly masked is not scored at all.

use std::fmt;
use std::str::FromStr;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::views::Rect;

/// One masked region. In TOML: `{ rect = [x, y, w, h] }` or
/// `{ polygon = [[x, y], [x, y], [x, y]] }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum IgnoreShape {
    Rect([u32; 4]),
    Polygon(Vec<[f32; 2]>),
}

impl IgnoreShape {
    fn contains(&self, x: f32, y: f32) -> bool {
        match self {
            IgnoreShape::Rect([rx, ry, rw, rh]) => {
                // Summed in u64: a rect from the config may reach past u32.
                let end = |v: u32, len: u32| (u64::from(v) + u64::from(len)) as f32;
                x >= *rx as f32 && y >= *ry as f32 && x < end(*rx, *rw) && y < end(*ry, *rh)
            }
            IgnoreShape::Polygon(points) => point_in_polygon(points, x, y),
        }
    }

    /// Checks the shape is usable, saying what is wrong when it is not.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            IgnoreShape::Rect([_, _, w, h]) if *w == 0 || *h == 0 => {
                Err("an ignore rect needs a width and height above 0".into())
            }
            IgnoreShape::Polygon(points) if points.len() < 3 => {
                Err("an ignore polygon needs at least 3 points".into())
            }
            IgnoreShape::Polygon(points) if points.iter().flatten().any(|v| !v.is_finite()) => {
                Err("an ignore polygon has a coordinate that is not a number".into())
            }
            _ => Ok(()),
        }
    }
}

/// Parses the command-line forms `x,y,w,h` (a rectangle) and
/// `x1,y1 x2,y2 x3,y3 ...` (a polygon).
impl FromStr for IgnoreShape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = if s.trim().contains(' ') {
            let points = s
                .split_whitespace()
                .map(|p| parse_numbers::<f32>(p, 2).map(|v| [v[0], v[1]]))
                .collect::<Result<Vec<_>, _>>()?;
            IgnoreShape::Polygon(points)
        } else {
            let v = parse_numbers::<u32>(s, 4)?;
            IgnoreShape::Rect([v[0], v[1], v[2], v[3]])
        };
        shape.validate()?;
        Ok(shape)
    }
}

fn parse_numbers<T: FromStr>(s: &str, n: usize) -> Result<Vec<T>, String> {
    let v = s
        .split(',')
        .map(|p| p.trim().parse::<T>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("'{s}' is not {n} comma-separated numbers"))?;
    if v.len() != n {
        return Err(format!("'{s}' has {} numbers, expected {n}", v.len()));
    }
    Ok(v)
}

impl fmt::Display for IgnoreShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreShape::Rect([x, y, w, h]) => write!(f, "{x},{y},{w},{h}"),
            IgnoreShape::Polygon(points) => {
                let parts: Vec<String> = points.iter().map(|[x, y]| format!("{x},{y}")).collect();
                write!(f, "{}", parts.join(" "))
            }
        }
    }
}

/// Even-odd rule, tested at the pixel centre the caller passes.
fn point_in_polygon(points: &[[f32; 2]], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = points.len() - 1;
    for i in 0..points.len() {
        let [xi, yi] = points[i];
        let [xj, yj] = points[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// The shapes of one camera, rasterised for the frame size last seen.
#[derive(Clone, Debug, Default)]
pub struct IgnoreMask {
    shapes: Vec<IgnoreShape>,
    size: (u32, u32),
    pixels: Vec<bool>,
    /// Whose shapes, for the warnings of [`IgnoreMask::prepare`].
    owner: String,
}

/// A share of the frame over which masked shapes are worth a warning: a
/// mask meant for a chimney that blinds most of the view is a mistake
/// (shapes given for another resolution), and nothing else would say so.
const MOSTLY_MASKED: f32 = 0.5;

impl IgnoreMask {
    pub fn new(shapes: Vec<IgnoreShape>) -> IgnoreMask {
        IgnoreMask {
            shapes,
            size: (0, 0),
            pixels: Vec::new(),
            owner: String::new(),
        }
    }

    /// Names whose shapes these are (`camera west`) in its warnings.
    pub fn owned_by(mut self, owner: &str) -> IgnoreMask {
        self.owner = owner.to_string();
        self
    }

    /// What looks wrong with the shapes at the size last prepared: a shape
    /// that masks no pixel (outside the frame), and a mask over most of it.
    pub fn problems(&self) -> Vec<String> {
        let (width, height) = self.size;
        let mut problems = Vec::new();
        for shape in &self.shapes {
            let touches = (0..height)
                .any(|y| (0..width).any(|x| shape.contains(x as f32 + 0.5, y as f32 + 0.5)));
            if !touches {
                problems.push(format!(
                    "ignore shape \"{shape}\" lies outside the {width}x{height} frame and masks nothing (shapes are in this camera's frame pixels)"
                ));
            }
        }
        let masked = self.pixels.iter().filter(|m| **m).count();
        let share = masked as f32 / self.pixels.len().max(1) as f32;
        if share > MOSTLY_MASKED {
            problems.push(format!(
                "the ignore shapes mask {:.0} % of the {width}x{height} frame: nothing there can raise an alarm (shapes are in this camera's frame pixels)",
                share * 100.0
            ));
        }
        problems
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Rasterises the shapes for a `width x height` frame, if not done
    /// already; logs [`IgnoreMask::problems`] then, and a change of size
    /// (shapes in pixels of the old size may no longer cover what they did).
    pub fn prepare(&mut self, width: u32, height: u32) {
        if self.size == (width, height) {
            return;
        }
        let who = if self.owner.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.owner)
        };
        if self.size != (0, 0) && !self.shapes.is_empty() {
            tracing::warn!(
                "{who}frames are now {width}x{height}, not {}x{}: check that the ignore shapes still cover what they should",
                self.size.0,
                self.size.1
            );
        }
        self.size = (width, height);
        self.pixels.clear();
        self.pixels.reserve(width as usize * height as usize);
        for y in 0..height {
            for x in 0..width {
                let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
                self.pixels
                    .push(self.shapes.iter().any(|s| s.contains(cx, cy)));
            }
        }
        for problem in self.problems() {
            tracing::warn!("{who}{problem}");
        }
    }

    /// Fraction of `rect` that is masked. Call [`IgnoreMask::prepare`] first.
    pub fn coverage(&self, rect: &Rect) -> f32 {
        if self.shapes.is_empty() || rect.w == 0 || rect.h == 0 {
            return 0.0;
        }
        let width = self.size.0 as usize;
        let mut masked = 0usize;
        for y in rect.y..rect.y + rect.h {
            let row = y as usize * width;
            masked += self.pixels[row + rect.x as usize..row + (rect.x + rect.w) as usize]
                .iter()
                .filter(|m| **m)
                .count();
        }
        masked as f32 / (rect.w as f32 * rect.h as f32)
    }

    /// Copies `frame` into `out` with masked pixels painted in the mean colour
    /// of the unmasked ones. Call [`IgnoreMask::prepare`] first.
    pub fn apply(&self, frame: &RgbImage, out: &mut RgbImage) {
        out.clone_from(frame);
        let mut sum = [0u64; 3];
        let mut count = 0u64;
        for (px, masked) in frame.pixels().zip(&self.pixels) {
            if !masked {
                for c in 0..3 {
                    sum[c] += u64::from(px[c]);
                }
                count += 1;
            }
        }
        let fill = if count == 0 {
            [128u8; 3]
        } else {
            sum.map(|s| ((s + count / 2) / count) as u8)
        };
        for (px, masked) in out.pixels_mut().zip(&self.pixels) {
            if *masked {
                px.0 = fill;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rect past u32's end (a typo in a config) is valid and covers
    /// nothing in a frame; its right edge once overflowed (found by reading
    /// the fuzz targets' reach).
    #[test]
    fn a_rect_reaching_past_u32_covers_nothing_and_does_not_overflow() {
        let far: IgnoreShape = "4294967295,0,10,10".parse().unwrap();
        assert_eq!(far.validate(), Ok(()));
        assert!(!far.contains(5.0, 5.0));
        let tall = IgnoreShape::Rect([0, 10, 4, u32::MAX]);
        assert!(tall.contains(1.0, 20.0));
        assert!(!tall.contains(1.0, 5.0));
    }

    #[test]
    fn parses_rects_and_polygons() {
        assert_eq!("1,2,3,4".parse(), Ok(IgnoreShape::Rect([1, 2, 3, 4])));
        assert_eq!(
            "0,0 10,0 0,10".parse(),
            Ok(IgnoreShape::Polygon(vec![
                [0.0, 0.0],
                [10.0, 0.0],
                [0.0, 10.0]
            ]))
        );
        assert!("1,2,3"
            .parse::<IgnoreShape>()
            .unwrap_err()
            .contains("expected 4"));
        assert!("1,2,0,4".parse::<IgnoreShape>().is_err());
        assert!("0,0 1,1"
            .parse::<IgnoreShape>()
            .unwrap_err()
            .contains("3 points"));
        assert!("a,b,c,d".parse::<IgnoreShape>().is_err());
    }

    #[test]
    fn coverage_and_fill_follow_the_shapes() {
        let mut mask = IgnoreMask::new(vec![
            IgnoreShape::Rect([0, 0, 2, 4]),
            IgnoreShape::Polygon(vec![[4.0, 0.0], [8.0, 0.0], [8.0, 4.0]]),
        ]);
        mask.prepare(8, 4);
        let whole = Rect {
            x: 0,
            y: 0,
            w: 8,
            h: 4,
        };
        // 8 rect pixels + 10 triangle pixels (centres on or above its diagonal).
        assert!(
            (mask.coverage(&whole) - 18.0 / 32.0).abs() < 1e-6,
            "{}",
            mask.coverage(&whole)
        );
        assert_eq!(
            mask.coverage(&Rect {
                x: 0,
                y: 0,
                w: 2,
                h: 2
            }),
            1.0
        );

        let frame = RgbImage::from_fn(8, 4, |x, _| {
            if x < 2 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([10, 20, 30])
            }
        });
        let mut out = RgbImage::new(1, 1);
        mask.apply(&frame, &mut out);
        assert_eq!(out.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(out.get_pixel(7, 0).0, [10, 20, 30]);
        assert_eq!(out.get_pixel(3, 3).0, [10, 20, 30]);
    }

    #[test]
    fn shapes_outside_the_frame_or_over_most_of_it_are_problems() {
        // Shapes written for a 1920x1080 camera, on a 640x360 one.
        let mut mask = IgnoreMask::new(vec![
            "1500,900,200,100".parse().unwrap(),
            "0,0,600,300".parse().unwrap(),
        ]);
        mask.prepare(640, 360);
        let problems = mask.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("1500,900,200,100") && problems[0].contains("outside"));
        assert!(problems[1].contains("78 %"), "{problems:?}");
    }
}
