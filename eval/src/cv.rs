//! `eval.cv_summary`: the figures of k runs (the folds of a cross-validation,
//! or seeds of one configuration) as mean, standard deviation and range.
//!
//! It reads each run's metrics JSON (`eval.classifier`'s or `eval.overlap`'s
//! `metrics.json`, or any JSON object), takes every number found in all of
//! them (nested objects give dotted names, such as `per_class.spiral.recall`;
//! lists are left out) and writes `cv.json`, which Python reads as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Configuration of `eval.cv_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvSummaryConfig {
    /// Each run's metrics file, or a directory holding `metrics.json` (a
    /// `foreach` stage's output in a list stands for all of its runs).
    pub runs: Vec<PathBuf>,
}

/// One figure over the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean over the runs.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for one run).
    pub std: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// Each run's value, in the order of `runs`.
    pub values: Vec<f64>,
}

impl Spread {
    fn of(values: Vec<f64>) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Spread {
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            values,
        }
    }
}

/// The contents of `cv.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvSummary {
    /// How many runs.
    pub runs: usize,
    /// The metrics files read, in order.
    pub sources: Vec<String>,
    /// Every number present in all runs, by (dotted) name.
    pub metrics: BTreeMap<String, Spread>,
}

/// Reads the runs' metrics, summarises them and writes `cv.json` into `out`.
pub fn cv_summary(config: &CvSummaryConfig, out: &Path) -> Result<CvSummary> {
    if config.runs.is_empty() {
        return Err(Error::Mismatch("eval.cv_summary: `runs` is empty".into()));
    }
    let mut sources = Vec::new();
    let mut per_run = Vec::new();
    for run in &config.runs {
        let path = if run.is_dir() {
            run.join("metrics.json")
        } else {
            run.clone()
        };
        let value: Value = crate::read_json(&path, "a metrics JSON object")?;
        if !value.is_object() {
            return Err(Error::Mismatch(format!(
                "{}: expected a JSON object of metrics",
                path.display()
            )));
        }
        let mut numbers = BTreeMap::new();
        flatten("", &value, &mut numbers);
        sources.push(path.display().to_string());
        per_run.push(numbers);
    }
    let mut metrics = BTreeMap::new();
    for name in per_run[0].keys() {
        let values: Option<Vec<f64>> = per_run.iter().map(|m| m.get(name).copied()).collect();
        if let Some(values) = values {
            metrics.insert(name.clone(), Spread::of(values));
        }
    }
    if metrics.is_empty() {
        return Err(Error::Mismatch(format!(
            "eval.cv_summary: no number is present in all {} runs ({})",
            per_run.len(),
            sources.join(", ")
        )));
    }
    let summary = CvSummary {
        runs: per_run.len(),
        sources,
        metrics,
    };
    let path = out.join("cv.json");
    let json = serde_json::to_vec_pretty(&summary).expect("a summary serialises");
    sciflow_ingest::files::write_atomic(&path, &json)?;
    Ok(summary)
}

/// Every finite number under `value`, by dotted path; lists are skipped
/// (confusion matrices, per-sample arrays), as are nulls and text.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                out.insert(prefix.to_string(), x);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, json: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn numbers_in_every_run_get_mean_and_sample_std() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.json",
            r#"{"accuracy": 0.90, "auc": 0.95, "per_class": {"spiral": {"recall": 0.8}}, "confusion": [[1, 2]], "split": "test", "only_here": 1}"#,
        );
        let b = write(
            dir.path(),
            "b.json",
            r#"{"accuracy": 0.94, "auc": null, "per_class": {"spiral": {"recall": 0.9}}, "confusion": [[3, 4]], "split": "test"}"#,
        );
        let sub = dir.path().join("c");
        std::fs::create_dir(&sub).unwrap();
        write(
            &sub,
            "metrics.json",
            r#"{"accuracy": 0.92, "auc": 0.97, "per_class": {"spiral": {"recall": 1.0}}}"#,
        );
        let out = tempfile::tempdir().unwrap();
        let cfg = CvSummaryConfig {
            runs: vec![a, b, sub],
        };
        let s = cv_summary(&cfg, out.path()).unwrap();
        assert_eq!(s.runs, 3);
        // auc is null in one run and only_here in one: neither is summarised.
        let names: Vec<&str> = s.metrics.keys().map(String::as_str).collect();
        assert_eq!(names, ["accuracy", "per_class.spiral.recall"]);
        let acc = &s.metrics["accuracy"];
        assert!((acc.mean - 0.92).abs() < 1e-12);
        assert!((acc.std - 0.02).abs() < 1e-12, "{}", acc.std);
        assert_eq!((acc.min, acc.max), (0.90, 0.94));
        assert_eq!(acc.values, [0.90, 0.94, 0.92]);
        let back: CvSummary =
            serde_json::from_slice(&std::fs::read(out.path().join("cv.json")).unwrap()).unwrap();
        // (serde_json parses floats to within an ulp, not always exactly.)
        assert_eq!((back.runs, &back.sources), (s.runs, &s.sources));
        assert_eq!(back.metrics["accuracy"].values, acc.values);
        assert!((back.metrics["accuracy"].mean - acc.mean).abs() < 1e-15);
    }

    #[test]
    fn a_missing_or_broken_run_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(dir.path(), "bad.json", "{\"accuracy\": 0.9,");
        let out = tempfile::tempdir().unwrap();
        let e = cv_summary(&CvSummaryConfig { runs: vec![bad] }, out.path()).unwrap_err();
        assert!(e.to_string().contains("bad.json"), "{e}");
        let gone = dir.path().join("gone.json");
        let e = cv_summary(&CvSummaryConfig { runs: vec![gone] }, out.path()).unwrap_err();
        assert!(e.to_string().contains("gone.json"), "{e}");
        let list = write(dir.path(), "list.json", "[0.9]");
        let e = cv_summary(&CvSummaryConfig { runs: vec![list] }, out.path()).unwrap_err();
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
        assert!(!out.path().join("cv.json").exists());
    }
}
