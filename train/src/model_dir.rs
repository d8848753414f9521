//! A model directory: `weights.safetensors` (the network's variables),
//! `model.json` (what network, trained on what, for what outputs), written
//! and read the same way for every task, and `model.pt`, the network as a
//! TorchScript module for use without this tool (`torch.jit.load`).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::nn;

use crate::{Error, Result};

/// The weights' file name.
pub const WEIGHTS: &str = "weights.safetensors";
/// The description's file name.
pub const MODEL_JSON: &str = "model.json";

/// The TorchScript module's file name.
pub const TORCHSCRIPT: &str = "model.pt";

/// The key of `model.json` that records the CPU kernels the model was
/// trained with ([`crate::kernels::Kernels`]); no task's description has it.
pub const KERNELS_KEY: &str = "kernels";

/// Writes `weights.safetensors` and `model.json` into `dir` (created if
/// needed); `model.json` is `info` with the CPU kernels of this process added.
pub fn save(dir: &Path, vs: &nn::VarStore, info: &impl Serialize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("failed to create", dir, e))?;
    save_weights(vs, &dir.join(WEIGHTS))?;
    let mut value = serde_json::to_value(info).expect("model info serialises");
    if let Some(map) = value.as_object_mut() {
        let kernels = serde_json::to_value(crate::kernels::current()).expect("kernels serialise");
        map.insert(KERNELS_KEY.into(), kernels);
    }
    let json = serde_json::to_vec_pretty(&value).expect("model info serialises");
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

/// Writes `model.pt` into `dir`: `forward` traced by libtorch's tracer on
/// `example`, a batch of inputs. The weights become the module's constants,
/// so it needs nothing else; it is written under a temporary name and
/// renamed into place.
pub fn save_torchscript(
    dir: &Path,
    example: &tch::Tensor,
    forward: &dyn Fn(&tch::Tensor) -> tch::Tensor,
) -> Result<()> {
    let path = dir.join(TORCHSCRIPT);
    let module = tch::no_grad(|| {
        tch::CModule::create_by_tracing(
            "SciflowModel",
            "forward",
            std::slice::from_ref(example),
            &mut |xs| vec![forward(&xs[0])],
        )
    })
    .map_err(Error::torch(format!("failed to trace {}", path.display())))?;
    let tmp = dir.join(format!("{TORCHSCRIPT}.tmp"));
    module
        .save(&tmp)
        .map_err(Error::torch(format!("failed to write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("failed to rename into", &path, e))
}

/// Reads `model.json` from `dir` as `I` (`what` names the description in errors).
pub fn read_info<I: DeserializeOwned>(dir: &Path, what: &'static str) -> Result<I> {
    let (path, mut value) = read_json(dir, what)?;
    // How it was computed, not what it is: no task's description has it.
    if let Some(map) = value.as_object_mut() {
        map.remove(KERNELS_KEY);
    }
    serde_json::from_value(value).map_err(|source| Error::Parse { path, what, source })
}

/// The CPU kernels recorded in `dir`'s `model.json`; `None` for models
/// written before they were recorded.
pub fn read_kernels(dir: &Path) -> Result<Option<crate::kernels::Kernels>> {
    let what = "model description";
    let (path, mut value) = read_json(dir, what)?;
    match value.get_mut(KERNELS_KEY).map(serde_json::Value::take) {
        None => Ok(None),
        Some(k) => serde_json::from_value(k)
            .map(Some)
            .map_err(|source| Error::Parse { path, what, source }),
    }
}

/// `dir`'s `model.json` as JSON, and its path.
fn read_json(dir: &Path, what: &'static str) -> Result<(std::path::PathBuf, serde_json::Value)> {
    let path = dir.join(MODEL_JSON);
    let text = std::fs::read(&path).map_err(|e| Error::io("failed to read", &path, e))?;
    match serde_json::from_slice(&text) {
        Ok(v) => Ok((path, v)),
        Err(source) => Err(Error::Parse { path, what, source }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Info {
        width: usize,
    }

    #[test]
    fn model_json_records_the_kernels_and_reads_back_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = vs.root().zeros("w", &[2]);
        save(dir.path(), &vs, &Info { width: 3 }).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(MODEL_JSON)).unwrap()).unwrap();
        assert_eq!(json["width"], 3);
        assert_eq!(json["kernels"]["reproducible"], "native");
        assert_eq!(json["kernels"]["aten"], crate::shim::cpu_capability());
        // A description with `deny_unknown_fields` still reads.
        assert_eq!(
            read_info::<Info>(dir.path(), "test").unwrap(),
            Info { width: 3 }
        );
        let k = read_kernels(dir.path()).unwrap().unwrap();
        assert_eq!(k, crate::kernels::current());
        // Models written before the kernels were recorded have none.
        std::fs::write(dir.path().join(MODEL_JSON), br#"{"width": 3}"#).unwrap();
        assert_eq!(read_kernels(dir.path()).unwrap(), None);
        assert_eq!(
            read_info::<Info>(dir.path(), "test").unwrap(),
            Info { width: 3 }
        );
    }
}
