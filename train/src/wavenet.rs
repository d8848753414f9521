//! A WaveNet-style regressor for waveforms: stacks of dilated 1-D
//! convolutions with gated activations (tanh x sigmoid), residual and skip
//! connections, dilations doubling per layer within a stack; the summed skips
//! go through ReLU and 1x1 convolutions, are averaged over time and mapped to
//! the targets. A strided 1-D convolution first shortens long inputs, so a
//! few thousand samples cost what a few hundred would.
//!
//! Parameter names (`front`, `stacks.S.L.filter|gate|res|skip`, `post1`,
//! `post2`, `head`) follow the equivalent plain PyTorch module.

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Size of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveNetConfig {
    /// Channels of the residual path.
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Channels of the skip path.
    #[serde(default = "default_skip")]
    pub skip_channels: usize,
    /// Layers per stack (dilations 1, 2, 4, ... 2^(layers - 1)).
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// Stacks.
    #[serde(default = "default_stacks")]
    pub stacks: usize,
    /// Stride (and kernel size) of the first convolution, which shortens the input.
    #[serde(default = "default_stride")]
    pub input_stride: usize,
}

fn default_channels() -> usize {
    32
}
fn default_skip() -> usize {
    64
}
fn default_layers() -> usize {
    8
}
fn default_stacks() -> usize {
    2
}
fn default_stride() -> usize {
    4
}

impl Default for WaveNetConfig {
    fn default() -> Self {
        WaveNetConfig {
            channels: default_channels(),
            skip_channels: default_skip(),
            layers: default_layers(),
            stacks: default_stacks(),
            input_stride: default_stride(),
        }
    }
}

#[derive(Debug)]
struct Layer {
    dilation: i64,
    filter: nn::Conv1D,
    gate: nn::Conv1D,
    res: nn::Conv1D,
    skip: nn::Conv1D,
}

/// The network.
#[derive(Debug)]
pub struct WaveNet {
    front: nn::Conv1D,
    layers: Vec<Layer>,
    post1: nn::Conv1D,
    post2: nn::Conv1D,
    head: nn::Linear,
}

impl WaveNet {
    /// Builds the variables under `root` for `in_channels` input channels and `outputs` targets.
    pub fn new(root: &nn::Path, in_channels: usize, outputs: usize, c: &WaveNetConfig) -> Self {
        let (ch, sk) = (c.channels as i64, c.skip_channels as i64);
        let s = c.input_stride.max(1) as i64;
        let front = nn::conv1d(
            root / "front",
            in_channels as i64,
            ch,
            s,
            nn::ConvConfig {
                stride: s,
                ..Default::default()
            },
        );
        let mut layers = Vec::new();
        for st in 0..c.stacks {
            for l in 0..c.layers {
                let p = root / "stacks" / st / l;
                let dilation = 1i64 << l;
                let dil = nn::ConvConfig {
                    dilation,
                    ..Default::default()
                };
                layers.push(Layer {
                    dilation,
                    filter: nn::conv1d(&p / "filter", ch, ch, 2, dil),
                    gate: nn::conv1d(&p / "gate", ch, ch, 2, dil),
                    res: nn::conv1d(&p / "res", ch, ch, 1, Default::default()),
                    skip: nn::conv1d(&p / "skip", ch, sk, 1, Default::default()),
                });
            }
        }
        WaveNet {
            front,
            layers,
            post1: nn::conv1d(root / "post1", sk, sk, 1, Default::default()),
            post2: nn::conv1d(root / "post2", sk, sk, 1, Default::default()),
            head: nn::linear(root / "head", sk, outputs as i64, Default::default()),
        }
    }
}

impl ModuleT for WaveNet {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let mut h = x.apply(&self.front);
        let mut skips: Option<Tensor> = None;
        for l in &self.layers {
            // Causal: pad the past by the dilation so the output keeps its length.
            let padded = h.constant_pad_nd([l.dilation, 0]);
            let z = padded.apply(&l.filter).tanh() * padded.apply(&l.gate).sigmoid();
            let s = z.apply(&l.skip);
            skips = Some(match skips {
                None => s,
                Some(acc) => acc + s,
            });
            // Not `h += ...`: an in-place add would overwrite a tensor autograd
            // still needs for the backward pass.
            #[allow(clippy::assign_op_pattern)]
            {
                h = h + z.apply(&l.res);
            }
        }
        let s = skips.unwrap_or_else(|| h.shallow_clone());
        let s = s.relu().apply(&self.post1).relu().apply(&self.post2);
        s.mean_dim(-1, false, tch::Kind::Float).apply(&self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_names_and_learning() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = WaveNetConfig {
            channels: 8,
            skip_channels: 8,
            layers: 4,
            stacks: 2,
            input_stride: 2,
        };
        let net = WaveNet::new(&vs.root(), 2, 3, &cfg);
        let names = vs.variables();
        for n in [
            "front.weight",
            "stacks.1.3.gate.weight",
            "stacks.0.0.skip.bias",
            "head.weight",
        ] {
            assert!(names.contains_key(n), "no {n}");
        }
        // Targets: the frequency and amplitude of a sinusoid, which the network must read off.
        let t = Tensor::arange(256, (tch::Kind::Float, tch::Device::Cpu)).view([1, 1, 256]);
        let f = Tensor::rand([16, 1, 1], (tch::Kind::Float, tch::Device::Cpu)) * 0.2 + 0.05;
        let a = Tensor::rand([16, 1, 1], (tch::Kind::Float, tch::Device::Cpu)) + 0.5;
        let x = Tensor::cat(&[(&t * &f).sin() * &a, (&t * &f).cos() * &a], 1);
        let y = Tensor::cat(
            &[
                f.view([16, 1]) * 10.0,
                a.view([16, 1]),
                a.view([16, 1]) * 0.0,
            ],
            1,
        );
        assert_eq!(net.forward_t(&x, false).size(), vec![16, 3]);
        let mut opt =
            crate::optim::Optimizer::new(Default::default(), 0.0, vs.trainable_variables());
        let loss = |net: &WaveNet| {
            (net.forward_t(&x, false) - &y)
                .square()
                .mean(tch::Kind::Float)
                .double_value(&[])
        };
        let before = loss(&net);
        for _ in 0..150 {
            opt.zero_grad();
            (net.forward_t(&x, true) - &y)
                .square()
                .mean(tch::Kind::Float)
                .backward();
            opt.step(3e-3);
        }
        let after = loss(&net);
        assert!(after < 0.2 * before, "loss {before} -> {after}");
    }
}
