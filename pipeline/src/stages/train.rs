//! The training kinds: `sciflow-train`'s learner with a progress bar and
//! each epoch's figures recorded as metrics.

use sciflow_ingest::writers::waveforms::TARGETS;
use sciflow_train::learner::LoopConfig;
use sciflow_train::regressor::RegressorConfig;
use sciflow_train::{ClassifierConfig, EpochStats, Observer, Run, TrainHistory};

use crate::stages::kind::{config, StageContext};
use crate::Error;

pub(super) fn run_train_classifier(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: ClassifierConfig = config(ctx)?;
    train_stage(ctx, &cfg.loop_config(), &[], |run| {
        sciflow_train::train_classifier(&cfg, run)
    })
}

pub(super) fn run_train_regressor(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: RegressorConfig = config(ctx)?;
    train_stage(ctx, &cfg.loop_config(), &TARGETS, |run| {
        sciflow_train::regressor::train_regressor(&cfg, run)
    })
}

/// What every training stage shares: its run (seed, output, ranks,
/// checkpoints), a progress bar of the epoch's steps, and each epoch's
/// figures recorded as metrics and printed as a line. `targets` names the
/// regression targets of `val_mae`.
fn train_stage(
    ctx: &StageContext<'_>,
    loop_config: &LoopConfig,
    targets: &[&str],
    train: impl FnOnce(Run<'_>) -> sciflow_train::Result<TrainHistory>,
) -> Result<(), Error> {
    let epochs = loop_config.epochs.get();
    let ckpt = ctx.checkpointing(loop_config.checkpoint_every);
    let bar = ctx.progress.bar(0, ctx.name, "steps");
    let observer = Observer {
        on_step: Box::new(|step, steps| {
            bar.set_length(steps as u64);
            bar.set_position(step as u64);
        }),
        on_epoch: Box::new(|s| {
            let line = record_epoch(ctx, s, targets);
            bar.println_or_log(&format!(
                "{}: epoch {}/{epochs}: {line}",
                ctx.name,
                s.epoch + 1
            ));
        }),
    };
    let report = train(Run {
        seed: ctx.seed,
        out: ctx.out,
        comm: ctx.comm,
        checkpoints: Some(&ckpt),
        observer,
    })?;
    bar.finish_and_clear();
    tracing::debug!(
        "{}: {} steps per epoch on {} ranks",
        ctx.name,
        report.steps_per_epoch,
        report.world_size
    );
    Ok(())
}

/// Records an epoch's figures in the run's metrics (step = epoch, from 1)
/// and returns them as a line for the log.
fn record_epoch(ctx: &StageContext<'_>, s: &EpochStats, targets: &[&str]) -> String {
    let step = s.epoch as i64 + 1;
    let m = ctx.metrics;
    m.record(step, "train_loss", s.train_loss);
    m.record(step, "samples_per_second", s.samples_per_second);
    m.record(step, "epoch_seconds", s.seconds);
    m.record(step, "data_wait_seconds", s.data_wait_seconds);
    m.record(step, "allreduce_seconds", s.allreduce_seconds);
    m.record(step, "lr", s.lr);
    let mut line = format!("loss {:.4}", s.train_loss);
    if let Some(a) = s.train_accuracy {
        m.record(step, "train_accuracy", a);
        line += &format!(" accuracy {a:.3}");
    }
    if let Some(l) = s.val_loss {
        m.record(step, "val_loss", l);
        line += &format!(", val loss {l:.4}");
    }
    if let Some(a) = s.val_accuracy {
        m.record(step, "val_accuracy", a);
        line += &format!(" accuracy {a:.3}");
    }
    if let Some(mae) = &s.val_mae {
        line += ", MAE";
        for (name, v) in targets.iter().zip(mae) {
            m.record(step, &format!("val_mae_{name}"), *v);
            line += &format!(" {name} {v:.3}");
        }
    }
    line + &format!(
        " ({:.1} s, {:.0} samples/s)",
        s.seconds, s.samples_per_second
    )
}
