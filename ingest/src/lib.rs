//! Data in: readers for survey images (FITS through cfitsio, JPEG/PNG cutouts),
//! label catalogues (through polars) and waveform banks (through libhdf5); the
//! sharded dataset writer; and the sharded, prefetching loader that training
//! reads it back with.
//!
//! A dataset is a directory in one fixed contract that Python reads with no
//! code of ours:
//!
//! ```text
//! manifest.parquet                  one row per sample (id, shard, index, split, label, source)
//! shards/shard-00000.safetensors    tensors `x` [n, C, H, W] f32 and `y` [n] i64
//! dataset.json                      schema, class names, per-shard BLAKE3 checksums, counts, provenance
//! rejects.parquet                   inputs skipped, with the reason
//! ```
//!
//! This crate knows nothing of workflows, libtorch or MPI: a distributed caller
//! passes its rank and world size as a [`Partition`] and synchronises ranks
//! itself (see [`dataset::write_partition`] and [`dataset::finalize`]).

pub mod catalog;
pub mod dataset;
pub mod fits;
pub mod loader;
pub mod preprocess;
pub mod random_images;
pub mod raster;
pub mod resurvey;
pub mod spline;
pub mod synth;
pub mod waveform;
pub mod waveset;
pub mod wcs;

mod error;

pub use dataset::{DatasetInfo, GalaxyImagesConfig, Partition};
pub use error::{Error, Result};
pub use loader::{Batch, Loader, LoaderConfig};
