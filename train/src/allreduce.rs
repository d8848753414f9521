//! Gradient averaging over a communicator, Horovod-style: rank 0's initial
//! weights go to every rank, and after each backward pass the gradients are
//! fused into contiguous buffers (one, or buckets of a set size) and averaged
//! with one allreduce each, so every rank applies the same update.
//!
//! On a GPU a bucket is fused on the device, copied once into a pinned host
//! buffer (kept for the next step), reduced there by MPI (any MPI, CUDA-aware
//! or not) and copied back, so each step crosses PCIe twice per bucket at
//! full speed. On the CPU the buffers are ordinary vectors.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::dist::Comm;

/// Copies rank 0's parameter values to every rank.
pub fn broadcast_parameters(params: &[Tensor], comm: &dyn Comm) {
    if comm.size() == 1 {
        return;
    }
    let mut flat = flatten(params.iter().map(|p| p.detach()));
    comm.broadcast_f32(&mut flat, 0);
    unflatten(&flat, params.iter().map(|p| p.detach()).collect());
}

/// Averages gradients over ranks: fused into contiguous buffers of at most
/// `bucket_elems` values (0: one buffer for everything), one allreduce each.
/// Returns the seconds spent (fusing, communicating, unpacking).
pub fn average_gradients(params: &[Tensor], comm: &dyn Comm, bucket_elems: usize) -> f64 {
    let started = Instant::now();
    // A parameter the loss does not reach (e.g. the last WaveNet layer's
    // residual convolution) has no gradient; it is the same set on every rank
    // (same graph), so leaving those out keeps the buffers aligned.
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect();
    let limit = if bucket_elems == 0 {
        usize::MAX
    } else {
        bucket_elems
    };
    let inv = 1.0 / comm.size() as f32;
    let mut start = 0;
    while start < grads.len() {
        // A bucket takes tensors in order until the next would overflow it
        // (a tensor larger than the bucket goes alone).
        let (mut end, mut n) = (start, 0usize);
        while end < grads.len() && (end == start || n + grads[end].numel() <= limit) {
            n += grads[end].numel();
            end += 1;
        }
        let group = &grads[start..end];
        match group[0].device() {
            Device::Cpu => {
                let mut flat = flatten(group.iter().map(|g| g.shallow_clone()));
                comm.allreduce_sum_f32(&mut flat);
                flat.iter_mut().for_each(|v| *v *= inv);
                unflatten(&flat, group.iter().map(|g| g.shallow_clone()).collect());
            }
            device => average_staged(group, comm, inv, device),
        }
        start = end;
    }
    started.elapsed().as_secs_f64()
}

/// Averages one bucket of device tensors through a host staging buffer:
/// fused on the device, one copy down, the allreduce on the host, one copy
/// up, the scaling and unpacking on the device.
fn average_staged(group: &[Tensor], comm: &dyn Comm, inv: f32, device: Device) {
    let parts: Vec<Tensor> = group
        .iter()
        .map(|g| g.reshape([-1]).to_kind(Kind::Float))
        .collect();
    let mut flat = Tensor::cat(&parts, 0);
    let n = flat.numel();
    with_staging(n, device, |host| {
        host.copy_(&flat);
        with_slice(host, |values| comm.allreduce_sum_f32(values));
        flat.copy_(host);
    });
    flat *= f64::from(inv);
    tch::no_grad(|| {
        let mut offset = 0;
        for g in group {
            let k = g.numel() as i64;
            let mut g = g.shallow_clone();
            g.copy_(&flat.narrow(0, offset, k).view(g.size().as_slice()));
            offset += k;
        }
    });
}

thread_local! {
    /// Host staging buffers by length: allocating pinned memory costs far
    /// more than a step's copy, so each size is allocated once.
    static STAGING: RefCell<HashMap<(usize, Device), Tensor>> = RefCell::new(HashMap::new());
}

/// Runs `f` on a host f32 buffer of `n` values for `device`'s transfers
/// (pinned for a GPU).
fn with_staging(n: usize, device: Device, f: impl FnOnce(&mut Tensor)) {
    STAGING.with(|cache| {
        let mut cache = cache.borrow_mut();
        let host = cache.entry((n, device)).or_insert_with(|| {
            let t = Tensor::zeros([n as i64], (Kind::Float, Device::Cpu));
            match device {
                Device::Cpu => t,
                // Pageable where it cannot be pinned: slower copies, same sums.
                _ => crate::input::pinned(&t, device).unwrap_or(t),
            }
        });
        f(host)
    })
}

/// Lends a contiguous host f32 tensor's values as a slice.
#[allow(unsafe_code)]
fn with_slice(t: &mut Tensor, f: impl FnOnce(&mut [f32])) {
    assert!(
        t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous(),
        "a contiguous host f32 buffer"
    );
    let n = t.numel();
    // SAFETY: `t` is a contiguous f32 CPU tensor of `n` values (checked
    // above) that this function borrows mutably for the slice's whole life,
    // so nothing else reads or writes its memory meanwhile.
    let values = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) };
    f(values)
}

/// Bucket size in values from a size in MiB (f32 gradients).
pub fn bucket_elems(mib: f64) -> usize {
    (mib * 1024.0 * 1024.0 / 4.0) as usize
}

fn flatten(tensors: impl Iterator<Item = Tensor>) -> Vec<f32> {
    let parts: Vec<Tensor> = tensors.map(|t| t.reshape([-1])).collect();
    let flat = Tensor::cat(&parts, 0).to_kind(Kind::Float).contiguous();
    let mut out = vec![0.0f32; flat.numel()];
    flat.copy_data(&mut out, flat.numel());
    out
}

fn unflatten(flat: &[f32], mut targets: Vec<Tensor>) {
    let mut offset = 0;
    tch::no_grad(|| {
        for t in targets.iter_mut() {
            let n = t.numel();
            let src = Tensor::from_slice(&flat[offset..offset + n]).reshape(t.size());
            t.copy_(&src);
            offset += n;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A communicator of `ranks` identical ranks: the sum is `ranks` times
    /// each value.
    struct Copies(usize);

    impl Comm for Copies {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            self.0
        }
        fn local_size(&self) -> usize {
            self.0
        }
        fn allreduce_sum_f32(&self, buf: &mut [f32]) {
            buf.iter_mut().for_each(|v| *v *= self.0 as f32);
        }
        fn allreduce_sum_f64(&self, buf: &mut [f64]) {
            buf.iter_mut().for_each(|v| *v *= self.0 as f64);
        }
        fn broadcast_f32(&self, _: &mut [f32], _: usize) {}
        fn broadcast_bytes(&self, _: &mut [u8], _: usize) {}
        fn barrier(&self) {}
        fn abort(&self, code: i32) -> ! {
            std::process::exit(code)
        }
    }

    #[test]
    fn the_staged_path_averages_as_the_vector_path_does() {
        // The staged path (a GPU's) run on host tensors: the same bits.
        // Fixed values, not libtorch's global generator: tests running
        // alongside draw from it too.
        let values =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin()).collect() };
        let make = || {
            vec![
                Tensor::from_slice(&values(12, 0.37)).reshape([3, 4]),
                Tensor::from_slice(&values(5, 1.3)),
            ]
        };
        let (a, b) = (make(), make());
        let comm = Copies(3);
        let inv = 1.0 / 3.0;
        let mut flat = flatten(a.iter().map(|g| g.shallow_clone()));
        comm.allreduce_sum_f32(&mut flat);
        flat.iter_mut().for_each(|v| *v *= inv);
        unflatten(&flat, a.iter().map(|g| g.shallow_clone()).collect());
        average_staged(&b, &comm, inv, Device::Cpu);
        for (x, y) in a.iter().zip(&b) {
            assert!(x.equal(y), "{x} {y}");
        }
        // The buffer is kept for the next step of the same size.
        STAGING.with(|c| assert!(c.borrow().contains_key(&(17, Device::Cpu))));
    }

    #[test]
    fn flatten_round_trips() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        let b = Tensor::from_slice(&[5.0f32]);
        let flat = flatten([a.shallow_clone(), b.shallow_clone()].into_iter());
        assert_eq!(flat, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let doubled: Vec<f32> = flat.iter().map(|v| v * 2.0).collect();
        unflatten(&doubled, vec![a.shallow_clone(), b.shallow_clone()]);
        assert_eq!(
            Vec::<f32>::try_from(&a.reshape([-1])).unwrap(),
            vec![2.0, 4.0, 6.0, 8.0]
        );
    }
}
