//! The run report: one self-contained HTML page per run.
//!
//! Everything the page shows comes from the workdir's run records and the
//! stages' output directories: the run (command, ranks, host, times, the
//! software and a BLAKE3 of the executable that ran it), every stage (status,
//! why, seconds), the metrics of each stage's latest execution, the figures
//! (PNG files at the top of a stage's output, embedded as data URIs so the
//! page travels alone), what each current output was made from (fingerprint,
//! input and output hashes, the run that made it) and the workflow as it ran
//! (parameters and references resolved).
//!
//! `pipeline run` writes `<workdir>/reports/run-<id>.html` at the end of
//! every run; `pipeline report` (re)writes it for any recorded run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;

use crate::records::{utc, Records, RunInfo, StageRunRow};
use crate::Error;

/// Files listed per stage in the provenance section.
const ARTIFACTS_SHOWN: usize = 12;

/// The software that runs: its version and the BLAKE3 of the executable,
/// which pins the exact build (the version alone does not).
pub fn software() -> &'static (String, String) {
    static SOFTWARE: OnceLock<(String, String)> = OnceLock::new();
    SOFTWARE.get_or_init(|| {
        let version = concat!("sciflow ", env!("CARGO_PKG_VERSION")).to_string();
        // Mapped, not read: a debug build is over 100 MB, and reading it
        // into a fresh buffer (zeroed pages, a copy) cost every run about
        // half a second.
        let hash = std::env::current_exe()
            .and_then(|exe| {
                blake3::Hasher::new()
                    .update_mmap_rayon(exe)
                    .map(|h| h.finalize())
            })
            .map(|h| h.to_hex().to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        (version, hash)
    })
}

/// Where the report of run `id` goes.
pub fn path_for(workdir: &Path, id: i64) -> PathBuf {
    workdir.join("reports").join(format!("run-{id}.html"))
}

/// Writes the report of run `id` (default: the latest) of the workdir that
/// `records` belongs to, to `out` (default: [`path_for`]), atomically.
/// Returns the path written.
pub fn write(
    records: &Records,
    workdir: &Path,
    id: Option<i64>,
    out: Option<&Path>,
) -> Result<PathBuf, Error> {
    let id = match id {
        Some(id) => id,
        None => records.last_run()?.ok_or_else(|| Error::NotRecorded {
            path: workdir.join(".pipeline/records.sqlite"),
            message: "no runs recorded".into(),
        })?,
    };
    let run = records.run_info(id)?.ok_or_else(|| Error::NotRecorded {
        path: workdir.join(".pipeline/records.sqlite"),
        message: format!("no run {id} recorded"),
    })?;
    let html = render(records, workdir, &run)?;
    let path = out.map_or_else(|| path_for(workdir, id), Path::to_path_buf);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io("failed to create", dir))?;
    }
    // Written aside and renamed: a reader never sees half a page.
    sciflow_ingest::files::write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// HTML-escapes text for element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1600px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok, .ran { color: #161; } .failed, .interrupted { color: #a11; font-weight: bold; } .skipped { color: #666; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
code, pre { font-family: ui-monospace, monospace; font-size: 0.9em; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; }
details { margin: 0.3em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } .charts svg { border: 1px solid #eee; }
.dag { overflow-x: auto; } .stopped { color: #a60; }
";

/// A check a browser runs on load: how many figures decoded. Tests read it
/// back from the rendered DOM.
const SCRIPT: &str = "
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-figures', String(imgs.length));
  document.body.setAttribute('data-figures-decoded',
    String(imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length));
  document.body.setAttribute('data-charts', String(document.querySelectorAll('.charts svg').length));
  document.body.setAttribute('data-height', String(document.documentElement.scrollHeight));
});
";

fn render(records: &Records, workdir: &Path, run: &RunInfo) -> Result<String, Error> {
    let stages = records.stage_runs(run.id)?;
    let (version, exe_hash) = software();
    let mut h = String::new();
    let title = format!("Run {} of workflow {}", run.id, run.workflow);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );

    // The run.
    let duration = run
        .finished
        .map_or("-".to_string(), |f| format!("{:.1} s", f - run.started));
    let ran = stages.iter().filter(|s| s.status != "skipped").count();
    let rows: Vec<(&str, String)> = vec![
        (
            "status",
            format!("<span class=\"{0}\">{0}</span>", esc(&run.status)),
        ),
        ("workflow file", format!("<code>{}</code>", esc(&run.file))),
        (
            "workdir",
            format!("<code>{}</code>", esc(&workdir.display().to_string())),
        ),
        ("started (UTC)", esc(&utc(run.started))),
        ("duration", duration),
        (
            "stages",
            format!("{ran} run, {} up to date", stages.len() - ran),
        ),
        ("ranks", run.world_size.to_string()),
        ("host", esc(&run.host)),
        ("command", format!("<code>{}</code>", esc(&run.argv))),
        ("software", esc(version)),
        (
            "executable BLAKE3 (report writer)",
            format!("<code>{}</code>", esc(exe_hash)),
        ),
    ];
    h.push_str("<table id=\"run\"><tbody>\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    if let Some(e) = &run.error {
        let _ = writeln!(
            h,
            "<tr><th>error</th><td class=\"failed\"><pre>{}</pre></td></tr>",
            esc(e)
        );
    }
    h.push_str("</tbody></table>\n");

    // The stages.
    h.push_str(
        "<h2>Stages</h2>\n<table id=\"stages\"><thead><tr><th>stage</th><th>kind</th>\
         <th>status</th><th>seconds</th><th>ranks</th><th>why</th></tr></thead><tbody>\n",
    );
    for s in &stages {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"{2}\">{2}</td>\
             <td class=\"num\">{3:.1}</td><td class=\"num\">{4}</td><td>{5}{6}</td></tr>",
            esc(&s.stage),
            esc(&s.kind),
            esc(&s.status),
            s.seconds,
            s.ranks,
            esc(&s.reason),
            s.error
                .as_ref()
                .map_or(String::new(), |e| format!("<br><b>error:</b> {}", esc(e)))
        );
    }
    h.push_str("</tbody></table>\n");

    // Metrics: training curves as charts, every number as a step x name table.
    h.push_str("<h2>Metrics</h2>\n<p>Each stage's latest execution.</p>\n");
    for s in &stages {
        let metrics = records.metrics(&s.stage)?;
        if metrics.is_empty() {
            continue;
        }
        let _ = writeln!(h, "<h3>{}</h3>", esc(&s.stage));
        h.push_str(&view::metrics(&s.stage, &metrics));
    }

    // Figures.
    h.push_str("<h2>Figures</h2>\n");
    let mut figures = 0;
    for s in &stages {
        for png in pngs(&workdir.join(&s.stage))? {
            let bytes = std::fs::read(&png).map_err(Error::io("failed to read", &png))?;
            let name = png.file_name().map_or(String::new(), |n| {
                format!("{}/{}", s.stage, n.to_string_lossy())
            });
            let _ = writeln!(
                h,
                "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{1}\">\
                 <figcaption><code>{0}</code> (BLAKE3 {2})</figcaption></figure>",
                esc(&name),
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                &blake3::hash(&bytes).to_hex()[..16]
            );
            figures += 1;
        }
    }
    if figures == 0 {
        h.push_str("<p>No stage wrote a figure.</p>\n");
    }

    // Provenance.
    h.push_str(
        "<h2>Provenance</h2>\n<p>What each stage's current output was made from.</p>\n\
         <table id=\"provenance\"><thead><tr><th>stage</th><th>made by run</th><th>fingerprint</th>\
         <th>output BLAKE3</th><th>inputs</th><th>files</th></tr></thead><tbody>\n",
    );
    for s in &stages {
        provenance_row(&mut h, records, s)?;
    }
    h.push_str("</tbody></table>\n");

    // The workflow as run: its graph, and every value resolved, as YAML.
    let resolved: Option<serde_json::Value> = run
        .resolved
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    h.push_str("<h2>Stage graph</h2>\n");
    match &resolved {
        Some(v) => {
            let _ = writeln!(h, "<div class=\"dag\">{}</div>", view::dag(v));
        }
        None => h.push_str("<p>Not recorded for this run.</p>\n"),
    }
    h.push_str("<h2>Resolved workflow</h2>\n");
    match &resolved {
        Some(v) => {
            let _ = writeln!(h, "<pre id=\"resolved\">{}</pre>", esc(&view::yaml(v)));
        }
        None => h.push_str("<p>Not recorded for this run.</p>\n"),
    }
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
    Ok(h)
}

fn provenance_row(h: &mut String, records: &Records, s: &StageRunRow) -> Result<(), Error> {
    let Some(state) = records.stage_state(&s.stage)? else {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td colspan=\"5\">no completed output</td></tr>",
            esc(&s.stage)
        );
        return Ok(());
    };
    let inputs: String = state
        .inputs
        .iter()
        .map(|(p, hash)| format!("<code>{}</code> {}", esc(p), &hash[..hash.len().min(16)]))
        .chain(state.upstream.iter().map(|(st, hash)| {
            format!(
                "stage <code>{}</code> {}",
                esc(st),
                &hash[..hash.len().min(16)]
            )
        }))
        .collect::<Vec<_>>()
        .join("<br>");
    let files = records.stage_artifacts(state.run_id, &s.stage)?;
    let mut listed: String = files
        .iter()
        .take(ARTIFACTS_SHOWN)
        .map(|a| {
            format!(
                "<code>{}</code> {} B {}",
                esc(&a.path),
                a.bytes,
                &a.blake3[..a.blake3.len().min(16)]
            )
        })
        .collect::<Vec<_>>()
        .join("<br>");
    if files.len() > ARTIFACTS_SHOWN {
        let _ = write!(listed, "<br>... and {} more", files.len() - ARTIFACTS_SHOWN);
    }
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td><td><code>{}</code></td>\
         <td>{inputs}</td><td><details><summary>{} file(s)</summary>{listed}</details></td></tr>",
        esc(&s.stage),
        state.run_id,
        &state.fingerprint[..state.fingerprint.len().min(16)],
        &state.output_hash[..state.output_hash.len().min(16)],
        files.len()
    );
    Ok(())
}

/// PNG files at the top of a stage's output directory, by name.
fn pngs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A failed or never-run stage has no output directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::io("failed to list", dir)(source)),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "png"))
        .collect();
    out.sort();
    Ok(out)
}

fn fmt_value(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}")
    }
}

mod view;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            esc(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn values_print_as_integers_when_they_are() {
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(0.25), "0.250000");
    }
}
