//! The top of a workflow file: its version, name, workdir, seed,
//! reproducibility mode and parameters, the `--set` overrides of them, and
//! the stage entries.

use super::*;

/// What a workflow says above its stages, overrides applied.
pub(super) struct Header {
    pub(super) name: String,
    pub(super) workdir: PathBuf,
    pub(super) seed: u64,
    pub(super) reproducible: Reproducible,
    pub(super) params: Vec<(String, Node)>,
}

/// Reads the top-level fields of `root` (a mapping), reporting what is wrong.
pub(super) fn read(root: &Node, cx: &mut Ctx) -> Header {
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
    let name = string_field(cx, "name").unwrap_or_default();
    let workdir = string_field(cx, "workdir")
        .map(PathBuf::from)
        .unwrap_or_default();
    let seed = match root.get("seed") {
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
    let reproducible = match root.get("reproducible") {
        None => Reproducible::default(),
        Some(n) => reproducible_mode(&n.value).unwrap_or_else(|| {
            cx.err(Some(n.pos), "reproducible", REPRODUCIBLE_EXPECTED);
            Reproducible::default()
        }),
    };

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
    Header {
        name,
        workdir,
        seed,
        reproducible,
        params,
    }
}

const REPRODUCIBLE_EXPECTED: &str = "expected `native` (the same bits on the same machine; \
     the default) or `portable` (the same bits on any x86-64 machine with AVX2)";

/// The mode a `reproducible:` value names.
fn reproducible_mode(v: &Value) -> Option<Reproducible> {
    match v {
        Value::Str(s) => Reproducible::from_name(s),
        _ => None,
    }
}

/// Applies `--set KEY=VALUE` overrides: `params.NAME`, `seed`,
/// `reproducible` and `workdir`.
pub(super) fn apply_overrides(h: &mut Header, overrides: &[String], cx: &mut Ctx) {
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
            match h.params.iter_mut().find(|(k, _)| k == p) {
                Some(slot) => slot.1 = value,
                None => cx.err(
                    None,
                    format!("--set {key}"),
                    format!(
                        "no parameter `{p}` in the workflow; declared: {}",
                        h.params
                            .iter()
                            .map(|p| p.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        } else if key == "seed" {
            match value.value {
                Value::Int(i) if i >= 0 => h.seed = i as u64,
                _ => cx.err(None, "--set seed", "expected a non-negative integer"),
            }
        } else if key == "workdir" {
            h.workdir = PathBuf::from(raw);
        } else if key == "reproducible" {
            match reproducible_mode(&value.value) {
                Some(m) => h.reproducible = m,
                None => cx.err(None, "--set reproducible", REPRODUCIBLE_EXPECTED),
            }
        } else {
            cx.err(
                None,
                format!("--set {key}"),
                "only params.NAME, seed, reproducible and workdir can be set",
            );
        }
    }
}

/// The stage entries of `root` (name, position, entry).
pub(super) fn stage_entries<'a>(root: &'a Node, cx: &mut Ctx) -> &'a [(String, Pos, Node)] {
    match root.get("stages") {
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
    }
}
