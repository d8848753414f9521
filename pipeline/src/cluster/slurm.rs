//! `pipeline submit`: Slurm batch scripts that run a workflow with `srun
//! --mpi=pmix` (or another launcher) — the whole workflow in one
//! allocation, or (`--per-stage`) each stage that is not up to date as its
//! own job, with its own resources, chained with `afterok` dependencies.
//!
//! Every job that has a time limit asks Slurm for a warning signal
//! (`--signal=B:USR1@<lead>`); the script passes it on to the ranks, a
//! training stage writes a checkpoint at its next step and exits with
//! [`crate::Error::PREEMPTED`], and the script requeues the job, which
//! resumes from the checkpoint (`--resume`).

use std::path::{Path, PathBuf};

use crate::engine::plan::{self, Selection};
use crate::records::Records;
use crate::workflow::Workflow;
use crate::Error;

use super::jobscript::*;
pub use super::jobscript::{script, SubmitOptions};

/// What `pipeline submit` wrote and what sbatch said.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Each script, its text, and the job id (none with `--dry-run`).
    pub jobs: Vec<(PathBuf, String, Option<String>)>,
    /// The run the jobs record into (`--per-stage`).
    pub run_id: Option<i64>,
    /// Stages left out as up to date (`--per-stage`).
    pub up_to_date: Vec<String>,
}

/// Writes the script(s) and, unless `dry_run`, submits them with sbatch.
pub fn submit(
    wf: &Workflow,
    opts: &SubmitOptions,
    selection: &Selection,
    overrides: &[String],
    argv: &str,
) -> Result<Submitted, Error> {
    let pipeline = crate::launcher::program()
        .map_err(|e| Error::Submit(format!("cannot find the pipeline binary: {e}")))?;
    let cwd =
        std::env::current_dir().map_err(|e| Error::Submit(format!("no current directory: {e}")))?;
    if !opts.per_stage {
        let text = script(wf, opts, selection, &pipeline, &cwd, overrides)?;
        let path = opts.script.clone().unwrap_or_else(|| {
            wf.workdir
                .join(".pipeline")
                .join(format!("{}.sbatch", wf.name))
        });
        let id = write_and_submit(&path, &text, opts.dry_run)?;
        return Ok(Submitted {
            jobs: vec![(path, text, id)],
            run_id: None,
            up_to_date: Vec::new(),
        });
    }
    check_word("workflow name", &wf.name)?;
    let lines = plan::plan(wf, selection)?;
    let (to_run, fresh): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l.decision.run);
    let up_to_date: Vec<String> = fresh.into_iter().map(|l| l.stage).collect();
    if to_run.is_empty() {
        return Ok(Submitted {
            jobs: Vec::new(),
            run_id: None,
            up_to_date,
        });
    }
    // The submission is one run in the records; every job joins it.
    let run_id = if opts.dry_run {
        0
    } else {
        let records = Records::open(&wf.workdir)?;
        let ranks = to_run
            .iter()
            .filter_map(|l| wf.stages.iter().find(|s| s.name == l.stage))
            .map(|s| {
                s.resources
                    .ranks(s.kind, opts.nodes.get() * opts.ranks_per_node.get())
            })
            .max()
            .unwrap_or(1);
        let id = records.begin_run(&wf.name, &wf.file.to_string_lossy(), ranks, argv)?;
        let resolved = serde_json::to_string_pretty(&wf.resolved()).expect("JSON serialises");
        records.set_resolved(id, &resolved)?;
        id
    };
    let dir = opts.script.clone().unwrap_or_else(|| {
        wf.workdir
            .join(".pipeline")
            .join(format!("submit-{run_id}"))
    });
    let mut jobs = Vec::new();
    let mut ids: std::collections::HashMap<String, String> = Default::default();
    for line in &to_run {
        let stage = wf
            .stages
            .iter()
            .find(|s| s.name == line.stage)
            .expect("planned stages are the workflow's");
        let after: Vec<String> = stage
            .needs
            .iter()
            .filter_map(|n| ids.get(n).cloned())
            .collect();
        let job = stage_job(wf, stage, opts, selection, run_id, &after, overrides)?;
        let text = job.script(&opts.launcher, &pipeline, &cwd)?;
        let path = dir.join(format!("{}.sbatch", stage.name));
        match write_and_submit(&path, &text, opts.dry_run) {
            Ok(id) => {
                if let Some(id) = &id {
                    ids.insert(stage.name.clone(), id.clone());
                }
                jobs.push((path, text, id));
            }
            Err(e) => return Err(abandon(wf, run_id, opts.dry_run, &ids, e)),
        }
    }
    // The last job ends the run record (ok, or failed naming the stages
    // that did not complete) once every stage job has ended, however.
    let mut end = Job::default();
    end.directive("job-name", format!("{}.end", wf.name));
    end.directive("ntasks", 1);
    end.directive("cpus-per-task", 1);
    let all: Vec<String> = ids.values().cloned().collect();
    if !all.is_empty() {
        end.directive("dependency", format!("afterany:{}", all.join(":")));
    }
    common(
        &mut end,
        wf,
        opts,
        "slurm-%j-end.out",
        None,
        opts.partition.as_deref(),
    )?;
    end.args = vec![
        "end-run".into(),
        wf.file.to_string_lossy().into_owned(),
        "--run".into(),
        run_id.to_string(),
    ];
    for o in overrides {
        end.args.extend(["--set".into(), o.clone()]);
    }
    for l in &to_run {
        end.args.extend(["--stage".into(), l.stage.clone()]);
    }
    let text = end.script(&opts.launcher, &pipeline, &cwd)?;
    let path = dir.join("end.sbatch");
    match write_and_submit(&path, &text, opts.dry_run) {
        Ok(id) => jobs.push((path, text, id)),
        Err(e) => return Err(abandon(wf, run_id, opts.dry_run, &ids, e)),
    }
    Ok(Submitted {
        jobs,
        run_id: (!opts.dry_run).then_some(run_id),
        up_to_date,
    })
}

/// When a job was refused: cancels those already submitted and ends the
/// run record, so nothing runs under a run that no job would end.
fn abandon(
    wf: &Workflow,
    run_id: i64,
    dry_run: bool,
    ids: &std::collections::HashMap<String, String>,
    e: Error,
) -> Error {
    if !ids.is_empty() {
        let _ = std::process::Command::new("scancel")
            .args(ids.values())
            .output();
    }
    if let (false, Ok(records)) = (dry_run, Records::open(&wf.workdir)) {
        let _ = records.end_run(run_id, Some(&format!("submission failed: {e}")));
    }
    e
}

/// Writes `text` to `path` atomically and, unless `dry_run`, submits it;
/// returns the job id.
fn write_and_submit(path: &Path, text: &str, dry_run: bool) -> Result<Option<String>, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io("failed to create", dir))?;
    }
    sciflow_ingest::files::write_atomic(path, text.as_bytes())?;
    if dry_run {
        return Ok(None);
    }
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(path)
        .output()
        .map_err(|e| {
            Error::Submit(format!(
                "cannot run sbatch ({e}); the script is at {}; use --dry-run to only write it",
                path.display()
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Submit(format!(
            "sbatch refused {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // `--parsable` prints `id` or `id;cluster`.
    let answer = String::from_utf8_lossy(&out.stdout);
    let id = answer
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Submit(format!(
            "sbatch gave no job id for {}: `{}`",
            path.display(),
            answer.trim()
        )));
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn opts() -> SubmitOptions {
        SubmitOptions {
            nodes: NonZeroUsize::new(16).unwrap(),
            ranks_per_node: NonZeroUsize::new(4).unwrap(),
            cpus_per_rank: NonZeroUsize::new(8),
            gpus_per_rank: NonZeroUsize::new(1),
            time: Some("02:00:00".into()),
            account: Some("bbx-delta".into()),
            partition: Some("gpuA100x4".into()),
            script: None,
            launcher: "srun --mpi=pmix".into(),
            per_stage: false,
            warn_before: None,
            dry_run: true,
        }
    }

    #[test]
    fn the_script_asks_for_the_resources_and_runs_the_same_workflow_with_srun() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../workflows/quickstart.yaml"
        ))
        .unwrap();
        let wf =
            crate::workflow::compile(&text, Path::new("workflows/quickstart.yaml"), &[]).unwrap();
        let s = script(
            &wf,
            &opts(),
            &Selection::default(),
            Path::new("/opt/sciflow/bin/pipeline"),
            Path::new("/home/u/my project"),
            &["params.epochs=30".into()],
        )
        .unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#!/bin/bash");
        for want in [
            "#SBATCH --job-name=quickstart",
            "#SBATCH --nodes=16",
            "#SBATCH --ntasks-per-node=4",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --time=02:00:00",
            "#SBATCH --account=bbx-delta",
            "#SBATCH --partition=gpuA100x4",
            "#SBATCH --output=runs/quickstart/.pipeline/slurm-%j.out",
            "cd '/home/u/my project'",
            "srun --mpi=pmix /opt/sciflow/bin/pipeline run workflows/quickstart.yaml --set params.epochs=30 $resume &",
            "#SBATCH --signal=B:USR1@600",
        ] {
            assert!(lines.contains(&want), "missing `{want}` in\n{s}");
        }
        // Directives must precede the first command for sbatch to read them.
        let first_cmd = lines
            .iter()
            .position(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(lines[first_cmd..].iter().all(|l| !l.starts_with("#SBATCH")));

        let render = |o: &SubmitOptions| {
            script(
                &wf,
                o,
                &Selection::default(),
                Path::new("p"),
                Path::new("."),
                &[],
            )
        };
        let mut bad = opts();
        bad.time = Some("2 hours".into());
        assert!(render(&bad).is_err());
        let mut bad = opts();
        bad.launcher = "srun; rm -rf /".into();
        assert!(render(&bad).is_err());
        // A 1-minute limit is warned 10 s ahead (Slurm may warn 30 s earlier
        // still); a lead Slurm would honour at the job's start is refused.
        let mut short = opts();
        short.time = Some("1".into());
        let s = render(&short).unwrap();
        assert!(s.contains("#SBATCH --signal=B:USR1@10\n"), "{s}");
        short.warn_before = Some(40);
        let e = render(&short).unwrap_err().to_string();
        assert!(e.contains("use less than 30"), "{e}");
        let mut mpirun = opts();
        mpirun.launcher = "mpirun --bind-to none".into();
        let s = render(&mpirun).unwrap();
        assert!(s.contains("\nmpirun --bind-to none p run"), "{s}");
    }
}
