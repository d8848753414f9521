//! The registry of stage kinds: one entry per kind, in one place.
//!
//! Each kind adapts a stage library's typed config and function into a
//! workflow stage: it names its outputs (what `${stage.output}` resolves to),
//! says whether every MPI rank takes part (collective) or rank 0 alone runs it,
//! checks a `with:` block without I/O, and runs.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use sciflow_eval::cv::CvSummaryConfig;
use sciflow_eval::paper::{PaperFigureData, ScalingFigureConfig};
use sciflow_eval::regressor::{EvalRegressorConfig, OverlapConfig};
use sciflow_eval::whatif::WhatIfConfig;
use sciflow_eval::EvalClassifierConfig;
use sciflow_ingest::generators::resurvey::{self, ResurveyConfig};
use sciflow_ingest::generators::synth::{self, SynthConfig};
use sciflow_ingest::writers::galaxy_images::{self, GalaxyImagesConfig};
use sciflow_ingest::writers::random_images::RandomImagesConfig;
use sciflow_ingest::writers::waveforms::WaveformsConfig;
use sciflow_ingest::writers::waveforms::TARGETS;
use sciflow_ingest::writers::{DatasetWriter, Job};
use sciflow_ingest::{DatasetInfo, OnError, Partition};
use sciflow_train::learner::LoopConfig;
use sciflow_train::regressor::RegressorConfig;
use sciflow_train::{ClassifierConfig, EpochStats, Observer, Run, TrainHistory};

use crate::command::{check_command, command_inputs, run_command};
use crate::resources::Threads;
use crate::stage::{check, config, external_paths, Output, Props, StageContext, StageKind};
use crate::subworkflow::{check_subworkflow, run_subworkflow, subworkflow_inputs};
use crate::Error;

/// Every stage kind.
pub static REGISTRY: &[StageKind] = &[
    StageKind {
        name: "ingest.synthetic_galaxies",
        summary: "Generate labelled synthetic galaxies (Sersic ellipticals, spirals with arms) as FITS with a TAN WCS",
        example: "count_per_class: 100\nsize: 64\nnoise: 0.05\npsf_fwhm: 2.0\n",
        outputs: &[
            Output { name: "images", path: "", doc: "folder with labels.csv and images/" },
            Output { name: "labels", path: "labels.csv", doc: "objid,label,image table" },
        ],
        props: Props { libtorch: false, ..Props::ROOT },
        check: check::<SynthConfig>,
        run: run_synthetic_galaxies,
    },
    StageKind {
        name: "ingest.galaxy_images",
        summary: "Labelled FITS/JPEG/PNG images into a sharded dataset (safetensors shards, Parquet manifest)",
        example: "labels: data/gz1/labels.csv\nsize: 64\ncrop: 0.5\nnormalisation: { kind: asinh, softening: 3.0 }\nsplit: { val: 0.1, test: 0.2 }\nshard_size: 256\non_error: skip\n",
        outputs: &[Output { name: "dataset", path: "", doc: "the dataset directory" }],
        props: Props { inputs: galaxy_inputs, libtorch: false, ..Props::COLLECTIVE },
        check: check::<GalaxyImagesConfig>,
        run: run_galaxy_images,
    },
    StageKind {
        name: "ingest.waveforms",
        summary: "Waveform banks, LVC NR and SXS files into a dataset (h+/hx of the (2,2) mode on one grid; q, chi1z, chi2z targets)",
        example: "inputs: [data/waveforms/bank_tiny.h5, data/waveforms/lvcnr]\ndt: 2.0\nwindow: [-4000, 100]\nsplit: { val: 0.1, test: 0.2 }\nshard_size: 512\n",
        outputs: &[Output { name: "dataset", path: "", doc: "the dataset directory" }],
        // 2: the phase is 0 at the peak (`align_phase`, default).
        props: Props { version: 2, libtorch: false, ..Props::COLLECTIVE },
        check: check::<WaveformsConfig>,
        run: run_waveforms,
    },
    StageKind {
        name: "ingest.random_images",
        summary: "A dataset of random images (default ImageNet-shaped: 3x224x224, 1,000 classes) for throughput benchmarks",
        example: "count: 2048\nchannels: 3\nsize: 224\nclasses: 1000\nshard_size: 64\n",
        outputs: &[Output { name: "dataset", path: "", doc: "the dataset directory" }],
        props: Props { libtorch: false, ..Props::COLLECTIVE },
        check: check::<RandomImagesConfig>,
        run: run_random_images,
    },
    StageKind {
        name: "ingest.resurvey",
        summary: "Re-image a dataset split as a second survey would (pixel scale, band mixing, PSF, sky, noise) into per-band FITS",
        example: "dataset: ${sdss.dataset}\nsplit: test\nsize: 128\nbands: [i, r, g]\npsf_fwhm: 2.0\nnoise: 3.0\n",
        outputs: &[
            Output { name: "images", path: "", doc: "folder with labels.csv and images/<id>_<band>.fits" },
            Output { name: "labels", path: "labels.csv", doc: "objid,label,image table (image holds {band})" },
        ],
        props: Props { libtorch: false, ..Props::ROOT },
        check: check::<ResurveyConfig>,
        run: run_resurvey,
    },
    StageKind {
        name: "train.classifier",
        summary: "Train an image classifier with libtorch, data-parallel over MPI ranks",
        example: "data: runs/x/dataset\nmodel: { arch: small_cnn, width: 16 }\nepochs: 5\nbatch_size: 32\nlr: 0.001\nlr_schedule: { kind: cosine }\noptimizer: { kind: adam }\n",
        outputs: &[Output { name: "model", path: "", doc: "weights.safetensors, model.json, history.json" }],
        // 2: the optimizers' square roots no longer go through MKL (kernels::sqrt_).
        props: Props { version: 2, checkpoints: true, ..Props::COLLECTIVE },
        check: check::<ClassifierConfig>,
        run: run_train_classifier,
    },
    StageKind {
        name: "train.regressor",
        summary: "Train a WaveNet-style waveform regressor (q, chi1z, chi2z) with libtorch, data-parallel over MPI ranks",
        example: "data: runs/x/dataset\nmodel: { channels: 32, layers: 8, stacks: 2, input_stride: 4 }\nepochs: 20\nbatch_size: 64\nlr: 0.001\nconstraint_weight: 1.0\n",
        outputs: &[Output { name: "model", path: "", doc: "weights.safetensors, model.json, history.json" }],
        // 2: the optimizers' square roots no longer go through MKL (kernels::sqrt_).
        props: Props { version: 2, checkpoints: true, ..Props::COLLECTIVE },
        check: check::<RegressorConfig>,
        run: run_train_regressor,
    },
    StageKind {
        name: "eval.regressor",
        summary: "Predict waveform parameters on a split (or other files): predictions.parquet, parameter errors",
        example: "model: runs/x/train\ndata: runs/x/dataset\nsplit: test\n",
        outputs: &[
            Output { name: "report", path: "", doc: "the evaluation directory" },
            Output { name: "predictions", path: "predictions.parquet", doc: "sample_id, predicted q, chi1z, chi2z and the true values" },
        ],
        props: Props::ROOT,
        check: check::<EvalRegressorConfig>,
        run: run_eval_regressor,
    },
    StageKind {
        name: "eval.scaling_figure",
        summary: "A scaling figure of the paper (resnet50_hal, aigw_hal, aigw_bridges, aides_hal, aigw_summit): published points, the performance model and the training runs measured here",
        example: "figure: aigw_hal\nruns: [\"${waveforms.train}\"]\nreference: [\"${resnet50.train}\"]\ngpu_batch: 64\n",
        outputs: &[
            Output { name: "figure", path: "", doc: "figure.png, figure.svg and figure.json (the plotted numbers)" },
            Output { name: "sidecar", path: "figure.json", doc: "the plotted numbers" },
        ],
        props: Props { threads: Threads::One, ..Props::ROOT },
        check: check::<ScalingFigureConfig>,
        run: run_scaling_figure,
    },
    StageKind {
        name: "eval.what_if",
        summary: "What a training run measured here would take on a cluster: time to train and efficiency at N GPUs from its compute per sample, its gradients and the cluster's links",
        example: "run: ${train.model}\nlink: { gpus_per_node: 4, intra_bandwidth: 75.0e9, inter_bandwidth: 12.5e9, latency: 5.0e-6 }\ngpus: [1, 8, 64, 512]\nspeedup_per_device: 40\n",
        outputs: &[
            Output { name: "report", path: "", doc: "what_if.json, what_if.png and what_if.svg" },
            Output { name: "predictions", path: "what_if.json", doc: "step seconds, hours and efficiency at each GPU count" },
        ],
        props: Props { threads: Threads::One, ..Props::ROOT },
        check: check::<WhatIfConfig>,
        run: run_what_if,
    },
    StageKind {
        name: "eval.overlap",
        summary: "Overlap of each scored waveform with the one regenerated at its predicted parameters; histogram and scatter figures",
        example: "predictions: ${predict.report}\nbank: ${regenerate.bank}\ntotal_mass: 60\nf_low: 20\npsd: { kind: aligo_design }\n",
        outputs: &[
            Output { name: "report", path: "", doc: "the overlap directory" },
            Output { name: "metrics", path: "metrics.json", doc: "median_overlap, p05_overlap, parameter errors" },
        ],
        props: Props::ROOT,
        check: check::<OverlapConfig>,
        run: run_eval_overlap,
    },
    StageKind {
        name: "eval.classifier",
        summary: "Score a classifier on a dataset split: metrics.json, predictions.parquet, summary figure",
        example: "model: runs/x/train\ndata: runs/x/dataset\nsplit: test\n",
        outputs: &[
            Output { name: "report", path: "", doc: "the evaluation directory" },
            Output { name: "metrics", path: "metrics.json", doc: "accuracy, AUC, confusion matrix, per-class figures" },
            Output { name: "mistakes", path: "mistakes.json", doc: "the most confident mistakes (sample, true and predicted class, confidence); mistakes.png shows them" },
        ],
        // 2: also mistakes.png and mistakes.json.
        props: Props { version: 2, ..Props::ROOT },
        check: check::<EvalClassifierConfig>,
        run: run_eval_classifier,
    },
    StageKind {
        name: "eval.cv_summary",
        summary: "Mean, standard deviation and range of every figure over k runs (cross-validation folds, seeds): cv.json",
        example: "runs: [\"${fold.metrics}\"]\n",
        outputs: &[
            Output { name: "report", path: "", doc: "the summary directory" },
            Output { name: "summary", path: "cv.json", doc: "per figure: mean, std (n - 1), min, max and each run's value" },
        ],
        props: Props { threads: Threads::One, ..Props::ROOT },
        check: check::<CvSummaryConfig>,
        run: run_cv_summary,
    },
    StageKind {
        name: "command",
        summary: "Run an external program (argv; a shell only with `shell: true`) with hashed inputs and checked outputs",
        example: "argv: [python3, data/make_bank.py, --n, \"100\", --out, \"{out}/bank.h5\"]\ninputs: [data/make_bank.py]\noutputs: { bank: bank.h5 }\n",
        outputs: &[Output { name: "dir", path: "", doc: "the stage directory (also holds stdout.log and stderr.log); `with.outputs` names more" }],
        props: Props { dynamic_outputs: true, inputs: command_inputs, threads: Threads::One, ..Props::ROOT },
        check: check_command,
        run: run_command,
    },
    StageKind {
        name: "workflow",
        summary: "Run another workflow as one stage, with this same executable, on `ranks` MPI ranks, in the stage's folder (its workdir is `wd`)",
        example: "file: ${workflow.dir}/waveforms.yaml\nranks: 2\nuntil: train\nset: { params.epochs: 2 }\noutputs: { train: wd/train }\n",
        outputs: &[Output { name: "dir", path: "", doc: "the stage directory (its workdir is `wd/`; stdout.log and stderr.log); `with.outputs` names more" }],
        props: Props { dynamic_outputs: true, inputs: subworkflow_inputs, ..Props::ROOT },
        check: check_subworkflow,
        run: run_subworkflow,
    },
];

/// The kind named `name`.
pub fn lookup(name: &str) -> Option<&'static StageKind> {
    REGISTRY.iter().find(|k| k.name == name)
}

/// The labels table and every image it lists, when they are outside the workdir.
fn galaxy_inputs(config: &Value, workdir: &Path) -> Vec<PathBuf> {
    let mut paths = external_paths(config, workdir);
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

fn run_synthetic_galaxies(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_resurvey(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_galaxy_images(ctx: &StageContext<'_>) -> Result<(), Error> {
    write_dataset_stage::<GalaxyImagesConfig>(ctx, "images", shard_count)
}

fn run_random_images(ctx: &StageContext<'_>) -> Result<(), Error> {
    write_dataset_stage::<RandomImagesConfig>(ctx, "images", shard_count)
}

fn run_waveforms(ctx: &StageContext<'_>) -> Result<(), Error> {
    write_dataset_stage::<WaveformsConfig>(ctx, "waveforms", |info| {
        format!("{} samples each", info.x.sample_shape[1])
    })
}

fn run_train_classifier(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: ClassifierConfig = config(ctx)?;
    train_stage(ctx, &cfg.loop_config(), &[], |run| {
        sciflow_train::train_classifier(&cfg, run)
    })
}

fn run_train_regressor(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_eval_regressor(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_what_if(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_scaling_figure(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_eval_overlap(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_eval_classifier(ctx: &StageContext<'_>) -> Result<(), Error> {
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

fn run_cv_summary(ctx: &StageContext<'_>) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_example_checks() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        for kind in REGISTRY {
            let node = crate::yaml::parse(kind.example).unwrap();
            let json = node.to_json();
            (kind.check)(&json).unwrap_or_else(|e| panic!("{}: {e:?}", kind.name));
            assert!(!kind.outputs.is_empty(), "{}", kind.name);
        }
    }

    #[test]
    fn check_reports_the_path_of_a_bad_value() {
        let kind = lookup("train.classifier").unwrap();
        let v: Value = serde_json::json!({"data": "d", "epochs": 0});
        let e = (kind.check)(&v).unwrap_err();
        assert_eq!(e.path, "epochs");
        let v: Value = serde_json::json!({"data": "d", "epochs": 2, "model": {"arch": "small_cnn", "widht": 3}});
        let e = (kind.check)(&v).unwrap_err();
        assert_eq!(e.path, "model.widht");
        assert!(e.message.contains("unknown field `widht`"), "{}", e.message);
    }
}
