//! JPEG and PNG cutouts through the `image` crate (Galaxy Zoo serves SDSS gri
//! colour JPEGs). Values are scaled to [0, 1]; colour images keep their bands.

use std::path::Path;

use crate::preprocess::Image;
use crate::{Error, Result};

/// Decodes a JPEG or PNG into a planar f32 image in [0, 1]: one band for
/// greyscale, three for colour (alpha is dropped).
pub fn read_image(path: &Path) -> Result<Image> {
    let decoded = image::ImageReader::open(path)
        .map_err(|e| Error::io("failed to open", path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io("failed to read", path, e))?
        .decode()
        .map_err(|source| Error::Image {
            path: path.to_path_buf(),
            source,
        })?;
    let colour = decoded.color().has_color();
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let (channels, interleaved) = if colour {
        (3, decoded.to_rgb32f().into_raw())
    } else {
        (1, decoded.to_luma32f().into_raw())
    };
    let n = w * h;
    let mut data = vec![0.0f32; channels * n];
    for (i, px) in interleaved.chunks_exact(channels).enumerate() {
        for (c, v) in px.iter().enumerate() {
            data[c * n + i] = *v;
        }
    }
    Image::new(channels, h, w, data)
        .ok_or_else(|| Error::format(path, None, "image has a zero dimension"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_real_galaxy_zoo_jpeg_into_three_bands() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/gz1/images/587722952767439450.jpeg");
        let img = read_image(&p).unwrap();
        assert_eq!((img.channels, img.height, img.width), (3, 423, 423));
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
        // The galaxy is centred: the centre is brighter than the corner.
        let n = 423 * 423;
        let centre = img.data[n + 211 * 423 + 211];
        let corner = img.data[n + 5 * 423 + 5];
        assert!(centre > corner + 0.1, "centre {centre} corner {corner}");
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.jpeg");
        std::fs::write(&p, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        let err = read_image(&p).unwrap_err().to_string();
        assert!(err.contains("broken.jpeg"), "{err}");
    }
}
