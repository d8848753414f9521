//! Meeting a cluster: Slurm batch scripts and their submission ([`slurm`]),
//! and what a machine gives a run ([`doctor`]).

pub mod doctor;
mod jobscript;
pub mod slurm;
