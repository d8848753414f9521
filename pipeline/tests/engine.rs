//! The engine through the `pipeline` binary: caching and explanations,
//! selection flags, the lock, resume after kill -9, command stages, records,
//! and Slurm scripts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, pipeline, root};

/// A workflow of command stages: gen writes a file from an input; count reads it.
fn command_workflow(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("input.txt"), "a\nb\nc\n").unwrap();
    let wf = dir.join("cmd.yaml");
    std::fs::write(
        &wf,
        r#"version: 1
name: cmd
workdir: wd
params:
  suffix: x
stages:
  gen:
    uses: command
    with:
      argv: ["sh", "-c", "sed 's/$/${params.suffix}/' input.txt > {out}/lines.txt"]
      inputs: [input.txt]
      outputs: { lines: lines.txt }
  count:
    uses: command
    with:
      argv: ["wc -l < ${gen.lines} > $PIPELINE_OUT/count.txt"]
      shell: true
      outputs: { count: count.txt }
"#,
    )
    .unwrap();
    wf
}

#[test]
fn reruns_exactly_what_changed_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    let (_, err) = ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    assert!(err.contains("gen: running (command): never run"), "{err}");
    let wd = dir.path().join("wd");
    assert_eq!(
        std::fs::read_to_string(wd.join("gen/lines.txt")).unwrap(),
        "ax\nbx\ncx\n"
    );
    assert_eq!(
        std::fs::read_to_string(wd.join("count/count.txt"))
            .unwrap()
            .trim(),
        "3"
    );

    // Nothing changed: nothing runs.
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(
        plan.starts_with("nothing to run: 2 stage(s) up to date"),
        "{plan}"
    );
    let (_, err) = ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    assert!(err.contains("0 stage(s) run, 2 up to date"), "{err}");

    // A changed parameter: the plan names the key with old and new values.
    let (plan, _) = ok(pipeline(dir.path())
        .args(["plan"])
        .arg(&wf)
        .args(["--set", "params.suffix=y"])
        .output()
        .unwrap());
    assert!(plan.contains("run    gen"), "{plan}");
    assert!(plan.contains("stages.gen.with.argv.2"), "{plan}");
    assert!(plan.contains("upstream `gen` runs first"), "{plan}");

    // Another seed reruns every stage, saying so.
    let (plan, _) = ok(pipeline(dir.path())
        .arg("plan")
        .arg(&wf)
        .args(["--set", "seed=5"])
        .output()
        .unwrap());
    assert!(
        plan.contains("run    gen  [1 rank(s) x 1 thread(s)]\n         seed: 0 -> 5"),
        "{plan}"
    );

    // A changed input file (same size, so the stat cache must see the mtime).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("input.txt"), "a\nb\nd\n").unwrap();
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(plan.contains("input changed: input.txt"), "{plan}");
    let (_, err) = ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    // gen's output changed, but count's (a line count) did not: count reruns
    // because its input changed, and its output is byte-identical.
    assert!(
        err.contains("count: running (command): upstream `gen` output changed"),
        "{err}"
    );

    // A modified output is noticed.
    std::fs::write(wd.join("count/count.txt"), "999\n").unwrap();
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(
        plan.contains("output was modified since it was written"),
        "{plan}"
    );

    // Forcing, and selecting.
    let (plan, _) = ok(pipeline(dir.path())
        .arg("plan")
        .arg(&wf)
        .args(["--force", "gen", "--until", "gen"])
        .output()
        .unwrap());
    assert!(
        plan.contains("run    gen  [1 rank(s) x 1 thread(s)]\n         forced"),
        "{plan}"
    );
    assert!(
        !plan.contains("count"),
        "--until gen leaves count out: {plan}"
    );
    let (_, err) = ok(pipeline(dir.path())
        .arg("run")
        .arg(&wf)
        .args(["--only", "count"])
        .output()
        .unwrap());
    assert!(err.contains("1 stage(s) run, 0 up to date"), "{err}");
    assert_eq!(
        std::fs::read_to_string(wd.join("count/count.txt"))
            .unwrap()
            .trim(),
        "3"
    );

    // The records hold every run, and the query commands read them.
    let (hist, _) = ok(pipeline(dir.path())
        .args(["history", "-w"])
        .arg(&wf)
        .output()
        .unwrap());
    assert_eq!(hist.lines().count(), 1 + 4, "{hist}");
    // The workflow as a positional argument, as `run` takes it.
    let (positional, _) = ok(pipeline(dir.path())
        .arg("history")
        .arg(&wf)
        .output()
        .unwrap());
    assert_eq!(positional, hist);
    let (show, _) = ok(pipeline(dir.path())
        .args(["show", "2", "-w", "wd"])
        .output()
        .unwrap());
    assert!(show.contains("gen              skipped"), "{show}");
}

#[test]
fn portable_mode_pins_the_kernels_reruns_what_ran_natively_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());

    let (plan, _) = ok(pipeline(dir.path())
        .arg("plan")
        .arg(&wf)
        .args(["--reproducible", "portable"])
        .output()
        .unwrap());
    assert!(
        plan.contains(
            "run    gen  [1 rank(s) x 1 thread(s)]\n         reproducible: native -> portable"
        ),
        "{plan}"
    );
    let (_, err) = ok(pipeline(dir.path())
        .args(["-v", "run"])
        .arg(&wf)
        .args(["--set", "reproducible=portable"])
        .output()
        .unwrap());
    assert!(err.contains(", reproducible: portable"), "{err}");
    assert!(
        err.contains(
            "rank 0: reproducible: portable; CPU kernels: ATen AVX2, oneDNN <= AVX2, MKL branch COMPATIBLE"
        ),
        "{err}"
    );
    assert!(err.contains("2 stage(s) run, 0 up to date"), "{err}");
    // The run records hold the mode with the resolved workflow.
    let (report, _) = ok(pipeline(dir.path())
        .args(["report", "-w", "wd", "-o"])
        .arg(dir.path().join("r.html"))
        .output()
        .unwrap());
    let html = std::fs::read_to_string(report.trim()).unwrap();
    assert!(
        html.contains("reproducible: portable"),
        "report lacks the mode"
    );

    // Fresh in the same mode; back to native reruns, saying so.
    let (plan, _) = ok(pipeline(dir.path())
        .arg("plan")
        .arg(&wf)
        .args(["--reproducible", "portable"])
        .output()
        .unwrap());
    assert!(plan.starts_with("nothing to run"), "{plan}");
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(plan.contains("reproducible: portable -> native"), "{plan}");

    // A mode that does not exist is a workflow error naming the choices.
    let yaml = std::fs::read_to_string(&wf)
        .unwrap()
        .replace("workdir: wd", "workdir: wd\nreproducible: fast");
    std::fs::write(&wf, yaml).unwrap();
    let out = pipeline(dir.path())
        .arg("validate")
        .arg(&wf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reproducible: expected `native`") && err.contains("or `portable`"),
        "{err}"
    );
}

#[test]
fn quiet_runs_print_nothing_and_verbose_runs_say_more() {
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    let (out, err) = ok(pipeline(dir.path())
        .args(["-q", "run"])
        .arg(&wf)
        .output()
        .unwrap());
    assert!(
        out.is_empty() && err.is_empty(),
        "stdout {out:?} stderr {err:?}"
    );
    let forced = |flag: &str| {
        let mut c = pipeline(dir.path());
        if !flag.is_empty() {
            c.arg(flag);
        }
        ok(c.arg("run")
            .arg(&wf)
            .args(["--force", "gen"])
            .output()
            .unwrap())
        .1
    };
    let err = forced("");
    assert!(err.contains("INFO") && !err.contains("DEBUG"), "{err}");
    assert!(forced("-v").contains("DEBUG"));
    // Not a terminal (a Slurm output file): plain text.
    assert!(
        !err.contains('\x1b'),
        "colour escapes in a piped log: {err}"
    );
}

#[test]
fn logs_are_coloured_on_a_terminal_unless_no_color_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    // `script` runs the command on a pseudo-terminal and copies what it writes.
    let on_terminal = |no_color: Option<&str>| {
        let mut c = Command::new("script");
        c.current_dir(dir.path()).args([
            "-qec",
            &format!(
                "{} run {} --force gen",
                env!("CARGO_BIN_EXE_pipeline"),
                wf.display()
            ),
            "/dev/null",
        ]);
        c.env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        ok(c.output().unwrap()).0
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("gen: running"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("gen: running"), "{plain}");
    assert!(
        !plain.contains('\x1b'),
        "colour despite NO_COLOR: {plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_terminal(Some("")).contains("\x1b["));
}

#[test]
fn doctor_gives_a_verdict_per_item_and_fails_on_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let doctor = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = pipeline(dir.path());
        c.arg("doctor")
            .args(args)
            .env_remove("SLURM_STEP_NUM_TASKS");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let line = |report: &str, name: &str| -> String {
        report
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name.split(' ').next().unwrap()))
            .unwrap_or_else(|| panic!("no {name} line: {report}"))
            .to_string()
    };
    let (code, report) = doctor(&[], &[("PIPELINE_THREADS", "3")]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        line(&report, "libtorch").starts_with("ok       libtorch     2.11."),
        "{report}"
    );
    assert!(line(&report, "MPI").contains("Open MPI"), "{report}");
    assert!(
        line(&report, "MPI").contains("not under a launcher"),
        "{report}"
    );
    assert!(
        line(&report, "HDF5").starts_with("ok       HDF5         2."),
        "{report}"
    );
    assert!(
        line(&report, "cfitsio").starts_with("ok       cfitsio      3."),
        "{report}"
    );
    assert!(
        line(&report, "threads").contains("3 per rank (PIPELINE_THREADS=3)"),
        "{report}"
    );
    assert!(
        line(&report, "CPU kernels").contains("reproducible: native"),
        "{report}"
    );
    let gpus = line(&report, "GPUs");

    // A workflow's needs: a GPU where none is seen is missing.
    let quickstart = root().join("workflows/quickstart.yaml");
    let qs = quickstart.to_str().unwrap();
    let (code, report) = doctor(&[qs, "--set", "params.device=cuda"], &[]);
    if gpus.contains("none seen") {
        assert_eq!(code, Some(1), "{report}");
        let l = line(&report, "GPUs");
        assert!(
            l.starts_with("MISSING  GPUs") && l.contains("stage train"),
            "{report}"
        );
    } else {
        assert_eq!(code, Some(0), "{report}");
    }
    let (code, report) = doctor(&[qs, "--set", "reproducible=portable"], &[]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        line(&report, "CPU kernels").contains("MKL branch COMPATIBLE"),
        "{report}"
    );

    // srun tasks that MPI does not connect: missing, with how to launch.
    let (code, report) = doctor(&[], &[("SLURM_STEP_NUM_TASKS", "2")]);
    assert_eq!(code, Some(1), "{report}");
    let l = line(&report, "MPI");
    assert!(
        l.starts_with("MISSING  MPI") && l.contains("srun --mpi=pmix"),
        "{report}"
    );
}

#[test]
fn command_stage_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("bad.yaml");
    std::fs::write(
        &wf,
        "version: 1\nname: b\nworkdir: wd\nstages:\n  a:\n    uses: command\n    with:\n      argv: [sh, -c, 'echo oops >&2; exit 3']\n  b:\n    uses: command\n    with:\n      argv: ['true']\n      outputs: { x: ../escape.txt }\n",
    )
    .unwrap();
    let out = pipeline(dir.path())
        .arg("validate")
        .arg(&wf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:13:") && err.contains("stages.b.with.outputs.x"),
        "{err}"
    );

    std::fs::write(&wf, "version: 1\nname: b\nworkdir: wd\nstages:\n  a:\n    uses: command\n    with:\n      argv: [sh, -c, 'echo oops >&2; exit 3']\n").unwrap();
    let out = pipeline(dir.path()).arg("run").arg(&wf).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stage `a` failed") && err.contains("exit status: 3") && err.contains("oops"),
        "{err}"
    );
    assert!(!dir.path().join("wd/a").exists());

    std::fs::write(&wf, "version: 1\nname: b\nworkdir: wd\nstages:\n  a:\n    uses: command\n    with:\n      argv: ['true']\n      outputs: { x: x.txt }\n").unwrap();
    let out = pipeline(dir.path()).arg("run").arg(&wf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not write its declared output `x`"),
        "{err}"
    );
}

#[test]
fn a_second_run_on_a_locked_workdir_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("slow.yaml");
    std::fs::write(&wf, "version: 1\nname: s\nworkdir: wd\nstages:\n  a:\n    uses: command\n    with:\n      argv: [sleep, '3']\n").unwrap();
    let mut first = pipeline(dir.path())
        .arg("run")
        .arg(&wf)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join("wd/.tmp/a");
    let start = Instant::now();
    while !lock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "first run never started its stage"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = pipeline(dir.path()).arg("run").arg(&wf).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is locked by another run (pid"), "{err}");
    assert!(first.wait().unwrap().success());
}

/// The small quickstart used by the resume test.
fn quickstart(workdir: &Path) -> Vec<String> {
    let mut v = vec![
        "run".to_string(),
        root()
            .join("workflows/quickstart.yaml")
            .to_string_lossy()
            .into(),
    ];
    for s in [
        format!("workdir={}", workdir.display()),
        "params.per_class=200".into(),
        "params.epochs=8".into(),
        "params.image_size=32".into(),
    ] {
        v.push("--set".into());
        v.push(s);
    }
    v
}

#[test]
fn switching_to_portable_mode_reruns_the_libtorch_stages_only() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let mut args = quickstart(&wd);
    args.extend(["--set".into(), "params.epochs=1".into()]);
    ok(pipeline(dir.path()).args(&args).output().unwrap());
    args[0] = "plan".into();
    args.extend(["--reproducible".into(), "portable".into()]);
    let (plan, _) = ok(pipeline(dir.path()).args(&args).output().unwrap());
    // Ingest links no libtorch: its shards are the same in both modes.
    assert!(plan.contains("fresh  galaxies"), "{plan}");
    assert!(plan.contains("fresh  dataset"), "{plan}");
    for stage in ["train", "evaluate"] {
        assert!(plan.contains(&format!("run    {stage}")), "{plan}");
    }
    assert!(plan.contains("reproducible: native -> portable"), "{plan}");
}

fn shard_and_weight_bytes(wd: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wd.join("dataset/shards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.push(wd.join("train/weights.safetensors"));
    files.push(wd.join("evaluate/predictions.parquet"));
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn kill_9_during_training_then_resume_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(pipeline(dir.path()).args(quickstart(&a)).output().unwrap());

    let mut child = pipeline(dir.path())
        .args(quickstart(&b))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let training = b.join(".tmp/train");
    let start = Instant::now();
    while !training.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before training"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !b.join("train").exists(),
        "no training output under its final name"
    );
    assert!(b.join("dataset/dataset.json").exists());

    let (plan, _) = ok(pipeline(dir.path())
        .arg("plan")
        .args(&quickstart(&b)[1..])
        .output()
        .unwrap());
    assert!(
        plan.contains("run    train  [") && plan.contains("]\n         never run"),
        "{plan}"
    );
    assert!(
        plan.contains("fresh  galaxies") && plan.contains("fresh  dataset"),
        "{plan}"
    );
    let (_, err) = ok(pipeline(dir.path()).args(quickstart(&b)).output().unwrap());
    assert!(err.contains("2 stage(s) run, 2 up to date"), "{err}");
    let (hist, _) = ok(pipeline(dir.path())
        .args(["history", "-w"])
        .arg(&b)
        .output()
        .unwrap());
    assert!(
        hist.contains("interrupted"),
        "the killed run is marked: {hist}"
    );
    let metrics = |stage: &str| {
        let out = pipeline(dir.path())
            .args(["metrics", stage, "-w"])
            .arg(&b)
            .output()
            .unwrap();
        ok(out).0
    };
    let m = metrics("train");
    assert!(m.starts_with("step\tname\tvalue\n"), "{m}");
    let per_epoch = m.lines().filter(|l| l.contains("\tval_accuracy\t")).count();
    assert_eq!(per_epoch, 8, "one per epoch: {m}");
    assert!(metrics("evaluate").contains("0\taccuracy\t"));

    let (x, y) = (shard_and_weight_bytes(&a), shard_and_weight_bytes(&b));
    assert_eq!(x.len(), y.len());
    for ((na, ba), (nb, bb)) in x.iter().zip(&y) {
        assert_eq!(na, nb);
        assert!(
            ba == bb,
            "{na} differs between the uninterrupted and the resumed run"
        );
    }
}

#[test]
fn submit_dry_run_writes_an_sbatch_script() {
    let dir = tempfile::tempdir().unwrap();
    let wf = root().join("workflows/quickstart.yaml");
    let script = dir.path().join("job.sbatch");
    let (text, err) = ok(pipeline(dir.path())
        .arg("submit")
        .arg(&wf)
        .args([
            "--nodes",
            "2",
            "--ranks-per-node",
            "4",
            "--time",
            "01:00:00",
            "--dry-run",
            "--script",
        ])
        .arg(&script)
        .args(["--set", "params.epochs=3"])
        .output()
        .unwrap());
    assert!(err.contains("not submitted"), "{err}");
    let on_disk = std::fs::read_to_string(&script).unwrap();
    // stdout: `# <path>`, then the script.
    let (head, printed) = text.split_once('\n').unwrap();
    assert_eq!(head, format!("# {}", script.display()));
    assert_eq!(on_disk.trim_end(), printed.trim_end());
    assert!(
        on_disk.contains("#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=4\n"),
        "{on_disk}"
    );
    assert!(
        on_disk.contains(" run ") && on_disk.contains("quickstart.yaml --set params.epochs=3"),
        "{on_disk}"
    );
    // srun connects the ranks through PMIx, not Debian's default --mpi=none.
    assert!(on_disk.contains("\nsrun --mpi=pmix "), "{on_disk}");
    // bash accepts its syntax.
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The release archive's layout around the binary this suite built:
/// `bin/pipeline` from scripts/launcher.sh, `libexec/pipeline` the binary.
fn archive_layout(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("scripts/launcher.sh"))
        .unwrap()
        .replace("@PROGRAM@", "pipeline");
    for sub in ["bin", "libexec", "lib"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pipeline"), dir.join("libexec/pipeline"))
        .unwrap();
    let launcher = dir.join("bin/pipeline");
    std::fs::write(&launcher, text).unwrap();
    let mut perm = std::fs::metadata(&launcher).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&launcher, perm).unwrap();
    launcher
}

#[test]
fn the_release_launcher_finds_libtorch_and_job_scripts_start_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = archive_layout(&dir.path().join("sciflow"));
    let libtorch = std::env::var("LIBTORCH").expect("LIBTORCH is unset: run scripts/setup.sh");

    // Found through the torch package of the Python it is pointed at (no
    // LIBTORCH): doctor names that libtorch.
    let (report, _) = ok(Command::new(&launcher)
        .current_dir(dir.path())
        .env_remove("LIBTORCH")
        .env("SCIFLOW_PYTHON", common::python())
        .arg("doctor")
        .output()
        .unwrap());
    let torch_line = report.lines().find(|l| l.contains(" libtorch ")).unwrap();
    assert!(
        torch_line.starts_with("ok ") && torch_line.contains("2.11."),
        "{report}"
    );

    // A LIBTORCH that is not a libtorch folder, and a Python without torch:
    // a message that says what to do, and no start.
    let out = Command::new(&launcher)
        .env("LIBTORCH", dir.path())
        .arg("--version")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(err.contains("libtorch_cpu.so does not exist"), "{err}");
    let out = Command::new(&launcher)
        .env_remove("LIBTORCH")
        .env("SCIFLOW_PYTHON", "/bin/false")
        .arg("--version")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(err.contains("pip install torch==2.11.0"), "{err}");

    // The job script runs the launcher, not the bare binary in libexec/.
    let script = dir.path().join("job.sbatch");
    ok(Command::new(&launcher)
        .current_dir(dir.path())
        .env("LIBTORCH", &libtorch)
        .arg("submit")
        .arg(root().join("workflows/quickstart.yaml"))
        .args(["--dry-run", "--script"])
        .arg(&script)
        .output()
        .unwrap());
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains(&format!("{} run ", launcher.display())),
        "{text}"
    );
}

#[test]
fn dag_prints_dot_and_mermaid() {
    let dir = tempfile::tempdir().unwrap();
    let wf = root().join("workflows/quickstart.yaml");
    let (dot, _) = ok(pipeline(dir.path()).arg("dag").arg(&wf).output().unwrap());
    assert!(
        dot.starts_with("digraph \"quickstart\"") && dot.contains("\"train\" -> \"evaluate\";"),
        "{dot}"
    );
    let (mm, _) = ok(pipeline(dir.path())
        .arg("dag")
        .arg(&wf)
        .args(["--format", "mermaid"])
        .output()
        .unwrap());
    assert!(mm.contains("s_train --> s_evaluate"), "{mm}");
}

#[test]
fn a_gpu_asked_for_where_there_is_none_stops_the_run_before_any_stage() {
    // The device check needs a machine without a GPU; on one with a GPU
    // libtorch sees it and this workflow would run, so the test asserts
    // what the machine is first instead of passing silently.
    assert_eq!(
        sciflow_train::cuda::device_count(),
        0,
        "this test checks the error on a machine without a CUDA device"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gpu.yaml"),
        "version: 1\nname: gpu\nworkdir: wd\nstages:\n\
         \x20 first:\n    uses: command\n    with:\n      argv: [\"true\"]\n\
         \x20 train:\n    uses: train.classifier\n    with:\n      data: ${first.dir}\n\
         \x20     epochs: 1\n      device: cuda\n",
    )
    .unwrap();
    let out = pipeline(dir.path())
        .args(["run", "gpu.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one line: {stderr}");
    assert!(
        errors[0].contains("stage train") && errors[0].contains("no CUDA device"),
        "{stderr}"
    );
    // Nothing ran: not even the stage before it.
    assert!(!dir.path().join("wd/first").exists(), "{stderr}");
}

#[test]
fn srun_tasks_without_mpi_stop_at_once_and_say_how_to_launch() {
    // What `srun -n 2 pipeline run` does where srun defaults to --mpi=none:
    // two processes, each told it is one of two tasks, each alone in MPI.
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    let out = pipeline(dir.path())
        .arg("run")
        .arg(&wf)
        .env("SLURM_STEP_NUM_TASKS", "2")
        .env("SLURM_PROCID", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("srun started 2 tasks") && stderr.contains("srun --mpi=pmix"),
        "{stderr}"
    );
    assert!(!dir.path().join("wd").exists(), "nothing ran: {stderr}");
}

/// A one-node Slurm started by scripts/slurm-local.sh, stopped when
/// dropped; one test at a time has it.
struct LocalSlurm {
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl LocalSlurm {
    fn start() -> LocalSlurm {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        let out = Command::new("bash")
            .arg(root().join("scripts/slurm-local.sh"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "Slurm did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LocalSlurm { _turn: turn }
    }
}

impl Drop for LocalSlurm {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/slurm-local.sh"))
            .arg("stop")
            .output();
    }
}

#[test]
fn submit_under_a_real_slurm_runs_the_workflow_as_two_ranks() {
    let _slurm = LocalSlurm::start();
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let (so, se) = ok(pipeline(dir.path())
        .arg("submit")
        .arg(root().join("workflows/quickstart.yaml"))
        .args([
            "--nodes",
            "1",
            "--ranks-per-node",
            "2",
            "--cpus-per-rank",
            "1",
        ])
        .args(["--set", &format!("workdir={}", wd.display())])
        .args(["--set", "params.per_class=100", "--set", "params.epochs=2"])
        .args(["--set", "params.image_size=32"])
        .output()
        .unwrap());
    let out = format!("{so} {se}");
    let job = out
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in `{out}`"))
        .to_string();
    wait_for_jobs(std::slice::from_ref(&job), Duration::from_secs(180));
    let log = std::fs::read_to_string(wd.join(format!(".pipeline/slurm-{job}.out")))
        .unwrap_or_else(|e| panic!("no job log: {e}"));
    assert!(log.contains("2 rank(s), 1 core(s) per rank"), "{log}");
    assert!(wd.join("evaluate/metrics.json").is_file(), "{log}");
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("train/model.json")).unwrap()).unwrap();
    assert_eq!(model["world_size"], 2, "{log}");
}

/// Independent stages `a` and `b` that record when they start and end, a
/// stage `bad` that fails first, `after_bad` that needs it, and `c` that
/// needs `a` and `b`.
fn parallel_workflow(dir: &Path) -> PathBuf {
    let wf = dir.join("par.yaml");
    let timed = "date +%s.%N > {out}/start; sleep 1; date +%s.%N > {out}/end";
    std::fs::write(
        &wf,
        format!(
            r#"version: 1
name: par
workdir: wd
stages:
  bad:
    uses: command
    with: {{ argv: [sh, -c, "echo no input >&2; exit 3"] }}
  after_bad:
    uses: command
    needs: [bad]
    with: {{ argv: ["true"] }}
  a:
    uses: command
    with: {{ argv: [sh, -c, "{timed}"] }}
  b:
    uses: command
    with: {{ argv: [sh, -c, "{timed}"] }}
  c:
    uses: command
    needs: [a, b]
    with: {{ argv: ["true"] }}
"#
        ),
    )
    .unwrap();
    wf
}

/// When stage `s` of workdir `wd` started and ended (Unix seconds).
fn interval(wd: &Path, s: &str) -> (f64, f64) {
    let read = |f: &str| -> f64 {
        std::fs::read_to_string(wd.join(s).join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (read("start"), read("end"))
}

#[test]
fn jobs_run_independent_stages_side_by_side_and_keep_going_finishes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let wf = parallel_workflow(dir.path());
    let wd = dir.path().join("wd");

    // Without --keep-going the first failure stops the run: with one core,
    // `bad` (first in order) fails and nothing else starts.
    let out = pipeline(dir.path())
        .args(["run", "-j", "1"])
        .arg(&wf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stage `bad` failed"), "{err}");
    for s in ["a", "b", "c", "after_bad"] {
        assert!(!wd.join(s).exists(), "{s} ran after the failure: {err}");
    }

    // With -j 2 --keep-going: `a` and `b` run at once, `c` after them,
    // `after_bad` never, and the exit status and message say what failed.
    let out = pipeline(dir.path())
        .args(["run", "-j", "2", "--keep-going"])
        .arg(&wf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 stage(s) failed: `bad`")
            && err.contains("not run, as a stage they need failed: after_bad"),
        "{err}"
    );
    assert!(
        wd.join("c").is_dir() && !wd.join("after_bad").exists(),
        "{err}"
    );
    let (a, b) = (interval(&wd, "a"), interval(&wd, "b"));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "a {a:?} and b {b:?} did not overlap"
    );
    let (show, _) = ok(pipeline(dir.path())
        .args(["show", "-w"])
        .arg(&wd)
        .output()
        .unwrap());
    assert!(
        show.lines()
            .any(|l| l.trim_start().starts_with("bad") && l.contains("failed")),
        "{show}"
    );

    // One core: the same two stages, forced, run one after the other.
    ok(pipeline(dir.path())
        .args([
            "run", "-j", "1", "--until", "c", "--force", "a", "--force", "b",
        ])
        .arg(&wf)
        .output()
        .unwrap());
    let (a, b) = (interval(&wd, "a"), interval(&wd, "b"));
    assert!(
        a.1 <= b.0 || b.1 <= a.0,
        "a {a:?} and b {b:?} overlapped on one core"
    );
}

#[test]
fn clean_removes_what_the_workflow_no_longer_makes_and_old_runs_records() {
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    let wd = dir.path().join("wd");
    for _ in 0..3 {
        ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    }
    assert!(wd.join("reports/run-2.html").is_file());
    // The workflow drops `count`; a user's own file and a dead run's scratch sit in the workdir.
    let text = std::fs::read_to_string(&wf).unwrap();
    let without_count = text[..text.find("  count:").unwrap()].to_string();
    let wf2 = dir.path().join("cmd2.yaml");
    std::fs::write(&wf2, without_count).unwrap();
    std::fs::write(wd.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir_all(wd.join(".tmp/count")).unwrap();

    let (dry, _) = ok(pipeline(dir.path())
        .args(["clean", "--keep-runs", "1", "--dry-run"])
        .arg(&wf2)
        .output()
        .unwrap());
    assert!(
        dry.contains("would remove") && dry.contains("wd/count") && dry.contains("report of run 2"),
        "{dry}"
    );
    assert!(
        wd.join("count").is_dir() && wd.join(".tmp").is_dir(),
        "dry run removed: {dry}"
    );

    let (said, _) = ok(pipeline(dir.path())
        .args(["clean", "--keep-runs", "1"])
        .arg(&wf2)
        .output()
        .unwrap());
    assert!(said.contains("freed"), "{said}");
    assert!(
        !wd.join("count").exists() && !wd.join(".tmp").exists(),
        "{said}"
    );
    assert!(
        wd.join("gen/lines.txt").is_file() && wd.join("notes.txt").is_file(),
        "{said}"
    );
    // Run 1 made the current `gen` and run 3 is the latest: both stay; run 2 goes.
    assert!(!wd.join("reports/run-2.html").exists(), "{said}");
    let (history, _) = ok(pipeline(dir.path())
        .args(["history"])
        .arg(&wf2)
        .output()
        .unwrap());
    let ids: Vec<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, ["3", "1"], "{history}");
    // The cleaned workdir still plans: `gen` is up to date.
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf2).output().unwrap());
    assert!(plan.contains("nothing to run"), "{plan}");
}

/// Waits until none of `jobs` is in Slurm's queue (pending, running or
/// requeued), failing the test after `limit`.
fn wait_for_jobs(jobs: &[String], limit: Duration) {
    let start = Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-o", "%i %T", "-j", &jobs.join(",")])
            .output()
            .unwrap();
        let queued = String::from_utf8_lossy(&q.stdout).trim().to_string();
        // A failing squeue (the controller busy for a moment) prints nothing
        // too; only a successful, empty answer means the jobs have left.
        if q.status.success() && queued.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "still queued after {limit:?}: {queued}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The job ids in `pipeline submit`'s answer, in order.
fn job_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Submitted batch job "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Four command stages: `a1` and `a2` independent, `b` after both, `c`
/// after `b`; each records when it started and ended.
fn chain_workflow(dir: &Path) -> PathBuf {
    let wf = dir.join("chain.yaml");
    let timed = "date +%s.%N > {out}/start; sleep 1; date +%s.%N > {out}/end";
    std::fs::write(
        &wf,
        format!(
            r#"version: 1
name: chain
workdir: wd
stages:
  a1:
    uses: command
    with: {{ argv: [sh, -c, "{timed}"] }}
  a2:
    uses: command
    with: {{ argv: [sh, -c, "{timed}"] }}
  b:
    uses: command
    needs: [a1, a2]
    resources: {{ threads_per_rank: 2, time: "5", memory: 500M }}
    with: {{ argv: [sh, -c, "{timed}"] }}
  c:
    uses: command
    needs: [b]
    with: {{ argv: [sh, -c, "{timed}"] }}
"#
        ),
    )
    .unwrap();
    wf
}

#[test]
fn sbatch_accepts_every_script_submit_writes() {
    let _slurm = LocalSlurm::start();
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_workflow(dir.path());
    let quickstart = root().join("workflows/quickstart.yaml");
    let scripts = dir.path().join("scripts");
    let mut written = Vec::new();
    for (i, (wf, extra)) in [
        (
            &quickstart,
            vec!["--time", "02:00:00", "--ranks-per-node", "2"],
        ),
        (&quickstart, vec!["--per-stage", "--cpus-per-rank", "1"]),
        (&chain, vec!["--per-stage", "--time", "1:00"]),
    ]
    .into_iter()
    .enumerate()
    {
        let out_dir = scripts.join(i.to_string());
        let script = if extra.contains(&"--per-stage") {
            out_dir.clone()
        } else {
            out_dir.join("job.sbatch")
        };
        ok(pipeline(dir.path())
            .arg("submit")
            .arg(wf)
            .args(&extra)
            .arg("--dry-run")
            .arg("--script")
            .arg(&script)
            .output()
            .unwrap());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        written.extend(files);
    }
    // 1 whole-workflow script, 4 + 1 for the quickstart's stages, 4 + 1 for the chain's.
    assert_eq!(written.len(), 11, "{written:?}");
    for script in &written {
        let out = Command::new("sbatch")
            .arg("--test-only")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sbatch --test-only refused {}: {}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(script).unwrap()
        );
        let syntax = Command::new("bash").arg("-n").arg(script).output().unwrap();
        assert!(syntax.status.success(), "{}", script.display());
    }
    let b = std::fs::read_to_string(scripts.join("2/b.sbatch")).unwrap();
    for want in [
        "#SBATCH --ntasks=1\n",
        "#SBATCH --cpus-per-task=2\n",
        "#SBATCH --mem=500M\n",
        "#SBATCH --time=5\n",
        "#SBATCH --signal=B:USR1@30\n",
        " --only b --join 0 ",
    ] {
        assert!(b.contains(want), "missing `{want}` in\n{b}");
    }
}

#[test]
fn a_per_stage_submission_runs_each_stage_as_a_job_after_those_it_needs() {
    let _slurm = LocalSlurm::start();
    let dir = tempfile::tempdir().unwrap();
    let wf = chain_workflow(dir.path());
    let wd = dir.path().join("wd");
    let (so, se) = ok(pipeline(dir.path())
        .args(["submit", "--per-stage"])
        .arg(&wf)
        .output()
        .unwrap());
    let ids = job_ids(&so);
    assert_eq!(ids.len(), 5, "four stages and the end: {so}{se}");
    wait_for_jobs(&ids, Duration::from_secs(180));
    let logs = || {
        std::fs::read_dir(wd.join(".pipeline"))
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                p.to_string_lossy()
                    .ends_with(".out")
                    .then(|| std::fs::read_to_string(p).unwrap())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let when = |s: &str| {
        assert!(
            wd.join(s).join("end").is_file(),
            "stage {s} left no record of its run:\n{}",
            logs()
        );
        interval(&wd, s)
    };
    let (a1, a2, b, c) = (when("a1"), when("a2"), when("b"), when("c"));
    assert!(
        b.0 >= a1.1 && b.0 >= a2.1,
        "b {b:?} began before a1 {a1:?} / a2 {a2:?} ended"
    );
    assert!(c.0 >= b.1, "c {c:?} began before b {b:?} ended");
    // One run in the records, complete, with every stage in it.
    let (history, _) = ok(pipeline(dir.path())
        .arg("history")
        .arg(&wf)
        .output()
        .unwrap());
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{history}\n{}", logs());
    // run, date, time, seconds, status, ranks, executed, skipped, workflow
    assert_eq!(
        (rows[0][4], rows[0][6]),
        ("ok", "4"),
        "{history}\n{}",
        logs()
    );
    let (show, _) = ok(pipeline(dir.path())
        .args(["show", "-w"])
        .arg(&wd)
        .output()
        .unwrap());
    for s in ["a1", "a2", "b", "c"] {
        assert!(
            show.lines()
                .any(|l| l.split_whitespace().take(2).eq([s, "ran"])),
            "{s} not recorded as ran:\n{show}"
        );
    }
    assert!(wd.join("reports/run-1.html").is_file(), "{}", logs());
    // Everything is up to date now: nothing to submit.
    let (so, _) = ok(pipeline(dir.path())
        .args(["submit", "--per-stage"])
        .arg(&wf)
        .output()
        .unwrap());
    assert!(
        so.contains("nothing to submit: 4 stage(s) up to date"),
        "{so}"
    );
}

#[test]
fn a_training_job_at_its_time_limit_checkpoints_is_requeued_and_ends_with_the_same_weights() {
    // About 40 s of training on one core. Slurm checks limits every 30 s
    // and warns once the next check could be late: asked 25 s ahead of a
    // 1-minute limit, the warning comes 5 to 35 s into each job, always
    // before this training ends, and each requeued part trains at least 5 s.
    let dir = tempfile::tempdir().unwrap();
    let quickstart = root().join("workflows/quickstart.yaml");
    let sets = |wd: &str| {
        let mut v = Vec::new();
        for s in [
            format!("workdir={}", dir.path().join(wd).display()),
            "params.per_class=500".into(),
            "params.image_size=64".into(),
            "params.epochs=55".into(),
        ] {
            v.push("--set".to_string());
            v.push(s);
        }
        v
    };
    ok(pipeline(dir.path())
        .arg("run")
        .arg(&quickstart)
        .args(sets("straight"))
        .env("PIPELINE_THREADS", "1")
        .output()
        .unwrap());

    let _slurm = LocalSlurm::start();
    let (so, se) = ok(pipeline(dir.path())
        .args([
            "submit",
            "--per-stage",
            "--time",
            "1",
            "--warn-before",
            "25",
            "--cpus-per-rank",
            "1",
        ])
        .arg(&quickstart)
        .args(sets("limited"))
        .output()
        .unwrap());
    let ids = job_ids(&so);
    assert_eq!(ids.len(), 5, "{so}{se}");
    wait_for_jobs(&ids, Duration::from_secs(600));
    let wd = dir.path().join("limited");
    let log = std::fs::read_to_string(wd.join(format!(".pipeline/slurm-{}-train.out", ids[2])))
        .unwrap_or_default();
    assert!(
        log.contains("checkpointed before the time limit; requeueing")
            && log.contains("resuming from the checkpoint"),
        "the training job was not stopped and resumed:\n{log}"
    );
    let weights = |wd: &str| {
        std::fs::read(dir.path().join(wd).join("train/weights.safetensors"))
            .unwrap_or_else(|e| panic!("{wd}: {e}\n{log}"))
    };
    assert!(
        weights("straight") == weights("limited"),
        "the resumed training ended with other weights"
    );
    let (show, _) = ok(pipeline(dir.path())
        .args(["show", "-w"])
        .arg(&wd)
        .output()
        .unwrap());
    assert!(
        show.lines()
            .any(|l| l.split_whitespace().take(2).eq(["train", "stopped"])),
        "{show}"
    );
    let (history, _) = ok(pipeline(dir.path())
        .arg("history")
        .arg(&wd)
        .output()
        .unwrap());
    assert!(
        history.lines().nth(1).is_some_and(|l| l.contains(" ok ")),
        "{history}"
    );
}

#[test]
fn with_on_error_skip_a_missing_image_is_a_reject_row_and_the_stage_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let gz1 = root().join("data/gz1");
    let mut labels = std::fs::read_to_string(gz1.join("labels.csv")).unwrap();
    let kept = labels.lines().count() - 1;
    labels.push_str("1,spiral,3,edge_on,images/not-there.jpeg\n");
    std::fs::write(dir.path().join("labels.csv"), &labels).unwrap();
    std::os::unix::fs::symlink(gz1.join("images"), dir.path().join("images")).unwrap();
    let wf = dir.path().join("gz.yaml");
    let workflow = |labels: &str| {
        format!(
            "version: 1\nname: gz\nworkdir: wd\nstages:\n  dataset:\n    uses: ingest.galaxy_images\n    with:\n      labels: {labels}\n      size: 16\n      split: {{ val: 0.0, test: 0.5 }}\n      on_error: skip\n"
        )
    };
    std::fs::write(&wf, workflow("labels.csv")).unwrap();
    let (_, err) = ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("wd/dataset/dataset.json")).unwrap())
            .unwrap();
    assert_eq!(info["counts"]["rejected"], 1, "{info}\n{err}");
    assert_eq!(info["counts"]["total"], kept, "{info}");
    let rejects = Command::new(common::python())
        .args([
            "-c",
            "import pyarrow.parquet as pq, sys; t = pq.read_table(sys.argv[1]).to_pylist(); print(t[0]['source'], '|', t[0]['reason'])",
        ])
        .arg(dir.path().join("wd/dataset/rejects.parquet"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rejects.stdout);
    assert!(
        said.contains("not-there.jpeg"),
        "{said}{}",
        String::from_utf8_lossy(&rejects.stderr)
    );

    // Every image missing: the stage fails, saying so.
    std::fs::write(
        dir.path().join("none.csv"),
        "objid,label,gz1_class,gz1_name,image\n1,spiral,3,edge_on,images/a.jpeg\n2,elliptical,1,e,images/b.jpeg\n",
    )
    .unwrap();
    std::fs::write(&wf, workflow("none.csv")).unwrap();
    let out = pipeline(dir.path()).arg("run").arg(&wf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stage `dataset` failed"), "{err}");
}

#[test]
fn a_submissions_jobs_join_its_run_even_after_a_whole_run_marked_it_interrupted() {
    // What `submit --per-stage` leaves: a run in the records that its jobs
    // join one stage at a time.
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    let wd = dir.path().join("wd");
    let records = sciflow_pipeline::records::Records::open(&wd).unwrap();
    let run = records
        .begin_run("cmd", "cmd.yaml", 1, "pipeline submit --per-stage")
        .unwrap();
    drop(records);
    let join = |stage: &str| {
        pipeline(dir.path())
            .arg("run")
            .arg(&wf)
            .args(["--only", stage, "--join", &run.to_string()])
            .output()
            .unwrap()
    };
    ok(join("gen"));
    // A whole run between two jobs marks the submission interrupted...
    ok(pipeline(dir.path())
        .args(["run", "--until", "gen"])
        .arg(&wf)
        .output()
        .unwrap());
    // ...and the next job still joins it.
    ok(join("count"));
    ok(pipeline(dir.path())
        .arg("end-run")
        .arg(&wf)
        .args([
            "--run",
            &run.to_string(),
            "--stage",
            "gen",
            "--stage",
            "count",
        ])
        .output()
        .unwrap());
    let (show, _) = ok(pipeline(dir.path())
        .args(["show", &run.to_string(), "-w"])
        .arg(&wd)
        .output()
        .unwrap());
    assert!(
        show.lines()
            .any(|l| l.split_whitespace().take(2).eq(["count", "ran"])),
        "{show}"
    );
    let (history, _) = ok(pipeline(dir.path())
        .arg("history")
        .arg(&wd)
        .output()
        .unwrap());
    let row = history
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&run.to_string()))
        .unwrap();
    assert!(row.contains(" ok "), "{history}");
}

/// Two command stages, the second reading the first; the first writes the
/// time, so each of its runs changes its output.
fn stamp_workflow(dir: &Path) -> PathBuf {
    let wf = dir.join("stamp.yaml");
    std::fs::write(
        &wf,
        r#"version: 1
name: stamp
workdir: wd
stages:
  stamp:
    uses: command
    with:
      argv: ["sh", "-c", "date +%s%N > {out}/t.txt"]
      outputs: { t: t.txt }
  copy:
    uses: command
    with:
      argv: ["cp ${stamp.t} $PIPELINE_OUT/t.txt"]
      shell: true
      outputs: { t: t.txt }
"#,
    )
    .unwrap();
    wf
}

#[test]
fn a_changed_default_reruns_its_stage_and_what_reads_it_and_plan_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let wf = stamp_workflow(dir.path());
    ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    let wd = dir.path().join("wd");
    // The records say `stamp` ran with `shell: true` by default: as if this
    // build's default of `with.shell` (false) had changed since.
    let records = sciflow_pipeline::records::Records::open(&wd).unwrap();
    let mut state = records.stage_state("stamp").unwrap().unwrap();
    let resolved = state
        .resolved
        .as_mut()
        .expect("the resolved config is recorded");
    assert_eq!(resolved["shell"], serde_json::json!(false), "{resolved}");
    assert_eq!(
        resolved["env"],
        serde_json::json!({}),
        "defaults filled in: {resolved}"
    );
    resolved["shell"] = serde_json::json!(true);
    records.set_stage_state("stamp", &state).unwrap();
    drop(records);

    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(
        plan.contains("run    stamp")
            && plan.contains("default of `with.shell` changed: true -> false"),
        "{plan}"
    );
    assert!(
        !plan.contains("config stages.stamp"),
        "the block as written is unchanged: {plan}"
    );
    assert!(
        plan.contains("run    copy") && plan.contains("upstream `stamp` runs first"),
        "{plan}"
    );
    let (_, err) = ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    assert!(
        err.contains("stamp: running (command): default of `with.shell` changed"),
        "{err}"
    );
    assert!(
        err.contains("copy: running (command): upstream `stamp` output changed"),
        "{err}"
    );
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(plan.starts_with("nothing to run"), "{plan}");
}

#[test]
fn states_recorded_before_resolved_configs_stay_fresh_and_are_upgraded() {
    use sciflow_pipeline::engine::fingerprint::{fingerprint, Basis};
    let dir = tempfile::tempdir().unwrap();
    let wf = command_workflow(dir.path());
    ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    let wd = dir.path().join("wd");
    // Rewrite both states as the previous version recorded them: no resolved
    // configuration, the fingerprint of the `with:` block as written.
    let records = sciflow_pipeline::records::Records::open(&wd).unwrap();
    let mut now = Vec::new();
    for stage in ["gen", "count"] {
        let mut s = records.stage_state(stage).unwrap().unwrap();
        now.push(s.fingerprint.clone());
        s.resolved = None;
        s.fingerprint = fingerprint(
            Basis::Written,
            &s.kind,
            &s.config,
            s.reproducible,
            &s.inputs,
            &s.upstream,
        );
        assert_ne!(s.fingerprint, now[now.len() - 1]);
        records.set_stage_state(stage, &s).unwrap();
    }
    drop(records);
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(
        plan.starts_with("nothing to run: 2 stage(s) up to date"),
        "{plan}"
    );
    let (_, err) = ok(pipeline(dir.path()).arg("run").arg(&wf).output().unwrap());
    assert!(
        err.contains("gen: up to date") && err.contains("count: up to date"),
        "{err}"
    );
    let records = sciflow_pipeline::records::Records::open(&wd).unwrap();
    for (stage, fp) in ["gen", "count"].iter().zip(&now) {
        let s = records.stage_state(stage).unwrap().unwrap();
        assert!(s.resolved.is_some(), "{stage}: resolved config recorded");
        assert_eq!(&s.fingerprint, fp, "{stage}: today's fingerprint recorded");
    }
    // A legacy state whose written fingerprint no longer matches reruns.
    let mut s = records.stage_state("gen").unwrap().unwrap();
    s.resolved = None;
    s.fingerprint = "0".repeat(64);
    records.set_stage_state("gen", &s).unwrap();
    drop(records);
    let (plan, _) = ok(pipeline(dir.path()).arg("plan").arg(&wf).output().unwrap());
    assert!(
        plan.contains("run    gen") && plan.contains("fingerprint changed"),
        "{plan}"
    );
}
