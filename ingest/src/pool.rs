//! The worker pool every dataset writer and image generator runs on: rayon,
//! sized to the stage's threads (`-j`, `resources.threads_per_rank`), so one
//! mechanism does work stealing, ordering and panic propagation for all.

use rayon::prelude::*;

use crate::{Error, Result};

/// Runs `f` on every item with `threads` workers (at least one) and returns
/// the results in item order, or the first error.
pub(crate) fn map<T, R, F>(threads: usize, items: &[T], f: F) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync + Send,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("ingest-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start {threads} worker thread(s): {e}")))?;
    pool.install(|| items.par_iter().map(&f).collect())
}
