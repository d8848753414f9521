//! Scoring a trained classifier on a split of a dataset.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Kind;

use sciflow_ingest::contract::SplitManifest;
use sciflow_ingest::files::{write_atomic, write_parquet};
use sciflow_ingest::pixels::StoreAs;
use sciflow_ingest::writers::galaxy_images::{write_dataset, GalaxyImagesConfig};
use sciflow_ingest::{DatasetInfo, Loader, LoaderConfig, Split, SplitFractions};
use sciflow_train::classifier::to_tensors;
use sciflow_train::learner::to_device;
use sciflow_train::TrainHistory;
use sciflow_train::{load_model, DeviceSpec};

use crate::figures::{write_summary, Summary};
use crate::metrics::{classification_metrics_at, Metrics};
use crate::mistakes::{self, Mistake};
use crate::{Error, Result};

/// Configuration of `eval.classifier`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalClassifierConfig {
    /// The model directory (a `train.classifier` output).
    pub model: PathBuf,
    /// The dataset directory.
    pub data: PathBuf,
    /// The split scored.
    #[serde(default = "crate::default_split")]
    pub split: Split,
    /// Samples per forward pass.
    #[serde(default = "crate::default_batch")]
    pub batch_size: NonZeroUsize,
    /// Score another labelled folder (its `labels.csv`) or labels table instead
    /// of `data`'s split: its images are prepared exactly as `data` was (the
    /// ingest settings recorded in its `dataset.json`), into `<out>/data`.
    #[serde(default)]
    pub images: Option<PathBuf>,
    /// Where to run the network: `auto` (the local GPU, else the CPU),
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Test-time augmentation: average the class probabilities over the eight
    /// rotations and flips of each image (for data with no preferred
    /// orientation, such as galaxies).
    #[serde(default)]
    pub tta: bool,
    /// How a class is chosen: `argmax` (the most probable), or, for two
    /// classes, `val_threshold`: the threshold on the second class's
    /// probability that is most accurate on `data`'s validation split (an
    /// operating point chosen on held-out data, never on the scored split).
    #[serde(default)]
    pub decision: Decision,
    /// Threads preparing `images`.
    #[serde(default = "default_threads")]
    pub threads: NonZeroUsize,
    /// How many of the most confident mistakes to show in `mistakes.png`
    /// (with `mistakes.json`); 0 for none.
    #[serde(default = "default_mistakes")]
    pub mistakes: usize,
}

fn default_mistakes() -> usize {
    16
}

/// How predictions become classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The most probable class.
    #[default]
    Argmax,
    /// A threshold chosen on the validation split (two classes).
    ValThreshold,
}

fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// The contents of `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Fraction predicted correctly.
    pub accuracy: f64,
    /// ROC AUC (two classes).
    pub auc: Option<f64>,
    /// The split scored.
    pub split: Split,
    /// Class names, by label index.
    pub class_names: Vec<String>,
    /// The threshold on the second class's probability, when chosen on the
    /// validation split (`decision: val_threshold`).
    pub decision_threshold: Option<f64>,
    /// Everything else.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// The model directory.
    pub model: String,
    /// The dataset directory.
    pub data: String,
}

/// Scores the model on the split and writes `metrics.json`,
/// `predictions.parquet` and `summary.png`/`.svg` into `out`.
pub fn evaluate_classifier(config: &EvalClassifierConfig, out: &Path) -> Result<EvalReport> {
    // The training set, whose validation split chooses a decision threshold.
    let reference = config.data.clone();
    let reference = reference.as_path();
    let prepared;
    let config = match &config.images {
        Some(images) => {
            prepared = EvalClassifierConfig {
                data: prepare_images(&config.data, images, out, config.threads.get())?,
                split: Split::Test,
                images: None,
                ..config.clone()
            };
            &prepared
        }
        None => config,
    };
    let device = config.device.resolve()?;
    let (_vs, net, info) = load_model(&config.model, device)?;
    let loader = Loader::new(
        &config.data,
        config.split,
        eval_loader(config.batch_size.get()),
    )?;
    let ds = loader.info();
    let want = vec![info.in_channels, info.image_size, info.image_size];
    if ds.x.sample_shape != want || ds.class_names != info.class_names {
        return Err(Error::Mismatch(format!(
            "model {} expects samples {:?} of classes {:?}; dataset {} has {:?} of {:?}",
            config.model.display(),
            want,
            info.class_names,
            config.data.display(),
            ds.x.sample_shape,
            ds.class_names
        )));
    }
    if loader.is_empty() {
        return Err(Error::Mismatch(format!(
            "the {} split of {} is empty",
            config.split.as_str(),
            config.data.display()
        )));
    }
    let k = info.class_names.len();
    let (labels, probs) = score(&*net, device, &loader, k, config.tta)?;
    let threshold = match config.decision {
        Decision::Argmax => None,
        Decision::ValThreshold => Some(val_threshold(
            &*net,
            device,
            reference,
            config.batch_size.get(),
            &info.class_names,
            config.tta,
        )?),
    };
    let predicted: Vec<usize> = probs
        .iter()
        .map(|p| match threshold {
            Some(t) => (p[1] as f64 > t) as usize,
            None => crate::metrics::argmax(p),
        })
        .collect();
    let metrics = classification_metrics_at(&labels, &probs, &info.class_names, &predicted);

    std::fs::create_dir_all(out).map_err(Error::io("failed to create", out))?;
    let ids = sample_ids(&config.data, config.split, labels.len())?;
    write_predictions(
        &out.join("predictions.parquet"),
        &ids,
        &labels,
        &probs,
        &predicted,
        &info.class_names,
    )?;

    // The surest mistakes, to look at: the model's error or the label's?
    if config.mistakes > 0 {
        let chosen = mistakes::most_confident(&labels, &predicted, &probs, config.mistakes);
        let class = |k: usize| {
            info.class_names
                .get(k)
                .cloned()
                .unwrap_or_else(|| k.to_string())
        };
        let list: Vec<Mistake> = chosen
            .iter()
            .map(|&i| Mistake {
                sample_id: ids[i].clone(),
                true_class: class(labels[i] as usize),
                predicted_class: class(predicted[i]),
                confidence: probs[i].get(predicted[i]).copied().unwrap_or(0.0),
            })
            .collect();
        mistakes::write(out, &loader, &chosen, &list)?;
    }

    // A model directory without a (readable) history still evaluates; the
    // figure then has no training curves.
    let history = TrainHistory::load(&config.model).ok();
    write_summary(
        out,
        "summary",
        &Summary {
            title: &format!(
                "{} on {} ({} split): accuracy {:.3}, AUC {}",
                config.model.display(),
                config.data.display(),
                config.split.as_str(),
                metrics.accuracy,
                metrics.auc.map_or("n/a".into(), |a| format!("{a:.3}"))
            ),
            history: history.as_ref().map(|h| h.history.as_slice()),
            confusion: &metrics.confusion,
            class_names: &info.class_names,
            split: config.split.as_str(),
            calibration: &metrics.calibration,
        },
    )?;
    let report = EvalReport {
        accuracy: metrics.accuracy,
        auc: metrics.auc,
        split: config.split,
        class_names: info.class_names.clone(),
        decision_threshold: threshold,
        metrics,
        model: config.model.to_string_lossy().into_owned(),
        data: config.data.to_string_lossy().into_owned(),
    };
    write_atomic(
        &out.join("metrics.json"),
        &serde_json::to_vec_pretty(&report).expect("report serialises"),
    )?;
    Ok(report)
}

/// Class probabilities of every sample the loader gives (averaged over the
/// eight rotations and flips with `tta`), with the labels.
fn score(
    net: &dyn tch::nn::ModuleT,
    device: tch::Device,
    loader: &Loader,
    k: usize,
    tta: bool,
) -> Result<(Vec<i64>, Vec<Vec<f32>>)> {
    let mut labels = Vec::new();
    let mut probs: Vec<Vec<f32>> = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0) {
            let batch = batch?;
            let (x, _) = to_tensors(&batch).map_err(Error::Model)?;
            let p = probabilities(net, &to_device(x, device), tta);
            let n = batch.y.len() * k;
            let mut flat = vec![0.0f32; n];
            p.copy_data(&mut flat, n);
            probs.extend(flat.chunks(k).map(|c| c.to_vec()));
            labels.extend_from_slice(&batch.y);
        }
        Ok(())
    })?;
    Ok((labels, probs))
}

/// Class probabilities of a batch `[n, k]` (contiguous), averaged over the
/// eight rotations and flips of each image with `tta`; call without
/// gradients.
pub(crate) fn probabilities(net: &dyn tch::nn::ModuleT, x: &tch::Tensor, tta: bool) -> tch::Tensor {
    let mut sum = net.forward_t(x, false).softmax(-1, Kind::Float);
    if tta {
        for r in 1..8 {
            let rot = x.rot90(r % 4, [2, 3]);
            let v = if r >= 4 { rot.flip([3]) } else { rot };
            sum += net.forward_t(&v, false).softmax(-1, Kind::Float);
        }
        sum /= 8.0;
    }
    sum.contiguous()
}

/// The threshold on the second class's probability most accurate on the
/// validation split of `reference` (`decision: val_threshold`).
pub(crate) fn val_threshold(
    net: &dyn tch::nn::ModuleT,
    device: tch::Device,
    reference: &Path,
    batch_size: usize,
    class_names: &[String],
    tta: bool,
) -> Result<f64> {
    let k = class_names.len();
    if k != 2 {
        return Err(Error::Mismatch(format!(
            "decision: val_threshold needs two classes, the model has {k}"
        )));
    }
    let val = Loader::new(reference, Split::Val, eval_loader(batch_size))?;
    if val.is_empty() {
        return Err(Error::Mismatch(format!(
            "decision: val_threshold needs a validation split; {} has none",
            reference.display()
        )));
    }
    let (vl, vp) = score(net, device, &val, k, tta)?;
    let p1: Vec<f32> = vp.iter().map(|p| p[1]).collect();
    let t = crate::metrics::best_threshold(&vl, &p1);
    tracing::info!(
        "decision threshold {t:.3} on p({}) chosen on {} validation samples",
        class_names[1],
        vl.len()
    );
    Ok(t)
}

/// The loader of an evaluation: every sample once, in shard order.
fn eval_loader(batch_size: usize) -> LoaderConfig {
    LoaderConfig {
        shuffle: false,
        shuffle_buffer: batch_size,
        even_steps: false,
        ..LoaderConfig::new(batch_size, 0)
    }
}

/// Ingests a labelled folder or table with the settings `reference` was
/// ingested with, every sample in the test split; returns the dataset's path.
fn prepare_images(reference: &Path, images: &Path, out: &Path, threads: usize) -> Result<PathBuf> {
    let info = DatasetInfo::load(reference)?;
    let mut cfg: GalaxyImagesConfig = serde_json::from_value(info.provenance.config.clone())
        .map_err(|e| {
            Error::Mismatch(format!(
                "{} records ingest settings this version cannot read: {e}",
                reference.join("dataset.json").display()
            ))
        })?;
    cfg.labels = if images.is_dir() {
        images.join("labels.csv")
    } else {
        images.to_path_buf()
    };
    cfg.split = SplitFractions::new(0.0, 1.0);
    // Stored as the reference was (a dataset written before `dtype` existed
    // is F32), so the network sees inputs made the same way.
    cfg.dtype = StoreAs::like(&info.x.dtype);
    let dir = out.join("data");
    tracing::info!(
        "preparing {} as {} was prepared ({}x{} px, {:?})",
        cfg.labels.display(),
        reference.display(),
        cfg.size,
        cfg.size,
        cfg.normalisation
    );
    let ds = write_dataset(&cfg, info.provenance.seed, &dir, threads, &|_| {})?;
    if ds.counts.rejected > 0 {
        tracing::warn!(
            "{} of {} image(s) could not be read; see {}",
            ds.counts.rejected,
            ds.counts.rejected + ds.counts.total,
            dir.join("rejects.parquet").display()
        );
    }
    Ok(dir)
}

/// Sample ids of `split` in shard order, as the unshuffled loader delivers them.
fn sample_ids(data: &Path, split: Split, expected: usize) -> Result<Vec<String>> {
    let manifest = SplitManifest::read(data, split)?;
    if manifest.rows.len() != expected {
        return Err(Error::Mismatch(format!(
            "{} lists {} {} samples but the shards hold {expected}",
            manifest.path.display(),
            manifest.rows.len(),
            split.as_str()
        )));
    }
    Ok(manifest.strings("sample_id")?)
}

fn write_predictions(
    path: &Path,
    ids: &[String],
    labels: &[i64],
    probs: &[Vec<f32>],
    predicted: &[usize],
    names: &[String],
) -> Result<()> {
    let table_err = |source| Error::Table {
        op: "write",
        path: path.to_path_buf(),
        source,
    };
    let predicted: Vec<i64> = predicted.iter().map(|&c| c as i64).collect();
    let mut columns = vec![
        Column::new("sample_id".into(), ids),
        Column::new("label".into(), labels),
        Column::new(
            "label_name".into(),
            labels
                .iter()
                .map(|&l| names[l as usize].clone())
                .collect::<Vec<_>>(),
        ),
        Column::new("predicted".into(), &predicted),
        Column::new(
            "probability".into(),
            probs
                .iter()
                .zip(&predicted)
                .map(|(p, &c)| p[c as usize])
                .collect::<Vec<f32>>(),
        ),
        Column::new(
            "predicted_name".into(),
            predicted
                .iter()
                .map(|&l| names[l as usize].clone())
                .collect::<Vec<_>>(),
        ),
    ];
    for (c, name) in names.iter().enumerate() {
        columns.push(Column::new(
            format!("p_{name}").into(),
            probs.iter().map(|p| p[c]).collect::<Vec<f32>>(),
        ));
    }
    let mut df = DataFrame::new_infer_height(columns).map_err(table_err)?;
    Ok(write_parquet(path, &mut df)?)
}
