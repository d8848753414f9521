//! `${...}` references: resolving them against params and upstream outputs,
//! which makes each reference to a stage an edge of the DAG.

use super::*;

/// Replaces `${params.x}` and `${stage.output}` in every string of `node`;
/// stage references are added to `needs`.
/// What references can point at.
pub(super) struct Refs<'a> {
    pub(super) params: &'a [(String, Node)],
    pub(super) kinds: &'a HashMap<&'a str, &'static StageKind>,
    pub(super) dyn_outputs: &'a HashMap<String, Vec<(String, String)>>,
    pub(super) workdir: &'a Path,
    /// The absolute directory of the workflow file (`${workflow.dir}`).
    pub(super) dir: &'a Path,
    /// `foreach` stage -> the stages it expanded to.
    pub(super) groups: &'a HashMap<String, Vec<String>>,
}

/// The stage and output of a string that is exactly `${STAGE.OUTPUT}`.
pub(super) fn whole_reference(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    if inner.contains("${") || inner.contains('}') {
        return None;
    }
    inner.trim().split_once('.')
}

/// Replaces `${params.x}` and `${stage.output}` in every string of `node`;
/// stage references are added to `needs`.
pub(super) fn resolve(
    node: &mut Node,
    path: &str,
    refs: &Refs<'_>,
    needs: &mut Vec<String>,
    cx: &mut Ctx,
) {
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
                if head == "workflow" {
                    // The file's own directory: paths that travel with the
                    // workflow, wherever `pipeline` is started.
                    if tail == "dir" {
                        out.push_str(&refs.dir.to_string_lossy());
                    } else {
                        cx.err(
                            Some(node.pos),
                            path,
                            format!(
                                "`${{{reference}}}`: the workflow offers `${{workflow.dir}}` only"
                            ),
                        );
                    }
                } else if head == "params" {
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
