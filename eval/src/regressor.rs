//! Scoring a waveform regressor: predictions and parameter errors
//! (`eval.regressor`), then the overlap between each test waveform and the
//! waveform regenerated at the predicted parameters (`eval.overlap`).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use sciflow_ingest::contract::SplitManifest;
use sciflow_ingest::files::{write_atomic, write_parquet};
use sciflow_ingest::readers::waveforms::read_bank;
use sciflow_ingest::writers::waveforms::{self as waveform_writer, WaveformsConfig};
use sciflow_ingest::{DatasetInfo, Loader, LoaderConfig, Split, SplitFractions};
use sciflow_train::learner::to_device;
use sciflow_train::regressor::{load_regressor, regression_tensors};
use sciflow_train::DeviceSpec;

use crate::figures::{render, Figure, FONT};
use crate::overlap::{OverlapSettings, Overlapper, Psd, SOLAR_MASS_SECONDS};
use crate::{Error, Result};

/// Configuration of `eval.regressor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRegressorConfig {
    /// The model directory (a `train.regressor` output).
    pub model: PathBuf,
    /// The dataset it was trained on.
    pub data: PathBuf,
    /// The split scored.
    #[serde(default = "crate::default_split")]
    pub split: Split,
    /// Score other waveforms instead (a bank file, or a folder of LVC/SXS
    /// files): prepared as `data` was, into `<out>/data`, all of it scored.
    #[serde(default)]
    pub inputs: Option<PathBuf>,
    /// Samples per forward pass.
    #[serde(default = "crate::default_batch")]
    pub batch_size: NonZeroUsize,
    /// Where to run the network: `auto` (the local GPU, else the CPU),
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
}

/// Errors of one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamError {
    /// Mean absolute error.
    pub mae: f64,
    /// Root mean square error.
    pub rmse: f64,
    /// Median absolute error.
    pub median_abs: f64,
}

/// Parameter errors of a set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamErrors {
    /// Samples scored.
    pub samples: usize,
    /// Mass ratio q.
    pub q: ParamError,
    /// Spin of the heavier body.
    pub chi1z: ParamError,
    /// Spin of the lighter body.
    pub chi2z: ParamError,
    /// Effective spin (q chi1z + chi2z) / (1 + q).
    pub chi_eff: ParamError,
}

fn chi_eff(p: &[f64; 3]) -> f64 {
    (p[0] * p[1] + p[2]) / (1.0 + p[0])
}

/// Errors of `pred` against `truth` (rows of q, chi1z, chi2z).
pub fn param_errors(truth: &[[f64; 3]], pred: &[[f64; 3]]) -> ParamErrors {
    let one = |f: &dyn Fn(&[f64; 3]) -> f64| {
        let mut abs: Vec<f64> = truth
            .iter()
            .zip(pred)
            .map(|(t, p)| (f(p) - f(t)).abs())
            .collect();
        let n = abs.len().max(1) as f64;
        let mae = abs.iter().sum::<f64>() / n;
        let rmse = (abs.iter().map(|a| a * a).sum::<f64>() / n).sqrt();
        abs.sort_by(f64::total_cmp);
        ParamError {
            mae,
            rmse,
            median_abs: quantile(&abs, 0.5),
        }
    };
    ParamErrors {
        samples: truth.len(),
        q: one(&|p| p[0]),
        chi1z: one(&|p| p[1]),
        chi2z: one(&|p| p[2]),
        chi_eff: one(&chi_eff),
    }
}

/// Linear-interpolated quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[i]
    }
}

/// The scored samples' ids and true parameters, in loader order.
fn manifest_rows(data: &Path, split: Split) -> Result<Vec<(String, [f64; 3])>> {
    let manifest = SplitManifest::read(data, split)?;
    let ids = manifest.strings("sample_id")?;
    let (q, c1, c2) = (
        manifest.floats("q")?,
        manifest.floats("chi1z")?,
        manifest.floats("chi2z")?,
    );
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(k, id)| (id, [q[k], c1[k], c2[k]]))
        .collect())
}

/// What `eval.regressor` reports in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressorReport {
    /// Parameter errors.
    pub errors: ParamErrors,
    /// The dataset scored: an absolute path, or one relative to this
    /// report's directory when the stage ingested it there (`data`, from
    /// `inputs`), so the record stays true when the directory moves.
    pub data: String,
    /// The split.
    pub split: Split,
}

/// Predicts the split's parameters; writes `predictions.parquet` (sample_id;
/// q, chi1z, chi2z predicted; the same with `_true`) and `metrics.json`.
pub fn evaluate_regressor(
    config: &EvalRegressorConfig,
    out: &Path,
    threads: usize,
) -> Result<RegressorReport> {
    std::fs::create_dir_all(out).map_err(Error::io("failed to create", out))?;
    let (data, split) = match &config.inputs {
        None => (config.data.clone(), config.split),
        Some(inputs) => {
            let info = DatasetInfo::load(&config.data)?;
            let mut cfg: WaveformsConfig = serde_json::from_value(info.provenance.config.clone())
                .map_err(|e| {
                Error::Mismatch(format!(
                    "{} records settings this version cannot read: {e}",
                    config.data.display()
                ))
            })?;
            cfg.inputs = vec![inputs.clone()];
            // Keep the training grid so the model sees what it was trained on.
            if let Some([start, dt, n]) = info.time_grid {
                cfg.window = Some([start, start + dt * (n - 1.0)]);
                cfg.dt = dt;
            }
            cfg.split = SplitFractions::new(0.0, 1.0);
            let dir = out.join("data");
            waveform_writer::write_dataset(&cfg, info.provenance.seed, &dir, threads, &|_| {})?;
            (dir, Split::Test)
        }
    };
    let device = config.device.resolve()?;
    let reg = load_regressor(&config.model, device)?;
    let info = DatasetInfo::load(&data)?;
    if info.x.sample_shape != [reg.info.in_channels, reg.info.samples] {
        return Err(Error::Mismatch(format!(
            "model {} expects samples [{}, {}]; {} has {:?}",
            config.model.display(),
            reg.info.in_channels,
            reg.info.samples,
            data.display(),
            info.x.sample_shape
        )));
    }
    let loader = Loader::new(
        &data,
        split,
        LoaderConfig {
            shuffle: false,
            even_steps: false,
            ..LoaderConfig::new(config.batch_size.get(), 0)
        },
    )?;
    let mut pred: Vec<[f64; 3]> = Vec::new();
    for b in loader.epoch(0) {
        let b = b?;
        let (x, _) = regression_tensors(&b)?;
        let p: Tensor = reg.predict(&to_device(x, device)).contiguous();
        let mut flat = vec![0f32; p.numel()];
        p.copy_data(&mut flat, p.numel());
        pred.extend(
            flat.chunks_exact(3)
                .map(|c| [c[0] as f64, c[1] as f64, c[2] as f64]),
        );
    }
    let rows = manifest_rows(&data, split)?;
    if rows.len() != pred.len() || rows.is_empty() {
        return Err(Error::Mismatch(format!(
            "{} lists {} {} samples, the shards gave {}",
            data.display(),
            rows.len(),
            split.as_str(),
            pred.len()
        )));
    }
    let truth: Vec<[f64; 3]> = rows.iter().map(|r| r.1).collect();
    let col = |v: &[[f64; 3]], k: usize| v.iter().map(|p| p[k]).collect::<Vec<f64>>();
    let mut df = df!(
        "sample_id" => rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        "q" => col(&pred, 0),
        "chi1z" => col(&pred, 1),
        "chi2z" => col(&pred, 2),
        "q_true" => col(&truth, 0),
        "chi1z_true" => col(&truth, 1),
        "chi2z_true" => col(&truth, 2),
    )
    .expect("equal columns");
    write_parquet(&out.join("predictions.parquet"), &mut df)?;
    let recorded = match data.strip_prefix(out) {
        Ok(inside) => inside.to_path_buf(),
        Err(_) => std::path::absolute(&data).map_err(Error::io("failed to resolve", &data))?,
    };
    let report = RegressorReport {
        errors: param_errors(&truth, &pred),
        data: recorded.display().to_string(),
        split,
    };
    write_atomic(
        &out.join("metrics.json"),
        &serde_json::to_vec_pretty(&report).expect("serialises"),
    )?;
    Ok(report)
}

/// Configuration of `eval.overlap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlapConfig {
    /// The `eval.regressor` output (its `predictions.parquet` and the data it scored).
    pub predictions: PathBuf,
    /// The bank regenerated at the predicted parameters, one waveform per
    /// prediction in the same order (`data/make_bank.py --params`).
    pub bank: PathBuf,
    /// Total mass in solar masses that turns M into seconds.
    #[serde(default = "default_mass")]
    pub total_mass: f64,
    /// Lowest frequency counted, Hz.
    #[serde(default = "default_flow")]
    pub f_low: f64,
    /// The noise curve.
    #[serde(default)]
    pub psd: Psd,
    /// Lags searched per sample step for the best time shift: 1 keeps to the
    /// sample grid (pycbc's `match` as it comes), which at a dataset's coarse
    /// steps misses shifts between samples and under-reports the overlap.
    /// 8 is converged to 1e-5 at 2 M steps and 60 Msun.
    #[serde(default = "default_oversampling")]
    pub time_oversampling: NonZeroUsize,
}

fn default_oversampling() -> NonZeroUsize {
    NonZeroUsize::new(8).expect("8 is not zero")
}

fn default_mass() -> f64 {
    60.0
}
fn default_flow() -> f64 {
    20.0
}

/// What `eval.overlap` reports in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlapReport {
    /// Median overlap.
    pub median_overlap: f64,
    /// 5th percentile overlap.
    pub p05_overlap: f64,
    /// Mean overlap.
    pub mean_overlap: f64,
    /// Minimum overlap.
    pub min_overlap: f64,
    /// Parameter errors of the predictions.
    pub errors: ParamErrors,
    /// Total mass used (solar masses).
    pub total_mass: f64,
    /// Lowest frequency (Hz).
    pub f_low: f64,
    /// Lags searched per sample step for the best time shift.
    pub time_oversampling: usize,
    /// Waveforms compared.
    pub samples: usize,
}

/// Overlap of each scored waveform with its regeneration at the predicted
/// parameters; writes `overlaps.parquet`, `metrics.json` and
/// `overlaps.png`/`.svg` (overlap histogram, predicted against true).
pub fn overlap_stage(config: &OverlapConfig, out: &Path) -> Result<OverlapReport> {
    std::fs::create_dir_all(out).map_err(Error::io("failed to create", out))?;
    let report_json = config.predictions.join("metrics.json");
    let reg: RegressorReport = crate::read_json(&report_json, "an eval.regressor report")?;
    // A relative path is inside the report's directory (see RegressorReport::data).
    let data = config.predictions.join(&reg.data);
    let info = DatasetInfo::load(&data)?;
    let Some([start, dt, n]) = info.time_grid else {
        return Err(Error::Mismatch(format!(
            "{} has no time grid",
            data.display()
        )));
    };
    let n = n as usize;
    // The true h+ from the dataset's channels: (h+, hx) for `strain`;
    // (cos phi, -sin phi, amplitude) for `phase_amplitude`.
    let channels = info.x.sample_shape.first().copied().unwrap_or(0);
    if !matches!(channels, 2 | 3) || info.x.sample_shape.get(1) != Some(&n) {
        return Err(Error::Mismatch(format!(
            "{}: expected waveform samples of 2 (strain) or 3 (phase_amplitude) channels x {n}, found {:?}",
            data.display(),
            info.x.sample_shape
        )));
    }
    let rows = manifest_rows(&data, reg.split)?;
    let bank = read_bank(&config.bank)?;
    if bank.len() != rows.len() {
        return Err(Error::Mismatch(format!(
            "{} holds {} waveforms for {} predictions",
            config.bank.display(),
            bank.len(),
            rows.len()
        )));
    }
    let pred: Vec<[f64; 3]> = bank.params.clone();
    let truth: Vec<[f64; 3]> = rows.iter().map(|r| r.1).collect();
    let settings = OverlapSettings {
        dt: dt * config.total_mass * SOLAR_MASS_SECONDS,
        f_low: config.f_low,
        f_high: None,
        psd: config.psd.curve()?,
        time_oversampling: config.time_oversampling.get(),
    };
    let loader = Loader::new(
        &data,
        reg.split,
        LoaderConfig {
            shuffle: false,
            even_steps: false,
            ..LoaderConfig::new(64, 0)
        },
    )?;
    let mut overlaps = Vec::with_capacity(rows.len());
    let mut o = Overlapper::default();
    let bt = bank.time.len();
    for b in loader.epoch(0) {
        let b = b?;
        for sample in b.x.chunks_exact(channels * n) {
            let i = overlaps.len();
            if i >= rows.len() {
                break;
            }
            let truth_hp: Vec<f64> = if channels == 2 {
                sample[..n].iter().map(|&v| v as f64).collect()
            } else {
                (0..n)
                    .map(|k| sample[k] as f64 * sample[2 * n + k] as f64)
                    .collect()
            };
            // The regenerated waveform on the same grid (both peak at t = 0).
            let (amp, ph) = (
                &bank.amp[i * bt..(i + 1) * bt],
                &bank.phase[i * bt..(i + 1) * bt],
            );
            let pred_hp: Vec<f64> = (0..n)
                .map(|k| {
                    let t = start + k as f64 * dt;
                    let j = bank.time.partition_point(|&s| s <= t).clamp(1, bt - 1);
                    let (t0, t1) = (bank.time[j - 1], bank.time[j]);
                    let f = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
                    let a = amp[j - 1] as f64 * (1.0 - f) + amp[j] as f64 * f;
                    let p = ph[j - 1] as f64 * (1.0 - f) + ph[j] as f64 * f;
                    a * p.cos()
                })
                .collect();
            overlaps.push(o.overlap(&truth_hp, &pred_hp, &settings));
        }
    }
    if overlaps.len() != rows.len() {
        return Err(Error::Mismatch(format!(
            "{} scored waveforms, {} rows",
            overlaps.len(),
            rows.len()
        )));
    }
    let mut sorted = overlaps.clone();
    sorted.sort_by(f64::total_cmp);
    let report = OverlapReport {
        median_overlap: quantile(&sorted, 0.5),
        p05_overlap: quantile(&sorted, 0.05),
        mean_overlap: sorted.iter().sum::<f64>() / sorted.len() as f64,
        min_overlap: sorted[0],
        errors: param_errors(&truth, &pred),
        total_mass: config.total_mass,
        f_low: config.f_low,
        time_oversampling: config.time_oversampling.get(),
        samples: sorted.len(),
    };
    let mut df = df!(
        "sample_id" => rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        "overlap" => overlaps.clone(),
    )
    .expect("equal columns");
    write_parquet(&out.join("overlaps.parquet"), &mut df)?;
    render(
        out,
        "overlaps",
        &OverlapFigure {
            overlaps: &overlaps,
            truth: &truth,
            pred: &pred,
            report: &report,
        },
    )?;
    write_atomic(
        &out.join("metrics.json"),
        &serde_json::to_vec_pretty(&report).expect("serialises"),
    )?;
    Ok(report)
}

struct OverlapFigure<'a> {
    overlaps: &'a [f64],
    truth: &'a [[f64; 3]],
    pred: &'a [[f64; 3]],
    report: &'a OverlapReport,
}

impl Figure for OverlapFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1600, 420)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let title = format!(
            "Overlap with the waveform at the predicted parameters ({} test waveforms, M = {} Msun, f_low = {} Hz): median {:.4}, 5th percentile {:.4}",
            self.report.samples, self.report.total_mass, self.report.f_low, self.report.median_overlap, self.report.p05_overlap
        );
        let root = root.titled(&title, (FONT, 18)).map_err(e)?;
        let panels = root.split_evenly((1, 4));
        // Histogram of 1 - overlap on a log scale would hide the typical case;
        // plot overlap itself from its minimum to 1.
        let lo = self.overlaps.iter().copied().fold(1.0, f64::min).min(0.99);
        let bins = 30;
        let width = (1.0 - lo) / bins as f64;
        let mut counts = vec![0u32; bins];
        for &v in self.overlaps {
            let b = (((v - lo) / width) as usize).min(bins - 1);
            counts[b] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("Overlap histogram", (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d(lo..1.0, 0u32..top + 1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("overlap")
            .y_desc("waveforms")
            .label_style((FONT, 12))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(b, &c)| {
                let x0 = lo + b as f64 * width;
                Rectangle::new([(x0, 0), (x0 + width, c)], BLUE.mix(0.6).filled())
            }))
            .map_err(e)?;
        for (k, name) in ["q", "chi1z", "chi2z"].iter().enumerate() {
            let vals = self.truth.iter().chain(self.pred).map(|p| p[k]);
            let (mn, mx) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            let pad = (mx - mn).max(1e-6) * 0.05;
            let (mn, mx) = (mn - pad, mx + pad);
            let mut chart = ChartBuilder::on(&panels[k + 1])
                .caption(format!("{name}: predicted against true"), (FONT, 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(45)
                .build_cartesian_2d(mn..mx, mn..mx)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc(format!("true {name}"))
                .y_desc(format!("predicted {name}"))
                .label_style((FONT, 12))
                .draw()
                .map_err(e)?;
            chart
                .draw_series(LineSeries::new([(mn, mn), (mx, mx)], BLACK.mix(0.4)))
                .map_err(e)?;
            chart
                .draw_series(
                    self.truth
                        .iter()
                        .zip(self.pred)
                        .map(|(t, p)| Circle::new((t[k], p[k]), 2, RED.mix(0.5).filled())),
                )
                .map_err(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_quantiles_by_hand() {
        let truth = [[2.0, 0.1, -0.1], [4.0, 0.0, 0.5]];
        let pred = [[2.5, 0.1, -0.1], [3.0, 0.2, 0.5]];
        let e = param_errors(&truth, &pred);
        assert!((e.q.mae - 0.75).abs() < 1e-12);
        assert!((e.q.rmse - ((0.25 + 1.0) / 2.0f64).sqrt()).abs() < 1e-12);
        assert!((e.chi1z.mae - 0.1).abs() < 1e-12);
        // chi_eff: (2*0.1 - 0.1)/3 vs (2.5*0.1 - 0.1)/3.5; (0 + 0.5)/5 vs (0.6 + 0.5)/4.
        let d1 = ((2.5f64 * 0.1 - 0.1) / 3.5 - (2.0 * 0.1 - 0.1) / 3.0).abs();
        let d2 = ((3.0f64 * 0.2 + 0.5) / 4.0 - 0.5 / 5.0).abs();
        assert!((e.chi_eff.mae - (d1 + d2) / 2.0).abs() < 1e-12);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert!((quantile(&[0.0, 10.0], 0.05) - 0.5).abs() < 1e-12);
    }
}
