//! The dataset contract: what `dataset.json` says, how shards are named and
//! split, and which share of the shards a process writes. Every writer in
//! [`crate::writers`] produces it, the [`crate::loader`] reads it, and so do
//! `sciflow-train` and `sciflow-eval`; Python reads the same files with
//! `safetensors`, `pyarrow` or `polars` and no code of ours.
//!
//! ```text
//! dataset.json                      DatasetInfo: schema, class or target names,
//!                                   shards with BLAKE3 checksums, counts, provenance
//! manifest.parquet                  one row per sample (sample_id, shard, index, split, ...)
//! shards/shard-00000.safetensors    tensors `x` [n, ...] and `y` [n] or [n, k]
//! rejects.parquet                   inputs skipped (sample_id, source, reason)
//! ```
//!
//! `dataset.json` is written last: a directory without it is not a dataset.

use std::path::{Path, PathBuf};

use polars::prelude::{DataFrame, ParquetReader, SerReader};
use serde::{Deserialize, Serialize};

use crate::preprocess::Normalisation;
use crate::{Error, Result};

/// Version of the on-disk dataset contract written into `dataset.json`:
/// 2 lets `x` be U8 or F16, with `decode` (version 1 datasets read as before).
pub const FORMAT_VERSION: u32 = 2;

/// How samples are split into train, validation and test, stratified by
/// class: held-out fractions, or k-fold cross-validation (`folds`, `fold`),
/// where each class's samples fall into `folds` equal parts in the seeded
/// order and part `fold` is the test split. The `folds` runs of a workflow
/// with `fold` = 0, 1, ... together test every sample exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFractions {
    /// Fraction of each class held out for validation (with `folds`: taken
    /// from outside the test fold, so model and threshold choices never see it).
    pub val: f64,
    /// Fraction of each class held out for testing (default 0; leave it out
    /// with `folds`, where the test split is one fold).
    #[serde(default)]
    pub test: f64,
    /// k-fold cross-validation: the number of folds (at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// With `folds`: which fold (0-based) is the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions::new(0.1, 0.2)
    }
}

impl SplitFractions {
    /// Held-out validation and test fractions (no cross-validation).
    pub fn new(val: f64, test: f64) -> Self {
        SplitFractions {
            val,
            test,
            folds: None,
            fold: None,
        }
    }

    /// Fold `fold` of `folds` as the test split, `val` of each class for validation.
    pub fn fold(val: f64, folds: usize, fold: usize) -> Self {
        SplitFractions {
            val,
            test: 0.0,
            folds: Some(folds),
            fold: Some(fold),
        }
    }

    /// Checks that both fractions are in [0, 1] and sum to at most 1 (all
    /// test, a set prepared only for evaluation, is allowed), and that a
    /// cross-validation fold is one of at least two.
    pub fn check(&self) -> Result<()> {
        let SplitFractions {
            val,
            test,
            folds,
            fold,
        } = *self;
        let range = |f: f64| (0.0..=1.0).contains(&f);
        match (folds, fold) {
            (None, None) => {
                if !range(val) || !range(test) || val + test > 1.0 {
                    return Err(Error::Config(format!(
                        "split fractions must be in [0, 1] and sum to at most 1: val {val}, test {test}"
                    )));
                }
            }
            (Some(k), Some(f)) => {
                if k < 2 || f >= k {
                    return Err(Error::Config(format!(
                        "split: `fold` must be one of 0..{k} and `folds` at least 2: folds {k}, fold {f}"
                    )));
                }
                if test != 0.0 {
                    return Err(Error::Config(format!(
                        "split: with `folds` the test split is fold {f}; leave `test` ({test}) out"
                    )));
                }
                if !range(val) || val + 1.0 / k as f64 > 1.0 {
                    return Err(Error::Config(format!(
                        "split: val {val} and one fold of {k} must leave training samples"
                    )));
                }
            }
            (Some(k), None) => {
                return Err(Error::Config(format!(
                    "split: `folds: {k}` needs `fold` (0..{k}), the fold tested on"
                )))
            }
            (None, Some(f)) => {
                return Err(Error::Config(format!(
                    "split: `fold: {f}` needs `folds`, the number of folds"
                )))
            }
        }
        Ok(())
    }

    /// (validation, test) sample counts out of `n` (as [`Self::assign`] splits them).
    pub fn sizes(&self, n: usize) -> (usize, usize) {
        let a = self.assign(n);
        let count = |s| a.iter().filter(|&&x| x == s).count();
        (count(Split::Val), count(Split::Test))
    }

    /// The split of each of `n` samples (of one class, where stratified)
    /// taken in their seeded order. Held-out fractions: the first
    /// `round(n test)` are test, the next `round(n val)` validation. Folds:
    /// fold `f` is positions `f n / k .. (f + 1) n / k`, and the validation
    /// samples are the `round(n val)` after it (wrapping around), so every
    /// fold's model is chosen on samples of the other folds.
    pub fn assign(&self, n: usize) -> Vec<Split> {
        let mut out = vec![Split::Train; n];
        let (start, n_test) = match (self.folds, self.fold) {
            // (Clamped so that an unchecked fold >= folds gives no test
            // samples rather than a panic; `check` refuses it.)
            (Some(k), Some(f)) if k > 0 => {
                let (a, b) = ((f * n / k).min(n), ((f + 1) * n / k).min(n));
                (a, b - a)
            }
            _ => (0, ((n as f64 * self.test).round() as usize).min(n)),
        };
        let n_val = ((n as f64 * self.val).round() as usize).min(n - n_test);
        for i in 0..n_test {
            out[start + i] = Split::Test;
        }
        for i in 0..n_val {
            out[(start + n_test + i) % n] = Split::Val;
        }
        out
    }
}

/// Policy for inputs that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Record the input in `rejects.parquet` and go on.
    #[default]
    Skip,
    /// Stop with an error naming the input.
    Fail,
}

/// The three splits, in shard order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data.
    Val,
    /// Test data.
    Test,
}

impl Split {
    /// The name used in the manifest and in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Which share of the work this process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// Number of cooperating processes.
    pub size: usize,
}

impl Partition {
    /// A single process doing everything.
    pub const SINGLE: Partition = Partition { rank: 0, size: 1 };
}

/// One shard as recorded in `dataset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRecord {
    /// Shard number (file `shards/shard-NNNNN.safetensors`).
    pub index: usize,
    /// Path relative to the dataset directory.
    pub file: String,
    /// The split all its samples belong to.
    pub split: Split,
    /// Number of samples.
    pub samples: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// BLAKE3 of the file, hex.
    pub blake3: String,
}

/// Shape and type of one stored tensor, per sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSchema {
    /// Tensor name inside each shard.
    pub name: String,
    /// safetensors dtype name.
    pub dtype: String,
    /// Shape of one sample (the shard tensor has a leading sample axis).
    pub sample_shape: Vec<usize>,
}

impl TensorSchema {
    /// A tensor `name` of `dtype` (a safetensors dtype name) and per-sample `shape`.
    pub fn new(name: &str, dtype: &str, sample_shape: Vec<usize>) -> Self {
        TensorSchema {
            name: name.into(),
            dtype: dtype.into(),
            sample_shape,
        }
    }
}

/// How the loader turns a stored `x` into the network's input (U8 images):
/// each value becomes `v * scale + offset`, then each sample is normalised.
/// Without it, `x` is the input as stored (widened to f32 from F16).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDecode {
    /// Factor on each stored value (8-bit pixels: 1/255, the [0, 1] values
    /// the ingest read).
    pub scale: f32,
    /// Added after `scale`.
    pub offset: f32,
    /// The normalisation the ingest stage asked for, applied per sample.
    pub normalisation: Normalisation,
}

/// Sample counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Samples stored.
    pub total: usize,
    /// Training samples.
    pub train: usize,
    /// Validation samples.
    pub val: usize,
    /// Test samples.
    pub test: usize,
    /// Inputs rejected.
    pub rejected: usize,
}

/// Where the data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The labels table as given.
    pub labels: String,
    /// BLAKE3 of the labels table.
    pub labels_blake3: String,
    /// BLAKE3 over every stored sample's id and source-file hash, in manifest order.
    pub inputs_blake3: String,
    /// The seed of the split.
    pub seed: u64,
    /// The configuration, as resolved.
    pub config: serde_json::Value,
    /// The writer and its version.
    pub created_by: String,
}

impl Provenance {
    /// Where a dataset written by this crate came from, with its resolved `config`.
    pub fn new(
        labels: String,
        labels_blake3: String,
        inputs_blake3: String,
        seed: u64,
        config: &impl Serialize,
    ) -> Self {
        Provenance {
            labels,
            labels_blake3,
            inputs_blake3,
            seed,
            config: serde_json::to_value(config).expect("config serialises"),
            created_by: concat!("sciflow-ingest ", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// The contents of `dataset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInfo {
    /// Always `sciflow-dataset`.
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// What the samples are (`image_classification`).
    pub kind: String,
    /// Inputs.
    pub x: TensorSchema,
    /// How `x` becomes the network's input, when it is not that as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<InputDecode>,
    /// Targets (class indices into `class_names`).
    pub y: TensorSchema,
    /// Class names, by label index (classification; empty otherwise).
    pub class_names: Vec<String>,
    /// Names of the F32 target values, in order (regression; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_names: Vec<String>,
    /// The time axis of waveform samples: first time (M), spacing (M), samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_grid: Option<[f64; 3]>,
    /// The shards, in order.
    pub shards: Vec<ShardRecord>,
    /// Sample counts.
    pub counts: Counts,
    /// Inputs and configuration.
    pub provenance: Provenance,
}

/// The `format` of every `dataset.json`.
pub const FORMAT: &str = "sciflow-dataset";

impl DatasetInfo {
    /// A description of `kind` with no shards, names or counts yet.
    pub fn new(kind: &str, x: TensorSchema, y: TensorSchema, provenance: Provenance) -> Self {
        DatasetInfo {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            kind: kind.into(),
            x,
            decode: None,
            y,
            class_names: Vec::new(),
            target_names: Vec::new(),
            time_grid: None,
            shards: Vec::new(),
            counts: Counts::default(),
            provenance,
        }
    }

    /// Reads `dataset.json` from a dataset directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("dataset.json");
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io("failed to read", &p, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Parse {
            path: p.clone(),
            what: "dataset description",
            source,
        })
    }

    /// The number of values in one sample's input.
    pub fn sample_len(&self) -> usize {
        self.x.sample_shape.iter().product()
    }
}

/// The rows of `manifest.parquet` in a dataset directory that belong to one
/// split, in shard order: the order an unshuffled loader delivers samples.
#[derive(Debug, Clone)]
pub struct SplitManifest {
    /// The file read.
    pub path: PathBuf,
    /// The whole manifest.
    pub table: DataFrame,
    /// Row numbers of the split's samples, in shard order.
    pub rows: Vec<usize>,
}

impl SplitManifest {
    /// Reads the manifest of `dir` and orders `split`'s rows.
    pub fn read(dir: &Path, split: Split) -> Result<Self> {
        let path = dir.join("manifest.parquet");
        let table_err = |source| Error::Table {
            op: "read",
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(|e| Error::io("failed to open", &path, e))?;
        let table = ParquetReader::new(file).finish().map_err(table_err)?;
        let splits = table.column("split").and_then(|c| c.str().cloned());
        let shard = table.column("shard").and_then(|c| c.u32().cloned());
        let index = table.column("index").and_then(|c| c.u32().cloned());
        let (splits, shard, index) = (
            splits.map_err(table_err)?,
            shard.map_err(table_err)?,
            index.map_err(table_err)?,
        );
        let mut rows: Vec<(u32, u32, usize)> = (0..table.height())
            .filter(|&i| splits.get(i) == Some(split.as_str()))
            .map(|i| (shard.get(i).unwrap_or(0), index.get(i).unwrap_or(0), i))
            .collect();
        rows.sort_unstable();
        Ok(SplitManifest {
            rows: rows.into_iter().map(|r| r.2).collect(),
            path,
            table,
        })
    }

    /// A text column's values for the split's rows.
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let col = self
            .table
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(|source| self.table_err(source))?;
        Ok(self
            .rows
            .iter()
            .map(|&i| col.get(i).unwrap_or("").to_string())
            .collect())
    }

    /// A float column's values for the split's rows (NaN where missing).
    pub fn floats(&self, name: &str) -> Result<Vec<f64>> {
        let col = self
            .table
            .column(name)
            .and_then(|c| c.f64().cloned())
            .map_err(|source| self.table_err(source))?;
        Ok(self
            .rows
            .iter()
            .map(|&i| col.get(i).unwrap_or(f64::NAN))
            .collect())
    }

    fn table_err(&self, source: polars::error::PolarsError) -> Error {
        Error::Table {
            op: "read",
            path: self.path.clone(),
            source,
        }
    }
}

/// An input that was skipped, as `rejects.parquet` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reject {
    /// The sample the input would have given.
    pub sample_id: String,
    /// The file (or `file#index` for one entry of a bank).
    pub source: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The path of shard `index`, relative to the dataset directory.
pub fn shard_name(index: usize) -> String {
    format!("shards/shard-{index:05}.safetensors")
}

/// Test support: the test splits of all `folds` runs, together, name each of
/// the `total` samples exactly once.
#[cfg(test)]
pub(crate) fn assert_each_tested_once(mut tested: Vec<String>, total: usize, what: &str) {
    tested.sort();
    let n = tested.len();
    tested.dedup();
    assert_eq!((n, tested.len()), (total, total), "{what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_fractions_keep_their_layout() {
        let a = SplitFractions::new(0.1, 0.2).assign(10);
        use Split::*;
        assert_eq!(
            a,
            [Test, Test, Val, Train, Train, Train, Train, Train, Train, Train]
        );
        assert_eq!(SplitFractions::new(0.1, 0.2).sizes(10), (1, 2));
    }

    #[test]
    fn the_folds_test_every_sample_once_and_validate_outside_the_test_fold() {
        for n in [1, 7, 10, 523] {
            let k = 5;
            let mut tested = vec![0; n];
            for f in 0..k {
                let s = SplitFractions::fold(0.1, k, f);
                s.check().unwrap();
                let a = s.assign(n);
                let test = a.iter().filter(|&&x| x == Split::Test).count();
                let val = a.iter().filter(|&&x| x == Split::Val).count();
                // Folds differ in size by at most one sample.
                assert!(test == n / k || test == n / k + 1, "n {n} fold {f}: {test}");
                assert_eq!(val, ((n as f64 * 0.1).round() as usize).min(n - test));
                for (i, x) in a.iter().enumerate() {
                    if *x == Split::Test {
                        tested[i] += 1;
                    }
                }
            }
            assert!(tested.iter().all(|&t| t == 1), "n {n}: {tested:?}");
        }
    }

    #[test]
    fn inconsistent_fold_settings_are_refused_by_name() {
        let cases = [
            (SplitFractions::fold(0.1, 5, 5), "one of 0..5"),
            (SplitFractions::fold(0.1, 1, 0), "at least 2"),
            (SplitFractions::fold(0.9, 5, 0), "leave training samples"),
            (
                SplitFractions {
                    test: 0.2,
                    ..SplitFractions::fold(0.1, 5, 0)
                },
                "leave `test` (0.2) out",
            ),
            (
                SplitFractions {
                    fold: None,
                    ..SplitFractions::fold(0.1, 5, 0)
                },
                "needs `fold`",
            ),
            (
                SplitFractions {
                    folds: None,
                    ..SplitFractions::fold(0.1, 5, 0)
                },
                "needs `folds`",
            ),
        ];
        for (s, want) in cases {
            let e = s.check().unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
            // Unchecked, it still splits without panicking.
            assert_eq!(s.assign(9).len(), 9);
        }
    }
}
