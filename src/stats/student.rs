//! Student's t distribution: the upper tail and its inverse, for the small
//! degrees of freedom a short run's fit has (a 10-sample look has 7).
//!
//! `P(T > t) = ½·I_{ν/(ν+t²)}(ν/2, ½)` for t ≥ 0, with the regularized
//! incomplete beta function evaluated by its continued fraction (modified
//! Lentz, as in Numerical Recipes §6.4) and `ln Γ` by Lanczos (g = 7, n = 9).
//! The quantile inverts the tail by bisection on a bracket grown from the
//! normal quantile: 200 halvings at most, so it always ends. Pinned in the
//! tests to published table values.

use super::{normal_quantile, normal_sf};

/// Upper tail `P(T_ν > t)`. ν = ∞ (or above 1e7) is the normal tail.
pub fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if !df.is_finite() || df > 1e7 {
        return normal_sf(t);
    }
    if t == f64::INFINITY {
        return 0.0;
    }
    if t == f64::NEG_INFINITY {
        return 1.0;
    }
    let x = df / (df + t * t);
    let half = 0.5 * reg_inc_beta(0.5 * df, 0.5, x);
    if t >= 0.0 {
        half
    } else {
        1.0 - half
    }
}

/// The `p` quantile of `T_ν` (so `t_sf(t_quantile(p, ν), ν) = 1 − p`).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    if !df.is_finite() || df > 1e7 {
        return normal_quantile(p);
    }
    let target = 1.0 - p;
    // The t quantile is above the normal one; grow the bracket until the
    // tail at its top is below the target.
    let mut lo = normal_quantile(p).max(0.0);
    let mut hi = (lo + 1.0) * 2.0;
    for _ in 0..200 {
        if t_sf(hi, df) < target {
            break;
        }
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_sf(mid, df) > target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// `ln Γ(x)` for x > 0, Lanczos approximation (g = 7, 9 coefficients),
/// about 15 significant digits.
#[allow(clippy::excessive_precision)]
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_93,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_13,
        -176.615_029_162_140_59,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_571_6e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function `I_x(a, b)`.
fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // The continued fraction converges fast for x < (a+1)/(a+b+2); use the
    // symmetry I_x(a,b) = 1 − I_{1−x}(b,a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta function, modified Lentz.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    // One Lentz update with the next partial numerator `aa`; returns the factor.
    let step = |aa: f64, c: &mut f64, d: &mut f64| {
        *d = 1.0 + aa * *d;
        if d.abs() < TINY {
            *d = TINY;
        }
        *c = 1.0 + aa / *c;
        if c.abs() < TINY {
            *c = TINY;
        }
        *d = 1.0 / *d;
        *d * *c
    };
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
        let del = step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), &mut c, &mut d);
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantiles from the standard t table (e.g. NIST/SEMATECH e-Handbook
    /// 1.3.6.7.2; R `qt`), to the digits printed there.
    #[test]
    fn quantiles_match_the_published_table() {
        for (p, df, want) in [
            (0.975, 1.0, 12.706),
            (0.99, 5.0, 3.365),
            (0.975, 10.0, 2.228),
            (0.999, 3.0, 10.215),
            (0.95, 30.0, 1.697),
            (0.995, 7.0, 3.499),
            (0.9999, 20.0, 4.538),
            (0.8, 12.0, 0.873),
        ] {
            let got = t_quantile(p, df);
            assert!((got - want).abs() < 1.5e-3, "t({p}, {df}) = {got}, table {want}");
        }
    }

    #[test]
    fn the_tail_inverts_the_quantile_and_meets_the_normal_for_large_df() {
        for df in [1.0, 2.5, 7.0, 40.0, 1e4] {
            for p in [0.6, 0.9, 0.99, 1.0 - 1e-6] {
                let t = t_quantile(p, df);
                assert!((t_sf(t, df) - (1.0 - p)).abs() < 1e-9 * (1.0 - p).max(1e-3), "df {df} p {p}: {}", t_sf(t, df));
            }
        }
        assert!((t_quantile(0.99, 1e6) - normal_quantile(0.99)).abs() < 1e-4);
        assert!((t_sf(0.0, 5.0) - 0.5).abs() < 1e-15);
        assert!((t_sf(-2.0, 5.0) + t_sf(2.0, 5.0) - 1.0).abs() < 1e-15);
        // Cauchy (df 1) has a closed form: P(T > t) = ½ − atan(t)/π.
        assert!((t_sf(3.0, 1.0) - (0.5 - 3f64.atan() / std::f64::consts::PI)).abs() < 1e-12);
    }
}
