//! Waveforms into a dataset: generated banks, LVC NR injection files and SXS
//! files in, the DESIGN.md contract out (`x` [n, 2, T] f32: h+ and hx of the
//! (2,2) mode; `y` [n, 3] f32: q, chi1z, chi2z).
//!
//! Every waveform is aligned so the peak of its amplitude is t = 0, resampled
//! onto one uniform grid (`dt` M over `window`), turned into h+ = A cos(phi)
//! and hx = -A sin(phi), and divided by its largest amplitude in the window
//! (the shape carries the parameters; the overall scale depends on distance).
//! As with images, the split depends only on sample ids and the seed, and
//! processes cooperate in the two phases of every writer:
//! [`DatasetWriter::write_partition`] on every process, then
//! [`DatasetWriter::finalize`] on one.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use crate::contract::{
    DatasetInfo, OnError, Provenance, Reject, Split, SplitFractions, TensorSchema,
};
use crate::readers::waveforms::{read_bank, read_lvcnr, read_sxs, Bank, Waveform};
use crate::shards::{self, Layout, ManifestRow, Part, Place, Planned, ShardBuffer};
pub use crate::writers::write_dataset;
use crate::writers::{DatasetWriter, Job};
use crate::{Error, Result};

/// Configuration of `ingest.waveforms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveformsConfig {
    /// Bank files, LVC NR files, SXS files (with `metadata.json` beside them),
    /// or folders holding any of these (`*.h5`, not descending).
    pub inputs: Vec<PathBuf>,
    /// Sample spacing of the grid, in M.
    #[serde(default = "default_dt")]
    pub dt: f64,
    /// The grid's [start, end] in M relative to the peak; unset: the span
    /// every input covers.
    #[serde(default)]
    pub window: Option<[f64; 2]>,
    /// Extrapolation order read from SXS files.
    #[serde(default = "default_order")]
    pub sxs_order: u32,
    /// Validation and test fractions (a random split by sample id).
    #[serde(default)]
    pub split: SplitFractions,
    /// Samples per shard.
    #[serde(default = "default_shard")]
    pub shard_size: NonZeroUsize,
    /// What a file that cannot be read does: `skip` records it in `rejects.parquet`.
    #[serde(default)]
    pub on_error: OnError,
    /// The network's input channels.
    #[serde(default)]
    pub representation: Representation,
    /// Rotate each waveform so the (2,2) mode's phase is 0 at the peak
    /// (default). A non-precessing binary's overall phase says nothing of
    /// its masses and spins; left as generated, it is a nuisance the network
    /// must learn to ignore from examples.
    #[serde(default = "default_true")]
    pub align_phase: bool,
}

fn default_true() -> bool {
    true
}

/// How a waveform becomes input channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Representation {
    /// h+ and hx of the (2,2) mode divided by the peak amplitude (2 channels).
    #[default]
    Strain,
    /// cos(phi) and -sin(phi) of the (2,2) mode (h+ and hx at unit amplitude)
    /// and the amplitude over its peak (3 channels): the early inspiral's
    /// phase, where most of the cycles are, reaches the network at full scale
    /// instead of at a tenth of the merger's amplitude.
    PhaseAmplitude,
}

impl Representation {
    /// Channels per sample.
    pub fn channels(self) -> usize {
        match self {
            Representation::Strain => 2,
            Representation::PhaseAmplitude => 3,
        }
    }
}

fn default_dt() -> f64 {
    1.0
}
fn default_order() -> u32 {
    2
}
fn default_shard() -> NonZeroUsize {
    NonZeroUsize::new(512).unwrap()
}

/// The names of the target values, in `y` order.
pub const TARGETS: [&str; 3] = ["q", "chi1z", "chi2z"];

/// Where one sample comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Item {
    Bank { path: PathBuf, index: usize },
    Lvc { path: PathBuf },
    Sxs { path: PathBuf },
}

impl Item {
    fn id(&self) -> String {
        let stem = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        match self {
            Item::Bank { path, index } => format!("{}#{index}", stem(path)),
            Item::Lvc { path } => stem(path),
            // SXS files share a name; the simulation is the folder.
            Item::Sxs { path } => path
                .parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| stem(path)),
        }
    }

    fn source(&self) -> String {
        match self {
            Item::Bank { path, index } => format!("{}#{index}", path.display()),
            Item::Lvc { path } | Item::Sxs { path } => path.display().to_string(),
        }
    }
}

/// Lists the samples of the inputs, classifying each HDF5 file by its layout.
fn list_items(config: &WaveformsConfig) -> Result<(Vec<Item>, Vec<Reject>)> {
    let mut files = Vec::new();
    for input in &config.inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| Error::io("failed to list", input, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "h5" || e == "hdf5"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::format(input, None, "the folder holds no .h5 files"));
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let mut items = Vec::new();
    let mut rejects = Vec::new();
    for path in files {
        let kind = (|| -> std::result::Result<Vec<Item>, String> {
            let f = hdf5::File::open(&path).map_err(|e| e.to_string())?;
            if f.link_exists("params") {
                let n = f
                    .dataset("params")
                    .map_err(|e| e.to_string())?
                    .shape()
                    .first()
                    .copied()
                    .unwrap_or(0);
                Ok((0..n)
                    .map(|index| Item::Bank {
                        path: path.clone(),
                        index,
                    })
                    .collect())
            } else if f.link_exists("amp_l2_m2") {
                Ok(vec![Item::Lvc { path: path.clone() }])
            } else if f
                .member_names()
                .map_err(|e| e.to_string())?
                .iter()
                .any(|n| n.starts_with("Extrapolated_N"))
            {
                Ok(vec![Item::Sxs { path: path.clone() }])
            } else {
                Err("not a waveform file: expected a bank (/params), an LVC NR file (/amp_l2_m2) or an SXS file (/Extrapolated_N*.dir)".into())
            }
        })();
        match kind {
            Ok(v) => items.extend(v),
            Err(e) if config.on_error == OnError::Skip => {
                tracing::warn!("skipping {}: {e}", path.display());
                rejects.push(Reject {
                    sample_id: path.display().to_string(),
                    source: path.display().to_string(),
                    reason: e,
                });
            }
            Err(e) => return Err(Error::format(&path, None, e)),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for it in &items {
        if !seen.insert(it.id()) {
            return Err(Error::Config(format!(
                "two inputs give the sample id {}: {}",
                it.id(),
                it.source()
            )));
        }
    }
    Ok((items, rejects))
}

/// A bank read once and shared by the samples it holds.
struct Banks(std::collections::HashMap<PathBuf, Bank>);

impl Banks {
    fn load(items: &[Item]) -> Result<Banks> {
        let mut map = std::collections::HashMap::new();
        for it in items {
            if let Item::Bank { path, .. } = it {
                if !map.contains_key(path) {
                    map.insert(path.clone(), read_bank(path)?);
                }
            }
        }
        Ok(Banks(map))
    }

    /// The waveform of `it`, checked (see [`Waveform::checked`]).
    fn waveform(&self, it: &Item, config: &WaveformsConfig) -> Result<Waveform> {
        let w = self.read(it, config)?;
        w.checked().map_err(|e| {
            let (path, at) = match it {
                Item::Bank { path, index } => {
                    (path.clone(), Some(format!("row {index} of /params")))
                }
                Item::Lvc { path } | Item::Sxs { path } => (path.clone(), None),
            };
            Error::format(&path, at, e)
        })
    }

    fn read(&self, it: &Item, config: &WaveformsConfig) -> Result<Waveform> {
        match it {
            Item::Bank { path, index } => {
                let b = &self.0[path];
                let t = b.time.len();
                let amp: Vec<f64> = b.amp[index * t..(index + 1) * t]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let phase: Vec<f64> = b.phase[index * t..(index + 1) * t]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                // The bank's convention already puts the peak at t = 0.
                Ok(Waveform {
                    source: it.source(),
                    params: b.params[*index],
                    time: b.time.clone(),
                    amp,
                    phase,
                })
            }
            Item::Lvc { path } => read_lvcnr(path, config.dt.min(1.0)),
            Item::Sxs { path } => {
                let meta = path.with_file_name("metadata.json");
                read_sxs(path, config.sxs_order, &meta)
            }
        }
    }
}

/// The grid: start, spacing, samples.
fn grid(config: &WaveformsConfig, spans: impl Iterator<Item = (f64, f64)>) -> Result<(f64, usize)> {
    let dt = config.dt;
    if dt.is_nan() || dt <= 0.0 {
        return Err(Error::Config(format!("dt must be positive, got {dt}")));
    }
    let [start, end] = match config.window {
        Some(w) => w,
        None => {
            let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
            for (a, b) in spans {
                lo = lo.max(a);
                hi = hi.min(b);
            }
            [lo, hi]
        }
    };
    if !(start.is_finite() && end.is_finite()) || end - start < dt {
        return Err(Error::Config(format!(
            "the window {start}..{end} M holds no samples every {dt} M (the inputs share no common span?)"
        )));
    }
    Ok((start, ((end - start) / dt + 1e-9).floor() as usize + 1))
}

/// Linear interpolation of (t, v) at `x`; within `slack` beyond either end
/// the end value; `None` farther out.
fn interp(t: &[f64], v: &[f64], x: f64, slack: f64) -> Option<f64> {
    let (first, last) = (t[0], t[t.len() - 1]);
    if x < first - slack || x > last + slack {
        return None;
    }
    if x <= first {
        return Some(v[0]);
    }
    if x >= last {
        return Some(v[v.len() - 1]);
    }
    let i = t.partition_point(|&s| s <= x).clamp(1, t.len() - 1);
    let (t0, t1) = (t[i - 1], t[i]);
    let f = if t1 > t0 { (x - t0) / (t1 - t0) } else { 0.0 };
    Some(v[i - 1] + f * (v[i] - v[i - 1]))
}

/// The sample's channels on the grid (see [`Representation`]).
fn channels(
    w: &Waveform,
    start: f64,
    dt: f64,
    n: usize,
    repr: Representation,
    align_phase: bool,
) -> std::result::Result<Vec<f32>, String> {
    // The peak is at t = 0 after alignment.
    let phase0 = if align_phase {
        interp(&w.time, &w.phase, 0.0, 0.0).ok_or("does not cover its own peak (t = 0)")?
    } else {
        0.0
    };
    let mut amp = Vec::with_capacity(n);
    let mut phase = Vec::with_capacity(n);
    for k in 0..n {
        let t = start + k as f64 * dt;
        // A file whose span stops short of the grid by less than half a
        // sample (its peak alignment moved it by a fraction of dt) gives
        // its end value there.
        let slack = dt / 2.0;
        let (Some(a), Some(p)) = (
            interp(&w.time, &w.amp, t, slack),
            interp(&w.time, &w.phase, t, slack),
        ) else {
            return Err(format!(
                "covers {:.1}..{:.1} M after alignment, not the grid {start}..{} M",
                w.time[0],
                w.time[w.time.len() - 1],
                start + (n - 1) as f64 * dt
            ));
        };
        amp.push(a);
        phase.push(p - phase0);
    }
    // |h+ + i hx| is the amplitude itself (non-negative for the readers' output).
    let peak = amp.iter().map(|a| a.abs()).fold(0.0, f64::max);
    if !(peak > 0.0 && peak.is_finite()) {
        return Err("the amplitude is zero or not finite on the grid".into());
    }
    let out: Vec<f64> = match repr {
        Representation::Strain => {
            let hp = amp.iter().zip(&phase).map(|(a, p)| a * p.cos() / peak);
            let hc = amp.iter().zip(&phase).map(|(a, p)| -a * p.sin() / peak);
            hp.chain(hc).collect()
        }
        Representation::PhaseAmplitude => {
            let c = phase.iter().map(|p| p.cos());
            let s = phase.iter().map(|p| -p.sin());
            let a = amp.iter().map(|a| a / peak);
            c.chain(s).chain(a).collect()
        }
    };
    Ok(out.into_iter().map(|v| v as f32).collect())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    sample_id: String,
    #[serde(flatten)]
    place: Place,
    params: [f64; 3],
    source: String,
}

impl ManifestRow for Row {
    fn place(&self) -> &Place {
        &self.place
    }
}

/// The grid every sample is on, carried in the part files: (start, samples).
type Header = (f64, usize);

struct Plan {
    items: Vec<Item>,
    /// Each shard's members, as indices into `items`.
    shards: Vec<Planned<Vec<usize>>>,
    rejects: Vec<Reject>,
    start: f64,
    samples: usize,
    banks: Banks,
}

fn plan(config: &WaveformsConfig, seed: u64) -> Result<Plan> {
    config.split.check()?;
    let (items, rejects) = list_items(config)?;
    if items.is_empty() {
        return Err(Error::Config("the inputs hold no waveforms".into()));
    }
    let banks = Banks::load(&items)?;
    // The common span: banks share their grid; other files are read for theirs.
    let (start, samples) = if config.window.is_some() {
        grid(config, std::iter::empty())?
    } else {
        let mut spans = Vec::new();
        for b in banks.0.values() {
            spans.push((b.time[0], b.time[b.time.len() - 1]));
        }
        for it in items.iter().filter(|i| !matches!(i, Item::Bank { .. })) {
            if let Ok(w) = banks.waveform(it, config) {
                spans.push((w.time[0], w.time[w.time.len() - 1]));
            }
        }
        grid(config, spans.into_iter())?
    };
    let mut order: Vec<([u8; 32], usize)> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (shards::order_key(seed, &it.id()), i))
        .collect();
    order.sort();
    let splits = config.split.assign(order.len());
    let mut shards = Vec::new();
    for split in [Split::Train, Split::Val, Split::Test] {
        let members: Vec<_> = order
            .iter()
            .zip(&splits)
            .filter(|(_, &s)| s == split)
            .map(|(m, _)| *m)
            .collect();
        for chunk in members.chunks(config.shard_size.get()) {
            shards.push(Planned {
                index: shards.len(),
                split,
                members: chunk.iter().map(|m| m.1).collect(),
            });
        }
    }
    Ok(Plan {
        items,
        shards,
        rejects,
        start,
        samples,
        banks,
    })
}

impl DatasetWriter for WaveformsConfig {
    /// Number of waveforms the inputs hold (for progress bars).
    fn input_count(&self) -> Result<usize> {
        let config = self;
        Ok(list_items(config)?.0.len())
    }

    fn write_partition(&self, seed: u64, job: &Job<'_>) -> Result<()> {
        let config = self;
        let plan = plan(config, seed)?;
        let layout = Layout {
            x: (
                Dtype::F32,
                vec![config.representation.channels(), plan.samples],
            ),
            y: (Dtype::F32, vec![3]),
        };
        // Inputs rejected while planning: every rank found them, rank 0 reports them.
        let rejects = if job.part.rank == 0 {
            plan.rejects.clone()
        } else {
            Vec::new()
        };
        let head = Part::new((plan.start, plan.samples), rejects);
        job.write(&layout, &plan.shards, head, |shard, out, tick| {
            fill_shard(config, &plan, shard, out, tick)
        })
    }

    fn finalize(&self, seed: u64, dir: &Path, world_size: usize) -> Result<DatasetInfo> {
        let config = self;
        let all: Part<Row, Header> = shards::merge(dir, world_size)?;
        let inputs = config
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        all.check_not_empty(&inputs)?;
        let (start, samples) = all.header;
        let col = |f: &dyn Fn(&Row) -> String| all.rows.iter().map(f).collect::<Vec<String>>();
        let param = |k: usize| all.rows.iter().map(|r| r.params[k]).collect::<Vec<f64>>();
        let mut manifest = all.manifest(
            col(&|r| r.sample_id.clone()),
            vec![
                Column::new("q".into(), param(0)),
                Column::new("chi1z".into(), param(1)),
                Column::new("chi2z".into(), param(2)),
                Column::new("source".into(), col(&|r| r.source.clone())),
            ],
        );
        let mut info = DatasetInfo::new(
            "waveform_regression",
            TensorSchema::new("x", "F32", vec![config.representation.channels(), samples]),
            TensorSchema::new("y", "F32", vec![3]),
            Provenance::new(
                inputs,
                String::new(),
                shards::shards_digest(&all.shards),
                seed,
                config,
            ),
        );
        info.target_names = TARGETS.iter().map(|s| s.to_string()).collect();
        info.time_grid = Some([start, config.dt, samples as f64]);
        all.publish(dir, &mut manifest, info)
    }
}

fn fill_shard(
    config: &WaveformsConfig,
    plan: &Plan,
    shard: &Planned<Vec<usize>>,
    out: &mut ShardBuffer<Row>,
    tick: &dyn Fn(usize),
) -> Result<()> {
    for &m in &shard.members {
        let it = &plan.items[m];
        let result = plan.banks.waveform(it, config).and_then(|w| {
            channels(
                &w,
                plan.start,
                config.dt,
                plan.samples,
                config.representation,
                config.align_phase,
            )
            .map(|c| (c, w.params))
            .map_err(|e| Error::format(Path::new(&it.source()), None, e))
        });
        match result {
            Ok((data, params)) => {
                out.x.extend(data.iter().flat_map(|v| v.to_le_bytes()));
                out.y
                    .extend(params.iter().flat_map(|v| (*v as f32).to_le_bytes()));
                out.rows.push(Row {
                    sample_id: it.id(),
                    place: shard.place(out.rows.len()),
                    params,
                    source: it.source(),
                });
            }
            Err(e) if config.on_error == OnError::Skip => {
                tracing::warn!("skipping waveform {}: {e}", it.id());
                out.rejects.push(Reject {
                    sample_id: it.id(),
                    source: it.source(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
        tick(1);
    }
    Ok(())
}

mod inputs;
pub use inputs::WaveformInputs;

#[cfg(test)]
mod tests;
