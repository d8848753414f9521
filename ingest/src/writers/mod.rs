//! Dataset writers: each turns one kind of input into the dataset contract
//! of [`crate::contract`] through the shared two-phase shard writer, and
//! brings only its plan and its per-sample code.

pub mod galaxy_images;
pub mod random_images;
pub mod waveforms;
