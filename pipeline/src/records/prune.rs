//! Forgetting: stages a workflow no longer has, and all but the latest
//! runs (`pipeline clean`).

use rusqlite::params;

use super::{Records, StageState};
use crate::Error;

impl Records {
    /// Every stage with a recorded current output.
    pub fn recorded_stages(&self) -> Result<Vec<String>, Error> {
        self.rows("SELECT stage FROM stage_state ORDER BY stage", [], |r| {
            r.get(0)
        })
    }

    /// Forgets a stage's current output (its directory was removed).
    pub fn forget_stage(&self, stage: &str) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM stage_state WHERE stage = ?1", params![stage])
            .map_err(self.err())?;
        Ok(())
    }

    /// Runs beyond the `keep` latest that made no current output (whose
    /// records `clean` may drop), oldest first.
    pub fn runs_beyond(&self, keep: usize) -> Result<Vec<i64>, Error> {
        let current: std::collections::HashSet<i64> = self
            .rows("SELECT state FROM stage_state", [], |r| {
                r.get::<_, String>(0)
            })?
            .iter()
            .filter_map(|t| serde_json::from_str::<StageState>(t).ok())
            .map(|s| s.run_id)
            .collect();
        let ids: Vec<i64> = self.rows(
            "SELECT id FROM runs WHERE status != 'running' ORDER BY id DESC LIMIT -1 OFFSET ?1",
            params![keep as i64],
            |r| r.get(0),
        )?;
        let mut ids: Vec<i64> = ids.into_iter().filter(|i| !current.contains(i)).collect();
        ids.reverse();
        Ok(ids)
    }

    /// Drops runs and everything recorded under them, then compacts the
    /// database; returns the bytes it shrank by.
    pub fn drop_runs(&mut self, ids: &[i64]) -> Result<u64, Error> {
        let before = self.size_on_disk();
        self.batch(|r| {
            for id in ids {
                r.conn
                    .execute_batch(&format!(
                        "DELETE FROM artifacts WHERE stage_run_id IN (SELECT id FROM stage_runs WHERE run_id = {id});
                         DELETE FROM metrics WHERE stage_run_id IN (SELECT id FROM stage_runs WHERE run_id = {id});
                         DELETE FROM stage_runs WHERE run_id = {id};
                         DELETE FROM runs WHERE id = {id};"
                    ))
                    .map_err(r.err())?;
            }
            Ok(())
        })?;
        self.conn
            .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(self.err())?;
        Ok(before.saturating_sub(self.size_on_disk()))
    }

    fn size_on_disk(&self) -> u64 {
        ["", "-wal"]
            .iter()
            .filter_map(|ext| {
                let mut p = self.path.clone().into_os_string();
                p.push(ext);
                std::fs::metadata(p).ok()
            })
            .map(|m| m.len())
            .sum()
    }
}
