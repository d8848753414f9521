//! Dataset writers: each turns one kind of input into the dataset contract
//! of [`crate::contract`] through the shared two-phase shard writer, and
//! brings only its plan and its per-sample code.

pub mod galaxy_images;
pub mod random_images;
pub mod waveforms;

use std::path::Path;

pub use crate::shards::Job;

use crate::contract::DatasetInfo;
use crate::Result;

/// What every dataset writer's configuration can do: the engine drives them
/// all alike, and [`write_dataset`] runs both phases on one process.
pub trait DatasetWriter: Sync {
    /// Number of inputs the plan covers (for progress bars).
    fn input_count(&self) -> Result<usize>;

    /// Writes this process's shards (see [`Job`]) and its part file.
    fn write_partition(&self, seed: u64, job: &Job<'_>) -> Result<()>;

    /// Merges the parts written by `world_size` processes into
    /// `manifest.parquet`, `rejects.parquet` and, last, `dataset.json`, and
    /// removes the parts.
    fn finalize(&self, seed: u64, dir: &Path, world_size: usize) -> Result<DatasetInfo>;
}

/// Writes a whole dataset from one process (both phases).
pub fn write_dataset(
    writer: &impl DatasetWriter,
    seed: u64,
    dir: &Path,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<DatasetInfo> {
    writer.write_partition(seed, &Job::single(dir, threads, progress))?;
    writer.finalize(seed, dir, 1)
}
