//! JPEG decoding through libjpeg-turbo's TurboJPEG 3 API (`turbojpeg-sys`,
//! which builds the library from its vendored source and links it
//! statically), for the two things that make survey cutouts cheap:
//!
//! - **scaled decoding**: the inverse DCT run at 1/2, 1/4 or 1/8 of the
//!   block size, a low-pass reduction that costs less than the full decode;
//! - **cropped decoding**: only the blocks that hold the crop go through the
//!   inverse DCT and colour conversion (the entropy-coded data above and
//!   beside them is still read, as JPEG requires).
//!
//! The safe `turbojpeg` crate exposes scaling but not cropping, so this module
//! calls the C API directly; every call's buffer sizes come from the library's
//! own header values, bounded before any allocation.

use std::cell::RefCell;

use turbojpeg_sys as tj;

/// A decoded region in 8-bit interleaved samples (1 or 3 per pixel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Samples, row-major, `channels` per pixel.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// The reduction applied: 1, 2, 4 or 8.
    pub scale_denom: usize,
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Whether the image is greyscale.
    pub grey: bool,
    /// The iMCU width in pixels at full scale (cropping aligns to it), or
    /// `None` where the layout does not allow cropping (lossless, unknown).
    mcu_width: Option<usize>,
}

/// Larger images are refused (libjpeg-turbo checks it before allocating):
/// 2^28 pixels, a 16k x 16k frame.
const MAX_PIXELS: i32 = 1 << 28;

/// One TurboJPEG decompressor; not shared between threads.
struct Handle(tj::tjhandle);

#[allow(unsafe_code)]
impl Handle {
    fn new() -> Result<Handle, String> {
        // SAFETY: tj3Init has no preconditions; a null return is an error.
        let h = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as libc::c_int) };
        if h.is_null() {
            return Err("cannot initialise libjpeg-turbo".into());
        }
        let handle = Handle(h);
        // SAFETY: `h` is a valid decompressor handle.
        unsafe {
            tj::tj3Set(h, tj::TJPARAM_TJPARAM_MAXPIXELS as libc::c_int, MAX_PIXELS);
        }
        Ok(handle)
    }

    fn error(&self) -> String {
        // SAFETY: the handle is valid; the library returns a NUL-terminated
        // string it owns, copied before the next call.
        unsafe {
            let s = tj::tj3GetErrorStr(self.0);
            if s.is_null() {
                "unknown libjpeg-turbo error".into()
            } else {
                std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        }
    }

    /// Whether the last error was a warning (the image decoded, perhaps
    /// with damage); PIL decodes those too.
    fn last_was_warning(&self) -> bool {
        // SAFETY: the handle is valid.
        unsafe { tj::tj3GetErrorCode(self.0) == tj::TJERR_TJERR_WARNING as libc::c_int }
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: the handle is valid; unknown parameters return -1.
        unsafe { tj::tj3Get(self.0, param as libc::c_int) }
    }

    fn header(&mut self, bytes: &[u8]) -> Result<Header, String> {
        // SAFETY: `bytes` is a valid slice for the duration of the call.
        let r = unsafe { tj::tj3DecompressHeader(self.0, bytes.as_ptr(), bytes.len() as _) };
        if r != 0 {
            return Err(self.error());
        }
        let (w, h) = (
            self.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
            self.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
        );
        if w <= 0 || h <= 0 {
            return Err(format!("JPEG header gives a {w}x{h} image"));
        }
        if (w as i64) * (h as i64) > MAX_PIXELS as i64 {
            return Err(format!(
                "JPEG header claims {w}x{h} pixels, more than {MAX_PIXELS}"
            ));
        }
        let lossless = self.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1;
        let mcu_width = match self.get(tj::TJPARAM_TJPARAM_SUBSAMP) {
            _ if lossless => None,
            s if s == tj::TJSAMP_TJSAMP_444 || s == tj::TJSAMP_TJSAMP_GRAY => Some(8),
            s if s == tj::TJSAMP_TJSAMP_440 || s == tj::TJSAMP_TJSAMP_441 => Some(8),
            s if s == tj::TJSAMP_TJSAMP_422 || s == tj::TJSAMP_TJSAMP_420 => Some(16),
            s if s == tj::TJSAMP_TJSAMP_411 => Some(32),
            _ => None,
        };
        Ok(Header {
            width: w as usize,
            height: h as usize,
            grey: self.get(tj::TJPARAM_TJPARAM_COLORSPACE) == tj::TJCS_TJCS_GRAY as i32,
            mcu_width,
        })
    }

    /// Decodes the region (x, y, w, h) of the image scaled by 1/`denom`
    /// (coordinates in the scaled image; x aligned to the scaled iMCU; all
    /// zero for the whole image), `size` (w, h) pixels.
    fn decode(
        &mut self,
        bytes: &[u8],
        denom: usize,
        region: (usize, usize, usize, usize),
        (w, h): (usize, usize),
        channels: usize,
    ) -> Result<Vec<u8>, String> {
        let (x, y, rw, rh) = region;
        let mut out = vec![0u8; w * h * channels];
        let format = if channels == 1 {
            tj::TJPF_TJPF_GRAY
        } else {
            tj::TJPF_TJPF_RGB
        };
        // SAFETY: the handle is valid; `out` holds exactly w * h * channels
        // bytes, the size tj3Decompress8 writes for the scaled, cropped region
        // (or the whole scaled image, which the caller passes as `size`) with a
        // pitch of 0 (w * channels); the region lies within the scaled image
        // (checked by the caller and again by the library).
        unsafe {
            let factor = tj::tjscalingfactor {
                num: 1,
                denom: denom as libc::c_int,
            };
            if tj::tj3SetScalingFactor(self.0, factor) != 0 {
                return Err(self.error());
            }
            let crop = tj::tjregion {
                x: x as libc::c_int,
                y: y as libc::c_int,
                w: rw as libc::c_int,
                h: rh as libc::c_int,
            };
            if tj::tj3SetCroppingRegion(self.0, crop) != 0 {
                return Err(self.error());
            }
            let r = tj::tj3Decompress8(
                self.0,
                bytes.as_ptr(),
                bytes.len() as _,
                out.as_mut_ptr(),
                0,
                format as libc::c_int,
            );
            if r != 0 && !self.last_was_warning() {
                return Err(self.error());
            }
        }
        Ok(out)
    }
}

#[allow(unsafe_code)]
impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

thread_local! {
    // One decompressor per thread: creating one costs more than a small decode.
    static HANDLE: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

fn with_handle<T>(f: impl FnOnce(&mut Handle) -> Result<T, String>) -> Result<T, String> {
    HANDLE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Handle::new()?);
        }
        f(slot.as_mut().expect("just set"))
    })
}

/// Reads the header only.
pub fn header(bytes: &[u8]) -> Result<Header, String> {
    with_handle(|h| h.header(bytes))
}

/// The reduction (1, 2, 4 or 8) to decode a `crop` x `crop` (width, height)
/// region at: the largest that keeps it at least `at_least` pixels on each
/// side, so what is later resized to that size is never upsampled.
pub fn scale_for(crop: (usize, usize), at_least: Option<(usize, usize)>) -> usize {
    let Some((tw, th)) = at_least else { return 1 };
    [8, 4, 2]
        .into_iter()
        .find(|d| crop.0 / d >= tw && crop.1 / d >= th)
        .unwrap_or(1)
}

/// Decodes the box `crop` gives (it receives an image's height and width and
/// returns (y0, x0, height, width)), reduced by the largest factor that keeps
/// the full-scale box at least `at_least` (width, height) pixels; the box is
/// then taken from the reduced image by the same rule.
pub fn decode_box(
    bytes: &[u8],
    at_least: Option<(usize, usize)>,
    crop: impl Fn(usize, usize) -> (usize, usize, usize, usize),
) -> Result<Decoded, String> {
    let head = header(bytes)?;
    let denom = match head.mcu_width {
        Some(_) => {
            let (_, _, fh, fw) = crop(head.height, head.width);
            scale_for((fw, fh), at_least)
        }
        None => 1,
    };
    decode_at(bytes, denom, crop)
}

/// Decodes the box `crop` gives of the image reduced by 1/`denom`.
fn decode_at(
    bytes: &[u8],
    denom: usize,
    crop: impl Fn(usize, usize) -> (usize, usize, usize, usize),
) -> Result<Decoded, String> {
    with_handle(|h| {
        let head = h.header(bytes)?;
        let channels = if head.grey { 1 } else { 3 };
        let (sw, sh) = (head.width.div_ceil(denom), head.height.div_ceil(denom));
        let (y0, x0, ch, cw) = crop(sh, sw);
        // The region's left edge must fall on a (scaled) iMCU boundary; a
        // layout that cannot be cropped is decoded whole and cut here.
        let (rx, ry, rw, rh) = match head.mcu_width {
            Some(m) => {
                let m = (m / denom).max(1);
                let rx = x0 / m * m;
                (rx, y0, x0 + cw - rx, ch)
            }
            None => (0, 0, sw, sh),
        };
        if rx + rw > sw || ry + rh > sh || x0 < rx || y0 < ry {
            return Err(format!(
                "crop {cw}x{ch} at ({x0}, {y0}) lies outside the {sw}x{sh} image"
            ));
        }
        // The whole image is asked for as no cropping region at all, which
        // layouts that cannot be cropped (lossless) accept.
        let whole = (rx, ry, rw, rh) == (0, 0, sw, sh);
        let region_arg = if whole {
            (0, 0, 0, 0)
        } else {
            (rx, ry, rw, rh)
        };
        let region = h.decode(bytes, denom, region_arg, (rw, rh), channels)?;
        let (dx, dy) = (x0 - rx, y0 - ry);
        let mut pixels = Vec::with_capacity(cw * ch * channels);
        for row in 0..ch {
            let start = ((dy + row) * rw + dx) * channels;
            pixels.extend_from_slice(&region[start..start + cw * channels]);
        }
        Ok(Decoded {
            pixels,
            width: cw,
            height: ch,
            channels,
            scale_denom: denom,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::crop_box;

    fn galaxy() -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/gz1/images/587722952767439450.jpeg");
        std::fs::read(p).unwrap()
    }

    #[test]
    fn the_reduction_never_goes_below_the_target() {
        assert_eq!(scale_for((212, 212), Some((64, 64))), 2);
        assert_eq!(scale_for((423, 423), Some((64, 64))), 4);
        assert_eq!(scale_for((512, 512), Some((64, 64))), 8);
        assert_eq!(scale_for((127, 127), Some((64, 64))), 1);
        assert_eq!(scale_for((212, 212), None), 1);
    }

    #[test]
    fn a_cropped_decode_equals_the_same_crop_of_the_whole_image() {
        let bytes = galaxy();
        let head = header(&bytes).unwrap();
        // The central half of 423 px, for a 64 px stamp: decoded at 1/2.
        let stamp = decode_box(&bytes, Some((64, 64)), |h, w| crop_box(h, w, 0.5)).unwrap();
        assert_eq!(
            (stamp.scale_denom, stamp.width, stamp.height),
            (2, 106, 106)
        );
        assert_eq!((head.width, head.height, head.grey), (423, 423, false));
        for denom in [1, 2, 4, 8] {
            let whole = decode_at(&bytes, denom, |h, w| (0, 0, h, w)).unwrap();
            assert_eq!(whole.width, 423usize.div_ceil(denom));
            let cut = |h: usize, w: usize| (h / 4, w / 3 + 1, h / 2, w / 2);
            let part = decode_at(&bytes, denom, cut).unwrap();
            let (y0, x0, ch, cw) = cut(whole.height, whole.width);
            assert_eq!((part.height, part.width), (ch, cw));
            for r in 0..ch {
                let a = &part.pixels[r * cw * 3..(r + 1) * cw * 3];
                let s = ((y0 + r) * whole.width + x0) * 3;
                assert_eq!(
                    a,
                    &whole.pixels[s..s + cw * 3],
                    "row {r} at 1/{}",
                    part.scale_denom
                );
            }
        }
    }

    #[test]
    fn damaged_headers_are_errors() {
        let bytes = galaxy();
        assert!(header(&bytes[..20]).is_err());
        assert!(decode_box(b"not a jpeg", None, |h, w| (0, 0, h, w)).is_err());
    }
}
