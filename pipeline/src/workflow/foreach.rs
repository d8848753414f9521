//! `foreach`: one stage per combination of values, with `${each.NAME}`
//! substituted in each copy.

use super::*;

/// Expands every stage with `foreach: { VAR: [values], ... }` into one stage
/// per combination (the product, in declaration order), named
/// `STAGE-VALUE[-VALUE...]`, with `${each.VAR}` replaced in its `with:`.
/// Returns the stages and each expanded stage's instances.
#[allow(clippy::type_complexity)]
pub(super) fn expand_foreach(
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
