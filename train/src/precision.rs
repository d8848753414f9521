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

#[allow(unsafe_code)]
mod ffi {
    extern "C" {
        pub fn sciflow_autocast_enter(cuda: i32) -> i32;
        pub fn sciflow_autocast_exit(cuda: i32, before: i32);
        pub fn sciflow_autocast_is_bf16(cuda: i32) -> i32;
    }
}

impl Precision {
    /// Runs `f` at this precision on `device`.
    pub fn run<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        if self == Precision::Fp32 {
            return f();
        }
        let cuda = i32::from(device.is_cuda());
        let _guard = Autocast::enter(cuda);
        f()
    }
}

/// Autocast entered; left when dropped, also when `f` panics.
struct Autocast {
    cuda: i32,
    before: i32,
}

impl Autocast {
    #[allow(unsafe_code)]
    fn enter(cuda: i32) -> Self {
        // SAFETY: plain calls into libtorch's autocast state (thread-local
        // flags and a nesting counter) with integer arguments.
        let before = unsafe { ffi::sciflow_autocast_enter(cuda) };
        Autocast { cuda, before }
    }
}

impl Drop for Autocast {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: as in `enter`; undoes exactly what it did.
        unsafe { ffi::sciflow_autocast_exit(self.cuda, self.before) }
    }
}

/// Whether autocast to bfloat16 is on for `device`'s type right now.
#[allow(unsafe_code)]
pub fn bf16_active(device: Device) -> bool {
    // SAFETY: reads libtorch's autocast flags.
    unsafe { ffi::sciflow_autocast_is_bf16(i32::from(device.is_cuda())) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
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
