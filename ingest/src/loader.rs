//! The sharded, prefetching loader.
//!
//! For each epoch, the shards of a split are permuted with a seeded RNG
//! (seed, epoch) and dealt round-robin to ranks; rank r reads only its own.
//! Reader threads memory-map shards ahead of use; one assembler thread mixes
//! samples from consecutive shards in a shuffle buffer and cuts contiguous
//! batches into a bounded crossbeam channel whose bound is the prefetch depth
//! (and the back-pressure). Shards reach the assembler in a fixed order
//! whatever the threads' timing, so the same (seed, epoch, world size) gives
//! the same batches in the same order.
//!
//! Ranks must take the same number of steps (every step ends in a collective).
//! Shards are dealt whole, so ranks can hold different sample counts; two
//! policies even them out. By default each rank stops after the fewest batches
//! any rank can fill (the few samples past it are skipped this epoch and land
//! elsewhere in the next permutation). With `pad`, every rank takes the most
//! batches any rank needs, all full: a rank that runs out serves its own
//! epoch's samples again from the start, as PyTorch's `DistributedSampler`
//! pads with repeats.
//!
//! Compact datasets (`x` stored as U8 or F16, [`crate::pixels`]) are turned
//! into the network's f32 input as each sample is copied into its batch, so
//! every consumer sees the batches an F32 dataset would give. (Decoding a
//! whole shard in the reader threads was measured slower: a fresh buffer
//! per shard costs page faults and a second copy.)
//!
//! The position in an epoch is a batch count: [`Loader::epoch_from`] replays
//! the same random choices without assembling the skipped batches, so a
//! resumed run sees exactly the batches an uninterrupted one would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam::channel::{bounded, Receiver};
use memmap2::Mmap;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

use crate::contract::{DatasetInfo, InputDecode, ShardRecord, Split};
use crate::{Error, Result};

/// How batches are formed.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Samples per batch on this rank.
    pub batch_size: usize,
    /// Permute shards and shuffle samples each epoch.
    pub shuffle: bool,
    /// Samples held in the shuffle buffer.
    pub shuffle_buffer: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Threads reading shards.
    pub workers: usize,
    /// Drop a last partial batch.
    pub drop_last: bool,
    /// With `even_steps`: pad short ranks with repeats up to the longest
    /// rank's full batches, instead of stopping every rank at the shortest.
    pub pad: bool,
    /// Stop every rank after the same number of batches (training, where each
    /// step is a collective); when false each rank reads all its samples
    /// (evaluation).
    pub even_steps: bool,
    /// Seed of the permutations.
    pub seed: u64,
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Hand compact inputs (U8, and F16 without a decode step) over as
    /// stored, in [`Batch::compact`], instead of decoding them here: a
    /// consumer with a GPU copies a quarter (U8) or half (F16) of the bytes
    /// and decodes there. F32 datasets are unaffected.
    pub keep_compact: bool,
}

impl LoaderConfig {
    /// A single-process loader with common defaults.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            shuffle_buffer: 1024,
            prefetch: 4,
            workers: 2,
            drop_last: false,
            pad: false,
            even_steps: true,
            seed,
            rank: 0,
            world_size: 1,
            keep_compact: false,
        }
    }
}

/// One batch: inputs `[n, ...sample_shape]` in one contiguous buffer, and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Input values, sample-major; empty when `compact` holds them.
    pub x: Vec<f32>,
    /// The inputs as the dataset stores them, when the loader was asked to
    /// keep them compact ([`LoaderConfig::keep_compact`]).
    pub compact: Option<Compact>,
    /// Shape of `x`, batch axis first.
    pub shape: Vec<usize>,
    /// Class indices (classification datasets; empty otherwise).
    pub y: Vec<i64>,
    /// Regression targets, sample-major, `target_len` per sample (datasets
    /// whose `y` is F32; empty otherwise).
    pub targets: Vec<f32>,
}

/// A batch's inputs as stored: `[n, ...sample_shape]` values of `dtype`,
/// little-endian, and what turns them into the network's input (as
/// [`crate::pixels::decode`] does).
#[derive(Debug, Clone, PartialEq)]
pub struct Compact {
    /// U8 or F16.
    pub dtype: Dtype,
    /// The stored bytes, sample-major.
    pub bytes: Vec<u8>,
    /// Scale, offset and per-sample normalisation (U8 datasets).
    pub decode: Option<InputDecode>,
}

/// How a dataset stores `x`, and what makes it the network's input.
#[derive(Debug, Clone)]
struct XFormat {
    dtype: Dtype,
    shape: Vec<usize>,
    decode: Option<InputDecode>,
}

impl XFormat {
    fn of(info: &DatasetInfo, dir: &Path) -> Result<Self> {
        let Some(dtype) = crate::pixels::dtype_named(&info.x.dtype) else {
            return Err(Error::format(
                dir.join("dataset.json"),
                Some("x.dtype".into()),
                format!("expected F32, F16 or U8, found {}", info.x.dtype),
            ));
        };
        Ok(XFormat {
            dtype,
            shape: info.x.sample_shape.clone(),
            decode: info.decode,
        })
    }

    /// Whether values need more than reading as f32.
    fn converts(&self) -> bool {
        self.dtype != Dtype::F32 || self.decode.is_some()
    }

    /// Whether [`Compact`] can carry these inputs: what the ingest writes
    /// compactly (U8 with its decode, F16 already normalised).
    fn compact(&self) -> bool {
        self.dtype == Dtype::U8 || self.dtype == Dtype::F16 && self.decode.is_none()
    }
}

/// A memory-mapped shard with the byte ranges of its tensors, and how its
/// inputs are stored.
struct ShardData {
    map: Mmap,
    x: std::ops::Range<usize>,
    format: XFormat,
    y: std::ops::Range<usize>,
    samples: usize,
}

impl ShardData {
    /// `target_len`: `None` for class labels (I64), `Some(values per sample)` for F32 targets.
    fn open(
        path: &Path,
        record: &ShardRecord,
        format: &XFormat,
        target_len: Option<usize>,
    ) -> Result<Self> {
        let sample_len: usize = format.shape.iter().product();
        let file = std::fs::File::open(path).map_err(|e| Error::io("failed to open", path, e))?;
        // SAFETY: shards are written once under a temporary name and renamed into
        // place, never modified afterwards, so the mapping cannot change under us.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("failed to map", path, e))?;
        let st = SafeTensors::deserialize(&map)
            .map_err(|e| Error::format(path, None, format!("not a safetensors file: {e}")))?;
        let range = |name: &str, dtype: Dtype, len: usize| -> Result<std::ops::Range<usize>> {
            let t = st
                .tensor(name)
                .map_err(|_| Error::format(path, Some(format!("tensor `{name}`")), "missing"))?;
            if t.dtype() != dtype || t.data().len() != len * dtype.bitsize() / 8 {
                return Err(Error::format(
                    path,
                    Some(format!("tensor `{name}`")),
                    format!(
                        "expected {dtype:?} with {len} values, found {:?} of shape {:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            let start = t.data().as_ptr() as usize - map.as_ptr() as usize;
            Ok(start..start + t.data().len())
        };
        let n = record.samples;
        let x = range("x", format.dtype, n * sample_len)?;
        let y = match target_len {
            None => range("y", Dtype::I64, n)?,
            Some(len) => range("y", Dtype::F32, n * len)?,
        };
        Ok(ShardData {
            map,
            x,
            format: format.clone(),
            y,
            samples: n,
        })
    }

    /// Sample `i`'s stored bytes.
    fn stored_x(&self, i: usize, sample_len: usize) -> &[u8] {
        let width = crate::pixels::width(self.format.dtype);
        let start = self.x.start + i * sample_len * width;
        &self.map[start..start + sample_len * width]
    }

    /// Appends sample `i`'s input values.
    fn extend_x(&self, i: usize, sample_len: usize, out: &mut Vec<f32>) {
        let bytes = self.stored_x(i, sample_len);
        if self.format.converts() {
            crate::pixels::decode(
                self.format.dtype,
                bytes,
                &self.format.shape,
                self.format.decode.as_ref(),
                out,
            );
        } else {
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }

    fn label(&self, i: usize) -> i64 {
        let s = self.y.start + i * 8;
        i64::from_le_bytes(self.map[s..s + 8].try_into().expect("8 bytes"))
    }

    fn target(&self, i: usize, len: usize) -> impl Iterator<Item = f32> + '_ {
        let s = self.y.start + i * len * 4;
        self.map[s..s + len * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Reads batches of one split of a dataset.
pub struct Loader {
    dir: PathBuf,
    info: Arc<DatasetInfo>,
    format: XFormat,
    shards: Vec<ShardRecord>,
    config: LoaderConfig,
}

impl Loader {
    /// Opens `dir`'s dataset for `split`.
    pub fn new(dir: &Path, split: Split, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 || config.world_size == 0 || config.rank >= config.world_size {
            return Err(Error::Config(format!(
                "batch size must be positive and rank < world size (batch {}, rank {}, world {})",
                config.batch_size, config.rank, config.world_size
            )));
        }
        let info = DatasetInfo::load(dir)?;
        let format = XFormat::of(&info, dir)?;
        let shards: Vec<ShardRecord> = info
            .shards
            .iter()
            .filter(|s| s.split == split)
            .cloned()
            .collect();
        if config.pad && config.even_steps && !shards.is_empty() && shards.len() < config.world_size
        {
            return Err(Error::Config(format!(
                "{}: the {} split has {} shards, fewer than the {} ranks, so a rank would have \
                 nothing to pad from; write smaller shards or use fewer ranks",
                dir.display(),
                split.as_str(),
                shards.len(),
                config.world_size
            )));
        }
        Ok(Loader {
            dir: dir.to_path_buf(),
            info: Arc::new(info),
            format,
            shards,
            config,
        })
    }

    /// The dataset description.
    pub fn info(&self) -> &DatasetInfo {
        &self.info
    }

    /// Samples in this split (all ranks).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.samples).sum()
    }

    /// True when the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This rank's shards for `epoch`, in reading order.
    fn rank_shards(&self, epoch: u64, rank: usize) -> Vec<ShardRecord> {
        let mut order: Vec<usize> = (0..self.shards.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut epoch_rng(self.config.seed, epoch, u64::MAX));
        }
        order
            .into_iter()
            .skip(rank)
            .step_by(self.config.world_size)
            .map(|i| self.shards[i].clone())
            .collect()
    }

    /// Batches this rank takes in `epoch`: with `even_steps`, the fewest any
    /// rank can form; otherwise all of its own.
    pub fn steps_per_epoch(&self, epoch: u64) -> usize {
        let batches = |r: usize| {
            let n: usize = self.rank_shards(epoch, r).iter().map(|s| s.samples).sum();
            if self.config.drop_last {
                n / self.config.batch_size
            } else {
                n.div_ceil(self.config.batch_size)
            }
        };
        if self.config.even_steps {
            let counts = (0..self.config.world_size).map(batches);
            if self.config.pad {
                counts.max().unwrap_or(0)
            } else {
                counts.min().unwrap_or(0)
            }
        } else {
            batches(self.config.rank)
        }
    }

    /// Starts reading `epoch`; the iterator yields this rank's batches.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// Reads `epoch` from batch `start` on (a saved position): the batches are
    /// those [`Loader::epoch`] yields after its first `start`.
    pub fn epoch_from(&self, epoch: u64, start: usize) -> EpochIter {
        let shards = self.rank_shards(epoch, self.config.rank);
        let steps = self.steps_per_epoch(epoch);
        let pad = self.config.pad && self.config.even_steps;
        let sample_len = self.info.sample_len();
        let targets = target_len(&self.info);
        let workers = self.config.workers.max(1);
        // One bounded channel per reader; the assembler takes shard i from reader
        // i % workers, which fixes the order whatever the threads' timing.
        let mut shard_rx = Vec::new();
        let mut handles = Vec::new();
        for w in 0..workers {
            let (tx, rx) = bounded::<Result<Arc<ShardData>>>(2);
            shard_rx.push(rx);
            let mine: Vec<ShardRecord> = shards.iter().skip(w).step_by(workers).cloned().collect();
            let dir = self.dir.clone();
            let format = self.format.clone();
            handles.push(std::thread::spawn(move || {
                for rec in mine {
                    let data =
                        ShardData::open(&dir.join(&rec.file), &rec, &format, targets).map(Arc::new);
                    let failed = data.is_err();
                    if tx.send(data).is_err() || failed {
                        return;
                    }
                }
            }));
        }
        let (batch_tx, batch_rx) = bounded::<Result<Batch>>(self.config.prefetch.max(1));
        let cfg = self.config.clone();
        let sample_shape = self.info.x.sample_shape.clone();
        let n_shards = shards.len();
        let compact = (self.config.keep_compact && self.format.compact()).then(|| Compact {
            dtype: self.format.dtype,
            bytes: Vec::new(),
            decode: self.format.decode,
        });
        handles.push(std::thread::spawn(move || {
            let mut rng = epoch_rng(cfg.seed, epoch, cfg.rank as u64);
            let mut buffer: Vec<(Arc<ShardData>, usize)> = Vec::new();
            let mut next_shard = 0;
            let mut sent = 0;
            let mut pending: Vec<(Arc<ShardData>, usize)> = Vec::with_capacity(cfg.batch_size);
            // Samples served so far, in order: the repeats a padded rank serves.
            let mut served: Vec<(Arc<ShardData>, usize)> = Vec::new();
            let mut repeat = 0;
            while sent < steps {
                // Keep the shuffle buffer full while shards remain.
                while next_shard < n_shards && buffer.len() < cfg.shuffle_buffer.max(cfg.batch_size)
                {
                    match shard_rx[next_shard % workers].recv() {
                        Ok(Ok(data)) => buffer.extend((0..data.samples).map(|i| (data.clone(), i))),
                        Ok(Err(e)) => {
                            let _ = batch_tx.send(Err(e));
                            return;
                        }
                        Err(_) => return,
                    }
                    next_shard += 1;
                }
                let item = if !buffer.is_empty() {
                    let item = if cfg.shuffle {
                        let pick = rng.random_range(0..buffer.len());
                        buffer.swap_remove(pick)
                    } else {
                        buffer.remove(0)
                    };
                    if pad {
                        served.push(item.clone());
                    }
                    item
                } else if pad && !served.is_empty() {
                    repeat += 1;
                    served[(repeat - 1) % served.len()].clone()
                } else {
                    break;
                };
                pending.push(item);
                let last = !pad && buffer.is_empty() && next_shard >= n_shards;
                if pending.len() == cfg.batch_size || last {
                    // Batches before `start` were consumed before a resume:
                    // the random choices above are replayed, the copy is not.
                    if sent >= start {
                        let batch = assemble(
                            &pending,
                            &sample_shape,
                            sample_len,
                            targets,
                            compact.clone(),
                        );
                        if batch_tx.send(Ok(batch)).is_err() {
                            return;
                        }
                    }
                    pending.clear();
                    sent += 1;
                }
            }
        }));
        EpochIter {
            rx: batch_rx,
            _threads: handles,
        }
    }
}

fn epoch_rng(seed: u64, epoch: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.set_stream(stream);
    rng
}

fn assemble(
    items: &[(Arc<ShardData>, usize)],
    sample_shape: &[usize],
    sample_len: usize,
    target_len: Option<usize>,
    compact: Option<Compact>,
) -> Batch {
    let mut x = Vec::new();
    let mut compact = compact;
    match &mut compact {
        Some(c) => c
            .bytes
            .reserve(items.len() * sample_len * c.dtype.bitsize() / 8),
        None => x.reserve(items.len() * sample_len),
    }
    let mut y = Vec::new();
    let mut targets = Vec::new();
    for (shard, i) in items {
        match &mut compact {
            Some(c) => c.bytes.extend_from_slice(shard.stored_x(*i, sample_len)),
            None => shard.extend_x(*i, sample_len, &mut x),
        }
        match target_len {
            None => y.push(shard.label(*i)),
            Some(len) => targets.extend(shard.target(*i, len)),
        }
    }
    let mut shape = vec![items.len()];
    shape.extend_from_slice(sample_shape);
    Batch {
        x,
        compact,
        shape,
        y,
        targets,
    }
}

/// Values per sample of a dataset's F32 targets, or `None` for I64 class labels.
pub fn target_len(info: &DatasetInfo) -> Option<usize> {
    (info.y.dtype == "F32").then(|| info.y.sample_shape.iter().product::<usize>().max(1))
}

/// The batches of one epoch on one rank.
pub struct EpochIter {
    rx: Receiver<Result<Batch>>,
    _threads: Vec<std::thread::JoinHandle<()>>,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{OnError, SplitFractions};
    use crate::generators::synth::{generate, SynthConfig};
    use crate::writers::galaxy_images::{write_dataset, GalaxyImagesConfig};
    use std::collections::HashMap;
    use std::num::NonZeroUsize;

    /// A dataset of 40 synthetic images in shards of 3 (uneven last shards).
    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let synth = SynthConfig {
            count_per_class: NonZeroUsize::new(20).unwrap(),
            size: NonZeroUsize::new(8).unwrap(),
            noise: 0.1,
            psf_fwhm: 1.0,
        };
        generate(&synth, 3, &dir.path().join("src"), 2, &|_| {}).unwrap();
        let cfg = GalaxyImagesConfig {
            size: NonZeroUsize::new(8).unwrap(),
            split: SplitFractions::new(0.0, 0.2),
            shard_size: NonZeroUsize::new(3).unwrap(),
            on_error: OnError::Fail,
            ..GalaxyImagesConfig::new(dir.path().join("src/labels.csv"))
        };
        write_dataset(&cfg, 3, &dir.path().join("ds"), 2, &|_| {}).unwrap();
        dir
    }

    fn fingerprint(b: &Batch) -> Vec<(u32, i64)> {
        // First pixel's bits identify a sample well enough in synthetic noise.
        let len: usize = b.shape[1..].iter().product();
        (0..b.y.len())
            .map(|i| (b.x[i * len].to_bits(), b.y[i]))
            .collect()
    }

    #[test]
    fn every_sample_exactly_once_and_order_fixed_by_seed_epoch_world() {
        let dir = dataset();
        let ds = dir.path().join("ds");
        let all = {
            let cfg = LoaderConfig {
                shuffle: false,
                ..LoaderConfig::new(1000, 0)
            };
            let l = Loader::new(&ds, Split::Train, cfg).unwrap();
            assert_eq!(l.len(), 32);
            fingerprint(&l.epoch(0).next().unwrap().unwrap())
        };
        for world in [1usize, 2, 3] {
            for workers in [1usize, 3] {
                let mut seen: HashMap<(u32, i64), usize> = HashMap::new();
                let mut orders = Vec::new();
                for rank in 0..world {
                    let cfg = LoaderConfig {
                        shuffle_buffer: 5,
                        prefetch: 1,
                        workers,
                        rank,
                        world_size: world,
                        ..LoaderConfig::new(4, 11)
                    };
                    let l = Loader::new(&ds, Split::Train, cfg).unwrap();
                    let steps = l.steps_per_epoch(0);
                    let batches: Vec<Batch> = l.epoch(0).map(|b| b.unwrap()).collect();
                    assert_eq!(batches.len(), steps, "world {world} rank {rank}");
                    for b in &batches {
                        assert_eq!(b.x.len(), b.y.len() * 64);
                        for f in fingerprint(b) {
                            *seen.entry(f).or_default() += 1;
                        }
                    }
                    orders.push(batches);
                }
                assert!(
                    seen.values().all(|&c| c == 1),
                    "a sample was delivered twice"
                );
                if world == 1 {
                    assert_eq!(seen.len(), all.len(), "one rank sees every sample");
                }
                // Same configuration again: identical batches.
                let cfg = LoaderConfig {
                    shuffle_buffer: 5,
                    prefetch: 1,
                    workers: 1,
                    rank: 0,
                    world_size: world,
                    ..LoaderConfig::new(4, 11)
                };
                let again: Vec<Batch> = Loader::new(&ds, Split::Train, cfg)
                    .unwrap()
                    .epoch(0)
                    .map(|b| b.unwrap())
                    .collect();
                assert_eq!(again, orders[0], "world {world} workers {workers}");
            }
        }
        // Another epoch permutes differently.
        let l = Loader::new(&ds, Split::Train, LoaderConfig::new(32, 11)).unwrap();
        let e0 = l.epoch(0).next().unwrap().unwrap();
        let e1 = l.epoch(1).next().unwrap().unwrap();
        assert_ne!(fingerprint(&e0), fingerprint(&e1));
    }

    #[test]
    fn a_corrupt_shard_is_an_error_naming_it() {
        let dir = dataset();
        let ds = dir.path().join("ds");
        let info = DatasetInfo::load(&ds).unwrap();
        let victim = info.shards.iter().find(|s| s.split == Split::Test).unwrap();
        std::fs::write(ds.join(&victim.file), b"garbage").unwrap();
        let l = Loader::new(&ds, Split::Test, LoaderConfig::new(2, 0)).unwrap();
        let err = l.epoch(0).find_map(|b| b.err()).expect("an error");
        assert!(err.to_string().contains(&victim.file), "{err}");
    }

    /// A classification dataset whose training shards hold `sizes` samples;
    /// sample k's input is the single value k and its label is k, so a batch
    /// names its samples exactly.
    fn numbered_dataset(sizes: &[usize]) -> tempfile::TempDir {
        use safetensors::tensor::TensorView;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shards")).unwrap();
        let mut shards = Vec::new();
        let mut next = 0i64;
        for (index, &n) in sizes.iter().enumerate() {
            let ids: Vec<i64> = (next..next + n as i64).collect();
            next += n as i64;
            let x: Vec<u8> = ids.iter().flat_map(|&k| (k as f32).to_le_bytes()).collect();
            let y: Vec<u8> = ids.iter().flat_map(|k| k.to_le_bytes()).collect();
            let xv = TensorView::new(Dtype::F32, vec![n, 1], &x).unwrap();
            let yv = TensorView::new(Dtype::I64, vec![n], &y).unwrap();
            let bytes = safetensors::tensor::serialize([("x", xv), ("y", yv)], None).unwrap();
            let file = crate::contract::shard_name(index);
            std::fs::write(dir.path().join(&file), &bytes).unwrap();
            shards.push(ShardRecord {
                index,
                file,
                split: Split::Train,
                samples: n,
                bytes: bytes.len() as u64,
                blake3: String::new(),
            });
        }
        let schema = |name: &str, dtype: &str, shape: Vec<usize>| crate::contract::TensorSchema {
            name: name.into(),
            dtype: dtype.into(),
            sample_shape: shape,
        };
        let info = DatasetInfo {
            format: "sciflow-dataset".into(),
            format_version: crate::contract::FORMAT_VERSION,
            kind: "image_classification".into(),
            x: schema("x", "F32", vec![1]),
            decode: None,
            y: schema("y", "I64", vec![]),
            class_names: Vec::new(),
            target_names: Vec::new(),
            time_grid: None,
            shards,
            counts: crate::contract::Counts {
                total: next as usize,
                train: next as usize,
                ..Default::default()
            },
            provenance: crate::contract::Provenance {
                labels: String::new(),
                labels_blake3: String::new(),
                inputs_blake3: String::new(),
                seed: 0,
                config: serde_json::Value::Null,
                created_by: "test".into(),
            },
        };
        std::fs::write(
            dir.path().join("dataset.json"),
            serde_json::to_vec(&info).unwrap(),
        )
        .unwrap();
        dir
    }

    /// Every rank's batches for one epoch, as sample numbers.
    fn deliveries(ds: &Path, cfg: &LoaderConfig, epoch: u64, start: usize) -> Vec<Vec<Vec<i64>>> {
        (0..cfg.world_size)
            .map(|rank| {
                let c = LoaderConfig {
                    rank,
                    ..cfg.clone()
                };
                let l = Loader::new(ds, Split::Train, c).unwrap();
                let batches: Vec<Vec<i64>> =
                    l.epoch_from(epoch, start).map(|b| b.unwrap().y).collect();
                assert_eq!(
                    batches.len(),
                    l.steps_per_epoch(epoch) - start.min(l.steps_per_epoch(epoch))
                );
                batches
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 48, ..Default::default() })]

        /// For any shard sizes, ranks, workers, prefetch depth, batch and
        /// shuffle buffer: evaluation reads every sample exactly once; training
        /// with `pad` serves every sample at least once in equal full batches on
        /// every rank, the repeats being exactly the padding; without `pad` no
        /// sample twice; the order depends only on (seed, epoch, world size),
        /// not on threads or prefetch; and resuming at batch k yields the tail.
        #[test]
        fn delivery_is_exact_and_fixed_by_seed_epoch_world(
            sizes in proptest::collection::vec(1usize..9, 1..9),
            world in 1usize..4,
            workers in 1usize..4,
            prefetch in 1usize..4,
            batch in 1usize..6,
            buffer in 1usize..12,
            seed in 0u64..1000,
            epoch in 0u64..3,
        ) {
            let dir = numbered_dataset(&sizes);
            let total: usize = sizes.iter().sum();
            let base = LoaderConfig {
                shuffle_buffer: buffer,
                prefetch,
                workers,
                world_size: world,
                ..LoaderConfig::new(batch, seed)
            };
            let count = |d: &[Vec<Vec<i64>>]| {
                let mut c = vec![0usize; total];
                for b in d.iter().flatten().flatten() {
                    c[*b as usize] += 1;
                }
                c
            };
            // Evaluation: each rank reads all of its own samples.
            let eval = LoaderConfig { even_steps: false, ..base.clone() };
            proptest::prop_assert!(count(&deliveries(dir.path(), &eval, epoch, 0)).iter().all(|&c| c == 1));
            // Training without padding: equal step counts, no repeats.
            let d = deliveries(dir.path(), &base, epoch, 0);
            proptest::prop_assert!(d.iter().all(|r| r.len() == d[0].len()));
            proptest::prop_assert!(count(&d).iter().all(|&c| c <= 1));
            // Training with padding: equal full batches, every sample served,
            // the extra deliveries exactly the padding.
            // (Padding needs a shard on every rank; training refuses fewer shards than ranks.)
            let train = if sizes.len() >= world {
                LoaderConfig { pad: true, ..base.clone() }
            } else {
                base.clone()
            };
            let d = deliveries(dir.path(), &train, epoch, 0);
            if train.pad {
                proptest::prop_assert!(d.iter().flatten().all(|b| b.len() == batch));
                proptest::prop_assert!(d.iter().all(|r| r.len() == d[0].len()));
                let c = count(&d);
                proptest::prop_assert!(c.iter().all(|&c| c >= 1));
                proptest::prop_assert_eq!(c.iter().sum::<usize>(), world * d[0].len() * batch);
            }
            // Order fixed by (seed, epoch, world): other threads and depth, same batches.
            let other = LoaderConfig { workers: 4 - workers, prefetch: 4 - prefetch, ..train.clone() };
            proptest::prop_assert_eq!(&deliveries(dir.path(), &other, epoch, 0), &d);
            // Resume at batch k: the tail of the uninterrupted epoch.
            let k = d[0].len() / 2;
            let tail: Vec<Vec<Vec<i64>>> = d.iter().map(|r| r[k..].to_vec()).collect();
            proptest::prop_assert_eq!(deliveries(dir.path(), &train, epoch, k), tail);
        }
    }
}
