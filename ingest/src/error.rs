use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading inputs or writing and reading datasets.
///
/// Each variant names the file and, where there is one, the place in it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a file or directory.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("failed to read", "failed to create", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// cfitsio refused a file or an HDU.
    #[error("failed to read HDU {hdu} of {path}: {source}")]
    Fits {
        /// The FITS file.
        path: PathBuf,
        /// The HDU, by index or EXTNAME.
        hdu: String,
        /// The underlying cfitsio error.
        #[source]
        source: fitsio::errors::Error,
    },
    /// A JPEG or PNG that does not decode.
    #[error("failed to decode image {path}: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A table that polars could not read or write.
    #[error("failed to {op} table {path}: {source}")]
    Table {
        /// "read" or "write".
        op: &'static str,
        /// The CSV or Parquet file.
        path: PathBuf,
        /// The polars error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// An HDF5 file that libhdf5 could not read.
    #[error("failed to read {path} ({object}): {source}")]
    Hdf5 {
        /// The HDF5 file.
        path: PathBuf,
        /// The group, dataset or attribute.
        object: String,
        /// The libhdf5 error.
        #[source]
        source: hdf5::Error,
    },
    /// A file that was read but does not hold what the contract says.
    #[error("{path}{}: {message}", .location.as_ref().map(|l| format!(": {l}")).unwrap_or_default())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// Where in the file (a line, a column, an HDU, a tensor), when known.
        location: Option<String>,
        /// What was expected and what was found.
        message: String,
    },
    /// A JSON file of ours (`dataset.json`, a part file) that does not parse.
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
    /// Every input was rejected: there is nothing to write a dataset from.
    #[error(
        "no input could be read from {inputs} ({rejected} rejected); first reason: {first_reason}"
    )]
    NoInput {
        /// The inputs as configured.
        inputs: String,
        /// How many were rejected.
        rejected: usize,
        /// Why the first one was.
        first_reason: String,
    },
    /// A configuration value that cannot work, found before any I/O.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(
        path: impl Into<PathBuf>,
        location: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.into(),
            location,
            message: message.into(),
        }
    }
}
