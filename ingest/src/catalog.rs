//! Label catalogues through polars: a CSV or Parquet table with one row per
//! image, at least an id, a class label and the image's path (relative to the
//! table's folder), as in a Galaxy Zoo cutout folder (`objid,label,image`).

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{Error, Result};

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    /// The sample id (e.g. the SDSS objid), unique within the table.
    pub id: String,
    /// The class name.
    pub label: String,
    /// The image file, resolved against the table's folder.
    pub image: PathBuf,
}

/// Column names accepted for the sample id, in order of preference.
const ID_COLUMNS: &[&str] = &["objid", "OBJID", "sample_id", "id"];

/// Reads `objid|sample_id|id`, `label` and `image` columns from a CSV or Parquet table.
///
/// All columns are read as text so 64-bit object ids keep every digit. Errors
/// name the file and the 1-based line (header = line 1) of the first bad row.
pub fn read_labels(path: &Path) -> Result<Vec<LabelRow>> {
    let table_err = |source| Error::Table {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let df = if is_parquet {
        let f = std::fs::File::open(path).map_err(|e| Error::io("failed to open", path, e))?;
        ParquetReader::new(f).finish().map_err(table_err)?
    } else {
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(table_err)?
    };
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let id_col = ID_COLUMNS
        .iter()
        .find(|c| names.iter().any(|n| n == *c))
        .ok_or_else(|| {
            Error::format(
                path,
                Some("header".into()),
                format!("expected an id column (one of {ID_COLUMNS:?}); found columns {names:?}"),
            )
        })?;
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        let col = df.column(name).map_err(|_| {
            Error::format(
                path,
                Some("header".into()),
                format!("expected a `{name}` column; found columns {names:?}"),
            )
        })?;
        let col = col.cast(&DataType::String).map_err(table_err)?;
        let ca = col.str().map_err(table_err)?;
        Ok(ca.iter().map(|v| v.map(|s| s.trim().to_string())).collect())
    };
    let ids = text(id_col)?;
    let labels = text("label")?;
    let images = text("image")?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::with_capacity(ids.len());
    let mut seen = std::collections::HashSet::new();
    for (i, ((id, label), image)) in ids.into_iter().zip(labels).zip(images).enumerate() {
        let line = Some(format!("line {}", i + 2));
        let (Some(id), Some(label), Some(image)) = (id, label, image) else {
            return Err(Error::format(path, line, "empty id, label or image"));
        };
        if id.is_empty() || label.is_empty() || image.is_empty() {
            return Err(Error::format(path, line, "empty id, label or image"));
        }
        if !seen.insert(id.clone()) {
            return Err(Error::format(path, line, format!("duplicate id {id}")));
        }
        rows.push(LabelRow {
            id,
            label,
            image: base.join(image),
        });
    }
    if rows.is_empty() {
        return Err(Error::format(path, None, "the table has no rows"));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_committed_galaxy_zoo_table_with_crlf_and_long_ids() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/gz1/labels.csv");
        let rows = read_labels(&p).unwrap();
        assert_eq!(rows.len(), 16);
        assert_eq!(rows[0].id, "587722952767439450");
        assert!(rows
            .iter()
            .all(|r| r.label == "spiral" || r.label == "elliptical"));
        assert!(
            rows.iter().all(|r| r.image.is_file()),
            "{:?}",
            rows[0].image
        );
    }

    #[test]
    fn missing_column_and_empty_cell_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "objid,label\n1,spiral\n").unwrap();
        let e = read_labels(&p).unwrap_err().to_string();
        assert!(e.contains("t.csv") && e.contains("`image`"), "{e}");

        std::fs::write(&p, "objid,label,image\n1,spiral,a.png\n2,,b.png\n").unwrap();
        let e = read_labels(&p).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");

        std::fs::write(&p, "objid,label,image\n1,spiral,a.png\n1,spiral,b.png\n").unwrap();
        let e = read_labels(&p).unwrap_err().to_string();
        assert!(e.contains("duplicate id 1"), "{e}");
    }
}
