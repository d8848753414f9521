//! Data in: readers for survey images (FITS through cfitsio, JPEG/PNG cutouts),
//! label catalogues (through polars) and waveform banks (through libhdf5); the
//! dataset writers; and the sharded, prefetching loader that training reads
//! datasets back with.
//!
//! The folders say which is which:
//!
//! ```text
//! contract.rs     the dataset contract (dataset.json, splits, shard records)
//! readers/        what users bring: FITS + WCS, JPEG (libjpeg-turbo)/PNG, catalogues, NR waveforms
//! writers/        inputs into datasets: galaxy images, waveforms, random images
//! shards.rs       the two-phase shard writer every writer shares
//! pool.rs         the worker pool (rayon) writers and generators run on
//! generators/     synthetic galaxies, a second survey's view of a split
//! loader.rs       sharded, prefetching reads for training and evaluation
//! files.rs        atomic file and Parquet writes
//! preprocess.rs   crops, resizing, normalisation
//! ```
//!
//! A dataset is a directory in one fixed contract that Python reads with no
//! code of ours (see [`contract`]).
//!
//! This crate knows nothing of workflows, libtorch or MPI: a distributed caller
//! passes its rank and world size as a [`Partition`] and synchronises ranks
//! itself (see [`writers::DatasetWriter`]).

pub mod contract;
pub mod files;
pub mod generators;
pub mod loader;
pub mod native;
pub mod pixels;
pub mod preprocess;
pub mod readers;
pub mod spline;
pub mod writers;

mod error;
mod pool;
mod shards;

pub use contract::{DatasetInfo, OnError, Partition, Split, SplitFractions};
pub use error::{Error, Result};
pub use loader::{Batch, Compact, Loader, LoaderConfig};
pub use writers::galaxy_images::GalaxyImagesConfig;
