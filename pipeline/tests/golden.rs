//! Outputs pinned to the byte: the small quickstart and a small waveform
//! regressor run at one rank, on CPU, in portable mode, must give the
//! BLAKE3s recorded here, on any x86-64 machine with AVX2 (checked on AMD
//! hardware and on emulated Intel CPUs; not yet on an AVX-512 machine).
//!
//! Portable mode (`--reproducible portable`, `sciflow_train::kernels`) pins
//! libtorch's CPU kernels to the AVX2 baseline: ATen's dispatch, oneDNN's
//! instruction set and MKL's vendor-independent branch. Without it the
//! weights depend on the CPU (an AVX-512 Intel machine and an AVX2 AMD one
//! gave different weights from the first GEMM). The table was recorded in
//! portable mode on an AMD EPYC (AVX2, no AVX-512) and checked under an
//! emulated Intel CPU (see README, Reproducibility). It is kept so that any
//! later change that alters a shard, a weight or a metric (a different order
//! of random draws, a changed reduction, a reordered manifest) fails here
//! instead of passing unnoticed; a change of libtorch version changes the
//! weights, and the table is then re-recorded with the code before the
//! change of interest. A mismatch prints the whole table as it is now,
//! ready to paste.
//!
//! The manifests and `dataset.json` are left out: they name the input files
//! by their (temporary) paths. Both runs use one intra-op thread, so the core
//! count does not enter.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_success, root, run_args, run_with_deadline};

/// The `pipeline` binary, run in `dir`; under `qemu-x86_64 -cpu MODEL` when
/// `GOLDEN_EMULATE_CPU=MODEL` is set (e.g. `Skylake-Client`, an Intel CPU
/// with AVX2), to check the table on another vendor's CPU than the host's.
fn pipeline(dir: &Path) -> std::process::Command {
    let Ok(cpu) = std::env::var("GOLDEN_EMULATE_CPU") else {
        return common::pipeline(dir);
    };
    let mut c = std::process::Command::new("qemu-x86_64");
    c.args(["-cpu", &cpu, env!("CARGO_BIN_EXE_pipeline")])
        .current_dir(dir);
    c
}

/// Emulation is about 50 times slower than the host (2-4 minutes a test).
fn deadline() -> Duration {
    let minutes = if std::env::var_os("GOLDEN_EMULATE_CPU").is_some() {
        30
    } else {
        10
    };
    Duration::from_secs(60 * minutes)
}

/// BLAKE3 of each file (path relative to the workdir), in path order.
fn digests(wd: &Path, files: &[PathBuf]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            let bytes =
                std::fs::read(wd.join(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.to_string_lossy().into_owned(),
                blake3::hash(&bytes).to_hex().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every shard of the dataset in `dir` (relative to the workdir).
fn shards(wd: &Path, dir: &str) -> Vec<PathBuf> {
    std::fs::read_dir(wd.join(dir).join("shards"))
        .unwrap()
        .map(|e| Path::new(dir).join("shards").join(e.unwrap().file_name()))
        .collect()
}

/// BLAKE3 over the training history's figures that do not depend on time:
/// each epoch's losses, accuracies and errors, as the bits of their f64s.
fn history_digest(wd: &Path, stage: &str) -> (String, String) {
    let text = std::fs::read(wd.join(stage).join("history.json")).unwrap();
    let h: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let mut hasher = blake3::Hasher::new();
    for e in h["history"].as_array().expect("history") {
        for key in [
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "val_mae",
            "lr",
        ] {
            let mut values = Vec::new();
            match &e[key] {
                serde_json::Value::Array(a) => values.extend(a.iter().filter_map(|v| v.as_f64())),
                v => values.extend(v.as_f64()),
            }
            hasher.update(key.as_bytes());
            for v in values {
                hasher.update(&v.to_bits().to_le_bytes());
            }
        }
    }
    (
        format!("{stage}/history.json (figures)"),
        hasher.finalize().to_hex().to_string(),
    )
}

/// BLAKE3 of a metrics file without the fields that name directories (the
/// manifest, `dataset.json` and these hold the temporary workdir's path).
fn metrics_digest(wd: &Path, file: &str) -> (String, String) {
    let text = std::fs::read(wd.join(file)).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&text).unwrap();
    for key in ["model", "data"] {
        m.as_object_mut().expect("an object").remove(key);
    }
    (
        format!("{file} (without paths)"),
        blake3::hash(m.to_string().as_bytes()).to_hex().to_string(),
    )
}

fn compare(name: &str, actual: &[(String, String)], expected: &[(&str, &str)]) {
    let as_text = |rows: Vec<(String, String)>| -> String {
        rows.iter()
            .map(|(p, h)| format!("    (\"{p}\", \"{h}\"),\n"))
            .collect()
    };
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(p, h)| (p.to_string(), h.to_string()))
        .collect();
    assert!(
        actual == want.as_slice(),
        "{name}: the outputs differ from the recorded ones.\nnow:\n{}recorded:\n{}",
        as_text(actual.to_vec()),
        as_text(want)
    );
}

const QUICKSTART: &[(&str, &str)] = &[
    (
        "dataset/shards/shard-00000.safetensors",
        "03d051a31519b2448547786e5bcc839db79d438e3be65a0de00656b535d96814",
    ),
    (
        "dataset/shards/shard-00001.safetensors",
        "e8f5f8df39fe1eaa98a854654bee458c03fcf44464a30db2418e01dcbff16645",
    ),
    (
        "dataset/shards/shard-00002.safetensors",
        "39556ed272d3b60a1ea62e45a7f359a2b420b96b7d5c9f0894740d3e3e6f2459",
    ),
    (
        "dataset/shards/shard-00003.safetensors",
        "29a900611f8f06b07fa9e9de5b2574f983a61fca0a5e3d89b168a18312aa14e2",
    ),
    (
        "dataset/shards/shard-00004.safetensors",
        "18ec9a02870ba7c8ba5318e4142ad5dd2a55570e82924d8a57a3430a3bb1059c",
    ),
    (
        "dataset/shards/shard-00005.safetensors",
        "c6e29a941358e6352ee5f416910bdc2b69e7b0f6d05c6420abced0a735dccdd2",
    ),
    (
        "dataset/shards/shard-00006.safetensors",
        "1bdaba9e137841cc3d7c7d8b2549aba0fed80f3d56a775bb988452960c9a3718",
    ),
    (
        "dataset/shards/shard-00007.safetensors",
        "1f7366e69ed6f442f6a4eee27e0ef581c5fce1100eaef42c0296b9c26e3c7ffb",
    ),
    (
        "dataset/shards/shard-00008.safetensors",
        "01e882c5c4356ebe69587d6743ce501afa43592590d81ac1634cb4540e9b56c1",
    ),
    (
        "dataset/shards/shard-00009.safetensors",
        "3c9de1195a13633491453b557e6a4d13bc2e4a7ebfc5e37586692d3d9e2b45f9",
    ),
    (
        "dataset/shards/shard-00010.safetensors",
        "7fd2c6297ac8293b7b7f3566ac5fde24d131762a707e1544fe5fe9c31b59e590",
    ),
    (
        "dataset/shards/shard-00011.safetensors",
        "4660be745cf8780a2596b4b49a233d59f666c8e98301ec37cd98e0aa4212abef",
    ),
    (
        "dataset/shards/shard-00012.safetensors",
        "1cd372332ad7803f9be10976ac6219d23a93a1e567eb0c5ebaf0db5db6b19b95",
    ),
    (
        "dataset/shards/shard-00013.safetensors",
        "4d0078134f260f0a488cb7a699695db079dc9d34bc32ca9420fec9c9e10d776e",
    ),
    (
        "evaluate/predictions.parquet",
        "6b455e6a2097d6642fc8beebfde1c0e24a21866f106a660a97168c76bc06eae5",
    ),
    (
        "train/weights.safetensors",
        "664129f1959781edb6e9901f4acb2c350a293aa927a5c5da724c144f5e9ac246",
    ),
    (
        "train/history.json (figures)",
        "1bcf930ac8c510148634c4b7b5e7c1f2195405e56931f7eab81d130f824cdce0",
    ),
    (
        "evaluate/metrics.json (without paths)",
        "8a7c01f64375ea391eda64683f37b867d8838bf8ae55c3121d8b3a3349ecc73b",
    ),
];

const REGRESSOR: &[(&str, &str)] = &[
    (
        "dataset/shards/shard-00000.safetensors",
        "4281a22393a7dc10452ddd39b5865884c8f9f8e0636c7c0ad1c7ef4f1a624d5f",
    ),
    (
        "dataset/shards/shard-00001.safetensors",
        "9041c5ea88bf0160f4a7890701e2ef6eca30d34d40abe35020501d93095d7776",
    ),
    (
        "dataset/shards/shard-00002.safetensors",
        "e5208f7349025ac9b37d17c2bee35e92eb1529d5dee624d943cb544ac0d82eef",
    ),
    (
        "dataset/shards/shard-00003.safetensors",
        "8688c77e40b7c9a22e610fdfe30fc8e88367965eb5253e88ed6c48f51c7d6929",
    ),
    (
        "predict/predictions.parquet",
        "f5f2ad2f7a98e39830164442dd782fd8e6c9e352d2e58d9bb6680c5419a1089d",
    ),
    (
        "train/weights.safetensors",
        "5b81a080a042e897b04f29e2360ae8fb462bc4b15699049956a51de647884707",
    ),
    (
        "train/history.json (figures)",
        "1d6e71f1e7f3dff0b9810e6b7790d262c42775b70f98466250535e2cd141e006",
    ),
    (
        "predict/metrics.json (without paths)",
        "a3b78c2810717a09de01c88cb9f377b8443ee66799d6acaf94ea113d815b57d1",
    ),
];

#[test]
fn the_small_quickstart_at_one_rank_gives_the_recorded_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let mut cmd = pipeline(dir.path());
    cmd.env("PIPELINE_THREADS", "1").args(run_args(
        &root().join("workflows/quickstart.yaml"),
        &[
            format!("workdir={}", wd.display()),
            "reproducible=portable".into(),
            "params.per_class=200".into(),
            "params.epochs=6".into(),
            "params.image_size=32".into(),
        ],
    ));
    assert_success(&run_with_deadline(cmd, deadline()));
    let mut files = shards(&wd, "dataset");
    files.extend(["train/weights.safetensors", "evaluate/predictions.parquet"].map(PathBuf::from));
    let mut actual = digests(&wd, &files);
    actual.push(history_digest(&wd, "train"));
    actual.push(metrics_digest(&wd, "evaluate/metrics.json"));
    compare("quickstart", &actual, QUICKSTART);
}

#[test]
fn a_small_regressor_run_at_one_rank_gives_the_recorded_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = root().join("data/waveforms");
    let wf = dir.path().join("reg.yaml");
    std::fs::write(
        &wf,
        format!(
            "version: 1\nname: reg\nworkdir: wd\nseed: 11\nstages:\n\
             \x20 dataset:\n    uses: ingest.waveforms\n    with:\n      inputs: [{}, {}]\n\
             \x20     dt: 8\n      window: [-2000, 60]\n      split: {{ val: 0.2, test: 0.2 }}\n      shard_size: 2\n\
             \x20 train:\n    uses: train.regressor\n    with:\n      data: ${{dataset.dataset}}\n\
             \x20     model: {{ channels: 4, skip_channels: 4, layers: 3, stacks: 1, input_stride: 2 }}\n\
             \x20     epochs: 3\n      batch_size: 2\n      chi_eff_weight: 0.5\n\
             \x20 predict:\n    uses: eval.regressor\n    with:\n      model: ${{train.model}}\n\
             \x20     data: ${{dataset.dataset}}\n      split: test\n",
            data.join("bank_tiny.h5").display(),
            data.join("lvcnr").display()
        ),
    )
    .unwrap();
    let mut cmd = pipeline(dir.path());
    cmd.env("PIPELINE_THREADS", "1")
        .arg("run")
        .arg(&wf)
        .args(["--reproducible", "portable"]);
    assert_success(&run_with_deadline(cmd, deadline()));
    let wd = dir.path().join("wd");
    let mut files = shards(&wd, "dataset");
    files.extend(["train/weights.safetensors", "predict/predictions.parquet"].map(PathBuf::from));
    let mut actual = digests(&wd, &files);
    actual.push(history_digest(&wd, "train"));
    actual.push(metrics_digest(&wd, "predict/metrics.json"));
    compare("regressor", &actual, REGRESSOR);
}
