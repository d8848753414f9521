//! Run records in an embedded SQLite database (`<workdir>/.pipeline/records.sqlite`).
//!
//! Tables:
//! - `runs`: one row per `pipeline run` (times, status, world size, host, command line);
//! - `stage_runs`: one row per stage execution per run (`ran`, `skipped`,
//!   `failed`, `stopped` at a checkpoint before a time limit, `interrupted`), with the fingerprint,
//!   the reason, times, ranks, host, exit status and error;
//! - `artifacts`: the files each executed stage produced (path, size, BLAKE3);
//! - `metrics`: numbers stages report (stage, step, name, value);
//! - `stage_state`: for each stage, what its current output was made from (the
//!   fingerprint and the parts it covers), so `pipeline plan` can say what changed;
//! - `file_cache`: BLAKE3 of files keyed by (path, size, mtime, inode), so an
//!   unchanged input is never read twice.
//!
//! Only rank 0 opens the database.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::Error;

mod mounts;
mod prune;
mod queries;

pub use queries::{Artifact, RunInfo, RunRow, StageRunRow};

/// What a stage's current output was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    /// The stage's fingerprint when it last completed.
    pub fingerprint: String,
    /// Its kind and version, `name@version`.
    pub kind: String,
    /// The `with:` block then, references resolved, as written.
    pub config: serde_json::Value,
    /// The configuration it ran with, every default filled in (`None` in
    /// states written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<serde_json::Value>,
    /// Input path -> BLAKE3 then.
    pub inputs: Vec<(String, String)>,
    /// Upstream stage -> output hash then.
    pub upstream: Vec<(String, String)>,
    /// BLAKE3 of the output directory as written.
    pub output_hash: String,
    /// The run that produced it.
    pub run_id: i64,
    /// The reproducibility mode it ran in (states written before modes
    /// existed read as the default, `native`).
    #[serde(default)]
    pub reproducible: sciflow_train::Reproducible,
    /// The workflow's seed then (`None` in states written before it was
    /// recorded).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A file's path, size in bytes and BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    /// The file.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// BLAKE3 of its content, hex.
    pub blake3: String,
}

/// A number a stage reported: at which step (an epoch, a rank count, 0),
/// under which name, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The stage's own step.
    pub step: i64,
    /// What it measures (`train_loss`, `accuracy`, ...).
    pub name: String,
    /// The value.
    pub value: f64,
}

/// The records database.
pub struct Records {
    conn: Connection,
    path: PathBuf,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Records {
        path: path.to_path_buf(),
        source,
    }
}

const SCHEMA: &str = "
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    workflow TEXT NOT NULL,
    file TEXT NOT NULL,
    world_size INTEGER NOT NULL,
    host TEXT NOT NULL,
    argv TEXT NOT NULL,
    error TEXT,
    resolved TEXT
);
CREATE TABLE IF NOT EXISTS stage_runs (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    stage TEXT NOT NULL,
    kind TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    seconds REAL,
    ranks INTEGER NOT NULL,
    host TEXT NOT NULL,
    exit INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS stage_runs_stage ON stage_runs(stage);
CREATE TABLE IF NOT EXISTS artifacts (
    stage_run_id INTEGER NOT NULL REFERENCES stage_runs(id),
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    blake3 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    stage_run_id INTEGER NOT NULL REFERENCES stage_runs(id),
    stage TEXT NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_stage ON metrics(stage);
CREATE TABLE IF NOT EXISTS stage_state (
    stage TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS file_cache (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    blake3 TEXT NOT NULL
);
";

/// Unix time in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(t: f64) -> String {
    let secs = t as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

impl Records {
    /// Opens (creating if needed) the database of `workdir`.
    pub fn open(workdir: &Path) -> Result<Self, Error> {
        let dir = workdir.join(".pipeline");
        std::fs::create_dir_all(&dir).map_err(Error::io("failed to create", &dir))?;
        let path = dir.join("records.sqlite");
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        // Jobs of a per-stage submission finishing at once queue here.
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(db_err(&path))?;
        // WAL needs memory shared between the processes, which a network
        // filesystem cannot give; there the rollback journal and its
        // file locks keep concurrent jobs' records consistent.
        let journal = match mounts::network_filesystem(&dir) {
            Some(fs) => {
                tracing::debug!("{} is on {fs}: rollback journal", path.display());
                "DELETE"
            }
            None => "WAL",
        };
        conn.pragma_update(None, "journal_mode", journal)
            .map_err(db_err(&path))?;
        conn.execute_batch(SCHEMA).map_err(db_err(&path))?;
        // Databases written before runs recorded their resolved workflow.
        let has_resolved: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('runs') WHERE name = 'resolved'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db_err(&path))?
            > 0;
        if !has_resolved {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN resolved TEXT;")
                .map_err(db_err(&path))?;
        }
        Ok(Records { conn, path })
    }

    /// Opens an existing database read-only for the query commands.
    pub fn open_existing(workdir: &Path) -> Result<Self, Error> {
        let path = workdir.join(".pipeline/records.sqlite");
        if !path.is_file() {
            return Err(Error::NotRecorded {
                path,
                message: "no run records here yet (nothing has run in this workdir)".into(),
            });
        }
        Self::open(workdir)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        db_err(&self.path)
    }

    /// Marks runs and stages left `running` by a process that died as `interrupted`
    /// (called under the workdir lock, so none of them is still alive).
    pub fn mark_interrupted(&self) -> Result<(), Error> {
        self.conn
            .execute_batch(
                "UPDATE runs SET status = 'interrupted' WHERE status = 'running';
                 UPDATE stage_runs SET status = 'interrupted' WHERE status = 'running';",
            )
            .map_err(self.err())
    }

    /// Marks `stage`'s executions in run `run_id` left `running` by a job
    /// that died as `interrupted` (called under the stage's lock).
    pub fn mark_stage_interrupted(&self, run_id: i64, stage: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE stage_runs SET status = 'interrupted' WHERE status = 'running' AND run_id = ?1 AND stage = ?2",
                params![run_id, stage],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Marks a stage execution as `stopped`: it checkpointed on request
    /// before a time limit, to be resumed (not a failure of the stage).
    pub fn mark_stopped(&self, stage_run: i64) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE stage_runs SET status = 'stopped' WHERE id = ?1",
                params![stage_run],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Marks an interrupted run as running again (a per-stage submission
    /// whose next job joins it).
    pub fn reopen_run(&self, run_id: i64) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'running', finished = NULL WHERE id = ?1",
                params![run_id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Starts a run; returns its id.
    pub fn begin_run(
        &self,
        workflow: &str,
        file: &str,
        world_size: usize,
        argv: &str,
    ) -> Result<i64, Error> {
        self.conn
            .execute(
                "INSERT INTO runs (started, status, workflow, file, world_size, host, argv) VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6)",
                params![now(), workflow, file, world_size as i64, hostname(), argv],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Ends a run.
    pub fn end_run(&self, run_id: i64, error: Option<&str>) -> Result<(), Error> {
        let status = if error.is_some() { "failed" } else { "ok" };
        self.conn
            .execute(
                "UPDATE runs SET finished = ?1, status = ?2, error = ?3 WHERE id = ?4",
                params![now(), status, error, run_id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records a stage that was skipped as up to date.
    pub fn stage_skipped(
        &self,
        run_id: i64,
        stage: &str,
        kind: &str,
        fingerprint: &str,
        reason: &str,
        ranks: usize,
    ) -> Result<(), Error> {
        let t = now();
        self.conn
            .execute(
                "INSERT INTO stage_runs (run_id, stage, kind, fingerprint, status, reason, started, finished, seconds, ranks, host) VALUES (?1, ?2, ?3, ?4, 'skipped', ?5, ?6, ?6, 0, ?7, ?8)",
                params![run_id, stage, kind, fingerprint, reason, t, ranks as i64, hostname()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records the start of a stage; returns the stage-run id.
    pub fn stage_started(
        &self,
        run_id: i64,
        stage: &str,
        kind: &str,
        fingerprint: &str,
        reason: &str,
        ranks: usize,
    ) -> Result<i64, Error> {
        self.conn
            .execute(
                "INSERT INTO stage_runs (run_id, stage, kind, fingerprint, status, reason, started, ranks, host) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8)",
                params![run_id, stage, kind, fingerprint, reason, now(), ranks as i64, hostname()],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records the end of a stage, with its artifacts and metrics. Call it
    /// inside [`Records::batch`] to make it one transaction with the rest.
    pub fn stage_finished(
        &self,
        stage_run: i64,
        stage: &str,
        seconds: f64,
        error: Option<&str>,
        artifacts: &[FileHash],
        metrics: &[Metric],
    ) -> Result<(), Error> {
        let err = self.err();
        self.conn
            .execute(
                "UPDATE stage_runs SET status = ?1, finished = ?2, seconds = ?3, exit = ?4, error = ?5 WHERE id = ?6",
                params![
                    if error.is_some() { "failed" } else { "ran" },
                    now(),
                    seconds,
                    if error.is_some() { 1 } else { 0 },
                    error,
                    stage_run
                ],
            )
            .map_err(&err)?;
        let mut ins = self
            .conn
            .prepare_cached(
                "INSERT INTO artifacts (stage_run_id, path, size, blake3) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(&err)?;
        for a in artifacts {
            ins.execute(params![stage_run, a.path, a.bytes as i64, a.blake3])
                .map_err(&err)?;
        }
        let mut ins = self
            .conn
            .prepare_cached("INSERT INTO metrics (stage_run_id, stage, step, name, value) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(&err)?;
        for Metric { step, name, value } in metrics {
            ins.execute(params![stage_run, stage, step, name, value])
                .map_err(&err)?;
        }
        Ok(())
    }

    /// The state a stage's current output was made from.
    pub fn stage_state(&self, stage: &str) -> Result<Option<StageState>, Error> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM stage_state WHERE stage = ?1")
            .and_then(|mut st| st.query_row(params![stage], |r| r.get(0)).optional())
            .map_err(self.err())?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Replaces a stage's state after it completed.
    pub fn set_stage_state(&self, stage: &str, state: &StageState) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT INTO stage_state (stage, state) VALUES (?1, ?2) ON CONFLICT(stage) DO UPDATE SET state = excluded.state",
                params![stage, serde_json::to_string(state).expect("state serialises")],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// A cached hash for a file whose (size, mtime, inode) are unchanged.
    pub fn cached_hash(
        &self,
        path: &str,
        size: u64,
        mtime_ns: i64,
        inode: u64,
    ) -> Result<Option<String>, Error> {
        self.conn
            .prepare_cached("SELECT blake3 FROM file_cache WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3 AND inode = ?4")
            .and_then(|mut s| {
                s.query_row(params![path, size as i64, mtime_ns, inode as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err())
    }

    /// Stores a file's hash with its stat.
    pub fn store_hash(
        &self,
        path: &str,
        size: u64,
        mtime_ns: i64,
        inode: u64,
        hash: &str,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO file_cache (path, size, mtime_ns, inode, blake3) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, blake3 = excluded.blake3",
            )
            .and_then(|mut s| s.execute(params![path, size as i64, mtime_ns, inode as i64, hash]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Runs a closure in one transaction (many cache writes at once).
    pub fn batch<T>(&mut self, f: impl FnOnce(&Records) -> Result<T, Error>) -> Result<T, Error> {
        self.conn
            .execute_batch("BEGIN")
            .map_err(db_err(&self.path))?;
        let out = f(self);
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(end).map_err(db_err(&self.path))?;
        out
    }

    /// Runs a query and maps every row.
    fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, Error> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let rows = stmt.query_map(params, map).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Ends a per-stage submission's run: `ok` when each of `stages` ran
    /// or was up to date in it, else `failed` naming the others, which it
    /// returns. Executions its jobs left `running` become `interrupted`.
    pub fn end_submitted_run(&self, run_id: i64, stages: &[String]) -> Result<Vec<String>, Error> {
        self.conn
            .execute(
                "UPDATE stage_runs SET status = 'interrupted' WHERE status = 'running' AND run_id = ?1",
                params![run_id],
            )
            .map_err(self.err())?;
        let mut missing = Vec::new();
        for stage in stages {
            let last: Option<String> = self
                .conn
                .query_row(
                    "SELECT status FROM stage_runs WHERE run_id = ?1 AND stage = ?2 ORDER BY id DESC LIMIT 1",
                    params![run_id, stage],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.err())?;
            match last.as_deref() {
                Some("ran") | Some("skipped") => {}
                Some(status) => missing.push(format!("{stage} ({status})")),
                None => missing.push(format!("{stage} (never started)")),
            }
        }
        let error = (!missing.is_empty()).then(|| format!("not completed: {}", missing.join(", ")));
        self.end_run(run_id, error.as_deref())?;
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_journal_follows_the_filesystem_of_the_workdir() {
        // A local temporary directory: WAL.
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap();
        let mode: String = records
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
