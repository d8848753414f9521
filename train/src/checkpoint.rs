//! Exact checkpoints: weights, optimizer state and the position in the run.
//!
//! A checkpoint directory holds `current/` with `weights.safetensors` (the
//! variables, batch-norm statistics included), `optimizer.safetensors` (our
//! optimizer's moment buffers) and `position.json` (epoch, batches done in
//! it, global step, the epoch's running sums, the history so far). It is
//! written as `next/` and swapped in with renames (`current` -> `previous`,
//! `next` -> `current`), so a process killed at any instant leaves a complete
//! `current/` or `previous/` behind.
//!
//! No random-generator state needs saving: the loader's order is a function of
//! (seed, epoch, world size) and [`crate::checkpoint::step_seed`] reseeds
//! libtorch before each step, so every random choice a step makes is a
//! function of (seed, rank, global step). Resuming therefore replays exactly
//! the batches and updates an uninterrupted run makes, bit for bit on CPU.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::dist::Comm;
use crate::optim::Optimizer;
use crate::{Error, Result};

/// Where and how often a training run checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpointing {
    /// The checkpoint directory (created as needed).
    pub dir: PathBuf,
    /// Also checkpoint every this many steps within an epoch (0: only at
    /// epoch ends).
    pub every_steps: usize,
    /// Continue from the checkpoint in `dir`, if there is one.
    pub resume: bool,
}

/// Where a training loop stands, as it hands it to [`Checkpointing::save`].
#[derive(Debug, Clone, Copy)]
pub struct At<'a, H> {
    /// The epoch in progress (the next one, at an epoch's end).
    pub epoch: usize,
    /// Batches of it taken.
    pub step: usize,
    /// Steps in the whole run.
    pub global_step: usize,
    /// The epoch's running sums.
    pub sums: &'a [f64],
    /// Training seconds of the epoch so far.
    pub seconds: f64,
    /// The finished epochs' statistics.
    pub history: &'a [H],
}

impl Checkpointing {
    /// With `resume`, restores the saved state into `vs` and `opt` and returns
    /// the position and the finished epochs' history; `None` to start afresh.
    pub fn restore<H: serde::de::DeserializeOwned>(
        &self,
        vs: &mut VarStore,
        opt: &mut Optimizer,
        seed: u64,
        comm: &dyn Comm,
    ) -> Result<Option<(Position, Vec<H>)>> {
        if !self.resume {
            return Ok(None);
        }
        let Some(pos) = load(&self.dir, vs, opt, seed, comm.size())? else {
            return Ok(None);
        };
        let history =
            serde_json::from_value(pos.history.clone()).map_err(|source| Error::Parse {
                path: self.dir.join("current/position.json"),
                what: "checkpoint history",
                source,
            })?;
        tracing::info!(
            "resuming from {} at epoch {}, step {}",
            self.dir.display(),
            pos.epoch,
            pos.step
        );
        Ok(Some((pos, history)))
    }

    /// Saves the state at `at`: rank 0 writes (every rank holds the same
    /// state), the others wait, so no rank runs ahead of a checkpoint that
    /// may yet fail.
    pub fn save<H: Serialize>(
        &self,
        at: At<'_, H>,
        vs: &VarStore,
        opt: &Optimizer,
        seed: u64,
        comm: &dyn Comm,
    ) -> Result<()> {
        let result = if comm.rank() == 0 {
            let pos = Position {
                epoch: at.epoch,
                step: at.step,
                global_step: at.global_step,
                sums: at.sums.to_vec(),
                seconds: at.seconds,
                history: serde_json::to_value(at.history).expect("history serialises"),
                optimizer_steps: opt.state().1,
                seed,
                world_size: comm.size(),
            };
            save(&self.dir, vs, opt, &pos)
        } else {
            Ok(())
        };
        comm.barrier();
        result
    }
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// The epoch in progress (0-based; equal to the epoch count when done).
    pub epoch: usize,
    /// Batches of that epoch already taken.
    pub step: usize,
    /// Steps taken in the whole run.
    pub global_step: usize,
    /// The epoch's running sums (loss x samples, ..., samples).
    pub sums: Vec<f64>,
    /// Training seconds spent in the epoch so far.
    pub seconds: f64,
    /// Per-epoch statistics of the finished epochs.
    pub history: serde_json::Value,
    /// The optimizer's step count.
    pub optimizer_steps: i32,
    /// The seed of the run; a resume with another seed is refused.
    pub seed: u64,
    /// Ranks of the run; a resume on another count is refused (the loader's
    /// order depends on it).
    pub world_size: usize,
}

/// The libtorch seed for a step: a hash of (seed, rank, global step), so the
/// generator's state never has to be saved.
pub fn step_seed(seed: u64, rank: usize, global_step: usize) -> i64 {
    let mut h = seed ^ 0x5851_f42d_4c95_7f2d;
    for v in [rank as u64, global_step as u64] {
        h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    (h >> 1) as i64
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::io(op, path, source)
}

/// Writes a checkpoint into `dir` (rank 0 only: every rank holds the same state).
pub fn save(dir: &Path, vs: &VarStore, opt: &Optimizer, pos: &Position) -> Result<()> {
    let next = dir.join("next");
    if next.exists() {
        std::fs::remove_dir_all(&next).map_err(io("failed to clear", &next))?;
    }
    std::fs::create_dir_all(&next).map_err(io("failed to create", &next))?;
    crate::model_dir::save_weights(vs, &next.join("weights.safetensors"))?;
    let (state, _) = opt.state();
    let optim = next.join("optimizer.safetensors");
    if state.is_empty() {
        // safetensors cannot hold zero tensors; an empty file stands for none.
        std::fs::write(&optim, b"").map_err(io("failed to write", &optim))?;
    } else {
        let state: Vec<(String, Tensor)> = state
            .into_iter()
            .map(|(n, t)| (n, t.contiguous()))
            .collect();
        Tensor::write_safetensors(&state, &optim)
            .map_err(Error::torch(format!("writing {}", optim.display())))?;
    }
    let json = next.join("position.json");
    let text = serde_json::to_vec_pretty(pos).expect("a position serialises");
    std::fs::write(&json, text).map_err(io("failed to write", &json))?;
    let current = dir.join("current");
    let previous = dir.join("previous");
    if current.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(io("failed to clear", &previous))?;
        }
        std::fs::rename(&current, &previous).map_err(io("failed to move aside", &current))?;
    }
    std::fs::rename(&next, &current).map_err(io("failed to rename into", &current))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(io("failed to remove", &previous))?;
    }
    Ok(())
}

/// Restores the checkpoint in `dir` into `vs` and `opt`; `None` when there is
/// none. A checkpoint from another seed or world size is an error.
pub fn load(
    dir: &Path,
    vs: &mut VarStore,
    opt: &mut Optimizer,
    seed: u64,
    world_size: usize,
) -> Result<Option<Position>> {
    // `previous` is complete when a save died between its two renames.
    let Some(src) = ["current", "previous"]
        .iter()
        .map(|d| dir.join(d))
        .find(|d| d.join("position.json").is_file())
    else {
        return Ok(None);
    };
    let json = src.join("position.json");
    let text = std::fs::read(&json).map_err(io("failed to read", &json))?;
    let pos: Position = serde_json::from_slice(&text).map_err(|source| Error::Parse {
        path: json.clone(),
        what: "checkpoint position",
        source,
    })?;
    if pos.seed != seed || pos.world_size != world_size {
        return Err(Error::Config(format!(
            "{} was written by a run with seed {} on {} rank(s); this run has seed {seed} on \
             {world_size}: resume with the same seed and rank count, or start afresh",
            json.display(),
            pos.seed,
            pos.world_size
        )));
    }
    let weights = src.join("weights.safetensors");
    vs.load(&weights)
        .map_err(Error::torch(format!("reading {}", weights.display())))?;
    let optim = src.join("optimizer.safetensors");
    let empty = std::fs::metadata(&optim)
        .map_err(io("failed to read", &optim))?
        .len()
        == 0;
    let tensors = if empty {
        Vec::new()
    } else {
        Tensor::read_safetensors(&optim)
            .map_err(Error::torch(format!("reading {}", optim.display())))?
    };
    opt.load_state(&tensors, pos.optimizer_steps)
        .map_err(|message| Error::Model {
            path: optim,
            message,
        })?;
    Ok(Some(pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    #[test]
    fn save_then_load_restores_weights_moments_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let make = |seed| {
            tch::manual_seed(seed);
            let vs = VarStore::new(tch::Device::Cpu);
            let lin = nn::linear(vs.root() / "l", 3, 2, Default::default());
            let opt = Optimizer::new(Default::default(), 0.0, vs.trainable_variables());
            (vs, lin, opt)
        };
        let (vs, lin, mut opt) = make(1);
        let x = Tensor::ones([4, 3], (tch::Kind::Float, tch::Device::Cpu));
        for _ in 0..3 {
            opt.zero_grad();
            x.apply(&lin).square().sum(tch::Kind::Float).backward();
            opt.step(0.1);
        }
        let pos = Position {
            epoch: 2,
            step: 5,
            global_step: 17,
            sums: vec![1.5, 3.0],
            seconds: 2.0,
            history: serde_json::json!([{"epoch": 0}]),
            optimizer_steps: opt.state().1,
            seed: 9,
            world_size: 1,
        };
        save(dir.path(), &vs, &opt, &pos).unwrap();
        // A second save replaces the first and leaves no scratch behind.
        save(dir.path(), &vs, &opt, &pos).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("current")]);

        let (mut vs2, lin2, mut opt2) = make(2);
        assert_ne!(x.apply(&lin2), x.apply(&lin));
        let back = load(dir.path(), &mut vs2, &mut opt2, 9, 1)
            .unwrap()
            .unwrap();
        assert_eq!(back, pos);
        assert_eq!(x.apply(&lin2), x.apply(&lin));
        let (a, _) = opt.state();
        let (b, steps) = opt2.state();
        assert_eq!(steps, 3);
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(ta, tb, "{na}");
        }
        // Another seed or world size is refused; no checkpoint is `None`.
        assert!(load(dir.path(), &mut vs2, &mut opt2, 8, 1).is_err());
        assert!(load(dir.path(), &mut vs2, &mut opt2, 9, 2).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(load(empty.path(), &mut vs2, &mut opt2, 9, 1)
            .unwrap()
            .is_none());
        // A save that died between its renames: `previous` is used.
        std::fs::rename(dir.path().join("current"), dir.path().join("previous")).unwrap();
        assert!(load(dir.path(), &mut vs2, &mut opt2, 9, 1)
            .unwrap()
            .is_some());
    }

    #[test]
    fn step_seeds_differ_by_rank_and_step() {
        let a = step_seed(1, 0, 0);
        assert_eq!(a, step_seed(1, 0, 0));
        assert_ne!(a, step_seed(1, 1, 0));
        assert_ne!(a, step_seed(1, 0, 1));
        assert_ne!(a, step_seed(2, 0, 0));
        assert!(a >= 0);
    }
}
