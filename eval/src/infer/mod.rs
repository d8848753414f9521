//! Inference at survey scale: a trained model over inputs no one has
//! labelled, into a catalogue.
//!
//! The inputs are cut into chunks of a fixed size, in input order. Rank `r`
//! of `R` scores chunks `r, r + R, ...`; each finished chunk is written, as
//! a Parquet file of results and one of rejects, into a directory that
//! outlives a stopped run, so a run stopped by its time limit (SIGUSR1,
//! checked between rounds of chunks, on all ranks at once) or killed
//! outright resumes from the chunks it finished. Rank 0 then concatenates
//! the chunks in order, so the catalogue is the same whatever the ranks and
//! however often the run stopped. Memory holds one chunk per rank, however
//! many inputs there are.
//!
//! [`classifier`] catalogues galaxy images, [`regressor`] waveforms.

pub mod classifier;
pub mod regressor;

use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use sciflow_ingest::contract::Reject;
use sciflow_ingest::files::{write_atomic, write_parquet};
use sciflow_train::{preempt, Comm};

use crate::{Error, Result};

/// The catalogue's file name.
pub const CATALOGUE: &str = "catalogue.parquet";
/// The rejected inputs' file name.
pub const REJECTS: &str = "rejects.parquet";
/// The summary's file name.
pub const SUMMARY: &str = "catalogue.json";

/// Inputs per chunk unless told otherwise.
pub(crate) fn default_chunk() -> NonZeroUsize {
    NonZeroUsize::new(1024).expect("positive")
}

/// Samples per forward pass unless told otherwise: a CPU worker (one
/// libtorch thread) scores 16-32 images of 64 px fastest (measured: 756
/// images/s at 32 against 631 at 128 on 2 cores).
pub(crate) fn default_infer_batch() -> NonZeroUsize {
    NonZeroUsize::new(32).expect("positive")
}

/// How a run is spread and where its finished chunks are kept.
pub struct Chunks<'a> {
    /// The job's ranks.
    pub comm: &'a dyn Comm,
    /// Where finished chunks are kept (a stage's checkpoint directory):
    /// chunks found there are not scored again.
    pub dir: &'a Path,
    /// Inputs per chunk.
    pub size: NonZeroUsize,
    /// Threads this rank prepares inputs with, and CPU workers it scores
    /// them with (one libtorch thread each).
    pub threads: usize,
    /// Called with the number of inputs each finished chunk covered.
    pub progress: &'a (dyn Fn(usize) + Sync),
}

/// One chunk's results: a table of the inputs read, and the rejects.
pub(crate) struct ChunkOut {
    pub(crate) table: DataFrame,
    pub(crate) rejects: Vec<Reject>,
}

fn chunk_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("chunk-{k:06}.parquet"))
}

fn rejects_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("rejects-{k:06}.parquet"))
}

/// Scores `0..n` in chunks with `score` (this rank's share, skipping chunks
/// already in `chunks.dir`); returns how many chunks this rank scored now.
/// Every rank calls it; a stop asked for on any rank ends every rank, after
/// the same round, with [`sciflow_train::Error::Preempted`].
pub(crate) fn run_chunks(
    n: usize,
    chunks: &Chunks<'_>,
    mut score: impl FnMut(Range<usize>) -> Result<ChunkOut>,
) -> Result<usize> {
    let dir = chunks.dir;
    std::fs::create_dir_all(dir).map_err(Error::io("failed to create", dir))?;
    let size = chunks.size.get();
    let count = n.div_ceil(size);
    let (rank, ranks) = (chunks.comm.rank(), chunks.comm.size());
    let mut scored = 0;
    for round in 0..count.div_ceil(ranks) {
        // Every rank asks, every round, so all stop after the same one.
        if preempt::agreed(chunks.comm) {
            return Err(Error::Model(sciflow_train::Error::Preempted {
                step: round * ranks,
                dir: dir.to_path_buf(),
            }));
        }
        let k = round * ranks + rank;
        if k >= count {
            continue;
        }
        let range = k * size..((k + 1) * size).min(n);
        let len = range.len();
        if !chunk_path(dir, k).is_file() {
            let mut out = score(range)?;
            // Rejects first: the chunk's table is what marks it finished.
            write_parquet(&rejects_path(dir, k), &mut rejects_frame(&out.rejects))?;
            write_parquet(&chunk_path(dir, k), &mut out.table)?;
            scored += 1;
        }
        (chunks.progress)(len);
    }
    Ok(scored)
}

/// Concatenates the `n` inputs' chunks from `dir` into `out`'s catalogue and
/// rejects (rank 0, after every rank finished), a chunk at a time, so memory
/// stays flat; extra rejects (inputs that could not even be listed) go
/// first. Returns (rows, rejects).
pub(crate) fn gather(
    n: usize,
    chunks: &Chunks<'_>,
    extra_rejects: &[Reject],
    out: &Path,
) -> Result<(usize, usize)> {
    let count = n.div_ceil(chunks.size.get());
    std::fs::create_dir_all(out).map_err(Error::io("failed to create", out))?;
    let extra = chunks.dir.join("rejects-listing.parquet");
    write_parquet(&extra, &mut rejects_frame(extra_rejects))?;
    let rejects_in = std::iter::once(extra).chain((0..count).map(|k| rejects_path(chunks.dir, k)));
    let (rejects_tmp, rejected, first) = concat_parquet(rejects_in, &out.join(REJECTS))?;
    let (table_tmp, rows, _) = concat_parquet(
        (0..count).map(|k| chunk_path(chunks.dir, k)),
        &out.join(CATALOGUE),
    )?;
    if rows == 0 && rejected > 0 {
        let _ = std::fs::remove_file(&rejects_tmp);
        let _ = std::fs::remove_file(&table_tmp);
        return Err(Error::Mismatch(format!(
            "none of the {rejected} input(s) could be read; the first: {}",
            first.unwrap_or_default()
        )));
    }
    for (tmp, path) in [(rejects_tmp, REJECTS), (table_tmp, CATALOGUE)] {
        let path = out.join(path);
        std::fs::rename(&tmp, &path).map_err(Error::io("failed to rename into", &path))?;
    }
    Ok((rows, rejected))
}

/// Writes the tables of `parts` one after the other into a temporary
/// sibling of `path`, one row group each; returns it, the rows written and
/// the first value of a `reason` column, if any.
fn concat_parquet(
    parts: impl Iterator<Item = PathBuf>,
    path: &Path,
) -> Result<(PathBuf, usize, Option<String>)> {
    let table_err = |op, p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Table {
            op,
            path: p,
            source,
        }
    };
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(Error::io("failed to create", &tmp))?;
    let mut writer = None;
    let (mut rows, mut first) = (0, None);
    for part in parts {
        let f = std::fs::File::open(&part).map_err(Error::io("failed to open", &part))?;
        let df = ParquetReader::new(f)
            .finish()
            .map_err(table_err("read", &part))?;
        if first.is_none() && df.height() > 0 {
            first = df
                .column("reason")
                .ok()
                .and_then(|c| c.str().ok()?.get(0).map(str::to_string));
        }
        rows += df.height();
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(
                ParquetWriter::new(
                    file.try_clone()
                        .map_err(Error::io("failed to open", &tmp))?,
                )
                .batched(df.schema())
                .map_err(table_err("write", path))?,
            ),
        };
        w.write_batch(&df).map_err(table_err("write", path))?;
    }
    match writer {
        Some(w) => {
            w.finish().map_err(table_err("write", path))?;
        }
        None => {
            ParquetWriter::new(file)
                .finish(&mut DataFrame::default())
                .map_err(table_err("write", path))?;
        }
    }
    Ok((tmp, rows, first))
}

fn rejects_frame(rejects: &[Reject]) -> DataFrame {
    let col = |f: fn(&Reject) -> &str| rejects.iter().map(f).collect::<Vec<&str>>();
    df!(
        "sample_id" => col(|r| &r.sample_id),
        "source" => col(|r| &r.source),
        "reason" => col(|r| &r.reason),
    )
    .expect("equal columns")
}

/// Prepares inputs `range` with `prepare` on `threads` threads, each taking
/// a contiguous share; returns, in input order, the values of those that
/// were read (each `len` long) with their indices, and the errors of the
/// others.
pub(crate) fn prepare_chunk<E, P>(
    range: Range<usize>,
    len: usize,
    threads: usize,
    prepare: &P,
) -> (Vec<f32>, Vec<usize>, Vec<(usize, E)>)
where
    E: Send,
    P: Fn(usize, &mut Vec<f32>) -> std::result::Result<(), E> + Sync,
{
    let per = range.len().div_ceil(threads.max(1)).max(1);
    let shares: Vec<Range<usize>> = range
        .clone()
        .step_by(per)
        .map(|s| s..(s + per).min(range.end))
        .collect();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    let mut x = Vec::with_capacity(share.len() * len);
                    let (mut ok, mut bad) = (Vec::new(), Vec::new());
                    for i in share {
                        let at = x.len();
                        match prepare(i, &mut x) {
                            Ok(()) if x.len() == at + len => ok.push(i),
                            Ok(()) => x.truncate(at),
                            Err(e) => {
                                x.truncate(at);
                                bad.push((i, e));
                            }
                        }
                    }
                    (x, ok, bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a preparing thread panicked"))
            .collect::<Vec<_>>()
    });
    let (mut x, mut ok, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for (px, pok, pbad) in parts {
        x.extend(px);
        ok.extend(pok);
        bad.extend(pbad);
    }
    (x, ok, bad)
}

/// Runs `forward` over a chunk's batches (`x`: samples of `len` values;
/// `width` outputs each), batch `b` on worker `b % models.len()`. Each
/// worker is a thread with its own copy of the model and one libtorch
/// thread, so a sample's result is the same bits however many workers there
/// are: the catalogue does not depend on the cores or ranks a run had.
pub(crate) fn score_batches<M, F>(
    models: &mut [M],
    x: &[f32],
    len: usize,
    batch: usize,
    width: usize,
    forward: &F,
) -> Result<Vec<f32>>
where
    M: Send,
    F: Fn(&M, &[f32], &mut [f32]) -> Result<()> + Sync,
{
    let mut out = vec![0f32; x.len() / len.max(1) * width];
    let workers = models.len().max(1);
    let mut shares: Vec<Vec<(&[f32], &mut [f32])>> = (0..workers).map(|_| Vec::new()).collect();
    for (b, pair) in x
        .chunks(batch * len)
        .zip(out.chunks_mut(batch * width))
        .enumerate()
    {
        shares[b % workers].push(pair);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = models
            .iter_mut()
            .zip(shares)
            .map(|(model, share)| {
                scope.spawn(move || -> Result<()> {
                    crate::one_thread(|| {
                        for (x, y) in share {
                            forward(model, x, y)?;
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a scoring thread panicked"))
    })?;
    Ok(out)
}

/// How many copies of the model score side by side: one per thread on the
/// CPU, one on a GPU (which runs a batch's samples in parallel itself).
pub(crate) fn workers(device: tch::Device, threads: usize) -> usize {
    if device.is_cuda() {
        1
    } else {
        threads.max(1)
    }
}

/// `catalogue.json`: what was run on what, and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueSummary {
    /// The model directory.
    pub model: String,
    /// BLAKE3 of the model's weights.
    pub model_blake3: String,
    /// What was catalogued.
    pub inputs: String,
    /// Inputs listed.
    pub total: usize,
    /// Rows in the catalogue.
    pub catalogued: usize,
    /// Rows in `rejects.parquet`.
    pub rejected: usize,
    /// Ranks that scored.
    pub ranks: usize,
    /// Inputs per chunk.
    pub chunk_size: usize,
    /// Chunks this run scored (the rest were finished by a stopped run).
    pub chunks_scored: usize,
    /// Seconds of this run, from loading the model to the written catalogue.
    pub seconds: f64,
    /// Inputs per second over those seconds (those scored by this run).
    pub inputs_per_second: f64,
    /// Everything else the kind records (classes, decision, targets).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What a kind reports after its chunks are scored.
pub(crate) struct Finish<'a> {
    pub(crate) model: &'a Path,
    pub(crate) inputs: String,
    pub(crate) total: usize,
    pub(crate) started: Instant,
    pub(crate) scored_chunks: usize,
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

/// The common end of every inference: all ranks wait for each other; rank 0
/// gathers the chunks and writes `catalogue.json`. Returns the summary on
/// rank 0.
pub(crate) fn finish(
    chunks: &Chunks<'_>,
    f: Finish<'_>,
    extra_rejects: &[Reject],
    out: &Path,
) -> Result<Option<CatalogueSummary>> {
    let mut scored = [f.scored_chunks as f64];
    chunks.comm.allreduce_sum_f64(&mut scored);
    chunks.comm.barrier();
    if chunks.comm.rank() != 0 {
        return Ok(None);
    }
    let (catalogued, rejected) = gather(f.total, chunks, extra_rejects, out)?;
    let weights = f.model.join(sciflow_train::model_dir::WEIGHTS);
    let bytes = std::fs::read(&weights).map_err(Error::io("failed to read", &weights))?;
    let seconds = f.started.elapsed().as_secs_f64();
    let scored_chunks = scored[0] as usize;
    let size = chunks.size.get();
    let summary = CatalogueSummary {
        model: f.model.display().to_string(),
        model_blake3: blake3::hash(&bytes).to_hex().to_string(),
        inputs: f.inputs,
        total: f.total + extra_rejects.len(),
        catalogued,
        rejected,
        ranks: chunks.comm.size(),
        chunk_size: size,
        chunks_scored: scored_chunks,
        seconds,
        inputs_per_second: (scored_chunks * size).min(f.total) as f64 / seconds.max(1e-9),
        extra: f.extra,
    };
    write_atomic(
        &out.join(SUMMARY),
        &serde_json::to_vec_pretty(&summary).expect("summary serialises"),
    )?;
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sciflow_train::Single;

    fn chunks<'a>(dir: &'a Path, progress: &'a (dyn Fn(usize) + Sync)) -> Chunks<'a> {
        Chunks {
            comm: &Single,
            dir,
            size: NonZeroUsize::new(3).unwrap(),
            threads: 2,
            progress,
        }
    }

    /// Inputs `range` as a table of their indices, odd ones rejected.
    fn score(range: Range<usize>) -> Result<ChunkOut> {
        let ok: Vec<u32> = range
            .clone()
            .filter(|i| i % 2 == 0)
            .map(|i| i as u32)
            .collect();
        Ok(ChunkOut {
            table: df!("i" => ok).unwrap(),
            rejects: range
                .filter(|i| i % 2 == 1)
                .map(|i| Reject {
                    sample_id: i.to_string(),
                    source: format!("f{i}"),
                    reason: format!("bad {i}"),
                })
                .collect(),
        })
    }

    fn column(path: &Path, name: &str) -> Vec<String> {
        let df = ParquetReader::new(std::fs::File::open(path).unwrap())
            .finish()
            .unwrap();
        let c = df.column(name).unwrap().cast(&DataType::String).unwrap();
        c.str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect()
    }

    #[test]
    fn chunks_are_scored_once_and_gathered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (work, out) = (dir.path().join("chunks"), dir.path().join("out"));
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let progress = |n: usize| {
            seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        let c = chunks(&work, &progress);
        assert_eq!(run_chunks(10, &c, score).unwrap(), 4);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 10);
        // A second pass finds every chunk finished and scores none.
        assert_eq!(run_chunks(10, &c, |_| panic!("scored again")).unwrap(), 0);
        let listing = [Reject {
            sample_id: "x".into(),
            source: "x.txt".into(),
            reason: "not an input".into(),
        }];
        assert_eq!(gather(10, &c, &listing, &out).unwrap(), (5, 6));
        assert_eq!(column(&out.join(CATALOGUE), "i"), ["0", "2", "4", "6", "8"]);
        assert_eq!(
            column(&out.join(REJECTS), "sample_id"),
            ["x", "1", "3", "5", "7", "9"]
        );
    }

    #[test]
    fn a_run_whose_every_input_fails_is_an_error_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (work, out) = (dir.path().join("chunks"), dir.path().join("out"));
        let c = chunks(&work, &|_| {});
        run_chunks(4, &c, |range| {
            let mut o = score(range.clone())?;
            o.table = df!("i" => Vec::<u32>::new()).unwrap();
            o.rejects = range
                .map(|i| Reject {
                    sample_id: i.to_string(),
                    source: format!("f{i}"),
                    reason: format!("bad {i}"),
                })
                .collect();
            Ok(o)
        })
        .unwrap();
        let err = gather(4, &c, &[], &out).unwrap_err().to_string();
        assert!(
            err.contains("none of the 4 input(s)") && err.contains("bad 0"),
            "{err}"
        );
        assert!(
            !out.join(CATALOGUE).exists(),
            "no catalogue that looks complete"
        );
    }
}
