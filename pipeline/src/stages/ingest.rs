//! The ingest kinds: generators and dataset writers of `sciflow-ingest`.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;

use sciflow_ingest::generators::resurvey::{self, ResurveyConfig};
use sciflow_ingest::generators::synth::{self, SynthConfig};
use sciflow_ingest::writers::galaxy_images::{self, GalaxyImagesConfig};
use sciflow_ingest::writers::random_images::RandomImagesConfig;
use sciflow_ingest::writers::waveforms::WaveformsConfig;
use sciflow_ingest::writers::{DatasetWriter, Job};
use sciflow_ingest::{DatasetInfo, OnError, Partition};

use crate::stages::kind::{config, external_paths, InputScope, StageContext};
use crate::Error;

/// The labels table and every image it lists, when they are outside the workdir.
pub(super) fn galaxy_inputs(config: &Value, scope: &InputScope<'_>) -> Vec<PathBuf> {
    let workdir = scope.workdir;
    let mut paths = external_paths(config, scope);
    if let Ok(cfg) = serde_json::from_value::<GalaxyImagesConfig>(config.clone()) {
        if !cfg.labels.starts_with(workdir) {
            if let Ok(files) = galaxy_images::input_files(&cfg) {
                // With `on_error: skip` a missing image is a reject row of
                // the stage, not a missing input that stops the run.
                let skip = cfg.on_error == OnError::Skip;
                paths.extend(
                    files
                        .into_iter()
                        .filter(|p| !p.starts_with(workdir) && (!skip || p.exists())),
                );
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

pub(super) fn run_synthetic_galaxies(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: SynthConfig = config(ctx)?;
    let bar = ctx
        .progress
        .bar(2 * cfg.count_per_class.get() as u64, ctx.name, "images");
    let n = synth::generate(&cfg, ctx.seed, ctx.out, ctx.threads, &|i| {
        bar.set_position(i as u64)
    })?;
    bar.finish_and_clear();
    tracing::info!("{}: wrote {n} synthetic galaxies", ctx.name);
    Ok(())
}

pub(super) fn run_resurvey(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: ResurveyConfig = config(ctx)?;
    let total = resurvey::source_count(&cfg)?;
    let bar = ctx.progress.bar(total as u64, ctx.name, "galaxies");
    let n = resurvey::resurvey(&cfg, ctx.seed, ctx.out, ctx.threads, &|i| {
        bar.set_position(i as u64)
    })?;
    bar.finish_and_clear();
    tracing::info!("{}: re-imaged {n} galaxies", ctx.name);
    Ok(())
}

/// The two phases every dataset writer shares: each rank writes its shards,
/// all meet at a barrier, rank 0 merges the parts and logs what it wrote.
/// The inputs are shared among the ranks; the bar (rank 0's) shows rank 0's
/// share. `detail` says more of the dataset in the log line.
fn write_dataset_stage<W: DatasetWriter + DeserializeOwned>(
    ctx: &StageContext<'_>,
    unit: &str,
    detail: fn(&DatasetInfo) -> String,
) -> Result<(), Error> {
    let writer: W = config(ctx)?;
    let (rank, size) = (ctx.comm.rank(), ctx.comm.size());
    let total = writer.input_count()?;
    let bar = ctx
        .progress
        .bar(total.div_ceil(size) as u64, ctx.name, unit);
    let job = Job {
        dir: ctx.out,
        part: Partition { rank, size },
        threads: ctx.threads,
        progress: &|i| bar.set_position(i as u64),
    };
    let result = writer.write_partition(ctx.seed, &job);
    bar.finish_and_clear();
    result?;
    ctx.comm.barrier();
    if rank == 0 {
        let info = writer.finalize(ctx.seed, ctx.out, size)?;
        tracing::info!(
            "{}: {} {unit} (train {}, val {}, test {}), {} rejected, {}",
            ctx.name,
            info.counts.total,
            info.counts.train,
            info.counts.val,
            info.counts.test,
            info.counts.rejected,
            detail(&info)
        );
    }
    Ok(())
}

fn shard_count(info: &DatasetInfo) -> String {
    format!("{} shards", info.shards.len())
}

pub(super) fn run_galaxy_images(ctx: &StageContext<'_>) -> Result<(), Error> {
    write_dataset_stage::<GalaxyImagesConfig>(ctx, "images", shard_count)
}

pub(super) fn run_random_images(ctx: &StageContext<'_>) -> Result<(), Error> {
    write_dataset_stage::<RandomImagesConfig>(ctx, "images", shard_count)
}

pub(super) fn run_waveforms(ctx: &StageContext<'_>) -> Result<(), Error> {
    write_dataset_stage::<WaveformsConfig>(ctx, "waveforms", |info| {
        format!("{} samples each", info.x.sample_shape[1])
    })
}
