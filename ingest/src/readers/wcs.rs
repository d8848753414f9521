//! The gnomonic (TAN) world coordinate system of survey frames, enough to cut
//! a stamp at a catalogue RA/Dec (FITS WCS Paper II, Calabretta & Greisen 2002).
//!
//! The linear part is `CD` when present, else `PC` (identity by default) scaled
//! by `CDELT`, else `CDELT` with the old `CROTA2` rotation. Pixel coordinates
//! here are FITS ones: 1-based, `(1, 1)` the centre of the first stored pixel.
//! DES `TPV` frames are read as TAN without their polynomial distortion, an
//! error well under a pixel near the tangent point, which a centred stamp
//! tolerates; other projections are refused with the CTYPE named.

/// Header values a TAN WCS is built from, as read from one HDU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WcsKeys {
    /// `CTYPE1`, `CTYPE2`.
    pub ctype: [Option<String>; 2],
    /// `CRPIX1`, `CRPIX2`.
    pub crpix: [Option<f64>; 2],
    /// `CRVAL1`, `CRVAL2` (degrees).
    pub crval: [Option<f64>; 2],
    /// `CD1_1`, `CD1_2`, `CD2_1`, `CD2_2`.
    pub cd: [Option<f64>; 4],
    /// `PC1_1`, `PC1_2`, `PC2_1`, `PC2_2`.
    pub pc: [Option<f64>; 4],
    /// `CDELT1`, `CDELT2`.
    pub cdelt: [Option<f64>; 2],
    /// `CROTA2` (degrees).
    pub crota2: Option<f64>,
}

/// A TAN projection: pixel <-> (RA, Dec) in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TanWcs {
    crpix: [f64; 2],
    /// (alpha_0, delta_0) in radians.
    crval: [f64; 2],
    /// Pixel offset -> intermediate world coordinates (degrees), row-major.
    cd: [f64; 4],
    /// The inverse of `cd`.
    cd_inv: [f64; 4],
}

/// Why a header does not give a usable TAN WCS.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WcsError {
    /// A required keyword is absent.
    #[error("no {0} keyword (a TAN WCS needs CTYPEn, CRPIXn, CRVALn and CD or CDELT)")]
    Missing(&'static str),
    /// The projection is not gnomonic.
    #[error("CTYPE1/2 = '{0}'/'{1}': only RA---TAN/DEC--TAN (or TPV) frames can be cut at RA/Dec")]
    Projection(String, String),
    /// The linear transformation cannot be inverted.
    #[error("the CD matrix is singular")]
    Singular,
}

impl TanWcs {
    /// Builds the projection from header keys.
    pub fn from_keys(k: &WcsKeys) -> Result<TanWcs, WcsError> {
        let c1 = k.ctype[0].clone().ok_or(WcsError::Missing("CTYPE1"))?;
        let c2 = k.ctype[1].clone().ok_or(WcsError::Missing("CTYPE2"))?;
        let proj_ok = |c: &str, axis: &str| {
            let c = c.trim();
            c.starts_with(axis) && (c.ends_with("-TAN") || c.ends_with("-TPV"))
        };
        if !(proj_ok(&c1, "RA") && proj_ok(&c2, "DEC")) {
            return Err(WcsError::Projection(c1, c2));
        }
        let crpix = [
            k.crpix[0].ok_or(WcsError::Missing("CRPIX1"))?,
            k.crpix[1].ok_or(WcsError::Missing("CRPIX2"))?,
        ];
        let crval = [
            k.crval[0].ok_or(WcsError::Missing("CRVAL1"))?.to_radians(),
            k.crval[1].ok_or(WcsError::Missing("CRVAL2"))?.to_radians(),
        ];
        let cd = if k.cd.iter().any(Option::is_some) {
            // A CD matrix with some elements left out has those elements zero.
            k.cd.map(|v| v.unwrap_or(0.0))
        } else {
            let d1 = k.cdelt[0].ok_or(WcsError::Missing("CD1_1 or CDELT1"))?;
            let d2 = k.cdelt[1].ok_or(WcsError::Missing("CD2_2 or CDELT2"))?;
            let pc = if k.pc.iter().any(Option::is_some) {
                [
                    k.pc[0].unwrap_or(1.0),
                    k.pc[1].unwrap_or(0.0),
                    k.pc[2].unwrap_or(0.0),
                    k.pc[3].unwrap_or(1.0),
                ]
            } else {
                let r = k.crota2.unwrap_or(0.0).to_radians();
                // CROTA2 convention: PC1_2 = -sin(r) * CDELT2 / CDELT1, PC2_1 = sin(r) * CDELT1 / CDELT2.
                [r.cos(), -r.sin() * d2 / d1, r.sin() * d1 / d2, r.cos()]
            };
            [d1 * pc[0], d1 * pc[1], d2 * pc[2], d2 * pc[3]]
        };
        let det = cd[0] * cd[3] - cd[1] * cd[2];
        if det.abs() < f64::MIN_POSITIVE || !det.is_finite() {
            return Err(WcsError::Singular);
        }
        let cd_inv = [cd[3] / det, -cd[1] / det, -cd[2] / det, cd[0] / det];
        Ok(TanWcs {
            crpix,
            crval,
            cd,
            cd_inv,
        })
    }

    /// The FITS pixel (1-based x, y) of a sky position, or `None` when the
    /// position is 90 degrees or more from the tangent point (not on the plane).
    pub fn world_to_pixel(&self, ra_deg: f64, dec_deg: f64) -> Option<(f64, f64)> {
        let (a, d) = (ra_deg.to_radians(), dec_deg.to_radians());
        let [a0, d0] = self.crval;
        let cos_c = d0.sin() * d.sin() + d0.cos() * d.cos() * (a - a0).cos();
        if cos_c <= 1e-8 {
            return None;
        }
        let xi = (d.cos() * (a - a0).sin() / cos_c).to_degrees();
        let eta = ((d0.cos() * d.sin() - d0.sin() * d.cos() * (a - a0).cos()) / cos_c).to_degrees();
        let m = self.cd_inv;
        Some((
            self.crpix[0] + m[0] * xi + m[1] * eta,
            self.crpix[1] + m[2] * xi + m[3] * eta,
        ))
    }

    /// The sky position (RA in [0, 360), Dec) of a FITS pixel.
    pub fn pixel_to_world(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.crpix[0], y - self.crpix[1]);
        let m = self.cd;
        let xi = (m[0] * dx + m[1] * dy).to_radians();
        let eta = (m[2] * dx + m[3] * dy).to_radians();
        let [a0, d0] = self.crval;
        let rho = xi.hypot(eta);
        if rho == 0.0 {
            return (a0.to_degrees().rem_euclid(360.0), d0.to_degrees());
        }
        let c = rho.atan();
        let dec = (c.cos() * d0.sin() + eta * c.sin() * d0.cos() / rho).asin();
        let ra = a0 + (xi * c.sin()).atan2(rho * d0.cos() * c.cos() - eta * d0.sin() * c.sin());
        (ra.to_degrees().rem_euclid(360.0), dec.to_degrees())
    }
}

/// Parses a right ascension: decimal degrees, or sexagesimal hours
/// (`hh:mm:ss.s` or `hh mm ss.s`).
pub fn parse_ra(text: &str) -> Option<f64> {
    parse_sexagesimal(text, 15.0).filter(|v| (0.0..360.0).contains(v))
}

/// Parses a declination: decimal degrees or sexagesimal degrees (`+dd:mm:ss.s`).
pub fn parse_dec(text: &str) -> Option<f64> {
    parse_sexagesimal(text, 1.0).filter(|v| (-90.0..=90.0).contains(v))
}

/// A decimal number as is, or `a:b:c` (or space-separated) times `unit`, with
/// the sign of the first field applying to the whole (so `-00:30:00` is -0.5).
fn parse_sexagesimal(text: &str, unit: f64) -> Option<f64> {
    let t = text.trim();
    let fields: Vec<&str> = t
        .split(|c: char| c == ':' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    match fields.as_slice() {
        [one] => one.parse::<f64>().ok().filter(|v| v.is_finite()),
        [h, m, s] => {
            let negative = h.starts_with('-');
            let h: f64 = h.trim_start_matches(['+', '-']).parse().ok()?;
            let m: f64 = m.parse().ok()?;
            let s: f64 = s.parse().ok()?;
            if !(0.0..60.0).contains(&m) || !(0.0..60.0).contains(&s) {
                return None;
            }
            let v = (h + m / 60.0 + s / 3600.0) * unit;
            Some(if negative { -v } else { v })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdss_like() -> WcsKeys {
        WcsKeys {
            ctype: [Some("RA---TAN".into()), Some("DEC--TAN".into())],
            crpix: [Some(1025.0), Some(745.0)],
            crval: [Some(150.25), Some(2.5)],
            cd: [Some(-1.1e-4), Some(0.2e-5), Some(0.1e-5), Some(1.1e-4)],
            ..WcsKeys::default()
        }
    }

    #[test]
    fn reference_pixel_maps_to_reference_value_and_round_trips() {
        let w = TanWcs::from_keys(&sdss_like()).unwrap();
        let (ra, dec) = w.pixel_to_world(1025.0, 745.0);
        assert!((ra - 150.25).abs() < 1e-12 && (dec - 2.5).abs() < 1e-12);
        for (x, y) in [(1.0, 1.0), (2048.0, 1489.0), (10.5, 1400.25)] {
            let (ra, dec) = w.pixel_to_world(x, y);
            let (x2, y2) = w.world_to_pixel(ra, dec).unwrap();
            assert!((x - x2).abs() < 1e-7 && (y - y2).abs() < 1e-7, "{x},{y}");
        }
        // RA grows to the east, i.e. to smaller x with a negative CD1_1.
        let (ra_left, _) = w.pixel_to_world(1.0, 745.0);
        assert!(ra_left > 150.25);
    }

    #[test]
    fn gnomonic_distance_from_the_tangent_point() {
        // With CDELT = 1 degree and no rotation, a point 10 degrees north of the
        // tangent point lies tan(10 deg) radians = 10.1537... pixels up.
        let k = WcsKeys {
            ctype: [Some("RA---TAN".into()), Some("DEC--TAN".into())],
            crpix: [Some(0.0), Some(0.0)],
            crval: [Some(0.0), Some(0.0)],
            cdelt: [Some(-1.0), Some(1.0)],
            ..WcsKeys::default()
        };
        let w = TanWcs::from_keys(&k).unwrap();
        let (x, y) = w.world_to_pixel(0.0, 10.0).unwrap();
        assert!(x.abs() < 1e-12);
        assert!((y - 10f64.to_radians().tan().to_degrees()).abs() < 1e-9);
        assert!(
            w.world_to_pixel(180.0, 0.0).is_none(),
            "far side of the sphere"
        );
    }

    #[test]
    fn crota2_and_pc_agree() {
        let mut a = sdss_like();
        a.cd = [None; 4];
        a.cdelt = [Some(-2e-4), Some(2e-4)];
        a.crota2 = Some(30.0);
        let mut b = a.clone();
        b.crota2 = None;
        let r = 30f64.to_radians();
        b.pc = [Some(r.cos()), Some(r.sin()), Some(-r.sin()), Some(r.cos())];
        let (wa, wb) = (
            TanWcs::from_keys(&a).unwrap(),
            TanWcs::from_keys(&b).unwrap(),
        );
        let (p, q) = (wa.pixel_to_world(10.0, 20.0), wb.pixel_to_world(10.0, 20.0));
        assert!((p.0 - q.0).abs() < 1e-12 && (p.1 - q.1).abs() < 1e-12);
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let mut k = sdss_like();
        k.ctype[0] = Some("RA---SIN".into());
        assert!(TanWcs::from_keys(&k)
            .unwrap_err()
            .to_string()
            .contains("RA---SIN"));
        let mut k = sdss_like();
        k.crval[1] = None;
        assert_eq!(
            TanWcs::from_keys(&k).unwrap_err(),
            WcsError::Missing("CRVAL2")
        );
        let mut k = sdss_like();
        k.cd = [Some(1.0), Some(1.0), Some(1.0), Some(1.0)];
        assert_eq!(TanWcs::from_keys(&k).unwrap_err(), WcsError::Singular);
    }

    #[test]
    fn sexagesimal_coordinates() {
        assert!((parse_ra("00:00:00.41").unwrap() - 0.41 * 15.0 / 3600.0).abs() < 1e-12);
        assert!((parse_ra("12 30 00").unwrap() - 187.5).abs() < 1e-12);
        assert_eq!(parse_ra("187.5"), Some(187.5));
        assert!((parse_dec("-00:30:00").unwrap() + 0.5).abs() < 1e-12);
        assert!((parse_dec("+45:15:36.0").unwrap() - 45.26).abs() < 1e-12);
        assert_eq!(parse_ra("25:00:00"), None);
        assert_eq!(parse_dec("12:61:00"), None);
        assert_eq!(parse_dec("north"), None);
    }
}
