//! Synthetic image-classification datasets of random tensors, shaped like
//! ImageNet by default (3 x 224 x 224, 1,000 classes): the reference
//! benchmark for data-parallel training throughput, where what the pixels
//! hold does not matter but their size and the I/O path do.
//!
//! Each shard's values come from its own generator seeded by (seed, shard),
//! so the bytes depend on neither the thread count nor the rank count. Pixels
//! are standard normal (what a normalised photograph looks like to the first
//! convolution); labels are uniform over the classes. The output is the
//! ordinary dataset contract (shards, manifest, `dataset.json`), written in
//! the two phases every dataset writer uses: each rank its shards, then rank
//! 0 the manifest.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::dataset::{
    part_path, publish, read_parts, shard_name, write_atomic, write_parquet, Counts, DatasetInfo,
    Partition, Provenance, ShardRecord, Split, SplitFractions, TensorSchema, FORMAT_VERSION,
};
use crate::{Error, Result};

/// Configuration of `ingest.random_images`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomImagesConfig {
    /// Samples in all.
    pub count: NonZeroUsize,
    /// Channels per image.
    #[serde(default = "default_channels")]
    pub channels: NonZeroUsize,
    /// Image side in pixels.
    #[serde(default = "default_size")]
    pub size: NonZeroUsize,
    /// Number of classes.
    #[serde(default = "default_classes")]
    pub classes: NonZeroUsize,
    /// Validation and test fractions (of the count, taken from the end).
    #[serde(default = "no_holdout")]
    pub split: SplitFractions,
    /// Samples per shard.
    #[serde(default = "default_shard")]
    pub shard_size: NonZeroUsize,
}

fn default_channels() -> NonZeroUsize {
    NonZeroUsize::new(3).unwrap()
}
fn default_size() -> NonZeroUsize {
    NonZeroUsize::new(224).unwrap()
}
fn default_classes() -> NonZeroUsize {
    NonZeroUsize::new(1000).unwrap()
}
fn default_shard() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap()
}
fn no_holdout() -> SplitFractions {
    SplitFractions {
        val: 0.0,
        test: 0.0,
    }
}

/// One planned shard: its index, split and first sample number.
struct Planned {
    index: usize,
    split: Split,
    first: usize,
    samples: usize,
}

fn plan(config: &RandomImagesConfig) -> Result<Vec<Planned>> {
    let n = config.count.get();
    let f = config.split;
    if !(0.0..1.0).contains(&(f.val + f.test)) || f.val < 0.0 || f.test < 0.0 {
        return Err(Error::Config(format!(
            "split fractions must be >= 0 and sum below 1 (val {}, test {})",
            f.val, f.test
        )));
    }
    let n_val = (n as f64 * f.val).round() as usize;
    let n_test = (n as f64 * f.test).round() as usize;
    let n_train = n - n_val - n_test;
    let mut shards = Vec::new();
    let mut first = 0;
    for (split, count) in [
        (Split::Train, n_train),
        (Split::Val, n_val),
        (Split::Test, n_test),
    ] {
        let end = first + count;
        while first < end {
            let samples = config.shard_size.get().min(end - first);
            shards.push(Planned {
                index: shards.len(),
                split,
                first,
                samples,
            });
            first += samples;
        }
    }
    Ok(shards)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Part {
    shards: Vec<ShardRecord>,
    labels: Vec<(usize, i64)>,
}

/// Writes this process's shards into `dir` with up to `threads` threads;
/// `progress` receives the samples this process has written so far.
pub fn write_partition(
    config: &RandomImagesConfig,
    seed: u64,
    dir: &Path,
    part: Partition,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<()> {
    let shards = plan(config)?;
    for sub in ["shards", "parts"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| Error::io("failed to create", &d, e))?;
    }
    let mine: Vec<&Planned> = shards
        .iter()
        .filter(|s| s.index % part.size == part.rank)
        .collect();
    let (c, s, k) = (
        config.channels.get(),
        config.size.get(),
        config.classes.get() as u64,
    );
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Vec<Result<Part>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<Part> {
                    let mut out = Part::default();
                    while let Some(shard) = mine.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let mut rng = ChaCha8Rng::seed_from_u64(seed);
                        rng.set_stream(shard.index as u64);
                        let len = shard.samples * c * s * s;
                        let mut x = Vec::with_capacity(len * 4);
                        // Box-Muller pairs: normal pixels without another dependency.
                        for _ in 0..len.div_ceil(2) {
                            let (u, v): (f64, f64) = (rng.random(), rng.random());
                            let r = (-2.0 * (1.0 - u).ln()).sqrt();
                            let a = std::f64::consts::TAU * v;
                            x.extend(((r * a.cos()) as f32).to_le_bytes());
                            x.extend(((r * a.sin()) as f32).to_le_bytes());
                        }
                        x.truncate(len * 4);
                        let labels: Vec<i64> = (0..shard.samples)
                            .map(|_| rng.random_range(0..k) as i64)
                            .collect();
                        let y: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
                        let file = shard_name(shard.index);
                        let path = dir.join(&file);
                        let err = |e: safetensors::SafeTensorError| {
                            Error::format(&path, None, format!("cannot serialise shard: {e}"))
                        };
                        let xv = TensorView::new(Dtype::F32, vec![shard.samples, c, s, s], &x)
                            .map_err(err)?;
                        let yv =
                            TensorView::new(Dtype::I64, vec![shard.samples], &y).map_err(err)?;
                        let bytes = safetensors::tensor::serialize([("x", xv), ("y", yv)], None)
                            .map_err(err)?;
                        write_atomic(&path, &bytes)?;
                        out.shards.push(ShardRecord {
                            index: shard.index,
                            file,
                            split: shard.split,
                            samples: shard.samples,
                            bytes: bytes.len() as u64,
                            blake3: blake3::hash(&bytes).to_hex().to_string(),
                        });
                        out.labels.extend(
                            labels
                                .iter()
                                .enumerate()
                                .map(|(i, &l)| (shard.first + i, l)),
                        );
                        progress(done.fetch_add(shard.samples, Ordering::Relaxed) + shard.samples);
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("generator thread panicked"))
            .collect()
    });
    let mut merged = Part::default();
    for r in results {
        let p = r?;
        merged.shards.extend(p.shards);
        merged.labels.extend(p.labels);
    }
    let path = part_path(dir, part.rank);
    write_atomic(
        &path,
        &serde_json::to_vec(&merged).expect("part serialises"),
    )
}

/// Merges the `world_size` parts into the manifest and `dataset.json`.
pub fn finalize(
    config: &RandomImagesConfig,
    seed: u64,
    dir: &Path,
    world_size: usize,
) -> Result<DatasetInfo> {
    let planned = plan(config)?;
    let mut all = Part::default();
    for part in read_parts::<Part>(dir, world_size)? {
        all.shards.extend(part.shards);
        all.labels.extend(part.labels);
    }
    all.shards.sort_by_key(|s| s.index);
    all.labels.sort_unstable();
    let n = all.labels.len();
    let mut split = Vec::with_capacity(n);
    let mut shard = Vec::with_capacity(n);
    let mut index = Vec::with_capacity(n);
    for p in &planned {
        for i in 0..p.samples {
            split.push(p.split.as_str());
            shard.push(p.index as u32);
            index.push(i as u32);
        }
    }
    let mut manifest = df!(
        "sample_id" => (0..n).map(|i| format!("random-{i:08}")).collect::<Vec<_>>(),
        "shard" => shard,
        "index" => index,
        "split" => split,
        "label" => all.labels.iter().map(|l| l.1).collect::<Vec<i64>>(),
    )
    .expect("columns have equal length");
    write_parquet(&dir.join("manifest.parquet"), &mut manifest)?;
    let mut rejects = df!(
        "sample_id" => Vec::<String>::new(),
        "source" => Vec::<String>::new(),
        "reason" => Vec::<String>::new(),
    )
    .expect("empty columns");
    write_parquet(&dir.join("rejects.parquet"), &mut rejects)?;
    let count = |s: Split| {
        planned
            .iter()
            .filter(|p| p.split == s)
            .map(|p| p.samples)
            .sum()
    };
    let mut inputs = blake3::Hasher::new();
    for s in &all.shards {
        inputs.update(s.blake3.as_bytes());
    }
    let info = DatasetInfo {
        format: "sciflow-dataset".into(),
        format_version: FORMAT_VERSION,
        kind: "image_classification".into(),
        x: TensorSchema {
            name: "x".into(),
            dtype: "F32".into(),
            sample_shape: vec![config.channels.get(), config.size.get(), config.size.get()],
        },
        y: TensorSchema {
            name: "y".into(),
            dtype: "I64".into(),
            sample_shape: vec![],
        },
        class_names: (0..config.classes.get())
            .map(|i| format!("class{i:04}"))
            .collect(),
        target_names: Vec::new(),
        time_grid: None,
        shards: all.shards,
        counts: Counts {
            total: n,
            train: count(Split::Train),
            val: count(Split::Val),
            test: count(Split::Test),
            rejected: 0,
        },
        provenance: Provenance {
            labels: String::new(),
            labels_blake3: String::new(),
            inputs_blake3: inputs.finalize().to_hex().to_string(),
            seed,
            config: serde_json::to_value(config).expect("config serialises"),
            created_by: concat!("sciflow-ingest ", env!("CARGO_PKG_VERSION")).into(),
        },
    };
    publish(dir, &info)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::{Loader, LoaderConfig};

    #[test]
    fn shards_depend_on_the_seed_only_and_the_loader_reads_them() {
        let cfg = RandomImagesConfig {
            count: NonZeroUsize::new(50).unwrap(),
            channels: NonZeroUsize::new(3).unwrap(),
            size: NonZeroUsize::new(8).unwrap(),
            classes: NonZeroUsize::new(10).unwrap(),
            split: SplitFractions {
                val: 0.2,
                test: 0.0,
            },
            shard_size: NonZeroUsize::new(16).unwrap(),
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, ranks: usize, threads: usize, seed: u64| {
            let d = dir.path().join(name);
            for rank in 0..ranks {
                let part = Partition { rank, size: ranks };
                write_partition(&cfg, seed, &d, part, threads, &|_| {}).unwrap();
            }
            (finalize(&cfg, seed, &d, ranks).unwrap(), d)
        };
        let (a, da) = write("a", 1, 1, 3);
        let (b, _) = write("b", 3, 2, 3);
        let (c, _) = write("c", 1, 1, 4);
        assert_eq!(a.shards, b.shards, "ranks and threads change nothing");
        assert_ne!(a.shards[0].blake3, c.shards[0].blake3, "the seed does");
        assert_eq!((a.counts.train, a.counts.val, a.counts.total), (40, 10, 50));
        assert_eq!(a.x.sample_shape, vec![3, 8, 8]);

        let l = Loader::new(&da, Split::Train, LoaderConfig::new(40, 0)).unwrap();
        let batch = l.epoch(0).next().unwrap().unwrap();
        assert_eq!(batch.shape, vec![40, 3, 8, 8]);
        assert!(batch.y.iter().all(|&y| (0..10).contains(&y)));
        let mean = batch.x.iter().map(|&v| v as f64).sum::<f64>() / batch.x.len() as f64;
        let var = batch
            .x
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / batch.x.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let m = polars::prelude::ParquetReader::new(
            std::fs::File::open(da.join("manifest.parquet")).unwrap(),
        )
        .finish()
        .unwrap();
        assert_eq!(m.height(), 50);
    }
}
