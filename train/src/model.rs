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
use tch::nn::{self, Module, ModuleT};
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
    /// Residual blocks in the middle flow (`xception_mini` only).
    #[serde(default = "default_middle_blocks")]
    pub middle_blocks: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::default(),
            width: default_width(),
            middle_blocks: default_middle_blocks(),
        }
    }
}

fn default_width() -> NonZeroUsize {
    NonZeroUsize::new(16).unwrap()
}

fn default_middle_blocks() -> usize {
    2
}

/// Known architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Three conv-ReLU-pool blocks, global average pooling, a linear head.
    #[default]
    SmallCnn,
    /// Xception's design at CPU size: a strided stem; entry-flow blocks of two
    /// depthwise-separable convolutions with a strided 1x1 residual shortcut;
    /// middle-flow residual blocks of three separable convolutions; an exit
    /// separable convolution; global average pooling; a linear head. Batch
    /// normalisation after every convolution.
    XceptionMini,
    /// ResNet-18 (basic blocks, [2, 2, 2, 2]) with torchvision's layout and
    /// parameter names; `width` is the first stage's channels (torchvision: 64),
    /// so at width 64 ImageNet weights saved from torchvision load as they are.
    Resnet18,
    /// ResNet-50 (bottleneck blocks, [3, 4, 6, 3], expansion 4), likewise.
    Resnet50,
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

/// A depthwise 3x3 convolution (one filter per channel), a pointwise 1x1
/// convolution, and batch normalisation: parameters `dw`, `pw`, `bn`.
#[derive(Debug)]
struct SepConv {
    dw: nn::Conv2D,
    pw: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl SepConv {
    fn new(p: &nn::Path, c_in: i64, c_out: i64) -> Self {
        let dw = nn::ConvConfig {
            padding: 1,
            groups: c_in,
            bias: false,
            ..Default::default()
        };
        let pw = nn::ConvConfig {
            bias: false,
            ..Default::default()
        };
        SepConv {
            dw: nn::conv2d(p / "dw", c_in, c_in, 3, dw),
            pw: nn::conv2d(p / "pw", c_in, c_out, 1, pw),
            bn: nn::batch_norm2d(p / "bn", c_out, Default::default()),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.dw).apply(&self.pw).apply_t(&self.bn, train)
    }
}

/// An entry-flow block: two separable convolutions and a max-pool, plus a
/// strided 1x1 convolution on the shortcut.
#[derive(Debug)]
struct EntryBlock {
    sep1: SepConv,
    sep2: SepConv,
    skip: nn::Conv2D,
    skip_bn: nn::BatchNorm,
}

/// The Xception-style network of [`Arch::XceptionMini`].
#[derive(Debug)]
pub struct XceptionMini {
    stem1: nn::Conv2D,
    stem1_bn: nn::BatchNorm,
    stem2: nn::Conv2D,
    stem2_bn: nn::BatchNorm,
    entry: Vec<EntryBlock>,
    middle: Vec<[SepConv; 3]>,
    exit: SepConv,
    classifier: nn::Linear,
}

impl XceptionMini {
    /// Builds the network's variables under `root`.
    pub fn new(
        root: &nn::Path,
        in_channels: usize,
        classes: usize,
        width: usize,
        middle_blocks: usize,
    ) -> Self {
        let w = width as i64;
        let conv = |p: nn::Path, i: i64, o: i64, stride: i64| {
            let cfg = nn::ConvConfig {
                padding: 1,
                stride,
                bias: false,
                ..Default::default()
            };
            nn::conv2d(p, i, o, 3, cfg)
        };
        let bn = |p: nn::Path, c: i64| nn::batch_norm2d(p, c, Default::default());
        let entry_widths = [(2 * w, 4 * w), (4 * w, 8 * w)];
        let entry = entry_widths
            .iter()
            .enumerate()
            .map(|(i, &(c_in, c_out))| {
                let p = root / "entry" / i;
                let skip_cfg = nn::ConvConfig {
                    stride: 2,
                    bias: false,
                    ..Default::default()
                };
                EntryBlock {
                    sep1: SepConv::new(&(&p / "sep1"), c_in, c_out),
                    sep2: SepConv::new(&(&p / "sep2"), c_out, c_out),
                    skip: nn::conv2d(&p / "skip", c_in, c_out, 1, skip_cfg),
                    skip_bn: bn(&p / "skip_bn", c_out),
                }
            })
            .collect();
        let middle = (0..middle_blocks)
            .map(|i| {
                let p = root / "middle" / i;
                [0, 1, 2].map(|j| SepConv::new(&(&p / format!("sep{j}")), 8 * w, 8 * w))
            })
            .collect();
        XceptionMini {
            stem1: conv(root / "stem1", in_channels as i64, w, 2),
            stem1_bn: bn(root / "stem1_bn", w),
            stem2: conv(root / "stem2", w, 2 * w, 1),
            stem2_bn: bn(root / "stem2_bn", 2 * w),
            entry,
            middle,
            exit: SepConv::new(&(root / "exit"), 8 * w, 16 * w),
            classifier: nn::linear(
                root / "classifier",
                16 * w,
                classes as i64,
                Default::default(),
            ),
        }
    }
}

impl ModuleT for XceptionMini {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x.apply(&self.stem1).apply_t(&self.stem1_bn, train).relu();
        x = x.apply(&self.stem2).apply_t(&self.stem2_bn, train).relu();
        for b in &self.entry {
            let shortcut = x.apply(&b.skip).apply_t(&b.skip_bn, train);
            let y = b.sep1.forward_t(&x, train).relu();
            let y = b.sep2.forward_t(&y, train);
            x = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false) + shortcut;
        }
        for block in &self.middle {
            let mut y = x.shallow_clone();
            for sep in block {
                y = sep.forward_t(&y.relu(), train);
            }
            // Not `x += y`: an in-place add would overwrite a tensor autograd
            // may still need for the backward pass.
            #[allow(clippy::assign_op_pattern)]
            {
                x = x + y;
            }
        }
        let x = self.exit.forward_t(&x, train).relu();
        x.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.classifier)
    }
}

/// A residual block of ResNet: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1),
/// with a 1x1 strided projection (`downsample.0` conv, `downsample.1` norm)
/// when the shape changes.
#[derive(Debug)]
struct ResBlock {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl ResBlock {
    fn new(p: &nn::Path, c_in: i64, planes: i64, stride: i64, bottleneck: bool) -> Self {
        let conv = |name: &str, i: i64, o: i64, k: i64, stride: i64| {
            let cfg = nn::ConvConfig {
                stride,
                padding: k / 2,
                bias: false,
                ..Default::default()
            };
            nn::conv2d(p / name, i, o, k, cfg)
        };
        let bn = |name: &str, c: i64| nn::batch_norm2d(p / name, c, Default::default());
        let (convs, c_out) = if bottleneck {
            let out = planes * 4;
            (
                vec![
                    (conv("conv1", c_in, planes, 1, 1), bn("bn1", planes)),
                    (conv("conv2", planes, planes, 3, stride), bn("bn2", planes)),
                    (conv("conv3", planes, out, 1, 1), bn("bn3", out)),
                ],
                out,
            )
        } else {
            (
                vec![
                    (conv("conv1", c_in, planes, 3, stride), bn("bn1", planes)),
                    (conv("conv2", planes, planes, 3, 1), bn("bn2", planes)),
                ],
                planes,
            )
        };
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = p / "downsample";
            let cfg = nn::ConvConfig {
                stride,
                bias: false,
                ..Default::default()
            };
            (
                nn::conv2d(&d / "0", c_in, c_out, 1, cfg),
                nn::batch_norm2d(&d / "1", c_out, Default::default()),
            )
        });
        ResBlock { convs, downsample }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (c, b)) in self.convs.iter().enumerate() {
            y = y.apply(c).apply_t(b, train);
            if i < last {
                y = y.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

/// ResNet-18/50 of [`Arch::Resnet18`] and [`Arch::Resnet50`].
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<ResBlock>,
    fc: nn::Linear,
}

impl ResNet {
    /// Builds the network's variables under `root`; `depth` is 18 or 50.
    pub fn new(
        root: &nn::Path,
        in_channels: usize,
        classes: usize,
        width: usize,
        depth: usize,
    ) -> Self {
        let (blocks, bottleneck) = match depth {
            50 => ([3, 4, 6, 3], true),
            _ => ([2, 2, 2, 2], false),
        };
        let w = width as i64;
        let stem = nn::ConvConfig {
            stride: 2,
            padding: 3,
            bias: false,
            ..Default::default()
        };
        let mut layers = Vec::new();
        let mut c_in = w;
        for (stage, n) in blocks.into_iter().enumerate() {
            let planes = w << stage;
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let p = root / format!("layer{}", stage + 1) / b;
                let block = ResBlock::new(&p, c_in, planes, stride, bottleneck);
                c_in = if bottleneck { planes * 4 } else { planes };
                layers.push(block);
            }
        }
        ResNet {
            conv1: nn::conv2d(root / "conv1", in_channels as i64, w, 7, stem),
            bn1: nn::batch_norm2d(root / "bn1", w, Default::default()),
            layers,
            fc: nn::linear(root / "fc", c_in, classes as i64, Default::default()),
        }
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for b in &self.layers {
            x = b.forward_t(&x, train);
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}

/// Builds the network `info` describes in `vs`.
pub fn build(vs: &nn::VarStore, info: &ModelInfo) -> Box<dyn ModuleT> {
    let (c, k, w) = (
        info.in_channels,
        info.class_names.len(),
        info.model.width.get(),
    );
    match info.model.arch {
        Arch::SmallCnn => Box::new(SmallCnn::new(&vs.root(), c, k, w)),
        Arch::XceptionMini => Box::new(XceptionMini::new(
            &vs.root(),
            c,
            k,
            w,
            info.model.middle_blocks,
        )),
        Arch::Resnet18 => Box::new(ResNet::new(&vs.root(), c, k, w, 18)),
        Arch::Resnet50 => Box::new(ResNet::new(&vs.root(), c, k, w, 50)),
    }
}

/// What [`load_initial_weights`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Variables set from the file.
    pub loaded: usize,
    /// Variables left at their fresh initialisation, with the reason (absent
    /// from the file, or a different shape such as a new classification head).
    pub kept: Vec<String>,
}

/// Sets every variable of `vs` that a safetensors file holds under the same
/// name and shape (fine-tuning from weights the user brings, such as a
/// torchvision ResNet's `state_dict` saved with `safetensors.torch.save_file`).
/// Tensors of another float type are converted. A file that matches nothing is
/// an error, since it is almost surely the wrong file.
pub fn load_initial_weights(vs: &mut nn::VarStore, path: &Path) -> Result<InitReport> {
    let named = Tensor::read_safetensors(path).map_err(Error::torch(format!(
        "failed to read initial weights {}",
        path.display()
    )))?;
    let file: std::collections::HashMap<String, Tensor> = named.into_iter().collect();
    let mut report = InitReport {
        loaded: 0,
        kept: Vec::new(),
    };
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            match file.get(&name) {
                Some(t) if t.size() == var.size() => {
                    let t = t
                        .f_to_kind(var.kind())
                        .map_err(Error::torch(format!("initial weight {name}")))?;
                    var.f_copy_(&t)
                        .map_err(Error::torch(format!("initial weight {name}")))?;
                    report.loaded += 1;
                }
                Some(t) => report.kept.push(format!(
                    "{name}: shape {:?} in the file, {:?} in the model",
                    t.size(),
                    var.size()
                )),
                None => report.kept.push(format!("{name}: not in the file")),
            }
        }
        Ok(())
    })?;
    if report.loaded == 0 {
        return Err(Error::Model {
            path: path.to_path_buf(),
            message: format!(
                "no tensor matches a model variable by name and shape (the model has e.g. {})",
                report.kept.first().map(String::as_str).unwrap_or("nothing")
            ),
        });
    }
    Ok(report)
}

/// Loads a classifier's model directory onto `device`; on a GPU with its
/// weights in channels-last order, the order its inputs arrive in there
/// ([`crate::learner::to_device`]), as in training: with the two orders
/// mixed, every convolution would re-lay its weights out on every call.
pub fn load_model(
    dir: &Path,
    device: tch::Device,
) -> Result<(nn::VarStore, Box<dyn ModuleT>, ModelInfo)> {
    let loaded = crate::model_dir::load(dir, "model description", device, build)?;
    if device.is_cuda() {
        crate::learner::channels_last_weights(&loaded.0);
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(arch: Arch) -> ModelInfo {
        ModelInfo {
            model: ModelConfig {
                arch,
                width: NonZeroUsize::new(4).unwrap(),
                middle_blocks: 1,
            },
            in_channels: 3,
            image_size: 32,
            class_names: vec!["a".into(), "b".into()],
            dataset_blake3: String::new(),
            seed: 0,
            world_size: 1,
            epochs: 1,
            created_by: String::new(),
        }
    }

    #[test]
    fn every_architecture_classifies_and_learns_a_toy_problem() {
        for arch in [
            Arch::SmallCnn,
            Arch::XceptionMini,
            Arch::Resnet18,
            Arch::Resnet50,
        ] {
            tch::manual_seed(0);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = build(&vs, &info(arch));
            // Class 1 images are bright in the centre, class 0 images are not.
            let y = Tensor::from_slice(&[0i64, 1, 0, 1, 0, 1, 0, 1]);
            let x = Tensor::randn([8, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu)) * 0.1;
            let centre = y.to_kind(tch::Kind::Float).view([8, 1, 1, 1]) * 2.0;
            let _ = x.narrow(2, 12, 8).narrow(3, 12, 8).g_add_(&centre);
            let mut opt =
                crate::optim::Optimizer::new(Default::default(), 0.0, vs.trainable_variables());
            let loss = |net: &dyn ModuleT| {
                net.forward_t(&x, false)
                    .cross_entropy_for_logits(&y)
                    .double_value(&[])
            };
            let before = loss(net.as_ref());
            for _ in 0..30 {
                opt.zero_grad();
                net.forward_t(&x, true)
                    .cross_entropy_for_logits(&y)
                    .backward();
                opt.step(0.01);
            }
            assert_eq!(net.forward_t(&x, false).size(), vec![8, 2]);
            let after = loss(net.as_ref());
            assert!(after < before * 0.5, "{arch:?}: loss {before} -> {after}");
        }
    }

    #[test]
    fn xception_parameters_have_stable_names() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _net = build(&vs, &info(Arch::XceptionMini));
        let names = vs.variables();
        for n in [
            "stem1.weight",
            "entry.0.sep1.dw.weight",
            "entry.1.skip.weight",
            "middle.0.sep2.pw.weight",
            "exit.bn.running_mean",
            "classifier.bias",
        ] {
            assert!(
                names.contains_key(n),
                "missing {n}; have {:?}",
                names.keys().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn resnets_have_torchvision_names_and_parameter_counts() {
        // torchvision's resnet18 / resnet50 at width 64, 3 bands, 1000 classes
        // have 11,689,512 and 25,557,032 parameters.
        for (arch, params) in [(Arch::Resnet18, 11_689_512), (Arch::Resnet50, 25_557_032)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let mut i = info(arch);
            i.model.width = NonZeroUsize::new(64).unwrap();
            i.class_names = (0..1000).map(|c| c.to_string()).collect();
            let _net = build(&vs, &i);
            let n: i64 = vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum();
            assert_eq!(n, params, "{arch:?}");
            let names = vs.variables();
            for k in [
                "conv1.weight",
                "bn1.running_var",
                "layer2.0.downsample.0.weight",
                "layer4.1.bn2.weight",
                "fc.weight",
            ] {
                assert!(names.contains_key(k), "{arch:?}: no {k}");
            }
        }
    }

    #[test]
    fn initial_weights_load_by_name_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let src = nn::VarStore::new(tch::Device::Cpu);
        let mut i = info(Arch::Resnet18);
        let _ = build(&src, &i);
        let file = dir.path().join("pretrained.safetensors");
        src.save(&file).unwrap();
        // A fine-tuning target with a different head (3 classes).
        i.class_names.push("c".into());
        let mut dst = nn::VarStore::new(tch::Device::Cpu);
        let _ = build(&dst, &i);
        let report = load_initial_weights(&mut dst, &file).unwrap();
        let (sv, dv) = (src.variables(), dst.variables());
        assert!(sv["layer3.1.conv2.weight"].equal(&dv["layer3.1.conv2.weight"]));
        assert!(!dv["fc.weight"].size().is_empty());
        assert_eq!(report.kept.len(), 2, "{:?}", report.kept); // fc.weight, fc.bias
        assert!(report.kept.iter().all(|k| k.starts_with("fc.")));
        assert_eq!(report.loaded, dv.len() - 2);

        // Weights of another network match nothing: an error naming the file.
        let mut other = nn::VarStore::new(tch::Device::Cpu);
        let _ = build(&other, &info(Arch::XceptionMini));
        let e = load_initial_weights(&mut other, &file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pretrained.safetensors"), "{e}");
    }
}
