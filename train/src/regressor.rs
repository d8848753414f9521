//! Training a waveform regressor: the WaveNet of [`crate::wavenet`] mapping a
//! waveform dataset's samples (`x` [2, T]) to its F32 targets (q, chi1z,
//! chi2z), data-parallel like the classifier (rank 0's initial weights
//! broadcast, one fused gradient allreduce per step).
//!
//! The loss is the mean squared error of the standardised targets plus the
//! physical constraints of general relativity on the predictions in physical
//! units: a mass ratio q >= 1 and dimensionless spins |chi| <= 1, each
//! violation penalised quadratically with weight `constraint_weight`.
//!
//! The network may predict the targets themselves or, with
//! `outputs: q_chi_eff_chi_a`, the mass ratio, the effective spin and the
//! antisymmetric spin, which [`Outputs`] maps back to (q, chi1z, chi2z): the
//! waveform depends on chi_eff far more than on either spin, and a linear
//! head gives chi_eff directly instead of through the product q chi1z.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use sciflow_ingest::{Batch, DatasetInfo, Split};

use crate::dist::Single;
use crate::history::TrainHistory;
use crate::learner::{fit, training_config, Figures, Run, Task};
use crate::wavenet::{WaveNet, WaveNetConfig};
use crate::{Error, Result};

training_config! {
    /// Configuration of `train.regressor`.
    pub struct RegressorConfig {
        default_batch: 64,
        /// Network size.
        #[serde(default)]
        pub model: WaveNetConfig,
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
        /// What the network's head predicts (default: the dataset's targets).
        /// `target_weights` weigh these outputs.
        #[serde(default)]
        pub outputs: Outputs,
    }
}

/// The quantities a regressor's head predicts, in its own order; predictions
/// are always mapped back to the dataset's targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outputs {
    /// The dataset's targets as they are.
    #[default]
    Dataset,
    /// For targets (q, chi1z, chi2z): q, chi_eff = (q chi1z + chi2z) / (1 + q)
    /// and chi_a = (chi1z - chi2z) / 2.
    QChiEffChiA,
}

impl Outputs {
    /// Dataset targets `[n, k]` in physical units -> the head's quantities.
    fn encode(self, y: &Tensor) -> Tensor {
        match self {
            Outputs::Dataset => y.shallow_clone(),
            Outputs::QChiEffChiA => {
                let chi_a = (y.select(1, 1) - y.select(1, 2)) / 2.0;
                Tensor::stack(&[y.select(1, 0), chi_eff(y), chi_a], 1)
            }
        }
    }

    /// The head's quantities in physical units -> the dataset's targets:
    /// chi1z = chi_eff + 2 chi_a / (1 + q), chi2z = chi_eff - 2 q chi_a / (1 + q).
    fn decode(self, z: &Tensor) -> Tensor {
        match self {
            Outputs::Dataset => z.shallow_clone(),
            Outputs::QChiEffChiA => {
                let (q, ce, ca) = (z.select(1, 0), z.select(1, 1), z.select(1, 2));
                let s = &ca * 2.0 / (&q + 1.0);
                let chi1 = &ce + &s;
                let chi2 = &ce - &s * &q;
                Tensor::stack(&[q, chi1, chi2], 1)
            }
        }
    }
}

fn default_constraint() -> f64 {
    1.0
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
    /// What the head predicts; `target_mean` and `target_std` are of these.
    #[serde(default)]
    pub outputs: Outputs,
    /// The writer and its version.
    pub created_by: String,
}

/// A trained regressor, ready to predict.
pub struct Regressor {
    /// Its variables.
    pub vs: nn::VarStore,
    /// The network.
    pub net: WaveNet,
    /// Its description.
    pub info: RegressorInfo,
    /// The targets' training-set mean and standard deviation, `[1, k]`, on
    /// the network's device.
    mean: Tensor,
    std: Tensor,
}

impl Regressor {
    /// Predictions in physical units, [n, targets], on the network's device.
    pub fn predict(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            self.info
                .outputs
                .decode(&(self.net.forward_t(x, false) * &self.std + &self.mean))
        })
    }
}

fn stats_tensors(info: &RegressorInfo) -> (Tensor, Tensor) {
    let f = |v: &[f64]| {
        Tensor::from_slice(&v.iter().map(|&x| x as f32).collect::<Vec<f32>>()).view([1, -1])
    };
    (f(&info.target_mean), f(&info.target_std))
}

/// Loads a regressor's model directory onto `device`.
pub fn load_regressor(dir: &Path, device: tch::Device) -> Result<Regressor> {
    let (vs, net, info) = crate::model_dir::load(
        dir,
        "regressor description",
        device,
        |vs, info: &RegressorInfo| {
            WaveNet::new(
                &vs.root(),
                info.in_channels,
                info.target_names.len(),
                &info.model,
            )
        },
    )?;
    let (mean, std) = stats_tensors(&info);
    Ok(Regressor {
        mean: mean.to_device(device),
        std: std.to_device(device),
        vs,
        net,
        info,
    })
}

/// A batch as host tensors (x `[n, C, T]`, targets `[n, k]`).
pub fn regression_tensors(batch: &Batch) -> Result<(Tensor, Tensor)> {
    let x = crate::input::inputs(batch, tch::Device::Cpu)?;
    Ok((x, regression_targets(batch)?))
}

/// A batch's targets, `[n, k]`; their count comes from the data, so it is checked.
fn regression_targets(batch: &Batch) -> Result<Tensor> {
    let n = batch.shape[0] as i64;
    Tensor::from_slice(&batch.targets)
        .f_reshape([n, -1])
        .map_err(Error::torch(format!(
            "{} targets for {n} samples",
            batch.targets.len()
        )))
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
    /// What the network's head predicts.
    outputs: Outputs,
}

/// chi_eff = (q chi1z + chi2z) / (1 + q) of `[n, 3]` physical (q, chi1z, chi2z).
fn chi_eff(p: &Tensor) -> Tensor {
    let q = p.select(1, 0);
    (&q * p.select(1, 1) + p.select(1, 2)) / (q + 1.0)
}

/// Weighted standardised MSE of the head's outputs plus the constraint
/// penalty (and the chi_eff term); also returns the predictions as physical
/// targets. `mean`, `std`: the outputs' statistics; `tw`: per-output weights
/// `[1, k]`, mean 1.
fn loss_of(
    out: &Tensor,
    y: &Tensor,
    (mean, std, tw): (&Tensor, &Tensor, &Tensor),
    terms: LossTerms,
) -> (Tensor, Tensor) {
    let target = (terms.outputs.encode(y) - mean) / std;
    let mse = ((out - &target).square() * tw).mean(Kind::Float);
    let phys = terms.outputs.decode(&(out * std + mean));
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

/// The regression task: the standardised, weighted MSE plus the physical
/// constraints (and the chi_eff term); validation also sums each target's
/// absolute error in physical units.
struct Regression {
    info: RegressorInfo,
    model: WaveNetConfig,
    terms: LossTerms,
    mean: Tensor,
    std: Tensor,
    weights: Tensor,
    /// `mean` and `std` on the host, for the export: the module is traced on
    /// the CPU, and a device tensor in its graph would be stored as a
    /// constant on that device followed by a move, so loading the module
    /// would need that device.
    host_stats: (Tensor, Tensor),
}

impl Regression {
    fn loss(&self, out: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
        loss_of(out, y, (&self.mean, &self.std, &self.weights), self.terms)
    }

    fn targets(&self) -> usize {
        self.info.target_names.len()
    }
}

impl Task for Regression {
    fn build(&mut self, vs: &mut nn::VarStore) -> Result<Box<dyn ModuleT>> {
        // The loss's statistics live where the network does.
        let device = vs.device();
        for t in [&mut self.mean, &mut self.std, &mut self.weights] {
            *t = t.to_device(device);
        }
        Ok(Box::new(WaveNet::new(
            &vs.root(),
            self.info.in_channels,
            self.targets(),
            &self.model,
        )))
    }

    fn expected(&self, batch: &Batch) -> Result<Tensor> {
        regression_targets(batch)
    }

    fn train_step(
        &self,
        net: &dyn ModuleT,
        x: &Tensor,
        y: &Tensor,
        n: f64,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (loss, _) = self.loss(&net.forward_t(x, true), y);
        let sums = vec![loss.detach().to_kind(Kind::Double) * n];
        Ok((loss, sums))
    }

    fn valid_step(&self, net: &dyn ModuleT, x: &Tensor, y: &Tensor, n: f64) -> Result<Vec<Tensor>> {
        let (loss, phys) = self.loss(&net.forward_t(x, false), y);
        let mae = (phys - y)
            .abs()
            .sum_dim_intlist(0, false, Kind::Float)
            .to_kind(Kind::Double);
        let mut sums = vec![loss.to_kind(Kind::Double) * n];
        sums.extend((0..self.targets()).map(|j| mae.get(j as i64)));
        Ok(sums)
    }

    fn train_sums(&self) -> usize {
        1
    }

    fn valid_sums(&self) -> usize {
        1 + self.targets()
    }

    fn figures(&self, train: &[f64], samples: f64, valid: Option<(&[f64], f64)>) -> Figures {
        let valid = valid.filter(|(_, n)| *n > 0.0);
        Figures {
            train_loss: train[0] / samples.max(1.0),
            train_accuracy: None,
            val_loss: valid.map(|(v, n)| v[0] / n),
            val_accuracy: None,
            val_mae: valid.map(|(v, n)| v[1..].iter().map(|s| s / n).collect()),
        }
    }

    type Info = RegressorInfo;

    fn info(&self) -> &RegressorInfo {
        &self.info
    }

    /// Physical q, chi1z, chi2z, as [`Regressor::predict`] gives them.
    fn export(&self, net: &dyn ModuleT, x: &Tensor) -> Tensor {
        let (mean, std) = &self.host_stats;
        self.info
            .outputs
            .decode(&(net.forward_t(x, false) * std + mean))
    }
}

/// Trains the regressor; rank 0 writes `weights.safetensors`, `model.json`
/// and `history.json` into `out`. Every rank calls it with the same
/// arguments. See [`fit`] for the rest.
pub fn train_regressor(config: &RegressorConfig, run: Run<'_>) -> Result<TrainHistory> {
    let (seed, comm) = (run.seed, run.comm);
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
    if config.chi_eff_weight > 0.0 && k != 3 {
        return Err(Error::Config(format!(
            "chi_eff_weight needs targets (q, chi1z, chi2z); {} has {k}",
            config.data.display()
        )));
    }
    if config.outputs == Outputs::QChiEffChiA && k != 3 {
        return Err(Error::Config(format!(
            "outputs q_chi_eff_chi_a needs targets (q, chi1z, chi2z); {} has {k}",
            config.data.display()
        )));
    }
    let loop_config = config.loop_config();
    // Statistics of the head's outputs over the whole training split (every
    // rank reads it all, in order, so all agree without communication).
    let all = loop_config.loader(Split::Train, false, false, seed, &Single)?;
    let mut rows: Vec<f32> = Vec::new();
    for b in all.epoch(0) {
        rows.extend_from_slice(&b?.targets);
    }
    if rows.is_empty() {
        return Err(Error::Config(format!(
            "{} has no training samples",
            config.data.display()
        )));
    }
    let y = Tensor::from_slice(&rows)
        .f_view([-1, k as i64])
        .map_err(Error::torch(format!(
            "{} targets in rows of {k}",
            rows.len()
        )))?
        .to_kind(Kind::Double);
    let to_vec = |t: Tensor| Vec::<f64>::try_from(t).map_err(Error::torch("target statistics"));
    let z = config.outputs.encode(&y);
    let mean = to_vec(z.mean_dim(0, false, Kind::Double))?;
    let std = to_vec(z.std_dim(0, false, false).clamp_min(1e-6))?;
    let chi_eff_std = if k == 3 {
        chi_eff(&y).std(false).double_value(&[]).max(1e-6)
    } else {
        1.0
    };
    let terms = LossTerms {
        constraint: config.constraint_weight,
        chi_eff: config.chi_eff_weight,
        chi_eff_std,
        outputs: config.outputs,
    };
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
        outputs: config.outputs,
        created_by: concat!("sciflow-train ", env!("CARGO_PKG_VERSION")).into(),
    };
    let (mean_t, std_t) = stats_tensors(&model_info);
    let mut task = Regression {
        weights: target_weight_tensor(config.target_weights.as_deref(), k)?,
        info: model_info,
        model: config.model.clone(),
        terms,
        host_stats: (mean_t.copy(), std_t.copy()),
        mean: mean_t,
        std: std_t,
    };
    fit(&loop_config, &mut task, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    use crate::learner::Observer;
    use crate::optim::{LrScaling, LrSchedule, OptimizerKind};
    use sciflow_ingest::writers::waveforms::{write_dataset, WaveformsConfig};
    use sciflow_ingest::{OnError, SplitFractions};

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
                split: SplitFractions::new(0.2, 0.0),
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
            outputs: Outputs::Dataset,
            pad: false,
            checkpoint_every: 0,
            allreduce_bucket_mb: 0.0,
            prefetch: NonZeroUsize::new(2).unwrap(),
            workers: NonZeroUsize::new(1).unwrap(),
            device: Default::default(),
            precision: Default::default(),
        };
        let out = dir.path().join("model");
        let run = |out| Run {
            seed: 5,
            out,
            comm: &crate::Single,
            checkpoints: None,
            observer: Observer::quiet(),
        };
        let h = train_regressor(&cfg, run(&out)).unwrap().history;
        assert_eq!(h.len(), 3);
        assert!(h
            .iter()
            .all(|e| e.train_loss.is_finite() && e.val_mae.as_ref().unwrap().len() == 3));
        let r = load_regressor(&out, tch::Device::Cpu).unwrap();
        assert_eq!(r.info.target_names, ["q", "chi1z", "chi2z"]);
        assert!(r.info.target_mean[0] >= 1.0);
        let x = Tensor::zeros(
            [2, 2, r.info.samples as i64],
            (Kind::Float, tch::Device::Cpu),
        );
        assert_eq!(r.predict(&x).size(), vec![2, 3]);
        // Same seed, same weights on CPU.
        let out2 = dir.path().join("model2");
        train_regressor(&cfg, run(&out2)).unwrap();
        assert_eq!(
            std::fs::read(out.join("weights.safetensors")).unwrap(),
            std::fs::read(out2.join("weights.safetensors")).unwrap()
        );
        // A head on (q, chi_eff, chi_a): its statistics are of those, and its
        // predictions come back as (q, chi1z, chi2z).
        let out3 = dir.path().join("model3");
        let effective = RegressorConfig {
            outputs: Outputs::QChiEffChiA,
            ..cfg.clone()
        };
        train_regressor(&effective, run(&out3)).unwrap();
        let r3 = load_regressor(&out3, tch::Device::Cpu).unwrap();
        assert_eq!(r3.info.outputs, Outputs::QChiEffChiA);
        assert_eq!(r3.info.target_names, ["q", "chi1z", "chi2z"]);
        assert_eq!(r3.info.target_mean[0], r.info.target_mean[0]);
        assert!(r3.info.target_std[1] < r.info.target_std[1]);
        let p = r3.predict(&x);
        let z = r3.net.forward_t(&x, false) * &r3.std + &r3.mean;
        let again = Outputs::QChiEffChiA.encode(&p);
        assert!((again - z).abs().max().double_value(&[]) < 1e-4);
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
            outputs: Outputs::Dataset,
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
            outputs: Outputs::Dataset,
        };
        let (without, _) = loss_of(&out, &y, (&mean, &std, &ones), terms(0.0));
        let (with, _) = loss_of(&out, &y, (&mean, &std, &ones), terms(2.0));
        let mse = 0.4f64.powi(2) / 3.0;
        assert!((without.double_value(&[]) - mse).abs() < 1e-6);
        // 2 x ((0.4 - 0.1) / 0.5)^2 = 0.72 on top.
        assert!((with.double_value(&[]) - (mse + 0.72)).abs() < 1e-5);
    }

    #[test]
    fn q_chi_eff_chi_a_outputs_map_back_to_the_spins() {
        let y =
            Tensor::from_slice(&[3.0f64, 0.2, -0.2, 1.0, -0.7, 0.4, 7.5, 0.8, -0.8]).view([3, 3]);
        let o = Outputs::QChiEffChiA;
        let z = o.encode(&y);
        // (3, 0.2, -0.2): chi_eff = (0.6 - 0.2) / 4 = 0.1, chi_a = 0.2.
        let first = Vec::<f64>::try_from(z.get(0)).unwrap();
        for (a, b) in first.iter().zip([3.0, 0.1, 0.2]) {
            assert!((a - b).abs() < 1e-12, "{first:?}");
        }
        let back = o.decode(&z);
        assert!((back - &y).abs().max().double_value(&[]) < 1e-12);
        let same = Outputs::Dataset.decode(&Outputs::Dataset.encode(&y));
        assert!(same.equal(&y));
    }

    #[test]
    fn q_chi_eff_chi_a_loss_weighs_the_effective_spin() {
        let zero = Tensor::zeros([1, 3], (Kind::Float, tch::Device::Cpu));
        let one = Tensor::ones([1, 3], (Kind::Float, tch::Device::Cpu));
        let terms = LossTerms {
            constraint: 0.0,
            chi_eff: 0.0,
            chi_eff_std: 1.0,
            outputs: Outputs::QChiEffChiA,
        };
        // True (3, 0.2, -0.2) is (q, chi_eff, chi_a) = (3, 0.1, 0.2); the head
        // says (3, 0.4, 0.2), i.e. chi1z = 0.5, chi2z = 0.1.
        let y = Tensor::from_slice(&[3.0f32, 0.2, -0.2]).view([1, 3]);
        let out = Tensor::from_slice(&[3.0f32, 0.4, 0.2]).view([1, 3]);
        let w = target_weight_tensor(Some(&[0.0, 3.0, 0.0]), 3).unwrap();
        let (l, phys) = loss_of(&out, &y, (&zero, &one, &w), terms);
        // Only chi_eff's error counts, weight 3 / 1: 3 x 0.3^2 / 3.
        assert!((l.double_value(&[]) - 0.09).abs() < 1e-6, "{l}");
        let p = Vec::<f32>::try_from(phys.view([-1])).unwrap();
        for (a, b) in p.iter().zip([3.0, 0.5, 0.1]) {
            assert!((a - b).abs() < 1e-6, "{p:?}");
        }
    }
}
