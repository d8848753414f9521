//! The communicator: what data-parallel training needs from MPI, and nothing more.
//!
//! [`Single`] is the one-process case. With the `mpi` feature, [`init`] starts
//! MPI when the process was launched by `mpirun`/`srun` (detected from the
//! launcher's environment) and returns an MPI communicator; otherwise it returns
//! [`Single`] without touching MPI, so a laptop run needs no MPI runtime.

/// Collective operations over the ranks of a job.
pub trait Comm: Send + Sync {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum over all ranks, in place.
    fn allreduce_sum_f32(&self, buf: &mut [f32]);
    /// Element-wise sum over all ranks, in place.
    fn allreduce_sum_f64(&self, buf: &mut [f64]);
    /// Copies rank `root`'s buffer into every rank's.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize);
    /// Copies rank `root`'s bytes into every rank's (lengths must agree).
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize);
    /// Waits for every rank.
    fn barrier(&self);
    /// Ends every rank of the job with `code`. Used after a rank has printed its
    /// error, so that the others do not wait forever in a collective.
    fn abort(&self, code: i32) -> !;
    /// Ranks on this node (for sizing thread pools).
    fn local_size(&self) -> usize {
        1
    }
}

/// A job of one process.
#[derive(Debug, Default, Clone, Copy)]
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn allreduce_sum_f32(&self, _: &mut [f32]) {}
    fn allreduce_sum_f64(&self, _: &mut [f64]) {}
    fn broadcast_f32(&self, _: &mut [f32], _: usize) {}
    fn broadcast_bytes(&self, _: &mut [u8], _: usize) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// True when a process launcher (OpenMPI, MPICH/Hydra, PMIx, Slurm's srun) started us.
pub fn launched_by_mpi() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// Variables an MPI launcher (mpirun, srun with PMI/PMIx, hydra) sets.
const LAUNCHER_VARS: [&str; 5] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "PMI_SIZE",
    "PMI_RANK",
    "MPI_LOCALNRANKS",
];

/// Under `srun`, the tasks of this job step when there are more than one
/// but MPI sees this process alone: srun started the copies without
/// connecting them (no PMI), so each would run the whole job by itself.
/// Returns the message that says how to launch instead.
pub fn unconnected_slurm_tasks(
    ranks: usize,
    var: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    // Under mpirun in an allocation the step's tasks are mpirun's daemons,
    // not the ranks: only a process no MPI launcher started is checked.
    if LAUNCHER_VARS.iter().any(|k| var(k).is_some()) {
        return None;
    }
    let tasks: usize = var("SLURM_STEP_NUM_TASKS")?.trim().parse().ok()?;
    (tasks > 1 && ranks == 1).then(|| {
        format!(
            "srun started {tasks} tasks (SLURM_STEP_NUM_TASKS={tasks}) but MPI sees 1 rank: the \
             tasks are not connected, and each would run the whole workflow alone. Launch with \
             `srun --mpi=pmix` (Debian's Slurm defaults to --mpi=none; `pipeline submit` writes \
             it), or with mpirun inside the allocation"
        )
    })
}

/// The launcher variables of this process that are set, `NAME=value`.
pub fn launcher_variables() -> Vec<String> {
    LAUNCHER_VARS
        .iter()
        .chain(&["SLURM_JOB_ID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"])
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect()
}

/// The MPI library this binary runs on (the first line of what it says of
/// itself; asking needs no MPI_Init), or why there is none.
pub fn library_version() -> Result<String, crate::Error> {
    #[cfg(feature = "mpi")]
    {
        mpi::environment::library_version()
            .map(|s| {
                // The C string may come with its NUL terminator.
                let first = s.lines().next().unwrap_or_default();
                first
                    .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
            .map_err(|e| crate::Error::Dist(format!("the MPI library's version: {e}")))
    }
    #[cfg(not(feature = "mpi"))]
    {
        Err(crate::Error::Dist(
            "built without the `mpi` feature: one process only".into(),
        ))
    }
}

/// Ranks on this node according to the launcher's environment (1 if unknown).
pub fn local_size_from_env() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
        // srun's own, as "2" or "2(x3),1": this node's count comes first.
        "SLURM_STEP_TASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| {
        let s = std::env::var(v).ok()?;
        let head: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        head.parse().ok()
    })
    .unwrap_or(1)
}

/// Starts MPI if this process was launched by an MPI launcher, else returns [`Single`].
///
/// Call once per process: MPI cannot be initialised twice.
pub fn init() -> Result<Box<dyn Comm>, crate::Error> {
    #[cfg(feature = "mpi")]
    if launched_by_mpi() {
        return mpi_comm::Mpi::init().map(|c| Box::new(c) as Box<dyn Comm>);
    }
    if launched_by_mpi() {
        return Err(crate::Error::Dist(
            "started by an MPI launcher, but built without the `mpi` feature".into(),
        ));
    }
    Ok(Box::new(Single))
}

#[cfg(feature = "mpi")]
mod mpi_comm {
    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    use super::Comm;

    /// MPI_COMM_WORLD. Dropping it finalises MPI.
    pub struct Mpi {
        world: SimpleCommunicator,
        _universe: mpi::environment::Universe,
    }

    // MPI is initialised with MPI_THREAD_SINGLE semantics and every call is made
    // from the thread that owns the communicator (the training loop); the loader's
    // threads never touch it.
    #[allow(unsafe_code)]
    unsafe impl Send for Mpi {}
    #[allow(unsafe_code)]
    unsafe impl Sync for Mpi {}

    impl Mpi {
        pub fn init() -> Result<Self, crate::Error> {
            let universe = mpi::initialize().ok_or_else(|| {
                crate::Error::Dist("MPI was already initialised in this process".into())
            })?;
            Ok(Mpi {
                world: universe.world(),
                _universe: universe,
            })
        }
    }

    impl Comm for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn allreduce_sum_f32(&self, buf: &mut [f32]) {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn allreduce_sum_f64(&self, buf: &mut [f64]) {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn broadcast_f32(&self, buf: &mut [f32], root: usize) {
            self.world.process_at_rank(root as i32).broadcast_into(buf);
        }
        fn broadcast_bytes(&self, buf: &mut [u8], root: usize) {
            self.world.process_at_rank(root as i32).broadcast_into(buf);
        }
        fn barrier(&self) {
            // A non-blocking barrier polled with growing sleeps: ranks waiting
            // for a root-only stage would otherwise spin in MPI and take the
            // cores that rank 0 is working on.
            let mut req = self.world.immediate_barrier();
            let mut pause = std::time::Duration::from_micros(50);
            loop {
                match req.test() {
                    Ok(_) => return,
                    Err(r) => req = r,
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(20));
            }
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
        fn local_size(&self) -> usize {
            super::local_size_from_env()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srun_tasks_that_mpi_does_not_connect_are_named() {
        let env =
            |n: &'static str| move |k: &str| (k == "SLURM_STEP_NUM_TASKS").then(|| n.to_string());
        let why = unconnected_slurm_tasks(1, env("2")).expect("2 tasks, 1 rank");
        assert!(why.contains("srun --mpi=pmix"), "{why}");
        assert_eq!(unconnected_slurm_tasks(2, env("2")), None, "connected");
        assert_eq!(unconnected_slurm_tasks(1, env("1")), None, "one task");
        assert_eq!(unconnected_slurm_tasks(1, |_| None), None, "not under srun");
        // mpirun -n 1 in a two-node allocation: its daemons are the step's tasks.
        let mpirun = |k: &str| match k {
            "SLURM_STEP_NUM_TASKS" => Some("2".to_string()),
            "OMPI_COMM_WORLD_SIZE" => Some("1".to_string()),
            _ => None,
        };
        assert_eq!(unconnected_slurm_tasks(1, mpirun), None);
    }
}
