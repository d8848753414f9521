//! What lies between a frame's pixel grid and its projection: SIP, TPV and
//! ZPN's radial polynomial, each a map from a pixel to the undistorted pixel
//! the base projection's linear part reads ([`Distortion::apply`]); the
//! inverse is the whole chain's Newton solve in [`super::Wcs::world_to_pixel`].

/// What lies between the pixel grid and the projection.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Distortion {
    None,
    /// SIP: `A[p][q]`, `B[p][q]` (zero where absent).
    Sip {
        a: Vec<Vec<f64>>,
        b: Vec<Vec<f64>>,
    },
    /// ZPN, as ARC with a radial distortion: the linear matrix, its inverse
    /// and the polynomial `PV2_m` of the native colatitude (radians).
    Zpn {
        cd: [f64; 4],
        cd_inv: [f64; 4],
        p: Vec<f64>,
    },
    /// TPV: the linear matrix, its inverse and the two coefficient sets.
    Tpv {
        cd: [f64; 4],
        cd_inv: [f64; 4],
        pv1: Vec<f64>,
        pv2: Vec<f64>,
    },
}

/// TPV terms by index: powers of x, y and r (for PV1; PV2 swaps x and y).
pub(super) const TPV_TERMS: [(i32, i32, i32); 40] = [
    (0, 0, 0),
    (1, 0, 0),
    (0, 1, 0),
    (0, 0, 1),
    (2, 0, 0),
    (1, 1, 0),
    (0, 2, 0),
    (3, 0, 0),
    (2, 1, 0),
    (1, 2, 0),
    (0, 3, 0),
    (0, 0, 3),
    (4, 0, 0),
    (3, 1, 0),
    (2, 2, 0),
    (1, 3, 0),
    (0, 4, 0),
    (5, 0, 0),
    (4, 1, 0),
    (3, 2, 0),
    (2, 3, 0),
    (1, 4, 0),
    (0, 5, 0),
    (0, 0, 5),
    (6, 0, 0),
    (5, 1, 0),
    (4, 2, 0),
    (3, 3, 0),
    (2, 4, 0),
    (1, 5, 0),
    (0, 6, 0),
    (7, 0, 0),
    (6, 1, 0),
    (5, 2, 0),
    (4, 3, 0),
    (3, 4, 0),
    (2, 5, 0),
    (1, 6, 0),
    (0, 7, 0),
    (0, 0, 7),
];

fn tpv_poly(c: &[f64], x: f64, y: f64) -> f64 {
    let r = x.hypot(y);
    c.iter()
        .zip(TPV_TERMS)
        .filter(|(k, _)| **k != 0.0)
        .map(|(k, (i, j, l))| k * x.powi(i) * y.powi(j) * r.powi(l))
        .sum()
}

fn sip_poly(c: &[Vec<f64>], u: f64, v: f64) -> f64 {
    let mut sum = 0.0;
    for (p, row) in c.iter().enumerate() {
        for (q, k) in row.iter().enumerate() {
            if *k != 0.0 {
                sum += k * u.powi(p as i32) * v.powi(q as i32);
            }
        }
    }
    sum
}

/// The native colatitude (radians) where the ZPN radius `sum p_m z^m` is
/// `r` (radians), by Newton's method from the linear term's guess.
fn zpn_colatitude(p: &[f64], r: f64) -> f64 {
    let f = |z: f64| p.iter().rev().fold(0.0, |acc, k| acc * z + k);
    let df = |z: f64| {
        p.iter()
            .enumerate()
            .skip(1)
            .rev()
            .fold(0.0, |acc, (m, k)| acc * z + m as f64 * k)
    };
    let mut z = if p.get(1).is_some_and(|p1| *p1 > 0.0) {
        r / p[1]
    } else {
        r
    };
    for _ in 0..50 {
        let d = df(z);
        if d == 0.0 || !d.is_finite() {
            break;
        }
        let step = (f(z) - r) / d;
        z -= step;
        if step.abs() < 1e-15 {
            break;
        }
    }
    z
}

impl Distortion {
    /// Pixel -> the undistorted pixel the projection's linear part reads.
    pub(super) fn apply(&self, crpix: [f64; 2], x: f64, y: f64) -> (f64, f64) {
        let (u, v) = (x - crpix[0], y - crpix[1]);
        match self {
            Distortion::None => (x, y),
            Distortion::Zpn { cd, cd_inv, p } => {
                let (ix, iy) = (cd[0] * u + cd[1] * v, cd[2] * u + cd[3] * v);
                let r = ix.hypot(iy);
                if r == 0.0 {
                    return (x, y);
                }
                // ARC's radius is the colatitude itself (degrees).
                let arc = zpn_colatitude(p, r.to_radians()).to_degrees();
                let (ax, ay) = (ix * arc / r, iy * arc / r);
                (
                    crpix[0] + cd_inv[0] * ax + cd_inv[1] * ay,
                    crpix[1] + cd_inv[2] * ax + cd_inv[3] * ay,
                )
            }
            Distortion::Sip { a, b } => (x + sip_poly(a, u, v), y + sip_poly(b, u, v)),
            Distortion::Tpv {
                cd,
                cd_inv,
                pv1,
                pv2,
            } => {
                let (ix, iy) = (cd[0] * u + cd[1] * v, cd[2] * u + cd[3] * v);
                let (xi, eta) = (tpv_poly(pv1, ix, iy), tpv_poly(pv2, iy, ix));
                (
                    crpix[0] + cd_inv[0] * xi + cd_inv[1] * eta,
                    crpix[1] + cd_inv[2] * xi + cd_inv[3] * eta,
                )
            }
        }
    }
}
