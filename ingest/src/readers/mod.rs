//! Readers of what users bring: survey images (FITS through cfitsio with its
//! WCS, JPEG through libjpeg-turbo, PNG), label catalogues (CSV/Parquet through polars) and
//! binary-black-hole waveforms (HDF5: LVC NR, SXS, our banks).

pub mod catalog;
pub mod fits;
pub mod jpeg;
pub mod raster;
pub mod waveforms;
pub mod wcs;
