//! The readers against broken files: real fixtures from `data/` mutated by
//! truncation, byte flips, inserted and zeroed runs, FITS header-card edits,
//! and HDF5 datasets and attributes deleted or replaced with other shapes
//! and values. Every case must end in `Ok` or a typed error — never a panic,
//! a hang (a watchdog aborts a case that runs 60 s) or an unbounded
//! allocation (the process runs under a 6 GiB address-space limit, so one
//! aborts it).
//!
//! `FUZZ_CASES` sets the cases per reader (default 3,000; `bench/fuzz.sh`
//! runs more); `FUZZ_SEED` the first seed. Each reader prints how many cases
//! ran, how many were read and how many refused.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use sciflow_ingest::readers::catalog::{read_catalog, CatalogOptions};
use sciflow_ingest::readers::{fits, raster, waveforms};

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(p)
}

fn cases() -> u64 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn first_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Limits this process's address space once, and starts the watchdog.
fn guard() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let limit = 6u64 << 30;
        let status = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--as={limit}:{limit}"))
            .status()
            .expect("prlimit (util-linux) runs");
        assert!(
            status.success(),
            "prlimit could not limit the address space"
        );
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            for (what, since) in running.iter() {
                if since.elapsed() > Duration::from_secs(60) {
                    eprintln!("fuzz: `{what}` still running after 60 s: a hang");
                    std::process::abort();
                }
            }
        });
    });
}

/// The cases running now, for the watchdog.
static RUNNING: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// How a reader did over its cases.
#[derive(Debug, Default)]
struct Tally {
    read: u64,
    refused: u64,
    panics: Vec<String>,
}

/// Runs `read` on one case, named `what`, catching a panic.
fn one_case<T, E: std::fmt::Display>(
    tally: &mut Tally,
    what: String,
    read: impl FnOnce() -> Result<T, E>,
) {
    let id = SERIAL.fetch_add(1, Ordering::Relaxed);
    let key = format!("{what} #{id}");
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((key.clone(), Instant::now()));
    match catch_unwind(AssertUnwindSafe(read)) {
        Ok(Ok(_)) => tally.read += 1,
        Ok(Err(e)) => {
            // A typed error names what it read.
            assert!(!e.to_string().is_empty(), "{what}: an empty error");
            tally.refused += 1
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            tally.panics.push(format!("{what}: {msg}"));
        }
    }
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(k, _)| k != &key);
}

fn report(reader: &str, tally: &Tally) {
    eprintln!(
        "fuzz {reader}: {} cases, {} read, {} refused, {} panics",
        tally.read + tally.refused + tally.panics.len() as u64,
        tally.read,
        tally.refused,
        tally.panics.len()
    );
    assert!(
        tally.panics.is_empty(),
        "{reader} panicked on {} case(s), first: {}",
        tally.panics.len(),
        tally.panics[0]
    );
    assert!(
        tally.refused > 0,
        "{reader}: no case was refused: the mutations did nothing"
    );
}

/// One byte-level mutation of `bytes`.
fn mutate(bytes: &[u8], rng: &mut ChaCha8Rng) -> (Vec<u8>, String) {
    let mut b = bytes.to_vec();
    if b.is_empty() {
        return (b, "empty".into());
    }
    let what = match rng.random_range(0..5) {
        0 => {
            let n = rng.random_range(0..b.len());
            b.truncate(n);
            format!("truncated to {n}")
        }
        1 => {
            let k = rng.random_range(1..=8);
            for _ in 0..k {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            format!("{k} bit flips")
        }
        2 => {
            let i = rng.random_range(0..b.len());
            let n = rng.random_range(1..64);
            let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            b.splice(i..i, junk);
            format!("{n} bytes inserted at {i}")
        }
        3 => {
            let i = rng.random_range(0..b.len());
            let n = rng.random_range(1..256).min(b.len() - i);
            b[i..i + n].fill(if rng.random() { 0 } else { 0xFF });
            format!("{n} bytes overwritten at {i}")
        }
        _ => {
            let i = rng.random_range(0..b.len());
            let v: u8 = rng.random();
            b[i] = v;
            format!("byte {i} set to {v}")
        }
    };
    (b, what)
}

/// A FITS header card edited: a value made huge, negative, zero, fractional
/// or text, or the card blanked.
fn edit_card(bytes: &[u8], rng: &mut ChaCha8Rng) -> (Vec<u8>, String) {
    let mut b = bytes.to_vec();
    let header_cards = b
        .chunks(80)
        .position(|c| c.starts_with(b"END     "))
        .unwrap_or(0)
        .max(1);
    let card = rng.random_range(0..header_cards);
    let at = card * 80;
    let name = String::from_utf8_lossy(&b[at..at + 8]).trim().to_string();
    let values = [
        "999999999",
        "-1",
        "0",
        "2.5",
        "'TEXT'",
        "-64",
        "8",
        "64",
        "-2147483648",
        "1e300",
    ];
    let (new, what) = if rng.random_range(0..6) == 0 {
        ([b' '; 80].to_vec(), format!("card {name} blanked"))
    } else {
        let v = values[rng.random_range(0..values.len())];
        let mut c = format!("{name:<8}= {v:>20}").into_bytes();
        c.resize(80, b' ');
        (c, format!("{name} = {v}"))
    };
    b[at..at + 80].copy_from_slice(&new);
    (b, what)
}

#[test]
fn fits_reader_survives_mutated_files() {
    guard();
    let dir = tempfile::tempdir().unwrap();
    let fixtures: Vec<(String, Vec<u8>)> =
        ["fits/cfht_megaprime_sa110.fits", "fits/first_vla.fits"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(data(f)).unwrap()))
            .collect();
    let mut tally = Tally::default();
    let mut rng = ChaCha8Rng::seed_from_u64(first_seed());
    for case in 0..cases() {
        let (name, bytes) = &fixtures[case as usize % fixtures.len()];
        let (mutated, what) = if rng.random_range(0..2) == 0 {
            edit_card(bytes, &mut rng)
        } else {
            mutate(bytes, &mut rng)
        };
        let path = dir.path().join(format!("case{}.fits", case % 8));
        std::fs::write(&path, &mutated).unwrap();
        // The whole frame, then its WCS and a stamp at the sky position of
        // its centre: damaged CTYPE, CRPIX, CD or PV cards reach the wcs
        // crate and the distortions.
        one_case(&mut tally, format!("{name}: {what}"), || {
            let frame = fits::read_frame(&path, None, None)?;
            let (w, h) = (frame.image.width as f64, frame.image.height as f64);
            let centre = frame
                .wcs()
                .ok()
                .and_then(|wcs| wcs.pixel_to_world(w / 2.0, h / 2.0));
            match centre {
                Some(at) => fits::read_stamp(&path, None, None, at, 16, f32::NAN).map(|_| ()),
                None => Ok(()),
            }
        });
    }
    report("fits", &tally);
}

#[test]
fn jpeg_and_png_decoders_survive_mutated_files() {
    guard();
    let jpegs: Vec<(String, Vec<u8>)> = std::fs::read_dir(data("gz1/images"))
        .unwrap()
        .take(4)
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    // A PNG of the first cutout, 16 bits per channel.
    let img = image::load_from_memory(&jpegs[0].1).unwrap().into_rgb16();
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut fixtures = jpegs;
    fixtures.push(("png".into(), png));
    let mut tally = Tally::default();
    let mut rng = ChaCha8Rng::seed_from_u64(first_seed());
    for case in 0..cases() {
        let (name, bytes) = &fixtures[case as usize % fixtures.len()];
        let (mutated, what) = mutate(bytes, &mut rng);
        let path = PathBuf::from(name);
        one_case(&mut tally, format!("{name}: {what}"), || {
            raster::decode_cropped(&path, &mutated, 0.5)
        });
    }
    report("jpeg/png", &tally);
}

#[test]
fn labels_table_reader_survives_mutated_files() {
    guard();
    let dir = tempfile::tempdir().unwrap();
    let csv = std::fs::read(data("gz1/labels.csv")).unwrap();
    let mut tally = Tally::default();
    let mut rng = ChaCha8Rng::seed_from_u64(first_seed());
    for _ in 0..cases() {
        let (mutated, what) = mutate(&csv, &mut rng);
        let path = dir.path().join("labels.csv");
        std::fs::write(&path, &mutated).unwrap();
        one_case(&mut tally, format!("labels.csv: {what}"), || {
            read_catalog(&path, &CatalogOptions::default())
        });
    }
    report("csv", &tally);
}

/// A structural edit of an HDF5 file in place: a root dataset, group or
/// attribute deleted, or a dataset or attribute replaced by one of another
/// shape, type or value. Returns what was done.
fn edit_hdf5(path: &Path, rng: &mut ChaCha8Rng) -> String {
    let f = hdf5::File::open_rw(path).unwrap();
    let mut names = f.member_names().unwrap();
    // Datasets inside the LVC groups too.
    for g in names.clone() {
        if let Ok(group) = f.group(&g) {
            names.extend(
                group
                    .member_names()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| format!("{g}/{m}")),
            );
        }
    }
    let attrs = f.attr_names().unwrap_or_default();
    let choice = rng.random_range(0..4);
    if choice == 0 && !attrs.is_empty() {
        let a = &attrs[rng.random_range(0..attrs.len())];
        f.delete_attr(a).unwrap();
        return format!("attribute {a} deleted");
    }
    if choice == 1 && !attrs.is_empty() {
        let a = &attrs[rng.random_range(0..attrs.len())];
        f.delete_attr(a).unwrap();
        let v = [f64::NAN, -1.0, 0.0, 1e308, 2.5][rng.random_range(0..5)];
        f.new_attr::<f64>()
            .create(a.as_str())
            .unwrap()
            .write_scalar(&v)
            .unwrap();
        return format!("attribute {a} = {v}");
    }
    let name = names[rng.random_range(0..names.len())].clone();
    f.unlink(&name).unwrap();
    if choice == 2 {
        return format!("{name} deleted");
    }
    let shapes: [&[usize]; 5] = [&[0], &[3], &[2, 2], &[5, 1, 2], &[1, 7]];
    let shape = shapes[rng.random_range(0..shapes.len())];
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| [f64::NAN, -3.0, 0.0, 1.0, f64::INFINITY][rng.random_range(0..5)])
        .collect();
    f.new_dataset::<f64>()
        .shape(shape)
        .create(name.as_str())
        .and_then(|d| d.write_raw(&values))
        .unwrap();
    format!("{name} replaced by {shape:?} of {values:?}")
}

fn hdf5_cases(reader: &str, fixture: &Path, read: impl Fn(&Path) -> Result<(), String>) {
    guard();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture).unwrap();
    let mut tally = Tally::default();
    let mut rng = ChaCha8Rng::seed_from_u64(first_seed());
    for case in 0..cases() {
        let path = dir.path().join(format!("case{}.h5", case % 8));
        let what = if rng.random_range(0..2) == 0 {
            std::fs::write(&path, &bytes).unwrap();
            edit_hdf5(&path, &mut rng)
        } else {
            let (mutated, what) = mutate(&bytes, &mut rng);
            std::fs::write(&path, &mutated).unwrap();
            what
        };
        one_case(&mut tally, format!("{}: {what}", fixture.display()), || {
            read(&path)
        });
    }
    report(reader, &tally);
}

#[test]
fn bank_reader_survives_mutated_files() {
    hdf5_cases("hdf5 bank", &data("waveforms/bank_tiny.h5"), |p| {
        let bank = waveforms::read_bank(p).map_err(|e| e.to_string())?;
        // What the writer does with each row next.
        let t = bank.time.len();
        for i in 0..bank.len() {
            let w = waveforms::Waveform {
                source: String::new(),
                params: bank.params[i],
                time: bank.time.clone(),
                amp: bank.amp[i * t..(i + 1) * t]
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
                phase: bank.phase[i * t..(i + 1) * t]
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
            };
            w.checked()?;
        }
        Ok(())
    });
}

#[test]
fn lvc_reader_survives_mutated_files() {
    hdf5_cases(
        "hdf5 lvc",
        &data("waveforms/lvcnr/PhenomTHM_q5.191_s+0.065_+0.465.h5"),
        |p| {
            let w = waveforms::read_lvcnr(p, 1.0).map_err(|e| e.to_string())?;
            w.checked().map(|_| ())
        },
    );
}
