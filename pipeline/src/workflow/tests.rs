//! Compiling workflow files: what is accepted, and what each error says.

use super::*;

const GOOD: &str = "\
version: 1
name: t
workdir: runs/t
seed: 3
params:
  n: 4
  size: 16
stages:
  ev:
    uses: eval.classifier
    with:
      model: ${tr.model}
      data: ${ds.dataset}
  gen:
    uses: ingest.synthetic_galaxies
    with:
      count_per_class: ${params.n}
      size: ${params.size}
  ds:
    uses: ingest.galaxy_images
    with:
      labels: ${gen.labels}
      size: ${params.size}
  tr:
    uses: train.classifier
    with:
      data: ${ds.dataset}
      epochs: 1
";

fn compile_str(text: &str, overrides: &[&str]) -> Result<Workflow, Diagnostics> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    compile(text, Path::new("w.yaml"), &o)
}

const SWEEP: &str = "\
version: 1
name: t
workdir: runs/t
params:
  ranks: [1, 2]
stages:
  measure:
    uses: command
    foreach: { ranks: \"${params.ranks}\", batch: [16, 32] }
    with:
      argv: [mpirun, -n, \"${each.ranks}\", run, \"--batch=${each.batch}\", \"{out}/r${each.ranks}\"]
      outputs: { train: wd/train }
  figure:
    uses: eval.scaling_figure
    with:
      figure: resnet50_hal
      runs: [\"${measure.train}\", extra/train]
";

#[test]
fn foreach_makes_one_stage_per_combination_and_references_splice_all() {
    let wf = compile_str(SWEEP, &[]).unwrap();
    let names: Vec<&str> = wf.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "measure-1-16",
            "measure-1-32",
            "measure-2-16",
            "measure-2-32",
            "figure"
        ]
    );
    // `${each.x}` alone keeps the value's type; inside a string, its text.
    let argv = &wf.stages[2].config["argv"];
    assert_eq!(argv[2], serde_json::json!(2));
    assert_eq!(argv[4], "--batch=16");
    assert_eq!(argv[5], "{out}/r2");
    let fig = wf.stages.last().unwrap();
    assert_eq!(
        fig.config["runs"],
        serde_json::json!([
            "runs/t/measure-1-16/wd/train",
            "runs/t/measure-1-32/wd/train",
            "runs/t/measure-2-16/wd/train",
            "runs/t/measure-2-32/wd/train",
            "extra/train"
        ])
    );
    assert_eq!(fig.needs.len(), 4);
    // The sweep is a parameter: a cluster sets the rank counts.
    let wf = compile_str(SWEEP, &["params.ranks=[64]"]).unwrap();
    assert_eq!(wf.stages.len(), 3);
    assert_eq!(wf.stages[0].name, "measure-64-16");
}

#[test]
fn foreach_mistakes_are_reported_where_they_are() {
    let err = |text: &str| compile_str(text, &[]).unwrap_err().to_string();
    let e = err(&SWEEP.replace("\"${each.ranks}\", run", "\"${each.rank}\", run"));
    assert!(e.contains("no `foreach` variable `rank`"), "{e}");
    let e = err(&SWEEP.replace("ranks: [1, 2]", "ranks: 2"));
    assert!(
        e.contains("parameter `ranks` is an integer, not a list"),
        "{e}"
    );
    let e = err(&SWEEP.replace("batch: [16, 32]", "batch: []"));
    assert!(e.contains("the list is empty"), "{e}");
    let e = err(&SWEEP.replace(
        "runs: [\"${measure.train}\", extra/train]",
        "runs: [\"x${measure.train}\"]",
    ));
    assert!(
        e.contains("is a list of 4 paths and cannot be put inside a string"),
        "{e}"
    );
    let e = err(&SWEEP.replace("figure: resnet50_hal", "figure: \"${each.ranks}\""));
    assert!(e.contains("only for stages with `foreach`"), "{e}");
}

#[test]
fn resolves_references_types_and_order() {
    let wf = compile_str(GOOD, &["params.size=32"]).unwrap();
    let names: Vec<&str> = wf.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["gen", "ds", "tr", "ev"]);
    let gen = &wf.stages[0];
    assert_eq!(gen.config["count_per_class"], 4);
    assert_eq!(gen.config["size"], 32);
    assert_eq!(wf.stages[1].config["labels"], "runs/t/gen/labels.csv");
    assert_eq!(wf.stages[3].needs, vec!["ds", "tr"]);
    assert_eq!(wf.seed, 3);
}

#[test]
fn reports_every_error_with_positions() {
    let bad = GOOD
        .replace("epochs: 1", "epochs: 1\n      epochz: 2")
        .replace("${gen.labels}", "${gen.lables}")
        .replace("uses: eval.classifier", "uses: eval.clasifier")
        .replace("seed: 3", "seed: 3\nsed: 4");
    let err = compile_str(&bad, &["params.nope=1"]).unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("w.yaml:5:1: sed: unknown key")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .starts_with("w.yaml:11:11: stages.ev.uses: unknown stage kind `eval.clasifier`")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains(
            "stages.ds.with.labels: stage `gen` (ingest.synthetic_galaxies) has no output `lables`"
        )),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("w.yaml:30:7: stages.tr.with.epochz: unknown field `epochz`")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("--set params.nope: no parameter `nope`")),
        "{text}"
    );
    assert_eq!(err.items.len(), 5, "{text}");
}

#[test]
fn a_zero_count_points_at_the_value() {
    let bad = GOOD.replace("epochs: 1", "epochs: 0");
    let err = compile_str(&bad, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with("w.yaml:28:15: stages.tr.with.epochs: invalid value: integer `0`"),
        "{err}"
    );
}

#[test]
fn cycles_are_named() {
    let text = "version: 1\nname: c\nworkdir: w\nstages:\n  a:\n    uses: train.classifier\n    with: { data: '${b.model}', epochs: 1 }\n  b:\n    uses: train.classifier\n    with: { data: '${a.model}', epochs: 1 }\n";
    let err = compile_str(text, &[]).unwrap_err().to_string();
    assert!(err.contains("dependency cycle: a -> b -> a"), "{err}");
}

#[test]
fn syntax_errors_have_a_position() {
    let err = compile_str("version: 1\nstages: [\n", &[]).unwrap_err();
    assert_eq!(err.items.len(), 1);
    assert!(err.items[0].pos.is_some());
    assert!(err.to_string().contains("YAML syntax"), "{err}");
}

#[test]
fn resources_are_checked_with_their_line_and_resolved_from_params() {
    let text = "\
version: 1
name: t
workdir: runs/t
params:
  ranks: 4
stages:
  gen:
    uses: ingest.synthetic_galaxies
    with: { count_per_class: 4, size: 16 }
    resources: { threads_per_rank: 2, time: \"1:00:00\", memory: 8G, partition: gpu }
  ds:
    uses: ingest.galaxy_images
    with: { labels: \"${gen.labels}\", size: 16 }
    resources: { ranks: \"${params.ranks}\", gpus_per_rank: 1 }
";
    let wf = compile_str(text, &[]).unwrap();
    let ds = wf.stages.iter().find(|s| s.name == "ds").unwrap();
    assert_eq!(ds.resources.ranks.map(|r| r.get()), Some(4));
    assert_eq!(ds.resources.ranks(ds.kind, 1), 4);
    let gen = wf.stages.iter().find(|s| s.name == "gen").unwrap();
    assert_eq!(gen.resources.time_limit(), Some(3600));
    assert_eq!(
        gen.resources.describe(gen.kind, 8, 8),
        "1 rank(s) x 2 thread(s), memory 8G, time 1:00:00, partition gpu"
    );

    let bad = text
        .replace("time: \"1:00:00\"", "time: 2 hours")
        .replace("gpus_per_rank: 1", "gpu: 1");
    let e = compile_str(&bad, &[]).unwrap_err().to_string();
    assert!(
        e.contains("w.yaml:10:")
            && e.contains("stages.gen.resources.time")
            && e.contains("`2 hours` is not a Slurm time limit"),
        "{e}"
    );
    assert!(
        e.contains("w.yaml:14:") && e.contains("unknown field `gpu`"),
        "{e}"
    );
    // A rank-0 kind cannot take ranks.
    let e = compile_str(&text.replace("threads_per_rank: 2", "ranks: 2"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("stages.gen.resources.ranks") && e.contains("runs on rank 0 alone"),
        "{e}"
    );
}

/// The shipped workflows, mutated as text (truncated, lines dropped or
/// repeated, indentation shifted, YAML punctuation inserted, values made
/// huge): compiling must give a workflow or diagnostics, never panic, and
/// stay fast. `FUZZ_CASES` sets the cases (default 3,000).
#[test]
fn mutated_workflows_compile_or_are_refused_never_panic() {
    use rand::{Rng, SeedableRng};
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let mut files: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut compiled, mut refused) = (0, 0);
    for case in 0..cases {
        let (path, text) = &files[case % files.len()];
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let i = rng.random_range(0..lines.len());
        let what = match rng.random_range(0..6) {
            0 => {
                lines.truncate(i);
                "truncated"
            }
            1 => {
                lines.remove(i);
                "line dropped"
            }
            2 => {
                let l = lines[i].clone();
                lines.insert(i, l);
                "line repeated"
            }
            3 => {
                lines[i] = format!("  {}", lines[i]);
                "indented"
            }
            4 => {
                let punct = [
                    ":", "{", "}", "[", "]", "&a", "*a", "!", "|", ">", "- ", "#", "'", "\"", "${",
                    "\t", "\u{0}",
                ];
                let p = punct[rng.random_range(0..punct.len())];
                let at = rng.random_range(0..=lines[i].len());
                let at = (0..=at)
                    .rev()
                    .find(|&k| lines[i].is_char_boundary(k))
                    .unwrap_or(0);
                lines[i].insert_str(at, p);
                "punctuation inserted"
            }
            _ => {
                let huge = [
                    "99999999999999999999",
                    "-1",
                    "1e309",
                    "0",
                    "[]",
                    "{}",
                    "null",
                    "~",
                ];
                let h = huge[rng.random_range(0..huge.len())];
                if let Some((k, _)) = lines[i].split_once(": ") {
                    lines[i] = format!("{k}: {h}");
                }
                "value replaced"
            }
        };
        let mutated = lines.join("\n");
        let start = std::time::Instant::now();
        let result = std::panic::catch_unwind(|| compile(&mutated, path, &[]));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{}: {what} at line {}: compiling took {:?}",
            path.display(),
            i + 1,
            start.elapsed()
        );
        match result {
            Ok(Ok(_)) => compiled += 1,
            Ok(Err(d)) => {
                assert!(!d.items.is_empty());
                refused += 1
            }
            Err(_) => panic!(
                "{}: {what} at line {}: compile panicked",
                path.display(),
                i + 1
            ),
        }
    }
    eprintln!("fuzz workflows: {cases} cases, {compiled} compiled, {refused} refused, 0 panics");
    assert!(refused > 0 && compiled > 0);
}

#[test]
fn the_reproducibility_mode_is_read_and_can_be_set() {
    assert_eq!(
        compile_str(GOOD, &[]).unwrap().reproducible,
        Reproducible::Native
    );
    let portable = GOOD.replace("seed: 3", "seed: 3\nreproducible: portable");
    let wf = compile_str(&portable, &[]).unwrap();
    assert_eq!(wf.reproducible, Reproducible::Portable);
    assert_eq!(wf.resolved()["reproducible"], "portable");
    assert_eq!(
        compile_str(&portable, &["reproducible=native"])
            .unwrap()
            .reproducible,
        Reproducible::Native
    );
    let text = compile_str(&GOOD.replace("seed: 3", "seed: 3\nreproducible: 2"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("w.yaml:5:15: reproducible: expected `native`"),
        "{text}"
    );
    let text = compile_str(GOOD, &["reproducible=fast"])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("--set reproducible: expected `native`"),
        "{text}"
    );
}

// The registry's own checks sit here, where YAML is parsed: every kind's
// example must be a valid `with:` block.
#[test]
fn names_are_unique_and_every_example_checks() {
    let mut names: Vec<&str> = stages::REGISTRY.iter().map(|k| k.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), stages::REGISTRY.len());
    for kind in stages::REGISTRY {
        let node = yaml::parse(kind.example).unwrap();
        let json = node.to_json();
        (kind.resolve)(&json).unwrap_or_else(|e| panic!("{}: {e:?}", kind.name));
        assert!(!kind.outputs.is_empty(), "{}", kind.name);
    }
}

#[test]
fn check_reports_the_path_of_a_bad_value() {
    let kind = stages::lookup("train.classifier").unwrap();
    let v: Json = serde_json::json!({"data": "d", "epochs": 0});
    let e = (kind.resolve)(&v).unwrap_err();
    assert_eq!(e.path, "epochs");
    let v: Json =
        serde_json::json!({"data": "d", "epochs": 2, "model": {"arch": "small_cnn", "widht": 3}});
    let e = (kind.resolve)(&v).unwrap_err();
    assert_eq!(e.path, "model.widht");
    assert!(e.message.contains("unknown field `widht`"), "{}", e.message);
}

#[test]
fn a_gpu_may_be_used_unless_every_libtorch_stage_says_cpu() {
    // tr and ev default to `device: auto`.
    assert!(compile_str(GOOD, &[]).unwrap().may_use_gpu());
    let cpu = GOOD
        .replace("      epochs: 1\n", "      epochs: 1\n      device: cpu\n")
        .replace(
            "      data: ${ds.dataset}\n  gen:",
            "      data: ${ds.dataset}\n      device: cpu\n  gen:",
        );
    assert!(!compile_str(&cpu, &[]).unwrap().may_use_gpu());
    // One stage on a GPU is enough.
    let one = GOOD.replace("      epochs: 1\n", "      epochs: 1\n      device: cpu\n");
    assert!(compile_str(&one, &[]).unwrap().may_use_gpu());
}
