//! Writing files so that a reader never sees half of one: every output goes
//! to a temporary sibling first and is renamed into place. Used by every
//! writer here and by `sciflow-eval` and `sciflow-pipeline` for their reports.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{Error, Result};

/// Writes a table as Parquet under a temporary name and renames it into place.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    let table_err = |source| Error::Table {
        op: "write",
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::create(&tmp).map_err(|e| Error::io("failed to create", &tmp, e))?;
    ParquetWriter::new(f).finish(df).map_err(table_err)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("failed to rename into", path, e))
}

/// Writes `bytes` to a temporary sibling and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io("failed to write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("failed to rename into", path, e))
}
