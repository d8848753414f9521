//! The two-phase shard writer that every dataset writer shares; a writer
//! brings only its plan and its per-sample code.
//!
//! 1. Every process calls [`Job::write`] for its [`Partition`]: its threads
//!    take the shards it owns (shard `s` belongs to rank `s % size`) one at a
//!    time, the writer's `fill` turns each shard's samples into bytes, and
//!    the shard is serialised as safetensors under a temporary name and
//!    renamed. What the process wrote (shard records, manifest rows,
//!    rejects) goes into a part file `parts/part-RRRRR.json`.
//! 2. After all have finished (the caller's barrier), one process calls
//!    [`merge`] to read the parts back in one order, and [`Part::publish`] to write
//!    `manifest.parquet`, `rejects.parquet` and, last, `dataset.json`.
//!
//! Which sample goes to which shard is the writer's plan, a function of its
//! inputs and the seed only, so the shards do not depend on the number of
//! processes or threads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use polars::prelude::{Column, DataFrame};
use safetensors::tensor::{Dtype, TensorView};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::contract::{shard_name, Counts, DatasetInfo, Partition, Reject, ShardRecord, Split};
use crate::files::{write_atomic, write_parquet};
use crate::{Error, Result};

/// One shard of a writer's plan: its number, its split and what the
/// writer needs to produce its samples.
pub(crate) struct Planned<M> {
    /// Shard number.
    pub index: usize,
    /// The split all its samples belong to.
    pub split: Split,
    /// The writer's description of the samples.
    pub members: M,
}

/// The dtype and per-sample shape of `x` and of `y`.
pub(crate) struct Layout {
    /// Inputs.
    pub x: (Dtype, Vec<usize>),
    /// Targets.
    pub y: (Dtype, Vec<usize>),
}

/// Where one shard's samples accumulate while the writer's `fill` runs.
pub(crate) struct ShardBuffer<R> {
    /// The inputs' little-endian bytes, sample after sample.
    pub x: Vec<u8>,
    /// The targets' little-endian bytes, sample after sample.
    pub y: Vec<u8>,
    /// One manifest row per stored sample, in shard order.
    pub rows: Vec<R>,
    /// Inputs skipped.
    pub rejects: Vec<Reject>,
}

/// Where a stored sample is: its shard, its position there, its split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Place {
    /// Shard number.
    pub shard: u32,
    /// Position within the shard.
    pub index: u32,
    /// The shard's split.
    pub split: Split,
}

impl<M> Planned<M> {
    /// The place of this shard's `index`-th stored sample.
    pub fn place(&self, index: usize) -> Place {
        Place {
            shard: self.index as u32,
            index: index as u32,
            split: self.split,
        }
    }
}

/// A manifest row, as far as the shared writer needs to know it.
pub(crate) trait ManifestRow {
    /// Where the sample is stored.
    fn place(&self) -> &Place;
}

/// What one process wrote, and after [`merge`], what all wrote.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Part<R, H> {
    /// What the writer's plan says of the whole dataset (class names, grid,
    /// ...), so the merge need not plan again; rank 0's is kept.
    pub header: H,
    /// Shards written.
    pub shards: Vec<ShardRecord>,
    /// Manifest rows.
    pub rows: Vec<R>,
    /// Inputs skipped.
    pub rejects: Vec<Reject>,
}

impl<R, H> Part<R, H> {
    /// What a process starts with: the plan's header, and the inputs the
    /// plan itself rejected (which one rank should report).
    pub fn new(header: H, rejects: Vec<Reject>) -> Self {
        Part {
            header,
            shards: Vec::new(),
            rows: Vec::new(),
            rejects,
        }
    }
}

impl<R: ManifestRow, H> Part<R, H> {
    /// Samples per split, and the rejects.
    pub fn counts(&self) -> Counts {
        let count = |s: Split| self.rows.iter().filter(|r| r.place().split == s).count();
        Counts {
            total: self.rows.len(),
            train: count(Split::Train),
            val: count(Split::Val),
            test: count(Split::Test),
            rejected: self.rejects.len(),
        }
    }

    /// The manifest: `sample_id` (one per row, in manifest order), the
    /// rows' `shard`, `index` and `split`, then the writer's own `columns`.
    pub fn manifest(&self, sample_ids: Vec<String>, columns: Vec<Column>) -> DataFrame {
        let places = self.rows.iter().map(|r| r.place());
        let mut all = vec![
            Column::new("sample_id".into(), sample_ids),
            Column::new(
                "shard".into(),
                places.clone().map(|p| p.shard).collect::<Vec<u32>>(),
            ),
            Column::new(
                "index".into(),
                places.clone().map(|p| p.index).collect::<Vec<u32>>(),
            ),
            Column::new(
                "split".into(),
                places.map(|p| p.split.as_str()).collect::<Vec<_>>(),
            ),
        ];
        all.extend(columns);
        DataFrame::new_infer_height(all).expect("columns have equal length")
    }

    /// Completes `info` with the counts and shards, and writes
    /// `manifest.parquet`, `rejects.parquet` and, last (its presence marks
    /// the dataset complete), `dataset.json`; then removes the part files.
    pub fn publish(
        self,
        dir: &Path,
        manifest: &mut DataFrame,
        mut info: DatasetInfo,
    ) -> Result<DatasetInfo> {
        info.counts = self.counts();
        info.shards = self.shards;
        write_parquet(&dir.join("manifest.parquet"), manifest)?;
        let rejects = &self.rejects;
        let col =
            |f: fn(&Reject) -> &String| rejects.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
        let mut table = polars::df!(
            "sample_id" => col(|r| &r.sample_id),
            "source" => col(|r| &r.source),
            "reason" => col(|r| &r.reason),
        )
        .expect("columns have equal length");
        write_parquet(&dir.join("rejects.parquet"), &mut table)?;
        write_atomic(
            &dir.join("dataset.json"),
            &serde_json::to_vec_pretty(&info).expect("info serialises"),
        )?;
        let parts = dir.join("parts");
        std::fs::remove_dir_all(&parts).map_err(|e| Error::io("failed to remove", &parts, e))?;
        Ok(info)
    }

    /// The error for a dataset with no sample at all, naming `inputs`.
    pub fn check_not_empty(&self, inputs: &str) -> Result<()> {
        if !self.rows.is_empty() {
            return Ok(());
        }
        Err(Error::NoInput {
            inputs: inputs.to_string(),
            rejected: self.rejects.len(),
            first_reason: self
                .rejects
                .first()
                .map_or_else(|| "none".to_string(), |r| r.reason.clone()),
        })
    }
}

/// One process's share of a dataset write: where, which shards, with how
/// many threads, and who hears of progress.
pub struct Job<'a> {
    /// The dataset directory (created if needed).
    pub dir: &'a Path,
    /// Which shards are this process's.
    pub part: Partition,
    /// Threads to write them with.
    pub threads: usize,
    /// Receives the number of inputs this process has handled so far.
    pub progress: &'a (dyn Fn(usize) + Sync),
}

impl<'a> Job<'a> {
    /// The whole write on one process.
    pub fn single(dir: &'a Path, threads: usize, progress: &'a (dyn Fn(usize) + Sync)) -> Self {
        Job {
            dir,
            part: Partition::SINGLE,
            threads,
            progress,
        }
    }

    /// Writes this process's shards of `plan` and its part file. `fill`
    /// produces one shard's samples and calls its last argument with the
    /// number of inputs it has just handled; `head` carries the header and
    /// any rejects found while planning (which one rank should report).
    pub(crate) fn write<M, R, H, F>(
        &self,
        layout: &Layout,
        plan: &[Planned<M>],
        head: Part<R, H>,
        fill: F,
    ) -> Result<()>
    where
        M: Sync,
        R: Serialize + Send,
        H: Serialize,
        F: Fn(&Planned<M>, &mut ShardBuffer<R>, &dyn Fn(usize)) -> Result<()> + Sync,
    {
        for sub in ["shards", "parts"] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io("failed to create", &d, e))?;
        }
        let Partition { rank, size } = self.part;
        let mine: Vec<&Planned<M>> = plan.iter().filter(|s| s.index % size == rank).collect();
        let done = AtomicUsize::new(0);
        let tick = |n: usize| (self.progress)(done.fetch_add(n, Ordering::Relaxed) + n);
        let written = crate::pool::map(self.threads, &mine, |shard| {
            let mut buf = ShardBuffer {
                x: Vec::new(),
                y: Vec::new(),
                rows: Vec::new(),
                rejects: Vec::new(),
            };
            fill(shard, &mut buf, &tick)?;
            self.store(layout, shard.index, shard.split, buf)
        })?;
        let mut merged = head;
        for w in written {
            merged.shards.extend(w.record);
            merged.rows.extend(w.rows);
            merged.rejects.extend(w.rejects);
        }
        write_atomic(
            &part_path(self.dir, rank),
            &serde_json::to_vec(&merged).expect("part serialises"),
        )
    }

    /// Serialises a filled shard (none when all its inputs were rejected).
    fn store<R>(
        &self,
        layout: &Layout,
        index: usize,
        split: Split,
        buf: ShardBuffer<R>,
    ) -> Result<Written<R>> {
        let n = buf.rows.len();
        if n == 0 {
            return Ok(Written {
                record: None,
                rows: buf.rows,
                rejects: buf.rejects,
            });
        }
        let file = shard_name(index);
        let path = self.dir.join(&file);
        let fmt_err = |e: safetensors::SafeTensorError| {
            Error::format(&path, None, format!("cannot serialise shard: {e}"))
        };
        let shape = |per_sample: &[usize]| [&[n][..], per_sample].concat();
        let xv = TensorView::new(layout.x.0, shape(&layout.x.1), &buf.x).map_err(fmt_err)?;
        let yv = TensorView::new(layout.y.0, shape(&layout.y.1), &buf.y).map_err(fmt_err)?;
        // One metadata entry only: safetensors stores metadata as a hash map, whose
        // order (and so the file's bytes) would otherwise change from run to run.
        let meta = [("split".to_string(), split.as_str().to_string())]
            .into_iter()
            .collect();
        let bytes =
            safetensors::tensor::serialize([("x", xv), ("y", yv)], Some(meta)).map_err(fmt_err)?;
        write_atomic(&path, &bytes)?;
        Ok(Written {
            record: Some(ShardRecord {
                index,
                file,
                split,
                samples: n,
                bytes: bytes.len() as u64,
                blake3: blake3::hash(&bytes).to_hex().to_string(),
            }),
            rows: buf.rows,
            rejects: buf.rejects,
        })
    }
}

/// One shard as a worker thread hands it back.
struct Written<R> {
    record: Option<ShardRecord>,
    rows: Vec<R>,
    rejects: Vec<Reject>,
}

fn part_path(dir: &Path, rank: usize) -> PathBuf {
    dir.join("parts").join(format!("part-{rank:05}.json"))
}

/// Reads the part files that `world_size` processes wrote and merges them:
/// rank 0's header, shards by number, rows in manifest order, rejects sorted.
pub(crate) fn merge<R, H>(dir: &Path, world_size: usize) -> Result<Part<R, H>>
where
    R: DeserializeOwned + ManifestRow,
    H: DeserializeOwned,
{
    let mut all: Option<Part<R, H>> = None;
    for rank in 0..world_size {
        let p = part_path(dir, rank);
        let text = std::fs::read(&p).map_err(|e| Error::io("failed to read", &p, e))?;
        let part: Part<R, H> = serde_json::from_slice(&text).map_err(|e| Error::Parse {
            path: p.clone(),
            what: "part file",
            source: e,
        })?;
        match &mut all {
            None => all = Some(part),
            Some(all) => {
                all.shards.extend(part.shards);
                all.rows.extend(part.rows);
                all.rejects.extend(part.rejects);
            }
        }
    }
    let mut all = all.ok_or_else(|| Error::Config("no process wrote a part".into()))?;
    all.shards.sort_by_key(|s| s.index);
    all.rows.sort_by_key(|r| (r.place().shard, r.place().index));
    all.rejects.sort();
    Ok(all)
}

/// The key that orders samples within a split: a BLAKE3 of the seed and
/// the sample id, so the order is stable under added or removed inputs,
/// independent of the order they were listed in, and different for each seed.
pub(crate) fn order_key(seed: u64, id: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(id.as_bytes());
    *h.finalize().as_bytes()
}

/// BLAKE3 over the shards' own checksums, in shard order: what a dataset
/// whose inputs are generated, or read in bulk, is made of.
pub(crate) fn shards_digest(shards: &[ShardRecord]) -> String {
    let mut h = blake3::Hasher::new();
    for s in shards {
        h.update(s.blake3.as_bytes());
    }
    h.finalize().to_hex().to_string()
}
