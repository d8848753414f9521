//! Writing datasets: plans, shards, manifests, rejects, and what ranks and threads change (nothing).

use super::*;
use crate::loader::{Loader, LoaderConfig};

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/waveforms")
        .join(p)
}

#[test]
fn phase_amplitude_channels_are_the_strain_at_unit_amplitude() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WaveformsConfig {
        inputs: vec![data("bank_tiny.h5")],
        dt: 2.0,
        window: Some([-3000.0, 80.0]),
        sxs_order: 2,
        split: SplitFractions::new(0.0, 0.0),
        shard_size: NonZeroUsize::new(64).unwrap(),
        on_error: OnError::Fail,
        representation: Representation::PhaseAmplitude,
        align_phase: true,
    };
    let read = |cfg: &WaveformsConfig, name: &str| {
        let info = write_dataset(cfg, 4, &dir.path().join(name), 1, &|_| {}).unwrap();
        let cfg = LoaderConfig {
            shuffle: false,
            ..LoaderConfig::new(64, 0)
        };
        let l = Loader::new(&dir.path().join(name), Split::Train, cfg).unwrap();
        (info, l.epoch(0).next().unwrap().unwrap())
    };
    let (info, pa) = read(&cfg, "pa");
    assert_eq!(info.x.sample_shape, vec![3, 1541]);
    cfg.representation = Representation::Strain;
    let (_, st) = read(&cfg, "st");
    let n = 1541;
    for i in 0..pa.shape[0] {
        let (p, s) = (
            &pa.x[i * 3 * n..(i + 1) * 3 * n],
            &st.x[i * 2 * n..(i + 1) * 2 * n],
        );
        let amax = p[2 * n..].iter().cloned().fold(0.0f32, f32::max);
        assert!((amax - 1.0).abs() < 1e-6, "{amax}");
        for k in 0..n {
            let (c, sn, a) = (p[k], p[n + k], p[2 * n + k]);
            assert!((c * c + sn * sn - 1.0).abs() < 1e-5);
            // Amplitude x unit phasor is the peak-normalised strain.
            assert!((a * c - s[k]).abs() < 1e-5 && (a * sn - s[n + k]).abs() < 1e-5);
        }
        // Phase 0 at the peak (t = 0, sample 1500): h+ = 1, hx = 0.
        assert!(
            (s[1500] - 1.0).abs() < 1e-4 && s[n + 1500].abs() < 1e-4,
            "{i}"
        );
    }
    // Left as generated, the phase at the peak differs between waveforms.
    cfg.align_phase = false;
    let (_, raw) = read(&cfg, "raw");
    let at_peak: Vec<f32> = (0..raw.shape[0])
        .map(|i| raw.x[i * 2 * n + n + 1500])
        .collect();
    assert!(at_peak.iter().any(|v| v.abs() > 0.1), "{at_peak:?}");
}

#[test]
fn banks_and_lvc_files_become_one_dataset_the_loader_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WaveformsConfig {
        inputs: vec![data("bank_tiny.h5"), data("lvcnr")],
        dt: 2.0,
        window: Some([-3000.0, 80.0]),
        sxs_order: 2,
        split: SplitFractions::new(0.0, 0.4),
        shard_size: NonZeroUsize::new(2).unwrap(),
        on_error: OnError::Fail,
        representation: Representation::Strain,
        align_phase: true,
    };
    let out = dir.path().join("ds");
    let info = write_dataset(&cfg, 4, &out, 2, &|_| {}).unwrap();
    assert_eq!(info.counts.total, 5);
    assert_eq!((info.counts.test, info.counts.train), (2, 3));
    assert_eq!(info.x.sample_shape, vec![2, 1541]);
    assert_eq!(info.time_grid, Some([-3000.0, 2.0, 1541.0]));
    // Same inputs and seed with another thread count: the same shards.
    let again = write_dataset(&cfg, 4, &dir.path().join("ds2"), 1, &|_| {}).unwrap();
    assert_eq!(
        info.shards.iter().map(|s| &s.blake3).collect::<Vec<_>>(),
        again.shards.iter().map(|s| &s.blake3).collect::<Vec<_>>()
    );
    let loader = Loader::new(
        &out,
        Split::Train,
        LoaderConfig {
            shuffle: false,
            ..LoaderConfig::new(8, 0)
        },
    )
    .unwrap();
    let batches: Vec<_> = loader.epoch(0).collect::<Result<_>>().unwrap();
    let b = &batches[0];
    assert_eq!(b.shape, vec![3, 2, 1541]);
    assert_eq!(b.targets.len(), 9);
    assert!(b.y.is_empty());
    for s in 0..3 {
        let t = &b.targets[s * 3..s * 3 + 3];
        assert!(
            t[0] >= 1.0 && t[1].abs() <= 1.0 && t[2].abs() <= 1.0,
            "{t:?}"
        );
        // Normalised: the largest |h| on the grid is 1, near t = 0.
        let x = &b.x[s * 2 * 1541..(s + 1) * 2 * 1541];
        let amp: Vec<f32> = (0..1541).map(|k| x[k].hypot(x[1541 + k])).collect();
        let (peak_k, peak) =
            amp.iter()
                .enumerate()
                .fold((0, 0f32), |m, (k, v)| if *v > m.1 { (k, *v) } else { m });
        assert!((peak - 1.0).abs() < 1e-5);
        assert!(
            (-3000.0 + 2.0 * peak_k as f64).abs() <= 2.0,
            "peak at {peak_k}"
        );
    }
    // The LVC file's parameters come through as written.
    let manifest = ParquetReader::new(std::fs::File::open(out.join("manifest.parquet")).unwrap())
        .finish()
        .unwrap();
    let ids = manifest.column("sample_id").unwrap().str().unwrap().clone();
    let q = manifest.column("q").unwrap().f64().unwrap().clone();
    let i = ids
        .iter()
        .position(|s| s == Some("PhenomTHM_q5.191_s+0.065_+0.465"))
        .unwrap();
    assert!((q.get(i).unwrap() - 5.1911835).abs() < 1e-6);
}

#[test]
fn a_window_outside_the_data_and_a_foreign_file_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WaveformsConfig {
        inputs: vec![data("bank_tiny.h5")],
        dt: 1.0,
        window: Some([-9000.0, 0.0]),
        sxs_order: 2,
        split: SplitFractions::default(),
        shard_size: NonZeroUsize::new(4).unwrap(),
        on_error: OnError::Fail,
        representation: Representation::Strain,
        align_phase: true,
    };
    let e = write_dataset(&cfg, 1, &dir.path().join("a"), 1, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("bank_tiny.h5") && e.contains("-9000"), "{e}");
    // Unset window: the span every input covers.
    cfg.window = None;
    let info = write_dataset(&cfg, 1, &dir.path().join("b"), 1, &|_| {}).unwrap();
    assert_eq!(info.time_grid, Some([-4000.0, 1.0, 4101.0]));
    // A FITS file among the inputs is a reject with the reason.
    cfg.inputs
        .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fits/first_vla.fits"));
    cfg.on_error = OnError::Skip;
    let info = write_dataset(&cfg, 1, &dir.path().join("c"), 1, &|_| {}).unwrap();
    assert_eq!(info.counts.rejected, 1);
    cfg.on_error = OnError::Fail;
    let e = write_dataset(&cfg, 1, &dir.path().join("d"), 1, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("first_vla.fits"), "{e}");
}

#[test]
fn nan_and_unphysical_bank_rows_are_rejects_naming_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let bank = dir.path().join("bank.h5");
    std::fs::copy(data("bank_tiny.h5"), &bank).unwrap();
    let original = read_bank(&bank).unwrap();
    assert_eq!(original.len(), 4);
    {
        let f = hdf5::File::open_rw(&bank).unwrap();
        let amp = f.dataset("amp_l2_m2").unwrap();
        let mut a: Vec<f32> = amp.read_raw().unwrap();
        a[7] = f32::NAN; // row 0
        amp.write_raw(&a).unwrap();
        let params = f.dataset("params").unwrap();
        let mut p: Vec<f64> = params.read_raw().unwrap();
        p[3] = -3.0; // row 1: q < 0
        p[2 * 3 + 1] = 1.5; // row 2: |chi1z| > 1
        p[3 * 3] = 0.5; // row 3: q < 1, the bodies listed light first
        params.write_raw(&p).unwrap();
    }
    let mut cfg = WaveformsConfig {
        inputs: vec![bank.clone()],
        dt: 2.0,
        window: Some([-3000.0, 80.0]),
        sxs_order: 2,
        split: SplitFractions::new(0.0, 0.0),
        shard_size: NonZeroUsize::new(64).unwrap(),
        on_error: OnError::Fail,
        representation: Representation::Strain,
        align_phase: true,
    };
    let e = write_dataset(&cfg, 1, &dir.path().join("fail"), 1, &|_| {})
        .unwrap_err()
        .to_string();
    // Fail stops at the first bad row met, naming file and row.
    assert!(
        e.contains("bank.h5: row ") && e.contains(" of /params: "),
        "{e}"
    );
    cfg.on_error = OnError::Skip;
    let info = write_dataset(&cfg, 1, &dir.path().join("skip"), 1, &|_| {}).unwrap();
    assert_eq!(info.counts.rejected, 3);
    assert_eq!(info.counts.total, original.len() - 3);
    use polars::prelude::SerReader as _;
    let rejects = polars::prelude::ParquetReader::new(
        std::fs::File::open(dir.path().join("skip/rejects.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    let reasons: Vec<String> = rejects
        .column("reason")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|r| r.unwrap_or_default().to_string())
        .collect();
    for want in [
        "row 0 of /params: amplitude is NaN",
        "row 1 of /params: mass ratio q must be positive, found -3",
        "row 2 of /params: dimensionless spins must lie in [-1, 1]",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no `{want}` in {reasons:?}"
        );
    }
    // Row 3 is kept in the q >= 1 convention, its spins swapped.
    let [_, c1, c2] = original.params[3];
    let l = Loader::new(
        &dir.path().join("skip"),
        Split::Train,
        LoaderConfig {
            shuffle: false,
            ..LoaderConfig::new(64, 0)
        },
    )
    .unwrap();
    let batch = l.epoch(0).next().unwrap().unwrap();
    let y: Vec<[f32; 3]> = batch
        .targets
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    assert!(
        y.contains(&[2.0, c2 as f32, c1 as f32]),
        "row 3 not stored as q = 2 with swapped spins: {y:?}"
    );
}

#[test]
fn cross_validation_folds_test_each_waveform_once() {
    let k = 3;
    let mut tested = Vec::new();
    let mut total = 0;
    for fold in 0..k {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WaveformsConfig {
            inputs: vec![data("bank_tiny.h5")],
            dt: 2.0,
            window: Some([-3000.0, 80.0]),
            sxs_order: 2,
            split: SplitFractions::fold(0.2, k, fold),
            shard_size: NonZeroUsize::new(4).unwrap(),
            on_error: OnError::Fail,
            representation: Representation::Strain,
            align_phase: true,
        };
        let info = write_dataset(&cfg, 4, dir.path(), 1, &|_| {}).unwrap();
        total = info.counts.total;
        assert!(
            info.counts.val > 0 && info.counts.train > 0,
            "{:?}",
            info.counts
        );
        let test = crate::contract::SplitManifest::read(dir.path(), Split::Test).unwrap();
        assert_eq!(test.rows.len(), info.counts.test);
        tested.extend(test.strings("sample_id").unwrap());
    }
    crate::contract::assert_each_tested_once(tested, total, "every waveform tested once");
}
