//! The waveform readers against files h5py writes and values scipy computes:
//! LVC NR files in the older knots/data layout (degree 5, bodies in either
//! order), broken LVC files, an SXS file with several extrapolation orders and
//! modes, and the committed LVC file (plus the shared ones when present), whose
//! ROM splines must evaluate as scipy's `UnivariateSpline(X, Y, k=deg, s=0)`.
//! Needs the project's Python (`PIPELINE_PYTHON`, with h5py and scipy from
//! scripts/setup.sh); without it the test fails rather than passing unchecked.

use std::path::{Path, PathBuf};
use std::process::Command;

use sciflow_ingest::readers::waveforms::{read_lvcnr, read_sxs};
use serde_json::Value;

#[test]
fn readers_agree_with_h5py_and_scipy() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut lvc: Vec<PathBuf> =
        vec![root.join("data/waveforms/lvcnr/PhenomTHM_q5.191_s+0.065_+0.465.h5")];
    let shared = root.join("../shared/data/waveforms/lvcnr");
    match std::fs::read_dir(&shared) {
        Ok(entries) => lvc.extend(entries.map(|e| e.unwrap().path())),
        Err(_) => eprintln!(
            "note: {} absent, checking committed files only",
            shared.display()
        ),
    }
    let python = std::env::var("PIPELINE_PYTHON")
        .expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first");
    let out = Command::new(python)
        .arg(root.join("ingest/tests/waveform_cases.py"))
        .arg(dir.path())
        .args(&lvc)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "waveform_cases.py failed (h5py and scipy installed? run scripts/setup.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cases.json")).unwrap()).unwrap();
    let cases = spec["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    let mut checked = 0;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let file = dir.path().join(c["file"].as_str().unwrap());
        let got = match c["reader"].as_str().unwrap() {
            "lvcnr" => read_lvcnr(&file, c["dt"].as_f64().unwrap()),
            _ => read_sxs(
                &file,
                c["order"].as_u64().unwrap() as u32,
                &dir.path().join(c["metadata"].as_str().unwrap()),
            ),
        };
        if let Some(want) = c["error"].as_str() {
            let e = got.expect_err(name).to_string();
            assert!(
                e.contains(want) && e.contains(c["file"].as_str().unwrap()),
                "{name}: {e}"
            );
            continue;
        }
        let w = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let params: Vec<f64> = c["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (g, p) in w.params.iter().zip(&params) {
            assert!(
                (g - p).abs() < 1e-12,
                "{name}: params {:?} vs {params:?}",
                w.params
            );
        }
        assert_eq!(
            w.time.len(),
            c["samples"].as_u64().unwrap() as usize,
            "{name}"
        );
        for ch in c["checks"].as_array().unwrap() {
            let i = ch["i"].as_u64().unwrap() as usize;
            let (t, a, p) = (
                ch["t"].as_f64().unwrap(),
                ch["amp"].as_f64().unwrap(),
                ch["phase"].as_f64().unwrap(),
            );
            assert!(
                (w.time[i] - t).abs() < 1e-6,
                "{name}[{i}]: t {} vs {t}",
                w.time[i]
            );
            assert!(
                (w.amp[i] - a).abs() <= 1e-9 * a.abs().max(1e-3),
                "{name}[{i}]: amp {} vs {a}",
                w.amp[i]
            );
            assert!(
                (w.phase[i] - p).abs() <= 1e-9 * p.abs().max(1.0),
                "{name}[{i}]: phase {} vs {p}",
                w.phase[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 120, "{checked} samples checked");
}

#[test]
fn the_generation_script_writes_a_bank_the_reader_takes() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("PIPELINE_PYTHON")
        .expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first");
    let gen = |seed: &str, out: &Path| {
        let run = Command::new(&python)
            .arg(root.join("data/make_bank.py"))
            .args(["--n", "6", "--seed", seed, "--workers", "2", "--out"])
            .arg(out)
            .output()
            .expect("python runs");
        assert!(
            run.status.success(),
            "make_bank.py failed (lalsuite installed? run scripts/setup.sh):\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        sciflow_ingest::readers::waveforms::read_bank(out).unwrap()
    };
    let a = gen("7", &dir.path().join("a.h5"));
    let b = gen("7", &dir.path().join("b.h5"));
    assert_eq!(a, b, "same seed, same bank");
    assert_eq!(a.len(), 6);
    assert_eq!(
        (a.time[0], *a.time.last().unwrap(), a.time.len()),
        (-4000.0, 100.0, 4101)
    );
    for p in &a.params {
        assert!(
            (1.0..=8.0).contains(&p[0]) && p[1].abs() <= 0.8 && p[2].abs() <= 0.8,
            "{p:?}"
        );
    }
    // Every waveform peaks at t = 0 (index 4000).
    for i in 0..a.len() {
        let amp = &a.amp[i * 4101..(i + 1) * 4101];
        let peak = amp
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .unwrap()
            .0;
        assert!(
            (peak as i64 - 4000).abs() <= 1,
            "waveform {i} peaks at index {peak}"
        );
    }
    let c = gen("8", &dir.path().join("c.h5"));
    assert_ne!(a.params, c.params);
}
