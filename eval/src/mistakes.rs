//! The classifier's most confident mistakes, as a grid of the images it got
//! wrong with their true and predicted classes: where a reader can see for
//! themselves whether the model or the label is wrong (label noise).

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use sciflow_ingest::Loader;

use crate::figures::{render_bitmap, Figure, FONT};
use crate::{Error, Result};

/// One mistake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mistake {
    /// The sample.
    pub sample_id: String,
    /// Its label.
    pub true_class: String,
    /// What the model said.
    pub predicted_class: String,
    /// The model's probability for what it said.
    pub confidence: f32,
}

/// The `n` wrong predictions the model was surest of, surest first:
/// indices into the scored samples.
pub fn most_confident(
    labels: &[i64],
    predicted: &[usize],
    probs: &[Vec<f32>],
    n: usize,
) -> Vec<usize> {
    let mut wrong: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i] as usize != predicted[i])
        .collect();
    let conf = |i: usize| probs[i].get(predicted[i]).copied().unwrap_or(0.0);
    wrong.sort_by(|&a, &b| conf(b).total_cmp(&conf(a)).then(a.cmp(&b)));
    wrong.truncate(n);
    wrong
}

/// A grid of stamps with captions.
struct Grid {
    title: String,
    /// (channels, height, width, values, caption) per stamp.
    stamps: Vec<(usize, usize, usize, Vec<f32>, String)>,
}

const COLUMNS: usize = 4;
/// Width of a grid cell: a stamp of at least 128 px and its caption.
const CELL: usize = 170;

/// Pixels per stamp pixel: stamps are shown at least 128 px wide.
fn scale(w: usize) -> usize {
    (128 / w.max(1)).max(1)
}

impl Figure for Grid {
    fn size(&self) -> (u32, u32) {
        let (h, w) = self.stamps.first().map_or((64, 64), |s| (s.1, s.2));
        let rows = self.stamps.len().div_ceil(COLUMNS).max(1);
        let cell = CELL.max(w * scale(w) + 16);
        (
            (COLUMNS * cell + 16) as u32,
            (50 + rows * (h * scale(w) + 62)) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        root.draw(&Text::new(self.title.clone(), (16, 14), (FONT, 16)))
            .map_err(e)?;
        for (k, (c, h, w, values, caption)) in self.stamps.iter().enumerate() {
            let sc = scale(*w);
            let cell = CELL.max(w * sc + 16);
            let (x0, y0) = (
                16 + (k % COLUMNS) * cell,
                50 + (k / COLUMNS) * (h * sc + 62),
            );
            // Each band stretched to its own range: standardised values
            // have no fixed scale.
            let plane = h * w;
            let ranges: Vec<(f32, f32)> = (0..*c)
                .map(|b| {
                    values[b * plane..(b + 1) * plane]
                        .iter()
                        .filter(|v| v.is_finite())
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        })
                })
                .collect();
            let level = |b: usize, i: usize| -> u8 {
                let (lo, hi) = ranges[b];
                let v = values[b * plane + i];
                if !(v.is_finite() && hi > lo) {
                    return 0;
                }
                (((v - lo) / (hi - lo)) * 255.0).round().clamp(0.0, 255.0) as u8
            };
            for y in 0..*h {
                for x in 0..*w {
                    let i = y * w + x;
                    let rgb = if *c >= 3 {
                        RGBColor(level(0, i), level(1, i), level(2, i))
                    } else {
                        let g = level(0, i);
                        RGBColor(g, g, g)
                    };
                    root.draw(&Rectangle::new(
                        [
                            ((x0 + x * sc) as i32, (y0 + y * sc) as i32),
                            ((x0 + (x + 1) * sc) as i32, (y0 + (y + 1) * sc) as i32),
                        ],
                        rgb.filled(),
                    ))
                    .map_err(e)?;
                }
            }
            for (j, line) in caption.lines().enumerate() {
                root.draw(&Text::new(
                    line.to_string(),
                    (x0 as i32, (y0 + h * sc + 6 + 14 * j) as i32),
                    (FONT, 12),
                ))
                .map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Writes `mistakes.png` (the grid) and `mistakes.json` into `out` for the
/// samples at `chosen` (indices in the order `loader` gives them).
pub fn write(out: &Path, loader: &Loader, chosen: &[usize], mistakes: &[Mistake]) -> Result<()> {
    let shape = &loader.info().x.sample_shape;
    let (c, h, w) = match shape.as_slice() {
        [c, h, w] => (*c, *h, *w),
        other => {
            return Err(Error::Mismatch(format!(
                "mistakes grid: expected image samples (channels, height, width), found {other:?}"
            )))
        }
    };
    let len = c * h * w;
    let mut stamps: Vec<Option<Vec<f32>>> = vec![None; chosen.len()];
    let mut index = 0usize;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let n = batch.shape.first().copied().unwrap_or(0);
        for j in 0..n {
            if let Some(slot) = chosen.iter().position(|&k| k == index + j) {
                stamps[slot] = Some(batch.x[j * len..(j + 1) * len].to_vec());
            }
        }
        index += n;
    }
    let grid = Grid {
        title: format!("The {} most confident mistakes", mistakes.len()),
        stamps: stamps
            .into_iter()
            .zip(mistakes)
            .filter_map(|(s, m)| {
                s.map(|v| {
                    let id: String = m.sample_id.chars().take(22).collect();
                    (
                        c,
                        h,
                        w,
                        v,
                        format!(
                            "{id}\ntrue {}\nsaid {} ({:.2})",
                            m.true_class, m.predicted_class, m.confidence
                        ),
                    )
                })
            })
            .collect(),
    };
    render_bitmap(out, "mistakes", &grid)?;
    sciflow_ingest::files::write_atomic(
        &out.join("mistakes.json"),
        &serde_json::to_vec_pretty(mistakes).expect("mistakes serialise"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_surest_wrong_predictions_come_first() {
        let labels = [0, 1, 0, 1, 1];
        let predicted = [1, 1, 1, 0, 0];
        let probs = vec![
            vec![0.4, 0.6],
            vec![0.1, 0.9],
            vec![0.05, 0.95],
            vec![0.7, 0.3],
            vec![0.55, 0.45],
        ];
        assert_eq!(most_confident(&labels, &predicted, &probs, 3), [2, 3, 0]);
        assert_eq!(
            most_confident(&labels, &predicted, &probs, 10),
            [2, 3, 0, 4]
        );
    }
}
