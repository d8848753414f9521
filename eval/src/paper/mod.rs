//! The scaling results this project reproduces, as published, and the
//! performance model's predictions at the published GPU counts.
//!
//! Numbers are those reported for the HAL (V100, NVLink within a node, EDR
//! InfiniBand between nodes), Bridges-AI and Summit runs: ResNet-50 per-GPU
//! throughput at 2-64 GPUs, and times to train for ResNet-50, AI-GW and
//! AI-DES. They are data, kept exactly as published, and never adjusted to
//! fit the model; [`predict_at`] says how far the model is from each.

use std::path::Path;

use serde::{Deserialize, Serialize};

use sciflow_train::TrainHistory;

use crate::figures::render_with;
use crate::perfmodel::{fit, Measured, StepModel};
use crate::{read_json, Error, Result};

pub use published::*;
pub use validation::{Check, Role, Validation};

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
    /// Whether the model was fitted on this point or predicts it.
    pub role: Role,
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
                    // The step model is calibrated on every published throughput.
                    role: Role::Fitted,
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
                    role: Role::Predicted,
                }
            })
        })
        .collect()
}

/// The numbers a scaling figure plots, also written as its JSON sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingSeries {
    /// Figure title.
    pub title: String,
    /// Published (GPUs, per-GPU throughput), exactly as published.
    pub published: Vec<(usize, f64)>,
    /// The experiment's fitted model (see `validation`): (GPUs, per-GPU
    /// throughput) on a grid of GPU counts.
    pub model: Vec<(usize, f64)>,
    /// The alpha-beta step model calibrated on every published throughput,
    /// on the same grid: the what-if other networks and links start from.
    pub what_if: Vec<(usize, f64)>,
    /// Measured here: (ranks, per-rank throughput), if any.
    pub measured: Vec<(usize, f64)>,
    /// The experiment's own model, fitted on some published points and
    /// judged on the others (see [`validation`]).
    pub validation: Option<Validation>,
}

impl ScalingSeries {
    /// Figure 1: ResNet-50 on HAL, the calibrated model from 1 to 64 GPUs,
    /// and `measured` (ranks, per-rank samples/s) from runs here.
    pub fn resnet50_hal(measured: &[(usize, f64)]) -> Option<Self> {
        let model = resnet50_hal_model()?;
        let fitted = validation::resnet50_hal()?;
        let grid = || (0..=6).map(|k| 1usize << k);
        Some(ScalingSeries {
            title: PaperFigure::Resnet50Hal.title().into(),
            published: RESNET50_HAL
                .iter()
                .filter_map(|p| p.per_gpu_throughput.map(|t| (p.gpus, t)))
                .collect(),
            model: grid().map(|p| (p, fitted.at(p))).collect(),
            what_if: grid().map(|p| (p, model.per_rank_throughput(p))).collect(),
            measured: measured.to_vec(),
            validation: Some(fitted),
        })
    }

    /// Writes `<stem>.png`, `<stem>.svg` and `<stem>.json` (these numbers)
    /// into `dir`; the PNG and SVG carry `provenance` (key, value) pairs.
    pub fn write(&self, dir: &Path, stem: &str, provenance: &[(String, String)]) -> Result<()> {
        render_with(dir, stem, self, provenance)?;
        write_json(&dir.join(format!("{stem}.json")), self)
    }
}

/// Which of the paper's figures `eval.scaling_figure` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperFigure {
    /// Figure 1: ResNet-50 on HAL (per-GPU throughput).
    Resnet50Hal,
    /// Figure 2: AI-GW on HAL (time to train, 1-64 GPUs).
    AigwHal,
    /// Figure 3: AI-GW on Bridges-AI (72 GPUs).
    AigwBridges,
    /// Figure 4: AI-DES on HAL (time to train, 1-64 GPUs).
    AidesHal,
    /// Figure 5: AI-GW strong scaling on Summit (6-6,144 GPUs).
    AigwSummit,
}

impl PaperFigure {
    /// The published points the figure plots.
    pub fn published(self) -> &'static [Published] {
        match self {
            PaperFigure::Resnet50Hal => RESNET50_HAL,
            PaperFigure::AigwHal => AIGW_HAL,
            PaperFigure::AigwBridges => AIGW_BRIDGES,
            PaperFigure::AidesHal => AIDES_HAL,
            PaperFigure::AigwSummit => AIGW_SUMMIT,
        }
    }

    /// Hours the workload takes on one V100, which the time-to-train model
    /// scales from: the published single-GPU time of the same network on
    /// HAL. Bridges-AI and Summit published no single-GPU time, so their
    /// figures assume HAL's AI-GW workload (their error says how far that
    /// assumption, and the model, are off).
    pub fn single_gpu_hours(self) -> f64 {
        match self {
            PaperFigure::Resnet50Hal => RESNET50_HAL[0].hours.unwrap_or(41.0),
            PaperFigure::AidesHal => AIDES_HAL[0].hours.unwrap_or(2.1),
            PaperFigure::AigwHal | PaperFigure::AigwBridges | PaperFigure::AigwSummit => {
                AIGW_HAL[0].hours.unwrap_or(754.0)
            }
        }
    }

    /// GPU counts the model curve is drawn at (and the published ones).
    pub fn model_gpus(self) -> Vec<usize> {
        let mut g: Vec<usize> = match self {
            // One GPU, then 1-1,024 nodes of 6.
            PaperFigure::AigwSummit => std::iter::once(1)
                .chain((0..=10).map(|k| 6usize << k))
                .collect(),
            _ => (0..=6).map(|k| 1usize << k).collect(),
        };
        g.extend(self.published().iter().map(|p| p.gpus));
        g.sort_unstable();
        g.dedup();
        g
    }

    fn title(self) -> &'static str {
        match self {
            PaperFigure::Resnet50Hal => {
                "Figure 1. ResNet-50 on HAL (V100): per-GPU throughput, speed-up and efficiency"
            }
            PaperFigure::AigwHal => "Figure 2. AI-GW (WaveNet) on HAL (V100): time to train",
            PaperFigure::AigwBridges => "Figure 3. AI-GW (WaveNet) on Bridges-AI (V100): time to train",
            PaperFigure::AidesHal => "Figure 4. AI-DES (Xception) on HAL (V100): time to train",
            PaperFigure::AigwSummit => {
                "Figure 5. AI-GW (WaveNet) strong scaling on Summit (6 V100 per node): time to train"
            }
        }
    }
}

/// A link of the ring allreduce: bandwidth in bytes/s, per-hop latency in s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Bytes per second.
    pub bandwidth: f64,
    /// Seconds per hop.
    pub latency: f64,
}

fn default_gpu_batch() -> f64 {
    64.0
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
    /// Figures 2-5: ResNet-50 training outputs measured here; the one on
    /// the fewest ranks relates this machine's speed to a V100's (Figure
    /// 1's calibration) through the networks' relative cost per sample.
    #[serde(default)]
    pub reference: Vec<std::path::PathBuf>,
    /// Figures 2-5: samples per step on each GPU in the modelled runs.
    #[serde(default = "default_gpu_batch")]
    pub gpu_batch: f64,
    /// Figures 2-5: the allreduce link; default HAL's, fitted on the
    /// ResNet-50 throughputs (Figure 1).
    #[serde(default)]
    pub link: Option<Link>,
    /// Figures 2-5: the modelled network's size and cost, when known (e.g.
    /// the published network's); default: the measured runs' network, its
    /// cost relative to `reference`.
    #[serde(default)]
    pub network: Option<Network>,
}

/// A network as the time-to-train model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Trainable values (gradients averaged each step).
    pub gradients: usize,
    /// Seconds per training sample over ResNet-50's (224 px) on the same GPU.
    pub relative_cost: f64,
}

/// A training run measured here.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunPoint {
    /// Ranks it ran on.
    pub ranks: usize,
    /// Samples per second per rank in its last epoch.
    pub per_rank_samples_per_second: f64,
    /// Seconds of all its epochs.
    pub seconds: f64,
}

/// Reads a training run's `history.json` (classifier or regressor).
pub fn measured_run(train_dir: &Path) -> Result<RunPoint> {
    let report = TrainHistory::load(train_dir)?;
    let last = report.history.last().ok_or_else(|| {
        Error::Mismatch(format!(
            "{}: no epoch recorded",
            train_dir.join(TrainHistory::FILE).display()
        ))
    })?;
    let ranks = report.world_size.max(1);
    Ok(RunPoint {
        ranks,
        per_rank_samples_per_second: last.samples_per_second / ranks as f64,
        seconds: report.history.iter().map(|e| e.seconds).sum(),
    })
}

/// Per-rank samples/s of a training run: its last epoch's throughput over
/// its rank count, from `history.json`.
pub fn measured_throughput(train_dir: &Path) -> Result<(usize, f64)> {
    measured_run(train_dir).map(|r| (r.ranks, r.per_rank_samples_per_second))
}

/// Trainable values of the model in `train_dir/weights.safetensors`
/// (batch-norm running statistics, which are not averaged as gradients,
/// left out).
pub fn gradient_count(train_dir: &Path) -> Result<usize> {
    let path = train_dir.join("weights.safetensors");
    let named = tch::Tensor::read_safetensors(&path)
        .map_err(|e| Error::Mismatch(format!("{}: {e}", path.display())))?;
    Ok(named
        .iter()
        .filter(|(name, t)| {
            !(name.ends_with("running_mean")
                || name.ends_with("running_var")
                || name.ends_with("num_batches_tracked"))
                && t.is_floating_point()
        })
        .map(|(_, t)| t.numel())
        .sum())
}

/// A network's cost per sample relative to ResNet-50's at 224 px, both
/// measured here: `runs`' fewest-rank run against a ResNet-50 run's per-rank
/// samples/s at `size` px (a convolutional network's cost grows with the
/// pixels it sees).
pub fn relative_cost(runs: &[RunPoint], resnet50: (f64, usize)) -> Result<f64> {
    let base = runs
        .iter()
        .min_by_key(|r| r.ranks)
        .ok_or_else(|| Error::Mismatch("no measured run of the network".into()))?;
    let (sps, size) = resnet50;
    if !(sps > 0.0 && base.per_rank_samples_per_second > 0.0 && size > 0) {
        return Err(Error::Mismatch(format!(
            "throughputs must be positive (network {}, ResNet-50 {sps} at {size} px)",
            base.per_rank_samples_per_second
        )));
    }
    let r50_here = (224.0 / size as f64).powi(2) / sps;
    Ok((1.0 / base.per_rank_samples_per_second) / r50_here)
}

/// The time-to-train model's inputs for one figure, recorded in its sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeModelInputs {
    /// The network's cost per sample here over ResNet-50's at 224 px here.
    pub relative_cost: f64,
    /// ResNet-50's seconds per image on a V100 (Figure 1's calibration).
    pub resnet50_gpu_seconds_per_sample: f64,
    /// The step model on the V100s: compute, batch, gradient bytes, link.
    pub step: StepModel,
    /// Hours on one V100 the times scale from.
    pub single_gpu_hours: f64,
}

/// Time to train on `p` GPUs, scaled from `single_gpu_hours` on one: the
/// same samples in 1/p of the steps, each costing `step(p)` instead of
/// `step(1)`.
pub fn scaled_hours(step: &StepModel, p: usize, single_gpu_hours: f64) -> f64 {
    single_gpu_hours * step.step(p) / (p as f64 * step.step(1))
}

/// The numbers a time-to-train figure (2-5) plots, also its JSON sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeToTrainSeries {
    /// Figure title.
    pub title: String,
    /// Published (GPUs, hours), exactly as published.
    pub published: Vec<(usize, f64)>,
    /// The experiment's fitted model (see `validation`): (GPUs, hours).
    pub model: Vec<(usize, f64)>,
    /// The step model scaled from one GPU (see `inputs`), on the same GPU
    /// counts: the what-if for other networks and links.
    pub what_if: Vec<(usize, f64)>,
    /// Measured here: (ranks, hours of training), laptop scale.
    pub measured: Vec<(usize, f64)>,
    /// The model's prediction at each published count other than the one
    /// it scales from.
    pub comparisons: Vec<Comparison>,
    /// What the model was built from.
    pub inputs: TimeModelInputs,
    /// The experiment's own model, fitted on some published points and
    /// judged on the others (see [`validation`]).
    pub validation: Option<Validation>,
    /// For each compared published point, the compute seconds per step on
    /// one GPU at which the model would meet it exactly (`None` where no
    /// compute can: the published time beats perfect scaling).
    pub implied_compute_per_step: Vec<(usize, Option<f64>)>,
}

impl TimeToTrainSeries {
    /// The time-to-train figure `figure` from the network's runs measured
    /// here (`runs`), the modelled network, the per-GPU batch and the link.
    pub fn build(
        figure: PaperFigure,
        runs: &[RunPoint],
        network: Network,
        gpu_batch: f64,
        link: Link,
    ) -> Result<Self> {
        let r50 = resnet50_hal_model().ok_or_else(|| {
            Error::Mismatch("the published points do not determine the model".into())
        })?;
        let Network {
            gradients,
            relative_cost,
        } = network;
        if !(relative_cost > 0.0 && gpu_batch > 0.0) {
            return Err(Error::Mismatch(format!(
                "{figure:?}: relative cost ({relative_cost}) and per-GPU batch ({gpu_batch}) must be positive"
            )));
        }
        let step = StepModel {
            compute_per_sample: relative_cost * r50.compute_per_sample,
            batch_per_rank: gpu_batch,
            gradient_bytes: 4.0 * gradients as f64,
            bandwidth: link.bandwidth,
            latency: link.latency,
            io_per_step: 0.0,
        };
        let t1 = figure.single_gpu_hours();
        let published: Vec<(usize, f64)> = figure
            .published()
            .iter()
            .filter_map(|p| p.hours.map(|h| (p.gpus, h)))
            .collect();
        let anchored_here = matches!(figure, PaperFigure::AigwHal | PaperFigure::AidesHal);
        let comparisons: Vec<Comparison> = published
            .iter()
            .filter(|(g, _)| !(anchored_here && *g == 1))
            .map(|&(gpus, h)| {
                let predicted = scaled_hours(&step, gpus, t1);
                Comparison {
                    gpus,
                    published: h,
                    predicted,
                    relative_error: (predicted - h) / h,
                    // Calibrated on Figure 1's throughputs, not on these times.
                    role: Role::Predicted,
                }
            })
            .collect();
        // t(p) / t(1) = p h / T1 = 1 + A(p) / C solved for the compute C.
        let implied_compute_per_step = comparisons
            .iter()
            .map(|c: &Comparison| {
                let ratio = c.gpus as f64 * c.published / t1 - 1.0;
                (
                    c.gpus,
                    (ratio > 0.0).then(|| step.allreduce(c.gpus) / ratio),
                )
            })
            .collect();
        let fitted = match figure {
            PaperFigure::AidesHal => validation::aides(),
            PaperFigure::Resnet50Hal => validation::resnet50_hal(),
            _ => validation::aigw(),
        };
        let mut measured: Vec<(usize, f64)> =
            runs.iter().map(|r| (r.ranks, r.seconds / 3600.0)).collect();
        measured.sort_by_key(|m| m.0);
        Ok(TimeToTrainSeries {
            title: figure.title().into(),
            published,
            model: fitted
                .as_ref()
                .map(|v| {
                    figure
                        .model_gpus()
                        .into_iter()
                        .map(|p| (p, v.at(p)))
                        .collect()
                })
                .unwrap_or_default(),
            what_if: figure
                .model_gpus()
                .into_iter()
                .map(|p| (p, scaled_hours(&step, p, t1)))
                .collect(),
            measured,
            comparisons,
            implied_compute_per_step,
            validation: fitted,
            inputs: TimeModelInputs {
                relative_cost,
                resnet50_gpu_seconds_per_sample: r50.compute_per_sample,
                step,
                single_gpu_hours: t1,
            },
        })
    }
}

/// Either kind of scaling figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PaperFigureData {
    /// Figure 1.
    Throughput(ScalingSeries),
    /// Figures 2-5.
    TimeToTrain(TimeToTrainSeries),
}

impl PaperFigureData {
    /// Measured (ranks, value) points: per-rank samples/s for Figure 1,
    /// hours for Figures 2-5.
    pub fn measured(&self) -> &[(usize, f64)] {
        match self {
            PaperFigureData::Throughput(s) => &s.measured,
            PaperFigureData::TimeToTrain(s) => &s.measured,
        }
    }

    /// Model vs published, where the figure compares times.
    pub fn comparisons(&self) -> &[Comparison] {
        match self {
            PaperFigureData::Throughput(_) => &[],
            PaperFigureData::TimeToTrain(s) => &s.comparisons,
        }
    }

    /// Writes `<stem>.png`, `.svg` (carrying `provenance`) and `.json`.
    pub fn write(&self, dir: &Path, stem: &str, provenance: &[(String, String)]) -> Result<()> {
        match self {
            PaperFigureData::Throughput(s) => s.write(dir, stem, provenance),
            PaperFigureData::TimeToTrain(s) => {
                render_with(dir, stem, s, provenance)?;
                write_json(&dir.join(format!("{stem}.json")), s)
            }
        }
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).expect("figure data serialises");
    std::fs::write(path, text).map_err(Error::io("failed to write", path))
}

/// Runs `eval.scaling_figure`: reads the measured runs and writes
/// `figure.png`, `figure.svg` and `figure.json` into `out`.
pub fn scaling_figure_stage(config: &ScalingFigureConfig, out: &Path) -> Result<PaperFigureData> {
    let runs = config
        .runs
        .iter()
        .map(|d| measured_run(d))
        .collect::<Result<Vec<_>>>()?;
    // What made the figure: the measured runs' histories (and the reference
    // run's), this configuration, the code (by version) and the published
    // numbers it plots.
    let mut data = blake3::Hasher::new();
    for d in config.runs.iter().chain(&config.reference) {
        let p = d.join("history.json");
        let bytes = std::fs::read(&p).map_err(Error::io("failed to read", &p))?;
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
            // The version does not pin a build; the executable's hash does.
            "sciflow:executable_blake3".to_string(),
            std::env::current_exe().and_then(std::fs::read).map_or_else(
                |e| format!("unknown ({e})"),
                |b| blake3::hash(&b).to_hex().to_string(),
            ),
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
    let figure = match config.figure {
        PaperFigure::Resnet50Hal => {
            let mut measured: Vec<(usize, f64)> = runs
                .iter()
                .map(|r| (r.ranks, r.per_rank_samples_per_second))
                .collect();
            measured.sort_by_key(|m| m.0);
            PaperFigureData::Throughput(ScalingSeries::resnet50_hal(&measured).ok_or_else(
                || Error::Mismatch("the published points do not determine the model".into()),
            )?)
        }
        other => {
            let network = match config.network {
                Some(n) => n,
                None => {
                    let mut refs = config
                        .reference
                        .iter()
                        .map(|d| measured_run(d).map(|r| (r, d)))
                        .collect::<Result<Vec<_>>>()?;
                    refs.sort_by_key(|(r, _)| r.ranks);
                    let Some((r, reference)) = refs.into_iter().next() else {
                        return Err(Error::Mismatch(format!(
                            "figure {other:?} needs `network` or `reference` (ResNet-50 training outputs measured here)"
                        )));
                    };
                    let first = config.runs.first().ok_or_else(|| {
                        Error::Mismatch(format!(
                            "figure {other:?} needs `network` or a run in `runs`"
                        ))
                    })?;
                    let info: ReferenceModel =
                        read_json(&reference.join("model.json"), "a model.json")?;
                    if info.model.arch != "resnet50" {
                        return Err(Error::Mismatch(format!(
                            "{}: `reference` must be a ResNet-50 run, not {}",
                            reference.display(),
                            info.model.arch
                        )));
                    }
                    Network {
                        gradients: gradient_count(first)?,
                        relative_cost: relative_cost(
                            &runs,
                            (r.per_rank_samples_per_second, info.image_size),
                        )?,
                    }
                }
            };
            let r50 = resnet50_hal_model().ok_or_else(|| {
                Error::Mismatch("the published points do not determine the model".into())
            })?;
            let link = config.link.unwrap_or(Link {
                bandwidth: r50.bandwidth,
                latency: r50.latency,
            });
            PaperFigureData::TimeToTrain(TimeToTrainSeries::build(
                other,
                &runs,
                network,
                config.gpu_batch,
                link,
            )?)
        }
    };
    std::fs::create_dir_all(out).map_err(Error::io("failed to create", out))?;
    figure.write(out, "figure", &provenance)?;
    Ok(figure)
}

/// What a ResNet-50 reference run's `model.json` must say.
#[derive(Deserialize)]
struct ReferenceModel {
    model: ReferenceArch,
    image_size: usize,
}

#[derive(Deserialize)]
struct ReferenceArch {
    arch: String,
}

mod draw;
mod published;
#[cfg(test)]
mod tests;
pub mod validation;
