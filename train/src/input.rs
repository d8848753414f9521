//! A batch's inputs as a tensor on the device that trains on them.
//!
//! An F32 batch is copied as the loader decoded it. A compact one
//! ([`Compact`]: U8 pixels, or F16 values already normalised) is copied as
//! stored, a quarter or half of the bytes, from pinned memory without
//! waiting, and decoded on the device. The decoding repeats the loader's
//! arithmetic ([`sciflow_ingest::pixels::decode`]) operation for operation:
//! for 8-bit `standardize` and `standardize_joint`, exact integer sums, the
//! mean and variance each rounded once in f64, then the same single IEEE
//! operations per value; so these inputs are the loader's to the bit.
//! `asinh` takes libtorch's `asinh`, within a few ulps of the loader's.
//!
//! Every division is by a tensor on the device: libtorch's CUDA kernels
//! multiply by the reciprocal of a host scalar divisor, one rounding more
//! than the loader takes.

use safetensors::Dtype;
use sciflow_ingest::contract::InputDecode;
use sciflow_ingest::preprocess::Normalisation;
use sciflow_ingest::{Batch, Compact};
use tch::{Device, Kind, TchError, Tensor};

use crate::{Error, Result};

/// The inputs of `batch` on `device`, `[n, ...sample_shape]` f32, in
/// row-major order (see [`layout`] for the order a GPU network reads).
pub fn inputs(batch: &Batch, device: Device) -> Result<Tensor> {
    let context = || format!("batch of shape {:?}", batch.shape);
    let Some(compact) = &batch.compact else {
        let values = &batch.x;
        // SAFETY: any f32 is 4 initialised bytes; the slice covers exactly
        // `values`' memory and lives no longer than the borrow of it.
        #[allow(unsafe_code)]
        let bytes = unsafe {
            std::slice::from_raw_parts(
                values.as_ptr().cast::<u8>(),
                std::mem::size_of_val(&values[..]),
            )
        };
        return send(bytes, &dims(batch), Kind::Float, device).map_err(Error::torch(context()));
    };
    let stored = stored_on(batch, compact, device)?;
    decode(&stored, &batch.shape[1..], compact).map_err(Error::torch(context()))
}

/// `bytes` (`dims` of `kind`, checked) as a tensor on `device`. For a GPU
/// they are written once, into pinned memory, and copied without waiting;
/// a tensor made first and pinned after would take a second pass over them.
fn send(
    bytes: &[u8],
    dims: &[i64],
    kind: Kind,
    device: Device,
) -> std::result::Result<Tensor, TchError> {
    let expected = dims.iter().product::<i64>().max(0) as usize * kind.elt_size_in_bytes();
    if bytes.len() != expected {
        return Err(TchError::Shape(format!(
            "{} bytes of {kind:?} for shape {dims:?}, expected {expected}",
            bytes.len()
        )));
    }
    if device.is_cuda() {
        if let Some(host) = crate::shim::empty_pinned(dims, kind) {
            // SAFETY: `host` is a new contiguous tensor of exactly
            // `expected` bytes (its sizes and kind are `dims` and `kind`),
            // owned here and not yet shared with any copy.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    host.data_ptr().cast::<u8>(),
                    expected,
                )
            };
            return host.f_to_device_(device, kind, true, false);
        }
    }
    Ok(upload(Tensor::f_from_data_size(bytes, dims, kind)?, device))
}

/// The compact inputs of `batch` as stored, a host tensor `[n,
/// ...sample_shape]` of U8 or F16, not yet decoded.
pub fn stored(batch: &Batch, compact: &Compact) -> Result<Tensor> {
    stored_on(batch, compact, Device::Cpu)
}

/// [`stored`] on `device`.
fn stored_on(batch: &Batch, compact: &Compact, device: Device) -> Result<Tensor> {
    let context = || format!("batch of shape {:?}", batch.shape);
    let kind = match compact.dtype {
        Dtype::U8 => Kind::Uint8,
        Dtype::F16 => Kind::Half,
        other => {
            return Err(Error::Config(format!(
                "compact inputs are U8 or F16, not {other:?}"
            )))
        }
    };
    // libtorch copies as many bytes as the shape says: check there are.
    let expected = batch.shape.iter().product::<usize>() * kind.elt_size_in_bytes();
    if compact.bytes.len() != expected {
        return Err(Error::Config(format!(
            "{}: {} bytes of {:?}, expected {expected}",
            context(),
            compact.bytes.len(),
            compact.dtype
        )));
    }
    send(&compact.bytes, &dims(batch), kind, device).map_err(Error::torch(context()))
}

/// `batch.shape` as libtorch sizes.
fn dims(batch: &Batch) -> Vec<i64> {
    batch.shape.iter().map(|&d| d as i64).collect()
}

/// Copies `t` to `device`: from pinned memory and without waiting for the
/// copy, so it overlaps the device's work on the step before. Where memory
/// cannot be pinned, the copy is made from `t` as it is (and waits).
pub fn upload(t: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cpu => t,
        _ => match pinned(&t, device) {
            Ok(p) => p.to_device_(device, t.kind(), true, false),
            Err(_) => t.to_device(device),
        },
    }
}

/// A copy of host tensor `t` in page-locked memory, for copies to `device`
/// that do not wait. libtorch's `_pin_memory`: `pin_memory` with a device
/// prints two deprecation warnings per call in libtorch 2.11 (four lines a
/// step in every job log), and without one it pins for whatever device
/// libtorch thinks current.
pub fn pinned(t: &Tensor, device: Device) -> std::result::Result<Tensor, TchError> {
    t.f_internal_pin_memory(device)
}

/// Puts a 4-D batch on a GPU in channels-last order, the order its
/// convolutions run fastest in (and the weights are kept in).
pub fn layout(t: Tensor) -> Tensor {
    if t.device().is_cuda() && t.dim() == 4 {
        crate::shim::channels_last(&t).unwrap_or(t)
    } else {
        t
    }
}

/// The network input of stored values `x` (`[n, ...sample]`, on any device).
fn decode(
    x: &Tensor,
    sample: &[usize],
    compact: &Compact,
) -> std::result::Result<Tensor, TchError> {
    let Some(d) = compact.decode else {
        return x.f_to_kind(Kind::Float);
    };
    if compact.dtype != Dtype::U8 {
        // Not what the ingest writes compactly; the loader decodes these.
        return Err(TchError::Kind(format!(
            "a {:?} dataset with a decode step is decoded by the loader",
            compact.dtype
        )));
    }
    let n = x.size()[0];
    let len = sample.iter().product::<usize>().max(1) as i64;
    // Bands, as the loader splits a sample.
    let (bands, band_len) = match *sample {
        [c, h, w] => (c as i64, (h * w) as i64),
        [h, w] => (1, (h * w) as i64),
        _ => (1, len),
    };
    let joint = d.normalisation == Normalisation::StandardizeJoint;
    let groups: [i64; 3] = if joint {
        [n, 1, len]
    } else {
        [n, bands, band_len]
    };
    let v = x.f_reshape(groups)?;
    // `v * scale + offset`, two f32 roundings as the loader's `v as f32 * scale + offset`.
    let values = |v: &Tensor| -> std::result::Result<Tensor, TchError> {
        v.f_to_kind(Kind::Float)?
            .f_mul_scalar(d.scale as f64)?
            .f_add_scalar(d.offset as f64)
    };
    let out = match d.normalisation {
        Normalisation::Standardize | Normalisation::StandardizeJoint => {
            let (mean, sd) = integer_moments(&v, groups[2], &d)?;
            if joint {
                values(&v)?
                    .f_to_kind(Kind::Double)?
                    .f_sub(&mean)?
                    .f_div(&sd)?
                    .f_to_kind(Kind::Float)?
            } else {
                values(&v)?
                    .f_sub(&mean.f_to_kind(Kind::Float)?)?
                    .f_div(&sd.f_to_kind(Kind::Float)?)?
            }
        }
        Normalisation::Asinh { softening } => {
            let y = values(&v)?;
            // The loader's median: the element at index len/2 of the sorted band.
            let k = groups[2] / 2 + 1;
            let med = y.f_kthvalue(k, 2, true)?.0;
            let centred = y.f_sub(&med)?;
            let mad = centred
                .f_abs()?
                .f_kthvalue(k, 2, true)?
                .0
                .f_mul_scalar(1.4826f32 as f64)?
                .f_clamp_min(1e-12)?;
            let soft = mad.f_mul_scalar(softening.max(1e-6) as f64)?;
            centred.f_div(&soft)?.f_asinh()?
        }
        Normalisation::None => values(&v)?,
    };
    out.f_reshape(x.size())
}

/// The f64 mean and deviation of `v * scale + offset` over the last axis of
/// `v` (8-bit values, `count` a group), from exact integer sums: mean
/// `s / count`, variance `(count ss - s^2) / count^2`, each one rounding.
fn integer_moments(
    v: &Tensor,
    count: i64,
    d: &InputDecode,
) -> std::result::Result<(Tensor, Tensor), TchError> {
    let device = v.device();
    let wide = v.f_to_kind(Kind::Int64)?;
    let s = wide.f_sum_dim_intlist(2, true, Kind::Int64)?;
    let ss = wide.f_mul(&wide)?.f_sum_dim_intlist(2, true, Kind::Int64)?;
    let on_device = |x: f64| Tensor::scalar_tensor(x, (Kind::Double, device));
    let mean_v = s.f_to_kind(Kind::Double)?.f_div(&on_device(count as f64))?;
    let var_v = ss
        .f_mul_scalar(count)?
        .f_sub(&s.f_mul(&s)?)?
        .f_to_kind(Kind::Double)?
        .f_div(&on_device((count * count) as f64))?;
    let mean = mean_v
        .f_mul_scalar(d.scale as f64)?
        .f_add_scalar(d.offset as f64)?;
    let sd = var_v
        .f_sqrt()?
        .f_mul_scalar((d.scale as f64).abs())?
        .f_clamp_min(1e-12)?;
    Ok((mean, sd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn compact_batch(
        bytes: Vec<u8>,
        shape: &[usize],
        dtype: Dtype,
        decode: Option<InputDecode>,
    ) -> Batch {
        Batch {
            x: Vec::new(),
            compact: Some(Compact {
                dtype,
                bytes,
                decode,
            }),
            shape: shape.to_vec(),
            y: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// What the loader's worker threads make of the same bytes.
    fn by_the_loader(batch: &Batch) -> Vec<f32> {
        let c = batch.compact.as_ref().unwrap();
        let mut out = Vec::new();
        sciflow_ingest::pixels::decode(
            c.dtype,
            &c.bytes,
            &batch.shape[1..],
            c.decode.as_ref(),
            &mut out,
        );
        out
    }

    fn decoded(batch: &Batch) -> Vec<f32> {
        let x = inputs(batch, Device::Cpu).unwrap();
        assert_eq!(
            x.size(),
            batch.shape.iter().map(|&d| d as i64).collect::<Vec<_>>()
        );
        Vec::<f32>::try_from(x.flatten(0, -1)).unwrap()
    }

    /// 8-bit batches decoded by tensor operations (as on a GPU, here on the
    /// CPU device) equal the loader's: to the bit for the standardisations
    /// and the plain scale, within a few ulps for asinh (libtorch's asinh
    /// against Rust's).
    #[test]
    fn compact_batches_decode_as_the_loader_decodes_them() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for shape in [
            vec![4, 3, 8, 8],
            vec![3, 2, 5, 7],
            vec![2, 9, 4],
            vec![5, 13],
        ] {
            let len: usize = shape.iter().product();
            // A narrow range in one sample: a small deviation, where any
            // extra rounding in the statistics would show.
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let per = len / shape[0];
            for b in &mut bytes[..per] {
                *b = 100 + *b % 3;
            }
            let norms = [
                Normalisation::Standardize,
                Normalisation::StandardizeJoint,
                Normalisation::None,
                Normalisation::Asinh { softening: 2.0 },
            ];
            for normalisation in norms {
                let d = InputDecode {
                    scale: 1.0 / 255.0,
                    offset: -0.25,
                    normalisation,
                };
                let batch = compact_batch(bytes.clone(), &shape, Dtype::U8, Some(d));
                let (ours, loader) = (decoded(&batch), by_the_loader(&batch));
                if matches!(normalisation, Normalisation::Asinh { .. }) {
                    for (a, b) in ours.iter().zip(&loader) {
                        assert!(
                            (a - b).abs() <= 4.0 * f32::EPSILON * b.abs().max(1.0),
                            "{a} vs {b}"
                        );
                    }
                } else {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&ours), bits(&loader), "{shape:?} {normalisation:?}");
                }
            }
            // No decode step: the bytes widened.
            let batch = compact_batch(bytes.clone(), &shape, Dtype::U8, None);
            assert_eq!(decoded(&batch), by_the_loader(&batch));
        }
        // F16 values, already normalised: widened.
        let values: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 * 0.37 - 3.0).collect();
        let mut bytes = Vec::new();
        sciflow_ingest::pixels::encode(Dtype::F16, &values, &mut bytes).unwrap();
        let batch = compact_batch(bytes, &[2, 3, 2, 2], Dtype::F16, None);
        assert_eq!(decoded(&batch), by_the_loader(&batch));
    }

    #[test]
    fn a_compact_batch_of_the_wrong_size_is_an_error() {
        let batch = compact_batch(vec![0; 10], &[2, 3, 2], Dtype::U8, None);
        let err = inputs(&batch, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("[2, 3, 2]"), "{err}");
    }
}
