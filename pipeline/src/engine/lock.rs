//! The workdir's locks: one whole run at a time, or any number of a
//! per-stage submission's jobs (a shared workdir lock and one exclusive lock
//! per stage), taken without waiting and naming who holds them.

use std::fs::File;
use std::path::Path;

use crate::Error;

/// Holds a lock (the workdir's, or a stage's) for the life of a run.
pub struct WorkdirLock {
    _file: File,
}

/// Takes the workdir's lock, or fails at once naming who holds it.
pub fn lock_workdir(workdir: &Path) -> Result<WorkdirLock, Error> {
    take_lock(workdir, "lock", false)
}

/// Shares the workdir with the other jobs of a per-stage submission: any
/// number of them at once, but never beside a whole run.
pub(crate) fn lock_shared(workdir: &Path) -> Result<WorkdirLock, Error> {
    take_lock(workdir, "lock", true)
}

/// Takes one stage's lock (a job of a per-stage submission runs it).
pub(crate) fn lock_stage(workdir: &Path, stage: &str) -> Result<WorkdirLock, Error> {
    take_lock(workdir, &format!("lock.{stage}"), false)
}

/// Takes `<workdir>/.pipeline/<name>` (shared or exclusive) without waiting.
fn take_lock(workdir: &Path, name: &str, shared: bool) -> Result<WorkdirLock, Error> {
    let dir = workdir.join(".pipeline");
    std::fs::create_dir_all(&dir).map_err(Error::io("failed to create", &dir))?;
    let path = dir.join(name);
    let owner_file = dir.join(format!("{name}.owner"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(Error::io("failed to open", &path))?;
    let taken = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match taken {
        Ok(()) => {
            let _ = std::fs::write(
                &owner_file,
                format!(
                    "pid {} on {}\n",
                    std::process::id(),
                    crate::records::hostname()
                ),
            );
            Ok(WorkdirLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let owner = std::fs::read_to_string(&owner_file).unwrap_or_default();
            Err(Error::Locked {
                workdir: workdir.to_path_buf(),
                owner: owner.trim().to_string(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("failed to lock", &path)(e)),
    }
}
