//! World coordinates of survey frames, for stamps cut at catalogue RA/Dec.
//!
//! The projections are the CDS `wcs` crate's (FITS WCS Paper II: TAN, SIN,
//! ZPN, STG, ARC, ZEA, AIR, AZP, SZP, NCP, CAR, CEA, CYP, MER, SFL, PAR, MOL,
//! AIT, the conics and HPX), with its parsing of the linear part (`CD`, else
//! `PC` with `CDELT`, else `CDELT` with `CROTA2`), `LONPOLE` and equatorial or
//! galactic axes. Two distortions are added here, between the pixel grid and
//! the projection, as astropy (wcslib) applies them:
//!
//! - **SIP** (`-SIP` suffix, `A_p_q`/`B_p_q` of the pixel offsets from `CRPIX`);
//! - **TPV** (DES, SCAMP: `RA---TPV`, the `PV1_m`/`PV2_m` polynomial of the
//!   intermediate world coordinates, in front of a TAN projection);
//! - **ZPN** is computed here too, as ARC with its radial polynomial
//!   (`PV2_m`), since the crate's own ZPN differs from wcslib by 1e-4 px.
//!
//! Pixel to sky applies the distortion; sky to pixel inverts the whole
//! chain by Newton's method to 1e-10 px (the inverse polynomials `AP`/`BP` some SIP headers carry
//! are approximations, so they are not used, as astropy's `all_world2pix`
//! does not). Pixel coordinates are FITS ones: 1-based, `(1, 1)` the centre of
//! the first stored pixel. Sky coordinates are ICRS RA/Dec in degrees; a
//! galactic frame (`GLON`/`GLAT`) is converted by the crate; FK5 J2000 frames
//! are taken as ICRS (they differ by tens of milliarcseconds). Ecliptic and
//! other frames, and projections the crate lacks, are refused naming the CTYPE.

use std::collections::BTreeMap;

mod distortion;

use distortion::{Distortion, TPV_TERMS};

/// A header value as the WCS reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Card {
    /// A number (integers included).
    Num(f64),
    /// A string.
    Text(String),
}

/// The WCS keywords of one HDU, by name (upper case).
pub type WcsCards = BTreeMap<String, Card>;

/// Numeric keywords the WCS may use (beside the SIP and TPV coefficients,
/// which [`sip_keywords`] and [`tpv_keywords`] list).
pub const NUMERIC_KEYWORDS: &[&str] = &[
    "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2",
    "PC2_1", "PC2_2", "CDELT1", "CDELT2", "CROTA1", "CROTA2", "LONPOLE", "LATPOLE", "EQUINOX",
    "EPOCH", "PV1_0", "PV1_1", "PV1_2", "PV2_0", "PV2_1", "PV2_2", "PV2_3", "PV2_4", "PV2_5",
    "PV2_6", "PV2_7", "PV2_8", "PV2_9", "PV2_10", "PV2_11", "PV2_12", "PV2_13", "PV2_14", "PV2_15",
    "PV2_16", "PV2_17", "PV2_18", "PV2_19", "PV2_20", "A_ORDER", "B_ORDER",
    // Present in DSS plate headers, whose plate solution astropy reads instead of CD.
    "AMDX1", "PLTRAH",
];

/// String keywords the WCS may use (`RADECSYS` is the old `RADESYS`).
pub const TEXT_KEYWORDS: &[&str] = &["CTYPE1", "CTYPE2", "RADESYS", "RADECSYS"];

/// The highest SIP order read.
const MAX_SIP_ORDER: usize = 9;

/// The `A_p_q` (or `B_p_q`) keywords of a SIP polynomial of `order`.
pub fn sip_keywords(prefix: &str, order: usize) -> Vec<String> {
    let order = order.min(MAX_SIP_ORDER);
    let mut v = Vec::new();
    for p in 0..=order {
        for q in 0..=order - p {
            v.push(format!("{prefix}_{p}_{q}"));
        }
    }
    v
}

/// The TPV coefficients `PV1_0`..`PV1_39` and `PV2_0`..`PV2_39`.
pub fn tpv_keywords() -> Vec<String> {
    (1..=2)
        .flat_map(|i| (0..TPV_TERMS.len()).map(move |m| format!("PV{i}_{m}")))
        .collect()
}

/// Why a header does not give a usable WCS.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WcsError {
    /// A required keyword is absent.
    #[error("no {0} keyword (a WCS needs CTYPEn, CRPIXn, CRVALn and CD or CDELT)")]
    Missing(&'static str),
    /// The projection or the frame is not one a stamp can be cut in.
    #[error("CTYPE1/2 = '{0}'/'{1}': {2}")]
    Projection(String, String, &'static str),
    /// A keyword has an unusable value.
    #[error("{0} = {1} is not usable")]
    Value(String, String),
    /// The linear transformation cannot be inverted.
    #[error("the CD matrix is singular")]
    Singular,
    /// The `wcs` crate refused the header.
    #[error("{0}")]
    Library(String),
}

/// Projection codes the `wcs` crate implements.
const PROJECTIONS: &[&str] = &[
    "AZP", "SZP", "TAN", "STG", "SIN", "ARC", "ZPN", "ZEA", "AIR", "NCP", "CYP", "CEA", "CAR",
    "MER", "SFL", "PAR", "MOL", "AIT", "COP", "COD", "COE", "COO", "HPX",
];

/// A frame's world coordinate system: pixel <-> (RA, Dec) in degrees.
pub struct Wcs {
    base: wcs::WCS,
    distortion: Distortion,
    crpix: [f64; 2],
}

impl std::fmt::Debug for Wcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wcs")
            .field("distortion", &self.distortion)
            .field("crpix", &self.crpix)
            .finish_non_exhaustive()
    }
}

fn num(cards: &WcsCards, key: &str) -> Result<Option<f64>, WcsError> {
    match cards.get(key) {
        None => Ok(None),
        Some(Card::Num(v)) if v.is_finite() => Ok(Some(*v)),
        Some(Card::Num(v)) => Err(WcsError::Value(key.into(), v.to_string())),
        Some(Card::Text(t)) => Err(WcsError::Value(key.into(), format!("'{t}'"))),
    }
}

fn text(cards: &WcsCards, key: &str) -> Option<String> {
    match cards.get(key) {
        Some(Card::Text(t)) => Some(t.trim().to_string()),
        _ => None,
    }
}

/// The linear part (CD, else PC x CDELT, else CDELT with CROTA2), row-major.
fn linear(cards: &WcsCards) -> Result<[f64; 4], WcsError> {
    let cd = ["CD1_1", "CD1_2", "CD2_1", "CD2_2"]
        .map(|k| num(cards, k))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    if cd.iter().any(Option::is_some) {
        // A CD matrix with some elements left out has those elements zero.
        return Ok([0, 1, 2, 3].map(|i| cd[i].unwrap_or(0.0)));
    }
    let d1 = num(cards, "CDELT1")?.ok_or(WcsError::Missing("CD1_1 or CDELT1"))?;
    let d2 = num(cards, "CDELT2")?.ok_or(WcsError::Missing("CD2_2 or CDELT2"))?;
    let pc = ["PC1_1", "PC1_2", "PC2_1", "PC2_2"]
        .map(|k| num(cards, k))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let pc = if pc.iter().any(Option::is_some) {
        [
            pc[0].unwrap_or(1.0),
            pc[1].unwrap_or(0.0),
            pc[2].unwrap_or(0.0),
            pc[3].unwrap_or(1.0),
        ]
    } else {
        let r = num(cards, "CROTA2")?.unwrap_or(0.0).to_radians();
        // CROTA2 convention: PC1_2 = -sin(r) * CDELT2 / CDELT1, PC2_1 = sin(r) * CDELT1 / CDELT2.
        [r.cos(), -r.sin() * d2 / d1, r.sin() * d1 / d2, r.cos()]
    };
    Ok([d1 * pc[0], d1 * pc[1], d2 * pc[2], d2 * pc[3]])
}

impl Wcs {
    /// Builds the WCS of a `width` x `height` frame from its header cards.
    pub fn from_cards(cards: &WcsCards, width: usize, height: usize) -> Result<Wcs, WcsError> {
        let c1 = text(cards, "CTYPE1").ok_or(WcsError::Missing("CTYPE1"))?;
        let c2 = text(cards, "CTYPE2").ok_or(WcsError::Missing("CTYPE2"))?;
        let refuse = |why| WcsError::Projection(c1.clone(), c2.clone(), why);
        // 'RA---TAN', 'DEC--TAN-SIP': axis (4), '-', code (3), optional '-SIP'.
        let split = |c: &str| -> Option<(String, String, String)> {
            if !c.is_ascii() || c.len() < 8 || c.as_bytes()[4] != b'-' {
                return None;
            }
            Some((
                c[..4].trim_end_matches('-').to_string(),
                c[5..8].to_string(),
                c[8..].to_string(),
            ))
        };
        let (Some((a1, p1, s1)), Some((a2, p2, s2))) = (split(&c1), split(&c2)) else {
            return Err(refuse("not celestial axes in the form 'RA---TAN'"));
        };
        if !matches!((a1.as_str(), a2.as_str()), ("RA", "DEC") | ("GLON", "GLAT")) {
            return Err(refuse(
                "only equatorial (RA/DEC) and galactic (GLON/GLAT) axes, longitude first, are supported",
            ));
        }
        if p1 != p2 || s1 != s2 {
            return Err(refuse("the two axes disagree"));
        }
        if num(cards, "AMDX1")?.is_some() && num(cards, "PLTRAH")?.is_some() {
            return Err(refuse(
                "the header carries a DSS plate solution (AMDXn, PLTRAH), which astropy reads in place of CD; it is not supported",
            ));
        }
        let tpv = p1 == "TPV";
        let sip = s1 == "-SIP";
        if !(s1.is_empty() || sip) || (tpv && sip) {
            return Err(refuse("the only distortions supported are -SIP and TPV"));
        }
        if !tpv && !PROJECTIONS.contains(&p1.as_str()) {
            return Err(refuse(
                "the projection is not one the wcs crate implements (see ingest/src/readers/wcs/mod.rs)",
            ));
        }
        // Parameters the crate asserts on rather than returning an error.
        let pv = |m: usize| num(cards, &format!("PV2_{m}"));
        let in_range = |m: usize, lo: f64, hi: f64, default: f64| -> Result<(), WcsError> {
            let v = pv(m)?.unwrap_or(default);
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(WcsError::Value(format!("PV2_{m} of {p1}"), v.to_string()))
            }
        };
        match p1.as_str() {
            "CEA" => in_range(1, f64::MIN_POSITIVE, 1.0, 1.0)?,
            "AIR" => in_range(1, -89.999_999, 90.0, 90.0)?,
            "AZP" => in_range(2, -89.999_999, 89.999_999, 0.0)?,
            "SZP" => {
                in_range(1, -1e12, 1e12, 0.0)?;
                in_range(3, -90.0, 90.0, 90.0)?;
            }
            _ => {}
        }
        let crpix = [
            num(cards, "CRPIX1")?.ok_or(WcsError::Missing("CRPIX1"))?,
            num(cards, "CRPIX2")?.ok_or(WcsError::Missing("CRPIX2"))?,
        ];
        for k in ["CRVAL1", "CRVAL2"] {
            if num(cards, k)?.is_none() {
                return Err(WcsError::Missing(if k == "CRVAL1" {
                    "CRVAL1"
                } else {
                    "CRVAL2"
                }));
            }
        }
        let cd = linear(cards)?;
        let det = cd[0] * cd[3] - cd[1] * cd[2];
        if det.abs() < f64::MIN_POSITIVE || !det.is_finite() {
            return Err(WcsError::Singular);
        }
        let cd_inv = [cd[3] / det, -cd[1] / det, -cd[2] / det, cd[0] / det];

        // The crate's parameters: the base projection, undistorted.
        let zpn = p1 == "ZPN";
        let base_code = match p1.as_str() {
            "TPV" => "TAN",
            // The crate's ZPN differs from wcslib by 1e-4 px (pixel -> sky)
            // and by pixels (sky -> pixel) on a UKIDSS frame; ZPN is ARC with
            // a radial polynomial, applied here.
            "ZPN" => "ARC",
            other => other,
        };
        let pad = |axis: &str| format!("{axis:-<4}-{base_code}");
        let mut params = serde_json::Map::new();
        params.insert("CTYPE1".into(), pad(&a1).into());
        params.insert("CTYPE2".into(), pad(&a2).into());
        params.insert("NAXIS".into(), 2.into());
        params.insert("NAXIS1".into(), (width as i64).into());
        params.insert("NAXIS2".into(), (height as i64).into());
        if let Some(r) = text(cards, "RADESYS").or_else(|| text(cards, "RADECSYS")) {
            params.insert("RADESYS".into(), r.into());
        }
        for &k in NUMERIC_KEYWORDS {
            let skip = k.ends_with("_ORDER")
                || k == "AMDX1"
                || k == "PLTRAH"
                || ((tpv || zpn) && k.starts_with("PV"))
                || k.starts_with("CD")
                || k.starts_with("PC")
                || k.starts_with("CDELT")
                || k.starts_with("CROTA");
            if skip {
                continue;
            }
            if let Some(v) = num(cards, k)? {
                params.insert(k.into(), v.into());
            }
        }
        // The linear part as one CD matrix, so the crate and the distortions agree on it.
        for (k, v) in ["CD1_1", "CD1_2", "CD2_1", "CD2_2"].iter().zip(cd) {
            params.insert((*k).into(), v.into());
        }
        let params: wcs::WCSParams = serde_json::from_value(params.into())
            .map_err(|e| WcsError::Library(format!("cannot build the WCS: {e}")))?;
        let base = wcs::WCS::new(&params).map_err(|e| WcsError::Library(e.to_string()))?;

        let distortion = if sip {
            let poly = |prefix: &str| -> Result<Vec<Vec<f64>>, WcsError> {
                let order_key = format!("{prefix}_ORDER");
                let order = num(cards, &order_key)?.unwrap_or(0.0);
                if !(0.0..=MAX_SIP_ORDER as f64).contains(&order) || order.fract() != 0.0 {
                    return Err(WcsError::Value(order_key, order.to_string()));
                }
                let order = order as usize;
                let mut c = vec![vec![0.0; order + 1]; order + 1];
                for (p, row) in c.iter_mut().enumerate() {
                    for (q, k) in row.iter_mut().enumerate().take(order + 1 - p) {
                        *k = num(cards, &format!("{prefix}_{p}_{q}"))?.unwrap_or(0.0);
                    }
                }
                Ok(c)
            };
            Distortion::Sip {
                a: poly("A")?,
                b: poly("B")?,
            }
        } else if zpn {
            let p = (0..=20)
                .map(|m| num(cards, &format!("PV2_{m}")).map(|v| v.unwrap_or(0.0)))
                .collect::<Result<Vec<_>, _>>()?;
            Distortion::Zpn { cd, cd_inv, p }
        } else if tpv {
            let coeffs = |i: usize| -> Result<Vec<f64>, WcsError> {
                (0..TPV_TERMS.len())
                    .map(|m| {
                        // Absent terms are zero but for the linear ones (1 by convention).
                        num(cards, &format!("PV{i}_{m}"))
                            .map(|v| v.unwrap_or(if m == 1 { 1.0 } else { 0.0 }))
                    })
                    .collect()
            };
            Distortion::Tpv {
                cd,
                cd_inv,
                pv1: coeffs(1)?,
                pv2: coeffs(2)?,
            }
        } else {
            Distortion::None
        };
        Ok(Wcs {
            base,
            distortion,
            crpix,
        })
    }

    /// The FITS pixel (1-based x, y) of an ICRS position, or `None` when the
    /// projection does not reach it (the far side of a zenithal projection).
    ///
    /// The crate's sky -> pixel direction, without the distortion, gives the
    /// starting point (for ARC and ZPN it is off by pixels), then Newton's
    /// method on this type's pixel -> sky direction (the one checked against
    /// astropy) refines it to 1e-10 px, so the two directions are exact
    /// inverses and one solver serves every distortion.
    pub fn world_to_pixel(&self, ra_deg: f64, dec_deg: f64) -> Option<(f64, f64)> {
        if !(ra_deg.is_finite() && dec_deg.is_finite()) {
            return None;
        }
        let q = self
            .base
            .proj(&wcs::LonLat::new(ra_deg.to_radians(), dec_deg.to_radians()))?;
        let (qx, qy) = (q.x(), q.y());
        if !(qx.is_finite() && qy.is_finite()) {
            return None;
        }
        let (mut x, mut y) = (qx, qy);
        let cos_dec = dec_deg.to_radians().cos();
        // Offsets on the sky in degrees (RA scaled to great-circle length).
        let residual = |x: f64, y: f64| -> Option<(f64, f64)> {
            let (r, d) = self.pixel_to_world(x, y)?;
            Some((
                ((r - ra_deg + 180.0).rem_euclid(360.0) - 180.0) * cos_dec,
                d - dec_deg,
            ))
        };
        let h = 1e-3;
        for _ in 0..50 {
            let (fx, fy) = residual(x, y)?;
            let (ax, ay) = residual(x + h, y)?;
            let (bx, by) = residual(x, y + h)?;
            let (j11, j21, j12, j22) = ((ax - fx) / h, (ay - fy) / h, (bx - fx) / h, (by - fy) / h);
            let det = j11 * j22 - j12 * j21;
            if !det.is_finite() || det == 0.0 {
                return None;
            }
            let (dx, dy) = ((j22 * fx - j12 * fy) / det, (-j21 * fx + j11 * fy) / det);
            x -= dx;
            y -= dy;
            if !(x.is_finite() && y.is_finite()) {
                return None;
            }
            if dx.abs() < 1e-11 && dy.abs() < 1e-11 {
                break;
            }
        }
        // Converged onto the position, not onto another branch of the projection.
        let (fx, fy) = residual(x, y)?;
        (fx.hypot(fy) < 1e-9).then_some((x, y))
    }

    /// The ICRS position (RA in [0, 360), Dec, degrees) of a FITS pixel, or
    /// `None` off the projection's domain.
    pub fn pixel_to_world(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let (qx, qy) = self.distortion.apply(self.crpix, x, y);
        let ll = self.base.unproj(&wcs::ImgXY::new(qx, qy))?;
        let (ra, dec) = (ll.lon().to_degrees(), ll.lat().to_degrees());
        (ra.is_finite() && dec.is_finite()).then(|| (ra.rem_euclid(360.0), dec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(pairs: &[(&str, Card)]) -> WcsCards {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn sdss_like() -> WcsCards {
        cards(&[
            ("CTYPE1", Card::Text("RA---TAN".into())),
            ("CTYPE2", Card::Text("DEC--TAN".into())),
            ("CRPIX1", Card::Num(1025.0)),
            ("CRPIX2", Card::Num(745.0)),
            ("CRVAL1", Card::Num(150.25)),
            ("CRVAL2", Card::Num(2.5)),
            ("CD1_1", Card::Num(-1.1e-4)),
            ("CD1_2", Card::Num(0.2e-5)),
            ("CD2_1", Card::Num(0.1e-5)),
            ("CD2_2", Card::Num(1.1e-4)),
        ])
    }

    #[test]
    fn reference_pixel_maps_to_reference_value_and_round_trips() {
        let w = Wcs::from_cards(&sdss_like(), 2048, 1489).unwrap();
        let (ra, dec) = w.pixel_to_world(1025.0, 745.0).unwrap();
        assert!((ra - 150.25).abs() < 1e-10 && (dec - 2.5).abs() < 1e-10);
        for (x, y) in [(1.0, 1.0), (2048.0, 1489.0), (10.5, 1400.25)] {
            let (ra, dec) = w.pixel_to_world(x, y).unwrap();
            let (x2, y2) = w.world_to_pixel(ra, dec).unwrap();
            assert!((x - x2).abs() < 1e-7 && (y - y2).abs() < 1e-7, "{x},{y}");
        }
        // RA grows to the east, i.e. to smaller x with a negative CD1_1.
        let (ra_left, _) = w.pixel_to_world(1.0, 745.0).unwrap();
        assert!(ra_left > 150.25);
    }

    #[test]
    fn gnomonic_distance_from_the_tangent_point() {
        // With CDELT = 1 degree and no rotation, a point 10 degrees north of the
        // tangent point lies tan(10 deg) radians = 10.1537... pixels up.
        let c = cards(&[
            ("CTYPE1", Card::Text("RA---TAN".into())),
            ("CTYPE2", Card::Text("DEC--TAN".into())),
            ("CRPIX1", Card::Num(0.0)),
            ("CRPIX2", Card::Num(0.0)),
            ("CRVAL1", Card::Num(0.0)),
            ("CRVAL2", Card::Num(0.0)),
            ("CDELT1", Card::Num(-1.0)),
            ("CDELT2", Card::Num(1.0)),
        ]);
        let w = Wcs::from_cards(&c, 10, 10).unwrap();
        let (x, y) = w.world_to_pixel(0.0, 10.0).unwrap();
        assert!(x.abs() < 1e-9, "{x}");
        assert!((y - 10f64.to_radians().tan().to_degrees()).abs() < 1e-9);
        assert!(
            w.world_to_pixel(180.0, 0.0).is_none(),
            "far side of the sphere"
        );
    }

    #[test]
    fn crota2_and_pc_agree() {
        let mut a = sdss_like();
        for k in ["CD1_1", "CD1_2", "CD2_1", "CD2_2"] {
            a.remove(k);
        }
        a.insert("CDELT1".into(), Card::Num(-2e-4));
        a.insert("CDELT2".into(), Card::Num(2e-4));
        let mut b = a.clone();
        a.insert("CROTA2".into(), Card::Num(30.0));
        let r = 30f64.to_radians();
        for (k, v) in [
            ("PC1_1", r.cos()),
            ("PC1_2", r.sin()),
            ("PC2_1", -r.sin()),
            ("PC2_2", r.cos()),
        ] {
            b.insert(k.into(), Card::Num(v));
        }
        let (wa, wb) = (
            Wcs::from_cards(&a, 100, 100).unwrap(),
            Wcs::from_cards(&b, 100, 100).unwrap(),
        );
        let (p, q) = (
            wa.pixel_to_world(10.0, 20.0).unwrap(),
            wb.pixel_to_world(10.0, 20.0).unwrap(),
        );
        assert!((p.0 - q.0).abs() < 1e-12 && (p.1 - q.1).abs() < 1e-12);
    }

    #[test]
    fn distortions_invert_to_well_under_a_micropixel() {
        let mut sip = sdss_like();
        sip.insert("CTYPE1".into(), Card::Text("RA---TAN-SIP".into()));
        sip.insert("CTYPE2".into(), Card::Text("DEC--TAN-SIP".into()));
        for (k, v) in [
            ("A_ORDER", 2.0),
            ("B_ORDER", 2.0),
            ("A_2_0", 2e-6),
            ("A_1_1", -1e-6),
            ("B_0_2", 3e-6),
        ] {
            sip.insert(k.into(), Card::Num(v));
        }
        let mut tpv = sdss_like();
        tpv.insert("CTYPE1".into(), Card::Text("RA---TPV".into()));
        tpv.insert("CTYPE2".into(), Card::Text("DEC--TPV".into()));
        for (k, v) in [("PV1_4", 0.02), ("PV2_6", -0.015), ("PV1_7", 0.5)] {
            tpv.insert(k.into(), Card::Num(v));
        }
        let plain = Wcs::from_cards(&sdss_like(), 2048, 1489).unwrap();
        for c in [sip, tpv] {
            let w = Wcs::from_cards(&c, 2048, 1489).unwrap();
            assert_ne!(w.distortion, Distortion::None);
            // The distortion moves the corner by more than a pixel...
            let a = w.pixel_to_world(1.0, 1.0).unwrap();
            let (px, py) = plain.world_to_pixel(a.0, a.1).unwrap();
            assert!((px - 1.0).hypot(py - 1.0) > 1.0, "({px}, {py})");
            // ...and the inverse undoes it.
            for (x, y) in [(1.0, 1.0), (2048.0, 1489.0), (500.5, 1200.25)] {
                let (ra, dec) = w.pixel_to_world(x, y).unwrap();
                let (x2, y2) = w.world_to_pixel(ra, dec).unwrap();
                assert!((x - x2).abs() < 1e-6 && (y - y2).abs() < 1e-6, "{x},{y}");
            }
        }
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let with = |k: &str, v: Card| {
            let mut c = sdss_like();
            c.insert(k.into(), v);
            Wcs::from_cards(&c, 10, 10).unwrap_err().to_string()
        };
        let e = with("CTYPE1", Card::Text("RA---BON".into()));
        assert!(e.contains("RA---BON"), "{e}");
        let e = with("CTYPE1", Card::Text("ELON-TAN".into()));
        assert!(e.contains("ELON-TAN") && e.contains("galactic"), "{e}");
        let e = with("CTYPE1", Card::Text("RA".into()));
        assert!(e.contains("'RA'"), "{e}");
        let e = with("CRPIX1", Card::Num(f64::NAN));
        assert!(e.contains("CRPIX1"), "{e}");
        let e = with("CD1_1", Card::Text("x".into()));
        assert!(e.contains("CD1_1"), "{e}");
        let mut c = sdss_like();
        c.remove("CRVAL2");
        assert_eq!(
            Wcs::from_cards(&c, 10, 10).unwrap_err(),
            WcsError::Missing("CRVAL2")
        );
        let mut c = sdss_like();
        for k in ["CD1_1", "CD1_2", "CD2_1", "CD2_2"] {
            c.insert(k.into(), Card::Num(1.0));
        }
        assert_eq!(Wcs::from_cards(&c, 10, 10).unwrap_err(), WcsError::Singular);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Any projection with any parameters: an error or coordinates, never a
        /// panic (the crate asserts on some PV values; those are checked first).
        #[test]
        fn any_projection_and_parameters_give_an_answer_or_an_error(
            code in 0..PROJECTIONS.len() + 2,
            pv in proptest::collection::vec(-200.0f64..200.0, 4),
            crval in (-400.0f64..400.0, -100.0f64..100.0),
            scale in -1.0f64..1.0,
            px in (-1e4f64..1e4, -1e4f64..1e4),
        ) {
            let code = PROJECTIONS.get(code).copied().unwrap_or(if code % 2 == 0 { "TPV" } else { "TAN" });
            let mut c = sdss_like();
            c.insert("CTYPE1".into(), Card::Text(format!("RA---{code}")));
            c.insert("CTYPE2".into(), Card::Text(format!("DEC--{code}")));
            c.insert("CRVAL1".into(), Card::Num(crval.0));
            c.insert("CRVAL2".into(), Card::Num(crval.1));
            c.insert("CD1_1".into(), Card::Num(scale));
            for (m, v) in pv.iter().enumerate() {
                c.insert(format!("PV2_{m}"), Card::Num(*v));
                c.insert(format!("PV1_{}", m + 4), Card::Num(*v * 1e-3));
            }
            if let Ok(w) = Wcs::from_cards(&c, 100, 100) {
                if let Some((ra, dec)) = w.pixel_to_world(px.0, px.1) {
                    let _ = w.world_to_pixel(ra, dec);
                }
                let _ = w.world_to_pixel(crval.0, crval.1.clamp(-90.0, 90.0));
            }
        }
    }
}
