use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The dataset could not be read.
    #[error(transparent)]
    Data(#[from] sciflow_ingest::Error),
    /// libtorch refused an operation; `context` says which.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The libtorch error.
        #[source]
        source: tch::TchError,
    },
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of ours (`model.json`, `history.json`, a checkpoint's
    /// position) that does not parse.
    #[error("{path}: not a valid {what}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should have held.
        what: &'static str,
        /// serde_json's error, with its line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A model directory or checkpoint that does not fit this run.
    #[error("{path}: {message}")]
    Model {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A configuration that cannot work with this dataset or model.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The CPU kernels a reproducibility mode asks for cannot be had.
    #[error("CPU kernels: {0}")]
    Kernels(String),
    /// The job's ranks could not be set up.
    #[error("distributed setup: {0}")]
    Dist(String),
    /// Stopped on request (the scheduler's warning before a time limit)
    /// after saving a checkpoint at global step `step` in `dir`.
    #[error(
        "stopped before the time limit at step {step}; checkpoint in {dir} (resume with --resume)"
    )]
    Preempted {
        /// The global step the checkpoint holds.
        step: usize,
        /// The checkpoint directory.
        dir: std::path::PathBuf,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> Error {
        let context = context.into();
        move |source| Error::Torch { context, source }
    }
}
