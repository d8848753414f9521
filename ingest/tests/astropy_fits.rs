//! The FITS reader against files astropy writes: every BITPIX with BSCALE/BZERO
//! and BLANK, NaN, whole-file gzip and bzip2, tile-compressed RICE_1 and GZIP_1,
//! a cube, a DES-like tile with SCI/WGT extensions, and TAN WCS in its three
//! header forms, plus WCS checks on real survey frames. The files and astropy's
//! own reading of them come from `fits_cases.py`, run with the project's Python
//! (`PIPELINE_PYTHON`, set up by scripts/setup.sh with astropy); without it the
//! test fails rather than passing unchecked.

use std::path::{Path, PathBuf};
use std::process::Command;

use sciflow_ingest::readers::fits::{read_frame, CutoutError, Hdu};
use serde_json::Value;

fn hdu(v: &Value) -> Option<Hdu> {
    match v {
        Value::Null => None,
        Value::Number(n) => Some(Hdu::Index(n.as_u64().unwrap() as usize)),
        Value::String(s) => Some(Hdu::Name(s.clone())),
        other => panic!("bad hdu {other}"),
    }
}

fn make_cases(dir: &Path, real: &[PathBuf]) -> Value {
    let python = std::env::var("PIPELINE_PYTHON")
        .expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fits_cases.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir)
        .args(real)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "fits_cases.py failed (is astropy installed? run scripts/setup.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn reads_what_astropy_writes() {
    let dir = tempfile::tempdir().unwrap();
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fits/cfht_megaprime_sa110.fits");
    // An extra real frame (TAN with CDELT) when the shared data folder is present.
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fits/irsa_dust.fits");
    let mut real = vec![committed];
    if shared.is_file() {
        real.push(shared);
    } else {
        eprintln!(
            "note: {} absent, checking committed files only",
            shared.display()
        );
    }
    let spec = make_cases(dir.path(), &real);
    let cases = spec["cases"].as_array().unwrap();
    assert!(cases.len() >= 19, "{} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let file = dir.path().join(case["file"].as_str().unwrap());
        let frame = read_frame(
            &file,
            hdu(&case["hdu"]).as_ref(),
            hdu(&case["weight_hdu"]).as_ref(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let img = &frame.image;
        let got_shape = if img.channels == 1 {
            vec![img.height, img.width]
        } else {
            vec![img.channels, img.height, img.width]
        };
        assert_eq!(got_shape, shape, "{name}: shape");
        let want = read_f32(&dir.path().join(case["expected"].as_str().unwrap()));
        assert_eq!(want.len(), img.data.len(), "{name}");
        let mut missing = 0;
        for (i, (g, w)) in img.data.iter().zip(&want).enumerate() {
            if w.is_nan() {
                assert!(g.is_nan(), "{name}: pixel {i} should be missing, got {g}");
                missing += 1;
            } else {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{name}: pixel {i}: {g} != {w}"
                );
            }
        }
        // Every case but the lossless unsigned/cube/tile ones plants missing pixels.
        if [
            "bitpix8",
            "bitpix16_scaled",
            "bitpix32",
            "bitpix-32",
            "bitpix-64",
            "des_sci_weighted",
        ]
        .contains(&name)
        {
            assert!(missing > 0, "{name}: no missing pixel to check");
        }
        check_wcs(name, &frame, &case["wcs"]);
    }
    for r in spec["real"].as_array().unwrap() {
        let file = PathBuf::from(r["file"].as_str().unwrap());
        let frame = read_frame(&file, None, None).unwrap();
        check_wcs(&file.display().to_string(), &frame, &r["wcs"]);
    }
}

fn check_wcs(name: &str, frame: &sciflow_ingest::readers::fits::Frame, checks: &Value) {
    let checks = checks.as_array().unwrap();
    if checks.is_empty() {
        return;
    }
    let wcs = frame.wcs().unwrap_or_else(|e| panic!("{name}: {e}"));
    for c in checks {
        let (ra, dec, x, y) = (
            c["ra"].as_f64().unwrap(),
            c["dec"].as_f64().unwrap(),
            c["x"].as_f64().unwrap(),
            c["y"].as_f64().unwrap(),
        );
        let (gx, gy) = wcs.world_to_pixel(ra, dec).unwrap();
        assert!(
            (gx - x).abs() < 1e-6 && (gy - y).abs() < 1e-6,
            "{name}: ({ra}, {dec}) -> ({gx}, {gy}), astropy ({x}, {y})"
        );
        let (gra, gdec) = wcs.pixel_to_world(x, y);
        let dra = ((gra - ra + 180.0).rem_euclid(360.0) - 180.0) * dec.to_radians().cos();
        assert!(
            dra.abs() < 1e-9 && (gdec - dec).abs() < 1e-9,
            "{name}: ({x}, {y}) -> ({gra}, {gdec}), astropy ({ra}, {dec})"
        );
        // A stamp centred on the position holds the pixel that contains it, or
        // is refused by name when the position is off the frame.
        let (w, h) = (frame.image.width as f64, frame.image.height as f64);
        match frame.cutout(ra, dec, 5) {
            Ok(stamp) => {
                assert!(
                    x >= 0.5 && x < w + 0.5 && y >= 0.5 && y < h + 0.5,
                    "{name}: cut off-frame"
                );
                let (col, row) = ((x - 0.5).floor() as usize, (y - 0.5).floor() as usize);
                let want = frame.image.data[row * frame.image.width + col];
                let got = stamp.data[2 * 5 + 2];
                assert!(
                    got == want || (got.is_nan() && want.is_nan()),
                    "{name}: stamp centre"
                );
            }
            Err(e @ CutoutError::OffFrame { .. }) => {
                assert!(
                    !(x >= 0.5 && x < w + 0.5 && y >= 0.5 && y < h + 0.5),
                    "{name}: {e}"
                );
                assert!(e.to_string().contains("off the frame"));
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn bad_fits_inputs_are_errors_that_name_file_and_hdu() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.fits");
    std::fs::write(&p, b"SIMPLE  =                    T / not really").unwrap();
    let e = read_frame(&p, None, None).unwrap_err().to_string();
    assert!(e.contains("broken.fits"), "{e}");

    // A table-only file: no HDU holds an image.
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fits/first_vla.fits");
    let e = read_frame(&committed, Some(&Hdu::Name("WGT".into())), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("first_vla.fits") && e.contains("'WGT'"), "{e}");
    // A SIN projection cannot be used for stamps, and the error says why.
    let f = read_frame(&committed, None, None).unwrap();
    let e = f.cutout(0.0, 0.0, 8).unwrap_err().to_string();
    assert!(e.contains("RA---SIN"), "{e}");
}
