//! The kinds of stage, in one place: what a kind is ([`kind`]), the
//! registry of every kind ([`REGISTRY`]), and the adapters that turn a stage
//! library's typed config and function into a workflow stage ([`ingest`],
//! [`train`], [`eval`], [`infer`], [`command`], [`subworkflow`]).
//!
//! Each entry names the kind's outputs (what `${stage.output}` resolves to),
//! says whether every MPI rank takes part (collective) or rank 0 alone runs
//! it, checks a `with:` block without I/O, and runs. This room is looked up
//! by the workflow language and the engine; it never looks back into them.

use sciflow_eval::cv::CvSummaryConfig;
use sciflow_eval::infer::classifier::InferClassifierConfig;
use sciflow_eval::infer::regressor::InferRegressorConfig;
use sciflow_eval::paper::ScalingFigureConfig;
use sciflow_eval::regressor::{EvalRegressorConfig, OverlapConfig};
use sciflow_eval::whatif::WhatIfConfig;
use sciflow_eval::EvalClassifierConfig;
use sciflow_ingest::generators::resurvey::ResurveyConfig;
use sciflow_ingest::generators::synth::SynthConfig;
use sciflow_ingest::writers::galaxy_images::GalaxyImagesConfig;
use sciflow_ingest::writers::random_images::RandomImagesConfig;
use sciflow_ingest::writers::waveforms::WaveformsConfig;
use sciflow_train::regressor::RegressorConfig;
use sciflow_train::ClassifierConfig;

use self::command::{command_inputs, resolve_command, run_command};
use self::eval::*;
use self::infer::{image_inputs, run_infer_classifier, run_infer_regressor};
use self::ingest::*;
use self::kind::{resolve, Output, Props, StageKind, Threads};
use self::subworkflow::{resolve_subworkflow, run_subworkflow, subworkflow_inputs};
use self::train::*;

mod command;
mod eval;
mod infer;
mod ingest;
pub mod kind;
pub mod progress;
mod subworkflow;
mod train;

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
        resolve: resolve::<SynthConfig>,
        run: run_synthetic_galaxies,
    },
    StageKind {
        name: "ingest.galaxy_images",
        summary: "Labelled FITS/JPEG/PNG images into a sharded dataset (safetensors shards, Parquet manifest)",
        example: "labels: data/gz1/labels.csv\nsize: 64\ncrop: 0.5\nnormalisation: { kind: asinh, softening: 3.0 }\nsplit: { val: 0.1, test: 0.2 }\nshard_size: 256\non_error: skip\n",
        outputs: &[Output { name: "dataset", path: "", doc: "the dataset directory" }],
        props: Props { inputs: galaxy_inputs, libtorch: false, ..Props::COLLECTIVE },
        resolve: resolve::<GalaxyImagesConfig>,
        run: run_galaxy_images,
    },
    StageKind {
        name: "ingest.waveforms",
        summary: "Waveform banks, LVC NR and SXS files into a dataset (h+/hx of the (2,2) mode on one grid; q, chi1z, chi2z targets)",
        example: "inputs: [data/waveforms/bank_tiny.h5, data/waveforms/lvcnr]\ndt: 2.0\nwindow: [-4000, 100]\nsplit: { val: 0.1, test: 0.2 }\nshard_size: 512\n",
        outputs: &[Output { name: "dataset", path: "", doc: "the dataset directory" }],
        // 2: the phase is 0 at the peak (`align_phase`, default).
        props: Props { version: 2, libtorch: false, ..Props::COLLECTIVE },
        resolve: resolve::<WaveformsConfig>,
        run: run_waveforms,
    },
    StageKind {
        name: "ingest.random_images",
        summary: "A dataset of random images (default ImageNet-shaped: 3x224x224, 1,000 classes) for throughput benchmarks",
        example: "count: 2048\nchannels: 3\nsize: 224\nclasses: 1000\nshard_size: 64\n",
        outputs: &[Output { name: "dataset", path: "", doc: "the dataset directory" }],
        props: Props { libtorch: false, ..Props::COLLECTIVE },
        resolve: resolve::<RandomImagesConfig>,
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
        resolve: resolve::<ResurveyConfig>,
        run: run_resurvey,
    },
    StageKind {
        name: "train.classifier",
        summary: "Train an image classifier with libtorch, data-parallel over MPI ranks",
        example: "data: runs/x/dataset\nmodel: { arch: small_cnn, width: 16 }\nepochs: 5\nbatch_size: 32\nlr: 0.001\nlr_schedule: { kind: cosine }\noptimizer: { kind: adam }\n",
        outputs: &[Output { name: "model", path: "", doc: "weights.safetensors, model.json, history.json" }],
        // 2: the optimizers' square roots no longer go through MKL (kernels::sqrt_).
        props: Props { version: 2, checkpoints: true, ..Props::COLLECTIVE },
        resolve: resolve::<ClassifierConfig>,
        run: run_train_classifier,
    },
    StageKind {
        name: "train.regressor",
        summary: "Train a WaveNet-style waveform regressor (q, chi1z, chi2z) with libtorch, data-parallel over MPI ranks",
        example: "data: runs/x/dataset\nmodel: { channels: 32, layers: 8, stacks: 2, input_stride: 4 }\nepochs: 20\nbatch_size: 64\nlr: 0.001\nconstraint_weight: 1.0\n",
        outputs: &[Output { name: "model", path: "", doc: "weights.safetensors, model.json, history.json" }],
        // 2: the optimizers' square roots no longer go through MKL (kernels::sqrt_).
        props: Props { version: 2, checkpoints: true, ..Props::COLLECTIVE },
        resolve: resolve::<RegressorConfig>,
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
        resolve: resolve::<EvalRegressorConfig>,
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
        resolve: resolve::<ScalingFigureConfig>,
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
        resolve: resolve::<WhatIfConfig>,
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
        resolve: resolve::<OverlapConfig>,
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
        resolve: resolve::<EvalClassifierConfig>,
        run: run_eval_classifier,
    },
    StageKind {
        name: "infer.classifier",
        summary: "Catalogue unlabelled images with a trained classifier (class probabilities, chosen class), in chunks over MPI ranks, resumable",
        example: "model: runs/x/train\ndata: runs/x/dataset\ninputs: data/gz1/images\ntta: true\nchunk_size: 1024\n",
        outputs: &[
            Output { name: "catalogue", path: "catalogue.parquet", doc: "objid, ra/dec when given, p_<class> per class, class, confidence, image" },
            Output { name: "rejects", path: "rejects.parquet", doc: "inputs that could not be read: sample_id, source, reason" },
            Output { name: "summary", path: "catalogue.json", doc: "model hash, counts, ranks, timing" },
            Output { name: "report", path: "", doc: "the catalogue directory" },
        ],
        props: Props { checkpoints: true, inputs: image_inputs, ..Props::COLLECTIVE },
        resolve: resolve::<InferClassifierConfig>,
        run: run_infer_classifier,
    },
    StageKind {
        name: "infer.regressor",
        summary: "Predict q, chi1z, chi2z and chi_eff of waveforms (bank, LVC NR, SXS files) with a trained regressor, in chunks over MPI ranks, resumable",
        example: "model: runs/x/train\ndata: runs/x/dataset\ninputs: [data/waveforms/lvcnr]\n",
        outputs: &[
            Output { name: "catalogue", path: "catalogue.parquet", doc: "sample_id, q, chi1z, chi2z, chi_eff, source" },
            Output { name: "rejects", path: "rejects.parquet", doc: "inputs that could not be read: sample_id, source, reason" },
            Output { name: "summary", path: "catalogue.json", doc: "model hash, counts, ranks, timing" },
            Output { name: "report", path: "", doc: "the catalogue directory" },
        ],
        props: Props { checkpoints: true, ..Props::COLLECTIVE },
        resolve: resolve::<InferRegressorConfig>,
        run: run_infer_regressor,
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
        resolve: resolve::<CvSummaryConfig>,
        run: run_cv_summary,
    },
    StageKind {
        name: "command",
        summary: "Run an external program (argv; a shell only with `shell: true`) with hashed inputs and checked outputs",
        example: "argv: [python3, data/make_bank.py, --n, \"100\", --out, \"{out}/bank.h5\"]\ninputs: [data/make_bank.py]\noutputs: { bank: bank.h5 }\n",
        outputs: &[Output { name: "dir", path: "", doc: "the stage directory (also holds stdout.log and stderr.log); `with.outputs` names more" }],
        props: Props { dynamic_outputs: true, inputs: command_inputs, threads: Threads::One, ..Props::ROOT },
        resolve: resolve_command,
        run: run_command,
    },
    StageKind {
        name: "workflow",
        summary: "Run another workflow as one stage, with this same executable, on `ranks` MPI ranks, in the stage's folder (its workdir is `wd`)",
        example: "file: ${workflow.dir}/waveforms.yaml\nranks: 2\nuntil: train\nset: { params.epochs: 2 }\noutputs: { train: wd/train }\n",
        outputs: &[Output { name: "dir", path: "", doc: "the stage directory (its workdir is `wd/`; stdout.log and stderr.log); `with.outputs` names more" }],
        props: Props { dynamic_outputs: true, inputs: subworkflow_inputs, ..Props::ROOT },
        resolve: resolve_subworkflow,
        run: run_subworkflow,
    },
];

/// The kind named `name`.
pub fn lookup(name: &str) -> Option<&'static StageKind> {
    REGISTRY.iter().find(|k| k.name == name)
}
