//! Training an image classifier, on one process or data-parallel.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use sciflow_ingest::dataset::{DatasetInfo, Split};
use sciflow_ingest::{Batch, Loader, LoaderConfig};

use crate::allreduce::{average_gradients, broadcast_parameters, bucket_elems};
use crate::checkpoint::{self, At, Checkpointing, Position};
use crate::dist::Comm;
use crate::model::{build, save_model, ModelConfig, ModelInfo};
use crate::optim::{LrPlan, LrScaling, LrSchedule, Optimizer, OptimizerKind};
use crate::{Error, Result};

/// Configuration of `train.classifier`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// The dataset directory (an `ingest.galaxy_images` output).
    pub data: PathBuf,
    /// The network.
    #[serde(default)]
    pub model: ModelConfig,
    /// Passes over the training split.
    pub epochs: NonZeroUsize,
    /// Samples per step on each rank (the global batch is this times the ranks).
    #[serde(default = "default_batch")]
    pub batch_size: NonZeroUsize,
    /// Base learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Scaling of the learning rate with the global batch.
    #[serde(default)]
    pub lr_scaling: LrScaling,
    /// Epochs of linear warm-up to the (scaled) learning rate.
    #[serde(default)]
    pub warmup_epochs: usize,
    /// How the rate changes after warm-up (`constant`, `cosine`, `step`).
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// The update rule.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// L2 weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Random right-angle rotations and flips of each training image (galaxies have no up).
    #[serde(default = "default_true")]
    pub augment: bool,
    /// With `augment`, also shift each training image by up to this many pixels
    /// in x and y (edges repeated), so the network does not rely on the
    /// object being exactly centred.
    #[serde(default)]
    pub augment_shift: usize,
    /// Batches the loader prepares ahead.
    #[serde(default = "default_prefetch")]
    pub prefetch: NonZeroUsize,
    /// Loader threads reading shards.
    #[serde(default = "default_workers")]
    pub workers: NonZeroUsize,
    /// Ranks with fewer training samples repeat some, so every rank takes
    /// the same number of full batches and every sample is seen each epoch
    /// (otherwise every rank stops at the shortest rank's batch count).
    #[serde(default)]
    pub pad: bool,
    /// Checkpoint every this many steps as well as at each epoch's end (0:
    /// epoch ends only). Used when the run has a checkpoint directory.
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Gradients are averaged in buckets of at most this many MiB, one
    /// allreduce each (0: one fused buffer for the whole model).
    #[serde(default)]
    pub allreduce_bucket_mb: f64,
    /// A safetensors file of initial weights (fine-tuning): variables found in
    /// it by name and shape are set from it, the rest (e.g. a new head) start fresh.
    #[serde(default)]
    pub init_weights: Option<PathBuf>,
}

fn default_batch() -> NonZeroUsize {
    NonZeroUsize::new(32).unwrap()
}
fn default_lr() -> f64 {
    1e-3
}
fn default_true() -> bool {
    true
}
fn default_prefetch() -> NonZeroUsize {
    NonZeroUsize::new(4).unwrap()
}
fn default_workers() -> NonZeroUsize {
    NonZeroUsize::new(2).unwrap()
}

/// Figures of one epoch, averaged over all ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training cross-entropy.
    pub train_loss: f64,
    /// Training accuracy (on augmented images).
    pub train_accuracy: f64,
    /// Mean validation cross-entropy, when there is a validation split.
    pub val_loss: Option<f64>,
    /// Validation accuracy, when there is a validation split.
    pub val_accuracy: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the training part of the epoch.
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

/// What training produced besides the model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// Ranks that took part.
    pub world_size: usize,
    /// Steps each rank took per epoch (the first epoch).
    pub steps_per_epoch: usize,
}

/// Trains a classifier on `config.data` and, on rank 0, writes the model
/// directory (`weights.safetensors`, `model.json`, `history.json`) into `out`.
///
/// Every rank of `comm` must call this with the same arguments. `on_step` is
/// called after each step with (step in epoch, steps per epoch); `on_epoch`
/// after each epoch. With `checkpoints`, rank 0 saves the state at each
/// epoch's end (and every `every_steps` steps), and a `resume` continues
/// from the saved state exactly.
pub fn train_classifier(
    config: &ClassifierConfig,
    seed: u64,
    out: &Path,
    comm: &dyn Comm,
    checkpoints: Option<&Checkpointing>,
    on_step: &mut dyn FnMut(usize, usize),
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<TrainReport> {
    let info = DatasetInfo::load(&config.data)?;
    if info.x.sample_shape.len() != 3 || info.class_names.len() < 2 {
        return Err(Error::Config(format!(
            "{} is not an image classification dataset (sample shape {:?}, {} classes)",
            config.data.display(),
            info.x.sample_shape,
            info.class_names.len()
        )));
    }
    let loader_cfg = |split_seed: u64, shuffle: bool, even_steps: bool| LoaderConfig {
        batch_size: config.batch_size.get(),
        shuffle,
        shuffle_buffer: 4 * config.batch_size.get(),
        prefetch: config.prefetch.get(),
        workers: config.workers.get(),
        drop_last: false,
        pad: config.pad,
        even_steps,
        seed: split_seed,
        rank: comm.rank(),
        world_size: comm.size(),
    };
    let train = Loader::new(&config.data, Split::Train, loader_cfg(seed, true, true))?;
    let val = Loader::new(&config.data, Split::Val, loader_cfg(seed, false, false))?;
    if train.steps_per_epoch(0) == 0 {
        return Err(Error::Config(format!(
            "the training split of {} has too few samples for {} ranks",
            config.data.display(),
            comm.size()
        )));
    }

    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let model_info = ModelInfo {
        model: config.model.clone(),
        in_channels: info.x.sample_shape[0],
        image_size: info.x.sample_shape[1],
        class_names: info.class_names.clone(),
        dataset_blake3: info.provenance.inputs_blake3.clone(),
        seed,
        world_size: comm.size(),
        epochs: config.epochs.get(),
        created_by: concat!("sciflow-train ", env!("CARGO_PKG_VERSION")).into(),
    };
    let net = build(&vs, &model_info);
    if let Some(path) = &config.init_weights {
        let report = crate::model::load_initial_weights(&mut vs, path)?;
        tracing::info!(
            "initial weights from {}: {} variable(s) loaded, {} kept fresh{}",
            path.display(),
            report.loaded,
            report.kept.len(),
            report
                .kept
                .first()
                .map(|k| format!(" (e.g. {k})"))
                .unwrap_or_default()
        );
    }
    let mut opt = Optimizer::new(
        config.optimizer,
        config.weight_decay,
        vs.trainable_variables(),
    );
    broadcast_parameters(opt.params(), comm);

    let global_batch = config.batch_size.get() * comm.size();
    let steps0 = train.steps_per_epoch(0);
    let lr_plan = LrPlan {
        base: config.lr,
        scaling: config.lr_scaling,
        global_batch,
        warmup_steps: config.warmup_epochs * steps0,
        steps_per_epoch: steps0,
        total_steps: steps0 * config.epochs.get(),
        schedule: config.lr_schedule.clone(),
    };
    let mut history: Vec<EpochStats> = Vec::new();
    let mut global_step = 0;
    let mut lr = config.lr;
    let mut resumed: Option<Position> = None;
    if let Some(c) = checkpoints {
        if let Some((pos, done)) = c.restore(&mut vs, &mut opt, seed, comm)? {
            history = done;
            global_step = pos.global_step;
            resumed = Some(pos);
        }
    }
    let first_epoch = resumed.as_ref().map_or(0, |p| p.epoch);
    for epoch in first_epoch..config.epochs.get() {
        let steps = train.steps_per_epoch(epoch as u64);
        // loss x samples, correct, samples
        let (first, mut sums, before) = match resumed.take() {
            Some(p) => (p.step, [p.sums[0], p.sums[1], p.sums[2]], p.seconds),
            None => (0, [0.0f64; 3], 0.0),
        };
        let started = Instant::now();
        let mut reduce_s = 0.0;
        let mut batches = Waited::new(train.epoch_from(epoch as u64, first));
        for (i, batch) in batches.by_ref().enumerate() {
            let step = first + i;
            let mut batch = batch?;
            if config.augment {
                augment(
                    &mut batch,
                    seed,
                    epoch,
                    comm.rank(),
                    step,
                    config.augment_shift,
                );
            }
            tch::manual_seed(checkpoint::step_seed(seed, comm.rank(), global_step));
            let (x, y) = to_tensors(&batch)?;
            let logits = net.forward_t(&x, true);
            let loss = logits.cross_entropy_for_logits(&y);
            opt.zero_grad();
            loss.backward();
            if comm.size() > 1 {
                reduce_s +=
                    average_gradients(opt.params(), comm, bucket_elems(config.allreduce_bucket_mb));
            }
            lr = lr_plan.at(global_step);
            opt.step(lr);
            global_step += 1;
            let n = batch.y.len() as f64;
            sums[0] += loss.double_value(&[]) * n;
            sums[1] += correct(&logits, &y);
            sums[2] += n;
            on_step(step + 1, steps);
            if let Some(c) = checkpoints {
                if c.every_steps > 0 && global_step % c.every_steps == 0 && step + 1 < steps {
                    let at = At {
                        epoch,
                        step: step + 1,
                        global_step,
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
        let (val_loss, val_accuracy) = match evaluate(&*net, &val, comm)? {
            Some((l, a)) => (Some(l), Some(a)),
            None => (None, None),
        };
        let stats = EpochStats {
            epoch,
            train_loss: sums[0] / sums[2],
            train_accuracy: sums[1] / sums[2],
            val_loss,
            val_accuracy,
            lr,
            seconds,
            samples_per_second: sums[2] / seconds.max(1e-9),
            data_wait_seconds: batches.seconds,
            allreduce_seconds: reduce_s,
        };
        on_epoch(&stats);
        history.push(stats);
        if let Some(c) = checkpoints {
            let at = At {
                epoch: epoch + 1,
                step: 0,
                global_step,
                sums: &[0.0; 3],
                seconds: 0.0,
                history: &history,
            };
            c.save(at, &vs, &opt, seed, comm)?;
        }
    }
    let report = TrainReport {
        history,
        world_size: comm.size(),
        steps_per_epoch: steps0,
    };
    if comm.rank() == 0 {
        save_model(out, &vs, &model_info)?;
        let path = out.join("history.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&report).expect("report serialises"),
        )
        .map_err(|e| Error::Io {
            op: "failed to write",
            path,
            source: e,
        })?;
    }
    Ok(report)
}

/// Mean loss and accuracy of `net` over a split, all ranks together; `None`
/// for an empty split.
fn evaluate(net: &dyn ModuleT, loader: &Loader, comm: &dyn Comm) -> Result<Option<(f64, f64)>> {
    if loader.is_empty() {
        return Ok(None);
    }
    let mut sums = [0.0f64; 3];
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0) {
            let batch = batch?;
            let (x, y) = to_tensors(&batch)?;
            let logits = net.forward_t(&x, false);
            let n = batch.y.len() as f64;
            sums[0] += logits.cross_entropy_for_logits(&y).double_value(&[]) * n;
            sums[1] += correct(&logits, &y);
            sums[2] += n;
        }
        Ok(())
    })?;
    comm.allreduce_sum_f64(&mut sums);
    Ok(Some((sums[0] / sums[2], sums[1] / sums[2])))
}

/// Batch buffers as tensors; shapes come from the data, so they are checked.
pub fn to_tensors(batch: &Batch) -> Result<(Tensor, Tensor)> {
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    let x = Tensor::from_slice(&batch.x)
        .f_reshape(&shape)
        .map_err(Error::torch(format!("batch of shape {:?}", batch.shape)))?;
    Ok((x, Tensor::from_slice(&batch.y)))
}

fn correct(logits: &Tensor, y: &Tensor) -> f64 {
    logits
        .argmax(-1, false)
        .eq_tensor(y)
        .sum(Kind::Int64)
        .int64_value(&[]) as f64
}

/// An iterator that adds up the time spent waiting for its items: the time
/// the training loop waits for the loader.
pub(crate) struct Waited<I> {
    inner: I,
    pub(crate) seconds: f64,
}

impl<I> Waited<I> {
    pub(crate) fn new(inner: I) -> Self {
        Waited {
            inner,
            seconds: 0.0,
        }
    }
}

impl<I: Iterator> Iterator for Waited<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let t = Instant::now();
        let item = self.inner.next();
        self.seconds += t.elapsed().as_secs_f64();
        item
    }
}

/// Per-sample rotation by a multiple of 90 degrees and an optional flip,
/// chosen by a hash of (seed, epoch, rank, step, sample) so runs repeat.
fn augment(batch: &mut Batch, seed: u64, epoch: usize, rank: usize, step: usize, shift: usize) {
    let (c, h, w) = (batch.shape[1], batch.shape[2], batch.shape[3]);
    if h != w {
        return;
    }
    let len = c * h * w;
    let mut tmp = vec![0.0f32; h * w];
    for (i, sample) in batch.x.chunks_exact_mut(len).enumerate() {
        let r = splitmix(
            seed ^ splitmix(
                (epoch as u64) << 40 ^ (rank as u64) << 24 ^ (step as u64) << 10 ^ i as u64,
            ),
        );
        let (k, flip) = (r & 3, r & 4 != 0);
        let span = 2 * shift as u64 + 1;
        let (dy, dx) = (
            ((r >> 8) % span) as isize - shift as isize,
            ((r >> 24) % span) as isize - shift as isize,
        );
        if k == 0 && !flip && dy == 0 && dx == 0 {
            continue;
        }
        let clamp = |v: isize| v.clamp(0, h as isize - 1) as usize;
        for plane in sample.chunks_exact_mut(h * w) {
            for y in 0..h {
                for x in 0..w {
                    let (mut sy, mut sx) = (clamp(y as isize - dy), clamp(x as isize - dx));
                    if flip {
                        sx = w - 1 - sx;
                    }
                    for _ in 0..k {
                        (sy, sx) = (sx, h - 1 - sy);
                    }
                    tmp[y * w + x] = plane[sy * w + sx];
                }
            }
            plane.copy_from_slice(&tmp);
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_permutes_pixels_and_repeats() {
        let x: Vec<f32> = (0..2 * 16).map(|v| v as f32).collect();
        let make = || Batch {
            x: x.clone(),
            shape: vec![2, 1, 4, 4],
            y: vec![0, 1],
            targets: Vec::new(),
        };
        let (mut a, mut b) = (make(), make());
        augment(&mut a, 1, 0, 0, 0, 0);
        augment(&mut b, 1, 0, 0, 0, 0);
        assert_eq!(a, b);
        for (orig, new) in x.chunks(16).zip(a.x.chunks(16)) {
            let mut s1 = orig.to_vec();
            let mut s2 = new.to_vec();
            s1.sort_by(f32::total_cmp);
            s2.sort_by(f32::total_cmp);
            assert_eq!(s1, s2, "a rotation or flip only moves pixels");
        }
        let moved = (0..20).any(|step| {
            let mut c = make();
            augment(&mut c, 1, 0, 0, step, 0);
            c.x != x
        });
        assert!(moved);

        // With a shift, pixels move by up to that many places, edges repeat.
        let x: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let shifted = (0..40).any(|step| {
            let mut d = Batch {
                x: x.clone(),
                shape: vec![1, 1, 8, 8],
                y: vec![0],
                targets: Vec::new(),
            };
            augment(&mut d, 3, 0, 0, step, 2);
            let mut sorted = d.x.clone();
            sorted.sort_by(f32::total_cmp);
            sorted.dedup();
            sorted.len() < 64
        });
        assert!(shifted, "some step shifts the image (repeating an edge)");
    }
}
