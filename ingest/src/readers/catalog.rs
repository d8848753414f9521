//! Label catalogues through polars: a CSV or Parquet table with one row per
//! image. Two shapes are understood:
//!
//! - a cutout folder's table, `objid,label,image` (image paths relative to the
//!   table's folder), as in a Galaxy Zoo cutout folder;
//! - the Galaxy Zoo 1 release table (`OBJID, RA, DEC, ..., P_EL_DEBIASED,
//!   P_CS_DEBIASED, ...`, RA/Dec sexagesimal), whose labels come from the
//!   debiased vote fractions with a threshold ([`LabelRule::Gz1Debiased`]) and
//!   whose images are found through a path template such as
//!   `frames/{id}.fits`.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    /// The sample id (e.g. the SDSS objid), unique within the table.
    pub id: String,
    /// The class name.
    pub label: String,
    /// The image file, resolved against the table's folder (may still hold `{band}`).
    pub image: PathBuf,
    /// Right ascension in degrees, when the table has an `RA` column.
    pub ra: Option<f64>,
    /// Declination in degrees, when the table has a `DEC` column.
    pub dec: Option<f64>,
}

/// Where a row's class comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabelRule {
    /// The `label` column, as written.
    #[default]
    Column,
    /// Galaxy Zoo 1: `elliptical` when `P_EL_DEBIASED` > threshold, `spiral` when
    /// `P_CS_DEBIASED` > threshold, otherwise the row is left out (0.8 gives the
    /// "clean" sample, 0.95 "superclean"). The release's own SPIRAL/ELLIPTICAL
    /// flags are not used: they disagree with this rule for some rows.
    Gz1Debiased {
        /// Debiased vote fraction a class needs.
        threshold: f64,
    },
}

/// How to read a labels table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogOptions {
    /// The class rule.
    pub label_rule: LabelRule,
    /// Image path template relative to the table's folder, `{id}` replaced by
    /// the row's id; `None` reads the `image` column.
    pub image_path: Option<String>,
    /// Images to classify, not to learn from: no class is read (a `label`
    /// column, if any, is ignored) and every row is kept, with an empty label.
    pub unlabelled: bool,
}

/// The rows kept, and how many the label rule left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// Labelled rows, in table order.
    pub rows: Vec<LabelRow>,
    /// Rows with no class under the label rule (neither fraction above the threshold).
    pub left_out: usize,
}

/// Column names accepted for the sample id, in order of preference.
const ID_COLUMNS: &[&str] = &["objid", "OBJID", "sample_id", "id"];

/// Reads an `objid,label,image` table (see [`read_catalog`] for the rules).
pub fn read_labels(path: &Path) -> Result<Vec<LabelRow>> {
    read_catalog(path, &CatalogOptions::default()).map(|c| c.rows)
}

/// Reads a labels table from CSV or Parquet.
///
/// All columns are read as text so 64-bit object ids keep every digit. `RA`
/// and `DEC` (any case) are read when present, as decimal degrees or
/// sexagesimal (RA in hours). Errors name the file and the 1-based line
/// (header = line 1) of the first bad row.
pub fn read_catalog(path: &Path, opts: &CatalogOptions) -> Result<Catalog> {
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
        .map(|s| s.trim().to_string())
        .collect();
    let find = |wanted: &str| {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(wanted))
            .map(|i| df.get_column_names()[i].to_string())
    };
    let id_col = ID_COLUMNS
        .iter()
        .find_map(|c| names.iter().position(|n| n == c))
        .map(|i| df.get_column_names()[i].to_string())
        .ok_or_else(|| {
            Error::format(
                path,
                Some("header".into()),
                format!("expected an id column (one of {ID_COLUMNS:?}); found columns {names:?}"),
            )
        })?;
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        let col = find(name).and_then(|n| df.column(&n).ok()).ok_or_else(|| {
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
    let n = df.height();
    let ids = text(&id_col)?;
    let labels: Vec<Option<String>> = match &opts.label_rule {
        _ if opts.unlabelled => vec![Some(String::new()); n],
        LabelRule::Column => text("label")?,
        LabelRule::Gz1Debiased { threshold } => {
            if !(0.5..1.0).contains(threshold) {
                return Err(Error::Config(format!(
                    "gz1_debiased threshold must be in [0.5, 1) so a galaxy gets one class, got {threshold}"
                )));
            }
            let el = text("P_EL_DEBIASED")?;
            let cs = text("P_CS_DEBIASED")?;
            let mut out = Vec::with_capacity(n);
            for (i, (e, c)) in el.iter().zip(&cs).enumerate() {
                let num = |v: &Option<String>, col: &str| {
                    v.as_deref()
                        .and_then(|s| s.parse::<f64>().ok())
                        .ok_or_else(|| {
                            Error::format(
                                path,
                                Some(format!("line {}", i + 2)),
                                format!("{col} is not a number: {:?}", v.as_deref().unwrap_or("")),
                            )
                        })
                };
                let (e, c) = (num(e, "P_EL_DEBIASED")?, num(c, "P_CS_DEBIASED")?);
                out.push(if e > *threshold {
                    Some("elliptical".to_string())
                } else if c > *threshold {
                    Some("spiral".to_string())
                } else {
                    Some(String::new())
                });
            }
            out
        }
    };
    let images: Vec<Option<String>> = match &opts.image_path {
        Some(t) => ids
            .iter()
            .map(|id| id.as_ref().map(|id| t.replace("{id}", id)))
            .collect(),
        None => text("image")?,
    };
    let ra = find("ra").map(|_| text("ra")).transpose()?;
    let dec = find("dec").map(|_| text("dec")).transpose()?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::with_capacity(n);
    let mut left_out = 0;
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        let line = || Some(format!("line {}", i + 2));
        let (Some(id), Some(label), Some(image)) = (&ids[i], &labels[i], &images[i]) else {
            return Err(Error::format(path, line(), "empty id, label or image"));
        };
        if label.is_empty() && opts.label_rule != LabelRule::Column && !opts.unlabelled {
            left_out += 1;
            continue;
        }
        if id.is_empty() || (label.is_empty() && !opts.unlabelled) || image.is_empty() {
            return Err(Error::format(path, line(), "empty id, label or image"));
        }
        if !seen.insert(id.clone()) {
            return Err(Error::format(path, line(), format!("duplicate id {id}")));
        }
        let coord =
            |col: &Option<Vec<Option<String>>>, name: &str, parse: fn(&str) -> Option<f64>| {
                col.as_ref()
                    .map(|c| {
                        let v = c[i].as_deref().unwrap_or("");
                        parse(v).ok_or_else(|| {
                            Error::format(
                                path,
                                line(),
                                format!(
                                    "{name} {v:?} is not an angle (decimal degrees or sexagesimal)"
                                ),
                            )
                        })
                    })
                    .transpose()
            };
        rows.push(LabelRow {
            id: id.clone(),
            label: label.clone(),
            image: base.join(image),
            ra: coord(&ra, "RA", parse_ra)?,
            dec: coord(&dec, "DEC", parse_dec)?,
        });
    }
    if rows.is_empty() {
        return Err(Error::format(
            path,
            None,
            if opts.unlabelled {
                "the table has no rows".to_string()
            } else {
                format!("the table has no labelled rows ({left_out} left out by the label rule)")
            },
        ));
    }
    Ok(Catalog { rows, left_out })
}

/// Parses a right ascension: decimal degrees, or sexagesimal hours
/// (`hh:mm:ss.s` or `hh mm ss.s`).
pub fn parse_ra(text: &str) -> Option<f64> {
    parse_sexagesimal(text, 15.0).filter(|v| (0.0..360.0).contains(v))
}

/// Parses a declination: decimal degrees or sexagesimal degrees (`+dd:mm:ss.s`).
pub fn parse_dec(text: &str) -> Option<f64> {
    parse_sexagesimal(text, 1.0).filter(|v| (-90.0..=90.0).contains(v))
}

/// A decimal number as is, or `a:b:c` (or space-separated) times `unit`, with
/// the sign of the first field applying to the whole (so `-00:30:00` is -0.5).
fn parse_sexagesimal(text: &str, unit: f64) -> Option<f64> {
    let t = text.trim();
    let fields: Vec<&str> = t
        .split(|c: char| c == ':' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    match fields.as_slice() {
        [one] => one.parse::<f64>().ok().filter(|v| v.is_finite()),
        [h, m, s] => {
            let negative = h.starts_with('-');
            let h: f64 = h.trim_start_matches(['+', '-']).parse().ok()?;
            let m: f64 = m.parse().ok()?;
            let s: f64 = s.parse().ok()?;
            if !(0.0..60.0).contains(&m) || !(0.0..60.0).contains(&s) {
                return None;
            }
            let v = (h + m / 60.0 + s / 3600.0) * unit;
            Some(if negative { -v } else { v })
        }
        _ => None,
    }
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

    /// Rows in the Galaxy Zoo 1 release layout (values typed in the release's format).
    const GZ1: &str = "OBJID,RA,DEC,NVOTE,P_EL,P_CW,P_ACW,P_EDGE,P_DK,P_MG,P_CS,P_EL_DEBIASED,P_CS_DEBIASED,SPIRAL,ELLIPTICAL,UNCERTAIN
587727178986356823,00:00:00.41,-10:22:25.7,59,0.61,0.034,0.0,0.153,0.153,0.051,0.186,0.61,0.186,0,0,1
587727227300741210,00:00:00.74,-09:13:20.2,18,0.611,0.0,0.167,0.222,0.0,0.0,0.389,0.203,0.797,0,0,1
587727225153257596,00:00:01.03,-10:56:48.0,68,0.735,0.029,0.0,0.147,0.074,0.015,0.176,0.432,0.428,0,0,1
587730774962536596,00:00:01.38,+15:30:35.3,52,0.885,0.019,0.0,0.058,0.019,0.019,0.077,0.885,0.077,0,1,0
587731186203885750,00:00:01.55,-00:05:33.3,59,0.712,0.0,0.0,0.22,0.068,0.0,0.22,0.64,0.29,1,0,0
587727180060098638,00:00:01.85,-09:28:00.6,28,0.107,0.357,0.071,0.429,0.036,0.0,0.857,0.107,0.857,1,0,0
";

    #[test]
    fn galaxy_zoo_release_labels_come_from_debiased_fractions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("GalaxyZoo1_DR_table2.csv");
        std::fs::write(&p, GZ1).unwrap();
        let opts = |t| CatalogOptions {
            label_rule: LabelRule::Gz1Debiased { threshold: t },
            image_path: Some("frames/{id}.fits".into()),
            unlabelled: false,
        };
        let c = read_catalog(&p, &opts(0.8)).unwrap();
        // Row 4 (P_EL_DEBIASED 0.885) is elliptical, row 6 (P_CS_DEBIASED 0.857)
        // spiral; row 5 is flagged SPIRAL in the release but has no fraction above 0.8.
        let got: Vec<(&str, &str)> = c
            .rows
            .iter()
            .map(|r| (r.id.as_str(), r.label.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("587730774962536596", "elliptical"),
                ("587727180060098638", "spiral")
            ]
        );
        assert_eq!(c.left_out, 4);
        assert_eq!(
            c.rows[0].image,
            dir.path().join("frames/587730774962536596.fits")
        );
        let r = &c.rows[0];
        assert!((r.ra.unwrap() - 1.38 * 15.0 / 3600.0).abs() < 1e-12);
        assert!((r.dec.unwrap() - (15.0 + 30.0 / 60.0 + 35.3 / 3600.0)).abs() < 1e-12);
        let r = &c.rows[1];
        assert!((r.dec.unwrap() + (9.0 + 28.0 / 60.0 + 0.6 / 3600.0)).abs() < 1e-12);

        // A looser threshold takes row 2 (0.797) as spiral.
        assert_eq!(read_catalog(&p, &opts(0.75)).unwrap().rows.len(), 3);
        // A threshold that could give a galaxy both classes is refused.
        assert!(read_catalog(&p, &opts(0.4)).is_err());

        // A bad coordinate or fraction names the line.
        std::fs::write(&p, GZ1.replace("00:00:01.38", "00:61:01.38")).unwrap();
        let e = read_catalog(&p, &opts(0.8)).unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains("RA"), "{e}");
        std::fs::write(&p, GZ1.replace("0.885,0.077,0,1,0", "n/a,0.077,0,1,0")).unwrap();
        let e = read_catalog(&p, &opts(0.8)).unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains("P_EL_DEBIASED"), "{e}");
    }

    #[test]
    fn sexagesimal_coordinates() {
        assert!((parse_ra("00:00:00.41").unwrap() - 0.41 * 15.0 / 3600.0).abs() < 1e-12);
        assert!((parse_ra("12 30 00").unwrap() - 187.5).abs() < 1e-12);
        assert_eq!(parse_ra("187.5"), Some(187.5));
        assert!((parse_dec("-00:30:00").unwrap() + 0.5).abs() < 1e-12);
        assert!((parse_dec("+45:15:36.0").unwrap() - 45.26).abs() < 1e-12);
        assert_eq!(parse_ra("25:00:00"), None);
        assert_eq!(parse_dec("12:61:00"), None);
        assert_eq!(parse_dec("north"), None);
    }
}
