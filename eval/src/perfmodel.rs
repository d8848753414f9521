//! A performance model of data-parallel training, to extrapolate measured
//! runs to many GPUs.
//!
//! One step on each of `p` ranks with a per-rank batch `b` takes
//!
//! ```text
//! t(p) = c * b  +  A(p)  +  io
//! A(p) = 2 (p - 1) / p * bytes / bandwidth  +  2 (p - 1) * latency     (p > 1; A(1) = 0)
//! ```
//!
//! where `c` is the compute time per sample, `A` the alpha-beta cost of a ring
//! allreduce of the model's gradients (`bytes`) and `io` the I/O time the
//! loader does not hide. Throughput is `p b / t(p)`, weak-scaling efficiency
//! `t(1) / t(p)`, and the time to train `epochs x ceil(N / (p b)) x t(p)`.
//!
//! [`fit`] calibrates (c, 1/bandwidth, latency) from measured points by least
//! squares: t(p) is linear in them, so three or more points at distinct rank
//! counts (or measured allreduce times) determine them.

use serde::{Deserialize, Serialize};

/// Hardware and job parameters of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepModel {
    /// Seconds of compute per sample on one GPU (or rank).
    pub compute_per_sample: f64,
    /// Samples per step on each rank.
    pub batch_per_rank: f64,
    /// Bytes of gradients averaged each step (4 x parameters for f32).
    pub gradient_bytes: f64,
    /// Link bandwidth in bytes per second (the slowest link of the ring).
    pub bandwidth: f64,
    /// Per-message latency in seconds.
    pub latency: f64,
    /// Exposed I/O seconds per step.
    #[serde(default)]
    pub io_per_step: f64,
}

impl StepModel {
    /// Seconds of a ring allreduce over `p` ranks.
    pub fn allreduce(&self, p: usize) -> f64 {
        if p <= 1 {
            return 0.0;
        }
        let p = p as f64;
        2.0 * (p - 1.0) / p * self.gradient_bytes / self.bandwidth + 2.0 * (p - 1.0) * self.latency
    }

    /// Seconds of one step on `p` ranks.
    pub fn step(&self, p: usize) -> f64 {
        self.compute_per_sample * self.batch_per_rank + self.allreduce(p) + self.io_per_step
    }

    /// Samples per second of one rank, out of `p`.
    pub fn per_rank_throughput(&self, p: usize) -> f64 {
        self.batch_per_rank / self.step(p)
    }

    /// Weak-scaling efficiency: one rank's step time over `p` ranks' step time.
    pub fn efficiency(&self, p: usize) -> f64 {
        self.step(1) / self.step(p)
    }

    /// Seconds to train `epochs` passes over `samples` samples on `p` ranks.
    pub fn time_to_train(&self, p: usize, samples: f64, epochs: f64) -> f64 {
        let global = self.batch_per_rank * p as f64;
        epochs * (samples / global).ceil() * self.step(p)
    }
}

/// One measured step time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Ranks.
    pub ranks: usize,
    /// Seconds per step.
    pub step_seconds: f64,
}

/// Least-squares calibration of (compute per sample, bandwidth, latency) from
/// measured step times, for a known batch, gradient size and I/O. With two
/// points only, latency is held at `latency_prior` and the rest fitted.
/// Returns `None` when the points cannot determine the model (none, or all at
/// one rank count) or the fit is unphysical (non-positive compute or
/// bandwidth).
pub fn fit(
    points: &[Measured],
    batch_per_rank: f64,
    gradient_bytes: f64,
    io_per_step: f64,
    latency_prior: f64,
) -> Option<StepModel> {
    let mut counts: Vec<usize> = points.iter().map(|m| m.ranks).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.len() < 2 {
        return None;
    }
    let fit_latency = counts.len() >= 3;
    // Columns: c (x batch), 1/bandwidth (x ring bytes), latency (x 2(p-1)).
    let rows: Vec<([f64; 3], f64)> = points
        .iter()
        .map(|m| {
            let p = m.ranks as f64;
            let ring = if m.ranks > 1 {
                2.0 * (p - 1.0) / p * gradient_bytes
            } else {
                0.0
            };
            let hops = 2.0 * (p - 1.0).max(0.0);
            let mut y = m.step_seconds - io_per_step;
            if !fit_latency {
                y -= hops * latency_prior;
            }
            ([batch_per_rank, ring, hops], y)
        })
        .collect();
    let k = if fit_latency { 3 } else { 2 };
    // Normal equations (k <= 3): solve A^T A x = A^T y by Gaussian elimination.
    let mut m = [[0.0f64; 4]; 3];
    for (a, y) in &rows {
        for (i, row) in m.iter_mut().enumerate().take(k) {
            for (j, cell) in row.iter_mut().enumerate().take(k) {
                *cell += a[i] * a[j];
            }
            row[3] += a[i] * y;
        }
    }
    let x = solve(&mut m, k)?;
    let (c, inv_bw) = (x[0], x[1]);
    let latency = if fit_latency { x[2] } else { latency_prior };
    if c <= 0.0 || inv_bw <= 0.0 || latency < 0.0 {
        return None;
    }
    Some(StepModel {
        compute_per_sample: c,
        batch_per_rank,
        gradient_bytes,
        bandwidth: 1.0 / inv_bw,
        latency,
        io_per_step,
    })
}

/// Solves the `k` x `k` system in `m` (augmented column 3) with partial pivoting.
fn solve(m: &mut [[f64; 4]; 3], k: usize) -> Option<[f64; 3]> {
    for col in 0..k {
        let pivot = (col..k).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        let p = m[col];
        for (r, row) in m.iter_mut().enumerate().take(k) {
            if r != col {
                let f = row[col] / p[col];
                for (a, b) in row.iter_mut().zip(p.iter()).skip(col) {
                    *a -= f * b;
                }
            }
        }
    }
    let mut x = [0.0; 3];
    for (i, (xi, row)) in x.iter_mut().zip(m.iter()).enumerate().take(k) {
        *xi = row[3] / row[i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> StepModel {
        StepModel {
            compute_per_sample: 0.001,
            batch_per_rank: 100.0,
            gradient_bytes: 1e8,
            bandwidth: 1e10,
            latency: 1e-5,
            io_per_step: 0.002,
        }
    }

    #[test]
    fn hand_computed_step_times() {
        let m = model();
        // One rank: 0.001 x 100 + 0 + 0.002.
        assert!((m.step(1) - 0.102).abs() < 1e-15);
        // Four ranks: ring 2 x 3/4 x 1e8 / 1e10 = 0.015; latency 2 x 3 x 1e-5 = 6e-5.
        assert!((m.allreduce(4) - 0.01506).abs() < 1e-15);
        assert!((m.step(4) - 0.11706).abs() < 1e-15);
        assert!((m.efficiency(4) - 0.102 / 0.11706).abs() < 1e-12);
        assert!((m.per_rank_throughput(4) - 100.0 / 0.11706).abs() < 1e-9);
        // 10,000 samples, 2 epochs, 4 ranks: ceil(10000 / 400) = 25 steps an epoch.
        assert!((m.time_to_train(4, 10_000.0, 2.0) - 50.0 * 0.11706).abs() < 1e-12);
        // 1,000 samples on 3 ranks: ceil(1000 / 300) = 4 steps.
        assert!((m.time_to_train(3, 1000.0, 1.0) - 4.0 * m.step(3)).abs() < 1e-12);
    }

    #[test]
    fn fit_recovers_the_parameters_that_made_the_points() {
        let truth = model();
        let points: Vec<Measured> = [1, 2, 4, 8, 16]
            .iter()
            .map(|&p| Measured {
                ranks: p,
                step_seconds: truth.step(p),
            })
            .collect();
        let f = fit(&points, 100.0, 1e8, 0.002, 0.0).unwrap();
        assert!((f.compute_per_sample / truth.compute_per_sample - 1.0).abs() < 1e-9);
        assert!((f.bandwidth / truth.bandwidth - 1.0).abs() < 1e-9);
        assert!((f.latency / truth.latency - 1.0).abs() < 1e-6);
        // Two rank counts: latency from the prior, the rest fitted exactly.
        let two = fit(&points[..2], 100.0, 1e8, 0.002, 1e-5).unwrap();
        assert!((two.bandwidth / truth.bandwidth - 1.0).abs() < 1e-9);
        // One rank count cannot separate compute from communication.
        assert!(fit(&points[..1], 100.0, 1e8, 0.002, 0.0).is_none());
        // Times that shrink with ranks are unphysical for this model.
        let bad = [
            Measured {
                ranks: 1,
                step_seconds: 1.0,
            },
            Measured {
                ranks: 2,
                step_seconds: 0.5,
            },
        ];
        assert!(fit(&bad, 100.0, 1e8, 0.0, 0.0).is_none());
    }
}
