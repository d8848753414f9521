//! The scaling results this project reproduces, as published, and the
//! performance model's predictions at the published GPU counts.
//!
//! Numbers are those reported for the HAL (V100, NVLink within a node, EDR
//! InfiniBand between nodes), Bridges-AI and Summit runs: ResNet-50 per-GPU
//! throughput at 2-64 GPUs, and times to train for ResNet-50, AI-GW and
//! AI-DES. They are data, kept exactly as published, and never adjusted to
//! fit the model; [`predict_at`] says how far the model is from each.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::figures::{render_with, Figure, FONT};
use crate::perfmodel::{fit, Measured, StepModel};
use crate::{Error, Result};

/// One published measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// GPUs used.
    pub gpus: usize,
    /// Images (samples) per second per GPU, when reported.
    pub per_gpu_throughput: Option<f64>,
    /// Hours to train, when reported.
    pub hours: Option<f64>,
}

/// ResNet-50 on HAL: per-GPU throughput at 2-64 V100s (per-GPU batch 208),
/// 41 h on one V100 and about 1 h (1 h 08 min) on 64.
pub const RESNET50_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(41.0),
    },
    Published {
        gpus: 2,
        per_gpu_throughput: Some(791.0),
        hours: None,
    },
    Published {
        gpus: 4,
        per_gpu_throughput: Some(751.0),
        hours: None,
    },
    Published {
        gpus: 8,
        per_gpu_throughput: Some(726.0),
        hours: None,
    },
    Published {
        gpus: 16,
        per_gpu_throughput: Some(704.0),
        hours: None,
    },
    Published {
        gpus: 32,
        per_gpu_throughput: Some(608.0),
        hours: None,
    },
    Published {
        gpus: 64,
        per_gpu_throughput: Some(518.0),
        hours: Some(68.0 / 60.0),
    },
];

/// AI-GW on HAL: 754 h on one GPU, 12.4 h on 64.
pub const AIGW_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(754.0),
    },
    Published {
        gpus: 64,
        per_gpu_throughput: None,
        hours: Some(12.4),
    },
];

/// AI-GW on Bridges-AI: 38 h on 72 V100s.
pub const AIGW_BRIDGES: &[Published] = &[Published {
    gpus: 72,
    per_gpu_throughput: None,
    hours: Some(38.0),
}];

/// AI-DES on HAL: 2.1 h on one GPU, 2.7 min on 64.
pub const AIDES_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(2.1),
    },
    Published {
        gpus: 64,
        per_gpu_throughput: None,
        hours: Some(2.7 / 60.0),
    },
];

/// AI-GW on Summit: fully trained in 1.2 h on 1,536 V100s (256 nodes).
pub const AIGW_SUMMIT: &[Published] = &[Published {
    gpus: 1536,
    per_gpu_throughput: None,
    hours: Some(1.2),
}];

/// ImageNet-1k training images.
pub const IMAGENET_TRAIN: f64 = 1_281_167.0;

/// ResNet-50 on HAL, calibrated on the published per-GPU throughputs: the
/// step model whose compute, bandwidth and latency best reproduce them
/// (gradients of 25,557,032 f32 parameters, per-GPU batch 208, no exposed
/// I/O), or `None` if they do not determine it.
pub fn resnet50_hal_model() -> Option<StepModel> {
    let batch = 208.0;
    let points: Vec<Measured> = RESNET50_HAL
        .iter()
        .filter_map(|p| {
            p.per_gpu_throughput.map(|t| Measured {
                ranks: p.gpus,
                step_seconds: batch / t,
            })
        })
        .collect();
    fit(&points, batch, 25_557_032.0 * 4.0, 0.0, 0.0)
}

/// The model's prediction next to a published figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// GPUs.
    pub gpus: usize,
    /// As published.
    pub published: f64,
    /// As predicted.
    pub predicted: f64,
    /// (predicted - published) / published.
    pub relative_error: f64,
}

/// Compares `model`'s per-GPU throughput with every published throughput.
pub fn predict_throughputs(model: &StepModel, published: &[Published]) -> Vec<Comparison> {
    published
        .iter()
        .filter_map(|p| {
            p.per_gpu_throughput.map(|t| {
                let predicted = model.per_rank_throughput(p.gpus);
                Comparison {
                    gpus: p.gpus,
                    published: t,
                    predicted,
                    relative_error: (predicted - t) / t,
                }
            })
        })
        .collect()
}

/// Compares `model`'s time to train (`epochs` over `samples`) with every
/// published time, in hours.
pub fn predict_at(
    model: &StepModel,
    published: &[Published],
    samples: f64,
    epochs: f64,
) -> Vec<Comparison> {
    published
        .iter()
        .filter_map(|p| {
            p.hours.map(|h| {
                let predicted = model.time_to_train(p.gpus, samples, epochs) / 3600.0;
                Comparison {
                    gpus: p.gpus,
                    published: h,
                    predicted,
                    relative_error: (predicted - h) / h,
                }
            })
        })
        .collect()
}

/// (x, y) points of one series in one panel.
type Points = Vec<(f64, f64)>;

/// The numbers a scaling figure plots, also written as its JSON sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingSeries {
    /// Figure title.
    pub title: String,
    /// Published (GPUs, per-GPU throughput), exactly as published.
    pub published: Vec<(usize, f64)>,
    /// The model's (GPUs, per-GPU throughput) on a dense grid of GPU counts.
    pub model: Vec<(usize, f64)>,
    /// Measured here: (ranks, per-rank throughput), if any.
    pub measured: Vec<(usize, f64)>,
}

impl ScalingSeries {
    /// Figure 1: ResNet-50 on HAL, the calibrated model from 1 to 64 GPUs,
    /// and `measured` (ranks, per-rank samples/s) from runs here.
    pub fn resnet50_hal(measured: &[(usize, f64)]) -> Option<Self> {
        let model = resnet50_hal_model()?;
        Some(ScalingSeries {
            title: "ResNet-50 on HAL (V100): per-GPU throughput, speed-up and efficiency".into(),
            published: RESNET50_HAL
                .iter()
                .filter_map(|p| p.per_gpu_throughput.map(|t| (p.gpus, t)))
                .collect(),
            model: (0..=6)
                .map(|k| 1usize << k)
                .map(|p| (p, model.per_rank_throughput(p)))
                .collect(),
            measured: measured.to_vec(),
        })
    }

    /// Writes `<stem>.png`, `<stem>.svg` and `<stem>.json` (these numbers)
    /// into `dir`; the PNG and SVG carry `provenance` (key, value) pairs.
    pub fn write(&self, dir: &Path, stem: &str, provenance: &[(String, String)]) -> Result<()> {
        render_with(dir, stem, self, provenance)?;
        let json = dir.join(format!("{stem}.json"));
        let text = serde_json::to_vec_pretty(self).expect("series serialise");
        std::fs::write(&json, text).map_err(|e| Error::Io {
            op: "failed to write",
            path: json,
            source: e,
        })
    }
}

impl Figure for ScalingSeries {
    fn size(&self) -> (u32, u32) {
        (1500, 460)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let root = root.titled(&self.title, (FONT, 18)).map_err(e)?;
        let panels = root.split_evenly((1, 3));
        // Each series relative to its own smallest count, per panel: the
        // published one starts at 2 GPUs, so its reference is 2 GPUs.
        let base = |s: &[(usize, f64)]| s.first().map_or(1.0, |&(p, t)| t * p as f64);
        let speedup = |s: &[(usize, f64)]| -> Vec<(f64, f64)> {
            let (p0, b) = (s.first().map_or(1, |x| x.0) as f64, base(s));
            s.iter()
                .map(|&(p, t)| (p as f64, p0 * t * p as f64 / b))
                .collect()
        };
        let efficiency = |s: &[(usize, f64)]| -> Vec<(f64, f64)> {
            let t0 = s.first().map_or(1.0, |x| x.1);
            s.iter().map(|&(p, t)| (p as f64, t / t0)).collect()
        };
        let pts = |s: &[(usize, f64)]| -> Vec<(f64, f64)> {
            s.iter().map(|&(p, t)| (p as f64, t)).collect()
        };
        let max_p = self
            .published
            .iter()
            .chain(&self.model)
            .chain(&self.measured)
            .map(|x| x.0)
            .max()
            .unwrap_or(2)
            .max(2) as f64;
        let panels_spec: [(&str, &str, Vec<Points>); 3] = [
            (
                "Per-GPU throughput",
                "samples/s per GPU (rank)",
                vec![pts(&self.published), pts(&self.model), pts(&self.measured)],
            ),
            (
                "Speed-up",
                "speed-up",
                vec![
                    speedup(&self.published),
                    speedup(&self.model),
                    speedup(&self.measured),
                ],
            ),
            (
                "Weak-scaling efficiency",
                "efficiency",
                vec![
                    efficiency(&self.published),
                    efficiency(&self.model),
                    efficiency(&self.measured),
                ],
            ),
        ];
        let names = ["published", "model (calibrated)", "measured here"];
        let colours = [BLUE, BLACK, RED];
        for (i, (panel, (caption, ylabel, series))) in panels.iter().zip(panels_spec).enumerate() {
            let ys = || series.iter().flatten().map(|p| p.1).filter(|v| *v > 0.0);
            let top = ys().fold(0.0f64, f64::max).max(1e-9);
            let bottom = ys().fold(f64::INFINITY, f64::min).min(top);
            // Throughput on a log axis: a CPU rank and a V100 differ by 100x.
            let y_range = if i == 0 {
                (bottom / 2.0)..(top * 2.0)
            } else {
                0.0..top * 1.15
            };
            let x_range = (0.8f64..max_p * 1.25).log_scale();
            let mut builder = ChartBuilder::on(panel);
            builder
                .caption(caption, (FONT, 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(55);
            let fmt_x = |x: &f64| format!("{x:.0}");
            if i == 0 {
                let mut chart = builder
                    .build_cartesian_2d(x_range, y_range.log_scale())
                    .map_err(e)?;
                chart
                    .configure_mesh()
                    .x_desc("GPUs (ranks)")
                    .y_desc(ylabel)
                    .x_label_formatter(&fmt_x)
                    .y_label_formatter(&|y: &f64| format!("{y:.0}"))
                    .light_line_style(WHITE)
                    .label_style((FONT, 12))
                    .draw()
                    .map_err(e)?;
                draw_series(&mut chart, &series, &names, &colours).map_err(e)?;
            } else {
                let mut chart = builder.build_cartesian_2d(x_range, y_range).map_err(e)?;
                chart
                    .configure_mesh()
                    .x_desc("GPUs (ranks)")
                    .y_desc(ylabel)
                    .x_label_formatter(&fmt_x)
                    .light_line_style(WHITE)
                    .label_style((FONT, 12))
                    .draw()
                    .map_err(e)?;
                draw_series(&mut chart, &series, &names, &colours).map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Draws the published/model/measured series and their legend on `chart`.
fn draw_series<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &[Vec<(f64, f64)>],
    names: &[&str; 3],
    colours: &[RGBColor; 3],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (k, s) in series.iter().enumerate() {
        if s.is_empty() {
            continue;
        }
        let c = colours[k];
        if k == 1 {
            chart
                .draw_series(LineSeries::new(s.iter().copied(), c.stroke_width(2)))?
                .label(names[k])
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        } else {
            chart
                .draw_series(s.iter().map(|&p| Circle::new(p, 5, c.filled())))?
                .label(names[k])
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
}

/// Which of the paper's figures `eval.scaling_figure` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperFigure {
    /// Figure 1: ResNet-50 on HAL.
    Resnet50Hal,
}

/// Configuration of `eval.scaling_figure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingFigureConfig {
    /// The figure.
    pub figure: PaperFigure,
    /// Training output directories (each with `history.json`) of the runs
    /// measured here, at any rank counts.
    #[serde(default)]
    pub runs: Vec<std::path::PathBuf>,
}

/// Per-rank samples/s of a training run: its last epoch's throughput over
/// its rank count, from `history.json`.
pub fn measured_throughput(train_dir: &Path) -> Result<(usize, f64)> {
    let path = train_dir.join("history.json");
    let text = std::fs::read(&path).map_err(|e| Error::Io {
        op: "failed to read",
        path: path.clone(),
        source: e,
    })?;
    let report: sciflow_train::TrainReport = serde_json::from_slice(&text)
        .map_err(|e| Error::Mismatch(format!("{}: not a training history: {e}", path.display())))?;
    let last = report
        .history
        .last()
        .ok_or_else(|| Error::Mismatch(format!("{}: no epoch recorded", path.display())))?;
    let ranks = report.world_size.max(1);
    Ok((ranks, last.samples_per_second / ranks as f64))
}

/// Runs `eval.scaling_figure`: reads the measured runs and writes
/// `figure.png`, `figure.svg` and `figure.json` into `out`.
pub fn scaling_figure_stage(config: &ScalingFigureConfig, out: &Path) -> Result<ScalingSeries> {
    let mut measured = config
        .runs
        .iter()
        .map(|d| measured_throughput(d))
        .collect::<Result<Vec<_>>>()?;
    // What made the figure: the measured runs' histories, this configuration,
    // the code (by version) and the published numbers it plots.
    let mut data = blake3::Hasher::new();
    for d in &config.runs {
        let p = d.join("history.json");
        let bytes = std::fs::read(&p).map_err(|e| Error::Io {
            op: "failed to read",
            path: p.clone(),
            source: e,
        })?;
        data.update(&bytes);
    }
    let config_json = serde_json::to_vec(config).expect("config serialises");
    let provenance = vec![
        (
            "Software".to_string(),
            concat!("sciflow-eval ", env!("CARGO_PKG_VERSION")).to_string(),
        ),
        (
            "sciflow:data_blake3".to_string(),
            data.finalize().to_hex().to_string(),
        ),
        (
            "sciflow:config_blake3".to_string(),
            blake3::hash(&config_json).to_hex().to_string(),
        ),
        (
            "sciflow:config".to_string(),
            String::from_utf8(config_json).expect("JSON is UTF-8"),
        ),
    ];
    measured.sort_by_key(|m| m.0);
    let series = match config.figure {
        PaperFigure::Resnet50Hal => ScalingSeries::resnet50_hal(&measured),
    }
    .ok_or_else(|| Error::Mismatch("the published points do not determine the model".into()))?;
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        op: "failed to create",
        path: out.to_path_buf(),
        source: e,
    })?;
    series.write(out, "figure", &provenance)?;
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resnet50_figure_carries_the_published_points_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let fig = ScalingSeries::resnet50_hal(&[(1, 2.72), (2, 1.33)]).unwrap();
        let meta = vec![("sciflow:data_blake3".to_string(), "abc<&>".to_string())];
        fig.write(dir.path(), "figure1", &meta).unwrap();
        // The provenance travels inside both files.
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(dir.path().join("figure1.png")).unwrap(),
        ));
        let reader = decoder.read_info().unwrap();
        let text = &reader.info().uncompressed_latin1_text;
        assert!(text
            .iter()
            .any(|t| t.keyword == "sciflow:data_blake3" && t.text == "abc<&>"));
        let svg = std::fs::read_to_string(dir.path().join("figure1.svg")).unwrap();
        assert!(
            svg.contains(
                r#"<metadata id="provenance">{"sciflow:data_blake3":"abc&lt;&amp;>"}</metadata>"#
            ),
            "{}",
            &svg[..300]
        );
        let png = std::fs::read(dir.path().join("figure1.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(dir.path().join("figure1.svg").is_file());
        let back: ScalingSeries =
            serde_json::from_slice(&std::fs::read(dir.path().join("figure1.json")).unwrap())
                .unwrap();
        assert_eq!(
            back.published,
            vec![
                (2, 791.0),
                (4, 751.0),
                (8, 726.0),
                (16, 704.0),
                (32, 608.0),
                (64, 518.0)
            ]
        );
        assert_eq!(back.model.len(), 7);
        assert_eq!(back.measured, vec![(1, 2.72), (2, 1.33)]);
    }

    #[test]
    fn published_numbers_are_as_published() {
        let t: Vec<f64> = RESNET50_HAL
            .iter()
            .filter_map(|p| p.per_gpu_throughput)
            .collect();
        assert_eq!(t, vec![791.0, 751.0, 726.0, 704.0, 608.0, 518.0]);
        // 518 img/s at 64 GPUs is 65 % of 791 at 2.
        assert!((518.0f64 / 791.0 - 0.655).abs() < 0.001);
        assert_eq!(AIGW_HAL[1].hours, Some(12.4));
        assert!((AIDES_HAL[1].hours.unwrap() * 60.0 - 2.7).abs() < 1e-12);
        assert_eq!(AIGW_BRIDGES[0].gpus, 72);
        assert_eq!(AIGW_SUMMIT[0].gpus, 1536);
    }

    #[test]
    fn the_calibrated_resnet50_model_reproduces_hal_throughput() {
        let m = resnet50_hal_model().expect("the HAL points determine the model");
        let cmp = predict_throughputs(&m, RESNET50_HAL);
        assert_eq!(cmp.len(), 6);
        // A three-parameter model through six points: within 15 % everywhere.
        for c in &cmp {
            assert!(c.relative_error.abs() < 0.15, "{c:?}");
        }
        // Compute per image near the single-GPU rate (~1.2-1.4 ms on a V100).
        assert!((0.0008..0.002).contains(&m.compute_per_sample), "{m:?}");
        // Time to 90 epochs on 64 GPUs: the published 1 h 08 min, within 30 %.
        let t = predict_at(&m, RESNET50_HAL, IMAGENET_TRAIN, 90.0);
        let at64 = t.iter().find(|c| c.gpus == 64).unwrap();
        assert!(at64.relative_error.abs() < 0.3, "{at64:?}");
    }
}
