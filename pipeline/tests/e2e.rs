//! End-to-end tests: the `pipeline` binary on real workflow files, on one
//! process and under `mpirun -n 2`, and the outputs read back by Python.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, mpirun, pipeline, root, run_with_deadline};

/// A small version of the quickstart: fewer images and epochs.
fn small_quickstart(workdir: &Path) -> Vec<String> {
    vec![
        "run".into(),
        root()
            .join("workflows/quickstart.yaml")
            .to_string_lossy()
            .into(),
        "--set".into(),
        format!("workdir={}", workdir.display()),
        "--set".into(),
        "params.per_class=200".into(),
        "--set".into(),
        "params.epochs=6".into(),
        "--set".into(),
        "params.image_size=32".into(),
    ]
}

fn metrics(workdir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(workdir.join("evaluate/metrics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn quickstart_runs_end_to_end_and_python_reads_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let mut cmd = pipeline(&root());
    cmd.args(small_quickstart(&wd)).current_dir(dir.path());
    let out = run_with_deadline(cmd, Duration::from_secs(300));
    assert_success(&out);

    let ds = wd.join("dataset");
    for f in ["dataset.json", "manifest.parquet", "rejects.parquet"] {
        assert!(ds.join(f).is_file(), "{f}");
    }
    assert!(!wd.join(".tmp").exists(), "no scratch left behind");
    for f in ["weights.safetensors", "model.json", "history.json"] {
        assert!(wd.join("train").join(f).is_file(), "{f}");
    }
    let png = std::fs::read(wd.join("evaluate/summary.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(wd.join("evaluate/summary.svg").is_file());
    let m = metrics(&wd);
    let acc = m["accuracy"].as_f64().unwrap();
    // 80 test images, two balanced classes: chance is 0.5.
    assert!(acc > 0.8, "accuracy {acc}");
    assert_eq!(m["samples"], 80);
    // The surest mistakes, each wrong, surest first, as many as there are (up to 16).
    let wrong = ((1.0 - acc) * 80.0).round() as usize;
    let mistakes: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(wd.join("evaluate/mistakes.json")).unwrap()).unwrap();
    assert_eq!(mistakes.len(), wrong.min(16));
    assert!(mistakes
        .iter()
        .all(|x| x["true_class"] != x["predicted_class"]));
    assert!(mistakes
        .windows(2)
        .all(|w| w[0]["confidence"].as_f64() >= w[1]["confidence"].as_f64()));
    if wrong > 0 {
        let png = std::fs::read(wd.join("evaluate/mistakes.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    // The report draws the training curves: loss and accuracy, train and validation.
    let page = std::fs::read_to_string(wd.join("reports/run-1.html")).unwrap();
    let charts = &page[page
        .find("<div class=\"charts\" data-stage=\"train\">")
        .expect("no charts")..];
    let charts = &charts[..charts.find("</div>").unwrap()];
    assert_eq!(
        charts.matches("<svg").count(),
        2,
        "loss and accuracy charts"
    );
    assert!(charts.contains("val_loss") && charts.contains("train_accuracy"));

    // Python reads every output with no code of ours.
    // Set by scripts/setup.sh through .cargo/config.toml; a missing interpreter is a
    // failure, not a skip.
    let python = std::env::var("PIPELINE_PYTHON")
        .expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first");
    let script = root().join("pipeline/tests/read_outputs.py");
    let out = Command::new(python).arg(&script).arg(&wd).output().unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn two_mpi_ranks_share_the_work_and_match_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let mut cmd = pipeline(&root());
    cmd.args(small_quickstart(&one)).current_dir(dir.path());
    assert_success(&run_with_deadline(cmd, Duration::from_secs(300)));

    let mut cmd = mpirun(2);
    cmd.arg(env!("CARGO_BIN_EXE_pipeline"))
        .args(small_quickstart(&two))
        .current_dir(dir.path());
    let out = run_with_deadline(cmd, Duration::from_secs(300));
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 rank(s)"), "{stderr}");

    // Rank 0 decides and broadcasts: a second 2-rank run finds everything up to date.
    let mut cmd = mpirun(2);
    cmd.arg(env!("CARGO_BIN_EXE_pipeline"))
        .args(small_quickstart(&two))
        .current_dir(dir.path());
    let again = run_with_deadline(cmd, Duration::from_secs(120));
    assert_success(&again);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("0 stage(s) run, 4 up to date"), "{stderr}");

    // Ingest is independent of the world size: identical shards.
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("dataset/dataset.json")).unwrap()).unwrap();
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(two.join("dataset/dataset.json")).unwrap()).unwrap();
    assert_eq!(a["shards"], b["shards"]);
    let hist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(two.join("train/history.json")).unwrap()).unwrap();
    assert_eq!(hist["world_size"], 2);
    let (acc1, acc2) = (
        metrics(&one)["accuracy"].as_f64().unwrap(),
        metrics(&two)["accuracy"].as_f64().unwrap(),
    );
    assert!(acc2 > 0.8, "2-rank accuracy {acc2}");
    assert!((acc1 - acc2).abs() < 0.2, "1 rank {acc1}, 2 ranks {acc2}");
}

#[test]
fn a_failing_rank_ends_the_job_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let mut cmd = pipeline(&root());
    cmd.args(small_quickstart(&wd))
        .args(["--set", "params.epochs=1"])
        .current_dir(dir.path());
    assert_success(&run_with_deadline(cmd, Duration::from_secs(300)));

    // Corrupt one training shard: whichever rank is dealt it fails, the other must not hang.
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("dataset/dataset.json")).unwrap()).unwrap();
    let victim = info["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["split"] == "train")
        .unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(wd.join("dataset").join(&victim), b"not a shard").unwrap();
    let wf = dir.path().join("train-only.yaml");
    std::fs::write(
        &wf,
        format!(
            "version: 1\nname: t\nworkdir: {}\nstages:\n  train:\n    uses: train.classifier\n    with:\n      data: {}\n      epochs: 2\n      batch_size: 8\n",
            dir.path().join("wd2").display(),
            wd.join("dataset").display()
        ),
    )
    .unwrap();
    let mut cmd = mpirun(2);
    cmd.arg(env!("CARGO_BIN_EXE_pipeline"))
        .arg("run")
        .arg(&wf)
        .current_dir(dir.path());
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stage `train` failed on rank"), "{stderr}");
    assert!(stderr.contains(&victim), "{stderr}");
    assert!(
        !dir.path().join("wd2/train").exists(),
        "no output under the stage's name"
    );
}

#[test]
fn a_bad_workflow_names_file_line_and_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("workflows/quickstart.yaml"))
        .unwrap()
        .replace("lr: 0.002", "lr: 0.002\n      epoch: 3")
        .replace("uses: eval.classifier", "uses: eval.classifer");
    let wf = dir.path().join("bad.yaml");
    std::fs::write(&wf, &text).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for sub in ["validate", "run"] {
        let out = pipeline(&root())
            .arg(sub)
            .arg(&wf)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expect_key = format!(
            "bad.yaml:{}:7: stages.train.with.epoch: unknown field `epoch`",
            line_of("epoch: 3")
        );
        let expect_kind = format!(
            "bad.yaml:{}:11: stages.evaluate.uses: unknown stage kind",
            line_of("eval.classifer")
        );
        assert!(stderr.contains(&expect_key), "{sub}: {stderr}");
        assert!(stderr.contains(&expect_kind), "{sub}: {stderr}");
    }
    assert!(!dir.path().join("runs").exists(), "nothing ran");
}

/// k-fold cross-validation within one workflow: a `foreach` over folds for
/// the dataset, training and evaluation, chained fold by fold, and
/// `eval.cv_summary` over the evaluations.
#[test]
fn three_fold_cross_validation_tests_every_sample_once_and_summarises_the_folds() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let wf = dir.path().join("cv.yaml");
    std::fs::write(
        &wf,
        format!(
            r#"version: 1
name: cv-small
workdir: {}
seed: 7
params:
  folds: [0, 1, 2]
stages:
  galaxies:
    uses: ingest.synthetic_galaxies
    with: {{ count_per_class: 30, size: 32, noise: 0.15, psf_fwhm: 2.0 }}
  dataset:
    uses: ingest.galaxy_images
    foreach: {{ fold: "${{params.folds}}" }}
    with:
      labels: ${{galaxies.labels}}
      size: 16
      split: {{ val: 0.2, folds: 3, fold: "${{each.fold}}" }}
      shard_size: 8
  train:
    uses: train.classifier
    foreach: {{ fold: "${{params.folds}}" }}
    with:
      data: ${{dataset-${{each.fold}}.dataset}}
      model: {{ arch: small_cnn, width: 4 }}
      epochs: 1
  evaluate:
    uses: eval.classifier
    foreach: {{ fold: "${{params.folds}}" }}
    with:
      model: ${{train-${{each.fold}}.model}}
      data: ${{dataset-${{each.fold}}.dataset}}
  summary:
    uses: eval.cv_summary
    with: {{ runs: ["${{evaluate.metrics}}"] }}
"#,
            wd.display()
        ),
    )
    .unwrap();
    let mut cmd = pipeline(&root());
    cmd.arg("-q").arg("run").arg(&wf).current_dir(dir.path());
    assert_success(&run_with_deadline(cmd, Duration::from_secs(300)));

    let mut tested = Vec::new();
    let mut accuracies = Vec::new();
    for k in 0..3 {
        let ds = wd.join(format!("dataset-{k}"));
        let test = sciflow_ingest::contract::SplitManifest::read(&ds, sciflow_ingest::Split::Test)
            .unwrap();
        let ids = test.strings("sample_id").unwrap();
        assert_eq!(ids.len(), 20, "fold {k}: a third of 60");
        tested.extend(ids);
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(wd.join(format!("evaluate-{k}/metrics.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(m["samples"], 20);
        accuracies.push(m["accuracy"].as_f64().unwrap());
    }
    tested.sort();
    tested.dedup();
    assert_eq!(tested.len(), 60, "the folds' test splits are disjoint");

    let cv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(wd.join("summary/cv.json")).unwrap())
            .unwrap();
    assert_eq!(cv["runs"], 3);
    let acc = &cv["metrics"]["accuracy"];
    let mean = accuracies.iter().sum::<f64>() / 3.0;
    assert!(
        (acc["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
        "{acc}"
    );
    let values: Vec<f64> = serde_json::from_value(acc["values"].clone()).unwrap();
    assert_eq!(values, accuracies);
}

#[test]
fn every_shipped_workflow_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("workflows")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let out = pipeline(&root())
                .arg("validate")
                .arg(&path)
                .output()
                .unwrap();
            assert_success(&out);
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn the_waveform_workflow_runs_end_to_end_small() {
    // The whole AI-GW chain at toy size: lalsuite generation, dataset, a tiny
    // WaveNet for one epoch, predictions, regeneration, overlaps and figures.
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let python = std::env::var("PIPELINE_PYTHON")
        .expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first");
    let run_small = |extra: &[&str]| {
        let mut cmd = pipeline(&root());
        cmd.current_dir(root())
            .args([
                "run",
                "workflows/waveforms.yaml",
                "--set",
                &format!("workdir={}", wd.display()),
                "--set",
                &format!("params.python={python}"),
                "--set",
                "params.n_waveforms=60",
                "--set",
                "params.epochs=1",
                "--set",
                "params.dt=8",
            ])
            .args(extra);
        assert_success(&run_with_deadline(cmd, Duration::from_secs(300)));
    };
    run_small(&[]);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("overlap/metrics.json")).unwrap()).unwrap();
    let (median, p05) = (
        m["median_overlap"].as_f64().unwrap(),
        m["p05_overlap"].as_f64().unwrap(),
    );
    assert!(0.0 < p05 && p05 <= median && median <= 1.0, "{m}");
    assert_eq!(m["samples"], 6);
    assert!(m["errors"]["q"]["mae"].as_f64().unwrap() >= 0.0);
    let png = std::fs::read(wd.join("overlap/overlaps.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The inference stage catalogued the repository's LVC NR file.
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("infer/catalogue.json")).unwrap()).unwrap();
    assert_eq!(
        (&c["catalogued"], &c["rejected"]),
        (&1.into(), &0.into()),
        "{c}"
    );
    // The regenerated bank holds the predicted parameters, clipped to physical values.
    let bank =
        sciflow_ingest::readers::waveforms::read_bank(&wd.join("regenerate/bank.h5")).unwrap();
    assert_eq!(bank.len(), 6);
    assert!(bank
        .params
        .iter()
        .all(|p| p[0] >= 1.0 && p[1].abs() < 1.0 && p[2].abs() < 1.0));
    // An independent numpy computation of the same overlaps, from the
    // generated bank rather than the dataset's shards, agrees with the stage's.
    let out = Command::new(&python)
        .arg(root().join("bench/waveform_errors.py"))
        .arg(&wd)
        .args(["--python-overlap", "6"])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let diff: f64 = text
        .lines()
        .find_map(|l| l.split("largest difference from eval.overlap ").nth(1))
        .unwrap_or_else(|| panic!("no comparison in {text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(diff < 1e-3, "{text}");

    // Scored on other files (the LVC NR waveform in data/): the stage
    // ingests them into its own directory and `overlap` finds them there.
    run_small(&["--set", "params.eval_data=data/waveforms/lvcnr"]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("predict/metrics.json")).unwrap()).unwrap();
    assert_eq!(report["data"], "data", "{report}");
    assert!(wd.join("predict/data/dataset.json").is_file());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("overlap/metrics.json")).unwrap()).unwrap();
    let lvc_files = std::fs::read_dir(root().join("data/waveforms/lvcnr"))
        .unwrap()
        .count();
    assert_eq!(m["samples"], lvc_files, "{m}");
    assert!(
        m["median_overlap"]
            .as_f64()
            .is_some_and(|o| 0.0 < o && o <= 1.0),
        "{m}"
    );
}

/// A workflow that trains a small classifier for `epochs` epochs, with
/// `extra` lines added to the training stage's `with:` block.
fn small_training_workflow(dir: &Path, epochs: usize, extra: &str) -> PathBuf {
    let wf = dir.join("small.yaml");
    std::fs::write(
        &wf,
        format!(
            "version: 1\nname: small\nworkdir: wd\nseed: 5\nstages:\n\
             \x20 galaxies:\n    uses: ingest.synthetic_galaxies\n    with: {{ count_per_class: 400, size: 32 }}\n\
             \x20 dataset:\n    uses: ingest.galaxy_images\n    with: {{ labels: \"${{galaxies.labels}}\", size: 32, shard_size: 16 }}\n\
             \x20 train:\n    uses: train.classifier\n    with:\n      data: ${{dataset.dataset}}\n\
             \x20     model: {{ arch: small_cnn, width: 8 }}\n      epochs: {epochs}\n      batch_size: 16\n\
             \x20     pad: true\n{extra}"
        ),
    )
    .unwrap();
    wf
}

/// The training stage with a checkpoint every 4 steps.
fn checkpointed_workflow(dir: &Path) -> PathBuf {
    small_training_workflow(dir, 8, "      checkpoint_every: 4\n")
}

#[test]
fn gradient_buckets_give_the_same_weights_as_one_fused_buffer_on_two_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let weights = |bucket_mb: &str| {
        let d = dir.path().join(bucket_mb);
        std::fs::create_dir_all(&d).unwrap();
        let wf =
            small_training_workflow(&d, 2, &format!("      allreduce_bucket_mb: {bucket_mb}\n"));
        let mut cmd = mpirun(2);
        cmd.arg(env!("CARGO_BIN_EXE_pipeline"))
            .arg("run")
            .arg(&wf)
            .current_dir(&d);
        assert_success(&run_with_deadline(cmd, Duration::from_secs(300)));
        std::fs::read(d.join("wd/train/weights.safetensors")).unwrap()
    };
    // The small CNN has ~10k parameters: 0.004 MiB buckets hold ~1,000 values.
    let fused = weights("0");
    let bucketed = weights("0.004");
    assert!(fused == bucketed, "bucketed averaging changed the weights");
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_bit_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let wf_a = checkpointed_workflow(&a);
    let wf_b = checkpointed_workflow(&b);

    // Uninterrupted.
    let mut cmd = pipeline(&root());
    cmd.arg("run").arg(&wf_a).current_dir(&a);
    assert_success(&run_with_deadline(cmd, Duration::from_secs(300)));
    assert!(
        !a.join("wd/.checkpoints").exists(),
        "a finished stage leaves no checkpoint"
    );

    // Killed (SIGKILL) once a mid-epoch checkpoint after the first epoch exists.
    let mut child = pipeline(&root())
        .args(["run", "-q"])
        .arg(&wf_b)
        .current_dir(&b)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let position = b.join("wd/.checkpoints/train/current/position.json");
    let start = Instant::now();
    let killed_at = loop {
        if let Some(p) = std::fs::read(&position)
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        {
            if p["epoch"].as_u64() >= Some(1) && p["step"].as_u64() > Some(0) {
                child.kill().unwrap();
                child.wait().unwrap();
                break p;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        !b.join("wd/train").exists(),
        "a killed stage must not leave an output that looks complete"
    );

    // Resumed: continues from the checkpoint, ends identical to the uninterrupted run.
    let mut cmd = pipeline(&root());
    cmd.args(["run", "--resume"]).arg(&wf_b).current_dir(&b);
    let out = run_with_deadline(cmd, Duration::from_secs(300));
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming from"), "{stderr}");
    assert!(
        stderr.contains("galaxies: up to date"),
        "upstream stages are not redone: {stderr}"
    );
    let weights = |d: &Path| std::fs::read(d.join("wd/train/weights.safetensors")).unwrap();
    assert!(
        weights(&a) == weights(&b),
        "resumed weights differ from the uninterrupted run's (killed at {killed_at})"
    );
    let losses = |d: &Path| -> Vec<serde_json::Value> {
        let h: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("wd/train/history.json")).unwrap())
                .unwrap();
        h["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| serde_json::json!([e["train_loss"], e["val_loss"], e["lr"]]))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(losses(&a).len(), 8);
}

#[test]
fn the_waveform_regressor_trains_on_two_ranks() {
    // The WaveNet's last residual convolution gets no gradient; the fused
    // allreduce must leave such parameters out on every rank alike.
    let dir = tempfile::tempdir().unwrap();
    let data = root().join("data/waveforms");
    let wf = dir.path().join("reg.yaml");
    std::fs::write(
        &wf,
        format!(
            "version: 1\nname: reg\nworkdir: wd\nseed: 3\nstages:\n\
             \x20 dataset:\n    uses: ingest.waveforms\n    with:\n      inputs: [{}, {}]\n\
             \x20     dt: 8\n      window: [-2000, 60]\n      split: {{ val: 0.0, test: 0.0 }}\n      shard_size: 1\n\
             \x20 train:\n    uses: train.regressor\n    with:\n      data: ${{dataset.dataset}}\n\
             \x20     model: {{ channels: 4, skip_channels: 4, layers: 3, stacks: 1, input_stride: 2 }}\n\
             \x20     epochs: 2\n      batch_size: 1\n",
            data.join("bank_tiny.h5").display(),
            data.join("lvcnr").display()
        ),
    )
    .unwrap();
    let mut cmd = mpirun(2);
    cmd.arg(env!("CARGO_BIN_EXE_pipeline"))
        .arg("run")
        .arg(&wf)
        .current_dir(dir.path());
    let out = run_with_deadline(cmd, Duration::from_secs(300));
    assert_success(&out);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("wd/train/model.json")).unwrap())
            .unwrap();
    assert_eq!(model["world_size"], 2);
}

#[test]
fn the_paper_figures_workflow_draws_figures_1_to_5_and_a_report_a_browser_renders() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    // Started elsewhere than the checkout, with the workflow's path: its
    // sweeps run this executable and find their files beside the workflow.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let file = root().join("workflows/paper-figures.yaml");
    let args = |cmd: &mut Command| {
        cmd.current_dir(&elsewhere).arg("run").arg(&file).args([
            "--set",
            &format!("workdir={}", wd.display()),
            "--set",
            "params.images=64",
            "--set",
            "params.size=32",
            "--set",
            "params.waveforms=128",
        ]);
    };
    let mut cmd = pipeline(&elsewhere);
    args(&mut cmd);
    assert_success(&run_with_deadline(cmd, Duration::from_secs(600)));
    let sidecar = |fig: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(wd.join(fig).join("figure.json")).unwrap()).unwrap()
    };
    for fig in ["figure1", "figure2", "figure3", "figure4", "figure5"] {
        for f in ["figure.png", "figure.svg", "figure.json"] {
            assert!(wd.join(fig).join(f).is_file(), "{fig}/{f}");
        }
        // Both rank counts measured, in order, with positive values.
        let s = sidecar(fig);
        let measured = s["measured"].as_array().unwrap();
        assert_eq!(measured.len(), 2, "{fig}: {s}");
        assert_eq!(
            (measured[0][0].as_u64(), measured[1][0].as_u64()),
            (Some(1), Some(2)),
            "{fig}"
        );
        assert!(
            measured.iter().all(|m| m[1].as_f64().unwrap() > 0.0),
            "{fig}"
        );
        // The figure files name what made them.
        let png = std::fs::read(wd.join(fig).join("figure.png")).unwrap();
        let has = |needle: &[u8]| png.windows(needle.len()).any(|w| w == needle);
        assert!(
            has(b"sciflow:data_blake3")
                && has(b"sciflow:config_blake3")
                && has(b"sciflow:executable_blake3"),
            "{fig}"
        );
        let svg = std::fs::read_to_string(wd.join(fig).join("figure.svg")).unwrap();
        assert!(svg.contains("<metadata id=\"provenance\">"), "{fig}");
        // The experiment's own model, with its residuals drawn, and every
        // published point marked fitted or predicted.
        assert!(
            svg.contains("Own model vs published"),
            "{fig}: no residual panel"
        );
        let checks = s["validation"]["checks"].as_array().unwrap();
        for p in s["published"].as_array().unwrap() {
            assert!(
                checks
                    .iter()
                    .any(|c| c["gpus"] == p[0] && c["published"] == p[1]),
                "{fig}: published {p} is not checked"
            );
        }
        assert!(
            checks
                .iter()
                .all(|c| c["role"] == "fitted" || c["role"] == "predicted"),
            "{fig}"
        );
    }
    // The point no HAL fit reaches says why on its figure.
    let fig3 = std::fs::read_to_string(wd.join("figure3/figure.svg")).unwrap();
    assert!(
        fig3.contains("3.4x what the HAL fit gives"),
        "figure 3 does not say why"
    );
    // The published numbers, exactly as published.
    assert_eq!(
        sidecar("figure1")["published"][5],
        serde_json::json!([64, 518.0])
    );
    let published = |fig: &str| sidecar(fig)["published"].clone();
    assert_eq!(
        published("figure2"),
        serde_json::json!([[1, 754.0], [64, 12.4]])
    );
    assert_eq!(published("figure3"), serde_json::json!([[72, 38.0]]));
    assert_eq!(
        published("figure4"),
        serde_json::json!([[1, 2.1], [64, 2.7 / 60.0]])
    );
    assert_eq!(published("figure5"), serde_json::json!([[1536, 1.2]]));
    // A prediction at every published count the model does not start from.
    for (fig, gpus) in [
        ("figure2", 64),
        ("figure3", 72),
        ("figure4", 64),
        ("figure5", 1536),
    ] {
        let c = &sidecar(fig)["comparisons"];
        assert_eq!(c.as_array().unwrap().len(), 1, "{fig}: {c}");
        assert_eq!(c[0]["gpus"], gpus, "{fig}");
        let p = c[0]["predicted"].as_f64().unwrap();
        assert!(p.is_finite() && p > 0.0, "{fig}: {c}");
    }
    // AI-DES is modelled with the published network, given in the workflow.
    assert_eq!(
        sidecar("figure4")["inputs"]["step"]["gradient_bytes"],
        serde_json::json!(4.0 * 20_800_000.0)
    );

    // The report: a page a browser renders with every figure decoded.
    let report = wd.join("reports/run-1.html");
    assert!(report.is_file(), "no report");
    let dom = render_in_chromium(&report);
    assert!(
        dom.contains("data-figures=\"5\" data-figures-decoded=\"5\""),
        "{}",
        &dom[..dom.len().min(2000)]
    );
    let rows = |kind: &str| {
        dom.matches(&format!("<td><code>{kind}@1</code></td>"))
            .count()
    };
    assert_eq!(
        (
            rows("workflow"),
            rows("eval.scaling_figure"),
            rows("ingest.synthetic_galaxies")
        ),
        (6, 5, 1),
        "one row per stage"
    );
    for id in [
        "id=\"run\"",
        "id=\"stages\"",
        "id=\"provenance\"",
        "id=\"resolved\"",
    ] {
        assert!(dom.contains(id), "no {id}");
    }
    assert!(dom.contains("model_relative_error"), "metrics missing");
    // The stage graph as a drawing (a box per stage), the resolved workflow
    // as YAML, and a page of reasonable length.
    let dag = &dom[dom.find("id=\"dag\"").expect("no stage graph")..];
    let dag = &dag[..dag.find("</svg>").unwrap()];
    assert_eq!(dag.matches("<rect").count(), 12, "one box per stage");
    assert!(
        dom.contains("name: paper-figures"),
        "resolved workflow not YAML"
    );
    let height: usize = dom
        .split("data-height=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|h| h.parse().ok())
        .expect("the page reports its height");
    assert!((1000..40_000).contains(&height), "page {height} px tall");

    // Nothing changed: nothing runs.
    let mut cmd = pipeline(&elsewhere);
    args(&mut cmd);
    let again = run_with_deadline(cmd, Duration::from_secs(60));
    assert_success(&again);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("0 stage(s) run, 12 up to date"), "{stderr}");
    // `pipeline report` rewrites a past run's page on demand.
    let out = dir.path().join("again.html");
    let mut cmd = pipeline(&root());
    cmd.args(["report", "--run", "1", "-o"])
        .arg(&out)
        .arg("-w")
        .arg(&wd);
    assert_success(&run_with_deadline(cmd, Duration::from_secs(60)));
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("Run 1 of workflow paper-figures"));
}

/// The DOM of `page` after headless Chromium loaded it and ran its scripts.
fn render_in_chromium(page: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            // Containers and CI run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (scripts/setup.sh installs Debian's package)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The dtype of every tensor in a safetensors file, from its JSON header.
fn safetensors_dtypes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["dtype"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bf16_training_learns_and_keeps_fp32_weights() {
    // bf16 autocast runs on the CPU too, so the path a GPU takes is
    // exercised here: the loss falls and the saved weights stay fp32.
    let dir = tempfile::tempdir().unwrap();
    let wf = small_training_workflow(dir.path(), 4, "      precision: bf16\n      lr: 0.01\n");
    let mut cmd = pipeline(&root());
    cmd.arg("run").arg(&wf).current_dir(dir.path());
    assert_success(&run_with_deadline(cmd, Duration::from_secs(300)));
    let h: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("wd/train/history.json")).unwrap())
            .unwrap();
    let losses: Vec<f64> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["train_loss"].as_f64().unwrap())
        .collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[3] < losses[0], "the loss falls: {losses:?}");
    let dtypes = safetensors_dtypes(&dir.path().join("wd/train/weights.safetensors"));
    assert!(
        !dtypes.is_empty() && dtypes.iter().all(|d| d == "F32"),
        "{dtypes:?}"
    );
}
