//! `pipeline submit`: a Slurm batch script that runs the same workflow with
//! `srun --mpi=pmix` (or another launcher).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::workflow::Workflow;
use crate::Error;

/// What to ask Slurm for.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitOptions {
    /// Nodes.
    #[arg(long, default_value = "1")]
    pub nodes: NonZeroUsize,
    /// MPI ranks per node (one per GPU, or one per core group).
    #[arg(long, default_value = "1")]
    pub ranks_per_node: NonZeroUsize,
    /// CPU cores per rank (sets libtorch's threads through PIPELINE_THREADS).
    #[arg(long)]
    pub cpus_per_rank: Option<NonZeroUsize>,
    /// GPUs per rank.
    #[arg(long)]
    pub gpus_per_rank: Option<NonZeroUsize>,
    /// Wall-time limit, in Slurm's format (e.g. 02:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Partition (queue).
    #[arg(long)]
    pub partition: Option<String>,
    /// Where to write the script (default: <workdir>/.pipeline/<name>.sbatch).
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// The command that starts the ranks in the job: `srun --mpi=pmix`
    /// connects them through PMIx (Open MPI and MPICH builds; Debian's Slurm
    /// defaults to `--mpi=none`, which would start N unconnected copies), or
    /// e.g. `mpirun`.
    #[arg(long, default_value = "srun --mpi=pmix")]
    pub launcher: String,
    /// Write the script and print it; do not call sbatch.
    #[arg(long)]
    pub dry_run: bool,
}

/// Quotes a word for a POSIX shell.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn check_word(what: &str, v: &str) -> Result<(), Error> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Submit(format!("{what} `{v}` must be one word")));
    }
    Ok(())
}

/// The batch script text. `pipeline` is the binary to run, `cwd` the
/// directory the job starts in, `overrides` the `--set` values to pass on.
pub fn script(
    wf: &Workflow,
    opts: &SubmitOptions,
    pipeline: &Path,
    cwd: &Path,
    overrides: &[String],
) -> Result<String, Error> {
    let mut s = String::from("#!/bin/bash\n");
    let mut directive = |k: &str, v: &str| s.push_str(&format!("#SBATCH --{k}={v}\n"));
    check_word("workflow name", &wf.name)?;
    directive("job-name", &wf.name);
    directive("nodes", &opts.nodes.to_string());
    directive("ntasks-per-node", &opts.ranks_per_node.to_string());
    if let Some(c) = opts.cpus_per_rank {
        directive("cpus-per-task", &c.to_string());
    }
    if let Some(g) = opts.gpus_per_rank {
        directive("gpus-per-task", &g.to_string());
    }
    if let Some(t) = &opts.time {
        check_word("--time", t)?;
        directive("time", t);
    }
    if let Some(a) = &opts.account {
        check_word("--account", a)?;
        directive("account", a);
    }
    if let Some(p) = &opts.partition {
        check_word("--partition", p)?;
        directive("partition", p);
    }
    let log = wf.workdir.join(".pipeline").join("slurm-%j.out");
    directive("output", &sh_quote(&log.to_string_lossy()));
    s.push_str("\nset -euo pipefail\n");
    s.push_str(&format!("cd {}\n", sh_quote(&cwd.to_string_lossy())));
    s.push_str("# One libtorch thread pool per rank, sized to the cores Slurm gives it.\n");
    s.push_str("export PIPELINE_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
    if opts.launcher.trim().is_empty() || opts.launcher.contains(['\n', ';', '&', '|']) {
        return Err(Error::Submit(format!(
            "--launcher `{}` must be a command and its options (e.g. `srun --mpi=pmix`)",
            opts.launcher
        )));
    }
    let mut cmd: Vec<String> = opts.launcher.split_whitespace().map(sh_quote).collect();
    cmd.extend([
        sh_quote(&pipeline.to_string_lossy()),
        "run".into(),
        sh_quote(&wf.file.to_string_lossy()),
    ]);
    for o in overrides {
        cmd.push("--set".into());
        cmd.push(sh_quote(o));
    }
    s.push_str(&cmd.join(" "));
    s.push('\n');
    Ok(s)
}

/// Writes the script and, unless `dry_run`, submits it with sbatch; returns
/// the script path and sbatch's answer.
pub fn submit(
    wf: &Workflow,
    opts: &SubmitOptions,
    overrides: &[String],
) -> Result<(PathBuf, String, Option<String>), Error> {
    let pipeline = std::env::current_exe()
        .map_err(|e| Error::Submit(format!("cannot find the pipeline binary: {e}")))?;
    let cwd =
        std::env::current_dir().map_err(|e| Error::Submit(format!("no current directory: {e}")))?;
    let text = script(wf, opts, &pipeline, &cwd, overrides)?;
    let path = opts.script.clone().unwrap_or_else(|| {
        wf.workdir
            .join(".pipeline")
            .join(format!("{}.sbatch", wf.name))
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io("failed to create", dir))?;
    }
    sciflow_ingest::files::write_atomic(&path, text.as_bytes())?;
    if opts.dry_run {
        return Ok((path, text, None));
    }
    let out = std::process::Command::new("sbatch")
        .arg(&path)
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
    Ok((
        path,
        text,
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "srun --mpi=pmix /opt/sciflow/bin/pipeline run workflows/quickstart.yaml --set params.epochs=30",
        ] {
            assert!(lines.contains(&want), "missing `{want}` in\n{s}");
        }
        // Directives must precede the first command for sbatch to read them.
        let first_cmd = lines
            .iter()
            .position(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(lines[first_cmd..].iter().all(|l| !l.starts_with("#SBATCH")));

        let mut bad = opts();
        bad.time = Some("2 hours".into());
        assert!(script(&wf, &bad, Path::new("p"), Path::new("."), &[]).is_err());
        let mut bad = opts();
        bad.launcher = "srun; rm -rf /".into();
        assert!(script(&wf, &bad, Path::new("p"), Path::new("."), &[]).is_err());
        let mut mpirun = opts();
        mpirun.launcher = "mpirun --bind-to none".into();
        let s = script(&wf, &mpirun, Path::new("p"), Path::new("."), &[]).unwrap();
        assert!(s.contains("\nmpirun --bind-to none p run"), "{s}");
    }
}
