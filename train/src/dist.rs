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
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMIX_RANK",
        "PMI_SIZE",
        "PMI_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// Ranks on this node according to the launcher's environment (1 if unknown).
pub fn local_size_from_env() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
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
