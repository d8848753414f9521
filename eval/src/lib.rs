//! Evaluation of trained models: classification metrics, per-sample
//! predictions that Python reads as Parquet, and figures (PNG and SVG).
//!
//! Waveform overlaps, scaling analysis and reports build on the same pieces.
//! Like the other stage crates it knows nothing of workflows.

pub mod classifier;
pub mod cv;
pub mod figures;
pub mod infer;
pub mod metrics;
pub mod mistakes;
pub mod overlap;
pub mod paper;
pub mod perfmodel;
pub mod regressor;
pub mod whatif;

mod error;

pub use classifier::{evaluate_classifier, EvalClassifierConfig, EvalReport};
pub use error::{Error, Result};
pub use metrics::{classification_metrics, Metrics};

/// What an evaluation scores unless told otherwise: the held-out test split.
fn default_split() -> sciflow_ingest::Split {
    sciflow_ingest::Split::Test
}

/// Samples per forward pass unless told otherwise.
fn default_batch() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(128).expect("positive")
}

/// Reads and parses a JSON file; `what` names what it should hold in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &'static str,
) -> Result<T> {
    let text = std::fs::read(path).map_err(Error::io("failed to read", path))?;
    serde_json::from_slice(&text).map_err(|source| Error::Parse {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// Runs `f` on this thread with one libtorch thread, then restores the
/// count: results computed this way are the same bits however many cores
/// the process has.
pub(crate) fn one_thread<T>(f: impl FnOnce() -> T) -> T {
    let before = tch::get_num_threads();
    tch::set_num_threads(1);
    let out = f();
    tch::set_num_threads(before);
    out
}
