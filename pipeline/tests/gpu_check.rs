//! scripts/gpu-check.sh, dry-run on the CPU with tiny sizes, so the check a
//! GPU window depends on cannot rot: every section runs through the dev
//! build (the archive's two binaries) and the PyTorch side, and writes its
//! figures to `$OUT/results.txt`; a section that runs out of time is
//! reported and the next still runs.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{python, root, run_with_deadline};

/// The dev build's `pipeline` and `step_bench`, laid out as the release
/// archive's `bin/`.
fn binaries(dir: &Path) -> PathBuf {
    let pipeline = PathBuf::from(env!("CARGO_BIN_EXE_pipeline"));
    let step_bench = pipeline.parent().unwrap().join("examples/step_bench");
    assert!(
        step_bench.is_file(),
        "{} is missing: `cargo build --workspace --examples` (cargo test --workspace builds it)",
        step_bench.display()
    );
    let bin = dir.join("sciflow/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&pipeline, bin.join("pipeline")).unwrap();
    std::os::unix::fs::symlink(&step_bench, bin.join("step_bench")).unwrap();
    dir.join("sciflow")
}

/// The check run on the CPU with `env` added; its results file's lines.
fn gpu_check(dir: &Path, bundle: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/gpu-check.sh"))
        .env("DEVICE", "cpu")
        .env("PY", python())
        .env("TORCH_DIR", std::env::var("LIBTORCH").expect("LIBTORCH"))
        .env("SCIFLOW", dir.join("sciflow"))
        .env("BUNDLE", bundle)
        .env("WORK", dir.join("work"))
        .env("OUT", &out)
        .env("STEPS", "1")
        .env("WARMUP", "1")
        .env("EPOCHS", "1")
        .env("R50_ARGS", "--model resnet50 --size 32 --width 8 --batch 2")
        .env("XCEPTION_BATCH", "2")
        .env("WAVENET_BATCH", "2")
        .env("QUICKSTART_SET", "params.per_class=24 params.batch_size=8")
        .env("GALAXIES_SET", "params.batch_size=4 params.width=8")
        .env("AIGW_BATCH", "4")
        .envs(env.iter().copied());
    let run = run_with_deadline(cmd, Duration::from_secs(900));
    let text = std::fs::read_to_string(out.join("results.txt")).unwrap_or_default();
    common::assert_success(&run);
    eprint!("{text}");
    text.lines().map(String::from).collect()
}

/// `RESULT name value unit` lines as name -> value.
fn results(lines: &[String]) -> HashMap<String, f64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_gpu_check_runs_every_section_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    binaries(dir);
    // The bundle's inputs, made as for a GPU machine, from the committed
    // cutouts and a small generated bank.
    let bundle = dir.join("bundle");
    let made = Command::new("bash")
        .arg(root().join("scripts/device-bundle.sh"))
        .arg("--data-only")
        .arg(&bundle)
        .env("GZ1", root().join("data/gz1"))
        .env("BANK_N", "40")
        .output()
        .unwrap();
    common::assert_success(&made);

    let lines = gpu_check(dir, &bundle, &[]);
    let all = lines.join("\n");
    // Every section of the first part ran to its end.
    for section in [
        "env",
        "doctor",
        "r50_fp32",
        "r50_bf16",
        "quickstart",
        "galaxies",
        "aigw",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("SECTION {section} ok in"))),
            "{section}:\n{all}"
        );
    }
    let r = results(&lines);
    for name in [
        "doctor_gpus",
        "resnet50_fp32_ours",
        "resnet50_fp32_pytorch",
        "resnet50_fp32_ratio",
        "resnet50_bf16_ours",
        "resnet50_bf16_pytorch",
        "resnet50_bf16_ratio",
        "quickstart_seconds",
        "quickstart_train_seconds",
        "quickstart_test_accuracy",
        "galaxies_seconds",
        "galaxies_train_seconds",
        "galaxies_test_accuracy",
        "galaxies_test_auc",
        "galaxies_catalogue_inputs_per_second",
        "galaxies_catalogue_score_seconds",
        "aigw_seconds",
        "aigw_train_seconds",
        "aigw_mae_q",
        "aigw_mae_chi_eff",
        "gpu_check_seconds",
    ] {
        assert!(r.contains_key(name), "no figure {name}:\n{all}");
    }
    // Here, no GPU; the figures are what they say.
    assert_eq!(r["doctor_gpus"], 0.0, "{all}");
    assert!(r["resnet50_fp32_ours"] > 0.0 && r["resnet50_fp32_pytorch"] > 0.0);
    let ratio = r["resnet50_fp32_ours"] / r["resnet50_fp32_pytorch"];
    assert!(
        (r["resnet50_fp32_ratio"] / ratio - 1.0).abs() < 1e-3,
        "{all}"
    );
    assert!((0.0..=1.0).contains(&r["galaxies_test_auc"]), "{all}");

    // The second part, and a section cut by its limit: reported, and the
    // sections after it still run and keep their figures.
    let lines = gpu_check(
        dir,
        &bundle,
        &[
            ("ONLY", "quickstart r50_nchw xception wavenet"),
            // 8,000 galaxies to make: far more than a second's work.
            ("QUICKSTART_SET", "params.per_class=4000"),
            ("CAP_quickstart", "1"),
        ],
    );
    let all = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l == "SECTION quickstart timed out after 1 s"),
        "{all}"
    );
    let r = results(&lines);
    for name in [
        "resnet50_fp32_nchw_pytorch",
        "xception_ratio",
        "wavenet_ratio",
    ] {
        assert!(r.contains_key(name), "no figure {name}:\n{all}");
    }
    assert!(!r.contains_key("quickstart_seconds"), "{all}");
}
