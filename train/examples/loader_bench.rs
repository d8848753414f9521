//! Reads a dataset's training split with our loader, as training does
//! (shuffled, sharded, worker threads, bounded prefetch) and hands every
//! batch to libtorch as tensors; prints samples per second. The Python side
//! of `bench/loader.sh` reads the same samples with PyTorch's DataLoader.
//! With `--compact 1`, a compact (U8/F16) dataset's batches are handed over
//! as stored, the tensor a GPU training copies to the device and decodes
//! there ([`sciflow_train::input`]), so the figure is the loader's rate
//! without the decoding.
//!
//! ```text
//! cargo run --example loader_bench -- DATASET_DIR [--batch 64] [--workers 2] [--prefetch 4] [--epochs 3] [--compact 0|1]
//! ```

use std::time::Instant;

use sciflow_ingest::{Loader, LoaderConfig, Split};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = argv.first().filter(|a| !a.starts_with('-')) else {
        eprintln!(
            "usage: loader_bench DATASET_DIR [--batch N] [--workers N] [--prefetch N] [--epochs N] [--compact 0|1]"
        );
        std::process::exit(2)
    };
    let mut cfg = LoaderConfig {
        shuffle_buffer: 1024,
        ..LoaderConfig::new(64, 1)
    };
    let mut epochs = 3;
    for pair in argv[1..].chunks(2) {
        let v: usize = pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{}: expected a number", pair[0]);
            std::process::exit(2)
        });
        match pair[0].as_str() {
            "--batch" => cfg.batch_size = v,
            "--workers" => cfg.workers = v,
            "--prefetch" => cfg.prefetch = v,
            "--epochs" => epochs = v,
            "--compact" => cfg.keep_compact = v != 0,
            other => {
                eprintln!("unknown argument `{other}`");
                std::process::exit(2)
            }
        }
    }
    let loader =
        Loader::new(std::path::Path::new(dir), Split::Train, cfg.clone()).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
    let mut rates = Vec::new();
    for epoch in 0..epochs {
        let t = Instant::now();
        let mut n = 0usize;
        let mut check = 0.0f64;
        for batch in loader.epoch(epoch as u64) {
            let batch = batch.unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(1)
            });
            let (x, y) = match &batch.compact {
                Some(c) => (
                    sciflow_train::input::stored(&batch, c).unwrap(),
                    tch::Tensor::from_slice(&batch.y),
                ),
                None => sciflow_train::classifier::to_tensors(&batch).unwrap(),
            };
            // Touch the tensors so the hand-off cannot be optimised away.
            check += x.flatten(0, -1).double_value(&[0]) + y.size()[0] as f64;
            n += batch.y.len();
        }
        let s = t.elapsed().as_secs_f64();
        rates.push(n as f64 / s);
        eprintln!("epoch {epoch}: {n} samples in {s:.3} s (check {check:.3})");
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "batch": cfg.batch_size,
            "workers": cfg.workers,
            "prefetch": cfg.prefetch,
            "compact": cfg.keep_compact,
            "samples_per_second": rates[rates.len() / 2],
        })
    );
}
