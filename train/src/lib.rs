//! Models in libtorch (through tch) and their training, on one process or
//! data-parallel over MPI.
//!
//! One training loop ([`learner::fit`]) serves every model: a [`Task`]
//! (the [`classifier`], the waveform [`regressor`]) brings its network, loss
//! and metrics; the loop owns seeding, loaders, the learning-rate plan,
//! gradient averaging, checkpoints, progress and `history.json`
//! ([`TrainHistory`]). A trained model is a directory ([`model_dir`]).
//!
//! Data parallelism is the Horovod pattern: rank 0 broadcasts the initial
//! weights; after each backward pass every rank's gradients are fused into one
//! contiguous buffer and averaged with a single allreduce, so all ranks apply
//! the same update and stay identical. The optimizer state is ours (plain
//! tensors), not libtorch's, so it can be inspected and saved.
//!
//! Each rank trains where its [`DeviceSpec`] says (its node-local GPU by
//! default, else the CPU; [`cuda`] makes libtorch's CUDA half available at
//! run time), at the [`Precision`] asked for; the few libtorch calls tch does
//! not wrap (bf16 autocast, channels-last) go through [`shim`]. On the CPU
//! every result is the same bits whatever the device code around it.
//!
//! This crate reads datasets through `sciflow-ingest`'s loader and knows
//! nothing of workflows. MPI sits behind the default `mpi` feature; without it
//! the same code trains on one process.

pub mod allreduce;
pub mod checkpoint;
pub mod classifier;
pub mod cuda;
pub mod device;
pub mod dist;
pub mod history;
pub mod input;
pub mod kernels;
pub mod learner;
pub mod model;
pub mod model_dir;
pub mod optim;
pub mod precision;
pub mod preempt;
pub mod regressor;
pub mod shim;
pub mod wavenet;

mod error;

pub use classifier::{train_classifier, ClassifierConfig};
pub use device::DeviceSpec;
pub use dist::{Comm, Single};
pub use error::{Error, Result};
pub use history::{EpochStats, TrainHistory};
pub use kernels::{Kernels, Reproducible};
pub use learner::{Observer, Run, Task};
pub use model::{load_model, ModelConfig, ModelInfo};
pub use precision::Precision;

/// Sets libtorch's intra-op threads to `threads`, or else to this process's
/// share of the cores, so that N ranks on one node do not oversubscribe it.
/// Returns the number set.
pub fn set_threads_for_rank(local_ranks: usize, threads: Option<usize>) -> usize {
    let n = threads_for_rank(local_ranks, threads);
    tch::set_num_threads(n as i32);
    n
}

/// The libtorch release series this crate is built and tested with (tch
/// 0.24); scripts/setup.sh installs it.
pub const LIBTORCH_SERIES: &str = "2.11.";

/// `threads`, or else this process's share of the machine's cores among
/// `local_ranks` ranks.
pub fn threads_for_rank(local_ranks: usize, threads: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    threads.unwrap_or((cores / local_ranks.max(1)).max(1))
}

/// The threads per rank the environment asks for, and the variable that
/// asked: `PIPELINE_THREADS`, else the cores Slurm gave each task.
pub fn thread_override() -> Option<(usize, &'static str)> {
    ["PIPELINE_THREADS", "SLURM_CPUS_PER_TASK"]
        .into_iter()
        .find_map(|k| Some((std::env::var(k).ok()?.trim().parse().ok()?, k)))
}

/// Sets libtorch's intra-op threads for the parallel regions the calling
/// thread starts (stages running side by side each size their own).
pub fn set_threads(threads: usize) {
    tch::set_num_threads(threads.max(1) as i32);
}
