//! Running a workflow: what is out of date and why ([`plan`], from
//! [`fingerprint`]s), the executor ([`exec`]) and its scheduler, the
//! workdir's locks, and [`clean`].

pub mod clean;
pub mod exec;
pub mod fingerprint;
mod lock;
pub mod plan;
mod root;
mod schedule;
