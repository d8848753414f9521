//! Reading the records back: the rows of `pipeline history` and `show`, a
//! run's provenance, artifacts and metrics.

use rusqlite::params;

use super::{Metric, Records};
use crate::Error;

/// One row of `pipeline history`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Run id.
    pub id: i64,
    /// Unix seconds.
    pub started: f64,
    /// Unix seconds, when finished.
    pub finished: Option<f64>,
    /// `running`, `ok` or `failed`.
    pub status: String,
    /// Workflow name.
    pub workflow: String,
    /// Ranks.
    pub world_size: i64,
    /// Stages executed.
    pub executed: i64,
    /// Stages skipped as up to date.
    pub skipped: i64,
}

/// Everything recorded about one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Run id.
    pub id: i64,
    /// Unix seconds.
    pub started: f64,
    /// Unix seconds, when finished.
    pub finished: Option<f64>,
    /// `running`, `ok`, `failed` or `interrupted`.
    pub status: String,
    /// Workflow name.
    pub workflow: String,
    /// The workflow file.
    pub file: String,
    /// Ranks.
    pub world_size: i64,
    /// The host of rank 0.
    pub host: String,
    /// The command line.
    pub argv: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The workflow as run (params and every reference resolved), as JSON.
    pub resolved: Option<String>,
}

/// One row of `pipeline show`.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRunRow {
    /// Stage name.
    pub stage: String,
    /// Its kind, `name@version`.
    pub kind: String,
    /// `ran`, `skipped` or `failed`.
    pub status: String,
    /// Why it ran or was skipped.
    pub reason: String,
    /// Seconds it took (0 when skipped).
    pub seconds: f64,
    /// Fingerprint.
    pub fingerprint: String,
    /// Ranks that took part.
    pub ranks: i64,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// An output file recorded for a stage run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The stage that wrote it.
    pub stage: String,
    /// The file.
    pub path: String,
    /// Its size in bytes.
    pub bytes: i64,
    /// BLAKE3 of its content, hex.
    pub blake3: String,
}

impl Artifact {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Artifact> {
        Ok(Artifact {
            stage: r.get(0)?,
            path: r.get(1)?,
            bytes: r.get(2)?,
            blake3: r.get(3)?,
        })
    }
}

impl Records {
    /// The most recent runs, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<RunRow>, Error> {
        self.rows(
            "SELECT r.id, r.started, r.finished, r.status, r.workflow, r.world_size,
                    (SELECT COUNT(*) FROM stage_runs s WHERE s.run_id = r.id AND s.status != 'skipped'),
                    (SELECT COUNT(*) FROM stage_runs s WHERE s.run_id = r.id AND s.status = 'skipped')
             FROM runs r ORDER BY r.id DESC LIMIT ?1",
            params![limit as i64],
            |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    started: r.get(1)?,
                    finished: r.get(2)?,
                    status: r.get(3)?,
                    workflow: r.get(4)?,
                    world_size: r.get(5)?,
                    executed: r.get(6)?,
                    skipped: r.get(7)?,
                })
            },
        )
    }

    /// Everything recorded about run `id`, if there is one.
    pub fn run_info(&self, id: i64) -> Result<Option<RunInfo>, Error> {
        let mut rows = self.rows(
            "SELECT id, started, finished, status, workflow, file, world_size, host, argv, error, resolved
             FROM runs WHERE id = ?1",
            params![id],
            |r| {
                Ok(RunInfo {
                    id: r.get(0)?,
                    started: r.get(1)?,
                    finished: r.get(2)?,
                    status: r.get(3)?,
                    workflow: r.get(4)?,
                    file: r.get(5)?,
                    world_size: r.get(6)?,
                    host: r.get(7)?,
                    argv: r.get(8)?,
                    error: r.get(9)?,
                    resolved: r.get(10)?,
                })
            },
        )?;
        Ok(rows.pop())
    }

    /// Stores the workflow as run `id` resolved it.
    pub fn set_resolved(&self, id: i64, resolved: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE runs SET resolved = ?1 WHERE id = ?2",
                params![resolved, id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The newest run's id.
    pub fn last_run(&self) -> Result<Option<i64>, Error> {
        self.conn
            .query_row("SELECT MAX(id) FROM runs", [], |r| r.get(0))
            .map_err(self.err())
    }

    /// The stages of a run, in order.
    pub fn stage_runs(&self, run_id: i64) -> Result<Vec<StageRunRow>, Error> {
        self.rows(
            "SELECT stage, status, reason, COALESCE(seconds, 0), fingerprint, ranks, error, kind
             FROM stage_runs WHERE run_id = ?1 ORDER BY id",
            params![run_id],
            |r| {
                Ok(StageRunRow {
                    stage: r.get(0)?,
                    status: r.get(1)?,
                    reason: r.get(2)?,
                    seconds: r.get(3)?,
                    fingerprint: r.get(4)?,
                    ranks: r.get(5)?,
                    error: r.get(6)?,
                    kind: r.get(7)?,
                })
            },
        )
    }

    /// Artifacts of a run's stages, in the order they were recorded.
    pub fn artifacts(&self, run_id: i64) -> Result<Vec<Artifact>, Error> {
        self.rows(
            "SELECT s.stage, a.path, a.size, a.blake3 FROM artifacts a
             JOIN stage_runs s ON s.id = a.stage_run_id WHERE s.run_id = ?1 ORDER BY a.rowid",
            params![run_id],
            Artifact::from_row,
        )
    }

    /// Artifacts `stage` wrote in run `run_id`.
    pub fn stage_artifacts(&self, run_id: i64, stage: &str) -> Result<Vec<Artifact>, Error> {
        self.rows(
            "SELECT s.stage, a.path, a.size, a.blake3 FROM artifacts a
             JOIN stage_runs s ON s.id = a.stage_run_id
             WHERE s.run_id = ?1 AND s.stage = ?2 ORDER BY a.rowid",
            params![run_id, stage],
            Artifact::from_row,
        )
    }

    /// Metrics of the most recent execution of `stage`.
    pub fn metrics(&self, stage: &str) -> Result<Vec<Metric>, Error> {
        self.rows(
            "SELECT step, name, value FROM metrics WHERE stage_run_id =
               (SELECT MAX(stage_run_id) FROM metrics WHERE stage = ?1) ORDER BY rowid",
            params![stage],
            |r| {
                Ok(Metric {
                    step: r.get(0)?,
                    name: r.get(1)?,
                    value: r.get(2)?,
                })
            },
        )
    }
}
