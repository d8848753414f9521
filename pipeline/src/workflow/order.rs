//! Dependency order of the stages, and the cycle when there is none.

use super::*;

/// Stages in dependency order (declaration order among independent ones), or
/// a cycle. Iterative (Kahn's algorithm), so a chain of 100,000 stages is fine.
pub(super) fn order(stages: Vec<Stage>) -> Result<Vec<Stage>, (Vec<String>, Pos)> {
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut waiting: Vec<usize> = stages.iter().map(|s| s.needs.len()).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    for (i, s) in stages.iter().enumerate() {
        for dep in &s.needs {
            users[index[dep.as_str()]].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..stages.len()).filter(|&i| waiting[i] == 0).collect();
    let mut out = Vec::with_capacity(stages.len());
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if out.len() == stages.len() {
        let mut slots: Vec<Option<Stage>> = stages.into_iter().map(Some).collect();
        return Ok(out
            .into_iter()
            .map(|i| slots[i].take().expect("each stage once"))
            .collect());
    }
    // Every stage left waits on another stage left: following those edges
    // from any of them must come back to a stage already seen.
    let start = (0..stages.len())
        .find(|&i| waiting[i] > 0)
        .expect("a stage is left");
    let mut path = vec![start];
    loop {
        let cur = *path.last().expect("non-empty");
        let next = stages[cur]
            .needs
            .iter()
            .map(|d| index[d.as_str()])
            .find(|&d| waiting[d] > 0)
            .expect("a waiting stage has a waiting dependency");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            // Reported as "a -> b -> a": a needs b, which needs a.
            let mut cycle: Vec<String> = path[pos..]
                .iter()
                .map(|&p| stages[p].name.clone())
                .collect();
            cycle.push(cycle[0].clone());
            return Err((cycle, stages[path[pos]].pos));
        }
        path.push(next);
    }
}
