//! Models fitted per experiment and judged on published points they did
//! not see: the honest form of "the model reproduces the paper".
//!
//! - ResNet-50 on HAL (Figure 1): one step on `p` GPUs takes
//!   `t(p) = c b + A(p) + s (p - 1)`: compute `c` per sample at batch `b`
//!   = 208, a ring allreduce `A(p)` of the 102 MB of gradients over links
//!   held at physical values (NVLink inside HAL's 4-GPU nodes, EDR
//!   InfiniBand across them, 5 us a hop), and a synchronisation cost `s`
//!   per extra GPU. `c` and `s` are fitted on 2-16 GPUs by least squares;
//!   32 and 64 GPUs are predicted. (A cost growing with log p, as i.i.d.
//!   stragglers would give, misses 64 GPUs by +31 %: the data needs more.)
//! - AI-GW and AI-DES (Figures 2-5): `T(p) = T1 ((1 - f) / p + f)`, the
//!   published single-GPU time `T1` and one serial/communication fraction
//!   `f` fitted on the experiment's own multi-GPU HAL points; AI-GW's
//!   Summit and Bridges-AI points are predicted from it.

use serde::{Deserialize, Serialize};

use super::published::*;

/// Whether a published point was used to fit the model or predicted by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The fit saw it.
    Fitted,
    /// The fit did not see it: an out-of-sample check.
    Predicted,
}

/// One published point next to the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// GPUs.
    pub gpus: usize,
    /// As published (per-GPU samples/s for Figure 1, hours otherwise).
    pub published: f64,
    /// As the model gives it.
    pub predicted: f64,
    /// (predicted - published) / published.
    pub relative_error: f64,
    /// Fitted or predicted.
    pub role: Role,
}

/// The form of a fitted model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// Per-GPU throughput `b / (c b + A(p) + s (p - 1))` on HAL's links.
    Sync,
    /// Hours `T1 ((1 - f) / p + f)`.
    Amdahl,
}

/// A model fitted to one experiment and how it does on every published point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Which model it is.
    pub form: Form,
    /// The model, as a formula.
    pub model: String,
    /// Its parameters: fitted ones and those held at stated values.
    pub parameters: Vec<(String, f64)>,
    /// The system whose published points it was fitted on.
    pub fitted_system: String,
    /// GPU counts of the points it was fitted on.
    pub fitted_on: Vec<usize>,
    /// Every published point, fitted or predicted.
    pub checks: Vec<Check>,
    /// What the data shows that the model cannot know.
    pub note: Option<String>,
}

impl Validation {
    /// The largest |relative error| over the predicted points, if any.
    pub fn worst_predicted(&self) -> Option<f64> {
        self.checks
            .iter()
            .filter(|c| c.role == Role::Predicted)
            .map(|c| c.relative_error.abs())
            .reduce(f64::max)
    }

    /// The model's value at `p` GPUs (per-GPU throughput or hours).
    pub fn at(&self, p: usize) -> f64 {
        let get = |name: &str| {
            self.parameters
                .iter()
                .find(|(n, _)| n == name)
                .map_or(f64::NAN, |(_, v)| *v)
        };
        match self.form {
            Form::Sync => {
                let batch = get("batch");
                batch / (batch * get("c") + hal_allreduce(p) + get("s") * (p as f64 - 1.0))
            }
            Form::Amdahl => amdahl_hours(get("T1"), get("f"), p),
        }
    }
}

/// GPUs per HAL node.
pub const HAL_GPUS_PER_NODE: usize = 4;
/// Ring bandwidth over NVLink inside a HAL node, bytes/s (V100 NVLink 2).
pub const NVLINK_BYTES_PER_S: f64 = 75e9;
/// EDR InfiniBand between HAL nodes, bytes/s (100 Gb/s).
pub const EDR_BYTES_PER_S: f64 = 12.5e9;
/// Latency per hop of the ring, seconds.
pub const HOP_LATENCY_S: f64 = 5e-6;
/// ResNet-50's gradients, bytes (25,557,032 f32 parameters).
pub const RESNET50_GRADIENT_BYTES: f64 = 25_557_032.0 * 4.0;
/// Per-GPU batch of the HAL ResNet-50 runs.
pub const RESNET50_HAL_BATCH: f64 = 208.0;

/// Seconds of a ring allreduce of ResNet-50's gradients over `p` HAL GPUs:
/// NVLink within one node, EDR InfiniBand (the slowest link) beyond.
pub fn hal_allreduce(p: usize) -> f64 {
    if p <= 1 {
        return 0.0;
    }
    let bw = if p <= HAL_GPUS_PER_NODE {
        NVLINK_BYTES_PER_S
    } else {
        EDR_BYTES_PER_S
    };
    let pf = p as f64;
    2.0 * (pf - 1.0) / pf * RESNET50_GRADIENT_BYTES / bw + 2.0 * (pf - 1.0) * HOP_LATENCY_S
}

/// Fits (c, s) of `t(p) = c b + A(p) + s (p - 1)` to (GPUs, per-GPU
/// throughput) points by least squares; `None` when they do not determine
/// them or give a non-positive compute or a negative synchronisation cost.
pub fn fit_sync_model(points: &[(usize, f64)], batch: f64) -> Option<(f64, f64)> {
    // Normal equations of y = c b + s (p - 1), y = t - A(p).
    let (mut aa, mut ab, mut bb, mut ay, mut by) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(p, thr) in points {
        let y = batch / thr - hal_allreduce(p);
        let (a, b) = (batch, p as f64 - 1.0);
        aa += a * a;
        ab += a * b;
        bb += b * b;
        ay += a * y;
        by += b * y;
    }
    let det = aa * bb - ab * ab;
    if det.abs() < 1e-12 * aa * bb.max(1.0) {
        return None;
    }
    let c = (ay * bb - by * ab) / det;
    let s = (aa * by - ab * ay) / det;
    (c > 0.0 && s >= 0.0).then_some((c, s))
}

/// Figure 1's model: fitted on the published throughputs at 2-16 GPUs,
/// judged on 32 and 64.
pub fn resnet50_hal() -> Option<Validation> {
    let published: Vec<(usize, f64)> = RESNET50_HAL
        .iter()
        .filter_map(|p| p.per_gpu_throughput.map(|t| (p.gpus, t)))
        .collect();
    let seen: Vec<(usize, f64)> = published.iter().copied().filter(|p| p.0 <= 16).collect();
    let (c, s) = fit_sync_model(&seen, RESNET50_HAL_BATCH)?;
    let mut v = Validation {
        form: Form::Sync,
        model: "t(p) = c b + A(p) + s (p - 1), throughput b / t(p)".into(),
        parameters: vec![
            ("c".into(), c),
            ("s".into(), s),
            ("batch".into(), RESNET50_HAL_BATCH),
            ("gradient_bytes".into(), RESNET50_GRADIENT_BYTES),
            ("nvlink_bytes_per_s".into(), NVLINK_BYTES_PER_S),
            ("edr_bytes_per_s".into(), EDR_BYTES_PER_S),
            ("hop_latency_s".into(), HOP_LATENCY_S),
        ],
        fitted_system: "HAL".into(),
        fitted_on: seen.iter().map(|p| p.0).collect(),
        checks: Vec::new(),
        note: Some(format!(
            "c = {:.3} ms per sample, s = {:.2} ms per extra GPU: the allreduce of 102 MB over EDR costs {:.0} ms at 64 GPUs, so most of the slow-down beyond 16 GPUs is synchronisation the network alone does not explain",
            c * 1e3,
            s * 1e3,
            hal_allreduce(64) * 1e3
        )),
    };
    v.checks = published
        .iter()
        .map(|&(gpus, thr)| check(gpus, thr, v.at(gpus), gpus <= 16))
        .collect();
    Some(v)
}

fn check(gpus: usize, published: f64, predicted: f64, fitted: bool) -> Check {
    Check {
        gpus,
        published,
        predicted,
        relative_error: (predicted - published) / published,
        role: if fitted {
            Role::Fitted
        } else {
            Role::Predicted
        },
    }
}

/// Hours on `p` GPUs of a workload taking `t1` hours on one, with a
/// fraction `f` that does not shrink with more GPUs.
pub fn amdahl_hours(t1: f64, f: f64, p: usize) -> f64 {
    t1 * ((1.0 - f) / p as f64 + f)
}

/// The least-squares `f` of [`amdahl_hours`] through (GPUs, hours) points
/// with more than one GPU.
pub fn fit_fraction(t1: f64, points: &[(usize, f64)]) -> Option<f64> {
    // T(p) / T1 - 1/p = f (1 - 1/p).
    let (mut num, mut den) = (0.0, 0.0);
    for &(p, h) in points.iter().filter(|p| p.0 > 1) {
        let x = 1.0 - 1.0 / p as f64;
        num += x * (h / t1 - 1.0 / p as f64);
        den += x * x;
    }
    (den > 0.0).then(|| num / den)
}

fn hours(points: &[Published]) -> Vec<(usize, f64)> {
    points
        .iter()
        .filter_map(|p| p.hours.map(|h| (p.gpus, h)))
        .collect()
}

/// A time-to-train model fitted on `fit` (its one-GPU time is `T1`),
/// judged on the other systems' points.
fn time_model(fit: &[Published], judged: &[&[Published]]) -> Option<Validation> {
    let seen = hours(fit);
    let t1 = seen.iter().find(|p| p.0 == 1)?.1;
    let f = fit_fraction(t1, &seen)?;
    let mut checks: Vec<Check> = seen
        .iter()
        .map(|&(g, h)| check(g, h, amdahl_hours(t1, f, g), true))
        .collect();
    for points in judged {
        checks.extend(
            hours(points)
                .into_iter()
                .map(|(g, h)| check(g, h, amdahl_hours(t1, f, g), false)),
        );
    }
    Some(Validation {
        form: Form::Amdahl,
        model: "T(p) = T1 ((1 - f) / p + f)".into(),
        parameters: vec![("T1".into(), t1), ("f".into(), f)],
        fitted_system: "HAL".into(),
        fitted_on: seen.iter().map(|p| p.0).collect(),
        checks,
        note: None,
    })
}

/// Figures 2, 3 and 5: AI-GW fitted on HAL (1 and 64 GPUs), judged on
/// Summit and Bridges-AI.
pub fn aigw() -> Option<Validation> {
    let mut v = time_model(AIGW_HAL, &[AIGW_SUMMIT, AIGW_BRIDGES])?;
    if let Some(b) = v.checks.iter().find(|c| c.gpus == 72) {
        v.note = Some(format!(
            "Bridges-AI's {} h on 72 GPUs is {:.1}x what the HAL fit gives ({:.1} h): that run did more work than HAL's (more data or epochs) or ran that much slower per GPU; the published numbers cannot tell which, so no model fitted on HAL can reach it",
            b.published,
            b.published / b.predicted,
            b.predicted
        ));
    }
    Some(v)
}

/// Figure 4: AI-DES fitted on HAL's two points; none is left to judge it on.
pub fn aides() -> Option<Validation> {
    let mut v = time_model(AIDES_HAL, &[])?;
    v.note = Some(
        "AI-DES published two points, both needed to fit T1 and f: nothing is left out to judge the fit".into(),
    );
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fits_recover_the_parameters_that_made_synthetic_points() {
        let (c, s) = (1.2e-3, 2.5e-3);
        let points: Vec<(usize, f64)> = [2, 4, 8, 16, 32]
            .iter()
            .map(|&p| {
                let t = c * 208.0 + hal_allreduce(p) + s * (p as f64 - 1.0);
                (p, 208.0 / t)
            })
            .collect();
        let (fc, fs) = fit_sync_model(&points, 208.0).unwrap();
        assert!(
            (fc - c).abs() < 1e-12 && (fs - s).abs() < 1e-12,
            "{fc} {fs}"
        );
        let f = 3e-3;
        let pts: Vec<(usize, f64)> = [1, 8, 64, 512]
            .iter()
            .map(|&p| (p, amdahl_hours(100.0, f, p)))
            .collect();
        assert!((fit_fraction(100.0, &pts).unwrap() - f).abs() < 1e-15);
        // One rank count cannot separate compute from synchronisation.
        assert_eq!(fit_sync_model(&[(8, 700.0), (8, 690.0)], 208.0), None);
    }

    #[test]
    fn resnet50_is_fitted_on_2_to_16_gpus_and_predicts_32_and_64_within_25_percent() {
        let v = resnet50_hal().unwrap();
        assert_eq!(v.fitted_on, [2, 4, 8, 16]);
        let predicted: Vec<&Check> = v
            .checks
            .iter()
            .filter(|c| c.role == Role::Predicted)
            .collect();
        // Refitting on every point and calling it validation fails here.
        assert_eq!(
            predicted.iter().map(|c| c.gpus).collect::<Vec<_>>(),
            [32, 64]
        );
        for c in &predicted {
            assert!(c.relative_error.abs() < 0.25, "{c:?}");
        }
        // The out-of-sample errors as shipped (printed for the README).
        for c in &predicted {
            eprintln!(
                "ResNet-50 at {} GPUs: {:.0} predicted, {} published, {:+.1} %",
                c.gpus,
                c.predicted,
                c.published,
                100.0 * c.relative_error
            );
        }
        assert!(
            (predicted[1].relative_error - 0.163).abs() < 0.005,
            "{:?}",
            predicted[1]
        );
    }

    #[test]
    fn aigw_is_fitted_on_hal_and_judged_on_summit_and_bridges() {
        let v = aigw().unwrap();
        assert_eq!(v.fitted_on, [1, 64]);
        let at = |g: usize| v.checks.iter().find(|c| c.gpus == g).unwrap();
        assert_eq!(at(64).role, Role::Fitted);
        assert_eq!(at(1536).role, Role::Predicted);
        // Summit: ~1.12 h predicted against 1.2 h published.
        assert!(at(1536).relative_error.abs() < 0.10, "{:?}", at(1536));
        // Bridges-AI cannot be reached, and the note says by how much.
        assert!(at(72).relative_error < -0.6, "{:?}", at(72));
        assert!(v.note.as_deref().unwrap().contains("3.4x"), "{:?}", v.note);
        let f = v.parameters.iter().find(|p| p.0 == "f").unwrap().1;
        assert!((f - 8.35e-4).abs() < 1e-5, "{f}");
        let des = aides().unwrap();
        assert_eq!(des.worst_predicted(), None);
    }
}
