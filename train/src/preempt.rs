//! Stopping a training run cleanly when asked: Slurm's warning signal
//! before a job's time limit (`--signal=B:USR1@<seconds>`, passed on by the
//! batch script) sets a flag; [`crate::learner::fit`] sees it at its next
//! step, all ranks agree on it, a checkpoint is written and the run ends
//! with [`crate::Error::Preempted`], to be resumed from that checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::dist::Comm;

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes SIGUSR1 a request to checkpoint and stop (instead of ending the
/// process, its default action).
pub fn listen() -> std::io::Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(flag())).map(|_| ())
}

/// Asks running training to checkpoint and stop, as the signal does.
pub fn request() {
    flag().store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for on any rank (a collective call: every rank
/// must make it at the same step, so that all stop at the same step).
pub fn agreed(comm: &dyn Comm) -> bool {
    let mut asked = [f64::from(u8::from(flag().load(Ordering::SeqCst)))];
    if comm.size() > 1 {
        comm.allreduce_sum_f64(&mut asked);
    }
    asked[0] > 0.0
}
