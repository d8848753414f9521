//! Verbs about a workflow file: `list` the kinds, `validate`, `plan`, `dag`,
//! and `doctor`.

use std::path::Path;
use std::process::ExitCode;

use sciflow_pipeline::engine::plan::{self, Selection};
use sciflow_pipeline::stages::REGISTRY;
use sciflow_pipeline::workflow::{self, dag};
use sciflow_pipeline::Error;

use super::args::WorkflowArgs;
use super::out::flush_out;
use super::run::report;

pub fn list() {
    for kind in REGISTRY {
        outln!(
            "{}  ({})",
            kind.name,
            if kind.props.collective {
                "collective"
            } else {
                "rank 0"
            }
        );
        outln!("    {}", kind.summary);
        for o in kind.outputs {
            outln!("    output `{}`: {}", o.name, o.doc);
        }
        outln!("    example:");
        for line in kind.example.lines() {
            outln!("      {line}");
        }
        outln!();
    }
}

pub fn doctor(workflow: Option<&Path>, set: &[String]) -> ExitCode {
    let wf = match workflow.map(|w| workflow::load(w, set)).transpose() {
        Ok(wf) => wf,
        Err(e) => return report(&e, None),
    };
    let items = sciflow_pipeline::cluster::doctor::examine(wf.as_ref());
    for i in &items {
        outln!("{i}");
    }
    flush_out();
    if sciflow_pipeline::cluster::doctor::healthy(&items) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn validate(args: &WorkflowArgs) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    outln!(
        "{}: valid, {} stages:",
        args.workflow.display(),
        wf.stages.len()
    );
    for s in &wf.stages {
        let needs = if s.needs.is_empty() {
            String::new()
        } else {
            format!(" after {}", s.needs.join(", "))
        };
        outln!("  {} ({}){needs}", s.name, s.kind.name);
    }
    Ok(())
}

pub fn plan(args: &WorkflowArgs, selection: &Selection) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    let lines = plan::plan(&wf, selection)?;
    let (run, fresh): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.decision.run);
    if run.is_empty() {
        outln!("nothing to run: {} stage(s) up to date", fresh.len());
    }
    // What each stage would take on this machine: one rank, all its cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_name: std::collections::HashMap<&str, &workflow::Stage> =
        wf.stages.iter().map(|s| (s.name.as_str(), s)).collect();
    let resources = |name: &str| {
        by_name
            .get(name)
            .map(|s| s.resources.describe(s.kind, 1, cores))
            .unwrap_or_default()
    };
    for l in &run {
        outln!("run    {}  [{}]", l.stage, resources(&l.stage));
        for r in &l.decision.reasons {
            outln!("         {r}");
        }
    }
    for l in &fresh {
        outln!("fresh  {}  [{}]", l.stage, resources(&l.stage));
    }
    Ok(())
}

pub fn dag(args: &WorkflowArgs, format: dag::Format) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    outln!("{}", dag::render(&wf, format).trim_end());
    Ok(())
}
