//! YAML with positions: the workflow file parsed into a tree whose every node
//! knows its line and column, so that errors read like a compiler's.
//!
//! Built on `saphyr-parser`'s event stream (a maintained YAML 1.2 parser).
//! Plain scalars are typed by the YAML 1.2 core schema; quoted scalars are
//! always strings.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A position in the file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub pos: Pos,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order; keys are strings (other key types are rejected).
    Map(Vec<(String, Pos, Node)>),
}

/// The most nodes aliases may copy into one document: a shared block
/// reused by thousands of stages fits; ten aliases nested six deep do not.
const MAX_ALIASED: usize = 1_000_000;

impl Node {
    /// Nodes in this subtree, itself included.
    fn count(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::count).sum(),
            Value::Map(entries) => entries.iter().map(|(_, _, v)| v.count()).sum(),
            _ => 0,
        }
    }

    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, _, v)| (k.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// Records each node's position under its dotted path (`stages.train.with.epochs`,
    /// list items as `items.0`) in `positions`, and each mapping key's position
    /// under `path.key` in `key_positions`. Only needed to place an error.
    pub fn positions(
        &self,
        path: &str,
        positions: &mut HashMap<String, Pos>,
        key_positions: &mut HashMap<String, Pos>,
    ) {
        positions.insert(path.to_string(), self.pos);
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match &self.value {
            Value::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    n.positions(&join(&i.to_string()), positions, key_positions);
                }
            }
            Value::Map(entries) => {
                for (k, kpos, v) in entries {
                    key_positions.insert(join(k), *kpos);
                    v.positions(&join(k), positions, key_positions);
                }
            }
            _ => {}
        }
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// Types a plain scalar by the YAML 1.2 core schema.
fn plain_scalar(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse() {
            return Value::Int(i);
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
    if looks_numeric {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(s.to_string())
}

/// Parses a single-document YAML text into a positioned tree.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    enum Frame {
        Seq(Pos, usize, Vec<Node>),
        // Keys seen so far are also kept in a set: a mapping of 100,000 stages
        // must not cost a quadratic duplicate check.
        Map(
            Pos,
            usize,
            Vec<(String, Pos, Node)>,
            HashSet<String>,
            Option<(String, Pos)>,
        ),
    }
    let mut stack: Vec<Frame> = Vec::new();
    // Each anchored node with its size: aliases may copy at most
    // MAX_ALIASED nodes in all, so nested aliases (a "billion laughs") are
    // refused instead of expanded.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut aliased = 0usize;
    let mut root: Option<Node> = None;
    let mut docs = 0;
    let err = |pos: Pos, message: String| SyntaxError { pos, message };

    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            err(
                Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                e.info().to_string(),
            )
        })?;
        let pos = pos_of(&span);
        let complete: Option<(Node, usize)> = match event {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(err(pos, "expected one YAML document, found several".into()));
                }
                None
            }
            Event::Alias(id) => {
                let (node, size) = anchors
                    .get(&id)
                    .ok_or_else(|| err(pos, "alias to an unknown anchor".into()))?;
                aliased += size;
                if aliased > MAX_ALIASED {
                    return Err(err(
                        pos,
                        format!("aliases here expand to more than {MAX_ALIASED} nodes; refusing (nested aliases multiply)"),
                    ));
                }
                Some((
                    Node {
                        pos,
                        ..node.clone()
                    },
                    0,
                ))
            }
            Event::Scalar(s, style, anchor, _) => {
                let value = if style == ScalarStyle::Plain {
                    plain_scalar(&s)
                } else {
                    Value::Str(s.into_owned())
                };
                Some((Node { value, pos }, anchor))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(pos, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(pos, anchor, Vec::new(), HashSet::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, a, items)) => Some((
                    Node {
                        value: Value::Seq(items),
                        pos: p,
                    },
                    a,
                )),
                _ => return Err(err(pos, "unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, a, entries, _, _)) => Some((
                    Node {
                        value: Value::Map(entries),
                        pos: p,
                    },
                    a,
                )),
                _ => return Err(err(pos, "unbalanced mapping".into())),
            },
            _ => None,
        };
        let Some((node, anchor)) = complete else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), node.count()));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, seen, pending)) => match pending.take() {
                None => {
                    let key = match node.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            return Err(err(
                                node.pos,
                                format!("expected a string key, found {}", node.type_name()),
                            ))
                        }
                    };
                    // Small mappings (nearly all) are checked in place; a set is
                    // built only once a mapping grows past a few dozen keys.
                    let duplicate = if entries.len() < 32 {
                        entries.iter().any(|(k, _, _)| *k == key)
                    } else {
                        if seen.is_empty() {
                            seen.extend(entries.iter().map(|(k, _, _)| k.clone()));
                        }
                        !seen.insert(key.clone())
                    };
                    if duplicate {
                        return Err(err(node.pos, format!("duplicate key `{key}`")));
                    }
                    *pending = Some((key, node.pos));
                }
                Some((key, kpos)) => entries.push((key, kpos, node)),
            },
        }
    }
    Ok(root.unwrap_or(Node {
        value: Value::Null,
        pos: Pos { line: 1, col: 1 },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_types_and_order() {
        let text = "a: 1\nb:\n  c: [x, 'true', 2.5]\n  d: ~\ne: true\nz: ${params.n}\n";
        let root = parse(text).unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        let keys: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(keys, ["a", "b", "e", "z"]);
        assert_eq!(root.get("a").unwrap().value, Value::Int(1));
        assert_eq!(root.get("a").unwrap().pos, Pos { line: 1, col: 4 });
        let c = root.get("b").unwrap().get("c").unwrap();
        let Value::Seq(items) = &c.value else {
            panic!()
        };
        assert_eq!(items[1].value, Value::Str("true".into()));
        assert_eq!(items[2].value, Value::Float(2.5));
        assert_eq!(items[2].pos, Pos { line: 3, col: 18 });
        assert_eq!(root.get("b").unwrap().get("d").unwrap().value, Value::Null);
        assert_eq!(
            root.get("z").unwrap().value,
            Value::Str("${params.n}".into())
        );

        let mut pos = HashMap::new();
        let mut keys = HashMap::new();
        let json = root.to_json();
        root.positions("", &mut pos, &mut keys);
        assert_eq!(json["b"]["c"][2], 2.5);
        assert_eq!(pos["b.c.2"], Pos { line: 3, col: 18 });
        assert_eq!(keys["b.d"], Pos { line: 4, col: 3 });
    }

    #[test]
    fn syntax_errors_and_duplicates_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 1 });
        assert!(e.message.contains("duplicate key `a`"));
    }

    #[test]
    fn nested_aliases_are_refused_before_they_multiply() {
        // The "billion laughs": ten aliases of the level below, nine levels deep.
        let mut text = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            let row = vec![format!("*l{}", i - 1); 10].join(", ");
            text.push_str(&format!("l{i}: &l{i} [{row}]\n"));
        }
        let start = std::time::Instant::now();
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("expand to more than"), "{e:?}");
        // l5 (line 6) is the first level whose aliases copy over a million nodes.
        assert_eq!(e.pos.line, 6, "{e:?}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Reuse within the bound is fine.
        let mut ok = String::from("base: &b {a: 1, b: [1, 2, 3]}\n");
        for i in 0..1000 {
            ok.push_str(&format!("s{i}: *b\n"));
        }
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn anchors_and_aliases() {
        let root = parse("x: &v {k: 1}\ny: *v\n").unwrap();
        assert_eq!(
            root.get("y").unwrap().get("k").unwrap().value,
            Value::Int(1)
        );
    }
}
