//! `infer.regressor`: a trained waveform regressor over waveforms whose
//! parameters are unknown into a table of predicted q, chi1z, chi2z and
//! chi_eff.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use sciflow_ingest::contract::Reject;
use sciflow_ingest::writers::waveforms::WaveformInputs;
use sciflow_train::regressor::load_regressor;
use sciflow_train::DeviceSpec;

use super::{
    finish, prepare_chunk, run_chunks, score_batches, CatalogueSummary, ChunkOut, Chunks, Finish,
};
use crate::{Error, Result};

/// Configuration of `infer.regressor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRegressorConfig {
    /// The model directory (a `train.regressor` output).
    pub model: PathBuf,
    /// The dataset the model was trained on: each waveform is put on its
    /// time grid, as its samples were.
    pub data: PathBuf,
    /// What to score: a bank file, LVC NR or SXS files, or folders of them
    /// (`*.h5`).
    pub inputs: Vec<PathBuf>,
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
}

/// Predicts the parameters of every waveform in `config.inputs` into `out`
/// (`catalogue.parquet`: sample_id, q, chi1z, chi2z, chi_eff, source;
/// `rejects.parquet`; `catalogue.json`). Every rank calls it; rank 0
/// returns the summary.
pub fn infer_regressor(
    config: &InferRegressorConfig,
    out: &Path,
    chunks: &Chunks<'_>,
) -> Result<Option<CatalogueSummary>> {
    let started = Instant::now();
    let inputs = WaveformInputs::like(&config.data, &config.inputs)?;
    let device = config.device.resolve()?;
    let mut regs = Vec::new();
    for _ in 0..super::workers(device, chunks.threads) {
        regs.push(load_regressor(&config.model, device)?);
    }
    let reg = &regs[0];
    let shape = inputs.shape();
    if shape != [reg.info.in_channels, reg.info.samples] {
        return Err(Error::Mismatch(format!(
            "model {} expects samples [{}, {}]; {} prepares {shape:?}",
            config.model.display(),
            reg.info.in_channels,
            reg.info.samples,
            config.data.display(),
        )));
    }
    let len = shape[0] * shape[1];
    let batch = config.batch_size.get();
    // Where this rank's time goes, for catalogue.json.
    let (mut prepare_seconds, mut score_seconds) = (0.0, 0.0);
    let scored = run_chunks(inputs.len(), chunks, |range| {
        let t0 = Instant::now();
        let (x, ok, bad) =
            prepare_chunk(range, len, chunks.threads, &|i, out| inputs.prepare(i, out));
        let t1 = Instant::now();
        prepare_seconds += (t1 - t0).as_secs_f64();
        let pred = score_batches(&mut regs, &x, len, batch, 3, &|reg, b, p| {
            let n = (b.len() / len) as i64;
            let t = tch::Tensor::f_from_slice(b)
                .and_then(|t| t.f_view([n, shape[0] as i64, shape[1] as i64]))
                .map_err(|e| Error::Mismatch(format!("a batch of waveforms: {e}")))?;
            let y = reg
                .predict(&t.to_device(device))
                .to_device(tch::Device::Cpu)
                .contiguous();
            y.copy_data(p, p.len());
            Ok(())
        })?;
        score_seconds += t1.elapsed().as_secs_f64();
        let col = |k: usize| pred.chunks(3).map(|p| p[k] as f64).collect::<Vec<f64>>();
        let chi_eff: Vec<f64> = pred
            .chunks(3)
            .map(|p| {
                let (q, a, b) = (p[0] as f64, p[1] as f64, p[2] as f64);
                (q * a + b) / (1.0 + q)
            })
            .collect();
        let table = df!(
            "sample_id" => ok.iter().map(|&i| inputs.id(i)).collect::<Vec<_>>(),
            "q" => col(0),
            "chi1z" => col(1),
            "chi2z" => col(2),
            "chi_eff" => chi_eff,
            "source" => ok.iter().map(|&i| inputs.source(i)).collect::<Vec<_>>(),
        )
        .expect("equal columns");
        let rejects = bad
            .into_iter()
            .map(|(i, e)| {
                tracing::warn!("rejecting {}: {e}", inputs.id(i));
                Reject {
                    sample_id: inputs.id(i),
                    source: inputs.source(i),
                    reason: e.to_string(),
                }
            })
            .collect();
        Ok(ChunkOut { table, rejects })
    })?;
    let mut extra = serde_json::Map::new();
    extra.insert("prepare_seconds".into(), serde_json::json!(prepare_seconds));
    extra.insert("score_seconds".into(), serde_json::json!(score_seconds));
    extra.insert(
        "targets".into(),
        serde_json::json!(["q", "chi1z", "chi2z", "chi_eff"]),
    );
    let shown = config
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    finish(
        chunks,
        Finish {
            model: &config.model,
            inputs: shown,
            total: inputs.len(),
            started,
            scored_chunks: scored,
            extra,
        },
        inputs.unreadable(),
        out,
    )
}
