//! Binary-black-hole waveforms through libhdf5: generated banks, LVC NR
//! injection files and the SXS catalogue's extrapolated-waveform files.
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

/// Reads all of a dataset once its claimed size is plausible for the file
/// holding it: a damaged header can claim terabytes, and reading would try
/// to allocate them.
fn read_all<T: hdf5::H5Type>(ds: &hdf5::Dataset, path: &Path, object: &str) -> Result<Vec<T>> {
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
    let claimed = ds
        .shape()
        .iter()
        .try_fold(std::mem::size_of::<T>() as u64, |a, &d| {
            a.checked_mul(d as u64)
        });
    // Compression shrinks data on disk, never by this much for waveforms.
    let limit = file_len.saturating_mul(64).max(1 << 20);
    match claimed {
        Some(bytes) if bytes <= limit => ds.read_raw().map_err(|source| Error::Hdf5 {
            path: path.to_path_buf(),
            object: object.to_string(),
            source,
        }),
        _ => Err(Error::format(
            path,
            Some(object.to_string()),
            format!(
                "shape {:?} claims more data than a file of {file_len} bytes can hold",
                ds.shape()
            ),
        )),
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
    let params: Vec<f64> = read_all(&pds, path, "dataset /params")?;
    let time: Vec<f64> = read_all(&tds, path, "dataset /time")?;
    let mode = |name: &str| -> Result<Vec<f32>> {
        let (shape, ds) = read(name, 2)?;
        if shape != [n, t] {
            return Err(Error::format(
                path,
                Some(format!("dataset /{name}")),
                format!("expected ({n}, {t}) to match /params and /time, found {shape:?}"),
            ));
        }
        read_all(&ds, path, &format!("dataset /{name}"))
    };
    Ok(Bank {
        params: params.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        time,
        amp: mode("amp_l2_m2")?,
        phase: mode("phase_l2_m2")?,
    })
}

/// The (2,2) mode of one waveform on its own time grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// Where it came from (file, and group for SXS).
    pub source: String,
    /// (q >= 1, chi1z of the heavier body, chi2z).
    pub params: [f64; 3],
    /// Time in M, increasing; t = 0 at the peak (see each reader).
    pub time: Vec<f64>,
    /// |r h22 / M|.
    pub amp: Vec<f64>,
    /// Unwrapped arg h22.
    pub phase: Vec<f64>,
}

impl Waveform {
    /// The waveform if it is physical and finite: q > 0 (put in the q >= 1
    /// convention, the bodies swapped, when it is below 1), |chi| <= 1,
    /// every time, amplitude and phase finite, time increasing. Otherwise
    /// what is wrong, for a reject or an error naming the file and row.
    pub fn checked(mut self) -> std::result::Result<Waveform, String> {
        let [q, c1, c2] = self.params;
        if !(q.is_finite() && c1.is_finite() && c2.is_finite()) {
            return Err(format!(
                "parameters must be finite: q {q}, chi1z {c1}, chi2z {c2}"
            ));
        }
        if q <= 0.0 {
            return Err(format!("mass ratio q must be positive, found {q}"));
        }
        if c1.abs() > 1.0 || c2.abs() > 1.0 {
            return Err(format!(
                "dimensionless spins must lie in [-1, 1]: chi1z {c1}, chi2z {c2}"
            ));
        }
        if q < 1.0 {
            self.params = [1.0 / q, c2, c1];
        }
        let first_bad = |what: &str, v: &[f64]| {
            v.iter()
                .position(|x| !x.is_finite())
                .map(|i| format!("{what} is {} at sample {i} of {}", v[i], v.len()))
        };
        if let Some(e) = first_bad("time", &self.time)
            .or_else(|| first_bad("amplitude", &self.amp))
            .or_else(|| first_bad("phase", &self.phase))
        {
            return Err(e);
        }
        if let Some(i) = self.time.windows(2).position(|w| w[1] <= w[0]) {
            return Err(format!(
                "time must increase: {} then {} at sample {}",
                self.time[i],
                self.time[i + 1],
                i + 1
            ));
        }
        Ok(self)
    }
}

/// (q, chi1z, chi2z) with the heavier body first.
fn ordered_params(m1: f64, m2: f64, s1z: f64, s2z: f64) -> [f64; 3] {
    if m1 >= m2 {
        [m1 / m2, s1z, s2z]
    } else {
        [m2 / m1, s2z, s1z]
    }
}

/// Reads the (2,2) mode of an LVC NR injection file (Formats 1-3): the ROM
/// splines `amp_l2_m2` and `phase_l2_m2` (datasets `X`/`Y`, or the older
/// `knots`/`data`, and `deg`) evaluated every `dt` M over the span both cover,
/// and the masses and aligned spins from the root attributes. As LAL does, a
/// file whose `eta` disagrees with its masses by more than 1e-3 is refused.
/// Time is shifted so the amplitude's peak is t = 0.
pub fn read_lvcnr(path: &Path, dt: f64) -> Result<Waveform> {
    let h5 = |object: String| {
        move |source| Error::Hdf5 {
            path: path.to_path_buf(),
            object,
            source,
        }
    };
    let file = hdf5::File::open(path).map_err(h5("file".into()))?;
    let attr = |name: &str| -> Result<f64> {
        let a = file
            .attr(name)
            .map_err(h5(format!("root attribute `{name}`")))?;
        a.read_scalar::<f64>()
            .or_else(|_| a.read_scalar::<i64>().map(|v| v as f64))
            .map_err(h5(format!("root attribute `{name}`")))
    };
    let (m1, m2) = (attr("mass1")?, attr("mass2")?);
    let (s1z, s2z) = (attr("spin1z")?, attr("spin2z")?);
    if !(m1 > 0.0 && m2 > 0.0) {
        return Err(Error::format(
            path,
            Some("root attributes".into()),
            format!("masses must be positive: mass1 {m1}, mass2 {m2}"),
        ));
    }
    let eta = attr("eta")?;
    let eta_m = m1 * m2 / (m1 + m2).powi(2);
    if (eta - eta_m).abs() > 1e-3 {
        return Err(Error::format(
            path,
            Some("root attribute `eta`".into()),
            format!("eta {eta} disagrees with mass1, mass2 (m1 m2 / (m1 + m2)^2 = {eta_m:.6})"),
        ));
    }
    let spline = |group: &str| -> Result<crate::spline::Spline> {
        let g = file.group(group).map_err(h5(format!("group /{group}")))?;
        let (xn, yn) = if g.link_exists("X") {
            ("X", "Y")
        } else {
            ("knots", "data")
        };
        let read = |n: &str| -> Result<Vec<f64>> {
            let object = format!("dataset /{group}/{n} (expected X/Y or knots/data)");
            let ds = g.dataset(n).map_err(h5(object.clone()))?;
            read_all(&ds, path, &object)
        };
        let (x, y) = (read(xn)?, read(yn)?);
        let deg_ds = g
            .dataset("deg")
            .map_err(h5(format!("dataset /{group}/deg")))?;
        let deg = deg_ds
            .read_scalar::<i64>()
            .or_else(|_| deg_ds.read_scalar::<f64>().map(|v| v as i64))
            .map_err(h5(format!("dataset /{group}/deg")))?;
        crate::spline::Spline::interpolate(&x, &y, deg.max(0) as usize)
            .map_err(|e| Error::format(path, Some(format!("group /{group}")), e.to_string()))
    };
    let amp_s = spline("amp_l2_m2")?;
    let phase_s = spline("phase_l2_m2")?;
    let (a0, a1) = amp_s.domain();
    let (p0, p1) = phase_s.domain();
    let (t0, t1) = (a0.max(p0), a1.min(p1));
    if dt.is_nan() || dt <= 0.0 || t1 - t0 < 2.0 * dt {
        return Err(Error::format(
            path,
            None,
            format!(
                "the amplitude and phase splines share no span of 2 x dt = {} M ({t0}..{t1})",
                2.0 * dt
            ),
        ));
    }
    let n = ((t1 - t0) / dt).floor() as usize + 1;
    let mut time: Vec<f64> = (0..n).map(|i| t0 + i as f64 * dt).collect();
    let amp: Vec<f64> = time.iter().map(|&t| amp_s.eval(t)).collect();
    let phase: Vec<f64> = time.iter().map(|&t| phase_s.eval(t)).collect();
    let peak = peak_time(&time, &amp);
    time.iter_mut().for_each(|t| *t -= peak);
    Ok(Waveform {
        source: path.display().to_string(),
        params: ordered_params(m1, m2, s1z, s2z),
        time,
        amp,
        phase,
    })
}

/// The time of the amplitude's maximum, refined by a parabola through the
/// sample at the maximum and its neighbours.
pub fn peak_time(time: &[f64], amp: &[f64]) -> f64 {
    let i = amp
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |m| m.0);
    if i == 0 || i + 1 >= amp.len() {
        return time[i];
    }
    let (y0, y1, y2) = (amp[i - 1], amp[i], amp[i + 1]);
    let denom = y0 - 2.0 * y1 + y2;
    if denom == 0.0 {
        return time[i];
    }
    let frac = 0.5 * (y0 - y2) / denom;
    time[i] + frac * (time[i + 1] - time[i])
}

/// Reads the (2,2) mode of an SXS waveform file (`rhOverM_Asymptotic_GeometricUnits_CoM.h5`
/// or without `_CoM`) at extrapolation order `order` (`Extrapolated_N{order}.dir`),
/// with masses and spins from `metadata` (`relaxed_mass1/2`,
/// `relaxed_dimensionless_spin1/2`). Time is shifted so the peak of the summed
/// |h_lm|^2 over the file's modes is t = 0, as the catalogue defines it.
pub fn read_sxs(path: &Path, order: u32, metadata: &Path) -> Result<Waveform> {
    let dir = format!("Extrapolated_N{order}.dir");
    let h5 = |object: String| {
        move |source| Error::Hdf5 {
            path: path.to_path_buf(),
            object,
            source,
        }
    };
    let file = hdf5::File::open(path).map_err(h5("file".into()))?;
    let g = file
        .group(&dir)
        .map_err(h5(format!("group /{dir} (extrapolation order {order})")))?;
    let read_mode = |name: &str| -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let ds = g
            .dataset(name)
            .map_err(h5(format!("dataset /{dir}/{name}")))?;
        let shape = ds.shape();
        if shape.len() != 2 || shape[1] != 3 {
            return Err(Error::format(
                path,
                Some(format!("dataset /{dir}/{name}")),
                format!("expected (N, 3) columns t, Re h, Im h; found {shape:?}"),
            ));
        }
        let raw: Vec<f64> = read_all(&ds, path, &format!("dataset /{dir}/{name}"))?;
        let mut cols = (Vec::new(), Vec::new(), Vec::new());
        for r in raw.chunks_exact(3) {
            cols.0.push(r[0]);
            cols.1.push(r[1]);
            cols.2.push(r[2]);
        }
        Ok(cols)
    };
    let (time, re, im) = read_mode("Y_l2_m2.dat")?;
    if let Some(i) = (1..time.len())
        .find(|&i| time[i].partial_cmp(&time[i - 1]) != Some(std::cmp::Ordering::Greater))
    {
        return Err(Error::format(
            path,
            Some(format!("dataset /{dir}/Y_l2_m2.dat")),
            format!("time is not increasing at row {i}"),
        ));
    }
    let mut power: Vec<f64> = re.iter().zip(&im).map(|(r, i)| r * r + i * i).collect();
    for name in g.member_names().map_err(h5(format!("group /{dir}")))? {
        if name == "Y_l2_m2.dat" || !name.starts_with("Y_l") {
            continue;
        }
        let (t, r, i) = read_mode(&name)?;
        if t.len() == power.len() {
            for (k, p) in power.iter_mut().enumerate() {
                *p += r[k] * r[k] + i[k] * i[k];
            }
        }
    }
    let amp: Vec<f64> = re.iter().zip(&im).map(|(r, i)| r.hypot(*i)).collect();
    let mut phase: Vec<f64> = re.iter().zip(&im).map(|(r, i)| i.atan2(*r)).collect();
    unwrap_phase(&mut phase);
    let peak = peak_time(&time, &power);
    let time = time.iter().map(|t| t - peak).collect();

    let text =
        std::fs::read_to_string(metadata).map_err(|e| Error::io("failed to read", metadata, e))?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::format(
            metadata,
            Some(format!("line {}", e.line())),
            format!("not JSON: {e}"),
        )
    })?;
    let num = |k: &str| {
        meta[k]
            .as_f64()
            .ok_or_else(|| Error::format(metadata, None, format!("expected a number `{k}`")))
    };
    let spin_z = |k: &str| {
        meta[k]
            .as_array()
            .filter(|a| a.len() == 3)
            .and_then(|a| a[2].as_f64())
            .ok_or_else(|| Error::format(metadata, None, format!("expected a 3-vector `{k}`")))
    };
    let (m1, m2) = (num("relaxed_mass1")?, num("relaxed_mass2")?);
    Ok(Waveform {
        source: format!("{}:/{dir}", path.display()),
        params: ordered_params(
            m1,
            m2,
            spin_z("relaxed_dimensionless_spin1")?,
            spin_z("relaxed_dimensionless_spin2")?,
        ),
        time,
        amp,
        phase,
    })
}

/// Removes 2 pi jumps between neighbouring samples.
pub fn unwrap_phase(phase: &mut [f64]) {
    let mut offset = 0.0;
    let tau = std::f64::consts::TAU;
    for i in 1..phase.len() {
        let raw = phase[i] + offset;
        let d = raw - phase[i - 1];
        let k = (d / tau).round();
        offset -= k * tau;
        phase[i] = raw - k * tau;
    }
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
