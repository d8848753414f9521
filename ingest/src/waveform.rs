//! Binary-black-hole waveform banks through libhdf5.
//!
//! The bank layout is the one generated sets use: `/params` (N, 3) = q, chi1z,
//! chi2z; `/time` (T,) in units of total mass M; `/amp_l2_m2` and
//! `/phase_l2_m2` (N, T), amp = |r h22 / M|, phase = unwrapped arg h22, t = 0 at
//! the peak of |h22|.

use std::path::Path;

use crate::{Error, Result};

/// The (2,2) mode of every waveform in a bank.
#[derive(Debug, Clone, PartialEq)]
pub struct Bank {
    /// (q, chi1z, chi2z) per waveform.
    pub params: Vec<[f64; 3]>,
    /// Common time grid, in M.
    pub time: Vec<f64>,
    /// Amplitudes, waveform-major (N x T).
    pub amp: Vec<f32>,
    /// Unwrapped phases, waveform-major (N x T).
    pub phase: Vec<f32>,
}

impl Bank {
    /// Number of waveforms.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when the bank holds no waveform.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// h+ and hx of waveform `i`: h22 = A exp(i phi), h+ = Re, hx = -Im.
    pub fn polarisations(&self, i: usize) -> (Vec<f32>, Vec<f32>) {
        let t = self.time.len();
        let (a, p) = (
            &self.amp[i * t..(i + 1) * t],
            &self.phase[i * t..(i + 1) * t],
        );
        a.iter()
            .zip(p)
            .map(|(a, p)| (a * p.cos(), -a * p.sin()))
            .unzip()
    }
}

/// Reads a bank file, checking that every dataset is there with a consistent shape.
pub fn read_bank(path: &Path) -> Result<Bank> {
    let h5 = |object: &str| {
        let object = object.to_string();
        move |source| Error::Hdf5 {
            path: path.to_path_buf(),
            object,
            source,
        }
    };
    let file = hdf5::File::open(path).map_err(h5("file"))?;
    let read = |name: &str, want_dims: usize| -> Result<(Vec<usize>, hdf5::Dataset)> {
        let ds = file
            .dataset(name)
            .map_err(h5(&format!("dataset /{name}")))?;
        let shape = ds.shape();
        if shape.len() != want_dims {
            return Err(Error::format(
                path,
                Some(format!("dataset /{name}")),
                format!("expected {want_dims} dimensions, found shape {shape:?}"),
            ));
        }
        Ok((shape, ds))
    };
    let (pshape, pds) = read("params", 2)?;
    let (tshape, tds) = read("time", 1)?;
    let (n, t) = (pshape[0], tshape[0]);
    if pshape[1] != 3 {
        return Err(Error::format(
            path,
            Some("dataset /params".into()),
            format!("expected (N, 3), found {pshape:?}"),
        ));
    }
    let params: Vec<f64> = pds.read_raw().map_err(h5("dataset /params"))?;
    let time: Vec<f64> = tds.read_raw().map_err(h5("dataset /time"))?;
    let mode = |name: &str| -> Result<Vec<f32>> {
        let (shape, ds) = read(name, 2)?;
        if shape != [n, t] {
            return Err(Error::format(
                path,
                Some(format!("dataset /{name}")),
                format!("expected ({n}, {t}) to match /params and /time, found {shape:?}"),
            ));
        }
        ds.read_raw().map_err(h5(&format!("dataset /{name}")))
    };
    Ok(Bank {
        params: params.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        time,
        amp: mode("amp_l2_m2")?,
        phase: mode("phase_l2_m2")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_committed_tiny_bank() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/waveforms/bank_tiny.h5");
        let bank = read_bank(&p).unwrap();
        assert_eq!(bank.len(), 4);
        assert_eq!(bank.time.len(), 411);
        assert_eq!((bank.time[0], *bank.time.last().unwrap()), (-4000.0, 100.0));
        assert!((bank.params[0][0] - 6.54274915).abs() < 1e-6);
        // Each waveform peaks at t = 0 (the bank's alignment convention).
        let t0 = bank.time.iter().position(|&t| t == 0.0).unwrap();
        for i in 0..bank.len() {
            let a = &bank.amp[i * 411..(i + 1) * 411];
            let peak = a
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .unwrap()
                .0;
            assert!(
                (peak as i64 - t0 as i64).abs() <= 1,
                "waveform {i} peaks at {peak}"
            );
        }
        let (hp, hc) = bank.polarisations(0);
        assert_eq!(hp.len(), 411);
        assert!((hp[t0].hypot(hc[t0]) - bank.amp[t0]).abs() < 1e-6);
    }

    #[test]
    fn a_missing_dataset_is_named() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fits/first_vla.fits");
        let err = read_bank(&p).unwrap_err().to_string();
        assert!(err.contains("first_vla.fits"), "{err}");
    }
}
