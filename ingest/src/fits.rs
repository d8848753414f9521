//! FITS images through cfitsio.
//!
//! cfitsio applies BSCALE/BZERO while reading (so unsigned 16-bit images come
//! out right) and opens whole-file `.gz` compression transparently.

use std::path::Path;

use fitsio::hdu::HduInfo;
use fitsio::images::{ImageDescription, ImageType};
use fitsio::FitsFile;
use serde::{Deserialize, Serialize};

use crate::preprocess::Image;
use crate::{Error, Result};

/// Which HDU holds the image: an index (0 is the primary) or an EXTNAME.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Hdu {
    /// Zero-based HDU index.
    Index(usize),
    /// The HDU's EXTNAME, such as `SCI`.
    Name(String),
}

impl Default for Hdu {
    fn default() -> Self {
        Hdu::Index(0)
    }
}

impl std::fmt::Display for Hdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hdu::Index(i) => write!(f, "{i}"),
            Hdu::Name(n) => write!(f, "'{n}'"),
        }
    }
}

/// Reads a 2-D image or a 3-D cube (bands first) from one HDU as f32 in physical units.
pub fn read_image(path: &Path, hdu: &Hdu) -> Result<Image> {
    let fits_err = |source| Error::Fits {
        path: path.to_path_buf(),
        hdu: hdu.to_string(),
        source,
    };
    let mut file = FitsFile::open(path).map_err(fits_err)?;
    let h = match hdu {
        Hdu::Index(i) => file.hdu(*i),
        Hdu::Name(n) => file.hdu(n.as_str()),
    }
    .map_err(fits_err)?;
    let shape = match &h.info {
        HduInfo::ImageInfo { shape, .. } => shape.clone(),
        _ => {
            return Err(Error::format(
                path,
                Some(format!("HDU {hdu}")),
                "expected an image HDU, found a table",
            ))
        }
    };
    let (channels, height, width) = match shape.as_slice() {
        [h, w] => (1, *h, *w),
        [c, h, w] => (*c, *h, *w),
        [] => {
            return Err(Error::format(
                path,
                Some(format!("HDU {hdu}")),
                "the HDU holds no image data (NAXIS = 0)",
            ))
        }
        other => {
            return Err(Error::format(
                path,
                Some(format!("HDU {hdu}")),
                format!("expected a 2-D image or a 3-D cube, found shape {other:?}"),
            ))
        }
    };
    let data: Vec<f32> = h.read_image(&mut file).map_err(fits_err)?;
    Image::new(channels, height, width, data).ok_or_else(|| {
        Error::format(
            path,
            Some(format!("HDU {hdu}")),
            "image data size does not match NAXISn",
        )
    })
}

/// Header cards written with an image, as (keyword, value, comment).
pub type Cards<'a> = &'a [(&'a str, CardValue, &'a str)];

/// A header value.
#[derive(Debug, Clone)]
pub enum CardValue {
    /// A string value.
    Str(String),
    /// A floating-point value.
    Float(f64),
    /// An integer value.
    Int(i64),
}

/// Writes a single-band float32 image into the primary HDU of a new file, with header cards.
///
/// The file is written under a temporary name and renamed, so a reader never
/// sees a half-written image.
pub fn write_image(path: &Path, image: &Image, cards: Cards<'_>) -> Result<()> {
    let tmp = path.with_extension("fits.tmp");
    let _ = std::fs::remove_file(&tmp);
    let fits_err = |source| Error::Fits {
        path: path.to_path_buf(),
        hdu: "0".into(),
        source,
    };
    let dims = if image.channels == 1 {
        vec![image.height, image.width]
    } else {
        vec![image.channels, image.height, image.width]
    };
    let desc = ImageDescription {
        data_type: ImageType::Float,
        dimensions: &dims,
    };
    {
        let mut f = FitsFile::create(&tmp)
            .with_custom_primary(&desc)
            .open()
            .map_err(fits_err)?;
        let hdu = f.primary_hdu().map_err(fits_err)?;
        for (key, value, comment) in cards {
            let r = match value {
                CardValue::Str(s) => hdu.write_key(&mut f, key, (s.as_str(), *comment)),
                CardValue::Float(x) => hdu.write_key(&mut f, key, (*x, *comment)),
                CardValue::Int(x) => hdu.write_key(&mut f, key, (*x, *comment)),
            };
            r.map_err(fits_err)?;
        }
        hdu.write_image(&mut f, &image.data).map_err(fits_err)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("failed to rename into", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_header_and_hdu_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.fits");
        let img = Image::new(1, 3, 4, (0..12).map(|v| v as f32).collect()).unwrap();
        write_image(
            &p,
            &img,
            &[("BUNIT", CardValue::Str("nanomaggy".into()), "")],
        )
        .unwrap();
        let back = read_image(&p, &Hdu::Index(0)).unwrap();
        assert_eq!((back.channels, back.height, back.width), (1, 3, 4));
        assert_eq!(back.data, img.data);

        let err = read_image(&p, &Hdu::Name("SCI".into())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("HDU 'SCI'") && msg.contains("x.fits"), "{msg}");
        let err = read_image(&p, &Hdu::Index(3)).unwrap_err().to_string();
        assert!(err.contains("HDU 3"), "{err}");
    }

    #[test]
    fn reads_a_real_image_as_the_raw_bytes_say() {
        // A CFHT MegaPrime cutout (BITPIX -32), committed under data/fits with its provenance.
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fits/cfht_megaprime_sa110.fits");
        let img = read_image(&p, &Hdu::Index(0)).unwrap();
        assert_eq!((img.channels, img.height, img.width), (1, 101, 101));
        // Cross-check against the raw big-endian floats after the 2880-byte header
        // blocks, decoded here without cfitsio.
        let bytes = std::fs::read(&p).unwrap();
        let header_end = (0..bytes.len() / 2880)
            .map(|b| b * 2880)
            .find(|&o| {
                bytes[o..o + 2880]
                    .chunks(80)
                    .any(|c| c.starts_with(b"END     "))
            })
            .unwrap()
            + 2880;
        let raw: Vec<f32> = bytes[header_end..header_end + 101 * 101 * 4]
            .chunks(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(img.data, raw);
        assert!(raw.iter().any(|v| *v != 0.0));
    }
}
