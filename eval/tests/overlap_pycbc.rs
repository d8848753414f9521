//! Our overlap against `pycbc.filter.match` on pairs of bank waveforms at
//! several total masses, under a flat PSD, the analytic aLIGO design fit and a
//! tabulated PSD file: agreement to 1e-3 or better. The pairs and pycbc's
//! answers come from `overlap_cases.py`, run with the project's Python
//! (`PIPELINE_PYTHON`, with pycbc and lalsuite from scripts/setup.sh); without
//! it the test fails rather than passing unchecked.

use std::path::Path;
use std::process::Command;

use sciflow_eval::overlap::{aligo_design_psd, OverlapSettings, Overlapper, Psd, PsdCurve};
use serde_json::Value;

#[test]
fn overlap_agrees_with_pycbc_match() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = dir.path().join("cases.json");
    let python = std::env::var("PIPELINE_PYTHON")
        .expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first");
    let run = Command::new(python)
        .arg(root.join("eval/tests/overlap_cases.py"))
        .arg(root.join("data/waveforms/bank_tiny.h5"))
        .arg(&out)
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "overlap_cases.py failed (pycbc and lalsuite installed? run scripts/setup.sh):\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let spec: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let table = dir.path().join("psd.txt");
    let rows: String = spec["table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}\n", r[0], r[1]))
        .collect();
    std::fs::write(&table, rows).unwrap();
    let file_curve = Psd::File { path: table }.curve().unwrap();
    let mut o = Overlapper::default();
    let cases = spec["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 15);
    let series = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let mut worst: f64 = 0.0;
    for c in cases {
        let psd = match c["psd"].as_str().unwrap() {
            "flat" => PsdCurve::Flat,
            "aligo_design" => PsdCurve::AligoDesign,
            _ => file_curve.clone(),
        };
        let s = OverlapSettings {
            dt: c["dt"].as_f64().unwrap(),
            f_low: c["f_low"].as_f64().unwrap(),
            f_high: None,
            psd,
            // pycbc's match without subsample interpolation: lags on the samples.
            time_oversampling: 1,
        };
        let ours = o.overlap(&series(&c["a"]), &series(&c["b"]), &s);
        let theirs = c["match"].as_f64().unwrap();
        worst = worst.max((ours - theirs).abs());
        assert!(
            (ours - theirs).abs() < 1e-3,
            "{} PSD at {} Msun: ours {ours}, pycbc {theirs}",
            c["psd"],
            c["mass"]
        );
    }
    eprintln!("largest difference from pycbc: {worst:.2e}");
    // The fit follows LALSimulation's tabulated design curve to within a factor
    // of two over the band that matters.
    for p in spec["aligo"].as_array().unwrap() {
        let (f, lal) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        let r = aligo_design_psd(f) / lal;
        assert!((0.5..2.0).contains(&r), "{f} Hz: fit / LAL = {r}");
    }
}
