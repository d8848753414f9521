//! Waveforms to score with a model trained on a dataset, each put on that
//! dataset's time grid as its samples were (the settings and grid its
//! `dataset.json` records), one at a time. No parameters are needed: what a
//! file records of its binary is not read into the input.

use std::path::{Path, PathBuf};

use super::{channels, list_items, Banks, Item, WaveformsConfig};
use crate::contract::{DatasetInfo, OnError, Reject};
use crate::{Error, Result};

/// New waveforms (bank rows, LVC NR files, SXS files), prepared as a
/// reference dataset's samples were.
pub struct WaveformInputs {
    config: WaveformsConfig,
    items: Vec<Item>,
    unreadable: Vec<Reject>,
    banks: Banks,
    start: f64,
    samples: usize,
}

impl WaveformInputs {
    /// Lists `inputs` (files, or folders of `*.h5`) and readies them to be
    /// put on the grid of the dataset in `reference`. A file that is no
    /// waveform file is listed in [`WaveformInputs::unreadable`].
    pub fn like(reference: &Path, inputs: &[PathBuf]) -> Result<Self> {
        let info = DatasetInfo::load(reference)?;
        let mut config: WaveformsConfig = serde_json::from_value(info.provenance.config.clone())
            .map_err(|e| {
                Error::Config(format!(
                    "{} records waveform ingest settings this version cannot read: {e}",
                    reference.join("dataset.json").display()
                ))
            })?;
        let Some([start, dt, n]) = info.time_grid else {
            return Err(Error::Config(format!(
                "{} records no time grid (not a waveform dataset)",
                reference.join("dataset.json").display()
            )));
        };
        config.inputs = inputs.to_vec();
        config.dt = dt;
        config.on_error = OnError::Skip;
        let (items, unreadable) = list_items(&config)?;
        let banks = Banks::load(&items)?;
        Ok(WaveformInputs {
            config,
            items,
            unreadable,
            banks,
            start,
            samples: n as usize,
        })
    }

    /// How many waveforms the inputs hold.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether they hold none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Input `i`'s sample id (the file's name; `bank#row` for a bank's rows).
    pub fn id(&self, i: usize) -> String {
        self.items[i].id()
    }

    /// Where input `i` comes from (`path`, or `path#row`).
    pub fn source(&self, i: usize) -> String {
        self.items[i].source()
    }

    /// Files among the inputs that hold no waveform, each with why.
    pub fn unreadable(&self) -> &[Reject] {
        &self.unreadable
    }

    /// The shape of one prepared input, `[channels, samples]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.config.representation.channels(), self.samples]
    }

    /// Appends input `i`, on the grid, to `out`. Nothing is appended on an
    /// error, which names the file (and row).
    pub fn prepare(&self, i: usize, out: &mut Vec<f32>) -> Result<()> {
        let it = &self.items[i];
        let w = self.banks.waveform(it, &self.config)?;
        let c = &self.config;
        let x = channels(
            &w,
            self.start,
            c.dt,
            self.samples,
            c.representation,
            c.align_phase,
        )
        .map_err(|e| Error::format(Path::new(&it.source()), None, e))?;
        out.extend_from_slice(&x);
        Ok(())
    }
}
