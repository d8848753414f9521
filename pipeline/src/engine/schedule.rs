//! Which selected stage can start next: each stage's needs among the
//! selection and where every stage stands (waiting, running, done, failed,
//! or blocked by a failure upstream).

use std::collections::HashMap;

use crate::workflow::Stage;

/// Where each selected stage stands in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
    Done,
    Failed,
    /// Not run: a stage it needs failed (or was not run).
    Blocked,
}

/// The selected stages' dependencies and where each stands.
pub(crate) struct Schedule<'a> {
    stages: &'a [&'a Stage],
    /// For each stage, the selected stages it needs (indices).
    needs: Vec<Vec<usize>>,
    status: Vec<Status>,
    pub(crate) running: usize,
}

impl<'a> Schedule<'a> {
    pub(crate) fn new(stages: &'a [&'a Stage]) -> Self {
        let index: HashMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        // Needs outside the selection (`--only`) are checked by deciding.
        let needs = stages
            .iter()
            .map(|s| {
                s.needs
                    .iter()
                    .filter_map(|n| index.get(n.as_str()).copied())
                    .collect()
            })
            .collect();
        Schedule {
            stages,
            needs,
            status: vec![Status::Waiting; stages.len()],
            running: 0,
        }
    }

    /// The first waiting stage (in workflow order) whose needs are done and
    /// that `fits`, marked running; stages whose needs failed become blocked.
    pub(crate) fn next_ready(&mut self, fits: impl Fn(usize) -> bool) -> Option<usize> {
        for i in 0..self.stages.len() {
            if self.status[i] != Status::Waiting {
                continue;
            }
            let needs = &self.needs[i];
            if needs
                .iter()
                .any(|&n| matches!(self.status[n], Status::Failed | Status::Blocked))
            {
                self.status[i] = Status::Blocked;
                continue;
            }
            if needs.iter().all(|&n| self.status[n] == Status::Done) && fits(i) {
                self.status[i] = Status::Running;
                self.running += 1;
                return Some(i);
            }
        }
        None
    }

    pub(crate) fn succeeded(&mut self, i: usize) {
        self.status[i] = Status::Done;
        self.running -= 1;
    }

    pub(crate) fn failed(&mut self, i: usize) {
        self.status[i] = Status::Failed;
        self.running -= 1;
    }

    /// Stages that did not run because a stage they need failed.
    pub(crate) fn blocked(&self) -> Vec<String> {
        (0..self.stages.len())
            .filter(|&i| self.status[i] == Status::Blocked)
            .map(|i| self.stages[i].name.clone())
            .collect()
    }
}
