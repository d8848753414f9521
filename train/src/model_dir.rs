//! A model directory: `weights.safetensors` (the network's variables) and
//! `model.json` (what network, trained on what, for what outputs), written
//! and read the same way for every task.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::nn;

use crate::{Error, Result};

/// The weights' file name.
pub const WEIGHTS: &str = "weights.safetensors";
/// The description's file name.
pub const MODEL_JSON: &str = "model.json";

/// Writes `weights.safetensors` and `model.json` into `dir` (created if needed).
pub fn save(dir: &Path, vs: &nn::VarStore, info: &impl Serialize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("failed to create", dir, e))?;
    save_weights(vs, &dir.join(WEIGHTS))?;
    let json = serde_json::to_vec_pretty(info).expect("model info serialises");
    Ok(sciflow_ingest::files::write_atomic(
        &dir.join(MODEL_JSON),
        &json,
    )?)
}

/// Writes every variable of `vs` to a safetensors file, in the standard
/// (row-major) memory order whatever order they are kept in on the device
/// (channels-last on GPUs), so the file reads the same everywhere.
pub fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let named: Vec<(String, tch::Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.contiguous()))
        .collect();
    tch::Tensor::write_safetensors(&named, path)
        .map_err(Error::torch(format!("failed to write {}", path.display())))
}

/// Reads `model.json` from `dir` as `I` (`what` names the description in errors).
pub fn read_info<I: DeserializeOwned>(dir: &Path, what: &'static str) -> Result<I> {
    let path = dir.join(MODEL_JSON);
    let text = std::fs::read(&path).map_err(|e| Error::io("failed to read", &path, e))?;
    serde_json::from_slice(&text).map_err(|source| Error::Parse { path, what, source })
}

/// Loads a model directory onto `device`: reads its description, lets
/// `build` create the network on a fresh variable store, then sets the
/// weights.
pub fn load<I: DeserializeOwned, M>(
    dir: &Path,
    what: &'static str,
    device: tch::Device,
    build: impl FnOnce(&nn::VarStore, &I) -> M,
) -> Result<(nn::VarStore, M, I)> {
    let info: I = read_info(dir, what)?;
    let mut vs = nn::VarStore::new(device);
    let net = build(&vs, &info);
    let weights = dir.join(WEIGHTS);
    vs.load(&weights).map_err(Error::torch(format!(
        "failed to load {}",
        weights.display()
    )))?;
    Ok((vs, net, info))
}
