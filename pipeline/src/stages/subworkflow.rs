//! The `workflow` stage: another workflow run as one stage, by this very
//! executable (not a `pipeline` found by path), on `ranks` MPI ranks, in
//! the stage's own folder (`{out}/wd` is its workdir). Its inputs are the
//! workflow file and every external input of the stages it would run, so
//! it reruns exactly when a `command` stage with those inputs would. It
//! makes sweeps (`foreach` over rank counts) relocatable: they run from any
//! directory and with an installed binary.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stages::command::{check_outputs, execute};
use crate::stages::kind::{config, resolved, typed, ConfigError, InputScope, StageContext};
use crate::Error;

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}

/// Configuration of a `workflow` stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubworkflowConfig {
    /// The workflow file to run.
    file: PathBuf,
    /// Overrides, as `--set` takes them (`params.epochs: 2`, `seed: 3`);
    /// its workdir is always the stage's `wd` folder.
    #[serde(default)]
    set: BTreeMap<String, Value>,
    /// Run it only up to this stage (and what that stage needs).
    #[serde(default)]
    until: Option<String>,
    /// MPI ranks: above 1, it runs under `launcher`.
    #[serde(default = "one")]
    ranks: NonZeroUsize,
    /// What starts the ranks (default: `srun --mpi=pmix` inside a Slurm
    /// allocation, `mpirun --bind-to none` elsewhere); `-n RANKS` is added.
    #[serde(default)]
    launcher: Option<String>,
    /// Output name -> path relative to the stage directory (`wd/STAGE` is
    /// the folder of its stage STAGE); each must exist afterwards.
    #[serde(default)]
    outputs: BTreeMap<String, PathBuf>,
    /// Extra environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// The overrides as `KEY=VALUE` (strings as they are, other values as
/// JSON: `params.ranks=[1, 2]`).
fn overrides(set: &BTreeMap<String, Value>) -> Vec<String> {
    set.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect()
}

/// `--set KEY=VALUE` words of the overrides.
fn set_words(set: &BTreeMap<String, Value>) -> Vec<String> {
    overrides(set)
        .into_iter()
        .flat_map(|o| ["--set".to_string(), o])
        .collect()
}

pub(crate) fn resolve_subworkflow(v: &Value) -> Result<Value, ConfigError> {
    let cfg: SubworkflowConfig = typed(v)?;
    if cfg.set.contains_key("workdir") {
        return Err(ConfigError {
            path: "set.workdir".into(),
            message: "the workflow's workdir is the stage's own `wd` folder".into(),
        });
    }
    if let Some(l) = &cfg.launcher {
        if l.split_whitespace().next().is_none() {
            return Err(ConfigError {
                path: "launcher".into(),
                message: "expected a command, e.g. `mpirun --bind-to none`".into(),
            });
        }
    }
    check_outputs(&cfg.outputs)?;
    Ok(resolved(&cfg))
}

/// The workflow file and the external inputs of every stage it would run.
pub(crate) fn subworkflow_inputs(config: &Value, scope: &InputScope<'_>) -> Vec<PathBuf> {
    let Ok(cfg) = serde_json::from_value::<SubworkflowConfig>(config.clone()) else {
        return Vec::new();
    };
    let mut paths = vec![cfg.file.clone()];
    let mut sets = overrides(&cfg.set);
    // Any workdir inside ours: what it writes there is no input.
    sets.push(format!(
        "workdir={}",
        scope.workdir.join(".inputs").display()
    ));
    paths.extend(
        (scope.workflow_inputs)(&cfg.file, &sets)
            .into_iter()
            .filter(|p| !p.starts_with(scope.workdir)),
    );
    paths.sort();
    paths.dedup();
    paths
}

pub(crate) fn run_subworkflow(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: SubworkflowConfig = config(ctx)?;
    let exe = crate::launcher::program().map_err(|e| Error::Stage {
        stage: ctx.name.to_string(),
        message: format!("cannot find the running pipeline executable: {e}"),
    })?;
    let mut args: Vec<String> = Vec::new();
    if cfg.ranks.get() > 1 {
        let launcher = cfg.launcher.clone().unwrap_or_else(|| {
            if std::env::var_os("SLURM_JOB_ID").is_some() {
                "srun --mpi=pmix".into()
            } else {
                "mpirun --bind-to none".into()
            }
        });
        args.extend(launcher.split_whitespace().map(str::to_string));
        args.extend(["-n".into(), cfg.ranks.to_string()]);
    }
    args.push(exe.to_string_lossy().into_owned());
    args.extend(["-q".into(), "run".into()]);
    args.push(cfg.file.to_string_lossy().into_owned());
    args.extend([
        "--set".into(),
        format!("workdir={}", ctx.out.join("wd").display()),
    ]);
    args.extend(set_words(&cfg.set));
    if sciflow_train::kernels::mode() == sciflow_train::Reproducible::Portable {
        // Its process inherits the pinned kernels' environment; its records
        // and models say so.
        args.extend(["--reproducible".into(), "portable".into()]);
    }
    if let Some(u) = &cfg.until {
        args.extend(["--until".into(), u.clone()]);
    }
    let mut cmd = std::process::Command::new(&args[0]);
    cmd.args(&args[1..])
        // Its ranks share what this stage was given.
        .env(
            "PIPELINE_THREADS",
            (ctx.threads / cfg.ranks.get()).max(1).to_string(),
        )
        .envs(&cfg.env);
    execute(ctx, cmd, &args, &cfg.outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_become_set_words_and_the_workdir_is_the_stages() {
        let set: BTreeMap<String, Value> = serde_json::from_value(
            serde_json::json!({"params.epochs": 2, "params.ranks": [1, 2], "params.dir": "a b"}),
        )
        .unwrap();
        assert_eq!(
            set_words(&set),
            [
                "--set",
                "params.dir=a b",
                "--set",
                "params.epochs=2",
                "--set",
                "params.ranks=[1,2]"
            ]
        );
        let bad = serde_json::json!({"file": "w.yaml", "set": {"workdir": "/x"}});
        assert_eq!(resolve_subworkflow(&bad).unwrap_err().path, "set.workdir");
        let bad = serde_json::json!({"file": "w.yaml", "outputs": {"t": "../t"}});
        assert_eq!(resolve_subworkflow(&bad).unwrap_err().path, "outputs.t");
    }
}
