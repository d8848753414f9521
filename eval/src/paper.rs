//! The scaling results this project reproduces, as published, and the
//! performance model's predictions at the published GPU counts.
//!
//! Numbers are those reported for the HAL (V100, NVLink within a node, EDR
//! InfiniBand between nodes), Bridges-AI and Summit runs: ResNet-50 per-GPU
//! throughput at 2-64 GPUs, and times to train for ResNet-50, AI-GW and
//! AI-DES. They are data, kept exactly as published, and never adjusted to
//! fit the model; [`predict_at`] says how far the model is from each.

use serde::{Deserialize, Serialize};

use crate::perfmodel::{fit, Measured, StepModel};

/// One published measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// GPUs used.
    pub gpus: usize,
    /// Images (samples) per second per GPU, when reported.
    pub per_gpu_throughput: Option<f64>,
    /// Hours to train, when reported.
    pub hours: Option<f64>,
}

/// ResNet-50 on HAL: per-GPU throughput at 2-64 V100s (per-GPU batch 208),
/// 41 h on one V100 and about 1 h (1 h 08 min) on 64.
pub const RESNET50_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(41.0),
    },
    Published {
        gpus: 2,
        per_gpu_throughput: Some(791.0),
        hours: None,
    },
    Published {
        gpus: 4,
        per_gpu_throughput: Some(751.0),
        hours: None,
    },
    Published {
        gpus: 8,
        per_gpu_throughput: Some(726.0),
        hours: None,
    },
    Published {
        gpus: 16,
        per_gpu_throughput: Some(704.0),
        hours: None,
    },
    Published {
        gpus: 32,
        per_gpu_throughput: Some(608.0),
        hours: None,
    },
    Published {
        gpus: 64,
        per_gpu_throughput: Some(518.0),
        hours: Some(68.0 / 60.0),
    },
];

/// AI-GW on HAL: 754 h on one GPU, 12.4 h on 64.
pub const AIGW_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(754.0),
    },
    Published {
        gpus: 64,
        per_gpu_throughput: None,
        hours: Some(12.4),
    },
];

/// AI-GW on Bridges-AI: 38 h on 72 V100s.
pub const AIGW_BRIDGES: &[Published] = &[Published {
    gpus: 72,
    per_gpu_throughput: None,
    hours: Some(38.0),
}];

/// AI-DES on HAL: 2.1 h on one GPU, 2.7 min on 64.
pub const AIDES_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(2.1),
    },
    Published {
        gpus: 64,
        per_gpu_throughput: None,
        hours: Some(2.7 / 60.0),
    },
];

/// AI-GW on Summit: fully trained in 1.2 h on 1,536 V100s (256 nodes).
pub const AIGW_SUMMIT: &[Published] = &[Published {
    gpus: 1536,
    per_gpu_throughput: None,
    hours: Some(1.2),
}];

/// ImageNet-1k training images.
pub const IMAGENET_TRAIN: f64 = 1_281_167.0;

/// ResNet-50 on HAL, calibrated on the published per-GPU throughputs: the
/// step model whose compute, bandwidth and latency best reproduce them
/// (gradients of 25,557,032 f32 parameters, per-GPU batch 208, no exposed
/// I/O), or `None` if they do not determine it.
pub fn resnet50_hal_model() -> Option<StepModel> {
    let batch = 208.0;
    let points: Vec<Measured> = RESNET50_HAL
        .iter()
        .filter_map(|p| {
            p.per_gpu_throughput.map(|t| Measured {
                ranks: p.gpus,
                step_seconds: batch / t,
            })
        })
        .collect();
    fit(&points, batch, 25_557_032.0 * 4.0, 0.0, 0.0)
}

/// The model's prediction next to a published figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// GPUs.
    pub gpus: usize,
    /// As published.
    pub published: f64,
    /// As predicted.
    pub predicted: f64,
    /// (predicted - published) / published.
    pub relative_error: f64,
}

/// Compares `model`'s per-GPU throughput with every published throughput.
pub fn predict_throughputs(model: &StepModel, published: &[Published]) -> Vec<Comparison> {
    published
        .iter()
        .filter_map(|p| {
            p.per_gpu_throughput.map(|t| {
                let predicted = model.per_rank_throughput(p.gpus);
                Comparison {
                    gpus: p.gpus,
                    published: t,
                    predicted,
                    relative_error: (predicted - t) / t,
                }
            })
        })
        .collect()
}

/// Compares `model`'s time to train (`epochs` over `samples`) with every
/// published time, in hours.
pub fn predict_at(
    model: &StepModel,
    published: &[Published],
    samples: f64,
    epochs: f64,
) -> Vec<Comparison> {
    published
        .iter()
        .filter_map(|p| {
            p.hours.map(|h| {
                let predicted = model.time_to_train(p.gpus, samples, epochs) / 3600.0;
                Comparison {
                    gpus: p.gpus,
                    published: h,
                    predicted,
                    relative_error: (predicted - h) / h,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_numbers_are_as_published() {
        let t: Vec<f64> = RESNET50_HAL
            .iter()
            .filter_map(|p| p.per_gpu_throughput)
            .collect();
        assert_eq!(t, vec![791.0, 751.0, 726.0, 704.0, 608.0, 518.0]);
        // 518 img/s at 64 GPUs is 65 % of 791 at 2.
        assert!((518.0f64 / 791.0 - 0.655).abs() < 0.001);
        assert_eq!(AIGW_HAL[1].hours, Some(12.4));
        assert!((AIDES_HAL[1].hours.unwrap() * 60.0 - 2.7).abs() < 1e-12);
        assert_eq!(AIGW_BRIDGES[0].gpus, 72);
        assert_eq!(AIGW_SUMMIT[0].gpus, 1536);
    }

    #[test]
    fn the_calibrated_resnet50_model_reproduces_hal_throughput() {
        let m = resnet50_hal_model().expect("the HAL points determine the model");
        let cmp = predict_throughputs(&m, RESNET50_HAL);
        assert_eq!(cmp.len(), 6);
        // A three-parameter model through six points: within 15 % everywhere.
        for c in &cmp {
            assert!(c.relative_error.abs() < 0.15, "{c:?}");
        }
        // Compute per image near the single-GPU rate (~1.2-1.4 ms on a V100).
        assert!((0.0008..0.002).contains(&m.compute_per_sample), "{m:?}");
        // Time to 90 epochs on 64 GPUs: the published 1 h 08 min, within 30 %.
        let t = predict_at(&m, RESNET50_HAL, IMAGENET_TRAIN, 90.0);
        let at64 = t.iter().find(|c| c.gpus == 64).unwrap();
        assert!(at64.relative_error.abs() < 0.3, "{at64:?}");
    }
}
