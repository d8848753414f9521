//! The workflow's DAG as Graphviz dot or Mermaid text.

use crate::workflow::Workflow;

/// Output formats of `pipeline dag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Graphviz: `pipeline dag wf.yaml | dot -Tsvg > dag.svg`.
    Dot,
    /// Mermaid, for Markdown renderers.
    Mermaid,
}

/// Renders the stages and their dependencies.
pub fn render(wf: &Workflow, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Dot => {
            out.push_str(&format!(
                "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n",
                wf.name
            ));
            for s in &wf.stages {
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\\n{}\"];\n",
                    s.name, s.name, s.kind.name
                ));
            }
            for s in &wf.stages {
                for d in &s.needs {
                    out.push_str(&format!("  \"{d}\" -> \"{}\";\n", s.name));
                }
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("flowchart LR\n");
            for s in &wf.stages {
                out.push_str(&format!(
                    "  {}[\"{}<br/>{}\"]\n",
                    mermaid_id(&s.name),
                    s.name,
                    s.kind.name
                ));
            }
            for s in &wf.stages {
                for d in &s.needs {
                    out.push_str(&format!(
                        "  {} --> {}\n",
                        mermaid_id(d),
                        mermaid_id(&s.name)
                    ));
                }
            }
        }
    }
    out
}

/// Mermaid ids may not contain `-`.
fn mermaid_id(name: &str) -> String {
    format!("s_{}", name.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_list_every_edge() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../workflows/quickstart.yaml"
        ))
        .unwrap();
        let wf = crate::workflow::compile(&text, std::path::Path::new("q.yaml"), &[]).unwrap();
        let dot = render(&wf, Format::Dot);
        assert!(dot.contains("\"galaxies\" -> \"dataset\";"), "{dot}");
        assert!(dot.contains("\"train\" -> \"evaluate\";"), "{dot}");
        assert!(dot.contains("\"dataset\" -> \"evaluate\";"), "{dot}");
        let mm = render(&wf, Format::Mermaid);
        assert!(mm.starts_with("flowchart LR"));
        assert_eq!(mm.matches("-->").count(), dot.matches("->").count());
    }
}
