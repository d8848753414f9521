//! The published measurements, exactly as published: data, never adjusted
//! to fit a model.

use serde::{Deserialize, Serialize};

/// One published measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// GPUs used.
    pub gpus: usize,
    /// Images (samples) per second per GPU, when reported.
    pub per_gpu_throughput: Option<f64>,
    /// Hours to train, when reported.
    pub hours: Option<f64>,
    /// Where the paper gives it: the figure, and the value as stated.
    #[serde(skip)]
    pub source: &'static str,
}

/// ResNet-50 on HAL: per-GPU throughput at 2-64 V100s (per-GPU batch 208),
/// 41 h on one V100 and about 1 h (1 h 08 min) on 64.
pub const RESNET50_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(41.0),
        source: "Figure 1 text: 41 h on one V100",
    },
    Published {
        gpus: 2,
        per_gpu_throughput: Some(791.0),
        hours: None,
        source: "Figure 1: per-GPU throughput (img/s) at 2 GPUs",
    },
    Published {
        gpus: 4,
        per_gpu_throughput: Some(751.0),
        hours: None,
        source: "Figure 1: per-GPU throughput at 4 GPUs",
    },
    Published {
        gpus: 8,
        per_gpu_throughput: Some(726.0),
        hours: None,
        source: "Figure 1: per-GPU throughput at 8 GPUs",
    },
    Published {
        gpus: 16,
        per_gpu_throughput: Some(704.0),
        hours: None,
        source: "Figure 1: per-GPU throughput at 16 GPUs",
    },
    Published {
        gpus: 32,
        per_gpu_throughput: Some(608.0),
        hours: None,
        source: "Figure 1: per-GPU throughput at 32 GPUs",
    },
    Published {
        gpus: 64,
        per_gpu_throughput: Some(518.0),
        hours: Some(68.0 / 60.0),
        source: "Figure 1: per-GPU throughput at 64 GPUs; 75.1 % top-1 in 1 h 08 min on 64 GPUs",
    },
];

/// AI-GW on HAL: 754 h on one GPU, 12.4 h on 64.
pub const AIGW_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(754.0),
        source: "Figure 2: 754 h on 1 GPU",
    },
    Published {
        gpus: 64,
        per_gpu_throughput: None,
        hours: Some(12.4),
        source: "Figure 2: 12.4 h on 64 GPUs",
    },
];

/// AI-GW on Bridges-AI: 38 h on 72 V100s.
pub const AIGW_BRIDGES: &[Published] = &[Published {
    gpus: 72,
    per_gpu_throughput: None,
    hours: Some(38.0),
    source: "Figure 3: 38 h on 72 GPUs",
}];

/// AI-DES on HAL: 2.1 h on one GPU, 2.7 min on 64.
pub const AIDES_HAL: &[Published] = &[
    Published {
        gpus: 1,
        per_gpu_throughput: None,
        hours: Some(2.1),
        source: "Figure 4: 2.1 h on 1 GPU",
    },
    Published {
        gpus: 64,
        per_gpu_throughput: None,
        hours: Some(2.7 / 60.0),
        source: "Figure 4: 2.7 min on 64 GPUs",
    },
];

/// AI-GW on Summit: fully trained in 1.2 h on 1,536 V100s (256 nodes).
pub const AIGW_SUMMIT: &[Published] = &[Published {
    gpus: 1536,
    per_gpu_throughput: None,
    hours: Some(1.2),
    source: "Figure 5: 1.2 h on 1536 GPUs (256 nodes)",
}];

/// ImageNet-1k training images.
pub const IMAGENET_TRAIN: f64 = 1_281_167.0;
