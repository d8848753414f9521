//! Image preprocessing: centre crop, antialiased resize, NaN policy, per-band
//! normalisation. Everything works on planar (band-first) f32 images.

use serde::{Deserialize, Serialize};

/// A planar image: `data[c * height * width + y * width + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Number of bands.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Pixel values, band-major.
    pub data: Vec<f32>,
}

impl Image {
    /// Wraps `data`, or `None` if its length does not match the dimensions.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Option<Self> {
        (channels * height * width == data.len() && channels > 0 && height > 0 && width > 0)
            .then_some(Image {
                channels,
                height,
                width,
                data,
            })
    }

    pub(crate) fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }

    /// Averages the bands into one (an RGB cutout used as a single-band image).
    pub fn to_single_band(&self) -> Image {
        let n = self.height * self.width;
        let mut data = vec![0.0f32; n];
        for c in 0..self.channels {
            for (d, s) in data.iter_mut().zip(self.plane(c)) {
                *d += s / self.channels as f32;
            }
        }
        Image {
            channels: 1,
            data,
            ..*self
        }
    }

    /// The central `fraction` of the image in each direction (1.0 keeps it whole).
    pub fn centre_crop(&self, fraction: f32) -> Image {
        let (y0, x0, h, w) = crop_box(self.height, self.width, fraction);
        let mut data = Vec::with_capacity(self.channels * h * w);
        for c in 0..self.channels {
            let p = self.plane(c);
            for y in y0..y0 + h {
                data.extend_from_slice(&p[y * self.width + x0..y * self.width + x0 + w]);
            }
        }
        Image {
            channels: self.channels,
            height: h,
            width: w,
            data,
        }
    }

    /// Resamples to `height` x `width` with a triangle filter whose support widens
    /// with the reduction factor, so downsampling averages rather than aliases.
    pub fn resize(&self, height: usize, width: usize) -> Image {
        if height == self.height && width == self.width {
            return self.clone();
        }
        let wy = axis_weights(self.height, height);
        // Along x each output gathers a run of neighbouring inputs: as
        // (first input, weights) a slice product the compiler keeps tight,
        // instead of a bounds-checked gather per tap (a tenth of ingest).
        let wx: Vec<(usize, Vec<f32>)> = axis_weights(self.width, width)
            .into_iter()
            .map(|taps| (taps[0].0, taps.iter().map(|t| t.1).collect()))
            .collect();
        let mut data = Vec::with_capacity(self.channels * height * width);
        let mut rows = vec![0.0f32; height * self.width];
        for c in 0..self.channels {
            let p = self.plane(c);
            // Separable: rows first (along y), then columns (along x).
            rows.iter_mut().for_each(|v| *v = 0.0);
            for (oy, taps) in wy.iter().enumerate() {
                let out = &mut rows[oy * self.width..(oy + 1) * self.width];
                for &(iy, w) in taps {
                    for (o, s) in out
                        .iter_mut()
                        .zip(&p[iy * self.width..(iy + 1) * self.width])
                    {
                        *o += w * s;
                    }
                }
            }
            for oy in 0..height {
                let row = &rows[oy * self.width..(oy + 1) * self.width];
                data.extend(wx.iter().map(|(first, ws)| {
                    ws.iter()
                        .zip(&row[*first..*first + ws.len()])
                        .map(|(w, s)| w * s)
                        .sum::<f32>()
                }));
            }
        }
        Image {
            channels: self.channels,
            height,
            width,
            data,
        }
    }
}

/// The central `fraction` of a `height` x `width` image: (first row, first
/// column, rows, columns).
pub fn crop_box(height: usize, width: usize, fraction: f32) -> (usize, usize, usize, usize) {
    let h = ((height as f32 * fraction).round() as usize).clamp(1, height);
    let w = ((width as f32 * fraction).round() as usize).clamp(1, width);
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// For each output index, the (input index, weight) taps of a triangle
/// filter: consecutive input indices, ascending.
fn axis_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n_in as f64 / n_out as f64;
    let support = scale.max(1.0);
    (0..n_out)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale - 0.5;
            let lo = (centre - support).floor().max(0.0) as usize;
            let hi = ((centre + support).ceil() as usize).min(n_in - 1);
            let mut taps: Vec<(usize, f32)> = (lo..=hi)
                .filter_map(|i| {
                    let w = 1.0 - ((i as f64 - centre) / support).abs();
                    (w > 0.0).then_some((i, w as f32))
                })
                .collect();
            if taps.is_empty() {
                taps.push((centre.round().clamp(0.0, (n_in - 1) as f64) as usize, 1.0));
            }
            let total: f32 = taps.iter().map(|t| t.1).sum();
            taps.iter_mut().for_each(|t| t.1 /= total);
            taps
        })
        .collect()
}

/// How pixel values are scaled before they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Normalisation {
    /// Per image and band: subtract the mean, divide by the standard deviation.
    #[default]
    Standardize,
    /// Per image, one mean and standard deviation over all bands together:
    /// scale- and offset-free like `standardize`, but the bands keep their
    /// ratios, so colour (spirals are bluer than ellipticals) survives.
    StandardizeJoint,
    /// Per image and band: asinh(x / softening) after subtracting the median
    /// (a Lupton-style stretch that keeps faint structure and bright cores).
    Asinh {
        /// Softening, in units of the band's robust noise (MAD) estimate.
        softening: f32,
    },
    /// Store values as read.
    None,
}

/// Replaces NaN/inf with zero and applies `norm` to each band in place.
///
/// Returns the number of non-finite pixels replaced, so a caller can reject
/// an image that is mostly blank.
pub fn normalise(img: &mut Image, norm: Normalisation) -> usize {
    if norm == Normalisation::StandardizeJoint {
        let finite: Vec<f64> = img
            .data
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| v as f64)
            .collect();
        let m = finite.len().max(1) as f64;
        let mean = finite.iter().sum::<f64>() / m;
        let sd = (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m)
            .sqrt()
            .max(1e-12);
        let bad = img.data.len() - finite.len();
        for v in img.data.iter_mut() {
            *v = if v.is_finite() {
                ((*v as f64 - mean) / sd) as f32
            } else {
                0.0
            };
        }
        return bad;
    }
    let n = img.height * img.width;
    let mut bad = 0;
    for c in 0..img.channels {
        let plane = &mut img.data[c * n..(c + 1) * n];
        match norm {
            Normalisation::None | Normalisation::StandardizeJoint => {
                bad += zero_missing(plane);
            }
            Normalisation::Standardize => {
                // Two passes in f64 without a copy: this runs once per band of
                // every sample, so it is part of the ingest's hot loop.
                let (mut sum, mut count) = (0.0f64, 0usize);
                for &v in plane.iter().filter(|v| v.is_finite()) {
                    sum += v as f64;
                    count += 1;
                }
                let m = count.max(1) as f64;
                let mean = sum / m;
                let var = plane
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / m;
                let (mean, sd) = (mean as f32, var.sqrt().max(1e-12) as f32);
                bad += n - count;
                for v in plane.iter_mut() {
                    *v = if v.is_finite() { (*v - mean) / sd } else { 0.0 };
                }
            }
            Normalisation::Asinh { softening } => {
                let finite: Vec<f32> = plane.iter().copied().filter(|v| v.is_finite()).collect();
                bad += n - finite.len();
                let med = median(&finite);
                let dev: Vec<f32> = finite.iter().map(|v| (v - med).abs()).collect();
                let mad = (1.4826 * median(&dev)).max(1e-12);
                let soft = softening.max(1e-6) * mad;
                for v in plane.iter_mut() {
                    *v = if v.is_finite() {
                        ((*v - med) / soft).asinh()
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    bad
}

/// Sets missing (non-finite) values to zero; returns how many there were.
fn zero_missing(plane: &mut [f32]) -> usize {
    let mut bad = 0;
    for v in plane.iter_mut().filter(|v| !v.is_finite()) {
        *v = 0.0;
        bad += 1;
    }
    bad
}

fn median(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    let mid = s.len() / 2;
    let (_, m, _) = s.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    *m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_preserves_a_constant_and_averages_when_shrinking() {
        let img = Image::new(2, 9, 7, vec![3.0; 2 * 9 * 7]).unwrap();
        let r = img.resize(4, 5);
        assert_eq!((r.channels, r.height, r.width), (2, 4, 5));
        assert!(r.data.iter().all(|v| (v - 3.0).abs() < 1e-5));

        // A checkerboard halved must come out near its mean, not aliased to 0 or 1.
        let data = (0..64 * 64)
            .map(|i| ((i / 64 + i % 64) % 2) as f32)
            .collect();
        let r = Image::new(1, 64, 64, data).unwrap().resize(16, 16);
        assert!(
            r.data.iter().all(|v| (v - 0.5).abs() < 0.1),
            "{:?}",
            &r.data[..4]
        );
    }

    #[test]
    fn filter_taps_are_runs_of_consecutive_inputs() {
        // `resize` reads each output's taps as one slice of the row.
        for n_in in 1..120 {
            for n_out in 1..80 {
                for taps in axis_weights(n_in, n_out) {
                    assert!(!taps.is_empty());
                    assert!(
                        taps.windows(2).all(|t| t[1].0 == t[0].0 + 1),
                        "{n_in} -> {n_out}: {taps:?}"
                    );
                    assert!(taps.last().unwrap().0 < n_in);
                }
            }
        }
    }

    #[test]
    fn crop_takes_the_centre() {
        let img = Image::new(1, 4, 4, (0..16).map(|v| v as f32).collect()).unwrap();
        assert_eq!(img.centre_crop(0.5).data, vec![5.0, 6.0, 9.0, 10.0]);
    }

    #[test]
    fn standardize_gives_zero_mean_unit_variance_and_clears_nan() {
        let mut img = Image::new(1, 1, 5, vec![1.0, 2.0, f32::NAN, 3.0, 4.0]).unwrap();
        assert_eq!(normalise(&mut img, Normalisation::Standardize), 1);
        assert_eq!(img.data[2], 0.0);
        let finite = [img.data[0], img.data[1], img.data[3], img.data[4]];
        let mean: f32 = finite.iter().sum::<f32>() / 4.0;
        let var: f32 = finite.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }

    #[test]
    fn joint_standardisation_keeps_band_ratios() {
        // Band 1 is twice band 0: after joint standardisation their difference
        // survives, while per-band standardisation makes them equal.
        let data: Vec<f32> = (0..8)
            .map(|v| v as f32)
            .chain((0..8).map(|v| 2.0 * v as f32))
            .collect();
        let mut joint = Image::new(2, 2, 4, data.clone()).unwrap();
        normalise(&mut joint, Normalisation::StandardizeJoint);
        let mean: f32 = joint.data.iter().sum::<f32>() / 16.0;
        let var: f32 = joint.data.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 16.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        assert!(joint.data[8..].iter().sum::<f32>() > joint.data[..8].iter().sum::<f32>() + 1.0);
        let mut per_band = Image::new(2, 2, 4, data).unwrap();
        normalise(&mut per_band, Normalisation::Standardize);
        for k in 0..8 {
            assert!((per_band.data[k] - per_band.data[8 + k]).abs() < 1e-5);
        }
    }

    #[test]
    fn asinh_is_monotonic_and_centred_on_the_median() {
        let mut img = Image::new(1, 1, 5, vec![0.0, 1.0, 2.0, 3.0, 100.0]).unwrap();
        normalise(&mut img, Normalisation::Asinh { softening: 1.0 });
        assert_eq!(img.data[2], 0.0);
        assert!(img.data.windows(2).all(|w| w[0] < w[1]));
    }
}
