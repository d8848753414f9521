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

    fn prepare(&self, batch: &mut Batch, at: StepAt) {
        if self.config.augment {
            augment(
                batch,
                at.seed,
                at.epoch,
                at.rank,
                at.step,
                self.config.augment_shift,
            );
        }
    }

    fn tensors(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        to_tensors(batch)
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

/// Batch buffers as tensors; shapes come from the data, so they are checked.
pub fn to_tensors(batch: &Batch) -> Result<(Tensor, Tensor)> {
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    let x = Tensor::from_slice(&batch.x)
        .f_reshape(&shape)
        .map_err(Error::torch(format!("batch of shape {:?}", batch.shape)))?;
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

/// Per-sample rotation by a multiple of 90 degrees and an optional flip,
/// chosen by a hash of (seed, epoch, rank, step, sample) so runs repeat.
fn augment(batch: &mut Batch, seed: u64, epoch: usize, rank: usize, step: usize, shift: usize) {
    let (c, h, w) = (batch.shape[1], batch.shape[2], batch.shape[3]);
    if h != w {
        return;
    }
    let len = c * h * w;
    let mut tmp = vec![0.0f32; h * w];
    for (i, sample) in batch.x.chunks_exact_mut(len).enumerate() {
        let r = splitmix(
            seed ^ splitmix(
                (epoch as u64) << 40 ^ (rank as u64) << 24 ^ (step as u64) << 10 ^ i as u64,
            ),
        );
        let (k, flip) = (r & 3, r & 4 != 0);
        let span = 2 * shift as u64 + 1;
        let (dy, dx) = (
            ((r >> 8) % span) as isize - shift as isize,
            ((r >> 24) % span) as isize - shift as isize,
        );
        if k == 0 && !flip && dy == 0 && dx == 0 {
            continue;
        }
        let clamp = |v: isize| v.clamp(0, h as isize - 1) as usize;
        for plane in sample.chunks_exact_mut(h * w) {
            for y in 0..h {
                for x in 0..w {
                    let (mut sy, mut sx) = (clamp(y as isize - dy), clamp(x as isize - dx));
                    if flip {
                        sx = w - 1 - sx;
                    }
                    for _ in 0..k {
                        (sy, sx) = (sx, h - 1 - sy);
                    }
                    tmp[y * w + x] = plane[sy * w + sx];
                }
            }
            plane.copy_from_slice(&tmp);
        }
    }
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

    #[test]
    fn augmentation_permutes_pixels_and_repeats() {
        let x: Vec<f32> = (0..2 * 16).map(|v| v as f32).collect();
        let make = || Batch {
            x: x.clone(),
            shape: vec![2, 1, 4, 4],
            y: vec![0, 1],
            targets: Vec::new(),
        };
        let (mut a, mut b) = (make(), make());
        augment(&mut a, 1, 0, 0, 0, 0);
        augment(&mut b, 1, 0, 0, 0, 0);
        assert_eq!(a, b);
        for (orig, new) in x.chunks(16).zip(a.x.chunks(16)) {
            let mut s1 = orig.to_vec();
            let mut s2 = new.to_vec();
            s1.sort_by(f32::total_cmp);
            s2.sort_by(f32::total_cmp);
            assert_eq!(s1, s2, "a rotation or flip only moves pixels");
        }
        let moved = (0..20).any(|step| {
            let mut c = make();
            augment(&mut c, 1, 0, 0, step, 0);
            c.x != x
        });
        assert!(moved);

        // With a shift, pixels move by up to that many places, edges repeat.
        let x: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let shifted = (0..40).any(|step| {
            let mut d = Batch {
                x: x.clone(),
                shape: vec![1, 1, 8, 8],
                y: vec![0],
                targets: Vec::new(),
            };
            augment(&mut d, 3, 0, 0, step, 2);
            let mut sorted = d.x.clone();
            sorted.sort_by(f32::total_cmp);
            sorted.dedup();
            sorted.len() < 64
        });
        assert!(shifted, "some step shifts the image (repeating an edge)");
    }
}
