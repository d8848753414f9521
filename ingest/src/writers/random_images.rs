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
//! the two phases of every writer ([`DatasetWriter`]): each rank its
//! shards, then rank 0 the manifest.

use std::num::NonZeroUsize;
use std::path::Path;

use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use crate::contract::{DatasetInfo, Provenance, Split, SplitFractions, TensorSchema};
use crate::shards::{self, Layout, ManifestRow, Part, Place, Planned, ShardBuffer};
use crate::writers::{DatasetWriter, Job};
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
    SplitFractions::new(0.0, 0.0)
}

/// A planned shard's samples: the first one's number and how many.
type Members = (usize, usize);

fn plan(config: &RandomImagesConfig) -> Result<Vec<Planned<Members>>> {
    let n = config.count.get();
    let f = config.split;
    f.check()?;
    let (n_val, n_test) = f.sizes(n);
    let n_train = n - n_val - n_test;
    if n_train == 0 {
        return Err(Error::Config(format!(
            "split fractions val {} and test {} leave no training samples",
            f.val, f.test
        )));
    }
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
                members: (first, samples),
            });
            first += samples;
        }
    }
    Ok(shards)
}

/// A manifest row: where the sample is and its label.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    #[serde(flatten)]
    place: Place,
    label: i64,
}

impl ManifestRow for Row {
    fn place(&self) -> &Place {
        &self.place
    }
}

impl DatasetWriter for RandomImagesConfig {
    /// The samples to generate.
    fn input_count(&self) -> Result<usize> {
        Ok(self.count.get())
    }

    fn write_partition(&self, seed: u64, job: &Job<'_>) -> Result<()> {
        let config = self;
        let plan = plan(config)?;
        let (c, s) = (config.channels.get(), config.size.get());
        let layout = Layout {
            x: (Dtype::F32, vec![c, s, s]),
            y: (Dtype::I64, vec![]),
        };
        let head = Part::new((), Vec::new());
        job.write(&layout, &plan, head, |shard, out, tick| {
            fill_shard(config, seed, shard, out);
            tick(shard.members.1);
            Ok(())
        })
    }

    fn finalize(&self, seed: u64, dir: &Path, world_size: usize) -> Result<DatasetInfo> {
        let config = self;
        let all: Part<Row, ()> = shards::merge(dir, world_size)?;
        let mut manifest = all.manifest(
            (0..all.rows.len())
                .map(|i| format!("random-{i:08}"))
                .collect(),
            vec![Column::new(
                "label".into(),
                all.rows.iter().map(|r| r.label).collect::<Vec<i64>>(),
            )],
        );
        let (c, s) = (config.channels.get(), config.size.get());
        let mut info = DatasetInfo::new(
            "image_classification",
            TensorSchema::new("x", "F32", vec![c, s, s]),
            TensorSchema::new("y", "I64", vec![]),
            Provenance::new(
                String::new(),
                String::new(),
                shards::shards_digest(&all.shards),
                seed,
                config,
            ),
        );
        info.class_names = (0..config.classes.get())
            .map(|i| format!("class{i:04}"))
            .collect();
        all.publish(dir, &mut manifest, info)
    }
}

fn fill_shard(
    config: &RandomImagesConfig,
    seed: u64,
    shard: &Planned<Members>,
    out: &mut ShardBuffer<Row>,
) {
    let (c, s, k) = (
        config.channels.get(),
        config.size.get(),
        config.classes.get() as u64,
    );
    let samples = shard.members.1;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(shard.index as u64);
    let len = samples * c * s * s;
    out.x.reserve(len * 4);
    // Box-Muller pairs: normal pixels without another dependency.
    for _ in 0..len.div_ceil(2) {
        let (u, v): (f64, f64) = (rng.random(), rng.random());
        let r = (-2.0 * (1.0 - u).ln()).sqrt();
        let a = std::f64::consts::TAU * v;
        out.x.extend(((r * a.cos()) as f32).to_le_bytes());
        out.x.extend(((r * a.sin()) as f32).to_le_bytes());
    }
    out.x.truncate(len * 4);
    for index in 0..samples {
        let label = rng.random_range(0..k) as i64;
        out.y.extend(label.to_le_bytes());
        out.rows.push(Row {
            place: shard.place(index),
            label,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Partition;
    use crate::loader::{Loader, LoaderConfig};

    #[test]
    fn shards_depend_on_the_seed_only_and_the_loader_reads_them() {
        let cfg = RandomImagesConfig {
            count: NonZeroUsize::new(50).unwrap(),
            channels: NonZeroUsize::new(3).unwrap(),
            size: NonZeroUsize::new(8).unwrap(),
            classes: NonZeroUsize::new(10).unwrap(),
            split: SplitFractions::new(0.2, 0.0),
            shard_size: NonZeroUsize::new(16).unwrap(),
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, ranks: usize, threads: usize, seed: u64| {
            let d = dir.path().join(name);
            for rank in 0..ranks {
                let part = Partition { rank, size: ranks };
                let job = Job {
                    dir: &d,
                    part,
                    threads,
                    progress: &|_| {},
                };
                cfg.write_partition(seed, &job).unwrap();
            }
            (cfg.finalize(seed, &d, ranks).unwrap(), d)
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
