//! One stage entry: its name, kind, `needs`, and its `with:` block with
//! references resolved and checked by its kind.

use super::*;

/// Compiles the stage `sname` (at `spos`); `None` when it cannot be (the
/// reasons are in `cx`). `stage_names` are every stage's names, `foreach`
/// groups included.
pub(super) fn compile_stage(
    sname: &str,
    spos: Pos,
    node: &Node,
    refs: &Refs<'_>,
    stage_names: &HashSet<&str>,
    cx: &mut Ctx,
) -> Option<Stage> {
    let path = format!("stages.{sname}");
    if sname == "workflow" || sname == "params" || sname == "each" {
        cx.err(
            Some(spos),
            &path,
            format!(
                "`{sname}` is reserved for references (`${{{sname}.…}}`); name the stage otherwise"
            ),
        );
    }
    if !valid_name(sname) {
        cx.err(
            Some(spos),
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
        return None;
    }
    cx.known_keys(
        node,
        &path,
        &["uses", "with", "needs", "foreach", "resources"],
    );
    let kind = match node.get("uses") {
        Some(Node {
            value: Value::Str(u),
            pos,
        }) => match stages::lookup(u) {
            Some(k) => Some(k),
            None => {
                let known: Vec<&str> = stages::REGISTRY.iter().map(|k| k.name).collect();
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
                    Value::Str(s) if refs.groups.contains_key(s) => {
                        needs.extend(refs.groups[s].iter().cloned())
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
    resolve(&mut with, &with_path, refs, &mut needs, cx);
    let res_path = join(&path, "resources");
    let mut res_node = node.get("resources").cloned();
    if let Some(r) = &mut res_node {
        resolve(r, &res_path, refs, &mut needs, cx);
    }
    let kind = kind?;
    let config = with.to_json();
    let resolved = (kind.resolve)(&config);
    check_block(
        resolved.as_ref().map(|_| ()).map_err(Clone::clone),
        &with,
        &with_path,
        cx,
    );
    let resources = match &res_node {
        None => Resources::default(),
        Some(r) => {
            let json = r.to_json();
            let checked = crate::stages::kind::typed::<Resources>(&json)
                .and_then(|res| res.check(kind).map(|()| res));
            check_block(checked.clone().map(|_| ()), r, &res_path, cx);
            checked.unwrap_or_default()
        }
    };
    needs.sort();
    needs.dedup();
    Some(Stage {
        name: sname.to_string(),
        kind,
        config,
        resolved: resolved.unwrap_or(Json::Null),
        needs,
        resources,
        pos: spos,
    })
}

/// Checks a block (`with:` by its kind, `resources:`), pointing a problem
/// at the YAML node it is about: the key of an unknown field, else the
/// deepest node that exists.
fn check_block(
    checked: Result<(), crate::stages::kind::ConfigError>,
    with: &Node,
    with_path: &str,
    cx: &mut Ctx,
) {
    let Err(e) = checked else {
        return;
    };
    let mut positions = HashMap::new();
    let mut key_positions = HashMap::new();
    with.positions(with_path, &mut positions, &mut key_positions);
    let full = join(with_path, &e.path);
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
