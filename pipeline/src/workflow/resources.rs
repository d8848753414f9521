//! What a stage asks for: ranks, threads and GPUs per rank, memory, wall
//! time and partition (the `resources:` block of a stage entry).
//!
//! `pipeline run -j N` packs stages into N cores by `ranks ×
//! threads_per_rank`; `pipeline submit --per-stage` turns the block into
//! the stage's own `sbatch` options. Fields left out take the kind's
//! defaults: one rank for rank-0 kinds, the run's ranks for collective ones,
//! and every core of the run (or one, for light kinds) per rank.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use crate::stages::kind::{ConfigError, StageKind, Threads};

/// A stage's `resources:` block, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// MPI ranks (collective kinds only; rank-0 kinds run on one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks: Option<NonZeroUsize>,
    /// Cores (libtorch and loader threads) per rank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads_per_rank: Option<NonZeroUsize>,
    /// GPUs per rank (Slurm's `--gpus-per-task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus_per_rank: Option<usize>,
    /// Memory per node in Slurm's form: a number with an optional K, M, G or
    /// T suffix (`16G`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Wall-time limit in Slurm's form (`30`, `2:00:00`, `1-12:00:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Slurm partition (queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

impl Resources {
    /// Checks the block for a stage of `kind` (formats, and ranks only where
    /// the kind is collective).
    pub fn check(&self, kind: &StageKind) -> Result<(), ConfigError> {
        let err = |path: &str, message: String| {
            Err(ConfigError {
                path: path.into(),
                message,
            })
        };
        if let Some(r) = self.ranks {
            if r.get() > 1 && !kind.props.collective {
                return err(
                    "ranks",
                    format!(
                        "`{}` runs on rank 0 alone; only collective kinds take more ranks",
                        kind.name
                    ),
                );
            }
        }
        if let Some(t) = &self.time {
            if let Err(m) = time_seconds(t) {
                return err("time", m);
            }
        }
        if let Some(m) = &self.memory {
            if let Err(m) = check_memory(m) {
                return err("memory", m);
            }
        }
        if let Some(p) = &self.partition {
            if p.is_empty()
                || p.chars()
                    .any(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            {
                return err(
                    "partition",
                    format!("`{p}` is not a partition name (letters, digits, `-`, `_`, `.`)"),
                );
            }
        }
        Ok(())
    }

    /// Ranks the stage runs on, given the run's default for collective kinds.
    pub fn ranks(&self, kind: &StageKind, default_ranks: usize) -> usize {
        if !kind.props.collective {
            return 1;
        }
        self.ranks.map_or(default_ranks.max(1), NonZeroUsize::get)
    }

    /// Threads per rank, given the cores a rank has when the stage takes them all.
    pub fn threads(&self, kind: &StageKind, all: usize) -> usize {
        self.threads_if_known(kind, Some(all.max(1))).unwrap_or(1)
    }

    /// Threads per rank where `all` (the cores of a rank) may be unknown:
    /// `None` when the stage takes them all and their number is not known.
    pub fn threads_if_known(&self, kind: &StageKind, all: Option<usize>) -> Option<usize> {
        match (self.threads_per_rank, kind.props.threads) {
            (Some(t), _) => Some(t.get()),
            (None, Threads::All) => all,
            (None, Threads::One) => Some(1),
        }
    }

    /// The wall-time limit in seconds, when there is one.
    pub fn time_limit(&self) -> Option<u64> {
        self.time.as_deref().and_then(|t| time_seconds(t).ok())
    }

    /// One line for `pipeline plan`: what was asked and what it comes to.
    pub fn describe(&self, kind: &StageKind, default_ranks: usize, all: usize) -> String {
        let mut s = format!(
            "{} rank(s) x {} thread(s)",
            self.ranks(kind, default_ranks),
            self.threads(kind, all)
        );
        if let Some(g) = self.gpus_per_rank {
            s.push_str(&format!(", {g} GPU(s)/rank"));
        }
        for (k, v) in [
            ("memory", &self.memory),
            ("time", &self.time),
            ("partition", &self.partition),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(", {k} {v}"));
            }
        }
        s
    }
}

/// Seconds in a Slurm time limit: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M` or `D-H:M:S`.
pub fn time_seconds(t: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{t}` is not a Slurm time limit (minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S, e.g. `30` or `2:00:00`)"
        )
    };
    let num = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 9 {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, t),
    };
    let parts = rest
        .split(':')
        .map(num)
        .collect::<Result<Vec<u64>, String>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) | (Some(_), [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(_), [h]) => h * 3600,
        (Some(_), [h, m]) => h * 3600 + m * 60,
        _ => return Err(bad()),
    };
    let secs = secs + days.unwrap_or(0) * 86_400;
    if secs == 0 {
        return Err(format!("`{t}` is no time at all"));
    }
    Ok(secs)
}

fn check_memory(m: &str) -> Result<(), String> {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
    let suffixes = m.len() - digits.len();
    if digits.is_empty()
        || suffixes > 1
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.bytes().all(|b| b == b'0')
    {
        return Err(format!(
            "`{m}` is not an amount of memory in Slurm's form (a number of MiB, or with a K, M, G or T suffix: `16G`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_limits_read_as_slurm_reads_them() {
        for (t, s) in [
            ("30", 1800),
            ("1:30", 90),
            ("2:00:00", 7200),
            ("1-0", 86_400),
            ("1-12:30", 131_400),
            ("2-00:00:01", 172_801),
        ] {
            assert_eq!(time_seconds(t), Ok(s), "{t}");
        }
        for t in [
            "",
            "2 hours",
            "1:2:3:4",
            "-5",
            "0",
            "1-",
            "a:00",
            "1-2:3:4:5",
        ] {
            assert!(time_seconds(t).is_err(), "{t:?} accepted");
        }
        assert!(check_memory("16G").is_ok() && check_memory("4000").is_ok());
        for m in ["", "G", "16GB", "1.5G", "0"] {
            assert!(check_memory(m).is_err(), "{m:?} accepted");
        }
    }

    #[test]
    fn defaults_come_from_the_kind_and_rank_zero_kinds_refuse_ranks() {
        let train = crate::stages::lookup("train.classifier").unwrap();
        let cmd = crate::stages::lookup("command").unwrap();
        let none = Resources::default();
        assert_eq!((none.ranks(train, 4), none.threads(train, 8)), (4, 8));
        assert_eq!((none.ranks(cmd, 4), none.threads(cmd, 8)), (1, 1));
        let two = Resources {
            ranks: NonZeroUsize::new(2),
            ..Resources::default()
        };
        assert!(two.check(train).is_ok());
        let e = two.check(cmd).unwrap_err();
        assert_eq!(e.path, "ranks");
        assert!(e.message.contains("rank 0 alone"), "{}", e.message);
    }
}
