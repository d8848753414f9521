//! Workflow files: parse, validate, resolve references, order stages.
//!
//! Two phases, as a compiler has: the YAML text becomes a positioned tree
//! (the raw spec), then a [`Workflow`] (the compiled plan) in which every
//! stage's `with:` block has been checked by its kind, `${...}` references
//! resolved, and stages put in dependency order. Every problem found is
//! reported, each with its file, line and column.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::registry;
use crate::stage::StageKind;
use crate::yaml::{self, Node, Pos, Value};

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Where, when known.
    pub pos: Option<Pos>,
    /// Dotted key path (`stages.train.with.epochs`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// The workflow file.
    pub file: PathBuf,
    /// The problems, in file order.
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match d.pos {
                Some(p) => write!(f, "{}:{}:{}: ", self.file.display(), p.line, p.col)?,
                None => write!(f, "{}: ", self.file.display())?,
            }
            if !d.path.is_empty() {
                write!(f, "{}: ", d.path)?;
            }
            write!(f, "{}", d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A stage of a compiled workflow.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Its name (also its output directory under the workdir).
    pub name: String,
    /// Its kind.
    pub kind: &'static StageKind,
    /// The `with:` block with every reference resolved.
    pub config: Json,
    /// Stages it depends on.
    pub needs: Vec<String>,
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
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "file": self.file,
            "workdir": self.workdir,
            "seed": self.seed,
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
        &["version", "name", "workdir", "seed", "params", "stages"],
    );

    match root.get("version") {
        Some(Node {
            value: Value::Int(1),
            ..
        }) => {}
        Some(n) => cx.err(
            Some(n.pos),
            "version",
            "expected 1 (the only workflow format version)",
        ),
        None => cx.err(Some(root.pos), "version", "missing; add `version: 1`"),
    }
    let string_field = |cx: &mut Ctx, key: &str| match root.get(key) {
        Some(Node {
            value: Value::Str(s),
            ..
        }) if !s.is_empty() => Some(s.clone()),
        Some(n) => {
            cx.err(
                Some(n.pos),
                key,
                format!("expected a non-empty string, found {}", n.type_name()),
            );
            None
        }
        None => {
            cx.err(Some(root.pos), key, "missing");
            None
        }
    };
    let name = string_field(&mut cx, "name").unwrap_or_default();
    let mut workdir = string_field(&mut cx, "workdir")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut seed = match root.get("seed") {
        None => 0,
        Some(Node {
            value: Value::Int(i),
            ..
        }) if *i >= 0 => *i as u64,
        Some(n) => {
            cx.err(
                Some(n.pos),
                "seed",
                format!("expected a non-negative integer, found {}", n.type_name()),
            );
            0
        }
    };

    // Parameters, then overrides.
    let mut params: Vec<(String, Node)> = Vec::new();
    match root.get("params") {
        None => {}
        Some(Node {
            value: Value::Map(entries),
            ..
        }) => {
            params = entries
                .iter()
                .map(|(k, _, v)| (k.clone(), v.clone()))
                .collect();
        }
        Some(n) => cx.err(
            Some(n.pos),
            "params",
            format!("expected a mapping, found {}", n.type_name()),
        ),
    }
    for o in overrides {
        let Some((key, raw)) = o.split_once('=') else {
            cx.err(None, "--set", format!("`{o}`: expected KEY=VALUE"));
            continue;
        };
        let value = match yaml::parse(raw) {
            Ok(n) => Node {
                pos: Pos::default(),
                ..n
            },
            Err(e) => {
                cx.err(
                    None,
                    format!("--set {key}"),
                    format!("value `{raw}` is not YAML: {}", e.message),
                );
                continue;
            }
        };
        if let Some(p) = key.strip_prefix("params.") {
            match params.iter_mut().find(|(k, _)| k == p) {
                Some(slot) => slot.1 = value,
                None => cx.err(
                    None,
                    format!("--set {key}"),
                    format!(
                        "no parameter `{p}` in the workflow; declared: {}",
                        params
                            .iter()
                            .map(|p| p.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        } else if key == "seed" {
            match value.value {
                Value::Int(i) if i >= 0 => seed = i as u64,
                _ => cx.err(None, "--set seed", "expected a non-negative integer"),
            }
        } else if key == "workdir" {
            workdir = PathBuf::from(raw);
        } else {
            cx.err(
                None,
                format!("--set {key}"),
                "only params.NAME, seed and workdir can be set",
            );
        }
    }

    // Stages: names, kinds and the shape of each entry.
    let stage_nodes: &[(String, Pos, Node)] = match root.get("stages") {
        Some(Node {
            value: Value::Map(entries),
            ..
        }) if !entries.is_empty() => entries,
        Some(n) => {
            cx.err(
                Some(n.pos),
                "stages",
                "expected a non-empty mapping of stage names to stages",
            );
            &[]
        }
        None => {
            cx.err(Some(root.pos), "stages", "missing");
            &[]
        }
    };
    // `foreach` stages become one stage per combination of their values.
    let (expanded, groups) = expand_foreach(stage_nodes, &params, &mut cx);
    let stage_nodes = &expanded[..];
    let kinds: HashMap<&str, &'static StageKind> = stage_nodes
        .iter()
        .filter_map(|(n, _, node)| match node.get("uses") {
            Some(Node {
                value: Value::Str(u),
                ..
            }) => registry::lookup(u).map(|k| (n.as_str(), k)),
            _ => None,
        })
        .collect();
    let mut stage_names: HashSet<&str> = stage_nodes.iter().map(|s| s.0.as_str()).collect();
    stage_names.extend(groups.keys().map(String::as_str));
    // Outputs that stages of kinds like `command` declare in `with.outputs`.
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

    let mut stages = Vec::new();
    for (sname, spos, node) in stage_nodes {
        let path = format!("stages.{sname}");
        if !valid_name(sname) {
            cx.err(
                Some(*spos),
                &path,
                "stage names may use letters, digits, `_` and `-` (they name directories)",
            );
        }
        if !matches!(node.value, Value::Map(_)) {
            cx.err(
                Some(node.pos),
                &path,
                format!(
                    "expected a mapping with `uses` and `with`, found {}",
                    node.type_name()
                ),
            );
            continue;
        }
        cx.known_keys(node, &path, &["uses", "with", "needs", "foreach"]);
        let kind = match node.get("uses") {
            Some(Node {
                value: Value::Str(u),
                pos,
            }) => match registry::lookup(u) {
                Some(k) => Some(k),
                None => {
                    let known: Vec<&str> = registry::REGISTRY.iter().map(|k| k.name).collect();
                    cx.err(
                        Some(*pos),
                        join(&path, "uses"),
                        format!(
                            "unknown stage kind `{u}`; known kinds: {}",
                            known.join(", ")
                        ),
                    );
                    None
                }
            },
            Some(n) => {
                cx.err(
                    Some(n.pos),
                    join(&path, "uses"),
                    format!("expected a stage kind name, found {}", n.type_name()),
                );
                None
            }
            None => {
                cx.err(
                    Some(node.pos),
                    &path,
                    "missing `uses` (the stage kind; `pipeline list` shows them)",
                );
                None
            }
        };
        let mut needs: Vec<String> = Vec::new();
        match node.get("needs") {
            None => {}
            Some(Node {
                value: Value::Seq(items),
                ..
            }) => {
                for it in items {
                    match &it.value {
                        Value::Str(s) if groups.contains_key(s) => {
                            needs.extend(groups[s].iter().cloned())
                        }
                        Value::Str(s) if stage_names.contains(s.as_str()) => needs.push(s.clone()),
                        Value::Str(s) => cx.err(
                            Some(it.pos),
                            join(&path, "needs"),
                            format!("no stage named `{s}`"),
                        ),
                        _ => cx.err(Some(it.pos), join(&path, "needs"), "expected stage names"),
                    }
                }
            }
            Some(n) => cx.err(
                Some(n.pos),
                join(&path, "needs"),
                "expected a list of stage names",
            ),
        }
        let with_path = join(&path, "with");
        let mut with = node.get("with").cloned().unwrap_or(Node {
            value: Value::Map(Vec::new()),
            pos: node.pos,
        });
        let refs = Refs {
            params: &params,
            kinds: &kinds,
            dyn_outputs: &dyn_outputs,
            workdir: &workdir,
            groups: &groups,
        };
        resolve(&mut with, &with_path, &refs, &mut needs, &mut cx);
        let Some(kind) = kind else { continue };
        let config = with.to_json();
        if let Err(e) = (kind.check)(&config) {
            let mut positions = HashMap::new();
            let mut key_positions = HashMap::new();
            with.positions(&with_path, &mut positions, &mut key_positions);
            let full = join(&with_path, &e.path);
            // The path of an unknown field ends in the field: point at its key,
            // else at the deepest node that exists.
            let unknown = e
                .message
                .starts_with("unknown field")
                .then(|| key_positions.get(&full).copied())
                .flatten();
            let mut probe = full.clone();
            let pos = unknown.or_else(|| loop {
                if let Some(p) = positions.get(&probe) {
                    break Some(*p);
                }
                match probe.rsplit_once('.') {
                    Some((parent, _)) => probe = parent.to_string(),
                    None => break None,
                }
            });
            let message = if e.message.starts_with("missing field") {
                format!("{} (see `pipeline list` for an example)", e.message)
            } else {
                e.message
            };
            cx.err(pos, full, message);
        }
        needs.sort();
        needs.dedup();
        stages.push(Stage {
            name: sname.clone(),
            kind,
            config,
            needs,
            pos: *spos,
        });
    }

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
        name,
        workdir,
        seed,
        params: params
            .into_iter()
            .map(|(k, v)| {
                let j = v.to_json();
                (k, j)
            })
            .collect(),
        stages,
    })
}

mod foreach;
mod order;
mod refs;
#[cfg(test)]
mod tests;

use foreach::expand_foreach;
use order::order;
use refs::{resolve, whole_reference, Refs};
