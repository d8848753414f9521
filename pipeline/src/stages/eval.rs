//! The evaluation and figure kinds of `sciflow-eval`.

use sciflow_eval::cv::CvSummaryConfig;
use sciflow_eval::paper::{PaperFigureData, ScalingFigureConfig};
use sciflow_eval::regressor::{EvalRegressorConfig, OverlapConfig};
use sciflow_eval::whatif::WhatIfConfig;
use sciflow_eval::EvalClassifierConfig;

use crate::stages::kind::{config, StageContext};
use crate::Error;

pub(super) fn run_eval_regressor(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: EvalRegressorConfig = config(ctx)?;
    let r = sciflow_eval::regressor::evaluate_regressor(&cfg, ctx.out, ctx.threads)?;
    for (name, e) in [
        ("q", &r.errors.q),
        ("chi1z", &r.errors.chi1z),
        ("chi2z", &r.errors.chi2z),
        ("chi_eff", &r.errors.chi_eff),
    ] {
        ctx.metrics.record(0, &format!("mae_{name}"), e.mae);
    }
    tracing::info!(
        "{}: {} waveforms: MAE q {:.3}, chi1z {:.3}, chi2z {:.3}, chi_eff {:.3}",
        ctx.name,
        r.errors.samples,
        r.errors.q.mae,
        r.errors.chi1z.mae,
        r.errors.chi2z.mae,
        r.errors.chi_eff.mae
    );
    Ok(())
}

pub(super) fn run_what_if(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: WhatIfConfig = config(ctx)?;
    let w = sciflow_eval::whatif::what_if_stage(&cfg, ctx.out)?;
    for p in &w.points {
        ctx.metrics.record(p.gpus as i64, "hours_to_train", p.hours);
        ctx.metrics
            .record(p.gpus as i64, "efficiency", p.efficiency);
    }
    if let Some(last) = w.points.last() {
        tracing::info!(
            "{}: {} GPUs: {:.2} h to train, efficiency {:.2}",
            ctx.name,
            last.gpus,
            last.hours,
            last.efficiency
        );
    }
    Ok(())
}

pub(super) fn run_scaling_figure(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: ScalingFigureConfig = config(ctx)?;
    let s = sciflow_eval::paper::scaling_figure_stage(&cfg, ctx.out)?;
    let name = match s {
        PaperFigureData::Throughput(_) => "per_rank_samples_per_second",
        PaperFigureData::TimeToTrain(_) => "hours_to_train",
    };
    for (ranks, t) in s.measured() {
        ctx.metrics.record(*ranks as i64, name, *t);
    }
    for c in s.comparisons() {
        ctx.metrics
            .record(c.gpus as i64, "model_relative_error", c.relative_error);
        tracing::info!(
            "{}: {} GPUs: model {:.3} h, published {:.3} h ({:+.1} %)",
            ctx.name,
            c.gpus,
            c.predicted,
            c.published,
            100.0 * c.relative_error
        );
    }
    Ok(())
}

pub(super) fn run_eval_overlap(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: OverlapConfig = config(ctx)?;
    let r = sciflow_eval::regressor::overlap_stage(&cfg, ctx.out)?;
    ctx.metrics.record(0, "median_overlap", r.median_overlap);
    ctx.metrics.record(0, "p05_overlap", r.p05_overlap);
    tracing::info!(
        "{}: {} waveforms: overlap median {:.4}, 5th percentile {:.4}, min {:.4}",
        ctx.name,
        r.samples,
        r.median_overlap,
        r.p05_overlap,
        r.min_overlap
    );
    Ok(())
}

pub(super) fn run_eval_classifier(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: EvalClassifierConfig = config(ctx)?;
    let report = sciflow_eval::evaluate_classifier(&cfg, ctx.out)?;
    ctx.metrics.record(0, "accuracy", report.accuracy);
    ctx.metrics.record(0, "macro_f1", report.metrics.macro_f1);
    if let Some(auc) = report.auc {
        ctx.metrics.record(0, "auc", auc);
    }
    tracing::info!(
        "{}: {} split: accuracy {:.4}, AUC {}, {} samples",
        ctx.name,
        cfg.split.as_str(),
        report.accuracy,
        report.auc.map_or("n/a".into(), |a| format!("{a:.4}")),
        report.metrics.samples
    );
    Ok(())
}

pub(super) fn run_cv_summary(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: CvSummaryConfig = config(ctx)?;
    let s = sciflow_eval::cv::cv_summary(&cfg, ctx.out)?;
    // The headline figures of classifiers and waveform models, when present.
    for name in [
        "accuracy",
        "auc",
        "macro_f1",
        "median_overlap",
        "p05_overlap",
    ] {
        if let Some(m) = s.metrics.get(name) {
            ctx.metrics.record(0, &format!("{name}_mean"), m.mean);
            ctx.metrics.record(0, &format!("{name}_std"), m.std);
            tracing::info!(
                "{}: {name} {:.4} +/- {:.4} over {} runs (min {:.4}, max {:.4})",
                ctx.name,
                m.mean,
                m.std,
                s.runs,
                m.min,
                m.max
            );
        }
    }
    Ok(())
}
