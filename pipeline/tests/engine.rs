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
    assert!(plan.contains("run    gen\n         forced"), "{plan}");
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
    assert!(plan.contains("run    train\n         never run"), "{plan}");
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
    assert_eq!(on_disk.trim_end(), text.trim_end());
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

/// A one-node Slurm started by scripts/slurm-local.sh, stopped when dropped.
struct LocalSlurm;

impl LocalSlurm {
    fn start() -> LocalSlurm {
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
        LocalSlurm
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
    // Wait for the job to leave the queue (at most 3 minutes).
    let start = Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", &job])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "job {job} still queued"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(wd.join(format!(".pipeline/slurm-{job}.out")))
        .unwrap_or_else(|e| panic!("no job log: {e}"));
    assert!(log.contains("2 rank(s), 1 thread(s) per rank"), "{log}");
    assert!(wd.join("evaluate/metrics.json").is_file(), "{log}");
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("train/model.json")).unwrap()).unwrap();
    assert_eq!(model["world_size"], 2, "{log}");
}
