//! Inference stages end to end: catalogues of unlabelled images and
//! waveforms that come out the same on one rank and two, and after a run
//! stopped by SIGUSR1 or killed with SIGKILL is resumed; unreadable inputs
//! as reject rows naming them; and the trained models' TorchScript modules
//! loaded by PyTorch itself, giving our outputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, mpirun, pipeline, python, root, run_with_deadline};

/// A workflow that trains a tiny classifier on the repository's 16 SDSS
/// cutouts and a tiny regressor on its 5 waveforms, then catalogues
/// `inputs.csv` (JPEG rows, 20 copies of each cutout, with a missing and a
/// truncated file), `frames.csv` (stamps of a FITS frame, one outside it)
/// and the waveforms with a file that holds none.
fn workflow(dir: &Path, copies: usize) -> PathBuf {
    let data = root().join("data");
    let gz1 = data.join("gz1/images");
    let mut rows = String::from("objid,image\n");
    let mut names: Vec<_> = std::fs::read_dir(&gz1)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for copy in 0..copies {
        for (i, p) in names.iter().enumerate() {
            rows += &format!("{copy}{i:03},{}\n", p.display());
        }
    }
    let jpeg = std::fs::read(&names[0]).unwrap();
    std::fs::write(dir.join("truncated.jpeg"), &jpeg[..jpeg.len() / 3]).unwrap();
    rows += &format!("missing,{}\n", dir.join("missing.jpeg").display());
    rows += &format!("truncated,{}\n", dir.join("truncated.jpeg").display());
    std::fs::write(dir.join("inputs.csv"), rows).unwrap();
    // The frame is 101 px around RA 280.838, Dec 0.390.
    let frame = data.join("fits/cfht_megaprime_sa110.fits");
    std::fs::write(
        dir.join("frames.csv"),
        format!(
            "objid,image,ra,dec\ninside,{f},280.8382,0.3902\noutside,{f},281.5,0.3902\n",
            f = frame.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("bad.h5"), b"not HDF5").unwrap();
    let wf = dir.join("infer.yaml");
    std::fs::write(
        &wf,
        format!(
            r#"version: 1
name: infer
workdir: wd
seed: 3
stages:
  data:
    uses: ingest.galaxy_images
    with: {{ labels: "{labels}", size: 32, crop: 0.5, channels: 1, split: {{ val: 0.25, test: 0.25 }}, shard_size: 8 }}
  train:
    uses: train.classifier
    with: {{ data: "${{data.dataset}}", model: {{ arch: small_cnn, width: 4 }}, epochs: 1, batch_size: 4, device: cpu }}
  cat_jpeg:
    uses: infer.classifier
    with: {{ model: "${{train.model}}", data: "${{data.dataset}}", inputs: "{dir}/inputs.csv", chunk_size: 4, batch_size: 3, tta: true, decision: val_threshold, device: cpu }}
  cat_fits:
    uses: infer.classifier
    with: {{ model: "${{train.model}}", data: "${{data.dataset}}", inputs: "{dir}/frames.csv", read: {{ cutout: 48 }}, device: cpu }}
  wdata:
    uses: ingest.waveforms
    with: {{ inputs: ["{bank}", "{lvcnr}"], dt: 8.0, window: [-4000, 100], split: {{ val: 0.2, test: 0.2 }} }}
  wtrain:
    uses: train.regressor
    with: {{ data: "${{wdata.dataset}}", model: {{ channels: 4, skip_channels: 4, layers: 2, stacks: 1, input_stride: 4 }}, epochs: 1, batch_size: 2, device: cpu }}
  wcat:
    uses: infer.regressor
    with: {{ model: "${{wtrain.model}}", data: "${{wdata.dataset}}", inputs: ["{bank}", "{lvcnr}", "{dir}/bad.h5"], chunk_size: 2, device: cpu }}
"#,
            labels = data.join("gz1/labels.csv").display(),
            dir = dir.display(),
            bank = data.join("waveforms/bank_tiny.h5").display(),
            lvcnr = data.join("waveforms/lvcnr").display(),
        ),
    )
    .unwrap();
    wf
}

/// A Parquet file's rows as JSON records, read by pyarrow.
fn rows(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, json, pyarrow.parquet as pq\n\
             print(json.dumps(pq.read_table(sys.argv[1]).to_pylist()))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run(dir: &Path, wf: &Path, args: &[&str]) -> String {
    let mut cmd = pipeline(dir);
    cmd.arg("run").arg(wf).args(args);
    let out = run_with_deadline(cmd, Duration::from_secs(600));
    assert_success(&out);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn bytes(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Starts `run --force cat_jpeg`, waits for its first chunks, then stops it
/// with `signal`; returns the exit status.
fn stopped_run(dir: &Path, wf: &Path, signal: &str) -> std::process::ExitStatus {
    let mut child = pipeline(dir)
        .args(["run", "-q", "--force", "cat_jpeg"])
        .arg(wf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let second = dir.join("wd/.checkpoints/cat_jpeg/current/chunk-000001.parquet");
    let start = Instant::now();
    while !second.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no chunk written"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait().unwrap()
}

#[test]
fn catalogues_match_on_two_ranks_and_after_stops_and_name_their_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let wf = workflow(dir, 20);
    run(dir, &wf, &[]);
    let wd = dir.join("wd");

    // Every readable image is catalogued in input order; the others are rejects naming them.
    let cat = rows(&wd.join("cat_jpeg/catalogue.parquet"));
    assert_eq!(cat.len(), 320);
    assert_eq!(cat[0]["objid"], "0000");
    assert_eq!(cat[319]["objid"], "19015");
    for r in &cat {
        let (e, s) = (
            r["p_elliptical"].as_f64().unwrap(),
            r["p_spiral"].as_f64().unwrap(),
        );
        assert!((e + s - 1.0).abs() < 1e-5, "{r}");
        let chosen = if r["class"] == "elliptical" { e } else { s };
        assert_eq!(r["confidence"].as_f64().unwrap(), chosen);
    }
    let rejects = rows(&wd.join("cat_jpeg/rejects.parquet"));
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0]["sample_id"], "missing");
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing.jpeg"),
        "{rejects:?}"
    );
    assert_eq!(rejects[1]["sample_id"], "truncated");
    assert!(
        rejects[1]["reason"]
            .as_str()
            .unwrap()
            .contains("truncated JPEG"),
        "{rejects:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&bytes(wd.join("cat_jpeg/catalogue.json"))).unwrap();
    assert_eq!(summary["catalogued"], 320);
    assert_eq!(summary["rejected"], 2);
    assert!(summary["decision_threshold"].is_f64(), "{summary}");

    // A stamp the frame covers is catalogued, with its coordinates; one it does not is a reject.
    let fits = rows(&wd.join("cat_fits/catalogue.parquet"));
    assert_eq!(fits.len(), 1, "{fits:?}");
    assert_eq!(fits[0]["objid"], "inside");
    assert_eq!(fits[0]["ra"], 280.8382);
    let fits_rejects = rows(&wd.join("cat_fits/rejects.parquet"));
    assert_eq!(fits_rejects.len(), 1, "{fits_rejects:?}");
    assert_eq!(fits_rejects[0]["sample_id"], "outside");
    assert!(
        fits_rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("cfht_megaprime_sa110.fits"),
        "{fits_rejects:?}"
    );

    // Waveforms: the bank's 4 and the LVC file's 1; the file with none is a reject.
    let w = rows(&wd.join("wcat/catalogue.parquet"));
    assert_eq!(w.len(), 5, "{w:?}");
    for r in &w {
        let (q, a, b) = (
            r["q"].as_f64().unwrap(),
            r["chi1z"].as_f64().unwrap(),
            r["chi2z"].as_f64().unwrap(),
        );
        let chi_eff = (q * a + b) / (1.0 + q);
        assert!((r["chi_eff"].as_f64().unwrap() - chi_eff).abs() < 1e-12);
    }
    let w_rejects = rows(&wd.join("wcat/rejects.parquet"));
    assert_eq!(w_rejects.len(), 1);
    assert!(w_rejects[0]["source"].as_str().unwrap().ends_with("bad.h5"));

    let catalogue = |stage: &str| bytes(wd.join(stage).join("catalogue.parquet"));
    let stages = ["cat_jpeg", "cat_fits", "wcat"];
    let one = stages.map(catalogue);
    let one_rows = stages.map(|s| rows(&wd.join(s).join("catalogue.parquet")));

    // Two ranks, each scoring every other chunk: the same bytes.
    let mut cmd = mpirun(2);
    cmd.arg(env!("CARGO_BIN_EXE_pipeline"))
        .args([
            "run", "--force", "cat_jpeg", "--force", "cat_fits", "--force", "wcat",
        ])
        .arg(&wf)
        .current_dir(dir);
    let out = run_with_deadline(cmd, Duration::from_secs(600));
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("on 2 rank(s)"), "{stderr}");
    for (i, stage) in stages.iter().enumerate() {
        let two = rows(&wd.join(stage).join("catalogue.parquet"));
        assert_eq!(one_rows[i], two, "{stage}: 2 ranks against 1");
        assert!(
            catalogue(stage) == one[i],
            "{stage}: the 2-rank file's bytes differ"
        );
    }

    // Stopped before its time limit (SIGUSR1): exits 75 with its chunks kept, and resumes.
    let status = stopped_run(dir, &wf, "-USR1");
    assert_eq!(status.code(), Some(75), "a stop on request exits 75");
    let err = run(dir, &wf, &["--resume", "--force", "cat_jpeg"]);
    assert!(err.contains("resuming from"), "{err}");
    let s: serde_json::Value =
        serde_json::from_slice(&bytes(wd.join("cat_jpeg/catalogue.json"))).unwrap();
    assert!(
        s["chunks_scored"].as_u64().unwrap() < 81,
        "the resumed run scored only what was left: {s}"
    );
    assert!(
        catalogue("cat_jpeg") == one[0],
        "resumed after SIGUSR1: another catalogue"
    );

    // Killed outright (SIGKILL): resumes from the chunks it finished.
    let status = stopped_run(dir, &wf, "-KILL");
    assert_eq!(status.code(), None, "killed by a signal");
    let err = run(dir, &wf, &["--resume", "--force", "cat_jpeg"]);
    assert!(err.contains("resuming from"), "{err}");
    assert!(
        catalogue("cat_jpeg") == one[0],
        "resumed after SIGKILL: another catalogue"
    );
    assert!(
        !wd.join(".checkpoints/cat_jpeg").exists(),
        "a finished stage leaves no chunks behind"
    );
}

/// Writes a batch of the dataset's test split and what our network makes of
/// it (`predict`) as safetensors `x` and `y`.
fn write_batch(data: &Path, out: &Path, predict: &dyn Fn(&tch::Tensor) -> tch::Tensor) {
    use sciflow_ingest::{Loader, LoaderConfig, Split};
    let mut lc = LoaderConfig::new(64, 0);
    lc.shuffle = false;
    lc.even_steps = false;
    let batch = Loader::new(data, Split::Test, lc)
        .unwrap()
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    let x = tch::Tensor::from_slice(&batch.x).view(&shape[..]);
    let y = tch::no_grad(|| predict(&x));
    tch::Tensor::write_safetensors(&[("x", &x), ("y", &y.contiguous())], out).unwrap();
}

#[test]
fn trained_models_load_in_pytorch_and_give_our_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let wf = workflow(dir, 1);
    run(dir, &wf, &["--until", "train"]);
    run(dir, &wf, &["--until", "wtrain"]);
    let wd = dir.join("wd");
    let (_vs, net, _) = sciflow_train::load_model(&wd.join("train"), tch::Device::Cpu).unwrap();
    write_batch(
        &wd.join("data"),
        &dir.join("classifier.safetensors"),
        &|x| net.forward_t(x, false),
    );
    let reg =
        sciflow_train::regressor::load_regressor(&wd.join("wtrain"), tch::Device::Cpu).unwrap();
    write_batch(
        &wd.join("wdata"),
        &dir.join("regressor.safetensors"),
        &|x| reg.predict(x),
    );
    for (model, batch) in [("train", "classifier"), ("wtrain", "regressor")] {
        let out = Command::new(python())
            .arg(root().join("pipeline/tests/torchscript_check.py"))
            .arg(wd.join(model).join("model.pt"))
            .arg(dir.join(format!("{batch}.safetensors")))
            .output()
            .unwrap();
        assert_success(&out);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("max abs difference"), "{batch}: {said}");
        eprint!("{said}");
    }
}
