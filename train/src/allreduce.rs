//! Gradient averaging over a communicator, Horovod-style: rank 0's initial
//! weights go to every rank, and after each backward pass the gradients are
//! fused into contiguous buffers (one, or buckets of a set size) and averaged
//! with one allreduce each, so every rank applies the same update.

use std::time::Instant;

use tch::{Kind, Tensor};

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
        let mut flat = flatten(group.iter().map(|g| g.shallow_clone()));
        comm.allreduce_sum_f32(&mut flat);
        flat.iter_mut().for_each(|v| *v *= inv);
        unflatten(&flat, group.iter().map(|g| g.shallow_clone()).collect());
        start = end;
    }
    started.elapsed().as_secs_f64()
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
