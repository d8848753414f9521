//! Generators of data that is not at hand: synthetic galaxies as FITS files,
//! and a dataset split re-imaged as a second survey would see it.

pub mod resurvey;
pub mod synth;
