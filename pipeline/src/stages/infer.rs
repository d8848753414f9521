//! The inference kinds of `sciflow-eval`: every rank scores its share of the
//! chunks, finished chunks are kept in the stage's checkpoint directory (so
//! `--resume` continues a stopped run from them), and rank 0 writes the
//! catalogue.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use sciflow_eval::infer::classifier::{infer_classifier, InferClassifierConfig};
use sciflow_eval::infer::regressor::{infer_regressor, InferRegressorConfig};
use sciflow_eval::infer::{CatalogueSummary, Chunks};

use sciflow_ingest::writers::galaxy_images::list_inputs;

use crate::stages::kind::{config, external_paths, InputScope, StageContext};
use crate::Error;

pub(super) fn run_infer_classifier(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: InferClassifierConfig = config(ctx)?;
    infer_stage(ctx, cfg.chunk_size, |chunks| {
        infer_classifier(&cfg, ctx.out, chunks)
    })
}

pub(super) fn run_infer_regressor(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: InferRegressorConfig = config(ctx)?;
    infer_stage(ctx, cfg.chunk_size, |chunks| {
        infer_regressor(&cfg, ctx.out, chunks)
    })
}

/// The paths the config names and, for a table of images, every image it
/// lists (one per band where the path holds `{band}`) that exists: a missing
/// one is a reject row of the stage, not a missing input.
pub(super) fn image_inputs(config: &Value, scope: &InputScope<'_>) -> Vec<PathBuf> {
    let mut paths = external_paths(config, scope);
    if let Ok(cfg) = serde_json::from_value::<InferClassifierConfig>(config.clone()) {
        let listed = cfg.inputs.is_file() || cfg.inputs.join("labels.csv").is_file();
        if listed && !cfg.inputs.starts_with(scope.workdir) {
            let bands = cfg.read.bands.unwrap_or_default();
            for row in list_inputs(&cfg.inputs, cfg.read.image_path).unwrap_or_default() {
                let template = row.image.to_string_lossy().into_owned();
                if template.contains("{band}") {
                    paths.extend(
                        bands
                            .iter()
                            .map(|b| PathBuf::from(template.replace("{band}", b))),
                    );
                } else {
                    paths.push(row.image);
                }
            }
        }
    }
    paths.retain(|p| !p.starts_with(scope.workdir) && p.exists());
    paths.sort();
    paths.dedup();
    paths
}

/// What both kinds share: the chunks' directory, a progress bar of the
/// inputs, and the summary's figures as metrics.
fn infer_stage(
    ctx: &StageContext<'_>,
    size: std::num::NonZeroUsize,
    infer: impl FnOnce(&Chunks<'_>) -> sciflow_eval::Result<Option<CatalogueSummary>>,
) -> Result<(), Error> {
    let bar = ctx.progress.bar(0, ctx.name, "inputs");
    let done = AtomicU64::new(0);
    let ranks = ctx.comm.size() as u64;
    // Rank 0 draws the bar from its own chunks: every rank takes as many.
    let progress = |n: usize| {
        let at = done.fetch_add(n as u64 * ranks, Ordering::Relaxed) + n as u64 * ranks;
        bar.set_position(at);
    };
    let dir = ctx.checkpoint_dir.join("current");
    let chunks = Chunks {
        comm: ctx.comm,
        dir: &dir,
        size,
        threads: ctx.threads,
        progress: &progress,
    };
    let summary = infer(&chunks)?;
    bar.finish_and_clear();
    if let Some(s) = summary {
        ctx.metrics.record(0, "catalogued", s.catalogued as f64);
        ctx.metrics.record(0, "rejected", s.rejected as f64);
        ctx.metrics
            .record(0, "inputs_per_second", s.inputs_per_second);
        tracing::info!(
            "{}: {} of {} input(s) catalogued, {} rejected, on {} rank(s) ({:.0} inputs/s; {} chunk(s) scored now)",
            ctx.name,
            s.catalogued,
            s.total,
            s.rejected,
            s.ranks,
            s.inputs_per_second,
            s.chunks_scored
        );
    }
    Ok(())
}
