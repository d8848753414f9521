//! The inference kinds of `sciflow-eval`: every rank scores its share of the
//! chunks, finished chunks are kept in the stage's checkpoint directory (so
//! `--resume` continues a stopped run from them), and rank 0 writes the
//! catalogue.

use std::sync::atomic::{AtomicU64, Ordering};

use sciflow_eval::infer::classifier::{infer_classifier, InferClassifierConfig};
use sciflow_eval::infer::regressor::{infer_regressor, InferRegressorConfig};
use sciflow_eval::infer::{CatalogueSummary, Chunks};

use crate::stages::kind::{config, StageContext};
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
