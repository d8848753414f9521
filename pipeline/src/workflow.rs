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
                        "version": s.kind.version,
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
        if !kinds.get(n.as_str()).is_some_and(|k| k.dynamic_outputs) {
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

/// Replaces `${params.x}` and `${stage.output}` in every string of `node`;
/// stage references are added to `needs`.
/// What references can point at.
struct Refs<'a> {
    params: &'a [(String, Node)],
    kinds: &'a HashMap<&'a str, &'static StageKind>,
    dyn_outputs: &'a HashMap<String, Vec<(String, String)>>,
    workdir: &'a Path,
    /// `foreach` stage -> the stages it expanded to.
    groups: &'a HashMap<String, Vec<String>>,
}

/// The stage and output of a string that is exactly `${STAGE.OUTPUT}`.
fn whole_reference(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    if inner.contains("${") || inner.contains('}') {
        return None;
    }
    inner.trim().split_once('.')
}

/// Expands every stage with `foreach: { VAR: [values], ... }` into one stage
/// per combination (the product, in declaration order), named
/// `STAGE-VALUE[-VALUE...]`, with `${each.VAR}` replaced in its `with:`.
/// Returns the stages and each expanded stage's instances.
#[allow(clippy::type_complexity)]
fn expand_foreach(
    nodes: &[(String, Pos, Node)],
    params: &[(String, Node)],
    cx: &mut Ctx,
) -> (Vec<(String, Pos, Node)>, HashMap<String, Vec<String>>) {
    let mut out = Vec::new();
    let mut groups = HashMap::new();
    for (name, pos, node) in nodes {
        let Some(spec) = node.get("foreach") else {
            out.push((name.clone(), *pos, node.clone()));
            continue;
        };
        let path = format!("stages.{name}.foreach");
        let Value::Map(vars) = &spec.value else {
            cx.err(
                Some(spec.pos),
                &path,
                format!(
                    "expected a mapping of names to lists of values, found {}",
                    spec.type_name()
                ),
            );
            continue;
        };
        // Each variable's values: a list, or a parameter holding one.
        let mut axes: Vec<(String, Vec<Node>)> = Vec::new();
        for (var, vpos, v) in vars {
            let list = match &v.value {
                Value::Seq(items) => Some(items.clone()),
                Value::Str(s) => match whole_reference(s) {
                    Some(("params", p)) => match params.iter().find(|(k, _)| k == p) {
                        Some((
                            _,
                            Node {
                                value: Value::Seq(items),
                                ..
                            },
                        )) => Some(items.clone()),
                        Some((_, other)) => {
                            cx.err(
                                Some(v.pos),
                                join(&path, var),
                                format!("parameter `{p}` is {}, not a list", other.type_name()),
                            );
                            None
                        }
                        None => {
                            cx.err(
                                Some(v.pos),
                                join(&path, var),
                                format!("unknown parameter `{p}`"),
                            );
                            None
                        }
                    },
                    _ => {
                        cx.err(
                            Some(v.pos),
                            join(&path, var),
                            "expected a list or ${params.NAME} holding one",
                        );
                        None
                    }
                },
                _ => {
                    cx.err(
                        Some(v.pos),
                        join(&path, var),
                        format!("expected a list, found {}", v.type_name()),
                    );
                    None
                }
            };
            let Some(list) = list else { continue };
            if list.is_empty() {
                cx.err(
                    Some(*vpos),
                    join(&path, var),
                    "the list is empty: no stage to run",
                );
                continue;
            }
            if let Some(bad) = list
                .iter()
                .find(|n| matches!(n.value, Value::Seq(_) | Value::Map(_) | Value::Null))
            {
                cx.err(
                    Some(bad.pos),
                    join(&path, var),
                    format!(
                        "values must be scalars (they name stages), found {}",
                        bad.type_name()
                    ),
                );
                continue;
            }
            axes.push((var.clone(), list));
        }
        if axes.len() != vars.len() {
            continue;
        }
        // The product of the axes, the last varying fastest.
        let mut combos: Vec<Vec<&Node>> = vec![Vec::new()];
        for (_, values) in &axes {
            combos = combos
                .iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push(v);
                        c
                    })
                })
                .collect();
        }
        let mut instances = Vec::new();
        for combo in combos {
            let suffix: Vec<String> = combo
                .iter()
                .map(|v| {
                    scalar_text(v)
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect()
                })
                .collect();
            let iname = format!("{name}-{}", suffix.join("-"));
            let mut inode = node.clone();
            if let Value::Map(entries) = &mut inode.value {
                entries.retain(|(k, _, _)| k != "foreach");
                for (k, _, v) in entries.iter_mut() {
                    if k == "with" {
                        let each: Vec<(&str, &Node)> = axes
                            .iter()
                            .map(|(var, _)| var.as_str())
                            .zip(combo.iter().copied())
                            .collect();
                        substitute_each(v, &each, &format!("stages.{name}.with"), cx);
                    }
                }
            }
            if nodes.iter().any(|(n, _, _)| *n == iname) || instances.contains(&iname) {
                cx.err(
                    Some(*pos),
                    format!("stages.{name}"),
                    format!("`foreach` makes a stage named `{iname}`, which already exists"),
                );
            }
            out.push((iname.clone(), *pos, inode));
            instances.push(iname);
        }
        groups.insert(name.clone(), instances);
    }
    (out, groups)
}

/// A scalar as text (for stage names and string interpolation).
fn scalar_text(n: &Node) -> String {
    match &n.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Replaces `${each.VAR}` in every string under `node`: a string that is
/// only the reference takes the value itself (keeping its type).
fn substitute_each(node: &mut Node, each: &[(&str, &Node)], path: &str, cx: &mut Ctx) {
    match &mut node.value {
        Value::Seq(items) => {
            for it in items {
                substitute_each(it, each, path, cx);
            }
        }
        Value::Map(entries) => {
            for (_, _, v) in entries.iter_mut() {
                substitute_each(v, each, path, cx);
            }
        }
        Value::Str(s) if s.contains("${each.") => {
            if let Some(("each", var)) = whole_reference(s) {
                match each.iter().find(|(k, _)| *k == var) {
                    Some((_, v)) => {
                        node.value = v.value.clone();
                    }
                    None => cx.err(
                        Some(node.pos),
                        path,
                        format!("no `foreach` variable `{var}`"),
                    ),
                }
                return;
            }
            let mut text = s.clone();
            for (var, v) in each {
                text = text.replace(&format!("${{each.{var}}}"), &scalar_text(v));
            }
            if let Some(start) = text.find("${each.") {
                let end = text[start..]
                    .find('}')
                    .map_or(text.len(), |e| start + e + 1);
                cx.err(
                    Some(node.pos),
                    path,
                    format!("`{}`: no such `foreach` variable", &text[start..end]),
                );
            }
            *s = text;
        }
        _ => {}
    }
}

/// Replaces `${params.x}` and `${stage.output}` in every string of `node`;
/// stage references are added to `needs`.
fn resolve(node: &mut Node, path: &str, refs: &Refs<'_>, needs: &mut Vec<String>, cx: &mut Ctx) {
    let (params, kinds, workdir) = (refs.params, refs.kinds, refs.workdir);
    match &mut node.value {
        Value::Seq(items) => {
            // A `foreach` stage's output in a list stands for all of its
            // stages' outputs, in order.
            let mut spliced = Vec::with_capacity(items.len());
            for it in items.drain(..) {
                let group = match &it.value {
                    Value::Str(s) => whole_reference(s).and_then(|(head, tail)| {
                        refs.groups.get(head).map(|g| (g, tail.to_string()))
                    }),
                    _ => None,
                };
                match group {
                    Some((instances, tail)) => spliced.extend(instances.iter().map(|inst| Node {
                        value: Value::Str(format!("${{{inst}.{tail}}}")),
                        pos: it.pos,
                    })),
                    None => spliced.push(it),
                }
            }
            *items = spliced;
            for (i, it) in items.iter_mut().enumerate() {
                resolve(it, &join(path, &i.to_string()), refs, needs, cx);
            }
        }
        Value::Map(entries) => {
            for (k, _, v) in entries.iter_mut() {
                let p = join(path, k);
                resolve(v, &p, refs, needs, cx);
            }
        }
        Value::Str(s) if s.contains("${") => {
            let s = s.clone();
            let mut out = String::new();
            let mut rest = s.as_str();
            let mut whole: Option<Node> = None;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let Some(len) = rest[start..].find('}') else {
                    cx.err(Some(node.pos), path, "unterminated `${`");
                    return;
                };
                let reference = rest[start + 2..start + len].trim();
                let is_whole = start == 0 && start + len + 1 == rest.len() && out.is_empty();
                rest = &rest[start + len + 1..];
                let Some((head, tail)) = reference.split_once('.') else {
                    cx.err(
                        Some(node.pos),
                        path,
                        format!(
                            "`${{{reference}}}`: expected ${{params.NAME}} or ${{STAGE.OUTPUT}}"
                        ),
                    );
                    continue;
                };
                if head == "params" {
                    match params.iter().find(|(k, _)| k == tail) {
                        Some((_, v)) if is_whole => {
                            whole = Some(Node {
                                pos: node.pos,
                                ..v.clone()
                            })
                        }
                        Some((_, v)) => match &v.value {
                            Value::Str(x) => out.push_str(x),
                            Value::Int(i) => out.push_str(&i.to_string()),
                            Value::Float(f) => out.push_str(&f.to_string()),
                            Value::Bool(b) => out.push_str(&b.to_string()),
                            _ => cx.err(
                                Some(node.pos),
                                path,
                                format!(
                                    "parameter `{tail}` is {} and cannot be put inside a string",
                                    v.type_name()
                                ),
                            ),
                        },
                        None => cx.err(
                            Some(node.pos),
                            path,
                            format!(
                                "unknown parameter `{tail}`; declared: {}",
                                params
                                    .iter()
                                    .map(|p| p.0.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                } else if let Some(instances) = refs.groups.get(head) {
                    if is_whole {
                        let mut list = Node {
                            value: Value::Seq(
                                instances
                                    .iter()
                                    .map(|inst| Node {
                                        value: Value::Str(format!("${{{inst}.{tail}}}")),
                                        pos: node.pos,
                                    })
                                    .collect(),
                            ),
                            pos: node.pos,
                        };
                        resolve(&mut list, path, refs, needs, cx);
                        whole = Some(list);
                    } else {
                        cx.err(
                            Some(node.pos),
                            path,
                            format!(
                                "stage `{head}` has `foreach`: `${{{reference}}}` is a list of {} paths and cannot be put inside a string",
                                instances.len()
                            ),
                        );
                    }
                } else if head == "each" {
                    cx.err(
                        Some(node.pos),
                        path,
                        format!("`${{{reference}}}` is only for stages with `foreach`"),
                    );
                } else if let Some(kind) = kinds.get(head) {
                    let declared = refs
                        .dyn_outputs
                        .get(head)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let rel = kind.output(tail).map(|o| o.path.to_string()).or_else(|| {
                        declared
                            .iter()
                            .find(|(n, _)| n == tail)
                            .map(|(_, p)| p.clone())
                    });
                    match rel {
                        Some(rel) => {
                            let p = workdir.join(head).join(rel);
                            out.push_str(p.to_string_lossy().trim_end_matches('/'));
                            needs.push(head.to_string());
                        }
                        None => {
                            let names: Vec<&str> = kind
                                .outputs
                                .iter()
                                .map(|o| o.name)
                                .chain(declared.iter().map(|(n, _)| n.as_str()))
                                .collect();
                            cx.err(
                                Some(node.pos),
                                path,
                                format!(
                                    "stage `{head}` ({}) has no output `{tail}`; it has: {}",
                                    kind.name,
                                    names.join(", ")
                                ),
                            )
                        }
                    }
                } else {
                    cx.err(
                        Some(node.pos),
                        path,
                        format!("`${{{reference}}}`: no stage named `{head}`"),
                    );
                }
            }
            out.push_str(rest);
            node.value = match whole {
                Some(n) => n.value,
                None => Value::Str(out),
            };
        }
        _ => {}
    }
}

/// Stages in dependency order (declaration order among independent ones), or
/// a cycle. Iterative (Kahn's algorithm), so a chain of 100,000 stages is fine.
fn order(stages: Vec<Stage>) -> Result<Vec<Stage>, (Vec<String>, Pos)> {
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut waiting: Vec<usize> = stages.iter().map(|s| s.needs.len()).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    for (i, s) in stages.iter().enumerate() {
        for dep in &s.needs {
            users[index[dep.as_str()]].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..stages.len()).filter(|&i| waiting[i] == 0).collect();
    let mut out = Vec::with_capacity(stages.len());
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if out.len() == stages.len() {
        let mut slots: Vec<Option<Stage>> = stages.into_iter().map(Some).collect();
        return Ok(out
            .into_iter()
            .map(|i| slots[i].take().expect("each stage once"))
            .collect());
    }
    // Every stage left waits on another stage left: following those edges
    // from any of them must come back to a stage already seen.
    let start = (0..stages.len())
        .find(|&i| waiting[i] > 0)
        .expect("a stage is left");
    let mut path = vec![start];
    loop {
        let cur = *path.last().expect("non-empty");
        let next = stages[cur]
            .needs
            .iter()
            .map(|d| index[d.as_str()])
            .find(|&d| waiting[d] > 0)
            .expect("a waiting stage has a waiting dependency");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            // Reported as "a -> b -> a": a needs b, which needs a.
            let mut cycle: Vec<String> = path[pos..]
                .iter()
                .map(|&p| stages[p].name.clone())
                .collect();
            cycle.push(cycle[0].clone());
            return Err((cycle, stages[path[pos]].pos));
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
version: 1
name: t
workdir: runs/t
seed: 3
params:
  n: 4
  size: 16
stages:
  ev:
    uses: eval.classifier
    with:
      model: ${tr.model}
      data: ${ds.dataset}
  gen:
    uses: ingest.synthetic_galaxies
    with:
      count_per_class: ${params.n}
      size: ${params.size}
  ds:
    uses: ingest.galaxy_images
    with:
      labels: ${gen.labels}
      size: ${params.size}
  tr:
    uses: train.classifier
    with:
      data: ${ds.dataset}
      epochs: 1
";

    fn compile_str(text: &str, overrides: &[&str]) -> Result<Workflow, Diagnostics> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        compile(text, Path::new("w.yaml"), &o)
    }

    const SWEEP: &str = "\
version: 1
name: t
workdir: runs/t
params:
  ranks: [1, 2]
stages:
  measure:
    uses: command
    foreach: { ranks: \"${params.ranks}\", batch: [16, 32] }
    with:
      argv: [mpirun, -n, \"${each.ranks}\", run, \"--batch=${each.batch}\", \"{out}/r${each.ranks}\"]
      outputs: { train: wd/train }
  figure:
    uses: eval.scaling_figure
    with:
      figure: resnet50_hal
      runs: [\"${measure.train}\", extra/train]
";

    #[test]
    fn foreach_makes_one_stage_per_combination_and_references_splice_all() {
        let wf = compile_str(SWEEP, &[]).unwrap();
        let names: Vec<&str> = wf.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "measure-1-16",
                "measure-1-32",
                "measure-2-16",
                "measure-2-32",
                "figure"
            ]
        );
        // `${each.x}` alone keeps the value's type; inside a string, its text.
        let argv = &wf.stages[2].config["argv"];
        assert_eq!(argv[2], serde_json::json!(2));
        assert_eq!(argv[4], "--batch=16");
        assert_eq!(argv[5], "{out}/r2");
        let fig = wf.stages.last().unwrap();
        assert_eq!(
            fig.config["runs"],
            serde_json::json!([
                "runs/t/measure-1-16/wd/train",
                "runs/t/measure-1-32/wd/train",
                "runs/t/measure-2-16/wd/train",
                "runs/t/measure-2-32/wd/train",
                "extra/train"
            ])
        );
        assert_eq!(fig.needs.len(), 4);
        // The sweep is a parameter: a cluster sets the rank counts.
        let wf = compile_str(SWEEP, &["params.ranks=[64]"]).unwrap();
        assert_eq!(wf.stages.len(), 3);
        assert_eq!(wf.stages[0].name, "measure-64-16");
    }

    #[test]
    fn foreach_mistakes_are_reported_where_they_are() {
        let err = |text: &str| compile_str(text, &[]).unwrap_err().to_string();
        let e = err(&SWEEP.replace("\"${each.ranks}\", run", "\"${each.rank}\", run"));
        assert!(e.contains("no `foreach` variable `rank`"), "{e}");
        let e = err(&SWEEP.replace("ranks: [1, 2]", "ranks: 2"));
        assert!(
            e.contains("parameter `ranks` is an integer, not a list"),
            "{e}"
        );
        let e = err(&SWEEP.replace("batch: [16, 32]", "batch: []"));
        assert!(e.contains("the list is empty"), "{e}");
        let e = err(&SWEEP.replace(
            "runs: [\"${measure.train}\", extra/train]",
            "runs: [\"x${measure.train}\"]",
        ));
        assert!(
            e.contains("is a list of 4 paths and cannot be put inside a string"),
            "{e}"
        );
        let e = err(&SWEEP.replace("figure: resnet50_hal", "figure: \"${each.ranks}\""));
        assert!(e.contains("only for stages with `foreach`"), "{e}");
    }

    #[test]
    fn resolves_references_types_and_order() {
        let wf = compile_str(GOOD, &["params.size=32"]).unwrap();
        let names: Vec<&str> = wf.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["gen", "ds", "tr", "ev"]);
        let gen = &wf.stages[0];
        assert_eq!(gen.config["count_per_class"], 4);
        assert_eq!(gen.config["size"], 32);
        assert_eq!(wf.stages[1].config["labels"], "runs/t/gen/labels.csv");
        assert_eq!(wf.stages[3].needs, vec!["ds", "tr"]);
        assert_eq!(wf.seed, 3);
    }

    #[test]
    fn reports_every_error_with_positions() {
        let bad = GOOD
            .replace("epochs: 1", "epochs: 1\n      epochz: 2")
            .replace("${gen.labels}", "${gen.lables}")
            .replace("uses: eval.classifier", "uses: eval.clasifier")
            .replace("seed: 3", "seed: 3\nsed: 4");
        let err = compile_str(&bad, &["params.nope=1"]).unwrap_err();
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("w.yaml:5:1: sed: unknown key")),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l
                .starts_with("w.yaml:11:11: stages.ev.uses: unknown stage kind `eval.clasifier`")),
            "{text}"
        );
        assert!(lines.iter().any(|l| l.contains("stages.ds.with.labels: stage `gen` (ingest.synthetic_galaxies) has no output `lables`")), "{text}");
        assert!(
            lines.iter().any(
                |l| l.starts_with("w.yaml:30:7: stages.tr.with.epochz: unknown field `epochz`")
            ),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("--set params.nope: no parameter `nope`")),
            "{text}"
        );
        assert_eq!(err.items.len(), 5, "{text}");
    }

    #[test]
    fn a_zero_count_points_at_the_value() {
        let bad = GOOD.replace("epochs: 1", "epochs: 0");
        let err = compile_str(&bad, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("w.yaml:28:15: stages.tr.with.epochs: invalid value: integer `0`"),
            "{err}"
        );
    }

    #[test]
    fn cycles_are_named() {
        let text = "version: 1\nname: c\nworkdir: w\nstages:\n  a:\n    uses: train.classifier\n    with: { data: '${b.model}', epochs: 1 }\n  b:\n    uses: train.classifier\n    with: { data: '${a.model}', epochs: 1 }\n";
        let err = compile_str(text, &[]).unwrap_err().to_string();
        assert!(err.contains("dependency cycle: a -> b -> a"), "{err}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = compile_str("version: 1\nstages: [\n", &[]).unwrap_err();
        assert_eq!(err.items.len(), 1);
        assert!(err.items[0].pos.is_some());
        assert!(err.to_string().contains("YAML syntax"), "{err}");
    }
}
