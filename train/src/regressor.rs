//! Training a waveform regressor: the WaveNet of [`crate::wavenet`] mapping a
//! waveform dataset's samples (`x` [2, T]) to its F32 targets (q, chi1z,
//! chi2z), data-parallel like the classifier (rank 0's initial weights
//! broadcast, one fused gradient allreduce per step).
//!
//! The loss is the mean squared error of the standardised targets plus the
//! physical constraints of general relativity on the predictions in physical
//! units: a mass ratio q >= 1 and dimensionless spins |chi| <= 1, each
//! violation penalised quadratically with weight `constraint_weight`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use sciflow_ingest::dataset::Split;
use sciflow_ingest::{DatasetInfo, Loader, LoaderConfig};

use crate::allreduce::{average_gradients, broadcast_parameters, bucket_elems};
use crate::checkpoint::{self, At, Checkpointing, Position};
use crate::classifier::Waited;
use crate::dist::Comm;
use crate::optim::{LrPlan, LrScaling, LrSchedule, Optimizer, OptimizerKind};
use crate::wavenet::{WaveNet, WaveNetConfig};
use crate::{Error, Result};

/// Configuration of `train.regressor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressorConfig {
    /// The waveform dataset.
    pub data: PathBuf,
    /// Network size.
    #[serde(default)]
    pub model: WaveNetConfig,
    /// Passes over the training split.
    pub epochs: NonZeroUsize,
    /// Samples per step on each rank.
    #[serde(default = "default_batch")]
    pub batch_size: NonZeroUsize,
    /// Base learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// How the rate scales with the global batch.
    #[serde(default)]
    pub lr_scaling: LrScaling,
    /// Epochs of linear warm-up.
    #[serde(default)]
    pub warmup_epochs: usize,
    /// The schedule after warm-up.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// L2 weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Weight of the q >= 1, |chi| <= 1 penalty.
    #[serde(default = "default_constraint")]
    pub constraint_weight: f64,
    /// Weight of a squared-error term on the effective spin
    /// chi_eff = (q chi1z + chi2z) / (1 + q), in units of its training-set
    /// standard deviation (targets q, chi1z, chi2z only; default 0, off).
    /// The waveform, and so the overlap, depends on chi_eff far more than on
    /// either spin alone.
    #[serde(default)]
    pub chi_eff_weight: f64,
    /// Weight of each target's squared error (standardised units); default
    /// all 1. A target the data barely determines (the smaller body's spin)
    /// can be weighted down so its irreducible error does not drown the
    /// gradient of the others.
    #[serde(default)]
    pub target_weights: Option<Vec<f64>>,
    /// Ranks with fewer training samples repeat some, so every rank takes
    /// the same number of full batches (see `train.classifier`).
    #[serde(default)]
    pub pad: bool,
    /// Checkpoint every this many steps as well as at each epoch's end (0:
    /// epoch ends only), when the run has a checkpoint directory.
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Gradient buckets in MiB (see `train.classifier`; 0: one buffer).
    #[serde(default)]
    pub allreduce_bucket_mb: f64,
    /// Batches the loader prepares ahead.
    #[serde(default = "default_prefetch")]
    pub prefetch: NonZeroUsize,
    /// Loader threads.
    #[serde(default = "default_workers")]
    pub workers: NonZeroUsize,
}

fn default_batch() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap()
}
fn default_lr() -> f64 {
    1e-3
}
fn default_constraint() -> f64 {
    1.0
}
fn default_prefetch() -> NonZeroUsize {
    NonZeroUsize::new(4).unwrap()
}
fn default_workers() -> NonZeroUsize {
    NonZeroUsize::new(2).unwrap()
}

/// The contents of a regressor's `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressorInfo {
    /// Always `wavenet`.
    pub arch: String,
    /// Network size.
    pub model: WaveNetConfig,
    /// Input channels.
    pub in_channels: usize,
    /// Input samples per channel.
    pub samples: usize,
    /// Target names, in output order.
    pub target_names: Vec<String>,
    /// Training-set mean of each target (outputs are standardised).
    pub target_mean: Vec<f64>,
    /// Training-set standard deviation of each target.
    pub target_std: Vec<f64>,
    /// The dataset's time grid (start, dt, samples).
    pub time_grid: Option<[f64; 3]>,
    /// `inputs_blake3` of the training dataset.
    pub dataset_blake3: String,
    /// Training seed.
    pub seed: u64,
    /// Ranks that trained it.
    pub world_size: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// The writer and its version.
    pub created_by: String,
}

/// One epoch of regressor training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegEpochStats {
    /// Zero-based epoch.
    pub epoch: usize,
    /// Mean training loss (standardised MSE + constraint penalty).
    pub train_loss: f64,
    /// Mean validation loss, if there is a validation split.
    pub val_loss: Option<f64>,
    /// Validation mean absolute error per target, physical units.
    pub val_mae: Option<Vec<f64>>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the training part.
    pub seconds: f64,
    /// Training samples per second, all ranks together.
    pub samples_per_second: f64,
    /// Seconds the training loop waited for the loader (rank 0's).
    #[serde(default)]
    pub data_wait_seconds: f64,
    /// Seconds spent averaging gradients across ranks (rank 0's).
    #[serde(default)]
    pub allreduce_seconds: f64,
}

/// A trained regressor, ready to predict.
pub struct Regressor {
    /// Its variables.
    pub vs: nn::VarStore,
    /// The network.
    pub net: WaveNet,
    /// Its description.
    pub info: RegressorInfo,
}

impl Regressor {
    /// Predictions in physical units, [n, targets].
    pub fn predict(&self, x: &Tensor) -> Tensor {
        let (mean, std) = stats_tensors(&self.info);
        tch::no_grad(|| self.net.forward_t(x, false) * std + mean)
    }
}

fn stats_tensors(info: &RegressorInfo) -> (Tensor, Tensor) {
    let f = |v: &[f64]| {
        Tensor::from_slice(&v.iter().map(|&x| x as f32).collect::<Vec<f32>>()).view([1, -1])
    };
    (f(&info.target_mean), f(&info.target_std))
}

/// Loads a regressor's model directory.
pub fn load_regressor(dir: &Path) -> Result<Regressor> {
    let json = dir.join("model.json");
    let text = std::fs::read_to_string(&json).map_err(|e| Error::Io {
        op: "failed to read",
        path: json.clone(),
        source: e,
    })?;
    let info: RegressorInfo = serde_json::from_str(&text).map_err(|e| Error::Model {
        path: json,
        message: format!("not a regressor description: {e}"),
    })?;
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let net = WaveNet::new(
        &vs.root(),
        info.in_channels,
        info.target_names.len(),
        &info.model,
    );
    let w = dir.join("weights.safetensors");
    vs.load(&w)
        .map_err(Error::torch(format!("failed to load {}", w.display())))?;
    Ok(Regressor { vs, net, info })
}

/// Batch buffers as tensors (x [n, C, T], targets [n, k]).
pub fn regression_tensors(batch: &sciflow_ingest::Batch) -> Result<(Tensor, Tensor)> {
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    let x = Tensor::from_slice(&batch.x)
        .f_reshape(&shape)
        .map_err(Error::torch(format!("batch of shape {:?}", batch.shape)))?;
    let n = batch.shape[0] as i64;
    let y = Tensor::from_slice(&batch.targets)
        .f_reshape([n, -1])
        .map_err(Error::torch(format!(
            "{} targets for {n} samples",
            batch.targets.len()
        )))?;
    Ok((x, y))
}

/// The loss's extra terms.
#[derive(Debug, Clone, Copy)]
struct LossTerms {
    /// Weight of the q >= 1, |chi| <= 1 penalty.
    constraint: f64,
    /// Weight of the chi_eff error term (0: none).
    chi_eff: f64,
    /// chi_eff's training-set standard deviation.
    chi_eff_std: f64,
}

/// chi_eff = (q chi1z + chi2z) / (1 + q) of `[n, 3]` physical (q, chi1z, chi2z).
fn chi_eff(p: &Tensor) -> Tensor {
    let q = p.select(1, 0);
    (&q * p.select(1, 1) + p.select(1, 2)) / (q + 1.0)
}

/// Weighted standardised MSE plus the constraint penalty (and the chi_eff
/// term); also returns the physical predictions. `tw`: per-target weights
/// `[1, k]`, mean 1.
fn loss_of(
    out: &Tensor,
    y: &Tensor,
    (mean, std, tw): (&Tensor, &Tensor, &Tensor),
    terms: LossTerms,
) -> (Tensor, Tensor) {
    let target = (y - mean) / std;
    let mse = ((out - &target).square() * tw).mean(Kind::Float);
    let phys = out * std + mean;
    let q = phys.select(1, 0);
    let chi = phys.narrow(1, 1, 2);
    let penalty = (q.neg() + 1.0).relu().square().mean(Kind::Float)
        + (chi.abs() - 1.0)
            .relu()
            .square()
            .sum_dim_intlist(1, false, Kind::Float)
            .mean(Kind::Float);
    let mut loss = mse + penalty * terms.constraint;
    if terms.chi_eff > 0.0 {
        let err = ((chi_eff(&phys) - chi_eff(y)) / terms.chi_eff_std)
            .square()
            .mean(Kind::Float);
        #[allow(clippy::assign_op_pattern)] // autograd needs a new node, not an in-place add
        {
            loss = loss + err * terms.chi_eff;
        }
    }
    (loss, phys)
}

/// `[1, k]` weights of the targets' squared errors, scaled to mean 1 so the
/// loss stays comparable with the unweighted one.
fn target_weight_tensor(weights: Option<&[f64]>, k: usize) -> Result<Tensor> {
    let w = match weights {
        None => vec![1.0; k],
        Some(w) => {
            if w.len() != k
                || w.iter().any(|v| !v.is_finite() || *v < 0.0)
                || w.iter().sum::<f64>() <= 0.0
            {
                return Err(Error::Config(format!(
                    "target_weights: expected {k} non-negative numbers, not all zero; got {w:?}"
                )));
            }
            let mean = w.iter().sum::<f64>() / k as f64;
            w.iter().map(|v| v / mean).collect()
        }
    };
    let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    Ok(Tensor::from_slice(&w).view([1, k as i64]))
}

/// Trains the regressor; rank 0 writes `weights.safetensors`, `model.json`
/// and `history.json` into `out`. Every rank calls it with the same arguments.
pub fn train_regressor(
    config: &RegressorConfig,
    seed: u64,
    out: &Path,
    comm: &dyn Comm,
    checkpoints: Option<&Checkpointing>,
    on_epoch: &mut dyn FnMut(&RegEpochStats),
) -> Result<Vec<RegEpochStats>> {
    let info = DatasetInfo::load(&config.data)?;
    if info.y.dtype != "F32" || info.x.sample_shape.len() != 2 {
        return Err(Error::Config(format!(
            "{} is not a waveform regression dataset (x {:?}, y {})",
            config.data.display(),
            info.x.sample_shape,
            info.y.dtype
        )));
    }
    let k = info.y.sample_shape.iter().product::<usize>();
    let loader_cfg = |shuffle: bool, even: bool| LoaderConfig {
        batch_size: config.batch_size.get(),
        shuffle,
        shuffle_buffer: 4 * config.batch_size.get(),
        prefetch: config.prefetch.get(),
        workers: config.workers.get(),
        drop_last: false,
        pad: config.pad && even,
        even_steps: even,
        seed,
        rank: comm.rank(),
        world_size: comm.size(),
    };
    let train = Loader::new(&config.data, Split::Train, loader_cfg(true, true))?;
    let val = Loader::new(&config.data, Split::Val, loader_cfg(false, false))?;
    if train.is_empty() {
        return Err(Error::Config(format!(
            "{} has no training samples",
            config.data.display()
        )));
    }
    // Target statistics over the whole training split (every rank reads it all,
    // unshuffled, so all agree without communication).
    let all = Loader::new(
        &config.data,
        Split::Train,
        LoaderConfig {
            rank: 0,
            world_size: 1,
            ..loader_cfg(false, false)
        },
    )?;
    if config.chi_eff_weight > 0.0 && k != 3 {
        return Err(Error::Config(format!(
            "chi_eff_weight needs targets (q, chi1z, chi2z); {} has {k}",
            config.data.display()
        )));
    }
    let (mut sum, mut sq, mut n) = (vec![0.0f64; k], vec![0.0f64; k], 0usize);
    let (mut ce_sum, mut ce_sq) = (0.0f64, 0.0f64);
    for b in all.epoch(0) {
        let b = b?;
        for row in b.targets.chunks_exact(k) {
            for (j, v) in row.iter().enumerate() {
                sum[j] += *v as f64;
                sq[j] += (*v as f64).powi(2);
            }
            if k == 3 {
                let (q, a, b) = (row[0] as f64, row[1] as f64, row[2] as f64);
                let ce = (q * a + b) / (1.0 + q);
                ce_sum += ce;
                ce_sq += ce * ce;
            }
            n += 1;
        }
    }
    let ce_mean = ce_sum / n as f64;
    let terms = LossTerms {
        constraint: config.constraint_weight,
        chi_eff: config.chi_eff_weight,
        chi_eff_std: (ce_sq / n as f64 - ce_mean * ce_mean)
            .max(0.0)
            .sqrt()
            .max(1e-6),
    };
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    let std: Vec<f64> = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| (s / n as f64 - m * m).max(0.0).sqrt().max(1e-6))
        .collect();

    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let model_info = RegressorInfo {
        arch: "wavenet".into(),
        model: config.model.clone(),
        in_channels: info.x.sample_shape[0],
        samples: info.x.sample_shape[1],
        target_names: if info.target_names.len() == k {
            info.target_names.clone()
        } else {
            (0..k).map(|j| format!("y{j}")).collect()
        },
        target_mean: mean,
        target_std: std,
        time_grid: info.time_grid,
        dataset_blake3: info.provenance.inputs_blake3.clone(),
        seed,
        world_size: comm.size(),
        epochs: config.epochs.get(),
        created_by: concat!("sciflow-train ", env!("CARGO_PKG_VERSION")).into(),
    };
    let net = WaveNet::new(&vs.root(), model_info.in_channels, k, &config.model);
    let (mean_t, std_t) = stats_tensors(&model_info);
    let tw_t = target_weight_tensor(config.target_weights.as_deref(), k)?;
    let stats = (&mean_t, &std_t, &tw_t);
    let mut opt = Optimizer::new(
        config.optimizer,
        config.weight_decay,
        vs.trainable_variables(),
    );
    broadcast_parameters(opt.params(), comm);
    let steps0 = train.steps_per_epoch(0);
    let plan = LrPlan {
        base: config.lr,
        scaling: config.lr_scaling,
        global_batch: config.batch_size.get() * comm.size(),
        warmup_steps: config.warmup_epochs * steps0,
        steps_per_epoch: steps0,
        total_steps: steps0 * config.epochs.get(),
        schedule: config.lr_schedule.clone(),
    };
    let mut history: Vec<RegEpochStats> = Vec::new();
    let mut step_no = 0;
    let mut lr = config.lr;
    let mut resumed: Option<Position> = None;
    if let Some(c) = checkpoints {
        if let Some((pos, done)) = c.restore(&mut vs, &mut opt, seed, comm)? {
            history = done;
            step_no = pos.global_step;
            resumed = Some(pos);
        }
    }
    let first_epoch = resumed.as_ref().map_or(0, |p| p.epoch);
    for epoch in first_epoch..config.epochs.get() {
        let steps = train.steps_per_epoch(epoch as u64);
        let (first, mut sums, before) = match resumed.take() {
            Some(p) => (p.step, [p.sums[0], p.sums[1]], p.seconds),
            None => (0, [0.0f64; 2], 0.0),
        };
        let started = Instant::now();
        let mut reduce_s = 0.0;
        let mut batches = Waited::new(train.epoch_from(epoch as u64, first));
        for (i, batch) in batches.by_ref().enumerate() {
            let step = first + i;
            let batch = batch?;
            tch::manual_seed(checkpoint::step_seed(seed, comm.rank(), step_no));
            let (x, y) = regression_tensors(&batch)?;
            let out_t = net.forward_t(&x, true);
            let (loss, _) = loss_of(&out_t, &y, stats, terms);
            opt.zero_grad();
            loss.backward();
            if comm.size() > 1 {
                reduce_s +=
                    average_gradients(opt.params(), comm, bucket_elems(config.allreduce_bucket_mb));
            }
            lr = plan.at(step_no);
            opt.step(lr);
            step_no += 1;
            let m = batch.shape[0] as f64;
            sums[0] += loss.double_value(&[]) * m;
            sums[1] += m;
            if let Some(c) = checkpoints {
                if c.every_steps > 0 && step_no % c.every_steps == 0 && step + 1 < steps {
                    let at = At {
                        epoch,
                        step: step + 1,
                        global_step: step_no,
                        sums: &sums,
                        seconds: before + started.elapsed().as_secs_f64(),
                        history: &history,
                    };
                    c.save(at, &vs, &opt, seed, comm)?;
                }
            }
        }
        let seconds = before + started.elapsed().as_secs_f64();
        comm.allreduce_sum_f64(&mut sums);
        // Validation: loss and MAE per target, all ranks together.
        let mut vsums = vec![0.0f64; 2 + k];
        if !val.is_empty() {
            tch::no_grad(|| -> Result<()> {
                for batch in val.epoch(0) {
                    let batch = batch?;
                    let (x, y) = regression_tensors(&batch)?;
                    let (loss, phys) = loss_of(&net.forward_t(&x, false), &y, stats, terms);
                    let m = batch.shape[0] as f64;
                    vsums[0] += loss.double_value(&[]) * m;
                    vsums[1] += m;
                    let mae = (phys - &y).abs().sum_dim_intlist(0, false, Kind::Float);
                    for j in 0..k {
                        vsums[2 + j] += mae.double_value(&[j as i64]);
                    }
                }
                Ok(())
            })?;
        }
        comm.allreduce_sum_f64(&mut vsums);
        let stats = RegEpochStats {
            epoch,
            train_loss: sums[0] / sums[1].max(1.0),
            val_loss: (vsums[1] > 0.0).then(|| vsums[0] / vsums[1]),
            val_mae: (vsums[1] > 0.0).then(|| vsums[2..].iter().map(|s| s / vsums[1]).collect()),
            lr,
            seconds,
            samples_per_second: sums[1] / seconds.max(1e-9),
            data_wait_seconds: batches.seconds,
            allreduce_seconds: reduce_s,
        };
        on_epoch(&stats);
        history.push(stats);
        if let Some(c) = checkpoints {
            let at = At {
                epoch: epoch + 1,
                step: 0,
                global_step: step_no,
                sums: &[0.0; 2],
                seconds: 0.0,
                history: &history,
            };
            c.save(at, &vs, &opt, seed, comm)?;
        }
    }
    if comm.rank() == 0 {
        std::fs::create_dir_all(out).map_err(|e| Error::Io {
            op: "failed to create",
            path: out.to_path_buf(),
            source: e,
        })?;
        let w = out.join("weights.safetensors");
        vs.save(&w)
            .map_err(Error::torch(format!("failed to write {}", w.display())))?;
        for (name, bytes) in [
            (
                "model.json",
                serde_json::to_vec_pretty(&model_info).expect("serialises"),
            ),
            (
                // The classifier's shape, so one reader serves both.
                "history.json",
                serde_json::to_vec_pretty(&serde_json::json!({
                    "history": &history,
                    "world_size": comm.size(),
                }))
                .expect("serialises"),
            ),
        ] {
            let p = out.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::Io {
                op: "failed to write",
                path: p,
                source: e,
            })?;
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sciflow_ingest::dataset::{OnError, SplitFractions};
    use sciflow_ingest::waveset::{write_dataset, WaveformsConfig};

    #[test]
    fn trains_on_a_waveform_dataset_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/waveforms");
        let ds = dir.path().join("ds");
        write_dataset(
            &WaveformsConfig {
                inputs: vec![data.join("bank_tiny.h5"), data.join("lvcnr")],
                dt: 4.0,
                window: Some([-2000.0, 60.0]),
                sxs_order: 2,
                split: SplitFractions {
                    val: 0.2,
                    test: 0.0,
                },
                shard_size: NonZeroUsize::new(2).unwrap(),
                on_error: OnError::Fail,
                representation: Default::default(),
                align_phase: true,
            },
            1,
            &ds,
            1,
            &|_| {},
        )
        .unwrap();
        let cfg = RegressorConfig {
            data: ds.clone(),
            model: WaveNetConfig {
                channels: 8,
                skip_channels: 8,
                layers: 3,
                stacks: 1,
                input_stride: 2,
            },
            epochs: NonZeroUsize::new(3).unwrap(),
            batch_size: NonZeroUsize::new(2).unwrap(),
            lr: 1e-3,
            lr_scaling: LrScaling::None,
            warmup_epochs: 0,
            lr_schedule: LrSchedule::default(),
            optimizer: OptimizerKind::default(),
            weight_decay: 0.0,
            constraint_weight: 1.0,
            target_weights: None,
            chi_eff_weight: 0.0,
            pad: false,
            checkpoint_every: 0,
            allreduce_bucket_mb: 0.0,
            prefetch: NonZeroUsize::new(2).unwrap(),
            workers: NonZeroUsize::new(1).unwrap(),
        };
        let out = dir.path().join("model");
        let h = train_regressor(&cfg, 5, &out, &crate::Single, None, &mut |_| {}).unwrap();
        assert_eq!(h.len(), 3);
        assert!(h
            .iter()
            .all(|e| e.train_loss.is_finite() && e.val_mae.as_ref().unwrap().len() == 3));
        let r = load_regressor(&out).unwrap();
        assert_eq!(r.info.target_names, ["q", "chi1z", "chi2z"]);
        assert!(r.info.target_mean[0] >= 1.0);
        let x = Tensor::zeros(
            [2, 2, r.info.samples as i64],
            (Kind::Float, tch::Device::Cpu),
        );
        assert_eq!(r.predict(&x).size(), vec![2, 3]);
        // Same seed, same weights on CPU.
        let out2 = dir.path().join("model2");
        train_regressor(&cfg, 5, &out2, &crate::Single, None, &mut |_| {}).unwrap();
        assert_eq!(
            std::fs::read(out.join("weights.safetensors")).unwrap(),
            std::fs::read(out2.join("weights.safetensors")).unwrap()
        );
    }

    #[test]
    fn the_constraint_penalises_unphysical_predictions_only() {
        let mean = Tensor::from_slice(&[0.0f32, 0.0, 0.0]).view([1, 3]);
        let std = Tensor::from_slice(&[1.0f32, 1.0, 1.0]).view([1, 3]);
        let y = Tensor::from_slice(&[2.0f32, 0.5, -0.5]).view([1, 3]);
        let ones = target_weight_tensor(None, 3).unwrap();
        let stats = (&mean, &std, &ones);
        let c = |constraint| LossTerms {
            constraint,
            chi_eff: 0.0,
            chi_eff_std: 1.0,
        };
        let (physical, _) = loss_of(&y, &y, stats, c(10.0));
        assert_eq!(physical.double_value(&[]), 0.0);
        // q = 0.5 < 1 and chi1 = 1.5 > 1: penalty (0.5^2 + 0.5^2) * 10 on top of the MSE.
        let bad = Tensor::from_slice(&[0.5f32, 1.5, -0.5]).view([1, 3]);
        let (l, _) = loss_of(&bad, &y, stats, c(10.0));
        let mse = (1.5f64.powi(2) + 1.0) / 3.0;
        assert!(
            (l.double_value(&[]) - (mse + 5.0)).abs() < 1e-5,
            "{}",
            l.double_value(&[])
        );
        // Weights [2, 0, 1] scale to [2, 0, 1] / 1: only q's and chi2's errors count.
        let w = target_weight_tensor(Some(&[2.0, 0.0, 1.0]), 3).unwrap();
        let (l, _) = loss_of(&bad, &y, (&mean, &std, &w), c(0.0));
        assert!((l.double_value(&[]) - 2.0 * 1.5f64.powi(2) / 3.0).abs() < 1e-5);
        assert!(target_weight_tensor(Some(&[1.0, 1.0]), 3).is_err());
        assert!(target_weight_tensor(Some(&[0.0, 0.0, 0.0]), 3).is_err());
    }

    #[test]
    fn the_chi_eff_term_adds_its_weighted_squared_error() {
        let mean = Tensor::from_slice(&[0.0f32, 0.0, 0.0]).view([1, 3]);
        let std = Tensor::from_slice(&[1.0f32, 1.0, 1.0]).view([1, 3]);
        let ones = target_weight_tensor(None, 3).unwrap();
        // True (q, chi1z, chi2z) = (3, 0.2, -0.2): chi_eff = (0.6 - 0.2) / 4 = 0.1.
        let y = Tensor::from_slice(&[3.0f32, 0.2, -0.2]).view([1, 3]);
        // Predicted (3, 0.6, -0.2): chi_eff = (1.8 - 0.2) / 4 = 0.4.
        let out = Tensor::from_slice(&[3.0f32, 0.6, -0.2]).view([1, 3]);
        let terms = |chi_eff| LossTerms {
            constraint: 0.0,
            chi_eff,
            chi_eff_std: 0.5,
        };
        let (without, _) = loss_of(&out, &y, (&mean, &std, &ones), terms(0.0));
        let (with, _) = loss_of(&out, &y, (&mean, &std, &ones), terms(2.0));
        let mse = 0.4f64.powi(2) / 3.0;
        assert!((without.double_value(&[]) - mse).abs() < 1e-6);
        // 2 x ((0.4 - 0.1) / 0.5)^2 = 0.72 on top.
        assert!((with.double_value(&[]) - (mse + 0.72)).abs() < 1e-5);
    }
}
