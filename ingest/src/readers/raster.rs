//! JPEG and PNG cutouts (Galaxy Zoo serves SDSS gri colour JPEGs): JPEGs
//! through libjpeg-turbo ([`super::jpeg`]), cropped and, when the result is
//! resized anyway, reduced in the DCT domain while decoding; PNGs through the
//! `image` crate. Values are scaled to [0, 1]; colour images keep their bands.

use std::path::Path;

use crate::preprocess::{crop_box, Image};
use crate::readers::jpeg;
use crate::{Error, Result};

/// Decodes a JPEG or PNG into a planar f32 image in [0, 1]: one band for
/// greyscale, three for colour (alpha is dropped).
pub fn read_image(path: &Path) -> Result<Image> {
    read_image_cropped(path, 1.0)
}

/// Like [`read_image`], keeping only the central `fraction` of each axis
/// (as [`Image::centre_crop`] would). The crop is taken from the 8-bit pixels
/// before they are widened to f32, so a small crop of a large cutout costs
/// little beyond the decode.
pub fn read_image_cropped(path: &Path, fraction: f32) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("failed to read", path, e))?;
    decode_cropped(path, &bytes, fraction)
}

/// [`read_image_cropped`] of a file already in memory (`path` names it in errors).
pub fn decode_cropped(path: &Path, bytes: &[u8], fraction: f32) -> Result<Image> {
    decode_for(path, bytes, fraction, None)
}

/// Like [`decode_cropped`], for a crop that will be resized to `at_least`
/// (width, height) or more: a JPEG is then decoded at 1/2, 1/4 or 1/8 scale
/// where the crop stays at least that large (libjpeg-turbo's scaled inverse
/// DCT, a low-pass reduction), so a 64 px stamp from the central half of a
/// 423 px cutout decodes 212 px and crops 106 instead of 423 and 212.
pub fn decode_for(
    path: &Path,
    bytes: &[u8],
    fraction: f32,
    at_least: Option<(usize, usize)>,
) -> Result<Image> {
    if let Err(e) = jpeg_complete(bytes) {
        return Err(Error::format(path, None, e));
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let d = jpeg::decode_box(bytes, at_least, |h, w| crop_box(h, w, fraction))
            .map_err(|e| Error::format(path, None, e))?;
        let plane = d.width * d.height;
        let mut data = vec![0.0f32; d.channels * plane];
        // One pass over the interleaved pixels (a strided iterator per band
        // was a tenth of the ingest's time).
        const SCALE: f32 = 1.0 / 255.0;
        if d.channels == 3 {
            let (r, rest) = data.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, px) in d.pixels.chunks_exact(3).enumerate() {
                r[i] = px[0] as f32 * SCALE;
                g[i] = px[1] as f32 * SCALE;
                b[i] = px[2] as f32 * SCALE;
            }
        } else {
            for (c, out) in data.chunks_exact_mut(plane).enumerate() {
                let samples = d.pixels[c..].iter().step_by(d.channels);
                for (o, &v) in out.iter_mut().zip(samples) {
                    *o = v as f32 * SCALE;
                }
            }
        }
        return Image::new(d.channels, d.height, d.width, data)
            .ok_or_else(|| Error::format(path, None, "image has a zero dimension"));
    }
    let decoded = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io("failed to read", path, e))?
        .decode()
        .map_err(|source| Error::Image {
            path: path.to_path_buf(),
            source,
        })?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::format(path, None, "image has a zero dimension"));
    }
    let (y0, x0, ch, cw) = crop_box(h, w, fraction);
    // 16-bit PNGs keep their precision; 8-bit images (JPEG) stay 8-bit until cropped.
    let sixteen = matches!(
        decoded.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    let colour = decoded.color().has_color();
    let channels = if colour { 3 } else { 1 };
    let mut data = vec![0.0f32; channels * ch * cw];
    let plane = ch * cw;
    macro_rules! fill {
        ($buf:expr, $max:expr) => {{
            let buf = $buf;
            let scale = 1.0 / $max;
            for y in 0..ch {
                let row = &buf[((y0 + y) * w + x0) * channels..((y0 + y) * w + x0 + cw) * channels];
                for c in 0..channels {
                    let out = &mut data[c * plane + y * cw..c * plane + (y + 1) * cw];
                    for (o, px) in out.iter_mut().zip(row.chunks_exact(channels)) {
                        *o = px[c] as f32 * scale;
                    }
                }
            }
        }};
    }
    match (colour, sixteen) {
        (true, false) => fill!(decoded.into_rgb8().into_raw(), 255.0),
        (false, false) => fill!(decoded.into_luma8().into_raw(), 255.0),
        (true, true) => fill!(decoded.into_rgb16().into_raw(), 65535.0),
        (false, true) => fill!(decoded.into_luma16().into_raw(), 65535.0),
    }
    Image::new(channels, ch, cw, data)
        .ok_or_else(|| Error::format(path, None, "image has a zero dimension"))
}

/// For a JPEG, checks that its last scan ends with the end-of-image
/// marker (at once when the file ends with it, as nearly all do): a truncated file otherwise decodes into a partly grey image
/// without a word (PIL refuses it: "image file is truncated"). A marker
/// cannot occur inside a scan (a 0xFF there is followed by 0x00 or a
/// restart marker), so the file is complete when an EOI follows the last
/// start-of-scan. Other formats pass.
fn jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) || bytes.ends_with(&[0xFF, 0xD9]) {
        return Ok(());
    }
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let Some(sos) = last_scan else {
        return Err(format!(
            "truncated JPEG: no image data (start-of-scan marker) in {} bytes",
            bytes.len()
        ));
    };
    if bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(format!(
            "truncated JPEG: the image data ends after {} bytes without its end-of-image marker",
            bytes.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_jpeg_is_an_error_not_a_grey_image() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/gz1/images/587722952767439450.jpeg");
        let bytes = std::fs::read(&p).unwrap();
        assert!(decode_cropped(&p, &bytes, 1.0).is_ok());
        let err = decode_cropped(&p, &bytes[..3000], 1.0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("587722952767439450.jpeg") && err.contains("truncated JPEG"),
            "{err}"
        );
        // Bytes after the end-of-image marker (some writers pad) are no truncation.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 64]);
        assert!(decode_cropped(&p, &padded, 1.0).is_ok());
    }

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

    #[test]
    fn cropping_while_decoding_equals_cropping_after() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/gz1/images/587722952767439450.jpeg");
        let whole = read_image(&p).unwrap();
        for f in [0.5f32, 0.33, 1.0] {
            assert_eq!(
                read_image_cropped(&p, f).unwrap(),
                whole.centre_crop(f),
                "fraction {f}"
            );
        }
    }
}
