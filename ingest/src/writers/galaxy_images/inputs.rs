//! Images to score with a model trained on a dataset, each prepared as that
//! dataset's samples were (the ingest settings its `dataset.json` records),
//! one at a time, so that a caller can stream any number of them.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use super::{load_sample, GalaxyImagesConfig};
use crate::contract::{DatasetInfo, InputDecode};
use crate::pixels::{self, StoreAs};
use crate::readers::catalog::{read_catalog, CatalogOptions, LabelRow};
use crate::readers::fits::Hdu;
use crate::{Error, Result};

/// How new inputs are read where they differ from the reference dataset's
/// own files; unset keys read them as the reference read its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadOptions {
    /// One file per band, stacked in this order, for inputs whose image path
    /// holds `{band}` (others are read whole).
    #[serde(default)]
    pub bands: Option<Vec<String>>,
    /// Cut a stamp of this many pixels at each row's RA/Dec from large FITS
    /// frames, as `ingest.galaxy_images` cuts them.
    #[serde(default)]
    pub cutout: Option<NonZeroUsize>,
    /// The FITS HDU that holds the image (index or EXTNAME).
    #[serde(default)]
    pub hdu: Option<Hdu>,
    /// Image path template relative to the table's folder, `{id}` replaced
    /// by the row's id (for tables without an `image` column).
    #[serde(default)]
    pub image_path: Option<String>,
}

/// Extensions of the files a folder of images is listed by.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "fits", "fit", "fts", "fz"];

/// New images, prepared as a reference dataset's samples were.
#[derive(Debug, Clone)]
pub struct ImageInputs {
    /// The reference's settings with the read options applied.
    config: GalaxyImagesConfig,
    /// The same without `bands`, for inputs read whole.
    whole: GalaxyImagesConfig,
    rows: Vec<LabelRow>,
    channels: usize,
    dtype: Dtype,
    decode: Option<InputDecode>,
}

impl ImageInputs {
    /// Lists `source` and readies its images to be prepared as the dataset
    /// in `reference` prepared its own. `source` is a table (CSV or Parquet:
    /// an id column, `image` or `read.image_path`, and RA/Dec when stamps
    /// are cut; any `label` column is ignored), a folder holding such a table
    /// as `labels.csv`, or a folder of image files (ids are their names).
    pub fn like(reference: &Path, source: &Path, read: &ReadOptions) -> Result<Self> {
        let info = DatasetInfo::load(reference)?;
        let mut config: GalaxyImagesConfig = serde_json::from_value(info.provenance.config.clone())
            .map_err(|e| {
                Error::Config(format!(
                    "{} records image ingest settings this version cannot read: {e}",
                    reference.join("dataset.json").display()
                ))
            })?;
        if read.bands.is_some() {
            config.bands.clone_from(&read.bands);
        }
        if read.cutout.is_some() {
            config.cutout = read.cutout;
        }
        if read.hdu.is_some() {
            config.hdu.clone_from(&read.hdu);
        }
        let [channels, h, w] = info.x.sample_shape[..] else {
            return Err(Error::Config(format!(
                "{} holds samples of shape {:?}, not images [C, H, W]",
                reference.display(),
                info.x.sample_shape
            )));
        };
        if (h, w) != (config.size.get(), config.size.get()) {
            return Err(Error::Config(format!(
                "{} holds {h}x{w} samples but records size {}",
                reference.display(),
                config.size
            )));
        }
        let rows = list(source, read.image_path.clone())?;
        if config.cutout.is_some() {
            if let Some(r) = rows.iter().find(|r| r.ra.is_none() || r.dec.is_none()) {
                return Err(Error::format(
                    source,
                    Some("header".into()),
                    format!("stamps are cut at each row's RA/Dec; {} has none", r.id),
                ));
            }
        }
        let whole = GalaxyImagesConfig {
            bands: None,
            ..config.clone()
        };
        Ok(ImageInputs {
            config,
            whole,
            rows,
            channels,
            dtype: pixels::dtype_named(&info.x.dtype).unwrap_or(Dtype::F32),
            decode: info.decode,
        })
    }

    /// The inputs, in order (labels empty).
    pub fn rows(&self) -> &[LabelRow] {
        &self.rows
    }

    /// The shape of one prepared input, `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        let s = self.config.size.get();
        [self.channels, s, s]
    }

    /// Appends input `i`, prepared, to `out` (`[C, H, W]` values); returns
    /// the BLAKE3 of the file(s) read. Nothing is appended on an error.
    ///
    /// An 8-bit image for a dataset stored as 8-bit pixels is rounded to
    /// them and normalised as the loader normalises the dataset; other
    /// images are normalised as the ingest normalised them (and, for an F16
    /// dataset, rounded to half precision), so the network sees what it saw
    /// in training.
    pub fn prepare(&self, i: usize, out: &mut Vec<f32>) -> Result<String> {
        let row = &self.rows[i];
        let config = if row.image.to_string_lossy().contains("{band}") {
            &self.config
        } else {
            &self.whole
        };
        let dtype = match (self.dtype, StoreAs::U8.resolve(&[&row.image])) {
            (Dtype::U8, Err(_)) => Dtype::F32,
            (d, _) => d,
        };
        let mut bytes = Vec::with_capacity(self.shape().iter().product::<usize>() * 4);
        let hash = load_sample(row, config, self.channels, dtype, &mut bytes)?;
        let decode = if dtype == Dtype::U8 {
            self.decode.as_ref()
        } else {
            None
        };
        pixels::decode(dtype, &bytes, &self.shape(), decode, out);
        Ok(hash)
    }
}

/// The rows of `source` (see [`ImageInputs::like`]), in order, their
/// labels empty; `image_path` as [`ReadOptions::image_path`].
pub fn list(source: &Path, image_path: Option<String>) -> Result<Vec<LabelRow>> {
    let table = |path: &Path| {
        let opts = CatalogOptions {
            image_path: image_path.clone(),
            unlabelled: true,
            ..CatalogOptions::default()
        };
        read_catalog(path, &opts).map(|c| c.rows)
    };
    if !source.is_dir() {
        return table(source);
    }
    let labels = source.join("labels.csv");
    if labels.is_file() {
        return table(&labels);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(source)
        .map_err(|e| Error::io("failed to list", source, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.to_string_lossy().to_ascii_lowercase();
            let name = name.strip_suffix(".gz").unwrap_or(&name);
            IMAGE_EXTENSIONS
                .iter()
                .any(|e| name.ends_with(&format!(".{e}")))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::format(
            source,
            None,
            format!("the folder holds no labels.csv and no images ({IMAGE_EXTENSIONS:?})"),
        ));
    }
    Ok(files
        .into_iter()
        .map(|image| {
            let name = image.file_name().unwrap_or_default().to_string_lossy();
            LabelRow {
                id: name.split('.').next().unwrap_or_default().to_string(),
                label: String::new(),
                image,
                ra: None,
                dec: None,
            }
        })
        .collect())
}
