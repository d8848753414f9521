//! What a stage kind is and what a running stage is given: the
//! [`StageKind`] entry of the registry, the [`StageContext`] of a run, the
//! [`MetricsSink`] numbers go to, and the helpers every adapter shares
//! (typed configs, the default input rule).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use sciflow_train::Comm;

use crate::records::Metric;
use crate::stages::progress::Progress;
use crate::Error;

/// Numbers a stage reports while it runs (stage step, name, value); rank 0
/// stores them in the run records.
#[derive(Debug, Default)]
pub struct MetricsSink(Mutex<Vec<Metric>>);

impl MetricsSink {
    /// Records one value.
    pub fn record(&self, step: i64, name: &str, value: f64) {
        if value.is_finite() {
            self.0.lock().expect("metrics lock").push(Metric {
                step,
                name: name.to_string(),
                value,
            });
        }
    }

    /// Everything recorded so far.
    pub fn take(&self) -> Vec<Metric> {
        std::mem::take(&mut *self.0.lock().expect("metrics lock"))
    }
}

/// One output of a stage: a path inside the stage's output directory.
#[derive(Debug)]
pub struct Output {
    /// The name used in references (`${stage.NAME}`).
    pub name: &'static str,
    /// Path relative to the stage directory; empty for the directory itself.
    pub path: &'static str,
    /// What it is.
    pub doc: &'static str,
}

/// A config error inside a `with:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted path inside `with` (empty for the block itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What a running stage is given.
pub struct StageContext<'a> {
    /// The stage's name in the workflow.
    pub name: &'a str,
    /// The resolved `with:` block.
    pub config: &'a Value,
    /// Where to write outputs (a temporary directory, renamed on success).
    pub out: &'a Path,
    /// The workflow's seed.
    pub seed: u64,
    /// The job's ranks.
    pub comm: &'a dyn Comm,
    /// Threads this rank may use.
    pub threads: usize,
    /// Progress display.
    pub progress: &'a Progress,
    /// Where to report numbers.
    pub metrics: &'a MetricsSink,
    /// This stage's checkpoint directory (training stages save there).
    pub checkpoint_dir: &'a Path,
    /// Continue from the checkpoint in `checkpoint_dir` (`--resume`, same fingerprint).
    pub resume: bool,
}

impl StageContext<'_> {
    /// Checkpointing for a training stage that saves every `every_steps` steps.
    pub(crate) fn checkpointing(
        &self,
        every_steps: usize,
    ) -> sciflow_train::checkpoint::Checkpointing {
        sciflow_train::checkpoint::Checkpointing {
            dir: self.checkpoint_dir.to_path_buf(),
            every_steps,
            resume: self.resume,
        }
    }
}

/// A kind of stage.
pub struct StageKind {
    /// The name used in `uses:`.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// An example `with:` block (YAML), validated by a test.
    pub example: &'static str,
    /// Its outputs.
    pub outputs: &'static [Output],
    /// How it runs (most kinds take [`Props::ROOT`] or [`Props::COLLECTIVE`]).
    pub props: Props,
    /// Checks a `with:` block (types, unknown keys) without I/O and returns
    /// the configuration the stage runs with: serialised from its typed
    /// config, every default filled in. The fingerprint covers it, so a
    /// changed default reruns the stages it changes.
    pub resolve: fn(&Value) -> Result<Value, ConfigError>,
    /// Runs the stage.
    pub run: fn(&StageContext<'_>) -> Result<(), Error>,
}

/// How many cores a stage of a kind takes per rank when its entry does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Every core the run has (its share per rank): compute-bound kinds.
    All,
    /// One: kinds that mostly wait (external commands) or draw figures.
    One,
}

/// How a stage kind runs, apart from what it does.
#[derive(Debug, Clone, Copy)]
pub struct Props {
    /// Bumped when the kind's outputs change for the same config.
    pub version: u32,
    /// Every rank runs it (true) or rank 0 alone (false).
    pub collective: bool,
    /// It saves checkpoints and can resume from them (`--resume`); the
    /// executor gives it a checkpoint directory.
    pub checkpoints: bool,
    /// Outputs declared in the stage's own `with.outputs` (name -> relative path) too.
    pub dynamic_outputs: bool,
    /// Cores per rank when the stage's `resources:` do not say.
    pub threads: Threads,
    /// The external files and directories whose content the stage depends on,
    /// given its resolved config (upstream outputs excluded).
    pub inputs: fn(&Value, &InputScope<'_>) -> Vec<PathBuf>,
    /// Its outputs may depend on libtorch's CPU kernels, so the workflow's
    /// reproducibility mode is part of its fingerprint. False only for kinds
    /// that provably run none (the ingest crate does not link libtorch).
    pub libtorch: bool,
}

impl Props {
    /// Version 1, rank 0 alone, no checkpoints, the outputs it declares,
    /// every core, the paths its config names outside the workdir as inputs,
    /// and possibly libtorch.
    pub const ROOT: Props = Props {
        version: 1,
        collective: false,
        checkpoints: false,
        dynamic_outputs: false,
        threads: Threads::All,
        inputs: external_paths,
        libtorch: true,
    };
    /// As [`Props::ROOT`], run by every rank.
    pub const COLLECTIVE: Props = Props {
        collective: true,
        ..Props::ROOT
    };
}

impl std::fmt::Debug for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageKind")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StageKind {
    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

pub(crate) fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        ConfigError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

/// The `resolve` of a kind whose typed config `T` says all there is to check.
pub(crate) fn resolve<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, ConfigError> {
    typed::<T>(v).map(|c| resolved(&c))
}

/// A typed config as JSON, defaults and all.
pub(crate) fn resolved<T: Serialize>(config: &T) -> Value {
    serde_json::to_value(config).expect("stage configs serialise to JSON")
}

/// Deserialises a config that `check` accepted at plan time.
pub(crate) fn config<T: DeserializeOwned>(ctx: &StageContext<'_>) -> Result<T, Error> {
    typed(ctx.config).map_err(|e| Error::Stage {
        stage: ctx.name.to_string(),
        message: format!("with.{}: {}", e.path, e.message),
    })
}

/// What a kind's input rule is given.
pub struct InputScope<'a> {
    /// The workdir: what lies inside it is made by stages, not an input.
    pub workdir: &'a Path,
    /// The external inputs of every stage of another workflow file under
    /// the given overrides (for the `workflow` kind). The engine provides it:
    /// stage kinds never load workflows themselves.
    pub workflow_inputs: &'a dyn Fn(&Path, &[String]) -> Vec<PathBuf>,
}

/// Paths named in a config that exist outside the workdir (the default input rule).
pub fn external_paths(config: &serde_json::Value, scope: &InputScope<'_>) -> Vec<PathBuf> {
    let workdir = scope.workdir;
    let mut out = Vec::new();
    let mut stack = vec![config];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                let p = PathBuf::from(s);
                if !s.is_empty() && !p.starts_with(workdir) && p.exists() {
                    out.push(p);
                }
            }
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            serde_json::Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}
