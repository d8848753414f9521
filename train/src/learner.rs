//! The one training loop: a [`Task`] brings its network, loss and metrics;
//! [`fit`] owns everything else (seeding, loaders, the learning-rate plan,
//! the initial broadcast and gradient averaging across ranks, checkpoints,
//! progress and the history).
//!
//! Every random choice of a step is a function of (seed, rank, global step)
//! (see [`crate::checkpoint::step_seed`]) and the loader's order a function
//! of (seed, epoch, world size), so the same workflow, seed and world size
//! give the same weights on CPU, resumed or not.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use sciflow_ingest::{Batch, Loader, LoaderConfig, Split};

use crate::allreduce::{average_gradients, broadcast_parameters, bucket_elems};
use crate::checkpoint::{self, At, Checkpointing, Position};
use crate::device::DeviceSpec;
use crate::dist::Comm;
use crate::history::{EpochStats, TrainHistory};
use crate::input;
use crate::optim::{LrPlan, LrScaling, LrSchedule, Optimizer, OptimizerKind};
use crate::precision::Precision;
use crate::preempt;
use crate::{Error, Result};

/// Defines a training stage's configuration: the options every training
/// takes (the fields of [`LoopConfig`], with their documentation and
/// defaults, in one place) followed by the task's own. serde cannot combine
/// `flatten` with `deny_unknown_fields`, so the shared fields are written
/// into each struct by this macro instead.
macro_rules! training_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            default_batch: $batch:expr,
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The dataset directory.
            pub data: std::path::PathBuf,
            /// Passes over the training split.
            pub epochs: std::num::NonZeroUsize,
            /// Samples per step on each rank (the global batch is this times the ranks).
            #[serde(default = "default_batch")]
            pub batch_size: std::num::NonZeroUsize,
            /// Base learning rate.
            #[serde(default = "crate::learner::default_lr")]
            pub lr: f64,
            /// Scaling of the learning rate with the global batch.
            #[serde(default)]
            pub lr_scaling: crate::optim::LrScaling,
            /// Epochs of linear warm-up to the (scaled) learning rate.
            #[serde(default)]
            pub warmup_epochs: usize,
            /// How the rate changes after warm-up (`constant`, `cosine`, `step`).
            #[serde(default)]
            pub lr_schedule: crate::optim::LrSchedule,
            /// The update rule.
            #[serde(default)]
            pub optimizer: crate::optim::OptimizerKind,
            /// L2 weight decay.
            #[serde(default)]
            pub weight_decay: f64,
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
            /// Batches the loader prepares ahead.
            #[serde(default = "crate::learner::default_prefetch")]
            pub prefetch: std::num::NonZeroUsize,
            /// Loader threads reading shards.
            #[serde(default = "crate::learner::default_workers")]
            pub workers: std::num::NonZeroUsize,
            /// Where to train: `auto` (the rank's local GPU, else the CPU),
            /// `cpu`, `cuda` or `cuda:N`.
            #[serde(default)]
            pub device: crate::device::DeviceSpec,
            /// The forward pass's arithmetic: `fp32`, or `bf16` (autocast to
            /// bfloat16 with fp32 master weights).
            #[serde(default)]
            pub precision: crate::precision::Precision,
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
        }

        fn default_batch() -> std::num::NonZeroUsize {
            std::num::NonZeroUsize::new($batch).expect("a positive default batch")
        }

        impl $name {
            /// The options the training loop reads.
            pub fn loop_config(&self) -> crate::learner::LoopConfig {
                crate::learner::LoopConfig {
                    data: self.data.clone(),
                    epochs: self.epochs,
                    batch_size: self.batch_size,
                    lr: self.lr,
                    lr_scaling: self.lr_scaling,
                    warmup_epochs: self.warmup_epochs,
                    lr_schedule: self.lr_schedule.clone(),
                    optimizer: self.optimizer,
                    weight_decay: self.weight_decay,
                    pad: self.pad,
                    checkpoint_every: self.checkpoint_every,
                    allreduce_bucket_mb: self.allreduce_bucket_mb,
                    prefetch: self.prefetch,
                    workers: self.workers,
                    device: self.device,
                    precision: self.precision,
                }
            }
        }
    };
}
pub(crate) use training_config;

pub(crate) fn default_lr() -> f64 {
    1e-3
}
pub(crate) fn default_prefetch() -> NonZeroUsize {
    NonZeroUsize::new(4).unwrap()
}
pub(crate) fn default_workers() -> NonZeroUsize {
    NonZeroUsize::new(2).unwrap()
}

/// What the training loop reads of a stage's configuration (see the
/// configuration types for each field's meaning).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct LoopConfig {
    pub data: PathBuf,
    pub epochs: NonZeroUsize,
    pub batch_size: NonZeroUsize,
    pub lr: f64,
    pub lr_scaling: LrScaling,
    pub warmup_epochs: usize,
    pub lr_schedule: LrSchedule,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    pub pad: bool,
    pub checkpoint_every: usize,
    pub allreduce_bucket_mb: f64,
    pub prefetch: NonZeroUsize,
    pub workers: NonZeroUsize,
    pub device: DeviceSpec,
    pub precision: Precision,
}

impl LoopConfig {
    /// The loader of `split` for this rank: for `training`, batches shuffled
    /// and even across ranks (padded with `pad`); otherwise in order. With
    /// `keep_compact`, compact inputs come as stored, for the device to
    /// decode (see [`crate::input`]).
    pub fn loader(
        &self,
        split: Split,
        training: bool,
        keep_compact: bool,
        seed: u64,
        comm: &dyn Comm,
    ) -> Result<Loader> {
        Ok(Loader::new(
            &self.data,
            split,
            LoaderConfig {
                batch_size: self.batch_size.get(),
                shuffle: training,
                shuffle_buffer: 4 * self.batch_size.get(),
                prefetch: self.prefetch.get(),
                workers: self.workers.get(),
                drop_last: false,
                pad: self.pad && training,
                even_steps: training,
                seed,
                rank: comm.rank(),
                world_size: comm.size(),
                keep_compact,
            },
        )?)
    }
}

/// Where a training step stands, for a task's per-batch choices (augmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepAt {
    /// The run's seed.
    pub seed: u64,
    /// 0-based epoch.
    pub epoch: usize,
    /// This rank.
    pub rank: usize,
    /// Batch within the epoch.
    pub step: usize,
}

/// An epoch's figures as a task computes them from its summed metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (classification).
    pub train_accuracy: Option<f64>,
    /// Mean validation loss, when there is a validation split.
    pub val_loss: Option<f64>,
    /// Validation accuracy (classification).
    pub val_accuracy: Option<f64>,
    /// Validation mean absolute error per target (regression).
    pub val_mae: Option<Vec<f64>>,
}

/// What one kind of training brings to [`fit`], in the spirit of Burn's
/// `TrainStep`/`ValidStep`: its network, the loss of a batch and the
/// metrics it sums over an epoch. Metric sums are per batch and add up
/// across batches and ranks (loss x samples, correct predictions, ...).
pub trait Task {
    /// Builds the network on `vs` (after the loop has seeded libtorch), and
    /// sets any initial weights.
    fn build(&mut self, vs: &mut nn::VarStore) -> Result<Box<dyn ModuleT>>;

    /// Changes a training batch's inputs (`[n, ...sample_shape]`, on the
    /// training device) before its step: augmentation; by default none.
    fn prepare(&self, x: Tensor, _at: StepAt) -> Result<Tensor> {
        Ok(x)
    }

    /// What the network should give for a batch (class indices, targets),
    /// as a host tensor; shapes come from the data, so they are checked.
    fn expected(&self, batch: &Batch) -> Result<Tensor>;

    /// The loss of a training batch of `n` samples (to back-propagate) and
    /// the batch's metric sums, [`Task::train_sums`] of them, as scalar
    /// tensors on the batch's device: the loop adds them up there and reads
    /// them once per epoch, so a step never waits for the device.
    fn train_step(
        &self,
        net: &dyn ModuleT,
        x: &Tensor,
        y: &Tensor,
        n: f64,
    ) -> Result<(Tensor, Vec<Tensor>)>;

    /// The metric sums of a validation batch of `n` samples (no gradients),
    /// [`Task::valid_sums`] of them, as scalar tensors on its device.
    fn valid_step(&self, net: &dyn ModuleT, x: &Tensor, y: &Tensor, n: f64) -> Result<Vec<Tensor>>;

    /// How many sums [`Task::train_step`] returns.
    fn train_sums(&self) -> usize;

    /// How many sums [`Task::valid_step`] returns.
    fn valid_sums(&self) -> usize;

    /// The epoch's figures from the sums over all ranks, given the samples
    /// they cover; `valid` is `None` without a validation split.
    fn figures(&self, train: &[f64], samples: f64, valid: Option<(&[f64], f64)>) -> Figures;

    /// What `model.json` holds (see [`crate::model_dir`]).
    type Info: serde::Serialize;

    /// The description written as `model.json` beside the weights.
    fn info(&self) -> &Self::Info;

    /// What the exported TorchScript module (`model.pt`) returns for a batch
    /// of inputs as the loader yields them: by default the network's output
    /// in evaluation mode. Tasks whose network predicts in scaled units
    /// return physical ones here, as their own prediction does.
    fn export(&self, net: &dyn ModuleT, x: &Tensor) -> Tensor {
        net.forward_t(x, false)
    }
}

/// Reports from a running [`fit`].
pub struct Observer<'a> {
    /// After each step: (step in epoch, steps per epoch).
    pub on_step: Box<dyn FnMut(usize, usize) + 'a>,
    /// After each epoch.
    pub on_epoch: Box<dyn FnMut(&EpochStats) + 'a>,
}

impl Observer<'static> {
    /// An observer that reports nothing.
    pub fn quiet() -> Self {
        Observer {
            on_step: Box::new(|_, _| {}),
            on_epoch: Box::new(|_| {}),
        }
    }
}

/// One training run's surroundings: what every training entry point
/// ([`crate::train_classifier`], [`crate::regressor::train_regressor`])
/// takes besides its configuration.
pub struct Run<'a> {
    /// The run's seed.
    pub seed: u64,
    /// The model directory to write (rank 0).
    pub out: &'a Path,
    /// The job's ranks; every rank calls with the same arguments.
    pub comm: &'a dyn Comm,
    /// Where and how often to checkpoint, and whether to resume.
    pub checkpoints: Option<&'a Checkpointing>,
    /// Who hears of steps and epochs.
    pub observer: Observer<'a>,
}

/// Trains `task` on `config.data` and, on rank 0, writes the model directory
/// (`weights.safetensors`, `model.json`, `history.json`) into `run.out`.
///
/// Every rank of `run.comm` must call this with the same arguments. With
/// checkpoints, the state is saved at each epoch's end (and every
/// `every_steps` steps), and a `resume` continues from it exactly.
pub fn fit<T: Task>(config: &LoopConfig, task: &mut T, run: Run<'_>) -> Result<TrainHistory> {
    let Run {
        seed,
        out,
        comm,
        checkpoints,
        observer,
    } = run;
    // The device first: asking for a GPU that is not there fails before any work.
    let device = config.device.resolve()?;
    tracing::debug!("rank {}: training on {}", comm.rank(), describe(device));
    if device.is_cuda() && crate::kernels::mode() == crate::Reproducible::Native {
        // Fixed shapes step after step: let cuDNN pick its fastest kernels
        // (portable mode keeps its deterministic ones instead).
        tch::Cuda::cudnn_set_benchmark(true);
    }
    // A GPU decodes compact inputs itself, after copying a quarter of the
    // bytes; on the CPU the loader's worker threads decode them.
    let on_gpu = device.is_cuda();
    let train = config.loader(Split::Train, true, on_gpu, seed, comm)?;
    let val = config.loader(Split::Val, false, on_gpu, seed, comm)?;
    if train.steps_per_epoch(0) == 0 {
        return Err(Error::Config(format!(
            "the training split of {} has too few samples for {} rank(s)",
            config.data.display(),
            comm.size()
        )));
    }

    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(device);
    let net = task.build(&mut vs)?;
    if device.is_cuda() {
        channels_last_weights(&vs);
    }
    let mut opt = Optimizer::new(
        config.optimizer,
        config.weight_decay,
        vs.trainable_variables(),
    );
    broadcast_parameters(opt.params(), comm);

    let steps0 = train.steps_per_epoch(0);
    let lr_plan = LrPlan {
        base: config.lr,
        scaling: config.lr_scaling,
        global_batch: config.batch_size.get() * comm.size(),
        warmup_steps: config.warmup_epochs * steps0,
        steps_per_epoch: steps0,
        total_steps: steps0 * config.epochs.get(),
        schedule: config.lr_schedule.clone(),
    };
    let bucket = bucket_elems(config.allreduce_bucket_mb);
    let n_sums = task.train_sums();
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
    let Observer {
        mut on_step,
        mut on_epoch,
    } = observer;
    for epoch in first_epoch..config.epochs.get() {
        let steps = train.steps_per_epoch(epoch as u64);
        // The task's sums, then the samples they cover.
        let (first, sums, before) = match resumed.take() {
            Some(p) if p.sums.len() == n_sums + 1 => (p.step, p.sums, p.seconds),
            Some(p) => {
                return Err(Error::Model {
                    path: checkpoints.map(|c| c.dir.clone()).unwrap_or_default(),
                    message: format!(
                        "the checkpoint holds {} running sums, this training keeps {}",
                        p.sums.len(),
                        n_sums + 1
                    ),
                })
            }
            None => (0, vec![0.0f64; n_sums + 1], 0.0),
        };
        let mut sums = Sums::new(&sums[..n_sums], sums[n_sums], device);
        let started = Instant::now();
        let mut reduce_s = 0.0;
        let mut batches = Waited::new(train.epoch_from(epoch as u64, first));
        // One batch ahead: the next batch is read, prepared and its copy to
        // the device started while the device still works on this step.
        let stage = |batch: Batch, step: usize| -> Result<Staged> {
            let at = StepAt {
                seed,
                epoch,
                rank: comm.rank(),
                step,
            };
            let x = task.prepare(input::inputs(&batch, device)?, at)?;
            Ok(Staged {
                x: input::layout(x),
                y: input::upload(task.expected(&batch)?, device),
                n: batch.shape[0] as f64,
            })
        };
        let mut next = batches.next().map(|b| stage(b?, first)).transpose()?;
        let mut step = first;
        while let Some(cur) = next.take() {
            tch::manual_seed(checkpoint::step_seed(seed, comm.rank(), global_step));
            let (loss, batch_sums) = config
                .precision
                .run(device, || task.train_step(&*net, &cur.x, &cur.y, cur.n))?;
            opt.zero_grad();
            loss.backward();
            if comm.size() > 1 {
                reduce_s += average_gradients(opt.params(), comm, bucket);
            }
            lr = lr_plan.at(global_step);
            opt.step(lr);
            global_step += 1;
            sums.add(&batch_sums, cur.n);
            next = batches.next().map(|b| stage(b?, step + 1)).transpose()?;
            (on_step)(step + 1, steps);
            if let Some(c) = checkpoints {
                // A stop asked for (the time limit near) checkpoints here;
                // at an epoch's last step, the epoch's own checkpoint serves.
                let stop = step + 1 < steps && preempt::agreed(comm);
                if stop || c.every_steps > 0 && global_step % c.every_steps == 0 && step + 1 < steps
                {
                    let at = At {
                        epoch,
                        step: step + 1,
                        global_step,
                        sums: &sums.read(),
                        seconds: before + started.elapsed().as_secs_f64(),
                        history: &history,
                    };
                    c.save(at, &vs, &opt, seed, comm)?;
                }
                if stop {
                    return Err(Error::Preempted {
                        step: global_step,
                        dir: c.dir.clone(),
                    });
                }
            }
            step += 1;
        }
        let seconds = before + started.elapsed().as_secs_f64();
        let mut sums = sums.read();
        comm.allreduce_sum_f64(&mut sums);
        let valid = config
            .precision
            .run(device, || validate(&*task, &*net, &val, comm, device))?;
        let samples = sums[n_sums];
        let figures = task.figures(
            &sums[..n_sums],
            samples,
            valid.as_ref().map(|(v, n)| (v.as_slice(), *n)),
        );
        let stats = EpochStats {
            epoch,
            train_loss: figures.train_loss,
            train_accuracy: figures.train_accuracy,
            val_loss: figures.val_loss,
            val_accuracy: figures.val_accuracy,
            val_mae: figures.val_mae,
            lr,
            seconds,
            samples_per_second: samples / seconds.max(1e-9),
            data_wait_seconds: batches.seconds,
            allreduce_seconds: reduce_s,
        };
        (on_epoch)(&stats);
        history.push(stats);
        if let Some(c) = checkpoints {
            let at = At {
                epoch: epoch + 1,
                step: 0,
                global_step,
                sums: &vec![0.0; n_sums + 1],
                seconds: 0.0,
                history: &history,
            };
            c.save(at, &vs, &opt, seed, comm)?;
            if epoch + 1 < config.epochs.get() && preempt::agreed(comm) {
                return Err(Error::Preempted {
                    step: global_step,
                    dir: c.dir.clone(),
                });
            }
        }
    }
    let report = TrainHistory {
        history,
        world_size: comm.size(),
        steps_per_epoch: steps0,
    };
    if comm.rank() == 0 {
        crate::model_dir::save(out, &vs, task.info())?;
        // Traced on the CPU, so the module runs anywhere PyTorch does; the
        // batch dimension is free (nothing in the networks reads it).
        // Constants of the traced graph: frozen (no gradient), as the
        // tracer requires.
        vs.set_device(Device::Cpu);
        vs.freeze();
        let sample: Vec<i64> = train
            .info()
            .x
            .sample_shape
            .iter()
            .map(|&d| d as i64)
            .collect();
        let example = Tensor::zeros([&[2], &sample[..]].concat(), (Kind::Float, Device::Cpu));
        crate::model_dir::save_torchscript(out, &example, &|x| task.export(net.as_ref(), x))?;
        report.save(out)?;
    }
    Ok(report)
}

/// A batch ready for its step: inputs and targets on the device.
struct Staged {
    x: Tensor,
    y: Tensor,
    n: f64,
}

/// Moves a host tensor to `device` ([`input::upload`]: pinned, without
/// waiting for the copy; the step that uses it is queued behind it on the
/// same stream); a 4-D batch (images) goes to channels-last order there, as
/// the weights do on a GPU ([`input::layout`]).
pub fn to_device(t: Tensor, device: Device) -> Tensor {
    input::layout(input::upload(t, device))
}

/// Puts every 4-D variable of `vs` in channels-last order: 2-D networks run
/// fastest on GPUs with channels-last activations, and the convolutions
/// keep the order the weights lead with.
pub fn channels_last_weights(vs: &nn::VarStore) {
    for (_, mut var) in vs.variables() {
        if let Some(cl) = crate::shim::channels_last(&var) {
            tch::no_grad(|| var.set_data(&cl));
        }
    }
}

/// A device's name for logs: `cpu`, `cuda:0`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// An epoch's running sums, kept on the device as f64 scalars so that adding
/// a step's metrics never waits for the device; each addition is the same
/// IEEE operation the host would do, so the figures are the same bits.
struct Sums {
    task: Vec<Tensor>,
    samples: f64,
}

impl Sums {
    fn new(values: &[f64], samples: f64, device: Device) -> Self {
        Sums {
            task: values
                .iter()
                .map(|&v| Tensor::from(v).to_device(device))
                .collect(),
            samples,
        }
    }

    fn add(&mut self, batch: &[Tensor], n: f64) {
        for (s, b) in self.task.iter_mut().zip(batch) {
            *s = &*s + b.to_kind(Kind::Double);
        }
        self.samples += n;
    }

    /// The task's sums, then the samples (the one read from the device).
    fn read(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.task.iter().map(|t| t.double_value(&[])).collect();
        v.push(self.samples);
        v
    }
}

/// The task's validation sums over a split, all ranks together, and the
/// samples they cover; `None` for an empty split (the same on every rank).
fn validate<T: Task>(
    task: &T,
    net: &dyn ModuleT,
    loader: &Loader,
    comm: &dyn Comm,
    device: Device,
) -> Result<Option<(Vec<f64>, f64)>> {
    if loader.is_empty() {
        return Ok(None);
    }
    let n_sums = task.valid_sums();
    let mut sums = Sums::new(&vec![0.0; n_sums], 0.0, device);
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0) {
            let batch = batch?;
            let x = input::layout(input::inputs(&batch, device)?);
            let y = input::upload(task.expected(&batch)?, device);
            let n = batch.shape[0] as f64;
            let batch_sums = task.valid_step(net, &x, &y, n)?;
            sums.add(&batch_sums, n);
        }
        Ok(())
    })?;
    let mut sums = sums.read();
    comm.allreduce_sum_f64(&mut sums);
    let samples = sums.pop().expect("the sample count");
    Ok(Some((sums, samples)))
}

/// An iterator that adds up the time spent waiting for its items: the time
/// the training loop waits for the loader.
struct Waited<I> {
    inner: I,
    seconds: f64,
}

impl<I> Waited<I> {
    fn new(inner: I) -> Self {
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
