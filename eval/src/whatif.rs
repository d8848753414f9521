//! `eval.what_if`: what a training run measured here would take on a
//! cluster — its time to train and scaling efficiency at N GPUs, from the
//! run's own compute per sample (its `history.json`), its gradient size (its
//! weights) and the cluster's links, through the alpha-beta step model
//! ([`crate::perfmodel::StepModel`]) with NVLink-like links inside a node
//! and the network across nodes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sciflow_train::TrainHistory;

use crate::figures::{render_with, Figure, FONT};
use crate::paper::gradient_count;
use crate::perfmodel::StepModel;
use crate::{Error, Result};

/// The cluster's links.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLink {
    /// GPUs in one node.
    pub gpus_per_node: usize,
    /// Bytes/s of the ring inside a node (NVLink: tens of GB/s).
    pub intra_bandwidth: f64,
    /// Bytes/s between nodes (EDR InfiniBand: 12.5e9).
    pub inter_bandwidth: f64,
    /// Seconds per hop of the ring.
    pub latency: f64,
}

fn default_gpus() -> Vec<usize> {
    (0..=10).map(|k| 1usize << k).collect()
}

fn one() -> f64 {
    1.0
}

/// Configuration of `eval.what_if`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatIfConfig {
    /// A training output: its `history.json` and `weights.safetensors`.
    pub run: PathBuf,
    /// The cluster.
    pub link: ClusterLink,
    /// GPU counts to predict at (default 1, 2, 4, ..., 1,024).
    #[serde(default = "default_gpus")]
    pub gpus: Vec<usize>,
    /// Samples per epoch (default: the run's).
    #[serde(default)]
    pub samples: Option<f64>,
    /// Epochs (default: the run's).
    #[serde(default)]
    pub epochs: Option<f64>,
    /// Samples per step on each GPU (default: the run's per-rank batch).
    #[serde(default)]
    pub batch_per_gpu: Option<f64>,
    /// How many times faster one target GPU computes a sample than the
    /// run's device did (default 1: the same device).
    #[serde(default = "one")]
    pub speedup_per_device: f64,
}

/// One predicted GPU count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WhatIfPoint {
    /// GPUs.
    pub gpus: usize,
    /// Seconds per step.
    pub step_seconds: f64,
    /// Hours to train.
    pub hours: f64,
    /// Weak-scaling efficiency (one GPU's step over this one's).
    pub efficiency: f64,
}

/// What `eval.what_if` writes as `what_if.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhatIf {
    /// The run it starts from.
    pub run: String,
    /// Seconds per sample on one target GPU.
    pub compute_per_sample: f64,
    /// Bytes of gradients averaged each step.
    pub gradient_bytes: f64,
    /// Samples per step on each GPU.
    pub batch_per_gpu: f64,
    /// Samples per epoch.
    pub samples: f64,
    /// Epochs.
    pub epochs: f64,
    /// The cluster.
    pub link: ClusterLink,
    /// The predictions.
    pub points: Vec<WhatIfPoint>,
}

impl WhatIf {
    /// Predicts `config` from the run's measurements.
    pub fn predict(config: &WhatIfConfig) -> Result<WhatIf> {
        let history = TrainHistory::load(&config.run)?;
        let bad = |m: String| Error::Mismatch(format!("{}: {m}", config.run.display()));
        let last = history
            .history
            .last()
            .ok_or_else(|| bad("no epoch recorded".into()))?;
        let ranks = history.world_size.max(1) as f64;
        if !(last.samples_per_second > 0.0 && last.seconds > 0.0 && history.steps_per_epoch > 0) {
            return Err(bad("its last epoch recorded no throughput".into()));
        }
        let epoch_samples = last.samples_per_second * last.seconds;
        let run_batch = epoch_samples / (history.steps_per_epoch as f64 * ranks);
        let link = config.link;
        if !(link.gpus_per_node > 0
            && link.intra_bandwidth > 0.0
            && link.inter_bandwidth > 0.0
            && link.latency >= 0.0
            && config.speedup_per_device > 0.0)
        {
            return Err(Error::Mismatch(
                "link bandwidths, GPUs per node and the device speed-up must be positive".into(),
            ));
        }
        let step = StepModel {
            // The run's per-rank rate, on one target GPU.
            compute_per_sample: ranks / last.samples_per_second / config.speedup_per_device,
            batch_per_rank: config.batch_per_gpu.unwrap_or(run_batch).max(1.0),
            gradient_bytes: 4.0 * gradient_count(&config.run)? as f64,
            bandwidth: link.intra_bandwidth,
            latency: link.latency,
            io_per_step: 0.0,
        };
        let at = |p: usize| {
            // The ring is as fast as its slowest link: a node's, or the network's.
            let bandwidth = if p <= link.gpus_per_node {
                link.intra_bandwidth
            } else {
                link.inter_bandwidth
            };
            StepModel {
                bandwidth,
                ..step.clone()
            }
        };
        let samples = config.samples.unwrap_or(epoch_samples);
        let epochs = config.epochs.unwrap_or(history.history.len() as f64);
        let one = step.step(1);
        let mut gpus = config.gpus.clone();
        gpus.sort_unstable();
        gpus.dedup();
        gpus.retain(|&g| g > 0);
        let points = gpus
            .iter()
            .map(|&p| {
                let m = at(p);
                WhatIfPoint {
                    gpus: p,
                    step_seconds: m.step(p),
                    hours: m.time_to_train(p, samples, epochs) / 3600.0,
                    efficiency: one / m.step(p),
                }
            })
            .collect();
        Ok(WhatIf {
            run: config.run.display().to_string(),
            compute_per_sample: step.compute_per_sample,
            gradient_bytes: step.gradient_bytes,
            batch_per_gpu: step.batch_per_rank,
            samples,
            epochs,
            link,
            points,
        })
    }
}

impl Figure for WhatIf {
    fn size(&self) -> (u32, u32) {
        (1000, 420)
    }

    fn draw<DB: plotters::prelude::DrawingBackend>(
        &self,
        root: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    ) -> std::result::Result<(), String> {
        use plotters::prelude::*;
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let root = root
            .titled(
                &format!(
                    "What if: {} on {} GPUs/node, {:.1} GB/s in a node, {:.1} GB/s between",
                    Path::new(&self.run)
                        .file_name()
                        .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                    self.link.gpus_per_node,
                    self.link.intra_bandwidth / 1e9,
                    self.link.inter_bandwidth / 1e9
                ),
                (FONT, 16),
            )
            .map_err(e)?;
        let areas = root.split_evenly((1, 2));
        let max_p = self
            .points
            .iter()
            .map(|p| p.gpus as f64)
            .fold(2.0, f64::max);
        let hours: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|p| (p.gpus as f64, p.hours))
            .collect();
        let top = hours.iter().map(|p| p.1).fold(1e-9, f64::max);
        let bottom = hours.iter().map(|p| p.1).fold(top, f64::min);
        let fmt_x = |x: &f64| format!("{x:.0}");
        let mut chart = ChartBuilder::on(&areas[0])
            .caption("Time to train", (FONT, 15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (0.8f64..max_p * 1.25).log_scale(),
                ((bottom / 2.0)..(top * 2.0)).log_scale(),
            )
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("GPUs")
            .y_desc("hours")
            .x_label_formatter(&fmt_x)
            .label_style((FONT, 12))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(
                hours.iter().copied(),
                BLACK.stroke_width(2),
            ))
            .map_err(e)?;
        let eff: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|p| (p.gpus as f64, p.efficiency))
            .collect();
        let mut chart = ChartBuilder::on(&areas[1])
            .caption("Weak-scaling efficiency", (FONT, 15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0.8f64..max_p * 1.25).log_scale(), 0.0..1.1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("GPUs")
            .y_desc("efficiency")
            .x_label_formatter(&fmt_x)
            .label_style((FONT, 12))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(eff.iter().copied(), BLACK.stroke_width(2)))
            .map_err(e)?;
        Ok(())
    }
}

/// Runs `eval.what_if`: writes `what_if.json` and `what_if.png`/`.svg` into `out`.
pub fn what_if_stage(config: &WhatIfConfig, out: &Path) -> Result<WhatIf> {
    std::fs::create_dir_all(out).map_err(Error::io("failed to create", out))?;
    let w = WhatIf::predict(config)?;
    render_with(out, "what_if", &w, &[])?;
    let path = out.join("what_if.json");
    sciflow_ingest::files::write_atomic(
        &path,
        &serde_json::to_vec_pretty(&w).expect("what-if serialises"),
    )?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sciflow_train::EpochStats;

    /// A training output of one epoch: 1,000 samples in 10 s on 2 ranks,
    /// 25 steps each (a per-rank batch of 20), and 1,000 gradients.
    fn run_dir(dir: &Path) {
        let h = TrainHistory {
            history: vec![EpochStats {
                epoch: 0,
                train_loss: 0.5,
                train_accuracy: None,
                val_loss: None,
                val_accuracy: None,
                val_mae: None,
                lr: 0.1,
                seconds: 10.0,
                samples_per_second: 100.0,
                data_wait_seconds: 0.0,
                allreduce_seconds: 0.0,
            }],
            world_size: 2,
            steps_per_epoch: 25,
        };
        h.save(dir).unwrap();
        let w = tch::Tensor::zeros([10, 100], (tch::Kind::Float, tch::Device::Cpu));
        tch::Tensor::write_safetensors(&[("w", &w)], dir.join("weights.safetensors")).unwrap();
    }

    #[test]
    fn the_what_if_scales_the_runs_own_rate_over_the_clusters_links() {
        let dir = tempfile::tempdir().unwrap();
        run_dir(dir.path());
        let link = ClusterLink {
            gpus_per_node: 4,
            intra_bandwidth: 4e4,
            inter_bandwidth: 1e4,
            latency: 0.0,
        };
        let cfg = WhatIfConfig {
            run: dir.path().to_path_buf(),
            link,
            gpus: vec![8, 1, 4],
            samples: None,
            epochs: Some(3.0),
            batch_per_gpu: None,
            speedup_per_device: 2.0,
        };
        let w = what_if_stage(&cfg, dir.path()).unwrap();
        // 50 samples/s per rank, twice as fast on the target: 0.01 s a sample.
        assert!((w.compute_per_sample - 0.01).abs() < 1e-12);
        assert_eq!(
            (w.batch_per_gpu, w.samples, w.gradient_bytes),
            (20.0, 1000.0, 4000.0)
        );
        let at = |p: usize| *w.points.iter().find(|x| x.gpus == p).unwrap();
        // One GPU: 20 x 0.01 s a step, 50 steps an epoch, 3 epochs.
        assert!((at(1).step_seconds - 0.2).abs() < 1e-12);
        assert!((at(1).hours - 3.0 * 50.0 * 0.2 / 3600.0).abs() < 1e-12);
        // Four GPUs in one node: the ring over 40 kB/s; eight: over 10 kB/s.
        let ring = |p: f64, bw: f64| 2.0 * (p - 1.0) / p * 4000.0 / bw;
        assert!((at(4).step_seconds - (0.2 + ring(4.0, 4e4))).abs() < 1e-12);
        assert!((at(8).step_seconds - (0.2 + ring(8.0, 1e4))).abs() < 1e-12);
        assert!((at(8).efficiency - 0.2 / at(8).step_seconds).abs() < 1e-12);
        assert_eq!(
            w.points.iter().map(|p| p.gpus).collect::<Vec<_>>(),
            [1, 4, 8]
        );
        assert!(
            dir.path().join("what_if.png").is_file() && dir.path().join("what_if.json").is_file()
        );
        let mut bad = cfg.clone();
        bad.link.inter_bandwidth = 0.0;
        assert!(WhatIf::predict(&bad).is_err());
    }
}
