//! Interpolating B-splines as the LVC NR injection format's ROM splines are
//! evaluated: a spline of degree `k` through every point (X, Y), with the
//! knots FITPACK chooses for an interpolating spline (what romspline's
//! `UnivariateSpline(X, Y, k=deg, s=0)` builds): `k + 1` knots at each end
//! and, between them, the data points themselves for odd `k` (skipping
//! `k / 2` at each end) or the midpoints between data points for even `k`.

/// Why a spline cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplineError {
    /// Degree outside 1..=5.
    #[error("spline degree {0} is not in 1..=5")]
    Degree(usize),
    /// Too few points for the degree.
    #[error("{points} point(s) are too few for a degree-{degree} spline (need at least {})", degree + 1)]
    TooFew {
        /// Points given.
        points: usize,
        /// Degree asked for.
        degree: usize,
    },
    /// X and Y differ in length.
    #[error("X has {0} values, Y has {1}")]
    Length(usize, usize),
    /// X is not strictly increasing (or holds NaN).
    #[error("X is not strictly increasing at index {0}")]
    NotIncreasing(usize),
    /// The collocation system could not be solved.
    #[error("the interpolation system is singular")]
    Singular,
}

/// A B-spline of degree `k`: knots `t` and coefficients `c` (`c.len() + k + 1 == t.len()`).
#[derive(Debug, Clone, PartialEq)]
pub struct Spline {
    t: Vec<f64>,
    c: Vec<f64>,
    k: usize,
}

impl Spline {
    /// The interpolating spline of degree `k` through (x, y).
    pub fn interpolate(x: &[f64], y: &[f64], k: usize) -> Result<Spline, SplineError> {
        if !(1..=5).contains(&k) {
            return Err(SplineError::Degree(k));
        }
        if x.len() != y.len() {
            return Err(SplineError::Length(x.len(), y.len()));
        }
        let m = x.len();
        if m <= k {
            return Err(SplineError::TooFew {
                points: m,
                degree: k,
            });
        }
        // Written so NaN fails too.
        if let Some(i) =
            (1..m).find(|&i| x[i].partial_cmp(&x[i - 1]) != Some(std::cmp::Ordering::Greater))
        {
            return Err(SplineError::NotIncreasing(i));
        }
        // Knots: k + 1 copies of each end, m - k - 1 interior knots.
        let mut t = vec![x[0]; k + 1];
        let half = k / 2;
        for l in 0..m - k - 1 {
            let j = l + half + 1;
            t.push(if k % 2 == 1 {
                x[j]
            } else {
                0.5 * (x[j] + x[j - 1])
            });
        }
        t.extend(std::iter::repeat_n(x[m - 1], k + 1));
        // Collocation: row i holds B_j(x_i) for the k + 1 basis functions that
        // are non-zero there. The matrix is banded and totally positive, so
        // elimination without pivoting is stable (de Boor).
        let bw = k; // half-bandwidth bound
        let width = 2 * bw + 1;
        let mut a = vec![0.0f64; m * width]; // a[i][j - i + bw]
        let mut rhs = y.to_vec();
        let mut basis = vec![0.0; k + 1];
        for (i, &xi) in x.iter().enumerate() {
            let span = find_span(&t, k, m, xi);
            basis_functions(&t, k, span, xi, &mut basis);
            for (r, b) in basis.iter().enumerate() {
                let j = span - k + r;
                let d = j as isize - i as isize + bw as isize;
                if !(0..width as isize).contains(&d) {
                    if *b != 0.0 {
                        return Err(SplineError::Singular);
                    }
                    continue;
                }
                a[i * width + d as usize] = *b;
            }
        }
        // Banded Gaussian elimination.
        for p in 0..m {
            let piv = a[p * width + bw];
            if piv.abs() < 1e-300 || !piv.is_finite() {
                return Err(SplineError::Singular);
            }
            for i in p + 1..(p + bw + 1).min(m) {
                let f = a[i * width + (p + bw - i)] / piv;
                if f == 0.0 {
                    continue;
                }
                for j in p..(p + bw + 1).min(m) {
                    a[i * width + (j + bw - i)] -= f * a[p * width + (j + bw - p)];
                }
                rhs[i] -= f * rhs[p];
            }
        }
        let mut c = vec![0.0; m];
        for p in (0..m).rev() {
            let mut s = rhs[p];
            for j in p + 1..(p + bw + 1).min(m) {
                s -= a[p * width + (j + bw - p)] * c[j];
            }
            c[p] = s / a[p * width + bw];
        }
        Ok(Spline { t, c, k })
    }

    /// The first and last knot: the range the spline was built on.
    pub fn domain(&self) -> (f64, f64) {
        (self.t[0], self.t[self.t.len() - 1])
    }

    /// The spline's value at `x` (polynomial continuation outside the domain).
    pub fn eval(&self, x: f64) -> f64 {
        let mut basis = vec![0.0; self.k + 1];
        let span = find_span(&self.t, self.k, self.c.len(), x);
        basis_functions(&self.t, self.k, span, x, &mut basis);
        basis
            .iter()
            .enumerate()
            .map(|(r, b)| b * self.c[span - self.k + r])
            .sum()
    }
}

/// The index `s` in `k..n` with `t[s] <= x < t[s + 1]` (the last span for x at
/// or beyond the right end; the first for x before the left end).
fn find_span(t: &[f64], k: usize, n: usize, x: f64) -> usize {
    if x >= t[n] {
        return n - 1;
    }
    if x <= t[k] {
        return k;
    }
    // t[k..=n] is non-decreasing; find the last s with t[s] <= x.
    let (mut lo, mut hi) = (k, n);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if t[mid] <= x {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The k + 1 non-zero B-spline basis values at x in span `s` (Cox-de Boor).
fn basis_functions(t: &[f64], k: usize, s: usize, x: f64, out: &mut [f64]) {
    let mut left = vec![0.0; k + 1];
    let mut right = vec![0.0; k + 1];
    out[0] = 1.0;
    for j in 1..=k {
        left[j] = x - t[s + 1 - j];
        right[j] = t[s + j] - x;
        let mut saved = 0.0;
        for r in 0..j {
            let denom = right[r + 1] + left[j - r];
            let temp = if denom == 0.0 { 0.0 } else { out[r] / denom };
            out[r] = saved + right[r + 1] * temp;
            saved = left[j - r] * temp;
        }
        out[j] = saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_polynomials_of_its_degree_and_passes_through_the_points() {
        let x: Vec<f64> = (0..12).map(|i| (i as f64).powf(1.3) - 3.0).collect();
        for k in 1..=5 {
            // A polynomial of degree k is reproduced exactly by a degree-k spline.
            let p = |v: f64| {
                (0..=k)
                    .map(|e| (e as f64 + 0.5) * v.powi(e as i32) * 0.1)
                    .sum::<f64>()
            };
            let y: Vec<f64> = x.iter().map(|&v| p(v)).collect();
            let s = Spline::interpolate(&x, &y, k).unwrap();
            for (xi, yi) in x.iter().zip(&y) {
                assert!((s.eval(*xi) - yi).abs() < 1e-8 * yi.abs().max(1.0), "k={k}");
            }
            for v in [-2.5, 0.3, 7.77, 20.0] {
                assert!(
                    (s.eval(v) - p(v)).abs() < 1e-7 * p(v).abs().max(1.0),
                    "k={k} at {v}"
                );
            }
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(
            Spline::interpolate(&[0.0, 1.0], &[0.0, 1.0], 3),
            Err(SplineError::TooFew {
                points: 2,
                degree: 3
            })
        );
        assert_eq!(
            Spline::interpolate(&[0.0, 1.0, 1.0, 2.0], &[0.0; 4], 1),
            Err(SplineError::NotIncreasing(2))
        );
        assert_eq!(
            Spline::interpolate(&[0.0, 1.0], &[0.0], 1),
            Err(SplineError::Length(2, 1))
        );
        assert_eq!(
            Spline::interpolate(&[0.0, 1.0], &[0.0, 1.0], 7),
            Err(SplineError::Degree(7))
        );
    }
}
