//! `infer.classifier`: a trained galaxy classifier over unlabelled images
//! into a catalogue of class probabilities.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use sciflow_ingest::contract::Reject;
use sciflow_ingest::writers::galaxy_images::{ImageInputs, ReadOptions};
use sciflow_train::learner::channels_last_weights;
use sciflow_train::shim::channels_last;
use sciflow_train::{load_model, DeviceSpec};

use super::{
    finish, prepare_chunk, run_chunks, score_batches, CatalogueSummary, ChunkOut, Chunks, Finish,
};
use crate::classifier::{probabilities, val_threshold, Decision};
use crate::{Error, Result};

/// Configuration of `infer.classifier`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferClassifierConfig {
    /// The model directory (a `train.classifier` output).
    pub model: PathBuf,
    /// The dataset the model was trained on: each input is prepared as its
    /// samples were (the ingest settings its `dataset.json` records), and
    /// `decision: val_threshold` is chosen on its validation split.
    pub data: PathBuf,
    /// What to catalogue: a folder of images (ids are the file names), a
    /// folder with a `labels.csv`, or a table (CSV or Parquet) with an id
    /// column (`objid`), `image` and, for stamps cut from frames, `ra` and
    /// `dec`. Labels, if any, are not read.
    pub inputs: PathBuf,
    /// How the inputs are read where they differ from `data`'s own files
    /// (`bands`, `cutout`, `hdu`, `image_path`).
    #[serde(default)]
    pub read: ReadOptions,
    /// Samples per forward pass (CPU workers score fastest with small
    /// batches; raise it on a GPU).
    #[serde(default = "super::default_infer_batch")]
    pub batch_size: NonZeroUsize,
    /// Inputs per chunk: the unit of work of a rank, and of resuming.
    #[serde(default = "super::default_chunk")]
    pub chunk_size: NonZeroUsize,
    /// Where to run the network: `auto` (the local GPU, else the CPU),
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Average the class probabilities over the eight rotations and flips
    /// of each image.
    #[serde(default)]
    pub tta: bool,
    /// How a class is chosen: `argmax`, or for two classes `val_threshold`
    /// (the threshold most accurate on `data`'s validation split).
    #[serde(default)]
    pub decision: Decision,
}

/// Catalogues `config.inputs` into `out` (`catalogue.parquet`: objid, ra and
/// dec when the table has them, `p_<class>` for each class, `class`, the
/// chosen class, and `confidence`, its probability; `rejects.parquet`;
/// `catalogue.json`). Every rank calls it; rank 0 returns the summary.
pub fn infer_classifier(
    config: &InferClassifierConfig,
    out: &Path,
    chunks: &Chunks<'_>,
) -> Result<Option<CatalogueSummary>> {
    let started = Instant::now();
    let inputs = ImageInputs::like(&config.data, &config.inputs, &config.read)?;
    let device = config.device.resolve()?;
    let (_vs, net, info) = load_model(&config.model, device)?;
    let shape = inputs.shape();
    let want = [info.in_channels, info.image_size, info.image_size];
    if shape != want {
        return Err(Error::Mismatch(format!(
            "model {} expects inputs {want:?}; {} prepares {shape:?}",
            config.model.display(),
            config.data.display(),
        )));
    }
    let classes = &info.class_names;
    // Chosen on one libtorch thread, as the catalogue is scored: the same
    // threshold whatever the cores.
    let threshold = match config.decision {
        Decision::Argmax => None,
        Decision::ValThreshold => Some(crate::one_thread(|| {
            val_threshold(
                &*net,
                device,
                &config.data,
                config.batch_size.get(),
                classes,
                config.tta,
            )
        })?),
    };
    let mut nets = vec![(_vs, net)];
    for _ in 1..super::workers(device, chunks.threads) {
        let (vs, net, _) = load_model(&config.model, device)?;
        nets.push((vs, net));
    }
    // Channels-last weights and inputs: oneDNN's native layout, about twice
    // as fast as NCHW on the CPU for these networks (and what GPUs train in).
    for (vs, _) in &nets {
        channels_last_weights(vs);
    }
    let rows = inputs.rows();
    let coords = rows.iter().any(|r| r.ra.is_some());
    let len: usize = shape.iter().product();
    let batch = config.batch_size.get();
    // Where this rank's time goes, for catalogue.json.
    let (mut prepare_seconds, mut score_seconds) = (0.0, 0.0);
    let scored = run_chunks(rows.len(), chunks, |range| {
        let t0 = Instant::now();
        let (x, ok, bad) = prepare_chunk(range, len, chunks.threads, &|i, out| {
            inputs.prepare(i, out).map(|_| ())
        });
        let t1 = Instant::now();
        prepare_seconds += (t1 - t0).as_secs_f64();
        let k = classes.len();
        let probs = score_batches(&mut nets, &x, len, batch, k, &|(_, net), b, p| {
            let n = (b.len() / len) as i64;
            let dims = [n, shape[0] as i64, shape[1] as i64, shape[2] as i64];
            let t = tch::Tensor::f_from_slice(b)
                .and_then(|t| t.f_view(dims))
                .map_err(|e| Error::Mismatch(format!("a batch of inputs: {e}")))?;
            let t = channels_last(&t).ok_or_else(|| {
                Error::Mismatch("libtorch refused a batch in channels-last order".into())
            })?;
            let out = tch::no_grad(|| probabilities(&**net, &t.to_device(device), config.tta));
            out.to_device(tch::Device::Cpu).copy_data(p, p.len());
            Ok(())
        })?;
        score_seconds += t1.elapsed().as_secs_f64();
        let chosen: Vec<usize> = probs
            .chunks(k)
            .map(|p| match threshold {
                Some(t) => (p[1] as f64 > t) as usize,
                None => crate::metrics::argmax(p),
            })
            .collect();
        let mut cols = vec![Column::new(
            "objid".into(),
            ok.iter().map(|&i| rows[i].id.as_str()).collect::<Vec<_>>(),
        )];
        if coords {
            let ra = ok.iter().map(|&i| rows[i].ra).collect::<Vec<_>>();
            let dec = ok.iter().map(|&i| rows[i].dec).collect::<Vec<_>>();
            cols.push(Column::new("ra".into(), ra));
            cols.push(Column::new("dec".into(), dec));
        }
        for (c, name) in classes.iter().enumerate() {
            cols.push(Column::new(
                format!("p_{name}").into(),
                probs.chunks(k).map(|p| p[c]).collect::<Vec<f32>>(),
            ));
        }
        cols.push(Column::new(
            "class".into(),
            chosen
                .iter()
                .map(|&c| classes[c].as_str())
                .collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "confidence".into(),
            probs
                .chunks(k)
                .zip(&chosen)
                .map(|(p, &c)| p[c])
                .collect::<Vec<f32>>(),
        ));
        cols.push(Column::new(
            "image".into(),
            ok.iter()
                .map(|&i| rows[i].image.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
        ));
        let table = DataFrame::new(ok.len(), cols).expect("equal columns");
        let rejects = bad
            .into_iter()
            .map(|(i, e)| {
                tracing::warn!("rejecting {}: {e}", rows[i].id);
                Reject {
                    sample_id: rows[i].id.clone(),
                    source: rows[i].image.to_string_lossy().into_owned(),
                    reason: e.to_string(),
                }
            })
            .collect();
        Ok(ChunkOut { table, rejects })
    })?;
    let mut extra = serde_json::Map::new();
    extra.insert("prepare_seconds".into(), serde_json::json!(prepare_seconds));
    extra.insert("score_seconds".into(), serde_json::json!(score_seconds));
    extra.insert("class_names".into(), serde_json::json!(classes));
    extra.insert("decision_threshold".into(), serde_json::json!(threshold));
    extra.insert("tta".into(), serde_json::json!(config.tta));
    finish(
        chunks,
        Finish {
            model: &config.model,
            inputs: config.inputs.display().to_string(),
            total: rows.len(),
            started,
            scored_chunks: scored,
            extra,
        },
        &[],
        out,
    )
}
