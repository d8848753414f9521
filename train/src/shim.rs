//! Safe wrappers of the C++ shim (src/shim.cpp, built by build.rs): the
//! libtorch calls tch 0.24 does not expose.

use tch::{Device, Tensor};

#[allow(unsafe_code)]
mod ffi {
    use torch_sys::C_tensor;

    extern "C" {
        pub fn sciflow_autocast_enter(cuda: i32) -> i32;
        pub fn sciflow_autocast_exit(cuda: i32, before: i32);
        pub fn sciflow_autocast_is_bf16(cuda: i32) -> i32;
        pub fn sciflow_channels_last(t: *const C_tensor) -> *mut C_tensor;
        pub fn sciflow_cpu_capability(buf: *mut std::ffi::c_char, len: i32);
        pub fn sciflow_torch_version(buf: *mut std::ffi::c_char, len: i32);
        pub fn sciflow_mkl_branch() -> i32;
        pub fn sciflow_mkl_unreadable() -> i32;
        pub fn sciflow_cudnn_deterministic(on: i32);
        pub fn sciflow_cuda_hooks_real() -> i32;
        pub fn sciflow_empty_pinned(sizes: *const i64, ndim: i32, kind: i32) -> *mut C_tensor;
        pub fn sciflow_foreach(
            op: i32,
            a: *const *mut C_tensor,
            b: *const *mut C_tensor,
            n: i32,
            s: f64,
            out: *mut *mut C_tensor,
        ) -> i32;
    }
}

/// Autocast to bfloat16 entered on one device type; left when dropped
/// (also when the code it guards panics).
pub(crate) struct Autocast {
    cuda: i32,
    before: i32,
}

impl Autocast {
    /// Enters autocast to bfloat16 for `device`'s type.
    #[allow(unsafe_code)]
    pub(crate) fn enter(device: Device) -> Self {
        let cuda = i32::from(device.is_cuda());
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

/// `t`'s values in channels-last memory order (4-D tensors; others as they
/// are), `None` if libtorch refused.
#[allow(unsafe_code)]
pub fn channels_last(t: &Tensor) -> Option<Tensor> {
    // SAFETY: the shim reads the tensor behind `t`'s pointer, which `t`
    // keeps alive for the call, and returns a new heap tensor (or null);
    // `from_ptr` takes ownership of it exactly once, as tch does for every
    // tensor libtch returns.
    let ptr = unsafe { ffi::sciflow_channels_last(t.as_ptr()) };
    (!ptr.is_null()).then(|| unsafe { Tensor::from_ptr(ptr) })
}

/// ATen's CPU capability (`DEFAULT`, `AVX2`, `AVX512`, ...); the first call
/// fixes libtorch's choice.
pub fn cpu_capability() -> String {
    read_string(ffi::sciflow_cpu_capability)
}

/// The loaded libtorch's version (`2.11.0`), empty if it does not say.
pub fn torch_version() -> String {
    read_string(ffi::sciflow_torch_version)
}

/// What a shim function that fills a buffer writes, as a `String`.
#[allow(unsafe_code)]
fn read_string(fill: unsafe extern "C" fn(*mut std::ffi::c_char, i32)) -> String {
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: the shim's writers put at most `buf.len()` bytes, the last a NUL.
    unsafe { fill(buf.as_mut_ptr(), buf.len() as i32) };
    // SAFETY: `buf` holds a NUL-terminated string (the writer ends it).
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// MKL's conditional-reproducibility branch code, `None` where libtorch
/// carries no MKL.
#[allow(unsafe_code)]
pub fn mkl_branch() -> Option<i32> {
    // SAFETY: no arguments; the shim looks MKL up and returns -1 without it.
    let b = unsafe { ffi::sciflow_mkl_branch() };
    (b >= 0).then_some(b)
}

/// Whether libtorch carries MKL but its branch cannot be asked.
#[allow(unsafe_code)]
pub fn mkl_unreadable() -> bool {
    // SAFETY: no arguments; reads a build flag and looks a symbol up.
    unsafe { ffi::sciflow_mkl_unreadable() != 0 }
}

/// Turns cuDNN's deterministic algorithms on (benchmarking off) or off.
#[allow(unsafe_code)]
pub fn cudnn_deterministic(on: bool) {
    // SAFETY: sets two flags of libtorch's global context.
    unsafe { ffi::sciflow_cudnn_deterministic(i32::from(on)) }
}

/// Whether libtorch's CUDA hooks are the real ones from `libtorch_cuda`
/// rather than the CPU-only stand-ins. The first question about CUDA fixes
/// them for the process, and so does this one: see [`crate::cuda::load`].
#[allow(unsafe_code)]
pub fn cuda_hooks_real() -> bool {
    // SAFETY: no arguments; the shim catches whatever libtorch throws.
    unsafe { ffi::sciflow_cuda_hooks_real() != 0 }
}

/// An uninitialised host tensor of `sizes` and `kind` in page-locked memory,
/// `None` where memory cannot be pinned (no GPU).
#[allow(unsafe_code)]
pub fn empty_pinned(sizes: &[i64], kind: tch::Kind) -> Option<Tensor> {
    // libtorch's ScalarType codes of the kinds batches come in (tch keeps
    // its own mapping private).
    let code = match kind {
        tch::Kind::Uint8 => 0,
        tch::Kind::Half => 5,
        tch::Kind::Float => 6,
        _ => return None,
    };
    // SAFETY: the shim reads `sizes.len()` sizes and returns a new heap
    // tensor (or null), which `from_ptr` takes ownership of once.
    let ptr = unsafe { ffi::sciflow_empty_pinned(sizes.as_ptr(), sizes.len() as i32, code) };
    (!ptr.is_null()).then(|| unsafe { Tensor::from_ptr(ptr) })
}

/// libtorch's `_foreach_*` list operations, as PyTorch's optimizers use
/// them: on a GPU a few kernels for a whole list of tensors instead of some
/// per tensor; on the CPU libtorch runs each tensor's own operation in turn,
/// so the bits are those of the operations one by one. A refusal (lists of
/// other lengths, shapes or devices) panics, as tch's operations do.
pub mod foreach {
    use tch::Tensor;

    /// The operations, numbered as in shim.cpp.
    #[derive(Clone, Copy)]
    enum Op {
        MulScalarInPlace = 0,
        MulScalar = 1,
        AddListInPlace = 2,
        AddList = 3,
        MulList = 4,
        DivScalar = 5,
        DivListInPlace = 6,
        SubListInPlace = 7,
        AddScalarInPlace = 8,
        RsqrtInPlace = 9,
        ReciprocalInPlace = 10,
        SqrtInPlace = 11,
    }

    impl Op {
        /// Whether it makes new tensors (else it updates `a` in place).
        fn makes(self) -> bool {
            matches!(
                self,
                Op::MulScalar | Op::AddList | Op::MulList | Op::DivScalar
            )
        }
    }

    /// Runs `op` on `a` (and `b`, with scalar `s`); the new tensors of the
    /// forms that make them.
    #[allow(unsafe_code)]
    fn call(op: Op, a: &[Tensor], b: Option<&[Tensor]>, s: f64) -> Vec<Tensor> {
        if let Some(b) = b {
            assert_eq!(a.len(), b.len(), "foreach lists of different lengths");
        }
        let makes = op.makes();
        let ptrs = |ts: &[Tensor]| ts.iter().map(|t| t.as_ptr() as *mut _).collect::<Vec<_>>();
        let (pa, pb) = (ptrs(a), b.map(ptrs));
        let mut out = vec![std::ptr::null_mut(); if makes { a.len() } else { 0 }];
        // SAFETY: `pa` (and `pb`, as long) point at tensors that `a` and `b`
        // keep alive for the call; the shim reads them, writes into their
        // storage for the in-place forms (as tch's `_` methods do), and for
        // the others fills `out`, as long as `a`, with new heap tensors.
        let failed = unsafe {
            super::ffi::sciflow_foreach(
                op as i32,
                pa.as_ptr(),
                pb.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
                a.len() as i32,
                s,
                out.as_mut_ptr(),
            )
        };
        assert!(failed == 0, "libtorch refused a foreach operation");
        // SAFETY: each pointer is a tensor the shim made for us, taken once.
        out.into_iter()
            .map(|p| unsafe { Tensor::from_ptr(p) })
            .collect()
    }

    /// `a[i] *= s`.
    pub fn mul_scalar_(a: &[Tensor], s: f64) {
        call(Op::MulScalarInPlace, a, None, s);
    }
    /// `a[i] * s`.
    pub fn mul_scalar(a: &[Tensor], s: f64) -> Vec<Tensor> {
        call(Op::MulScalar, a, None, s)
    }
    /// `a[i] += b[i]`.
    pub fn add_(a: &[Tensor], b: &[Tensor]) {
        call(Op::AddListInPlace, a, Some(b), 0.0);
    }
    /// `a[i] + b[i]`.
    pub fn add(a: &[Tensor], b: &[Tensor]) -> Vec<Tensor> {
        call(Op::AddList, a, Some(b), 0.0)
    }
    /// `a[i] * b[i]`.
    pub fn mul(a: &[Tensor], b: &[Tensor]) -> Vec<Tensor> {
        call(Op::MulList, a, Some(b), 0.0)
    }
    /// `a[i] / s`.
    pub fn div_scalar(a: &[Tensor], s: f64) -> Vec<Tensor> {
        call(Op::DivScalar, a, None, s)
    }
    /// `a[i] /= b[i]`.
    pub fn div_(a: &[Tensor], b: &[Tensor]) {
        call(Op::DivListInPlace, a, Some(b), 0.0);
    }
    /// `a[i] -= b[i]`.
    pub fn sub_(a: &[Tensor], b: &[Tensor]) {
        call(Op::SubListInPlace, a, Some(b), 0.0);
    }
    /// `a[i] += s`.
    pub fn add_scalar_(a: &[Tensor], s: f64) {
        call(Op::AddScalarInPlace, a, None, s);
    }
    /// `a[i] = 1 / sqrt(a[i])`.
    pub fn rsqrt_(a: &[Tensor]) {
        call(Op::RsqrtInPlace, a, None, 0.0);
    }
    /// `a[i] = 1 / a[i]`.
    pub fn reciprocal_(a: &[Tensor]) {
        call(Op::ReciprocalInPlace, a, None, 0.0);
    }
    /// `a[i] = sqrt(a[i])`.
    pub fn sqrt_(a: &[Tensor]) {
        call(Op::SqrtInPlace, a, None, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn pinned_tensors_exist_only_with_a_gpu() {
        for kind in [Kind::Uint8, Kind::Half, Kind::Float] {
            match empty_pinned(&[2, 3], kind) {
                Some(t) => {
                    assert!(crate::cuda::device_count() > 0);
                    assert_eq!((t.size(), t.kind()), (vec![2, 3], kind));
                }
                None => assert_eq!(crate::cuda::device_count(), 0),
            }
        }
    }

    #[test]
    fn channels_last_reorders_memory_and_keeps_values() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let y = channels_last(&x).unwrap();
        assert_eq!(x.stride(), vec![60, 20, 5, 1]);
        // Channels last: the channel is the fastest-moving index.
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(x.equal(&y));
        let v = Tensor::randn([7], (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&v).unwrap().stride(), vec![1]);
    }
}
