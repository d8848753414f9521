//! `precision: fp32 | bf16`: bf16 runs each step's forward pass (and the
//! loss) under libtorch's autocast at bfloat16, on the GPU or the CPU, while
//! the weights, their gradients and the optimizer stay in fp32. bfloat16 has
//! fp32's range, so no loss scaling is needed.

use serde::{Deserialize, Serialize};
use tch::Device;

/// The arithmetic of a step's forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in fp32.
    #[default]
    Fp32,
    /// Autocast to bfloat16, fp32 master weights.
    Bf16,
}

impl Precision {
    /// Runs `f` at this precision on `device`.
    pub fn run<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        if self == Precision::Fp32 {
            return f();
        }
        let _autocast = crate::shim::Autocast::enter(device);
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::bf16_active;
    use tch::{Kind, Tensor};

    #[test]
    fn bf16_runs_matmuls_in_bfloat16_and_restores_fp32_after() {
        let a = Tensor::randn([8, 8], (Kind::Float, Device::Cpu));
        let (inside, kind) = Precision::Bf16.run(Device::Cpu, || {
            (bf16_active(Device::Cpu), a.matmul(&a).kind())
        });
        assert!(inside);
        assert_eq!(kind, Kind::BFloat16, "autocast casts a matmul down");
        assert!(!bf16_active(Device::Cpu), "left on return");
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let kind = Precision::Fp32.run(Device::Cpu, || a.matmul(&a).kind());
        assert_eq!(kind, Kind::Float);
    }
}
