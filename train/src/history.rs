//! `history.json`: what training writes of each epoch and what evaluation,
//! the scaling figures and the run report read back, for every task.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Figures of one epoch, averaged over all ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (classification, on augmented images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Mean validation loss, when there is a validation split.
    pub val_loss: Option<f64>,
    /// Validation accuracy (classification), when there is a validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Validation mean absolute error per target in physical units
    /// (regression), when there is a validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_mae: Option<Vec<f64>>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the training part of the epoch.
    pub seconds: f64,
    /// Training samples per second, all ranks together.
    pub samples_per_second: f64,
    /// Seconds the training loop waited for the loader (rank 0's).
    #[serde(default)]
    pub data_wait_seconds: f64,
    /// Seconds spent averaging gradients across ranks (rank 0's).
    #[serde(default)]
    pub allreduce_seconds: f64,
}

/// The contents of `history.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainHistory {
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// Ranks that took part.
    pub world_size: usize,
    /// Steps each rank took per epoch (the first epoch).
    #[serde(default)]
    pub steps_per_epoch: usize,
}

impl TrainHistory {
    /// The file name inside a model directory.
    pub const FILE: &'static str = "history.json";

    /// Reads `history.json` from a model directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read(&path).map_err(|e| Error::io("failed to read", &path, e))?;
        serde_json::from_slice(&text).map_err(|source| Error::Parse {
            path,
            what: "training history",
            source,
        })
    }

    /// Writes `history.json` into a model directory (atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("a history serialises");
        Ok(sciflow_ingest::files::write_atomic(
            &dir.join(Self::FILE),
            &bytes,
        )?)
    }
}
