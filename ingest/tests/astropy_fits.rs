//! The FITS reader against files astropy writes: every BITPIX with BSCALE/BZERO
//! and BLANK, NaN, whole-file gzip and bzip2, tile-compressed RICE_1 and GZIP_1,
//! a cube, a DES-like tile with SCI/WGT extensions, TAN WCS in its three
//! header forms, TAN-SIP and TPV; on each, stamps at sky positions inside,
//! across the edges of and off the frame against astropy's `Cutout2D`; plus
//! world <-> pixel checks on real survey frames (every projection among them
//! works or is refused by its CTYPE). The files and astropy's
//! own reading of them come from `fits_cases.py`, run with the project's Python
//! (`PIPELINE_PYTHON`, set up by scripts/setup.sh with astropy); without it the
//! test fails rather than passing unchecked.

use std::path::{Path, PathBuf};
use std::process::Command;

use sciflow_ingest::readers::fits::{read_frame, read_stamp, Hdu};
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
    // Every real frame of the shared data folder, when it is present.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fits");
    let mut real = vec![committed];
    match std::fs::read_dir(&shared) {
        Ok(dir) => {
            let mut more: Vec<PathBuf> = dir
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "fits"))
                .collect();
            more.sort();
            real.extend(more);
        }
        Err(_) => eprintln!(
            "note: {} absent, checking committed files only",
            shared.display()
        ),
    }
    let spec = make_cases(dir.path(), &real);
    let cases = spec["cases"].as_array().unwrap();
    assert!(cases.len() >= 21, "{} cases", cases.len());
    let mut stamps_checked = 0;
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
        check_wcs(name, &frame, &case["wcs"], 1e-6);
        stamps_checked += check_stamps(name, dir.path(), case);
    }
    assert!(stamps_checked >= 21 * 12, "{stamps_checked} stamps");
    let mut projections = std::collections::BTreeSet::new();
    for r in spec["real"].as_array().unwrap() {
        let file = PathBuf::from(r["file"].as_str().unwrap());
        let name = file.display().to_string();
        let frame = read_frame(&file, None, None).unwrap();
        let ctype1 = r["ctype"][0].as_str();
        match frame.wcs() {
            Ok(_) => {
                let checks = r["wcs"].as_array().unwrap();
                assert!(!checks.is_empty(), "{name}: we read a WCS astropy does not");
                // Galactic frames: the wcs crate rotates ICRS to galactic with the
                // Hipparcos matrix, astropy through its FK4-based definition;
                // they differ by some 70 milliarcseconds.
                let galactic = checks[0]["galactic"].as_bool().unwrap();
                check_wcs(&name, &frame, &r["wcs"], if galactic { 2e-2 } else { 1e-6 });
                projections.insert(ctype1.unwrap().to_string());
            }
            Err(e) => {
                let e = e.to_string();
                match ctype1 {
                    Some(c) => assert!(e.contains(c), "{name}: {e}"),
                    None => assert!(e.contains("CTYPE1"), "{name}: {e}"),
                }
            }
        }
    }
    eprintln!("projections checked against astropy on real frames: {projections:?}");
}

/// Each stamp equals astropy's Cutout2D pixel for pixel (exactly for integer
/// data, within 1e-6 relative otherwise); off the frame is an error naming
/// the position and the frame.
fn check_stamps(name: &str, dir: &Path, case: &Value) -> usize {
    let file = dir.join(case["file"].as_str().unwrap());
    let integer = case["integer"].as_bool().unwrap();
    let mut n = 0;
    for st in case["stamps"].as_array().unwrap() {
        let (ra, dec) = (st["ra"].as_f64().unwrap(), st["dec"].as_f64().unwrap());
        let size = st["size"].as_u64().unwrap() as usize;
        let got = read_stamp(
            &file,
            hdu(&case["hdu"]).as_ref(),
            hdu(&case["weight_hdu"]).as_ref(),
            (ra, dec),
            size,
            f32::NAN,
        );
        let at = format!("{name}: stamp {size} at pixel ({}, {})", st["x"], st["y"]);
        match st["expected"].as_str() {
            None => {
                let e = got.expect_err(&at).to_string();
                assert!(
                    e.contains("off the frame") && e.contains(case["file"].as_str().unwrap()),
                    "{at}: {e}"
                );
            }
            Some(raw) => {
                let img = got.unwrap_or_else(|e| panic!("{at}: {e}"));
                let want = read_f32(&dir.join(raw));
                assert_eq!(img.data.len(), want.len(), "{at}");
                for (i, (g, w)) in img.data.iter().zip(&want).enumerate() {
                    let ok = if w.is_nan() {
                        g.is_nan()
                    } else if integer {
                        g == w
                    } else {
                        (g - w).abs() <= 1e-6 * w.abs().max(1e-30)
                    };
                    assert!(ok, "{at}: pixel {i}: {g} != astropy's {w}");
                }
            }
        }
        n += 1;
    }
    n
}

/// World <-> pixel against astropy (`all_world2pix` to 1e-12 px): pixels
/// within `tol`, sky positions within 1e-9 degrees (equatorial frames).
fn check_wcs(name: &str, frame: &sciflow_ingest::readers::fits::Frame, checks: &Value, tol: f64) {
    let checks = checks.as_array().unwrap();
    if checks.is_empty() {
        return;
    }
    let wcs = frame.wcs().unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut worst = 0f64;
    for c in checks {
        let (ra, dec, x, y) = (
            c["ra"].as_f64().unwrap(),
            c["dec"].as_f64().unwrap(),
            c["x"].as_f64().unwrap(),
            c["y"].as_f64().unwrap(),
        );
        let (gx, gy) = wcs.world_to_pixel(ra, dec).unwrap();
        worst = worst.max((gx - x).abs()).max((gy - y).abs());
        assert!(
            (gx - x).abs() < tol && (gy - y).abs() < tol,
            "{name}: ({ra}, {dec}) -> ({gx}, {gy}), astropy ({x}, {y})"
        );
        let (gra, gdec) = wcs.pixel_to_world(x, y).unwrap();
        let dra = ((gra - ra + 180.0).rem_euclid(360.0) - 180.0) * dec.to_radians().cos();
        let sky_tol = if tol > 1e-6 { 5e-5 } else { 1e-9 };
        assert!(
            dra.abs() < sky_tol && (gdec - dec).abs() < sky_tol,
            "{name}: ({x}, {y}) -> ({gra}, {gdec}), astropy ({ra}, {dec})"
        );
    }
    eprintln!("{name}: world -> pixel within {worst:.2e} px of astropy");
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
    // A position on the far side of the sky is off the frame, by name.
    let e = read_stamp(&committed, None, None, (0.0, -60.0), 8, f32::NAN)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("first_vla.fits") && e.contains("off the frame") && e.contains("Dec -60"),
        "{e}"
    );
    // A frame without celestial axes names what is missing.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plain.fits");
    sciflow_ingest::readers::fits::write_image(
        &p,
        &sciflow_ingest::preprocess::Image::new(1, 4, 4, vec![0.0; 16]).unwrap(),
        &[],
    )
    .unwrap();
    let e = read_stamp(&p, None, None, (10.0, 10.0), 2, 0.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plain.fits") && e.contains("CTYPE1"), "{e}");
}
