//! How an image dataset stores its pixels, and how the loader turns them
//! back into the network's input.
//!
//! Three stored types (safetensors dtypes), chosen per dataset by `dtype:`:
//!
//! - `U8`: for 8-bit sources (JPEG, PNG), the pixels after crop and resize,
//!   rounded to 1/255 steps, before any normalisation. `dataset.json`'s
//!   `decode` says how the loader makes the input: `x * scale + offset` (the
//!   [0, 1] values ingest read), then the stage's `normalisation` per sample.
//!   A quarter of the bytes of F32; the rounding is below the 8-bit source's
//!   own step.
//! - `F16`: for float sources (FITS), the values after the normalisation the
//!   ingest applied. Half precision keeps 11 significant bits (a relative
//!   step of 2^-11, about 5e-4) over ±65504; a value beyond that range is
//!   refused, naming its file. Half the bytes of F32.
//! - `F32`: values after normalisation, as every dataset before had them.

use std::path::Path;

use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use crate::contract::InputDecode;
use crate::preprocess::{normalise, Image, Normalisation};

/// What an ingest stage's `dtype:` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreAs {
    /// `u8` when every image is 8-bit (JPEG, PNG), else `f32`: FITS pixels
    /// are physical values whose range a stage's normalisation may leave
    /// wide (`none`), so halving them is the user's choice (`f16`).
    #[default]
    Auto,
    /// 8-bit pixels, normalised by the loader (8-bit sources only).
    U8,
    /// Half-precision values after normalisation.
    F16,
    /// Single-precision values after normalisation.
    F32,
}

impl StoreAs {
    /// The dtype stored for these source images (8-bit when each, as its
    /// path names it, is a JPEG or PNG), or, when `u8` is asked for, the
    /// index of the first source that is not 8-bit.
    pub fn resolve(self, sources: &[&Path]) -> Result<Dtype, usize> {
        let eight_bit = |p: &Path| {
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png"))
        };
        let other = sources.iter().position(|p| !eight_bit(p));
        Ok(match (self, other) {
            (StoreAs::U8, Some(i)) => return Err(i),
            (StoreAs::Auto, None) | (StoreAs::U8, None) => Dtype::U8,
            (StoreAs::Auto | StoreAs::F32, _) => Dtype::F32,
            (StoreAs::F16, _) => Dtype::F16,
        })
    }

    /// What to ask for to store as a dataset already does (its `x.dtype`).
    pub fn like(stored: &str) -> StoreAs {
        match dtype_named(stored) {
            Some(Dtype::U8) => StoreAs::U8,
            Some(Dtype::F16) => StoreAs::F16,
            _ => StoreAs::F32,
        }
    }
}

/// The name `dataset.json` gives a stored dtype (`x.dtype`).
pub fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::U8 => "U8",
        Dtype::F16 => "F16",
        _ => "F32",
    }
}

/// The stored dtype `dataset.json` names, if it is one `x` may have.
pub fn dtype_named(name: &str) -> Option<Dtype> {
    match name {
        "U8" => Some(Dtype::U8),
        "F16" => Some(Dtype::F16),
        "F32" => Some(Dtype::F32),
        _ => None,
    }
}

/// The largest magnitude half precision holds.
pub const F16_MAX: f32 = 65504.0;

/// Appends `values` stored as `dtype` (little-endian). U8 takes values in
/// [0, 1] (clamped; missing values, already zeroed, stay 0). Returns the
/// first value F16 cannot hold, if any (nothing is appended then).
pub fn encode(dtype: Dtype, values: &[f32], out: &mut Vec<u8>) -> Result<(), f32> {
    match dtype {
        Dtype::U8 => {
            // Rounds half up (values are non-negative): a plain loop the
            // compiler vectorises, where `f32::round` is a call per value.
            let start = out.len();
            out.resize(start + values.len(), 0);
            for (o, &v) in out[start..].iter_mut().zip(values) {
                *o = (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            }
        }
        Dtype::F16 => {
            if let Some(&v) = values.iter().find(|v| v.is_nan() || v.abs() > F16_MAX) {
                return Err(v);
            }
            out.reserve(values.len() * 2);
            for &v in values {
                out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        }
        _ => {
            out.reserve(values.len() * 4);
            for &v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    Ok(())
}

/// Bytes per stored value.
pub fn width(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

/// Appends the network input of the stored samples of `shape`
/// (`[channels, height, width]` for images) held in `bytes`: widened to f32,
/// then `decode`'s scale, offset and per-sample normalisation where given.
///
/// For 8-bit pixels the statistics of `standardize` and `standardize_joint`
/// are those of the integers, exact in f64 (`x = v * scale + offset` has
/// mean `mean(v) * scale + offset` and deviation `sd(v) * |scale|`); they are
/// sums a vectorised loop takes in one pass. Other normalisations run
/// [`normalise`] on the f32 values, as the ingest does.
pub fn decode(
    dtype: Dtype,
    bytes: &[u8],
    shape: &[usize],
    decode: Option<&InputDecode>,
    out: &mut Vec<f32>,
) {
    let len: usize = shape.iter().product::<usize>().max(1);
    let (channels, height, width) = match *shape {
        [c, h, w] => (c, h, w),
        [h, w] => (1, h, w),
        _ => (1, 1, len),
    };
    if let (Dtype::U8, Some(d)) = (dtype, decode) {
        match d.normalisation {
            Normalisation::Standardize => {
                for sample in bytes.chunks_exact(len) {
                    for band in sample.chunks_exact(height * width) {
                        standardize_u8(band, d, false, out);
                    }
                }
                return;
            }
            Normalisation::StandardizeJoint => {
                for sample in bytes.chunks_exact(len) {
                    standardize_u8(sample, d, true, out);
                }
                return;
            }
            _ => {}
        }
    }
    let start = out.len();
    match dtype {
        Dtype::U8 => out.extend(bytes.iter().map(|&b| b as f32)),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        _ => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
    }
    let Some(d) = decode else { return };
    for sample in out[start..].chunks_exact_mut(len) {
        let mut img = Image {
            channels,
            height,
            width,
            data: sample.iter().map(|&v| v * d.scale + d.offset).collect(),
        };
        normalise(&mut img, d.normalisation);
        sample.copy_from_slice(&img.data);
    }
}

/// One band (or, `joint`, one whole sample) of 8-bit pixels, standardised
/// with the exact mean and deviation of its integers; compiled a second
/// time for AVX2, taken where the CPU has it. Integer sums and single IEEE
/// operations per lane (Rust never fuses a multiply and an add) give the
/// same bits either way; AVX2 widens the bytes and divides 8 lanes at once
/// where the x86-64 baseline (SSE2) does 4.
fn standardize_u8(values: &[u8], d: &InputDecode, joint: bool, out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just found to have AVX2, all this needs.
        #[allow(unsafe_code)]
        unsafe {
            standardize_u8_avx2(values, d, joint, out)
        };
        return;
    }
    standardize_u8_any(values, d, joint, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn standardize_u8_avx2(values: &[u8], d: &InputDecode, joint: bool, out: &mut Vec<f32>) {
    standardize_u8_any(values, d, joint, out);
}

#[inline(always)]
fn standardize_u8_any(values: &[u8], d: &InputDecode, joint: bool, out: &mut Vec<f32>) {
    // Sums of at most 2^24 values below 2^16 fit u64 exactly.
    let (mut s, mut ss) = (0u64, 0u64);
    for chunk in values.chunks(1 << 16) {
        // Wrapping adds that cannot wrap (2^16 values below 2^16): checked
        // ones, as debug builds make `+=`, would keep this loop scalar.
        let (mut a, mut b) = (0u32, 0u32);
        for &v in chunk {
            a = a.wrapping_add(v as u32);
            b = b.wrapping_add((v as u32) * (v as u32));
        }
        s += a as u64;
        ss += b as u64;
    }
    // Mean s/n and variance (n ss - s^2) / n^2, each one rounding of exact
    // integers (below 2^53 for images up to 150,000 values a sample).
    let n = values.len().max(1) as u128;
    let mean_v = s as f64 / n as f64;
    let var_v = (n * ss as u128 - (s as u128) * (s as u128)) as f64 / (n * n) as f64;
    let (scale, offset) = (d.scale as f64, d.offset as f64);
    let mean = mean_v * scale + offset;
    let sd = (var_v.sqrt() * scale.abs()).max(1e-12);
    let (scale, offset) = (d.scale, d.offset);
    let start = out.len();
    out.resize(start + values.len(), 0.0);
    let dst = &mut out[start..];
    // Plain indexed loops over locals: the compiler vectorises them.
    if joint {
        // As `normalise` does it: in f64, from the f32 values.
        for (o, &v) in dst.iter_mut().zip(values) {
            *o = (((v as f32 * scale + offset) as f64 - mean) / sd) as f32;
        }
    } else {
        let (mean, sd) = (mean as f32, sd as f32);
        for (o, &v) in dst.iter_mut().zip(values) {
            *o = (v as f32 * scale + offset - mean) / sd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The AVX2 build of the 8-bit standardisation (taken where the CPU has
    /// it) gives the baseline build's bits, for both kinds and odd lengths.
    #[test]
    fn avx2_and_baseline_standardisation_agree_to_the_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for len in [1usize, 7, 64 * 64, 3 * 96 * 96 + 5] {
            let values: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            for normalisation in [Normalisation::Standardize, Normalisation::StandardizeJoint] {
                let d = InputDecode {
                    scale: 1.0 / 255.0,
                    offset: 0.0,
                    normalisation,
                };
                let joint = normalisation == Normalisation::StandardizeJoint;
                let (mut fast, mut base) = (Vec::new(), Vec::new());
                standardize_u8(&values, &d, joint, &mut fast);
                standardize_u8_any(&values, &d, joint, &mut base);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&base), "{len} values, {normalisation:?}");
                // And they standardise: mean 0, deviation 1 (for more than one value).
                if len > 1 {
                    let m = fast.iter().map(|&x| x as f64).sum::<f64>() / len as f64;
                    assert!(m.abs() < 1e-5, "mean {m}");
                }
            }
        }
    }
}
