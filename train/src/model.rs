//! Network definitions and the model directory (`weights.safetensors` + `model.json`).
//!
//! Parameter names follow the equivalent plain PyTorch module, so the weights
//! load into it with `load_state_dict(safetensors.torch.load_file(...))`:
//!
//! ```python
//! class SmallCnn(nn.Module):            # width w, c input bands, k classes
//!     def __init__(self):
//!         super().__init__()
//!         self.features = nn.Sequential(
//!             nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
//!             nn.Conv2d(w, 2*w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
//!             nn.Conv2d(2*w, 4*w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
//!         self.classifier = nn.Linear(4*w, k)
//!     def forward(self, x):
//!         return self.classifier(self.features(x).flatten(1))
//! ```

use std::num::NonZeroUsize;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use crate::{Error, Result};

/// Which network, and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The architecture.
    #[serde(default)]
    pub arch: Arch,
    /// Channels of the first convolution; later ones double.
    #[serde(default = "default_width")]
    pub width: NonZeroUsize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::default(),
            width: default_width(),
        }
    }
}

fn default_width() -> NonZeroUsize {
    NonZeroUsize::new(16).unwrap()
}

/// Known architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Three conv-ReLU-pool blocks, global average pooling, a linear head.
    #[default]
    SmallCnn,
}

/// The contents of `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Architecture and size.
    pub model: ModelConfig,
    /// Input bands.
    pub in_channels: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Class names, by output index.
    pub class_names: Vec<String>,
    /// `inputs_blake3` of the training dataset.
    pub dataset_blake3: String,
    /// Training seed.
    pub seed: u64,
    /// Ranks that trained it.
    pub world_size: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// The writer and its version.
    pub created_by: String,
}

/// A network with a forward pass.
#[derive(Debug)]
pub struct SmallCnn {
    convs: Vec<nn::Conv2D>,
    classifier: nn::Linear,
}

impl SmallCnn {
    /// Builds the network's variables under `root`.
    pub fn new(root: &nn::Path, in_channels: usize, classes: usize, width: usize) -> Self {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let features = root / "features";
        let w = width as i64;
        let convs = vec![
            nn::conv2d(&features / "0", in_channels as i64, w, 3, cfg),
            nn::conv2d(&features / "3", w, 2 * w, 3, cfg),
            nn::conv2d(&features / "6", 2 * w, 4 * w, 3, cfg),
        ];
        let classifier = nn::linear(
            root / "classifier",
            4 * w,
            classes as i64,
            Default::default(),
        );
        SmallCnn { convs, classifier }
    }
}

impl Module for SmallCnn {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x.apply(&self.convs[0]).relu().max_pool2d_default(2);
        let x = x.apply(&self.convs[1]).relu().max_pool2d_default(2);
        let x = x.apply(&self.convs[2]).relu().adaptive_avg_pool2d([1, 1]);
        x.flatten(1, -1).apply(&self.classifier)
    }
}

/// Builds the network `info` describes in `vs`.
pub fn build(vs: &nn::VarStore, info: &ModelInfo) -> Box<dyn Module> {
    match info.model.arch {
        Arch::SmallCnn => Box::new(SmallCnn::new(
            &vs.root(),
            info.in_channels,
            info.class_names.len(),
            info.model.width.get(),
        )),
    }
}

/// Writes `weights.safetensors` and `model.json` into `dir`.
pub fn save_model(dir: &Path, vs: &nn::VarStore, info: &ModelInfo) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        op: "failed to create",
        path: dir.to_path_buf(),
        source: e,
    })?;
    let weights = dir.join("weights.safetensors");
    vs.save(&weights).map_err(Error::torch(format!(
        "failed to write {}",
        weights.display()
    )))?;
    let json = dir.join("model.json");
    std::fs::write(
        &json,
        serde_json::to_vec_pretty(info).expect("model info serialises"),
    )
    .map_err(|e| Error::Io {
        op: "failed to write",
        path: json,
        source: e,
    })
}

/// Loads a model directory onto the CPU.
pub fn load_model(dir: &Path) -> Result<(nn::VarStore, Box<dyn Module>, ModelInfo)> {
    let json = dir.join("model.json");
    let text = std::fs::read_to_string(&json).map_err(|e| Error::Io {
        op: "failed to read",
        path: json.clone(),
        source: e,
    })?;
    let info: ModelInfo = serde_json::from_str(&text).map_err(|e| Error::Model {
        path: json,
        message: format!("not a model description: {e}"),
    })?;
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let net = build(&vs, &info);
    let weights = dir.join("weights.safetensors");
    vs.load(&weights).map_err(Error::torch(format!(
        "failed to load {}",
        weights.display()
    )))?;
    Ok((vs, net, info))
}
