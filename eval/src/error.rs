use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong evaluating a model or drawing its figures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The dataset could not be read.
    #[error(transparent)]
    Data(#[from] sciflow_ingest::Error),
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] sciflow_train::Error),
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
    /// A table could not be read or written.
    #[error("failed to {op} table {path}: {source}")]
    Table {
        /// "read" or "write".
        op: &'static str,
        /// The Parquet file.
        path: PathBuf,
        /// The polars error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A JSON file (a run's report, a sidecar) that does not parse.
    #[error("{path}: not {what}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should have held.
        what: &'static str,
        /// serde_json's error, with its line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A figure could not be drawn or encoded.
    #[error("failed to draw {0}: {1}")]
    Figure(PathBuf, String),
    /// The model and the data do not fit together.
    #[error("{0}")]
    Mismatch(String),
}

impl Error {
    /// Wraps an I/O error with what was being done and on which path.
    pub(crate) fn io<'a>(
        op: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
