//! A second survey's view of the same galaxies, for testing how a classifier
//! transfers between surveys (an SDSS-trained model applied to DES images).
//!
//! The galaxies of one split of a dataset are re-imaged from their source
//! files as another instrument would record them: a different pixel scale,
//! filter responses mixed differently into the bands, a broader PSF, sky
//! background and noise, in flux units rather than display values. Each band
//! is written as its own FITS file (`images/<id>_<band>.fits`, as DES cutouts
//! are), with `labels.csv` (`objid,label,image`, the image path holding
//! `{band}`) for `ingest.galaxy_images` with `bands:` to read back.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use polars::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::contract::Split;
use crate::files::write_atomic;
use crate::generators::synth::{gaussian, gaussian_blur};
use crate::preprocess::Image;
use crate::readers::fits::{write_image, CardValue};
use crate::readers::raster;
use crate::{Error, Result};

/// Configuration of `ingest.resurvey`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResurveyConfig {
    /// The dataset whose galaxies are re-imaged (its `manifest.parquet` names the sources).
    pub dataset: PathBuf,
    /// Which of its splits.
    #[serde(default = "default_split")]
    pub split: Split,
    /// Side of the new images in pixels (the source is resampled whole: a new pixel scale).
    #[serde(default = "default_size")]
    pub size: NonZeroUsize,
    /// Names of the output bands, in file order.
    #[serde(default = "default_bands")]
    pub bands: Vec<String>,
    /// `mix[b][c]`: output band `b` as a sum over source bands `c` (a colour
    /// JPEG's bands are R, G, B, i.e. SDSS i, r, g). One row per output band.
    #[serde(default = "default_mix")]
    pub mix: Vec<Vec<f32>>,
    /// FWHM in output pixels of the extra Gaussian blur (a worse seeing).
    #[serde(default = "default_psf")]
    pub psf_fwhm: f32,
    /// Flux units per source unit (a source value of 1 becomes this many).
    #[serde(default = "default_flux")]
    pub flux_scale: f32,
    /// Sky level added to every pixel, in flux units.
    #[serde(default = "default_sky")]
    pub sky: f32,
    /// Standard deviation of the Gaussian noise, in flux units.
    #[serde(default = "default_noise")]
    pub noise: f32,
}

fn default_split() -> Split {
    Split::Test
}
fn default_size() -> NonZeroUsize {
    NonZeroUsize::new(128).unwrap()
}
fn default_bands() -> Vec<String> {
    vec!["i".into(), "r".into(), "g".into()]
}
fn default_mix() -> Vec<Vec<f32>> {
    // Neighbouring filters leak into each other differently than in the
    // source survey; rows sum to 1 so fluxes stay comparable.
    vec![
        vec![0.8, 0.2, 0.0],
        vec![0.1, 0.8, 0.1],
        vec![0.0, 0.25, 0.75],
    ]
}
fn default_psf() -> f32 {
    2.0
}
fn default_flux() -> f32 {
    100.0
}
fn default_sky() -> f32 {
    20.0
}
fn default_noise() -> f32 {
    3.0
}

/// A galaxy to re-image.
struct Source {
    id: String,
    label: String,
    path: PathBuf,
}

fn read_sources(config: &ResurveyConfig) -> Result<Vec<Source>> {
    let path = config.dataset.join("manifest.parquet");
    let table_err = |source| Error::Table {
        op: "read",
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(|e| Error::io("failed to open", &path, e))?;
    let df = ParquetReader::new(file).finish().map_err(table_err)?;
    let col = |name: &str| -> Result<StringChunked> {
        Ok(df
            .column(name)
            .map_err(table_err)?
            .str()
            .map_err(table_err)?
            .clone())
    };
    let (ids, splits, labels, sources) = (
        col("sample_id")?,
        col("split")?,
        col("label_name")?,
        col("source")?,
    );
    let mut out = Vec::new();
    for i in 0..df.height() {
        if splits.get(i) != Some(config.split.as_str()) {
            continue;
        }
        let (Some(id), Some(label), Some(src)) = (ids.get(i), labels.get(i), sources.get(i)) else {
            return Err(Error::format(
                &path,
                Some(format!("row {i}")),
                "empty sample_id, label_name or source",
            ));
        };
        out.push(Source {
            id: id.to_string(),
            label: label.to_string(),
            path: PathBuf::from(src),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    if out.is_empty() {
        return Err(Error::format(
            &path,
            None,
            format!("the {} split has no samples", config.split.as_str()),
        ));
    }
    Ok(out)
}

/// Number of galaxies [`resurvey`] will re-image (for progress bars).
pub fn source_count(config: &ResurveyConfig) -> Result<usize> {
    read_sources(config).map(|s| s.len())
}

/// Re-images the galaxies into `out` with up to `threads` threads; returns how
/// many were written. Deterministic for a seed whatever the thread count: each
/// galaxy's noise comes from a generator keyed by the seed and its id.
pub fn resurvey(
    config: &ResurveyConfig,
    seed: u64,
    out: &Path,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<usize> {
    if config.mix.len() != config.bands.len() || config.mix.is_empty() {
        return Err(Error::Config(format!(
            "`mix` needs one row per band: {} row(s) for bands {:?}",
            config.mix.len(),
            config.bands
        )));
    }
    if config
        .bands
        .iter()
        .any(|b| b.is_empty() || b.contains(['/', '{', '}']))
    {
        return Err(Error::Config(format!(
            "band names must be plain words: {:?}",
            config.bands
        )));
    }
    let sources = read_sources(config)?;
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io("failed to create", &images, e))?;
    let done = AtomicUsize::new(0);
    crate::pool::map(threads, &sources, |s| {
        reimage(config, seed, s, &images)?;
        progress(done.fetch_add(1, Ordering::Relaxed) + 1);
        Ok(())
    })?;
    let mut csv = String::from("objid,label,image\n");
    for s in &sources {
        csv.push_str(&format!(
            "{},{},images/{}_{{band}}.fits\n",
            s.id, s.label, s.id
        ));
    }
    // The table goes last: its presence means every image it names is there.
    write_atomic(&out.join("labels.csv"), csv.as_bytes())?;
    Ok(sources.len())
}

fn reimage(config: &ResurveyConfig, seed: u64, s: &Source, dir: &Path) -> Result<()> {
    let src = if crate::readers::fits::is_fits(&s.path) {
        crate::readers::fits::read_image(&s.path, None)?
    } else {
        raster::read_image(&s.path)?
    };
    let n = config.size.get();
    let src = src.resize(n, n);
    let plane = n * n;
    let mut key = blake3::Hasher::new();
    key.update(&seed.to_le_bytes());
    key.update(s.id.as_bytes());
    let mut rng = ChaCha8Rng::from_seed(*key.finalize().as_bytes());
    let sigma = config.psf_fwhm as f64 / 2.354_820_045;
    for (b, (band, row)) in config.bands.iter().zip(&config.mix).enumerate() {
        if row.len() != src.channels {
            return Err(Error::format(
                &s.path,
                None,
                format!(
                    "has {} band(s) but `mix` row {b} has {} weights",
                    src.channels,
                    row.len()
                ),
            ));
        }
        let mut data = vec![0.0f32; plane];
        for (c, w) in row.iter().enumerate() {
            for (d, v) in data.iter_mut().zip(&src.data[c * plane..(c + 1) * plane]) {
                *d += w * v;
            }
        }
        if sigma > 0.0 {
            gaussian_blur(&mut data, n, sigma);
        }
        for d in &mut data {
            *d = *d * config.flux_scale + config.sky + config.noise * gaussian(&mut rng) as f32;
        }
        let img = Image::new(1, n, n, data).expect("dimensions match");
        let cards = [
            ("BUNIT", CardValue::Str("counts".into()), "flux units"),
            ("BAND", CardValue::Str(band.clone()), "filter"),
            ("OBJID", CardValue::Str(s.id.clone()), "sample id"),
            ("SKYLEVEL", CardValue::Float(config.sky as f64), "added sky"),
            (
                "PSFFWHM",
                CardValue::Float(config.psf_fwhm as f64),
                "extra blur FWHM [pixel]",
            ),
        ];
        write_image(&dir.join(format!("{}_{band}.fits", s.id)), &img, &cards)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::SplitFractions;
    use crate::writers::galaxy_images::write_dataset;
    use crate::GalaxyImagesConfig;

    #[test]
    fn test_galaxies_come_back_as_per_band_fits_that_ingest_reads() {
        let dir = tempfile::tempdir().unwrap();
        let src = GalaxyImagesConfig {
            size: NonZeroUsize::new(16).unwrap(),
            split: SplitFractions::new(0.0, 0.5),
            ..GalaxyImagesConfig::new(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/gz1/labels.csv"),
            )
        };
        let ds = dir.path().join("ds");
        let info = write_dataset(&src, 1, &ds, 2, &|_| {}).unwrap();
        let cfg = ResurveyConfig {
            dataset: ds.clone(),
            split: Split::Test,
            size: NonZeroUsize::new(40).unwrap(),
            bands: default_bands(),
            mix: default_mix(),
            psf_fwhm: default_psf(),
            flux_scale: default_flux(),
            sky: default_sky(),
            noise: default_noise(),
        };
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let n = resurvey(&cfg, 5, &a, 1, &|_| {}).unwrap();
        assert_eq!(n, info.counts.test);
        resurvey(&cfg, 5, &b, 3, &|_| {}).unwrap();
        let table = std::fs::read_to_string(a.join("labels.csv")).unwrap();
        assert_eq!(table.lines().count(), n + 1);
        let first = table
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_string();
        for band in ["i", "r", "g"] {
            let name = format!("images/{first}_{band}.fits");
            // Same seed, different thread count: the same bytes.
            assert_eq!(
                std::fs::read(a.join(&name)).unwrap(),
                std::fs::read(b.join(&name)).unwrap()
            );
            let img = crate::readers::fits::read_image(&a.join(&name), None).unwrap();
            assert_eq!((img.height, img.width), (40, 40));
            // Sky level plus source flux: the image is in the new units.
            let mean = img.data.iter().sum::<f32>() / img.data.len() as f32;
            assert!(mean > cfg.sky * 0.8, "{band}: mean {mean}");
        }

        // The second ingest reads the bands back into the same sample layout.
        let back = GalaxyImagesConfig {
            size: NonZeroUsize::new(16).unwrap(),
            bands: Some(default_bands()),
            split: SplitFractions::new(0.0, 1.0),
            ..GalaxyImagesConfig::new(a.join("labels.csv"))
        };
        let info2 = write_dataset(&back, 1, &dir.path().join("ds2"), 2, &|_| {}).unwrap();
        assert_eq!(info2.counts.test, n);
        assert_eq!(info2.x.sample_shape, info.x.sample_shape);
        assert_eq!(info2.class_names, info.class_names);

        // A mix that does not fit the bands is refused before any work.
        let bad = ResurveyConfig {
            mix: vec![vec![1.0, 0.0, 0.0]],
            ..cfg
        };
        let e = resurvey(&bad, 5, &dir.path().join("c"), 1, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("one row per band"), "{e}");
    }
}
