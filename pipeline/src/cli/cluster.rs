//! `submit` to Slurm, and the hidden `end-run` its last job calls.

use sciflow_pipeline::cluster::slurm::{self, SubmitOptions};
use sciflow_pipeline::engine::plan::Selection;
use sciflow_pipeline::records::Records;
use sciflow_pipeline::workflow;
use sciflow_pipeline::Error;

use super::args::WorkflowArgs;

pub fn submit(
    args: &WorkflowArgs,
    selection: &Selection,
    opts: &SubmitOptions,
) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    let argv: Vec<String> = std::env::args().collect();
    let done = slurm::submit(&wf, opts, selection, &args.overrides(), &argv.join(" "))?;
    if opts.per_stage && done.jobs.is_empty() {
        outln!(
            "nothing to submit: {} stage(s) up to date",
            done.up_to_date.len()
        );
        return Ok(());
    }
    for (path, text, id) in &done.jobs {
        match id {
            None => {
                outln!("# {}", path.display());
                outln!("{}", text.trim_end());
            }
            Some(id) => outln!("Submitted batch job {id} ({})", path.display()),
        }
    }
    if opts.dry_run {
        eprintln!(
            "wrote {} script(s) (not submitted: --dry-run)",
            done.jobs.len()
        );
    }
    if let Some(run) = done.run_id {
        eprintln!(
            "run {run}: {} stage job(s); `pipeline show {run} -w {}` follows it",
            done.jobs.len() - 1,
            wf.workdir.display()
        );
    }
    Ok(())
}

pub fn end_run(args: &WorkflowArgs, run: i64, stages: &[String]) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    let records = Records::open_existing(&wf.workdir)?;
    let missing = records.end_submitted_run(run, stages)?;
    match sciflow_pipeline::report::write(&records, &wf.workdir, Some(run), None) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("warning: no report for run {run}: {e}"),
    }
    if missing.is_empty() {
        outln!("run {run}: ok");
    } else {
        outln!("run {run}: failed; not completed: {}", missing.join(", "));
    }
    Ok(())
}
