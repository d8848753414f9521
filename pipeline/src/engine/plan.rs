//! Deciding what runs, and why: a stage runs when its fingerprint (kind and
//! version, resolved config, external inputs' content, upstream outputs'
//! content) differs from what its current output was made from, when its
//! output is missing or was modified, or when it is forced. `pipeline plan`
//! shows these decisions without running anything; the executor makes
//! them one stage at a time as it goes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::engine::fingerprint::{config_diff, fingerprint, hash_path, Basis};
use crate::records::Records;
use crate::stages::kind::{InputScope, StageKind};
use crate::workflow::{Reproducible, Stage, Workflow};
use crate::Error;

/// Which stages to consider and which to force.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Run these even if up to date.
    pub force: Vec<String>,
    /// Stop after this stage (it and what it depends on).
    pub until: Option<String>,
    /// Only this stage (its upstream outputs must exist).
    pub only: Option<String>,
    /// Continue stages from their checkpoints where the fingerprint matches.
    pub resume: bool,
}

impl Selection {
    /// The stages selected, in order; an unknown name is an error.
    pub fn stages<'a>(&self, wf: &'a Workflow) -> Result<Vec<&'a Stage>, Error> {
        let known = |n: &str| {
            if wf.stages.iter().any(|s| s.name == n) {
                Ok(())
            } else {
                Err(Error::Stage {
                    stage: n.to_string(),
                    message: format!(
                        "no such stage; the workflow has: {}",
                        wf.stages
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
        };
        for f in &self.force {
            known(f)?;
        }
        if let Some(only) = &self.only {
            known(only)?;
            return Ok(wf.stages.iter().filter(|s| &s.name == only).collect());
        }
        if let Some(until) = &self.until {
            known(until)?;
            let mut keep: HashSet<&str> = HashSet::from([until.as_str()]);
            for s in wf.stages.iter().rev() {
                if keep.contains(s.name.as_str()) {
                    keep.extend(s.needs.iter().map(|n| n.as_str()));
                }
            }
            return Ok(wf
                .stages
                .iter()
                .filter(|s| keep.contains(s.name.as_str()))
                .collect());
        }
        Ok(wf.stages.iter().collect())
    }
}

/// What to do with a stage, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Run it (else it is up to date).
    pub run: bool,
    /// Human-readable reasons.
    pub reasons: Vec<String>,
    /// The fingerprint it has now (empty when it depends on a stage that will run).
    pub fingerprint: String,
    /// External inputs and their hashes.
    pub inputs: Vec<(String, String)>,
    /// Upstream stages and their output hashes.
    pub upstream: Vec<(String, String)>,
    /// Up to date by the fingerprint of a state recorded before resolved
    /// configurations were: the executor records it anew.
    pub upgrade: bool,
}

pub(crate) fn kind_id(stage: &Stage) -> String {
    format!("{}@{}", stage.kind.name, stage.kind.props.version)
}

/// The reproducibility mode that bears on `stage`'s outputs: the
/// workflow's, for kinds that may run libtorch; `native` (no bearing) for
/// the rest, so switching modes leaves them fresh.
pub(crate) fn stage_mode(wf: &Workflow, stage: &Stage) -> Reproducible {
    if stage.kind.props.libtorch {
        wf.reproducible
    } else {
        Reproducible::Native
    }
}

/// Decides whether `stage` must run. `pending` holds stages that will run
/// before it in this run (their outputs are not known yet).
pub fn decide(
    wf: &Workflow,
    stage: &Stage,
    records: &Records,
    forced: bool,
    pending: &HashSet<String>,
) -> Result<Decision, Error> {
    let mode = stage_mode(wf, stage);
    let mut inputs = Vec::new();
    for p in stage_inputs(stage.kind, &stage.config, &wf.workdir) {
        if !p.exists() {
            return Err(Error::Stage {
                stage: stage.name.clone(),
                message: format!("input {} does not exist", p.display()),
            });
        }
        let (h, _) = hash_path(records, &p)?;
        inputs.push((p.to_string_lossy().into_owned(), h));
    }
    let mut reasons = Vec::new();
    let mut upstream = Vec::new();
    for dep in &stage.needs {
        if pending.contains(dep) {
            reasons.push(format!("upstream `{dep}` runs first"));
            continue;
        }
        match records.stage_state(dep)? {
            Some(s) => upstream.push((dep.clone(), s.output_hash)),
            None => {
                return Err(Error::Stage {
                    stage: stage.name.clone(),
                    message: format!(
                        "upstream stage `{dep}` has no output yet; run it first (drop --only)"
                    ),
                })
            }
        }
    }
    let kind = kind_id(stage);
    let fp = if reasons.is_empty() {
        fingerprint(
            Basis::Resolved,
            &kind,
            &stage.resolved,
            mode,
            &inputs,
            &upstream,
        )
    } else {
        String::new()
    };
    let decision = |run: bool, reasons: Vec<String>| Decision {
        run,
        reasons,
        fingerprint: fp.clone(),
        inputs: inputs.clone(),
        upstream: upstream.clone(),
        upgrade: false,
    };
    if forced {
        reasons.insert(0, "forced".into());
    }
    let out = wf.stage_dir(&stage.name);
    let Some(old) = records.stage_state(&stage.name)? else {
        reasons.insert(0, "never run".into());
        return Ok(decision(true, reasons));
    };
    if !out.exists() {
        reasons.insert(0, "output missing".into());
        return Ok(decision(true, reasons));
    }
    if old.kind != kind {
        reasons.push(format!("stage kind changed: {} -> {kind}", old.kind));
    }
    // Every stage receives the seed (splits, initial weights, order), but it
    // is not in the fingerprint, whose old values stay valid: a state that
    // recorded another seed reruns.
    if let Some(seed) = old.seed.filter(|&s| s != wf.seed) {
        reasons.push(format!("seed: {seed} -> {}", wf.seed));
    }
    if old.reproducible != mode {
        reasons.push(format!("reproducible: {} -> {mode}", old.reproducible));
    }
    let mut written = Vec::new();
    config_diff(&old.config, &stage.config, "with", &mut written);
    let prefix = format!("stages.{}.", stage.name);
    reasons.extend(written.iter().map(|d| format!("config {prefix}{d}")));
    // What the `with:` block did not change but the kind's defaults did.
    if let Some(was) = &old.resolved {
        let mut resolved = Vec::new();
        config_diff(was, &stage.resolved, "with", &mut resolved);
        for d in resolved
            .iter()
            .filter(|d| !written.iter().any(|w| w.overlaps(d)))
        {
            let show = |v: &Option<Value>| v.as_ref().map_or("(unset)".into(), Value::to_string);
            reasons.push(format!(
                "default of `{}` changed: {} -> {}",
                d.path,
                show(&d.old),
                show(&d.new)
            ));
        }
    }
    let old_inputs: HashMap<&str, &str> = old
        .inputs
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    for (p, h) in &inputs {
        match old_inputs.get(p.as_str()) {
            Some(oh) if oh == h => {}
            Some(_) => reasons.push(format!("input changed: {p}")),
            None => reasons.push(format!("new input: {p}")),
        }
    }
    let old_up: HashMap<&str, &str> = old
        .upstream
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    for (dep, h) in &upstream {
        if old_up.get(dep.as_str()) != Some(&h.as_str()) {
            reasons.push(format!("upstream `{dep}` output changed"));
        }
    }
    let (now_hash, _) = hash_path(records, &out)?;
    if now_hash != old.output_hash {
        reasons.push("output was modified since it was written".into());
    }
    let mut upgrade = false;
    if reasons.is_empty() && fp != old.fingerprint {
        // A state recorded before resolved configurations were has the
        // fingerprint of its `with:` block as written: when that still
        // matches, nothing it recorded has changed.
        upgrade = old.resolved.is_none()
            && old.fingerprint
                == fingerprint(
                    Basis::Written,
                    &kind,
                    &stage.config,
                    mode,
                    &inputs,
                    &upstream,
                );
        if !upgrade {
            // Parts of the fingerprint that no rule above names (e.g. input order).
            reasons.push("fingerprint changed".into());
        }
    }
    let run = !reasons.is_empty();
    Ok(Decision {
        upgrade: upgrade && !run,
        ..decision(run, reasons)
    })
}

/// The external inputs of a stage: its kind's rule, given the means to ask
/// for another workflow's (the `workflow` kind's file).
pub fn stage_inputs(kind: &StageKind, config: &Value, workdir: &Path) -> Vec<PathBuf> {
    let scope = InputScope {
        workdir,
        workflow_inputs: &workflow_inputs,
    };
    (kind.props.inputs)(config, &scope)
}

/// Every external input of every stage of the workflow `file` (under
/// `overrides`); none when it does not load (its own run then says why).
fn workflow_inputs(file: &Path, overrides: &[String]) -> Vec<PathBuf> {
    let Ok(wf) = crate::workflow::load(file, overrides) else {
        return Vec::new();
    };
    wf.stages
        .iter()
        .flat_map(|s| stage_inputs(s.kind, &s.config, &wf.workdir))
        .collect()
}

/// What `pipeline plan` shows for one stage.
#[derive(Debug, Clone)]
pub struct PlanLine {
    /// The stage.
    pub stage: String,
    /// The decision.
    pub decision: Decision,
}

/// Decides every selected stage without running anything (rank 0 view).
pub fn plan(wf: &Workflow, selection: &Selection) -> Result<Vec<PlanLine>, Error> {
    let mut records = Records::open(&wf.workdir)?;
    let stages = selection.stages(wf)?;
    // One read transaction for all the lookups, not one lock per query.
    records.batch(|records| {
        let mut pending: HashSet<String> = HashSet::new();
        let mut lines = Vec::with_capacity(stages.len());
        for stage in stages {
            let forced = selection.force.iter().any(|f| f == &stage.name);
            let d = decide(wf, stage, records, forced, &pending)?;
            if d.run {
                pending.insert(stage.name.clone());
            }
            lines.push(PlanLine {
                stage: stage.name.clone(),
                decision: d,
            });
        }
        Ok(lines)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_stages_inputs_are_its_file_and_what_its_stages_read() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let file = root.join("workflows/waveforms.yaml");
        let kind = crate::stages::lookup("workflow").unwrap();
        let cfg = serde_json::json!({"file": file, "until": "train"});
        let inputs = stage_inputs(kind, &cfg, Path::new("/nonexistent-workdir"));
        assert!(inputs.contains(&file), "{inputs:?}");
        assert!(
            inputs.iter().any(|p| p.ends_with("data/make_bank.py")),
            "{inputs:?}"
        );
    }
}
