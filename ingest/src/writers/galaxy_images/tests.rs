//! Writing datasets: plans, shards, manifests, rejects, and what ranks and threads change (nothing).

use super::*;
use crate::contract::Partition;

fn gz1_config() -> GalaxyImagesConfig {
    GalaxyImagesConfig {
        labels: Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/gz1/labels.csv"),
        size: NonZeroUsize::new(24).unwrap(),
        crop: 0.5,
        channels: None,
        hdu: None,
        weight_hdu: None,
        bands: None,
        cutout: None,
        cutout_fill: None,
        label_rule: LabelRule::Column,
        image_path: None,
        nan: NanPolicy::Fill,
        normalisation: Normalisation::Standardize,
        dtype: StoreAs::Auto,
        split: SplitFractions::new(0.25, 0.25),
        shard_size: NonZeroUsize::new(3).unwrap(),
        on_error: OnError::Skip,
    }
}

fn shard_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("shards"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn real_jpegs_become_a_stratified_sharded_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let info = write_dataset(&gz1_config(), 1, dir.path(), 2, &|_| {}).unwrap();
    assert_eq!(info.class_names, vec!["elliptical", "spiral"]);
    assert_eq!(info.x.sample_shape, vec![3, 24, 24]);
    // 8 per class: 2 test, 2 val, 4 train each.
    assert_eq!(
        (info.counts.train, info.counts.val, info.counts.test),
        (8, 4, 4)
    );
    assert_eq!(info.counts.rejected, 0);
    for s in &info.shards {
        let bytes = std::fs::read(dir.path().join(&s.file)).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), s.blake3);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("x").unwrap().shape(), &[s.samples, 3, 24, 24]);
    }
    let manifest =
        ParquetReader::new(std::fs::File::open(dir.path().join("manifest.parquet")).unwrap())
            .finish()
            .unwrap();
    assert_eq!(manifest.height(), 16);
    assert!(!dir.path().join("parts").exists());
}

#[test]
fn same_seed_same_shards_whatever_the_ranks_and_threads() {
    let cfg = gz1_config();
    let one = tempfile::tempdir().unwrap();
    write_dataset(&cfg, 5, one.path(), 1, &|_| {}).unwrap();
    let three = tempfile::tempdir().unwrap();
    for rank in 0..3 {
        let job = Job {
            dir: three.path(),
            part: Partition { rank, size: 3 },
            threads: 2,
            progress: &|_| {},
        };
        cfg.write_partition(5, &job).unwrap();
    }
    let a = cfg.finalize(5, three.path(), 3).unwrap();
    let b = DatasetInfo::load(one.path()).unwrap();
    assert_eq!(a.shards, b.shards);
    assert_eq!(shard_bytes(one.path()), shard_bytes(three.path()));

    let other = tempfile::tempdir().unwrap();
    write_dataset(&cfg, 6, other.path(), 1, &|_| {}).unwrap();
    assert_ne!(shard_bytes(one.path()), shard_bytes(other.path()));
}

#[test]
fn cross_validation_folds_test_each_galaxy_once_with_balanced_classes() {
    let k = 4;
    let mut tested: Vec<String> = Vec::new();
    for fold in 0..k {
        let cfg = GalaxyImagesConfig {
            split: SplitFractions::fold(0.125, k, fold),
            ..gz1_config()
        };
        let dir = tempfile::tempdir().unwrap();
        let info = write_dataset(&cfg, 1, dir.path(), 1, &|_| {}).unwrap();
        // 8 per class: 2 of each class test, 1 val, 5 train.
        assert_eq!(
            (info.counts.train, info.counts.val, info.counts.test),
            (10, 2, 4),
            "fold {fold}"
        );
        let test = crate::contract::SplitManifest::read(dir.path(), Split::Test).unwrap();
        let labels = test.table.column("label").unwrap().i64().unwrap().clone();
        let ellipticals = test
            .rows
            .iter()
            .filter(|&&i| labels.get(i) == Some(0))
            .count();
        assert_eq!(ellipticals, 2, "fold {fold}");
        tested.extend(test.strings("sample_id").unwrap());
    }
    crate::contract::assert_each_tested_once(tested, 16, "every galaxy tested exactly once");
}

#[test]
fn a_broken_image_is_a_reject_or_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/gz1");
    let mut csv = std::fs::read_to_string(src.join("labels.csv")).unwrap();
    csv.push_str("999,spiral,0,bad,images/999.jpeg\n");
    std::fs::create_dir(dir.path().join("images")).unwrap();
    for row in crate::readers::catalog::read_labels(&src.join("labels.csv")).unwrap() {
        std::fs::copy(
            &row.image,
            dir.path()
                .join("images")
                .join(row.image.file_name().unwrap()),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("images/999.jpeg"), b"truncated").unwrap();
    std::fs::write(dir.path().join("labels.csv"), csv).unwrap();
    let mut cfg = gz1_config();
    cfg.labels = dir.path().join("labels.csv");

    let out = dir.path().join("out");
    let info = write_dataset(&cfg, 1, &out, 2, &|_| {}).unwrap();
    assert_eq!(info.counts.rejected, 1);
    assert_eq!(info.counts.total, 16);
    let rejects = ParquetReader::new(std::fs::File::open(out.join("rejects.parquet")).unwrap())
        .finish()
        .unwrap();
    let reason = rejects
        .column("reason")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert!(reason.contains("999.jpeg"), "{reason}");

    cfg.on_error = OnError::Fail;
    let err = write_dataset(&cfg, 1, &dir.path().join("out2"), 1, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("999.jpeg"), "{err}");
}

/// Formats degrees as sexagesimal (hours for RA), as the GZ1 table does.
fn sexagesimal(v: f64, hours: bool) -> String {
    let (sign, v) = (
        if v < 0.0 { "-" } else { "+" },
        v.abs() / if hours { 15.0 } else { 1.0 },
    );
    let (d, m) = (v.trunc(), (v.fract() * 60.0));
    let s = format!(
        "{:02}:{:02}:{:09.6}",
        d as u32,
        m.trunc() as u32,
        m.fract() * 60.0
    );
    if hours {
        s
    } else {
        format!("{sign}{s}")
    }
}

#[test]
fn gz1_table_with_stamps_cut_from_per_band_frames() {
    use crate::readers::fits::{write_image, CardValue};
    use crate::readers::wcs::Wcs;
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (120usize, 90usize);
    let scale = 0.396 / 3600.0;
    let cards: Vec<(&str, CardValue, &str)> = vec![
        ("CTYPE1", CardValue::Str("RA---TAN".into()), ""),
        ("CTYPE2", CardValue::Str("DEC--TAN".into()), ""),
        ("CRPIX1", CardValue::Float(60.0), ""),
        ("CRPIX2", CardValue::Float(45.0), ""),
        ("CRVAL1", CardValue::Float(180.5), ""),
        ("CRVAL2", CardValue::Float(-1.25), ""),
        ("CD1_1", CardValue::Float(-scale), ""),
        ("CD1_2", CardValue::Float(0.0), ""),
        ("CD2_1", CardValue::Float(0.0), ""),
        ("CD2_2", CardValue::Float(scale), ""),
        ("BUNIT", CardValue::Str("nanomaggy".into()), ""),
    ];
    // Galaxies at known pixels (0-based col, row); the last one is off the frame.
    let at = [(20usize, 30usize), (80, 60), (100, 20), (50, 70), (60, 45)];
    std::fs::create_dir(dir.path().join("frames")).unwrap();
    for (b, band) in ["g", "r", "i"].iter().enumerate() {
        let mut data = vec![0.01f32; w * h];
        for (k, (cx, cy)) in at.iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    let r2 = (x as f32 - *cx as f32).powi(2) + (y as f32 - *cy as f32).powi(2);
                    data[y * w + x] += (1.0 + k as f32 + b as f32) * (-r2 / 8.0).exp();
                }
            }
        }
        let img = Image::new(1, h, w, data).unwrap();
        write_image(
            &dir.path().join(format!("frames/field-{band}.fits")),
            &img,
            &cards,
        )
        .unwrap();
    }
    let frame =
        crate::readers::fits::read_frame(&dir.path().join("frames/field-r.fits"), None, None)
            .unwrap();
    let wcs: Wcs = frame.wcs().unwrap();
    let mut csv = String::from(
            "OBJID,RA,DEC,NVOTE,P_EL,P_CS,P_EL_DEBIASED,P_CS_DEBIASED,SPIRAL,ELLIPTICAL,UNCERTAIN,image\n",
        );
    let fractions = [
        (0.9, 0.1),
        (0.05, 0.93),
        (0.85, 0.1),
        (0.5, 0.5),
        (0.1, 0.88),
    ];
    for (k, ((cx, cy), (el, cs))) in at.iter().zip(fractions).enumerate() {
        // FITS pixels are 1-based; the last galaxy is moved 400 px off the frame.
        let dx = if k == 4 { 400.0 } else { 0.0 };
        let (ra, dec) = wcs
            .pixel_to_world(*cx as f64 + 1.0 + dx, *cy as f64 + 1.0)
            .unwrap();
        csv.push_str(&format!(
            "{},{},{},30,{el},{cs},{el},{cs},0,0,1,frames/field-{{band}}.fits\n",
            1000 + k,
            sexagesimal(ra, true),
            sexagesimal(dec, false)
        ));
    }
    std::fs::write(dir.path().join("gz1.csv"), csv).unwrap();
    let cfg = GalaxyImagesConfig {
        bands: Some(vec!["g".into(), "r".into(), "i".into()]),
        cutout: NonZeroUsize::new(16),
        size: NonZeroUsize::new(16).unwrap(),
        label_rule: LabelRule::Gz1Debiased { threshold: 0.8 },
        normalisation: Normalisation::None,
        split: SplitFractions::new(0.0, 0.0),
        ..GalaxyImagesConfig::new(dir.path().join("gz1.csv"))
    };
    let out = dir.path().join("ds");
    let info = write_dataset(&cfg, 3, &out, 2, &|_| {}).unwrap();
    // 1003 has no fraction above 0.8 (left out); 1004 is off the frame (rejected).
    assert_eq!((info.counts.total, info.counts.rejected), (3, 1));
    assert_eq!(info.x.sample_shape, vec![3, 16, 16]);
    let rejects = ParquetReader::new(std::fs::File::open(out.join("rejects.parquet")).unwrap())
        .finish()
        .unwrap();
    let reason = rejects
        .column("reason")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert!(
        reason.contains("off the frame") && reason.contains("field-g.fits"),
        "{reason}"
    );

    // Each stamp is centred on its galaxy in every band, and the bands keep
    // their order (band b of galaxy k peaks at 1 + k + b above the sky).
    let shard = std::fs::read(out.join(&info.shards[0].file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&shard).unwrap();
    let x: Vec<f32> = st
        .tensor("x")
        .unwrap()
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let manifest = ParquetReader::new(std::fs::File::open(out.join("manifest.parquet")).unwrap())
        .finish()
        .unwrap();
    let ids = manifest.column("sample_id").unwrap().str().unwrap().clone();
    // The catalogue's coordinates are kept as domain columns.
    let ra = manifest.column("ra").unwrap().f64().unwrap().clone();
    assert!(ra
        .iter()
        .all(|v| v.is_some_and(|d| (d - 180.5).abs() < 0.1)));
    for (i, id) in ids.iter().enumerate() {
        let k: usize = id.unwrap().parse::<usize>().unwrap() - 1000;
        for b in 0..3 {
            let plane = &x[(i * 3 + b) * 256..(i * 3 + b + 1) * 256];
            let (argmax, peak) =
                plane.iter().enumerate().fold(
                    (0, f32::MIN),
                    |m, (j, v)| {
                        if *v > m.1 {
                            (j, *v)
                        } else {
                            m
                        }
                    },
                );
            // An even stamp's centre lies between its pixels 7 and 8; the
            // galaxy sits on a pixel, which astropy's rule (first column
            // ceil(x - 8)) puts at 7 or 8 as the catalogue's rounding falls.
            let (row, col) = (argmax / 16, argmax % 16);
            assert!(
                (7..=8).contains(&row) && (7..=8).contains(&col),
                "galaxy {k} band {b}: peak at ({row}, {col})"
            );
            assert!(
                (peak - (1.01 + k as f32 + b as f32)).abs() < 0.02,
                "galaxy {k} band {b}: {peak}"
            );
        }
    }
}

#[test]
fn missing_pixels_are_filled_or_reject_the_sample_as_configured() {
    use crate::readers::fits::write_image;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("objid,label,image\n");
    for i in 0..4 {
        let mut data: Vec<f32> = (0..64).map(|v| (v * (i + 1)) as f32).collect();
        if i == 2 {
            data[10] = f32::NAN; // one blank pixel
        }
        let img = Image::new(1, 8, 8, data).unwrap();
        write_image(&dir.path().join(format!("g{i}.fits")), &img, &[]).unwrap();
        csv.push_str(&format!(
            "{i},{},g{i}.fits\n",
            if i % 2 == 0 { "a" } else { "b" }
        ));
    }
    std::fs::write(dir.path().join("labels.csv"), csv).unwrap();
    let mut cfg = GalaxyImagesConfig {
        size: NonZeroUsize::new(8).unwrap(),
        split: SplitFractions::new(0.0, 0.0),
        ..GalaxyImagesConfig::new(dir.path().join("labels.csv"))
    };
    let filled = write_dataset(&cfg, 1, &dir.path().join("fill"), 1, &|_| {}).unwrap();
    assert_eq!((filled.counts.total, filled.counts.rejected), (4, 0));
    cfg.nan = NanPolicy::Reject;
    let strict = write_dataset(&cfg, 1, &dir.path().join("reject"), 1, &|_| {}).unwrap();
    assert_eq!((strict.counts.total, strict.counts.rejected), (3, 1));
    let rejects =
        ParquetReader::new(std::fs::File::open(dir.path().join("reject/rejects.parquet")).unwrap())
            .finish()
            .unwrap();
    let reason = rejects
        .column("reason")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert!(
        reason.contains("g2.fits") && reason.contains("missing"),
        "{reason}"
    );
}

/// Every sample of a split, in shard order, as the loader yields it.
fn loaded(dir: &Path, split: Split) -> (Vec<f32>, Vec<usize>) {
    let mut cfg = crate::loader::LoaderConfig::new(1000, 0);
    cfg.shuffle = false;
    cfg.even_steps = false;
    let l = crate::loader::Loader::new(dir, split, cfg).unwrap();
    let b = l.epoch(0).next().unwrap().unwrap();
    (b.x, b.shape)
}

#[test]
fn jpegs_are_stored_as_8_bit_pixels_and_normalised_by_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let (u8_dir, f32_dir) = (dir.path().join("u8"), dir.path().join("f32"));
    let info = write_dataset(&gz1_config(), 1, &u8_dir, 2, &|_| {}).unwrap();
    let f32_cfg = GalaxyImagesConfig {
        dtype: StoreAs::F32,
        ..gz1_config()
    };
    let info32 = write_dataset(&f32_cfg, 1, &f32_dir, 2, &|_| {}).unwrap();
    // The default for JPEGs: U8, with how the loader makes the input.
    assert_eq!(info.x.dtype, "U8");
    assert_eq!(info32.x.dtype, "F32");
    assert_eq!(
        info.decode,
        Some(InputDecode {
            scale: 1.0 / 255.0,
            offset: 0.0,
            normalisation: Normalisation::Standardize
        })
    );
    assert_eq!(info32.decode, None);
    let bytes = |i: &DatasetInfo| i.shards.iter().map(|s| s.bytes).sum::<u64>() as f64;
    let ratio = bytes(&info) / bytes(&info32);
    assert!(ratio < 0.3, "U8 shards take {ratio:.3} of the F32 ones");
    // The same samples in the same order; each band standardised by the
    // loader; the values those of the F32 dataset but for the 8-bit rounding
    // (at most half a step, 0.5/255, over the band's deviation).
    let (x8, shape) = loaded(&u8_dir, Split::Train);
    let (x32, shape32) = loaded(&f32_dir, Split::Train);
    assert_eq!(shape, shape32);
    let plane = shape[2] * shape[3];
    let mut worst = 0.0f32;
    for (a, b) in x8.chunks(plane).zip(x32.chunks(plane)) {
        let mean = a.iter().sum::<f32>() / plane as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / plane as f32;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
        worst = a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(worst, f32::max);
    }
    assert!(worst > 0.0 && worst < 0.2, "largest difference {worst}");

    // Kept compact (for a GPU to decode), a batch holds the stored bytes,
    // which decode into the very inputs the loader yields.
    let mut cfg = crate::loader::LoaderConfig::new(1000, 0);
    (cfg.shuffle, cfg.even_steps, cfg.keep_compact) = (false, false, true);
    let l = crate::loader::Loader::new(&u8_dir, Split::Train, cfg).unwrap();
    let b = l.epoch(0).next().unwrap().unwrap();
    let c = b.compact.expect("a compact batch");
    assert!(b.x.is_empty() && b.shape == shape);
    assert_eq!(c.bytes.len(), x8.len());
    let mut decoded = Vec::new();
    crate::pixels::decode(
        c.dtype,
        &c.bytes,
        &shape[1..],
        c.decode.as_ref(),
        &mut decoded,
    );
    assert_eq!(decoded, x8);
    // An F32 dataset has nothing to keep compact.
    let mut cfg = crate::loader::LoaderConfig::new(1000, 0);
    cfg.keep_compact = true;
    let l = crate::loader::Loader::new(&f32_dir, Split::Train, cfg).unwrap();
    assert!(l.epoch(0).next().unwrap().unwrap().compact.is_none());
}

#[test]
fn fits_values_in_half_precision_and_what_it_cannot_hold_is_refused_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = |v: f32| -> Vec<f32> { (0..64).map(|i| v + i as f32 * 0.37).collect() };
    let mut csv = String::from("objid,label,image\n");
    for (k, scale) in [1.0f32, 2.0, 3.0, 4.0].iter().enumerate() {
        let path = dir.path().join(format!("g{k}.fits"));
        crate::readers::fits::write_image(&path, &Image::new(1, 8, 8, img(*scale)).unwrap(), &[])
            .unwrap();
        csv.push_str(&format!("{k},{},g{k}.fits\n", ["a", "b"][k % 2]));
    }
    std::fs::write(dir.path().join("labels.csv"), &csv).unwrap();
    let cfg = |dtype| GalaxyImagesConfig {
        size: NonZeroUsize::new(8).unwrap(),
        split: SplitFractions::new(0.0, 0.0),
        normalisation: Normalisation::Asinh { softening: 3.0 },
        dtype,
        ..GalaxyImagesConfig::new(dir.path().join("labels.csv"))
    };
    let h = write_dataset(&cfg(StoreAs::F16), 1, &dir.path().join("f16"), 1, &|_| {}).unwrap();
    let f = write_dataset(&cfg(StoreAs::Auto), 1, &dir.path().join("f32"), 1, &|_| {}).unwrap();
    assert_eq!((h.x.dtype.as_str(), f.x.dtype.as_str()), ("F16", "F32"));
    assert_eq!(h.decode, None);
    let (a, _) = loaded(&dir.path().join("f16"), Split::Train);
    let (b, _) = loaded(&dir.path().join("f32"), Split::Train);
    assert_eq!(a.len(), b.len());
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-3 * q.abs().max(1.0), "{p} vs {q}");
    }
    // `u8` is for 8-bit images only.
    let e = write_dataset(&cfg(StoreAs::U8), 1, &dir.path().join("u8"), 1, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`dtype: u8` stores 8-bit images") && e.contains("g0.fits"),
        "{e}"
    );
    // Raw values beyond ±65504 in half precision: the file is named.
    crate::readers::fits::write_image(
        &dir.path().join("big.fits"),
        &Image::new(1, 8, 8, img(1.0e5)).unwrap(),
        &[],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("big.csv"),
        "objid,label,image\n9,a,big.fits\n",
    )
    .unwrap();
    let big = GalaxyImagesConfig {
        labels: dir.path().join("big.csv"),
        normalisation: Normalisation::None,
        on_error: OnError::Fail,
        ..cfg(StoreAs::F16)
    };
    let e = write_dataset(&big, 1, &dir.path().join("big"), 1, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("big.fits") && e.contains("half precision"),
        "{e}"
    );
}
