//! A compact (U8) dataset read from Python with numpy and safetensors alone,
//! by the lines the README gives (`compact_input.py` runs them as written
//! there), equals what our loader yields, for each normalisation the loader
//! applies. Runs the project's Python (`PIPELINE_PYTHON`, set up by
//! scripts/setup.sh); without it the test fails rather than passing unchecked.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};
use sciflow_ingest::contract::Split;
use sciflow_ingest::loader::{Loader, LoaderConfig};
use sciflow_ingest::preprocess::Normalisation;
use sciflow_ingest::writers::galaxy_images::{write_dataset, GalaxyImagesConfig};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn python_turns_u8_shards_into_what_the_loader_yields() {
    let python = std::env::var("PIPELINE_PYTHON")
        .expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first");
    let dir = tempfile::tempdir().unwrap();
    for (name, normalisation) in [
        ("standardize", Normalisation::Standardize),
        ("joint", Normalisation::StandardizeJoint),
        ("asinh", Normalisation::Asinh { softening: 3.0 }),
    ] {
        let ds = dir.path().join(name);
        let cfg = GalaxyImagesConfig {
            size: std::num::NonZeroUsize::new(32).unwrap(),
            crop: 0.5,
            normalisation,
            shard_size: std::num::NonZeroUsize::new(5).unwrap(),
            ..GalaxyImagesConfig::new(root().join("data/gz1/labels.csv"))
        };
        let info = write_dataset(&cfg, 7, &ds, 2, &|_| {}).unwrap();
        assert_eq!(info.x.dtype, "U8");
        // Every split, unshuffled: shard after shard, as Python reads them.
        let mut x = Vec::new();
        let mut n = 0;
        for split in [Split::Train, Split::Val, Split::Test] {
            let mut lc = LoaderConfig::new(4, 0);
            lc.shuffle = false;
            lc.even_steps = false;
            for batch in Loader::new(&ds, split, lc).unwrap().epoch(0) {
                let b = batch.unwrap();
                n += b.shape[0];
                x.extend(b.x);
            }
        }
        let shape = [&[n][..], &info.x.sample_shape[..]].concat();
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, shape, &bytes).unwrap();
        let ours = dir.path().join(format!("{name}.safetensors"));
        safetensors::tensor::serialize_to_file(
            HashMap::from([("x".to_string(), view)]),
            None,
            &ours,
        )
        .unwrap();
        let out = Command::new(&python)
            .arg(root().join("ingest/tests/compact_input.py"))
            .arg(root().join("README.md"))
            .arg(&ds)
            .arg(&ours)
            .output()
            .expect("python runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name}: {text}");
        println!("{}", text.trim());
    }
}
