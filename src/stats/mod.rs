//! Statistics that decide whether a kernel module leaks memory.
//!
//! This module owns the arithmetic between "a time series of memory readings
//! sampled in a guest VM" and "leak / no leak / inconclusive". The verdict's
//! own pieces are the submodules: `trend` (a slope whose interval holds
//! under autocorrelated noise), `student` (Student's t), `multiple` (Holm,
//! alpha spent over looks) and `sim` (the Monte Carlo checks of their error
//! rates). This file keeps the Theil–Sen slope with Sen's interval and the
//! Mann–Kendall test, which the report's plots draw, and schema 1's
//! comparison, which `sim` shows failing. It also turns slopes into rates
//! (per hour, per operation) and projections (time
//! until a memory budget is exhausted). It does no I/O and knows nothing about
//! where the samples came from.
//!
//! Everything here is pure and deterministic. The normal distribution
//! function and its inverse are implemented in-house (W. J. Cody's rational
//! approximations for erfc, Acklam's algorithm plus one refinement step for
//! the quantile) so that results do not depend on a numerics crate.
//!
//! Cost: a fit builds every pairwise slope, so it takes O(n²) memory and
//! O(n² log n) time (the sort dominates). For the few thousand samples a run
//! produces that is tens of megabytes and well under a second; callers with
//! far longer series should thin them before fitting.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Real A/A noise: the corpus loader and the block bootstrap (used by
/// tests/aa_corpus.rs).
pub mod aa;
pub mod multiple;
/// Noise with known truth for the error-rate simulations.
pub mod sim;
pub mod student;
pub mod trend;

/// The smallest series `fit` accepts. Below five points the Mann–Kendall
/// normal approximation is meaningless and Sen's interval covers every slope.
pub const MIN_POINTS: usize = 5;

/// A sensible two-sided level for the per-series confidence interval (95%).
pub const DEFAULT_FIT_ALPHA: f64 = 0.05;

/// The default one-sided level for the module-versus-baseline verdict. It is
/// strict because a false "leak" sends someone hunting for a bug that is not
/// there.
pub const DEFAULT_COMPARE_ALPHA: f64 = 0.01;

/// Why a series could not be fitted.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    #[error("time and value series differ in length ({t} times, {y} values)")]
    LengthMismatch { t: usize, y: usize },
    #[error("too few points to fit a trend: {n} (need at least {min})")]
    TooFewPoints { n: usize, min: usize },
    #[error("non-finite {which} value at index {index}")]
    NonFinite { which: &'static str, index: usize },
    #[error("all {n} time values are equal, so no slope can be estimated")]
    AllTimesEqual { n: usize },
    #[error("alpha must lie strictly between 0 and 1, got {alpha}")]
    InvalidAlpha { alpha: f64 },
}

/// The trend of one series: the Theil–Sen line, Sen's two-sided confidence
/// interval for its slope, and the Mann–Kendall test of "no trend".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Number of samples.
    pub n: usize,
    /// Theil–Sen slope, in units of y per unit of t.
    pub slope: f64,
    /// Median of `y − slope·t`.
    pub intercept: f64,
    /// Lower end of Sen's confidence interval for the slope.
    pub lower: f64,
    /// Upper end of Sen's confidence interval for the slope.
    pub upper: f64,
    /// The two-sided alpha the interval was built with. It is kept because
    /// the standard error is recovered from the interval and needs it.
    pub alpha: f64,
    /// Mann–Kendall statistic S.
    pub s: i64,
    /// Variance of S under "no trend", corrected for ties in y.
    pub var_s: f64,
    /// Continuity-corrected normal score of S.
    pub z: f64,
    /// One-sided p-value for an increasing trend, 1 − Φ(z).
    pub p_increasing: f64,
    /// Two-sided p-value for any trend.
    pub p_two_sided: f64,
}

impl Fit {
    /// Standard error of the slope recovered from the interval, as
    /// `(upper − lower) / (2·z_{1−α/2})`. Sen's interval is not symmetric in
    /// general, so this is an approximation that is good enough to combine
    /// two independent fits.
    pub fn se(&self) -> f64 {
        se_from_ci(self.lower, self.upper, self.alpha)
    }
}

/// Recovers a standard error from a two-sided `1 − alpha` interval.
pub fn se_from_ci(lower: f64, upper: f64, alpha: f64) -> f64 {
    (upper - lower) / (2.0 * normal_quantile(1.0 - alpha / 2.0))
}

/// The outcome of comparing a module run with a baseline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Leak,
    NoLeak,
    Inconclusive,
    /// The module arm's growth stopped within the run: a cache that filled
    /// (a ring buffer, a pool, a log FIFO) and then stayed flat. Not a leak;
    /// the report says at how many objects it levelled off.
    Bounded,
}

impl Verdict {
    /// The verdict as in the JSON records and events (`no-leak`).
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::NoLeak => "no-leak",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Bounded => "bounded",
        }
    }
}

/// The difference in slopes between a module run and a baseline run, its
/// one-sided bounds, and the verdict they imply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Module slope minus baseline slope.
    pub delta: f64,
    /// Standard error of `delta`.
    pub se: f64,
    /// `delta − z_{1−α}·se`.
    pub lower: f64,
    /// `delta + z_{1−α}·se`.
    pub upper: f64,
    /// The growth rate below which we do not call it a leak.
    pub floor: f64,
    /// One-sided alpha used for the bounds.
    pub alpha: f64,
    pub verdict: Verdict,
    /// One sentence explaining the verdict, for reports.
    pub reason: String,
}

/// All pairwise slopes `(y_j − y_i)/(t_j − t_i)` over pairs with distinct t,
/// sorted ascending. Pairs with equal t carry no slope information and are
/// skipped rather than producing infinities.
pub fn pairwise_slopes(t: &[f64], y: &[f64]) -> Vec<f64> {
    let n = t.len().min(y.len());
    let mut slopes = Vec::with_capacity(n.saturating_sub(1) * n / 2);
    for i in 0..n {
        for j in (i + 1)..n {
            let dt = t[j] - t[i];
            if dt != 0.0 {
                slopes.push((y[j] - y[i]) / dt);
            }
        }
    }
    // total_cmp never panics; inputs are checked finite by `fit`, so NaN
    // cannot appear there, but this function is public and must not panic.
    slopes.sort_by(f64::total_cmp);
    slopes
}

/// Fits the Theil–Sen line to `y` against `t`, with Sen's two-sided
/// `1 − alpha` confidence interval for the slope and the Mann–Kendall test.
///
/// `t` need not be sorted. S is computed as Σ sgn(t_j − t_i)·sgn(y_j − y_i),
/// which is the textbook Σ_{i<j} sgn(y_j − y_i) when t is increasing and
/// stays correct when it is not.
///
/// A constant series is valid: slope 0, interval [0, 0], S = 0, p = 0.5.
pub fn fit(t: &[f64], y: &[f64], alpha: f64) -> Result<Fit, StatsError> {
    if t.len() != y.len() {
        return Err(StatsError::LengthMismatch {
            t: t.len(),
            y: y.len(),
        });
    }
    let n = t.len();
    if n < MIN_POINTS {
        return Err(StatsError::TooFewPoints { n, min: MIN_POINTS });
    }
    if let Some(index) = t.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite {
            which: "time",
            index,
        });
    }
    if let Some(index) = y.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite {
            which: "value",
            index,
        });
    }
    // Written as a negated conjunction so that NaN is rejected too.
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidAlpha { alpha });
    }

    let slopes = pairwise_slopes(t, y);
    if slopes.is_empty() {
        return Err(StatsError::AllTimesEqual { n });
    }
    let slope = median_sorted(&slopes);
    let mut residuals: Vec<f64> = t.iter().zip(y).map(|(ti, yi)| yi - slope * ti).collect();
    residuals.sort_by(f64::total_cmp);
    let intercept = median_sorted(&residuals);

    let s = kendall_s(t, y);
    let nn = n as f64;
    let base = nn * (nn - 1.0) * (2.0 * nn + 5.0);
    let y_ties = tie_term(y);
    // Mann–Kendall treats t as time, so only ties in y correct its variance.
    let var_s = ((base - y_ties) / 18.0).max(0.0);
    let z = if s == 0 || var_s <= 0.0 {
        0.0
    } else if s > 0 {
        (s as f64 - 1.0) / var_s.sqrt()
    } else {
        (s as f64 + 1.0) / var_s.sqrt()
    };
    let p_increasing = normal_sf(z);
    let p_two_sided = (2.0 * normal_sf(z.abs())).min(1.0);

    // Sen (1968, eq. 2.6) also removes ties in t from the variance that sets
    // the interval width. With distinct sample times (the normal case here)
    // this equals `var_s`; with repeated t it matches scipy's theilslopes and
    // statpsych's ci.theil, which we pin in the tests.
    let var_ci = ((base - y_ties - tie_term(t)) / 18.0).max(0.0);
    let (lower, upper) = sen_interval(&slopes, var_ci, alpha);

    Ok(Fit {
        n,
        slope,
        intercept,
        lower,
        upper,
        alpha,
        s,
        var_s,
        z,
        p_increasing,
        p_two_sided,
    })
}

/// Schema 1's verdict, kept as the foil of `sim`'s Monte Carlo checks (it
/// breaks α under autocorrelated noise; `analysis::leak` no longer uses
/// it). Decides whether `module` grows faster than `baseline` by more than
/// `floor` (in the slopes' units), at one-sided level `alpha`.
///
/// The slope difference Δ gets a standard error from the two intervals,
/// `√(SE_mod² + SE_base²)`, treating the runs as independent. With
/// `z = z_{1−α}` the verdict is `Leak` when `Δ − z·SE > floor`, `NoLeak`
/// when `Δ + z·SE < floor`, and `Inconclusive` otherwise. The inequalities
/// are strict so that a zero-width interval sitting exactly on the floor is
/// inconclusive rather than arbitrarily one or the other.
pub fn compare(module: &Fit, baseline: &Fit, floor: f64, alpha: f64) -> Comparison {
    let delta = module.slope - baseline.slope;
    let se = module.se().hypot(baseline.se());
    let mut out = Comparison {
        delta,
        se,
        lower: f64::NAN,
        upper: f64::NAN,
        floor,
        alpha,
        verdict: Verdict::Inconclusive,
        reason: String::new(),
    };
    if !(alpha > 0.0 && alpha < 1.0) {
        out.reason = format!("alpha must lie strictly between 0 and 1, got {alpha}");
        return out;
    }
    let z = normal_quantile(1.0 - alpha);
    out.lower = delta - z * se;
    out.upper = delta + z * se;
    // NaN compares false everywhere, so a bad floor or a broken fit falls
    // through to an inconclusive verdict instead of a confident one.
    if !(delta.is_finite() && se.is_finite() && floor.is_finite()) {
        out.reason = format!(
            "cannot judge: slope difference {}, standard error {}, floor {}",
            num(delta),
            num(se),
            num(floor)
        );
    } else if out.lower > floor {
        out.verdict = Verdict::Leak;
        out.reason = format!(
            "growth exceeds baseline by {} (lower bound {}), above the floor {}",
            num(delta),
            num(out.lower),
            num(floor)
        );
    } else if out.upper < floor {
        out.verdict = Verdict::NoLeak;
        out.reason = format!(
            "growth over baseline is at most {} (estimate {}), below the floor {}",
            num(out.upper),
            num(delta),
            num(floor)
        );
    } else if out.lower == out.upper {
        out.reason = format!(
            "slope difference {} sits exactly on the floor {}",
            num(delta),
            num(floor)
        );
    } else {
        out.reason = format!(
            "interval [{}, {}] straddles the floor {}",
            num(out.lower),
            num(out.upper),
            num(floor)
        );
    }
    out
}

/// Converts a per-second slope to a per-hour one.
pub fn per_hour(slope_per_s: f64) -> f64 {
    slope_per_s * 3600.0
}

/// Converts a slope against time into a slope per operation, given the
/// workload's throughput. Returns None when the throughput is not a positive
/// finite number, since there is then no meaningful per-operation cost.
pub fn per_op(slope_vs_time: f64, ops_per_s: f64) -> Option<f64> {
    (ops_per_s.is_finite() && ops_per_s > 0.0).then(|| slope_vs_time / ops_per_s)
}

/// How long `headroom_bytes` of free memory lasts if usage grows at a rate
/// within `[lower, upper]` bytes per second: `(fastest, slowest)` in seconds,
/// with fastest = headroom/upper and slowest = headroom/lower, or +∞ when the
/// lower bound does not rule out "no growth". Returns None when even the
/// upper bound is not growth, because then nothing ever runs out. Negative
/// headroom counts as already exhausted.
pub fn time_to_exhaustion(headroom_bytes: f64, lower: f64, upper: f64) -> Option<(f64, f64)> {
    if headroom_bytes.is_nan() || upper.is_nan() || upper <= 0.0 {
        return None;
    }
    let headroom = headroom_bytes.max(0.0);
    let fastest = headroom / upper;
    let slowest = if lower > 0.0 {
        headroom / lower
    } else {
        f64::INFINITY
    };
    Some((fastest, slowest))
}

/// Standard normal distribution function Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal upper tail 1 − Φ(x), computed directly so that small
/// p-values keep their precision.
pub fn normal_sf(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// Inverse of Φ: Acklam's rational approximation (relative error about
/// 1.15e-9), polished with one Halley step against `normal_cdf`, which
/// brings it to near machine precision. Returns ∓∞ at 0 and 1 and NaN
/// outside [0, 1].
// The coefficients are kept digit for digit as published, so that they can
// be checked against the source, even where f64 cannot hold every digit.
#[allow(clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383577518672690e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    const P_LOW: f64 = 0.02425;

    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // Halley refinement as Acklam recommends. The error is measured on the
    // tail nearer to x so that it does not cancel away for p near 0 or 1.
    let e = if x < 0.0 {
        normal_cdf(x) - p
    } else {
        (1.0 - p) - normal_sf(x)
    };
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    let refined = x - u / (1.0 + x * u / 2.0);
    if refined.is_finite() {
        refined
    } else {
        x
    }
}

/// Complementary error function, after W. J. Cody, "Rational Chebyshev
/// approximations for the error function", Math. Comp. 23 (1969), as in his
/// CALERF routine: three rational approximations on |x| ≤ 0.46875,
/// 0.46875 < |x| ≤ 4 and |x| > 4, accurate to roughly 1e-16 relative.
#[allow(clippy::excessive_precision)]
pub fn erfc(x: f64) -> f64 {
    const A: [f64; 5] = [
        3.16112374387056560e00,
        1.13864154151050156e02,
        3.77485237685302021e02,
        3.20937758913846947e03,
        1.85777706184603153e-1,
    ];
    const B: [f64; 4] = [
        2.36012909523441209e01,
        2.44024637934444173e02,
        1.28261652607737228e03,
        2.84423683343917062e03,
    ];
    const C: [f64; 9] = [
        5.64188496988670089e-1,
        8.88314979438837594e00,
        6.61191906371416295e01,
        2.98635138197400131e02,
        8.81952221241769090e02,
        1.71204761263407058e03,
        2.05107837782607147e03,
        1.23033935479799725e03,
        2.15311535474403846e-8,
    ];
    const D: [f64; 8] = [
        1.57449261107098347e01,
        1.17693950891312499e02,
        5.37181101862009858e02,
        1.62138957456669019e03,
        3.29079923573345963e03,
        4.36261909014324716e03,
        3.43936767414372164e03,
        1.23033935480374942e03,
    ];
    const P: [f64; 6] = [
        3.05326634961232344e-1,
        3.60344899949804439e-1,
        1.25781726111229246e-1,
        1.60837851487422766e-2,
        6.58749161529837803e-4,
        1.63153871373020978e-2,
    ];
    const Q: [f64; 5] = [
        2.56852019228982242e00,
        1.87295284992346047e00,
        5.27905102951428412e-1,
        6.05183413124413191e-2,
        2.33520497626869185e-3,
    ];
    const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
    const THRESH: f64 = 0.46875;
    // Beyond this erfc(x) underflows to zero in double precision.
    const XBIG: f64 = 26.543;

    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    if y <= THRESH {
        let ysq = if y > f64::EPSILON / 2.0 { y * y } else { 0.0 };
        let mut num = A[4] * ysq;
        let mut den = ysq;
        for i in 0..3 {
            num = (num + A[i]) * ysq;
            den = (den + B[i]) * ysq;
        }
        return 1.0 - x * (num + A[3]) / (den + B[3]);
    }
    let scaled = if y <= 4.0 {
        let mut num = C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + C[i]) * y;
            den = (den + D[i]) * y;
        }
        (num + C[7]) / (den + D[7])
    } else if y >= XBIG {
        0.0
    } else {
        let ysq = 1.0 / (y * y);
        let mut num = P[5] * ysq;
        let mut den = ysq;
        for i in 0..4 {
            num = (num + P[i]) * ysq;
            den = (den + Q[i]) * ysq;
        }
        (FRAC_1_SQRT_PI - ysq * (num + P[4]) / (den + Q[4])) / y
    };
    // exp(−y²) is split as exp(−h²)·exp(−(y−h)(y+h)) with h = y rounded down
    // to a multiple of 1/16, which avoids the cancellation Cody warns about.
    let h = (y * 16.0).trunc() / 16.0;
    let del = (y - h) * (y + h);
    let result = (-h * h).exp() * (-del).exp() * scaled;
    if x < 0.0 {
        2.0 - result
    } else {
        result
    }
}

/// Median of an already sorted, non-empty slice; the mean of the two middle
/// values when the length is even, as numpy and R do.
/// The median of `v` (NaN when empty), on a sorted copy.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        f64::NAN
    } else {
        median_sorted(&s)
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Kendall's S between t and y: concordant minus discordant pairs.
fn kendall_s(t: &[f64], y: &[f64]) -> i64 {
    let n = t.len().min(y.len());
    let mut s = 0i64;
    for i in 0..n {
        for j in (i + 1)..n {
            s += sign(t[j] - t[i]) * sign(y[j] - y[i]);
        }
    }
    s
}

fn sign(v: f64) -> i64 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

/// Σ over groups of equal values of g(g−1)(2g+5), the tie correction in the
/// variance of S.
fn tie_term(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut total = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let g = (j - i) as f64;
        total += g * (g - 1.0) * (2.0 * g + 5.0);
        i = j;
    }
    total
}

/// Sen's interval from the sorted slopes: with C = z_{1−α/2}·√var,
/// M1 = (N − C)/2 and M2 = (N + C)/2, the bounds are the order statistics
/// s_(round(M1)) and s_(round(M2)+1), 1-based and clamped to [1, N]. Rounding
/// is half-to-even to agree with numpy, which scipy's reference uses.
fn sen_interval(slopes: &[f64], var: f64, alpha: f64) -> (f64, f64) {
    let n = slopes.len() as f64;
    let c = normal_quantile(1.0 - alpha / 2.0) * var.sqrt();
    let m1 = ((n - c) / 2.0).round_ties_even();
    let m2 = ((n + c) / 2.0).round_ties_even() + 1.0;
    let pick = |k: f64| {
        // Clamping in f64 first keeps huge or NaN values from wrapping when
        // converted to an index.
        let k = if k.is_nan() { 1.0 } else { k.clamp(1.0, n) };
        slopes[k as usize - 1]
    };
    (pick(m1), pick(m2))
}

/// Formats a number for reasons: four significant figures, without noise.
fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if (1e-3..1e7).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[track_caller]
    fn assert_close(a: f64, b: f64, tol: f64) {
        assert!(close(a, b, tol), "{a} != {b} (tol {tol})");
    }

    /// A tiny deterministic generator (Knuth's MMIX LCG) so tests need no
    /// rand crate and give the same series on every machine.
    struct Lcg(u64);

    impl Lcg {
        fn next_u01(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        /// Standard normal deviate via the quantile function.
        fn normal(&mut self) -> f64 {
            normal_quantile(self.next_u01())
        }
    }

    fn seconds(n: usize, step: f64) -> Vec<f64> {
        (0..n).map(|i| i as f64 * step).collect()
    }

    /// A series `base + slope·t + noise` with Gaussian noise of the given sd.
    fn noisy(rng: &mut Lcg, t: &[f64], base: f64, slope: f64, sd: f64) -> Vec<f64> {
        t.iter()
            .map(|ti| base + slope * ti + sd * rng.normal())
            .collect()
    }

    #[track_caller]
    fn assert_fit(f: &Fit, slope: f64, intercept: f64, lower: f64, upper: f64) {
        assert_close(f.slope, slope, 1e-9);
        assert_close(f.intercept, intercept, 1e-9);
        assert_close(f.lower, lower, 1e-9);
        assert_close(f.upper, upper, 1e-9);
    }

    #[track_caller]
    fn assert_mk(f: &Fit, s: i64, var_s: f64, z: f64, p_inc: f64, p_two: f64) {
        assert_eq!(f.s, s);
        assert_close(f.var_s, var_s, 1e-12);
        assert_close(f.z, z, 1e-12);
        // p-values are checked relative to their own size, since they can be
        // tiny and an absolute 1e-9 would accept anything.
        assert!(
            (f.p_increasing - p_inc).abs() <= 1e-9 * p_inc,
            "{} vs {p_inc}",
            f.p_increasing
        );
        assert!(
            (f.p_two_sided - p_two).abs() <= 1e-9 * p_two,
            "{} vs {p_two}",
            f.p_two_sided
        );
    }

    // The reference numbers below were produced with scipy 1.17.1 / numpy
    // 2.4.6: `scipy.stats.theilslopes(y, t, 0.95, method='joint')` for the
    // slope, intercept and interval; S and Var(S) by a direct double loop
    // (Var with ties in y only), z as specified, p-values from
    // `scipy.stats.norm.sf(z)` and `2*norm.sf(|z|)`. S was cross-checked
    // with `scipy.stats.kendalltau`, whose tau-b is S/√((n0−n1)(n0−n2)).

    #[test]
    fn statpsych_ci_theil_example() {
        // The documented example of R statpsych's ci.theil, which should
        // return estimate 0.5, SE 0.1085927, LL 0.3243243, UL 0.75. The
        // predictor has ties (28 three times, 40 twice), which exercises
        // Sen's tie-corrected interval. scipy agrees to the last digit.
        let y = [
            21., 4., 9., 12., 35., 18., 10., 22., 24., 1., 6., 8., 13., 16., 19.,
        ];
        let x = [
            67., 28., 30., 28., 52., 40., 25., 37., 44., 10., 14., 20., 28., 40., 51.,
        ];
        let f = fit(&x, &y, 0.05).unwrap();
        assert_eq!(f.n, 15);
        assert_fit(&f, 0.5, -2.0, 0.32432432432432434, 0.75);
        assert_close(f.se(), 0.1085927, 1e-7);
        assert_mk(
            &f,
            75,
            408.3333333333333,
            3.662050278859912,
            0.00012510236817858032,
            0.00025020473635716065,
        );
    }

    #[test]
    fn scipy_ties_in_values() {
        let t = seconds(12, 10.0);
        let y = [
            100., 100., 130., 120., 120., 150., 150., 150., 170., 160., 190., 190.,
        ];
        let f = fit(&t, &y, 0.05).unwrap();
        assert_fit(&f, 0.8090909090909091, 100.5, 0.6666666666666666, 1.0);
        // Groups 100×2, 120×2, 150×3, 190×2 reduce Var(S) from 212.67 to 206.
        assert_mk(
            &f,
            54,
            206.0,
            3.6926849757455735,
            0.00011094941528653473,
            0.00022189883057306946,
        );
        // scipy.stats.kendalltau gives tau-b 0.858116330321033; with 66 pairs,
        // no ties in t and 6 tied pairs in y, S = tau_b·√(66·60).
        assert_close(
            f.s as f64,
            0.858116330321033 * (66.0f64 * 60.0).sqrt(),
            1e-12,
        );
    }

    #[test]
    fn scipy_noisy_line_25_points() {
        // numpy default_rng(20240501): t = 0, 5, …, 120 s;
        // y = round(4096 + 1000·t + N(0, 2000), 1).
        let t = seconds(25, 5.0);
        let y = [
            3442.1, 7147.4, 15085.2, 19946.0, 23213.6, 28896.6, 30488.6, 37331.2, 44529.2, 50287.1,
            54078.1, 57450.5, 63385.8, 70146.6, 71362.6, 81505.5, 83638.8, 87485.9, 92017.1,
            96837.7, 105621.9, 106386.4, 112411.0, 119299.9, 121670.1,
        ];
        let f = fit(&t, &y, 0.05).unwrap();
        assert_fit(
            &f,
            988.7776018099546,
            3645.463800904996,
            970.5871428571429,
            1011.37,
        );
        assert_mk(
            &f,
            300,
            1833.3333333333333,
            6.9831355291288615,
            1.4433184517204019e-12,
            2.8866369034408037e-12,
        );
    }

    #[test]
    fn scipy_negative_slope_irregular_times() {
        // Same generator, continued: t = round(sorted(U(0, 600)), 2);
        // y = round(50000 − 37.5·t + N(0, 900), 1).
        let t = [
            19.55, 104.39, 111.45, 149.76, 158.79, 169.95, 206.19, 219.62, 303.1, 315.8, 329.95,
            357.12, 372.83, 439.22, 524.1, 565.06,
        ];
        let y = [
            50164.8, 47307.5, 45458.5, 44794.1, 45228.0, 42729.5, 42146.4, 41277.1, 38812.7,
            38084.3, 37312.9, 37357.2, 36483.9, 34273.1, 30939.1, 27626.4,
        ];
        let f = fit(&t, &y, 0.05).unwrap();
        assert_fit(
            &f,
            -38.546079612355214,
            50531.38880662559,
            -41.33806886588008,
            -34.399958724589865,
        );
        assert_mk(
            &f,
            -116,
            493.3333333333333,
            -5.177589442243604,
            0.9999998876144037,
            2.247711926043374e-07,
        );
        // kendalltau: tau = −0.9666666666666667 over 120 untied pairs.
        assert_close(f.s as f64, -0.9666666666666667 * 120.0, 1e-12);
    }

    #[test]
    fn unsorted_time_gives_same_fit() {
        let t = [19.55, 104.39, 111.45, 149.76, 158.79, 169.95];
        let y = [50164.8, 47307.5, 45458.5, 44794.1, 45228.0, 42729.5];
        let a = fit(&t, &y, 0.05).unwrap();
        let order = [3, 0, 5, 1, 4, 2];
        let ts: Vec<f64> = order.iter().map(|&i| t[i]).collect();
        let ys: Vec<f64> = order.iter().map(|&i| y[i]).collect();
        assert_eq!(a, fit(&ts, &ys, 0.05).unwrap());
    }

    #[test]
    fn normal_distribution_functions() {
        assert_close(normal_cdf(1.96), 0.9750021, 1e-7);
        assert_close(normal_quantile(0.99), 2.3263479, 1e-7);
        assert_close(normal_quantile(0.975), 1.959964, 1e-6);
        // scipy.stats.norm / scipy.special.erfc at higher precision.
        let cdf = [
            (1.96, 0.9750021048517795),
            (-1.96, 0.024997895148220435),
            (0.0, 0.5),
            (0.3, 0.6179114221889526),
            (0.46875, 0.6803758284828824),
            (2.5, 0.9937903346742238),
            (-7.0, 1.279812543885835e-12),
        ];
        for (x, p) in cdf {
            assert!((normal_cdf(x) - p).abs() <= 1e-14 * p, "cdf({x})");
        }
        let sf = [
            (4.0, 3.167124183311986e-05),
            (5.5, 1.898956246588768e-08),
            (10.0, 7.61985302416047e-24),
        ];
        for (x, p) in sf {
            assert!((normal_sf(x) - p).abs() <= 1e-13 * p, "sf({x})");
        }
        let erfcs = [
            (1.96, 0.005573724535172135),
            (-1.96, 1.9944262754648279),
            (0.3, 0.6713732405408726),
            (2.5, 0.00040695201744495886),
            (4.0, 1.541725790028002e-08),
            (5.5, 7.357847917974398e-15),
            (10.0, 2.0884875837625446e-45),
        ];
        for (x, v) in erfcs {
            assert!((erfc(x) - v).abs() <= 1e-13 * v, "erfc({x})");
        }
        assert_eq!(erfc(30.0), 0.0);
        assert_eq!(erfc(-30.0), 2.0);
        let ppf = [
            (0.99, 2.3263478740408408),
            (0.975, 1.959963984540054),
            (0.995, 2.5758293035489004),
            (0.01, -2.3263478740408408),
            (0.02425, -1.972961051311885),
            (0.9, 1.2815515655446004),
            (1e-10, -6.361340902404056),
            (0.999999, 4.753424308817087),
        ];
        for (p, x) in ppf {
            assert_close(normal_quantile(p), x, 1e-12);
        }
        assert_eq!(normal_quantile(0.5), 0.0);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(1.5).is_nan());
        assert!(normal_quantile(f64::NAN).is_nan());
    }

    #[test]
    fn pairwise_slopes_are_sorted_and_skip_equal_times() {
        let s = pairwise_slopes(&[0.0, 1.0, 1.0, 3.0], &[0.0, 4.0, 2.0, 3.0]);
        // Pair (1, 2) shares t = 1 and is skipped: 6 − 1 = 5 slopes.
        assert_eq!(s, vec![-0.5, 0.5, 1.0, 2.0, 4.0]);
        assert!(pairwise_slopes(&[], &[]).is_empty());
    }

    #[test]
    fn constant_series() {
        let t = seconds(10, 1.0);
        let y = [4096.0; 10];
        let f = fit(&t, &y, 0.05).unwrap();
        assert_eq!(
            (f.slope, f.intercept, f.lower, f.upper),
            (0.0, 4096.0, 0.0, 0.0)
        );
        assert_eq!((f.s, f.var_s, f.z), (0, 0.0, 0.0));
        assert_eq!(f.p_increasing, 0.5);
        assert_eq!(f.p_two_sided, 1.0);
        assert_eq!(f.se(), 0.0);
    }

    #[test]
    fn errors_not_panics() {
        let t = seconds(5, 1.0);
        assert_eq!(
            fit(&t[..4], &[1.0; 4], 0.05),
            Err(StatsError::TooFewPoints {
                n: 4,
                min: MIN_POINTS
            })
        );
        assert_eq!(
            fit(&[], &[], 0.05),
            Err(StatsError::TooFewPoints { n: 0, min: 5 })
        );
        assert_eq!(
            fit(&t, &[1.0; 6], 0.05),
            Err(StatsError::LengthMismatch { t: 5, y: 6 })
        );
        let mut y = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        y[2] = f64::NAN;
        assert_eq!(
            fit(&t, &y, 0.05),
            Err(StatsError::NonFinite {
                which: "value",
                index: 2
            })
        );
        let mut tt = t.clone();
        tt[4] = f64::INFINITY;
        assert_eq!(
            fit(&tt, &[1.0; 5], 0.05),
            Err(StatsError::NonFinite {
                which: "time",
                index: 4
            })
        );
        assert_eq!(
            fit(&[7.0; 6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.05),
            Err(StatsError::AllTimesEqual { n: 6 })
        );
        for alpha in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(matches!(
                fit(&t, &[1.0; 5], alpha),
                Err(StatsError::InvalidAlpha { .. })
            ));
        }
        let msg = StatsError::TooFewPoints { n: 3, min: 5 }.to_string();
        assert_eq!(msg, "too few points to fit a trend: 3 (need at least 5)");
    }

    #[test]
    fn a_a_runs_show_no_leak() {
        // Two independent flat series with 4 KiB of noise and a 10 B/s floor:
        // the test must not cry wolf when nothing differs.
        let mut rng = Lcg(42);
        let t = seconds(300, 2.0);
        let a = fit(&t, &noisy(&mut rng, &t, 1e6, 0.0, 4096.0), 0.05).unwrap();
        let b = fit(&t, &noisy(&mut rng, &t, 1e6, 0.0, 4096.0), 0.05).unwrap();
        let c = compare(&a, &b, 10.0, DEFAULT_COMPARE_ALPHA);
        assert_eq!(c.verdict, Verdict::NoLeak, "{c:?}");
        assert!(c.upper < 10.0 && c.lower < c.delta && c.delta < c.upper);
    }

    #[test]
    fn clear_leak_is_detected() {
        let mut rng = Lcg(7);
        let t = seconds(120, 5.0);
        let module = fit(&t, &noisy(&mut rng, &t, 1e6, 1000.0, 20000.0), 0.05).unwrap();
        let baseline = fit(&t, &noisy(&mut rng, &t, 1e6, 0.0, 20000.0), 0.05).unwrap();
        assert!(module.p_increasing < 1e-6);
        let c = compare(&module, &baseline, 10.0, DEFAULT_COMPARE_ALPHA);
        assert_eq!(c.verdict, Verdict::Leak, "{c:?}");
        assert!(c.reason.contains("above the floor 10"), "{}", c.reason);
        assert!((c.delta - 1000.0).abs() < 50.0);
    }

    #[test]
    fn ambiguous_case_is_inconclusive() {
        // Few noisy points and a true difference right at the floor.
        let mut rng = Lcg(99);
        let t = seconds(12, 10.0);
        let module = fit(&t, &noisy(&mut rng, &t, 1e6, 5.0, 400.0), 0.05).unwrap();
        let baseline = fit(&t, &noisy(&mut rng, &t, 1e6, 0.0, 400.0), 0.05).unwrap();
        let c = compare(&module, &baseline, 5.0, DEFAULT_COMPARE_ALPHA);
        assert_eq!(c.verdict, Verdict::Inconclusive, "{c:?}");
        assert!(c.reason.starts_with("interval ["), "{}", c.reason);
        assert!(c.reason.ends_with("straddles the floor 5"), "{}", c.reason);
    }

    #[test]
    fn degenerate_zero_width_intervals() {
        let t = seconds(8, 1.0);
        let flat = fit(&t, &[10.0; 8], 0.05).unwrap();
        let line: Vec<f64> = t.iter().map(|x| 10.0 + 5.0 * x).collect();
        let exact = fit(&t, &line, 0.05).unwrap();
        assert_eq!((exact.lower, exact.upper, exact.se()), (5.0, 5.0, 0.0));

        // Equal constant series, positive floor: clearly no leak.
        let c = compare(&flat, &flat, 1.0, 0.01);
        assert_eq!(
            (c.verdict, c.se, c.lower, c.upper),
            (Verdict::NoLeak, 0.0, 0.0, 0.0)
        );
        // Exactly on the floor with no uncertainty: refuse to call it.
        let c = compare(&exact, &flat, 5.0, 0.01);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(c.reason, "slope difference 5 sits exactly on the floor 5");
        // Zero width but clearly above or below the floor.
        assert_eq!(compare(&exact, &flat, 4.0, 0.01).verdict, Verdict::Leak);
        assert_eq!(compare(&exact, &flat, 6.0, 0.01).verdict, Verdict::NoLeak);
        // A zero floor with equal flat series is not a leak, but not "no leak"
        // either: the difference sits on the floor.
        assert_eq!(
            compare(&flat, &flat, 0.0, 0.01).verdict,
            Verdict::Inconclusive
        );
        // Nonsense inputs are inconclusive rather than confident.
        assert_eq!(
            compare(&exact, &flat, f64::NAN, 0.01).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(
            compare(&exact, &flat, 1.0, 1.5).verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn comparison_arithmetic_and_serialization() {
        let mk = |slope: f64, half: f64| Fit {
            n: 10,
            slope,
            intercept: 0.0,
            lower: slope - half,
            upper: slope + half,
            alpha: 0.05,
            s: 0,
            var_s: 0.0,
            z: 0.0,
            p_increasing: 0.5,
            p_two_sided: 1.0,
        };
        let z975 = normal_quantile(0.975);
        // Half-widths of 3·z and 4·z give SEs 3 and 4, so SE_Δ is 5.
        let c = compare(&mk(20.0, 3.0 * z975), &mk(2.0, 4.0 * z975), 10.0, 0.01);
        assert_close(c.delta, 18.0, 1e-12);
        assert_close(c.se, 5.0, 1e-12);
        assert_close(c.lower, 18.0 - 5.0 * 2.3263478740408408, 1e-12);
        assert_close(c.upper, 18.0 + 5.0 * 2.3263478740408408, 1e-12);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(c.reason, "interval [6.368, 29.63] straddles the floor 10");

        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["verdict"], "inconclusive");
        assert_eq!(
            serde_json::to_string(&Verdict::NoLeak).unwrap(),
            "\"no-leak\""
        );
        assert_eq!(serde_json::to_string(&Verdict::Leak).unwrap(), "\"leak\"");
        let back: Comparison = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rates_and_projections() {
        assert_eq!(per_hour(2.5), 9000.0);
        assert_eq!(per_op(1000.0, 250.0), Some(4.0));
        assert_eq!(per_op(1000.0, 0.0), None);
        assert_eq!(per_op(1000.0, f64::NAN), None);

        // 1 GiB headroom at 512..1024 B/s.
        let gib = 1024.0 * 1024.0 * 1024.0;
        assert_eq!(
            time_to_exhaustion(gib, 512.0, 1024.0),
            Some((1048576.0, 2097152.0))
        );
        // Lower bound admits no growth: the slowest case never runs out.
        assert_eq!(
            time_to_exhaustion(gib, -3.0, 1024.0),
            Some((1048576.0, f64::INFINITY))
        );
        assert_eq!(
            time_to_exhaustion(gib, 0.0, 1024.0),
            Some((1048576.0, f64::INFINITY))
        );
        // No growth even at the upper bound: nothing to project.
        assert_eq!(time_to_exhaustion(gib, -5.0, 0.0), None);
        assert_eq!(time_to_exhaustion(gib, -5.0, -1.0), None);
        assert_eq!(time_to_exhaustion(gib, f64::NAN, f64::NAN), None);
        // Already over budget.
        assert_eq!(time_to_exhaustion(-10.0, 1.0, 2.0), Some((0.0, 0.0)));
    }

    #[test]
    fn property_interval_brackets_slope() {
        let mut rng = Lcg(2024);
        for case in 0..200 {
            let n = MIN_POINTS + (rng.next_u01() * 60.0) as usize;
            let step = 0.5 + rng.next_u01() * 10.0;
            // Some series get repeated sample times and coarse values so that
            // both kinds of ties are exercised.
            let coarse = case % 4 == 0;
            let t: Vec<f64> = (0..n)
                .map(|i| {
                    let v = i as f64 * step + rng.next_u01() * step;
                    if coarse {
                        (v / 5.0).floor() * 5.0
                    } else {
                        v
                    }
                })
                .collect();
            let slope = (rng.next_u01() - 0.5) * 2000.0;
            let sd = rng.next_u01() * 5000.0;
            let y: Vec<f64> = noisy(&mut rng, &t, 1e6, slope, sd)
                .into_iter()
                .map(|v| {
                    if coarse {
                        (v / 1000.0).round() * 1000.0
                    } else {
                        v
                    }
                })
                .collect();
            let alpha = [0.01, 0.05, 0.1, 0.5][case % 4];
            let f = match fit(&t, &y, alpha) {
                Ok(f) => f,
                Err(StatsError::AllTimesEqual { .. }) => continue,
                Err(e) => panic!("case {case}: {e}"),
            };
            assert!(
                f.lower <= f.slope && f.slope <= f.upper,
                "case {case}: {f:?}"
            );
            assert!(f.se() >= 0.0 && f.var_s >= 0.0, "case {case}");
            assert!((0.0..=1.0).contains(&f.p_increasing), "case {case}");
            assert!((0.0..=1.0).contains(&f.p_two_sided), "case {case}");
        }
    }
}
