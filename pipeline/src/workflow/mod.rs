//! Workflow files: parse, validate, resolve references, order stages.
//!
//! Two phases, as a compiler has: the YAML text becomes a positioned tree
//! (the raw spec), then a [`Workflow`] (the compiled plan) in which every
//! stage's `with:` block has been checked by its kind, `${...}` references
//! resolved, and stages put in dependency order. Every problem found is
//! reported, each with its file, line and column.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

pub use self::diagnostics::{Diagnostic, Diagnostics};
use self::resources::Resources;
use self::yaml::{Node, Pos, Value};
use crate::stages;
use crate::stages::kind::StageKind;
pub use sciflow_train::Reproducible;

/// A stage of a compiled workflow.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Its name (also its output directory under the workdir).
    pub name: String,
    /// Its kind.
    pub kind: &'static StageKind,
    /// The `with:` block with every reference resolved.
    pub config: Json,
    /// The configuration it runs with: `config` through its kind's typed
    /// config, every default filled in (what the fingerprint covers).
    pub resolved: Json,
    /// Stages it depends on.
    pub needs: Vec<String>,
    /// What it asks for (its `resources:` block; the kind's defaults fill the rest).
    pub resources: Resources,
    /// Where it is declared.
    pub pos: Pos,
}

/// A validated workflow, stages in dependency order.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The file it came from.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// The directory all outputs go under.
    pub workdir: PathBuf,
    /// The seed every stage receives.
    pub seed: u64,
    /// How far its results are reproducible: which CPU kernels libtorch runs.
    pub reproducible: Reproducible,
    /// Parameters after `--set` overrides.
    pub params: Vec<(String, Json)>,
    /// Stages, each after all it depends on.
    pub stages: Vec<Stage>,
}

impl Workflow {
    /// The output directory of stage `name`.
    pub fn stage_dir(&self, name: &str) -> PathBuf {
        self.workdir.join(name)
    }

    /// Whether a stage may run libtorch on a GPU in this process: one whose
    /// `device` (the training, evaluation and inference kinds have one,
    /// `auto` unless set) is not `cpu`. Commands and sub-workflows run in
    /// processes of their own, which load what they need.
    pub fn may_use_gpu(&self) -> bool {
        self.stages.iter().any(|s| {
            s.resolved
                .get("device")
                .is_some_and(|d| d.as_str() != Some("cpu"))
        })
    }

    /// Pins libtorch's CPU kernels to the workflow's mode
    /// ([`sciflow_train::kernels::pin`]), loading libtorch's CUDA half first
    /// only where a stage may use a GPU.
    pub fn pin_kernels(&self) -> Result<sciflow_train::Kernels, sciflow_train::Error> {
        if self.may_use_gpu() {
            sciflow_train::kernels::pin(self.reproducible)
        } else {
            sciflow_train::kernels::pin_cpu_only(self.reproducible)
        }
    }

    /// The workflow as it runs: params after overrides, every reference in
    /// the stages' `with:` blocks resolved, stages in run order.
    pub fn resolved(&self) -> Json {
        let stages: serde_json::Map<String, Json> = self
            .stages
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    serde_json::json!({
                        "uses": s.kind.name,
                        "version": s.kind.props.version,
                        "after": s.needs,
                        "with": s.config,
                        "resources": s.resources,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "file": self.file,
            "workdir": self.workdir,
            "seed": self.seed,
            "reproducible": self.reproducible,
            "params": self.params.iter().cloned().collect::<serde_json::Map<_, _>>(),
            "stages": stages,
        })
    }
}

/// Reads and compiles a workflow file. `overrides` are `key=value` strings
/// (`params.image_size=128`, `seed=7`, `workdir=/scratch/run`).
pub fn load(file: &Path, overrides: &[String]) -> Result<Workflow, crate::Error> {
    let text =
        std::fs::read_to_string(file).map_err(crate::Error::io("failed to read workflow", file))?;
    compile(&text, file, overrides).map_err(crate::Error::Config)
}

struct Ctx {
    items: Vec<Diagnostic>,
}

impl Ctx {
    fn err(&mut self, pos: Option<Pos>, path: impl Into<String>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            pos,
            path: path.into(),
            message: message.into(),
        });
    }

    /// Reports keys of `node` that are not in `allowed`.
    fn known_keys(&mut self, node: &Node, path: &str, allowed: &[&str]) {
        if let Value::Map(entries) = &node.value {
            for (k, kpos, _) in entries {
                if !allowed.contains(&k.as_str()) {
                    self.err(
                        Some(*kpos),
                        join(path, k),
                        format!("unknown key; expected one of: {}", allowed.join(", ")),
                    );
                }
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Compiles workflow text (no I/O). `file` is used in messages.
pub fn compile(text: &str, file: &Path, overrides: &[String]) -> Result<Workflow, Diagnostics> {
    let fail = |items| Diagnostics {
        file: file.to_path_buf(),
        items,
    };
    let root = yaml::parse(text).map_err(|e| {
        fail(vec![Diagnostic {
            pos: Some(e.pos),
            path: String::new(),
            message: format!("YAML syntax: {}", e.message),
        }])
    })?;
    let mut cx = Ctx { items: Vec::new() };
    if !matches!(root.value, Value::Map(_)) {
        cx.err(
            Some(root.pos),
            "",
            format!(
                "expected a mapping with version, name, workdir and stages; found {}",
                root.type_name()
            ),
        );
        return Err(fail(cx.items));
    }
    cx.known_keys(
        &root,
        "",
        &[
            "version",
            "name",
            "workdir",
            "seed",
            "reproducible",
            "params",
            "stages",
        ],
    );
    let mut top = header::read(&root, &mut cx);
    header::apply_overrides(&mut top, overrides, &mut cx);
    let stage_nodes = header::stage_entries(&root, &mut cx);
    // `foreach` stages become one stage per combination of their values.
    let (expanded, groups) = expand_foreach(stage_nodes, &top.params, &mut cx);
    let stage_nodes = &expanded[..];
    let kinds: HashMap<&str, &'static StageKind> = stage_nodes
        .iter()
        .filter_map(|(n, _, node)| match node.get("uses") {
            Some(Node {
                value: Value::Str(u),
                ..
            }) => stages::lookup(u).map(|k| (n.as_str(), k)),
            _ => None,
        })
        .collect();
    let mut stage_names: HashSet<&str> = stage_nodes.iter().map(|s| s.0.as_str()).collect();
    stage_names.extend(groups.keys().map(String::as_str));
    let dyn_outputs = dynamic_outputs(stage_nodes, &kinds);
    let file_dir = std::path::absolute(file)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    // Parameters may hold paths beside the file too (`${workflow.dir}/...`).
    for (_, v) in top.params.iter_mut() {
        if let Value::Str(s) = &mut v.value {
            if s.contains("${workflow.dir}") {
                *s = s.replace("${workflow.dir}", &file_dir.to_string_lossy());
            }
        }
    }
    let refs = Refs {
        dir: &file_dir,
        params: &top.params,
        kinds: &kinds,
        dyn_outputs: &dyn_outputs,
        workdir: &top.workdir,
        groups: &groups,
    };
    let mut stages: Vec<Stage> = stage_nodes
        .iter()
        .filter_map(|(name, pos, node)| {
            entry::compile_stage(name, *pos, node, &refs, &stage_names, &mut cx)
        })
        .collect();

    if cx.items.is_empty() {
        match order(std::mem::take(&mut stages)) {
            Ok(ordered) => stages = ordered,
            Err((cycle, pos)) => {
                cx.err(
                    Some(pos),
                    format!("stages.{}", cycle[0]),
                    format!("dependency cycle: {}", cycle.join(" -> ")),
                );
            }
        }
    }
    if !cx.items.is_empty() {
        cx.items.sort_by_key(|d| d.pos.unwrap_or_default());
        return Err(fail(cx.items));
    }
    Ok(Workflow {
        file: file.to_path_buf(),
        name: top.name,
        workdir: top.workdir,
        seed: top.seed,
        reproducible: top.reproducible,
        params: top
            .params
            .into_iter()
            .map(|(k, v)| {
                let j = v.to_json();
                (k, j)
            })
            .collect(),
        stages,
    })
}

/// Outputs that stages of kinds like `command` declare in `with.outputs`,
/// by stage: (name, relative path).
fn dynamic_outputs(
    stage_nodes: &[(String, Pos, Node)],
    kinds: &HashMap<&str, &'static StageKind>,
) -> HashMap<String, Vec<(String, String)>> {
    let mut dyn_outputs: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (n, _, node) in stage_nodes {
        if !kinds
            .get(n.as_str())
            .is_some_and(|k| k.props.dynamic_outputs)
        {
            continue;
        }
        if let Some(Node {
            value: Value::Map(entries),
            ..
        }) = node.get("with").and_then(|w| w.get("outputs"))
        {
            let outs = entries
                .iter()
                .filter_map(|(k, _, v)| match &v.value {
                    Value::Str(p) => Some((k.clone(), p.clone())),
                    _ => None,
                })
                .collect();
            dyn_outputs.insert(n.clone(), outs);
        }
    }

    dyn_outputs
}

pub mod dag;
pub mod diagnostics;
mod entry;
mod foreach;
mod header;
mod order;
mod refs;
pub mod resources;
#[cfg(test)]
mod tests;
pub mod yaml;

use foreach::expand_foreach;
use order::order;
use refs::{resolve, whole_reference, Refs};
