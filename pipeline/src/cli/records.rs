//! Verbs that read or tidy a workdir: `history`, `show`, `metrics`,
//! `report`, `clean`.

use std::path::{Path, PathBuf};

use sciflow_pipeline::records::{utc, Records};
use sciflow_pipeline::workflow;
use sciflow_pipeline::Error;

use super::args::RecordsArgs;

pub fn clean(
    workflow: &Path,
    set: &[String],
    keep_runs: usize,
    dry_run: bool,
) -> Result<(), Error> {
    let wf = workflow::load(workflow, set)?;
    let cleaned = sciflow_pipeline::engine::clean::clean(&wf, keep_runs, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for item in &cleaned.items {
        outln!("{verb} {} ({})", item.path.display(), item.why);
    }
    outln!(
        "{verb} {} item(s), {} run record(s): {} freed",
        cleaned.items.len(),
        cleaned.runs_dropped,
        human_bytes(cleaned.bytes)
    );
    Ok(())
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn workdir_of(args: &RecordsArgs) -> Result<PathBuf, Error> {
    Ok(if args.target.is_file() {
        workflow::load(&args.target, &[])?.workdir
    } else {
        args.target.clone()
    })
}

fn open_records(args: &RecordsArgs) -> Result<Records, Error> {
    Records::open_existing(&workdir_of(args)?)
}

pub fn write_report(
    args: &RecordsArgs,
    run: Option<i64>,
    output: Option<&Path>,
) -> Result<(), Error> {
    let workdir = workdir_of(args)?;
    let records = Records::open_existing(&workdir)?;
    let path = sciflow_pipeline::report::write(&records, &workdir, run, output)?;
    outln!("{}", path.display());
    Ok(())
}

pub fn history(args: &RecordsArgs, n: usize) -> Result<(), Error> {
    let records = open_records(args)?;
    outln!(
        "{:>5}  {:<20}  {:>9}  {:<11}  {:>5}  {:>8}  {:>7}  workflow",
        "run",
        "started (UTC)",
        "seconds",
        "status",
        "ranks",
        "executed",
        "skipped"
    );
    for r in records.history(n)? {
        let secs = r
            .finished
            .map_or("-".into(), |f| format!("{:.1}", f - r.started));
        outln!(
            "{:>5}  {:<20}  {:>9}  {:<11}  {:>5}  {:>8}  {:>7}  {}",
            r.id,
            utc(r.started),
            secs,
            r.status,
            r.world_size,
            r.executed,
            r.skipped,
            r.workflow
        );
    }
    Ok(())
}

pub fn show(args: &RecordsArgs, run: Option<i64>) -> Result<(), Error> {
    let records = open_records(args)?;
    let Some(id) = run.or(records.last_run()?) else {
        outln!("no runs recorded");
        return Ok(());
    };
    outln!("run {id}");
    for s in records.stage_runs(id)? {
        outln!(
            "  {:<16} {:<11} {:>8.1} s  ranks {}  {}",
            s.stage,
            s.status,
            s.seconds,
            s.ranks,
            &s.fingerprint[..s.fingerprint.len().min(12)]
        );
        outln!("      {}", s.reason);
        if let Some(e) = s.error {
            outln!("      error: {e}");
        }
    }
    let artifacts = records.artifacts(id)?;
    if !artifacts.is_empty() {
        outln!("  artifacts (path, bytes, BLAKE3; up to {SHOWN} per stage):");
        const SHOWN: usize = 8;
        let mut i = 0;
        while i < artifacts.len() {
            let stage = &artifacts[i].stage;
            let n = artifacts[i..]
                .iter()
                .take_while(|a| &a.stage == stage)
                .count();
            for a in artifacts[i..i + n].iter().take(SHOWN) {
                outln!(
                    "    {stage:<16} {:>12}  {}  {}",
                    a.bytes,
                    &a.blake3[..12],
                    a.path
                );
            }
            if n > SHOWN {
                outln!("    {stage:<16} ... and {} more files", n - SHOWN);
            }
            i += n;
        }
    }
    Ok(())
}

pub fn metrics(args: &RecordsArgs, stage: &str) -> Result<(), Error> {
    let records = open_records(args)?;
    outln!("step\tname\tvalue");
    for m in records.metrics(stage)? {
        outln!("{}\t{}\t{}", m.step, m.name, m.value);
    }
    Ok(())
}
