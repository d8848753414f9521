//! `ingest.galaxy_images`: labelled images (FITS, JPEG, PNG) in, a dataset
//! out (`x` `[n, C, H, W]`, `y` `[n]` i64 class indices). `x` is stored as
//! `dtype:` says ([`crate::pixels`]): 8-bit pixels from JPEG and PNG by
//! default, normalised by the loader; FITS values after normalisation, f32
//! by default.
//!
//! The plan (which sample goes to which split, shard and position) depends
//! only on the labels table, the seed and the shard size, never on the number
//! of processes or threads, so the same inputs and seed give the same shards
//! on a laptop and on a cluster. Processes cooperate in the two phases of
//! every writer: [`DatasetWriter::write_partition`] on every process, then
//! [`DatasetWriter::finalize`] on one.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use crate::contract::{
    DatasetInfo, InputDecode, OnError, Provenance, Reject, Split, SplitFractions, TensorSchema,
};
use crate::pixels::{self, StoreAs};
use crate::preprocess::{normalise, Image, Normalisation};
use crate::readers::catalog::{read_catalog, CatalogOptions, LabelRow, LabelRule};
use crate::readers::fits::{self, Hdu};
use crate::readers::raster;
use crate::shards::{self, Layout, ManifestRow, Part, Place, Planned, ShardBuffer};
pub use crate::writers::write_dataset;
use crate::writers::{DatasetWriter, Job};
use crate::{Error, Result};

/// Configuration of `ingest.galaxy_images`: a labelled image folder into a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GalaxyImagesConfig {
    /// The labels table (CSV or Parquet) with `objid`, `label` and `image` columns;
    /// image paths are relative to the table's folder.
    pub labels: PathBuf,
    /// Output side in pixels (images are centre-cropped, then resized to size x size).
    #[serde(default = "default_size")]
    pub size: NonZeroUsize,
    /// Fraction of each image kept by the centre crop before resizing.
    #[serde(default = "default_crop")]
    pub crop: f32,
    /// Bands stored: 1 averages colour images into one band; unset keeps what the
    /// first readable image has.
    #[serde(default)]
    pub channels: Option<NonZeroUsize>,
    /// The FITS HDU that holds the image (index or EXTNAME); unset takes the
    /// first HDU with image data.
    #[serde(default)]
    pub hdu: Option<Hdu>,
    /// A FITS HDU of per-pixel weights (DES `WGT`): pixels of weight <= 0 are missing.
    #[serde(default)]
    pub weight_hdu: Option<Hdu>,
    /// One file per band: `{band}` in the image path is replaced by each of
    /// these in turn and the planes are stacked in this order.
    #[serde(default)]
    pub bands: Option<Vec<String>>,
    /// Cut a stamp of this many pixels at the row's RA/Dec through the frame's
    /// WCS (for large survey frames) before cropping and resizing, as astropy's
    /// `Cutout2D(..., mode='partial')` cuts it; only the stamp is read.
    #[serde(default)]
    pub cutout: Option<NonZeroUsize>,
    /// The value of a stamp's pixels beyond the frame's edge; unset: missing
    /// (NaN, astropy's default), which `nan` then handles.
    #[serde(default)]
    pub cutout_fill: Option<f32>,
    /// How samples get their class.
    #[serde(default)]
    pub label_rule: LabelRule,
    /// Image path template relative to the table's folder, `{id}` replaced by
    /// the sample id (for tables without an `image` column).
    #[serde(default)]
    pub image_path: Option<String>,
    /// Missing pixels (NaN, BLANK, zero weight): `fill` sets them to zero after
    /// normalisation (the sample is rejected when more than half are missing);
    /// `reject` rejects any sample with one.
    #[serde(default)]
    pub nan: NanPolicy,
    /// Pixel scaling.
    #[serde(default)]
    pub normalisation: Normalisation,
    /// How `x` is stored: `auto` (u8 when every image is JPEG or PNG, f32
    /// otherwise), `u8` (8-bit images only; the loader normalises), `f16` or
    /// `f32` (values after normalisation).
    #[serde(default)]
    pub dtype: StoreAs,
    /// Validation and test fractions; the rest is training data.
    #[serde(default)]
    pub split: SplitFractions,
    /// Samples per shard.
    #[serde(default = "default_shard_size")]
    pub shard_size: NonZeroUsize,
    /// What an unreadable image does: `skip` records it in `rejects.parquet`,
    /// `fail` stops the stage with an error naming it.
    #[serde(default)]
    pub on_error: OnError,
}

impl GalaxyImagesConfig {
    /// A configuration with every option at its default, reading `labels`.
    pub fn new(labels: impl Into<PathBuf>) -> Self {
        GalaxyImagesConfig {
            labels: labels.into(),
            size: default_size(),
            crop: default_crop(),
            channels: None,
            hdu: None,
            weight_hdu: None,
            bands: None,
            cutout: None,
            cutout_fill: None,
            label_rule: LabelRule::Column,
            image_path: None,
            nan: NanPolicy::Fill,
            normalisation: Normalisation::default(),
            dtype: StoreAs::Auto,
            split: SplitFractions::default(),
            shard_size: default_shard_size(),
            on_error: OnError::Skip,
        }
    }
}

fn default_size() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap()
}
fn default_crop() -> f32 {
    1.0
}
fn default_shard_size() -> NonZeroUsize {
    NonZeroUsize::new(256).unwrap()
}

/// Policy for missing pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// Zero after normalisation, unless most of the image is missing.
    #[default]
    Fill,
    /// Any missing pixel rejects the sample.
    Reject,
}

/// A manifest row, as the part files carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    sample_id: String,
    #[serde(flatten)]
    place: Place,
    label: i64,
    source: String,
    source_blake3: String,
    /// Domain columns from the catalogue, when it has them.
    #[serde(default)]
    ra: Option<f64>,
    #[serde(default)]
    dec: Option<f64>,
}

impl ManifestRow for Row {
    fn place(&self) -> &Place {
        &self.place
    }
}

/// What the plan says of the whole dataset, carried in the part files so
/// [`finalize`] need not plan again.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Header {
    classes: Vec<String>,
    channels: usize,
    /// The stored dtype of `x` (safetensors name), decided once from the plan.
    dtype: String,
}

struct Plan {
    header: Header,
    shards: Vec<Planned<Vec<(LabelRow, i64)>>>,
}

fn plan(config: &GalaxyImagesConfig, seed: u64) -> Result<Plan> {
    config.split.check()?;
    if !(config.crop > 0.0 && config.crop <= 1.0) {
        return Err(Error::Config(format!(
            "crop must be in (0, 1], got {}",
            config.crop
        )));
    }
    let catalog = read_catalog(&config.labels, &catalog_options(config))?;
    if catalog.left_out > 0 {
        tracing::info!(
            "{}: {} row(s) left out by the label rule, {} kept",
            config.labels.display(),
            catalog.left_out,
            catalog.rows.len()
        );
    }
    if config.cutout.is_some() {
        if let Some(r) = catalog
            .rows
            .iter()
            .find(|r| r.ra.is_none() || r.dec.is_none())
        {
            return Err(Error::format(
                &config.labels,
                Some("header".into()),
                format!(
                    "`cutout` needs RA and DEC columns; sample {} has none",
                    r.id
                ),
            ));
        }
    }
    if let Some(bands) = &config.bands {
        if bands.is_empty() {
            return Err(Error::Config("`bands` is empty".into()));
        }
        if let Some(r) = catalog
            .rows
            .iter()
            .find(|r| !r.image.to_string_lossy().contains("{band}"))
        {
            return Err(Error::Config(format!(
                "`bands` is set but the image path of sample {} has no {{band}}: {}",
                r.id,
                r.image.display()
            )));
        }
    }
    let rows = catalog.rows;
    let mut classes: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    classes.sort();
    classes.dedup();
    let key = |id: &str| shards::order_key(seed, id);
    let mut by_split: [Vec<([u8; 32], LabelRow, i64)>; 3] = Default::default();
    for (ci, class) in classes.iter().enumerate() {
        let mut members: Vec<_> = rows
            .iter()
            .filter(|r| &r.label == class)
            .map(|r| (key(&r.id), r.clone(), ci as i64))
            .collect();
        members.sort_by_key(|a| a.0);
        let splits = config.split.assign(members.len());
        for (m, s) in members.into_iter().zip(splits) {
            by_split[s as usize].push(m);
        }
    }
    let mut shards: Vec<Planned<Vec<(LabelRow, i64)>>> = Vec::new();
    for (s, split) in [Split::Train, Split::Val, Split::Test]
        .into_iter()
        .enumerate()
    {
        by_split[s].sort_by_key(|a| a.0);
        for chunk in by_split[s].chunks(config.shard_size.get()) {
            shards.push(Planned {
                index: shards.len(),
                split,
                members: chunk.iter().map(|(_, r, l)| (r.clone(), *l)).collect(),
            });
        }
    }
    let channels = match config.channels {
        Some(c) => c.get(),
        None => detect_channels(config, shards.iter().flat_map(|s| s.members.iter()))?,
    };
    let sources: Vec<&Path> = rows.iter().map(|r| r.image.as_path()).collect();
    let dtype = config.dtype.resolve(&sources).map_err(|i| {
        Error::Config(format!(
            "`dtype: u8` stores 8-bit images (JPEG, PNG); sample {} is {} (use f16 or f32)",
            rows[i].id,
            rows[i].image.display()
        ))
    })?;
    Ok(Plan {
        header: Header {
            classes,
            channels,
            dtype: pixels::dtype_name(dtype).into(),
        },
        shards,
    })
}

/// The band count of the first image that reads, in plan order (so every rank agrees).
fn detect_channels<'a>(
    config: &GalaxyImagesConfig,
    mut samples: impl Iterator<Item = &'a (LabelRow, i64)>,
) -> Result<usize> {
    let mut last_err = None;
    for (row, _) in samples.by_ref().take(16) {
        match read_sample(row, config) {
            Ok((img, _)) => return Ok(img.channels),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Config("no images to read".into())))
}

/// Reads one file by its extension (a stamp of it when `cutout` is set),
/// centre-cropped by `crop`; returns the image and the BLAKE3 of the file.
fn read_file(path: &Path, row: &LabelRow, config: &GalaxyImagesConfig) -> Result<(Image, String)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("failed to read", path, e))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let img = if fits::is_fits(path) {
        match (config.cutout, row.ra, row.dec) {
            (Some(size), Some(ra), Some(dec)) => fits::read_stamp(
                path,
                config.hdu.as_ref(),
                config.weight_hdu.as_ref(),
                (ra, dec),
                size.get(),
                config.cutout_fill.unwrap_or(f32::NAN),
            )?,
            _ => fits::read_frame(path, config.hdu.as_ref(), config.weight_hdu.as_ref())?.image,
        }
        .centre_crop(config.crop)
    } else if config.cutout.is_some() {
        return Err(Error::format(
            path,
            None,
            "`cutout` needs FITS frames with a WCS; JPEG/PNG images are used whole",
        ));
    } else {
        // Decoded no larger than the resize needs (see `raster::decode_for`).
        let size = config.size.get();
        raster::decode_for(path, &bytes, config.crop, Some((size, size)))?
    };
    Ok((img, hash))
}

/// Reads a sample's image: one file, or one file per band stacked in order.
/// The hash covers every file read.
fn read_sample(row: &LabelRow, config: &GalaxyImagesConfig) -> Result<(Image, String)> {
    let Some(bands) = &config.bands else {
        return read_file(&row.image, row, config);
    };
    let template = row.image.to_string_lossy();
    let mut planes: Option<Image> = None;
    let mut hashes = blake3::Hasher::new();
    for band in bands {
        let path = PathBuf::from(template.replace("{band}", band));
        let (img, hash) = read_file(&path, row, config)?;
        hashes.update(hash.as_bytes());
        planes = Some(match planes {
            None => img,
            Some(mut acc) => {
                if (img.height, img.width) != (acc.height, acc.width) {
                    return Err(Error::format(
                        &path,
                        None,
                        format!(
                            "band {band} is {}x{}, earlier bands {}x{}",
                            img.height, img.width, acc.height, acc.width
                        ),
                    ));
                }
                acc.channels += img.channels;
                acc.data.extend_from_slice(&img.data);
                acc
            }
        });
    }
    Ok((
        planes.expect("bands is not empty"),
        hashes.finalize().to_hex().to_string(),
    ))
}

/// Reads, crops, resizes and (unless `x` is stored as 8-bit pixels, which
/// the loader normalises) normalises one sample; appends it to `out` as
/// `dtype`.
fn load_sample(
    row: &LabelRow,
    config: &GalaxyImagesConfig,
    channels: usize,
    dtype: Dtype,
    out: &mut Vec<u8>,
) -> Result<String> {
    let path = &row.image;
    let (img, hash) = read_sample(row, config)?;
    let img = match (img.channels, channels) {
        (a, b) if a == b => img,
        (_, 1) => img.to_single_band(),
        (a, b) => {
            return Err(Error::format(
                path,
                None,
                format!("expected {b} band(s), found {a}"),
            ))
        }
    };
    if config.nan == NanPolicy::Reject {
        let missing = img.data.iter().filter(|v| !v.is_finite()).count();
        if missing > 0 {
            return Err(Error::format(
                path,
                None,
                format!("{missing} pixel(s) are missing (NaN, BLANK or zero weight) and `nan: reject` is set"),
            ));
        }
    }
    let size = config.size.get();
    // Already centre-cropped by `read_file`.
    let mut img = img.resize(size, size);
    // 8-bit pixels are stored as read (the loader normalises them) and have
    // no missing values to count; other values are normalised here.
    let bad = match dtype {
        Dtype::U8 => 0,
        _ => normalise(&mut img, config.normalisation),
    };
    if bad * 2 > img.data.len() {
        return Err(Error::format(
            path,
            None,
            format!("{bad} of {} pixels are NaN or infinite", img.data.len()),
        ));
    }
    pixels::encode(dtype, &img.data, out).map_err(|v| {
        Error::format(
            path,
            None,
            format!(
                "a value after normalisation, {v}, is beyond half precision's ±{} (`dtype: f16`); use f32",
                pixels::F16_MAX
            ),
        )
    })?;
    Ok(hash)
}

impl DatasetWriter for GalaxyImagesConfig {
    /// Number of inputs the plan covers (for progress bars).
    fn input_count(&self) -> Result<usize> {
        let config = self;
        Ok(read_catalog(&config.labels, &catalog_options(config))?
            .rows
            .len())
    }

    fn write_partition(&self, seed: u64, job: &Job<'_>) -> Result<()> {
        let config = self;
        let plan = plan(config, seed)?;
        let size = config.size.get();
        let channels = plan.header.channels;
        let dtype = pixels::dtype_named(&plan.header.dtype).unwrap_or(Dtype::F32);
        let layout = Layout {
            x: (dtype, vec![channels, size, size]),
            y: (Dtype::I64, vec![]),
        };
        let head = Part::new(plan.header, Vec::new());
        job.write(&layout, &plan.shards, head, |shard, out, tick| {
            fill_shard(config, channels, dtype, shard, out, tick)
        })
    }

    fn finalize(&self, seed: u64, dir: &Path, world_size: usize) -> Result<DatasetInfo> {
        let config = self;
        let all: Part<Row, Header> = shards::merge(dir, world_size)?;
        all.check_not_empty(&config.labels.display().to_string())?;
        let classes = &all.header.classes;
        let col = |f: &dyn Fn(&Row) -> String| all.rows.iter().map(f).collect::<Vec<String>>();
        let mut manifest = all.manifest(
            col(&|r| r.sample_id.clone()),
            vec![
                Column::new(
                    "label".into(),
                    all.rows.iter().map(|r| r.label).collect::<Vec<i64>>(),
                ),
                Column::new(
                    "label_name".into(),
                    col(&|r| classes[r.label as usize].clone()),
                ),
                Column::new("source".into(), col(&|r| r.source.clone())),
                Column::new("source_blake3".into(), col(&|r| r.source_blake3.clone())),
                Column::new(
                    "ra".into(),
                    all.rows.iter().map(|r| r.ra).collect::<Vec<Option<f64>>>(),
                ),
                Column::new(
                    "dec".into(),
                    all.rows.iter().map(|r| r.dec).collect::<Vec<Option<f64>>>(),
                ),
            ],
        );

        let mut inputs = blake3::Hasher::new();
        for r in &all.rows {
            inputs.update(r.sample_id.as_bytes());
            inputs.update(r.source_blake3.as_bytes());
        }
        let labels_bytes = std::fs::read(&config.labels)
            .map_err(|e| Error::io("failed to read", &config.labels, e))?;
        let size = config.size.get();
        let mut info = DatasetInfo::new(
            "image_classification",
            TensorSchema::new(
                "x",
                &all.header.dtype,
                vec![all.header.channels, size, size],
            ),
            TensorSchema::new("y", "I64", vec![]),
            Provenance::new(
                config.labels.to_string_lossy().into_owned(),
                blake3::hash(&labels_bytes).to_hex().to_string(),
                inputs.finalize().to_hex().to_string(),
                seed,
                config,
            ),
        );
        info.class_names = all.header.classes.clone();
        if all.header.dtype == "U8" {
            info.decode = Some(InputDecode {
                scale: 1.0 / 255.0,
                offset: 0.0,
                normalisation: config.normalisation,
            });
        }
        all.publish(dir, &mut manifest, info)
    }
}

fn fill_shard(
    config: &GalaxyImagesConfig,
    channels: usize,
    dtype: Dtype,
    shard: &Planned<Vec<(LabelRow, i64)>>,
    out: &mut ShardBuffer<Row>,
    tick: &dyn Fn(usize),
) -> Result<()> {
    for (row, label) in &shard.members {
        let stored = out.x.len();
        match load_sample(row, config, channels, dtype, &mut out.x) {
            Ok(hash) => {
                out.y.extend(label.to_le_bytes());
                out.rows.push(Row {
                    sample_id: row.id.clone(),
                    place: shard.place(out.rows.len()),
                    label: *label,
                    source: row.image.to_string_lossy().into_owned(),
                    source_blake3: hash,
                    ra: row.ra,
                    dec: row.dec,
                });
            }
            Err(e) if config.on_error == OnError::Skip => {
                out.x.truncate(stored);
                tracing::warn!("skipping sample {}: {e}", row.id);
                out.rejects.push(Reject {
                    sample_id: row.id.clone(),
                    source: row.image.to_string_lossy().into_owned(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
        tick(1);
    }
    Ok(())
}

/// Every file the dataset reads: the labels table and each sample's image(s)
/// (one per band when `bands` is set). Frames shared by several samples appear once.
pub fn input_files(config: &GalaxyImagesConfig) -> Result<Vec<PathBuf>> {
    let rows = read_catalog(&config.labels, &catalog_options(config))?.rows;
    let mut files = vec![config.labels.clone()];
    for r in rows {
        match &config.bands {
            Some(bands) => {
                let t = r.image.to_string_lossy().into_owned();
                files.extend(bands.iter().map(|b| PathBuf::from(t.replace("{band}", b))));
            }
            None => files.push(r.image),
        }
    }
    files[1..].sort();
    files.dedup();
    Ok(files)
}

fn catalog_options(config: &GalaxyImagesConfig) -> CatalogOptions {
    CatalogOptions {
        label_rule: config.label_rule.clone(),
        image_path: config.image_path.clone(),
        unlabelled: false,
    }
}

mod inputs;
pub use inputs::{list as list_inputs, ImageInputs, ReadOptions};

#[cfg(test)]
mod tests;
