//! The report's views of what the records hold: a stage's metrics as charts
//! and an epoch x metric table, the DAG as a drawing, the resolved workflow
//! as YAML. Each returns HTML (or inline SVG) text.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::{esc, fmt_value};
use crate::records::Metric;

/// Rows of a stage's metrics table shown at most.
const ROWS: usize = 60;

/// Charts of the per-epoch curves a training stage reports (loss; accuracy
/// or validation MAE), then every metric as a step x name table.
pub(super) fn metrics(stage: &str, metrics: &[Metric]) -> String {
    let mut h = String::new();
    let series = |names: &[&str]| -> Vec<(String, Vec<(f64, f64)>)> {
        names
            .iter()
            .filter_map(|n| {
                let pts: Vec<(f64, f64)> = metrics
                    .iter()
                    .filter(|m| m.name == *n)
                    .map(|m| (m.step as f64, m.value))
                    .collect();
                (!pts.is_empty()).then(|| (n.to_string(), pts))
            })
            .collect()
    };
    let mae: Vec<String> = {
        let mut v: Vec<String> = metrics
            .iter()
            .filter(|m| m.name.starts_with("val_mae_"))
            .map(|m| m.name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mae_refs: Vec<&str> = mae.iter().map(String::as_str).collect();
    let charts = [
        ("Loss", "loss", series(&["train_loss", "val_loss"])),
        (
            "Accuracy",
            "accuracy",
            series(&["train_accuracy", "val_accuracy"]),
        ),
        ("Validation MAE", "MAE", series(&mae_refs)),
    ];
    let drawn: Vec<String> = charts
        .iter()
        .filter(|c| !c.2.is_empty() && c.2.iter().any(|s| s.1.len() > 1))
        .filter_map(|(title, ylabel, lines)| {
            let lines: Vec<sciflow_eval::figures::Line<'_>> =
                lines.iter().map(|(n, p)| (n.as_str(), p.clone())).collect();
            sciflow_eval::figures::line_chart_svg(title, "epoch", ylabel, &lines).ok()
        })
        .filter(|svg| !svg.is_empty())
        .collect();
    if !drawn.is_empty() {
        let _ = write!(h, "<div class=\"charts\" data-stage=\"{}\">", esc(stage));
        for svg in drawn {
            // The SVG's own XML declaration has no place inside HTML.
            let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
            h.push_str(body);
        }
        h.push_str("</div>\n");
    }
    // Step x name: one row per step, one column per metric, in first-seen order.
    let mut names: Vec<&str> = Vec::new();
    let mut steps: Vec<i64> = Vec::new();
    let mut cell: HashMap<(i64, &str), f64> = HashMap::new();
    for m in metrics {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
        if !steps.contains(&m.step) {
            steps.push(m.step);
        }
        cell.insert((m.step, m.name.as_str()), m.value);
    }
    steps.sort_unstable();
    let _ = write!(
        h,
        "<table class=\"metrics\" data-stage=\"{}\"><thead><tr><th>step</th>",
        esc(stage)
    );
    for n in &names {
        let _ = write!(h, "<th>{}</th>", esc(n));
    }
    h.push_str("</tr></thead><tbody>\n");
    for step in steps.iter().take(ROWS) {
        let _ = write!(h, "<tr><td class=\"num\">{step}</td>");
        for n in &names {
            match cell.get(&(*step, *n)) {
                Some(v) => {
                    let _ = write!(h, "<td class=\"num\">{}</td>", fmt_value(*v));
                }
                None => h.push_str("<td></td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    if steps.len() > ROWS {
        let _ = writeln!(
            h,
            "<p>... and {} more steps (<code>pipeline metrics {}</code>).</p>",
            steps.len() - ROWS,
            esc(stage)
        );
    }
    h
}

/// The stage graph of a resolved workflow as an inline SVG: each stage a
/// box in the column of its longest path from a stage that needs nothing,
/// an arrow from each stage to those that need it.
pub(super) fn dag(resolved: &Value) -> String {
    let Some(stages) = resolved.get("stages").and_then(Value::as_object) else {
        return String::new();
    };
    let order: Vec<&str> = stages.keys().map(String::as_str).collect();
    let needs = |s: &str| -> Vec<&str> {
        stages
            .get(s)
            .and_then(|v| v.get("after"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    // The column of a stage: its longest path from a stage that needs
    // nothing (the map's key order is not the run order, so by recursion).
    fn depth_of<'a>(
        n: &'a str,
        needs: &dyn Fn(&'a str) -> Vec<&'a str>,
        known: &mut HashMap<&'a str, usize>,
    ) -> usize {
        if let Some(&d) = known.get(n) {
            return d;
        }
        // Marked first: a (malformed) cycle ends instead of recursing forever.
        known.insert(n, 0);
        let d = needs(n)
            .into_iter()
            .map(|m| depth_of(m, needs, known) + 1)
            .max()
            .unwrap_or(0);
        known.insert(n, d);
        d
    }
    let mut depth: HashMap<&str, usize> = HashMap::new();
    for n in &order {
        depth_of(n, &needs, &mut depth);
    }
    let mut rows: HashMap<usize, usize> = HashMap::new();
    let mut place: HashMap<&str, (usize, usize)> = HashMap::new();
    for n in &order {
        let d = depth[n];
        let r = rows.entry(d).or_insert(0);
        place.insert(n, (d, *r));
        *r += 1;
    }
    let (bw, bh, gx, gy) = (150usize, 26usize, 60usize, 12usize);
    let cols = rows.keys().max().map_or(1, |d| d + 1);
    let height = rows.values().max().copied().unwrap_or(1);
    let (w, hgt) = (cols * (bw + gx) + 20, height * (bh + gy) + 20);
    let xy = |n: &str| {
        let (c, r) = place[n];
        (10 + c * (bw + gx), 10 + r * (bh + gy))
    };
    let mut s = format!(
        "<svg id=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" font-family=\"sans-serif\" font-size=\"12\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\"/></marker></defs>"
    );
    for n in &order {
        let (x, y) = xy(n);
        for m in needs(n) {
            if place.contains_key(m) {
                let (mx, my) = xy(m);
                let _ = write!(
                    s,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#777\" marker-end=\"url(#arrow)\"/>",
                    mx + bw,
                    my + bh / 2,
                    y + bh / 2
                );
            }
        }
    }
    for n in &order {
        let (x, y) = xy(n);
        let kind = stages[*n].get("uses").and_then(Value::as_str).unwrap_or("");
        let label: String = n.chars().take(22).collect();
        let _ = write!(
            s,
            "<g class=\"stage\"><title>{} ({})</title><rect x=\"{x}\" y=\"{y}\" width=\"{bw}\" height=\"{bh}\" rx=\"4\" fill=\"#eef3fb\" stroke=\"#4a6fa5\"/>\
             <text x=\"{}\" y=\"{}\">{}</text></g>",
            esc(n),
            esc(kind),
            x + 6,
            y + 17,
            esc(&label)
        );
    }
    s.push_str("</svg>");
    s
}

/// `v` as YAML (block style; strings quoted where plain text would read
/// as something else).
pub(super) fn yaml(v: &Value) -> String {
    let mut out = String::new();
    emit(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || "_-./${}@+=,".contains(c))
                && !s.starts_with(['-', '$', '{', '@'])
                && !matches!(
                    s.as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                )
                && s.parse::<f64>().is_err();
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).expect("strings serialise")
            }
        }
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        _ => return None,
    })
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                let key = scalar(&Value::String(k.clone())).unwrap_or_default();
                match scalar(val) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}{key}: {s}");
                    }
                    None => {
                        let _ = writeln!(out, "{pad}{key}:");
                        emit(val, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for it in items {
                match scalar(it) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}- {s}");
                    }
                    None => {
                        let _ = writeln!(out, "{pad}-");
                        emit(it, indent + 2, out);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolved_workflow_reads_back_as_the_same_value() {
        let v = serde_json::json!({
            "name": "q", "seed": 3, "params": {"eval_data": null, "ranks": [1, 2], "s": "a: b", "t": "true", "n": "12"},
            "stages": {"train": {"uses": "train.classifier", "after": ["dataset"], "with": {"data": "/w/dataset", "model": {"arch": "small_cnn"}, "xs": [{"a": 1}]}}}
        });
        let text = yaml(&v);
        let back = crate::workflow::yaml::parse(&text).unwrap().to_json();
        assert_eq!(back, v, "{text}");
    }

    #[test]
    fn the_dag_draws_a_box_per_stage_and_an_arrow_per_edge() {
        let v = serde_json::json!({"stages": {
            "a": {"uses": "command", "after": []},
            "b": {"uses": "command", "after": ["a"]},
            "c": {"uses": "command", "after": ["a", "b"]}
        }});
        let svg = dag(&v);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert_eq!(svg.matches("<line").count(), 3);
        // c sits two columns right of a.
        assert!(
            svg.contains("<title>c (command)</title><rect x=\"430\""),
            "{svg}"
        );
    }
}
