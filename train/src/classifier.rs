//! `train.classifier`: an image classifier (see [`crate::model`]) trained by
//! the one training loop of [`crate::learner`], with right-angle rotations,
//! flips and shifts of each training image.

use std::path::PathBuf;

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use sciflow_ingest::{Batch, DatasetInfo};

use crate::history::TrainHistory;
use crate::learner::{fit, training_config, Figures, Run, StepAt, Task};
use crate::model::{build, ModelConfig, ModelInfo};
use crate::{Error, Result};

training_config! {
    /// Configuration of `train.classifier`.
    pub struct ClassifierConfig {
        default_batch: 32,
        /// The network.
        #[serde(default)]
        pub model: ModelConfig,
        /// Random right-angle rotations and flips of each training image (galaxies have no up).
        #[serde(default = "default_true")]
        pub augment: bool,
        /// With `augment`, also shift each training image by up to this many pixels
        /// in x and y (edges repeated), so the network does not rely on the
        /// object being exactly centred.
        #[serde(default)]
        pub augment_shift: usize,
        /// A safetensors file of initial weights (fine-tuning): variables found in
        /// it by name and shape are set from it, the rest (e.g. a new head) start fresh.
        #[serde(default)]
        pub init_weights: Option<PathBuf>,
    }
}

fn default_true() -> bool {
    true
}

/// The classification task: cross-entropy loss; accuracy and loss as metrics.
struct Classification<'a> {
    config: &'a ClassifierConfig,
    info: ModelInfo,
}

impl Task for Classification<'_> {
    fn build(&mut self, vs: &mut nn::VarStore) -> Result<Box<dyn ModuleT>> {
        let net = build(vs, &self.info);
        if let Some(path) = &self.config.init_weights {
            let report = crate::model::load_initial_weights(vs, path)?;
            tracing::info!(
                "initial weights from {}: {} variable(s) loaded, {} kept fresh{}",
                path.display(),
                report.loaded,
                report.kept.len(),
                report
                    .kept
                    .first()
                    .map(|k| format!(" (e.g. {k})"))
                    .unwrap_or_default()
            );
        }
        Ok(net)
    }

    fn prepare(&self, x: Tensor, at: StepAt) -> Result<Tensor> {
        if !self.config.augment {
            return Ok(x);
        }
        augment(&x, at, self.config.augment_shift).map_err(Error::torch(format!(
            "augmenting a batch of shape {:?}",
            x.size()
        )))
    }

    fn expected(&self, batch: &Batch) -> Result<Tensor> {
        Ok(Tensor::from_slice(&batch.y))
    }

    fn train_step(
        &self,
        net: &dyn ModuleT,
        x: &Tensor,
        y: &Tensor,
        n: f64,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let logits = net.forward_t(x, true);
        let loss = logits.cross_entropy_for_logits(y);
        let sums = vec![loss.detach().to_kind(Kind::Double) * n, correct(&logits, y)];
        Ok((loss, sums))
    }

    fn valid_step(&self, net: &dyn ModuleT, x: &Tensor, y: &Tensor, n: f64) -> Result<Vec<Tensor>> {
        let logits = net.forward_t(x, false);
        let loss = logits.cross_entropy_for_logits(y);
        Ok(vec![loss.to_kind(Kind::Double) * n, correct(&logits, y)])
    }

    fn train_sums(&self) -> usize {
        2
    }

    fn valid_sums(&self) -> usize {
        2
    }

    fn figures(&self, train: &[f64], samples: f64, valid: Option<(&[f64], f64)>) -> Figures {
        Figures {
            train_loss: train[0] / samples,
            train_accuracy: Some(train[1] / samples),
            val_loss: valid.map(|(v, n)| v[0] / n),
            val_accuracy: valid.map(|(v, n)| v[1] / n),
            val_mae: None,
        }
    }

    type Info = ModelInfo;

    fn info(&self) -> &ModelInfo {
        &self.info
    }
}

/// Trains a classifier on `config.data` and, on rank 0, writes the model
/// directory (`weights.safetensors`, `model.json`, `history.json`) into `out`.
/// See [`fit`] for the rest.
pub fn train_classifier(config: &ClassifierConfig, run: Run<'_>) -> Result<TrainHistory> {
    let (seed, comm) = (run.seed, run.comm);
    let info = DatasetInfo::load(&config.data)?;
    if info.x.sample_shape.len() != 3 || info.class_names.len() < 2 {
        return Err(Error::Config(format!(
            "{} is not an image classification dataset (sample shape {:?}, {} classes)",
            config.data.display(),
            info.x.sample_shape,
            info.class_names.len()
        )));
    }
    let mut task = Classification {
        config,
        info: ModelInfo {
            model: config.model.clone(),
            in_channels: info.x.sample_shape[0],
            image_size: info.x.sample_shape[1],
            class_names: info.class_names.clone(),
            dataset_blake3: info.provenance.inputs_blake3.clone(),
            seed,
            world_size: comm.size(),
            epochs: config.epochs.get(),
            created_by: concat!("sciflow-train ", env!("CARGO_PKG_VERSION")).into(),
        },
    };
    fit(&config.loop_config(), &mut task, run)
}

/// A batch as host tensors (inputs, class indices); shapes come from the
/// data, so they are checked.
pub fn to_tensors(batch: &Batch) -> Result<(Tensor, Tensor)> {
    let x = crate::input::inputs(batch, tch::Device::Cpu)?;
    Ok((x, Tensor::from_slice(&batch.y)))
}

/// Correct predictions, as a scalar f64 tensor on the logits' device.
fn correct(logits: &Tensor, y: &Tensor) -> Tensor {
    logits
        .argmax(-1, false)
        .eq_tensor(y)
        .sum(Kind::Int64)
        .to_kind(Kind::Double)
}

/// A training image's moves: right-angle turns `k`, a mirror flip, and a
/// shift `(dy, dx)` of up to `shift` pixels, chosen by a hash of (seed,
/// epoch, rank, step, sample) so runs repeat.
fn moves(at: StepAt, sample: usize, shift: usize) -> [i64; 4] {
    let r = splitmix(
        at.seed
            ^ splitmix(
                (at.epoch as u64) << 40
                    ^ (at.rank as u64) << 24
                    ^ (at.step as u64) << 10
                    ^ sample as u64,
            ),
    );
    let span = 2 * shift as u64 + 1;
    [
        (r & 3) as i64,
        (r & 4 != 0) as i64,
        ((r >> 8) % span) as i64 - shift as i64,
        ((r >> 24) % span) as i64 - shift as i64,
    ]
}

/// Each square image of `x` (`[n, c, h, w]`) moved by its [`moves`]: output
/// pixel (y, x) reads the shifted position (edges repeated), mirrored, then
/// turned `k` times. One gather wherever `x` lives, so a GPU batch is
/// augmented there; a copy of values, the same bits on any device.
fn augment(x: &Tensor, at: StepAt, shift: usize) -> std::result::Result<Tensor, tch::TchError> {
    let size = x.size();
    let [n, c, h, w] = size[..] else {
        return Ok(x.shallow_clone());
    };
    if h != w {
        return Ok(x.shallow_clone());
    }
    let all: Vec<i64> = (0..n as usize).flat_map(|i| moves(at, i, shift)).collect();
    if all.chunks(4).all(|m| m == [0, 0, 0, 0]) {
        return Ok(x.shallow_clone());
    }
    let device = x.device();
    // Pinned and without waiting: a pageable copy would stall the host until
    // the device had finished the step before.
    let params = crate::input::upload(Tensor::from_slice(&all).f_view([n, 4, 1, 1])?, device);
    let param = |j: i64| params.f_select(1, j);
    let (k, flip, dy, dx) = (param(0)?, param(1)?, param(2)?, param(3)?);
    let ys = Tensor::f_arange(h, (Kind::Int64, device))?.f_view([1, h, 1])?;
    let xs = Tensor::f_arange(w, (Kind::Int64, device))?.f_view([1, 1, w])?;
    let last = h - 1;
    let mut sy = ys
        .f_sub(&dy)?
        .f_clamp(0, last)?
        .f_expand([n, h, w], false)?;
    let mut sx = xs
        .f_sub(&dx)?
        .f_clamp(0, last)?
        .f_expand([n, h, w], false)?;
    let flipped = sx.f_neg()?.f_add_scalar(last)?;
    sx = flipped.f_where_self(&flip.f_ne(0)?, &sx)?;
    for turn in 0..3 {
        let turns = k.f_gt(turn)?;
        let (ty, tx) = (sx.shallow_clone(), sy.f_neg()?.f_add_scalar(last)?);
        sy = ty.f_where_self(&turns, &sy)?;
        sx = tx.f_where_self(&turns, &sx)?;
    }
    let index = sy
        .f_mul_scalar(w)?
        .f_add(&sx)?
        .f_view([n, 1, h * w])?
        .f_expand([n, c, h * w], false)?;
    x.f_reshape([n, c, h * w])?
        .f_gather(2, &index, false)?
        .f_view([n, c, h, w])
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seed: u64, step: usize) -> StepAt {
        StepAt {
            seed,
            epoch: 0,
            rank: 0,
            step,
        }
    }

    /// The moves spelt out pixel by pixel, as an independent oracle for the
    /// gather: output (y, x) reads the shifted, clamped position, mirrored,
    /// then turned `k` times.
    fn moved_by_loops(x: &[f32], shape: [usize; 4], at: StepAt, shift: usize) -> Vec<f32> {
        let [_, _, h, w] = shape;
        let mut out = x.to_vec();
        for (i, sample) in out.chunks_exact_mut(shape[1] * h * w).enumerate() {
            let [k, flip, dy, dx] = moves(at, i, shift);
            let clamp = |v: i64| v.clamp(0, h as i64 - 1) as usize;
            for plane in sample.chunks_exact_mut(h * w) {
                let src = plane.to_vec();
                for y in 0..h {
                    for x in 0..w {
                        let (mut sy, mut sx) = (clamp(y as i64 - dy), clamp(x as i64 - dx));
                        if flip == 1 {
                            sx = w - 1 - sx;
                        }
                        for _ in 0..k {
                            (sy, sx) = (sx, h - 1 - sy);
                        }
                        plane[y * w + x] = src[sy * w + sx];
                    }
                }
            }
        }
        out
    }

    fn augmented(x: &[f32], shape: [usize; 4], at: StepAt, shift: usize) -> Vec<f32> {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::from_slice(x).view(&dims[..]);
        Vec::<f32>::try_from(augment(&t, at, shift).unwrap().flatten(0, -1)).unwrap()
    }

    #[test]
    fn augmentation_moves_pixels_as_spelt_out_and_repeats() {
        let shape = [3, 2, 5, 5];
        let x: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|v| v as f32)
            .collect();
        let mut turned = false;
        for step in 0..20 {
            for shift in [0, 2] {
                let a = augmented(&x, shape, at(1, step), shift);
                assert_eq!(
                    a,
                    moved_by_loops(&x, shape, at(1, step), shift),
                    "step {step}"
                );
                assert_eq!(a, augmented(&x, shape, at(1, step), shift), "repeats");
                turned |= a != x;
            }
        }
        assert!(turned, "some step moves some image");

        // Without a shift the moves only permute each plane's pixels.
        let a = augmented(&x, shape, at(7, 3), 0);
        for (orig, new) in x.chunks(25).zip(a.chunks(25)) {
            let (mut s1, mut s2) = (orig.to_vec(), new.to_vec());
            s1.sort_by(f32::total_cmp);
            s2.sort_by(f32::total_cmp);
            assert_eq!(s1, s2, "a rotation or flip only moves pixels");
        }
        // With one, some step repeats an edge.
        let shifted = (0..40).any(|step| {
            let mut v = augmented(&x[..64], [1, 1, 8, 8], at(3, step), 2);
            v.sort_by(f32::total_cmp);
            v.dedup();
            v.len() < 64
        });
        assert!(shifted, "some step shifts the image (repeating an edge)");
    }
}
