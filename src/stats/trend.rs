//! A linear trend whose interval stays honest when the noise around it is
//! autocorrelated, persistent, integrated, or shifts its level once.
//!
//! Slab counts are not independent from one sample to the next: per-CPU
//! slabs fill and drain, RCU frees in batches, caches drift, a sawtooth of
//! a few samples rides on a slow wander. Measured on real arms, the lag-1
//! autocorrelation of the detrended series ranged 0.04–0.74. An interval
//! that assumes independence (Sen's, or OLS) is then too narrow; one that
//! assumes AR(1) is too narrow under AR(2), a random walk under
//! measurement noise (a local level) or a level shift (issue 24: up to
//! 37 % false LEAK at nominal 1 %).
//!
//! The method is feasible GLS after Perron & Yabu, "Estimating
//! deterministic trends with an integrated or stationary noise component",
//! J. Econometrics 151 (2009), with the persistence taken from an
//! autoregression of data-chosen order, a unit-root switch and a
//! local-level guard (step 6):
//!
//! 1. OLS of y on [1, x]; residuals u.
//! 2. Persistence: an AR(p) fitted to u, p = 1..4 chosen by BIC (Schwarz
//!    1978) on a common sample; φ̂ = the sum of its coefficients (Perron &
//!    Yabu's α̂: the sum, not the lag-1 autocorrelation, sets the
//!    long-run variance, 1/(1 − Σφ)²). Corrected for its small-sample bias
//!    in a regression with a trend, E[φ̂] ≈ φ − (2 + 4φ)/n (Shaman & Stine
//!    1988, exact for p = 1 and used for the sum), so
//!    φ̃ = (n·φ̂ + 2)/(n − 4), clamped to [0, 1], then taken 1.5 standard
//!    errors higher, φ̃ + 1.5·√((1 − φ̃²)/n): underestimating φ makes the
//!    interval too narrow, overestimating it only wider.
//! 3. Guard. The noise is treated as integrated and the slope fitted on
//!    first differences when φ̃ > 1 − 3·n^{−½} (the unit-root switch). It
//!    only widens: a stationary series taken for integrated loses power,
//!    never size. (A KPSS guard at 1 % stood here until the local-level
//!    fit of step 6 made it redundant: with the fit, the whole-verdict
//!    campaign's level-shift and local-level cells were the same with and
//!    without it, so it went.)
//! 4. Stationary: Prais–Winsten with φ̃: y_0·√(1−φ̃²), y_k − φ̃·y_{k−1}
//!    (and the same for the regressors), then OLS; Var(β̂) = s²·(X'X)⁻¹.
//! 5. Integrated: Δy_k = β·Δx_k + e_k, through the origin, the increments'
//!    own lag-1 autocorrelation bias-corrected (E r ≈ ρ − (1 + 3ρ)/m),
//!    taken 1.5 standard errors higher and clamped to [0, 0.95], then
//!    Prais–Winsten on the increments. A random walk whose steps are
//!    themselves autocorrelated keeps its interval; negative correlation
//!    (a local level's measurement noise, over-differenced stationary
//!    noise) is clamped to zero, which only widens.
//! 6. The local-level guard (`local_level`): a random walk under
//!    measurement noise whose wander is too slow for the autoregression or
//!    the unit-root switch to see (at n = 61 a walk of 0.2σ per step has
//!    lag-1 autocorrelation ≈ 0.1) still carries most of the slope's
//!    variance. The stationary fit is replaced by the local-level fit when
//!    the latter's standard error is larger.
//! 7. Student's t on n − 2 − p degrees of freedom (n − 3 on differences
//!    and for the local level): the persistence is estimated too.
//!
//! Perron & Yabu switch at 1 − n^{−½}; the wider switch and the margins are
//! kernlab's own, chosen by simulation (`stats::sim`, `analysis::leak`
//! tests and `scripts/stats-campaign.sh`) because a verdict over 20 caches
//! and several looks tests each at α/100 or less, where a random walk
//! taken for stationary noise gives p-values of 10⁻¹⁴.
//! Below 12 samples the fit is always on differences.
//!
//! Each step is O(n), so a week of 1 s samples (604,800 points) fits in
//! well under a second and no thinning is needed.

use serde::{Deserialize, Serialize};

use super::StatsError;

/// The smallest series a trend is fitted to: with fewer, φ and the slope
/// cannot both be estimated with any degrees of freedom left.
pub const MIN_TREND_POINTS: usize = 6;

/// Which noise model the fit settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseModel {
    /// Stationary autoregressive noise around the line (Prais–Winsten GLS).
    Stationary,
    /// Integrated noise (a random walk, a local level, a level shift): the
    /// slope from first differences.
    Integrated,
    /// The points lie exactly on a line: no noise at all.
    Exact,
    /// A local level (a random walk under measurement noise): GLS on the
    /// increments with the MA(1) covariance the model implies, averaged
    /// over the signal-to-noise ratio by its restricted likelihood.
    LocalLevel,
}

/// The slope of y against x with an autocorrelation-robust standard error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trend {
    pub n: usize,
    /// Units of y per unit of x.
    pub slope: f64,
    /// Standard error of the slope.
    pub se: f64,
    /// Degrees of freedom for Student's t.
    pub df: f64,
    /// The persistence used: the bias-corrected sum of the residuals' AR
    /// coefficients with its margin (levels), or the increments' lag-1
    /// autocorrelation (differences).
    pub phi: f64,
    pub model: NoiseModel,
}

impl Trend {
    /// A series that is identically zero (a cache absent from an arm).
    pub fn zero(n: usize) -> Trend {
        Trend { n, slope: 0.0, se: 0.0, df: f64::INFINITY, phi: 0.0, model: NoiseModel::Exact }
    }
}

/// Fits the trend of `y` against `x` (x need not be evenly spaced, but must
/// be in sampling order: the noise model is about neighbours in time).
pub fn trend(x: &[f64], y: &[f64]) -> Result<Trend, StatsError> {
    #[cfg(test)]
    if let Some(o) = OVERRIDE.with(|c| c.get()) {
        return trend_with(x, y, &o);
    }
    trend_with(x, y, &Options::default())
}

#[cfg(test)]
thread_local! {
    /// The simulations' way to run the whole verdict with another fit
    /// (the campaign's "before" column); test builds only.
    pub static OVERRIDE: std::cell::Cell<Option<Options>> = const { std::cell::Cell::new(None) };
}

/// The unit-root switch: integrated when φ > 1 − SWITCH/√n.
pub const SWITCH: f64 = 3.0;

/// How many standard errors above its estimate φ is taken (see `trend`).
pub const PHI_MARGIN: f64 = 1.5;

/// How many standard errors above its estimate the increments'
/// autocorrelation is taken on differences.
pub const DIFF_MARGIN: f64 = 0.5;

/// The highest autoregressive order BIC may choose.
pub const MAX_ORDER: usize = 4;

/// The knobs of the fit; `Default` is the method. The simulations and the
/// mutation tests turn them to show what each step buys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub margin: f64,
    pub switch: f64,
    /// Highest AR order (1 reproduces the AR(1)-only fit).
    pub max_order: usize,
    /// Correct the increments' own autocorrelation on differences.
    pub diff_ar: bool,
    /// Standard errors added to the increments' autocorrelation.
    pub diff_margin: f64,
    /// Guard the stationary fit with the local-level fit (the larger
    /// variance wins).
    pub local_level: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { margin: PHI_MARGIN, switch: SWITCH, max_order: MAX_ORDER, diff_ar: true, diff_margin: DIFF_MARGIN, local_level: true }
    }
}

impl Options {
    /// The method before issue 24: φ from the lag-1 autocorrelation,
    /// independent increments assumed on differences, no local-level guard.
    pub fn ar1_only() -> Self {
        Options { max_order: 1, diff_ar: false, local_level: false, ..Options::default() }
    }
}

#[doc(hidden)]
pub fn trend_with(x: &[f64], y: &[f64], o: &Options) -> Result<Trend, StatsError> {
    let n = x.len();
    if n != y.len() {
        return Err(StatsError::LengthMismatch { t: n, y: y.len() });
    }
    if n < MIN_TREND_POINTS {
        return Err(StatsError::TooFewPoints { n, min: MIN_TREND_POINTS });
    }
    for (which, v) in [("x", x), ("y", y)] {
        if let Some(index) = v.iter().position(|a| !a.is_finite()) {
            return Err(StatsError::NonFinite { which, index });
        }
    }
    // Centre both, so the sums below do not cancel at x ~ 1e8 ops.
    let (mx, my) = (mean(x), mean(y));
    let xc: Vec<f64> = x.iter().map(|v| v - mx).collect();
    let yc: Vec<f64> = y.iter().map(|v| v - my).collect();
    let sxx: f64 = xc.iter().map(|v| v * v).sum();
    if sxx == 0.0 {
        return Err(StatsError::AllTimesEqual { n });
    }
    let b_ols = xc.iter().zip(&yc).map(|(a, b)| a * b).sum::<f64>() / sxx;
    let u: Vec<f64> = xc.iter().zip(&yc).map(|(a, b)| b - b_ols * a).collect();
    let suu: f64 = u.iter().map(|v| v * v).sum();
    let scale = yc.iter().map(|v| v * v).sum::<f64>().max(f64::MIN_POSITIVE);
    if suu <= 1e-24 * scale || suu == 0.0 {
        return Ok(Trend { n, slope: b_ols, se: 0.0, df: (n - 2) as f64, phi: 0.0, model: NoiseModel::Exact });
    }
    let nf = n as f64;
    let (order, phi_hat) = persistence(&u, o.max_order);
    let phi = bias_corrected(phi_hat, nf);
    let phi = (phi + o.margin * ((1.0 - phi * phi).max(0.0) / nf).sqrt()).min(1.0);
    if phi > 1.0 - o.switch * nf.powf(-0.5) {
        return Ok(differences(x, y, phi, o));
    }
    let mut t = prais_winsten(&xc, &yc, phi, true);
    t.df = (n - 2 - order).max(1) as f64;
    if o.local_level {
        if let Some(l) = local_level(x, y) {
            if l.se > t.se {
                return Ok(l);
            }
        }
    }
    Ok(t)
}

/// The local-level fit (step 6): y_k = a + β·x_k + μ_k + ε_k with μ a
/// random walk of variance r·σ² per step and ε independent of variance
/// σ². On the increments, Δy = β·Δx + v with v an MA(1) whose covariance
/// is σ²·Ω_r, Ω_r tridiagonal (2 + r on the diagonal, −1 beside it):
/// differencing removes the intercept and the initial level exactly, r = 0
/// is OLS in levels, r → ∞ the random walk's differences. For each r of a
/// grid (doubling c = n·√r from ½ to 4n, and r = 0) the GLS slope, its
/// variance and the restricted (REML) likelihood, all O(n) by an LDLᵀ
/// recursion; then the slope and its variance averaged over the grid with
/// weights ∝ likelihood × a prior flat in c: the posterior mean and
/// variance, so the variance includes the spread of the slopes across the
/// ratios the data cannot tell apart. A point estimate of r piles up at
/// zero when the walk is slow (Shephard & Harvey 1990; Stock & Watson
/// 1998), which is exactly when it matters; the average does not.
pub fn local_level(x: &[f64], y: &[f64]) -> Option<Trend> {
    let n = x.len();
    if n < MIN_TREND_POINTS {
        return None;
    }
    let e: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let d: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
    let m = e.len();
    let nf = n as f64;
    let mut grid = vec![0.0];
    let mut c = 0.5;
    while c <= 4.0 * nf {
        grid.push((c / nf) * (c / nf));
        c *= 2.0;
    }
    let mut fits = Vec::with_capacity(grid.len());
    for &r in &grid {
        let a = 2.0 + r;
        let (mut dk, mut ge, mut gd) = (a, e[0], d[0]);
        let (mut see, mut sed, mut sdd, mut logdet) = (ge * ge / dk, ge * gd / dk, gd * gd / dk, dk.ln());
        for k in 1..m {
            ge = e[k] + ge / dk;
            gd = d[k] + gd / dk;
            dk = a - 1.0 / dk;
            see += ge * ge / dk;
            sed += ge * gd / dk;
            sdd += gd * gd / dk;
            logdet += dk.ln();
        }
        if see <= 0.0 {
            return None;
        }
        let beta = sed / see;
        let rss = (sdd - sed * sed / see).max(f64::MIN_POSITIVE);
        let dof = (m - 1) as f64;
        let loglik = -0.5 * dof * rss.ln() - 0.5 * logdet - 0.5 * see.ln();
        // The prior: flat in c = n·√r (weight c on a grid doubling in c;
        // r = 0 counts as c = ¼).
        let c = (r.sqrt() * nf).max(0.25);
        fits.push((loglik + c.ln(), beta, rss / dof / see));
    }
    let top = fits.iter().map(|f| f.0).fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = fits.iter().map(|f| (f.0 - top).exp()).collect();
    let sw: f64 = w.iter().sum();
    let beta = fits.iter().zip(&w).map(|(f, w)| w * f.1).sum::<f64>() / sw;
    let var = fits.iter().zip(&w).map(|(f, w)| w * (f.2 + (f.1 - beta).powi(2))).sum::<f64>() / sw;
    (beta.is_finite() && var.is_finite()).then(|| Trend { n, slope: beta, se: var.max(0.0).sqrt(), df: (n as f64 - 3.0).max(1.0), phi: 0.0, model: NoiseModel::LocalLevel })
}

/// φ̂ of step 2: the BIC-chosen order and the sum of that autoregression's
/// coefficients (OLS of u_k on u_{k−1}, …, u_{k−p}, no intercept: u has
/// mean zero). Orders are compared on the same sample, k ≥ max order.
pub fn persistence(u: &[f64], max_order: usize) -> (usize, f64) {
    let n = u.len();
    // Keep at least 4 observations per coefficient.
    let pmax = max_order.min(n / 8).max(1);
    let m = n - pmax;
    let mut best = (f64::INFINITY, 1, 0.0);
    for p in 1..=pmax {
        let Some((coef, rss)) = autoregression(u, p, pmax) else { continue };
        let bic = m as f64 * (rss / m as f64).max(f64::MIN_POSITIVE).ln() + p as f64 * (m as f64).ln();
        if bic < best.0 {
            best = (bic, p, coef.iter().sum());
        }
    }
    if best.0.is_infinite() {
        // Degenerate residuals (a solve failed): the lag-1 estimate.
        let suu: f64 = u.iter().map(|v| v * v).sum();
        return (1, u.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / suu.max(f64::MIN_POSITIVE));
    }
    (best.1, best.2)
}

/// Shaman & Stine's correction for a regression with an intercept and a
/// trend, clamped to [0, 1].
pub fn bias_corrected(phi_hat: f64, n: f64) -> f64 {
    ((n * phi_hat + 2.0) / (n - 4.0)).clamp(0.0, 1.0)
}

/// AR(p) by least squares on k = start..n: coefficients and residual sum
/// of squares; None when the normal equations are singular.
fn autoregression(u: &[f64], p: usize, start: usize) -> Option<(Vec<f64>, f64)> {
    let n = u.len();
    let mut a = vec![vec![0.0; p + 1]; p];
    for k in start..n {
        for i in 0..p {
            let ui = u[k - 1 - i];
            for j in 0..p {
                a[i][j] += ui * u[k - 1 - j];
            }
            a[i][p] += ui * u[k];
        }
    }
    let coef = solve(a)?;
    let rss = (start..n)
        .map(|k| {
            let fit: f64 = (0..p).map(|i| coef[i] * u[k - 1 - i]).sum();
            (u[k] - fit).powi(2)
        })
        .sum();
    Some((coef, rss))
}

/// Gaussian elimination with partial pivoting on an augmented p×(p+1) matrix.
fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let p = a.len();
    for c in 0..p {
        let piv = (c..p).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, piv);
        let pivot = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (v, pv) in row.iter_mut().zip(&pivot).skip(c) {
                    *v -= f * pv;
                }
            }
        }
    }
    let x: Vec<f64> = (0..p).map(|i| a[i][p] / a[i][i]).collect();
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Slope on first differences, through the origin, with the increments'
/// own positive autocorrelation corrected (step 5).
fn differences(x: &[f64], y: &[f64], phi_levels: f64, o: &Options) -> Trend {
    let n = x.len();
    let e: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let d: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
    let see: f64 = e.iter().map(|v| v * v).sum();
    let b0 = e.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>() / see;
    let w: Vec<f64> = e.iter().zip(&d).map(|(a, b)| b - b0 * a).collect();
    let sww: f64 = w.iter().map(|v| v * v).sum();
    let m = w.len() as f64;
    let rho = if o.diff_ar && sww > 0.0 {
        let r = w.windows(2).map(|p| p[0] * p[1]).sum::<f64>() / sww;
        let r = ((m * r + 1.0) / (m - 3.0)).clamp(-1.0, 1.0);
        (r + o.diff_margin * ((1.0 - r * r).max(0.0) / m).sqrt()).clamp(0.0, 0.95)
    } else {
        0.0
    };
    let mut t = prais_winsten(&e, &d, rho, false);
    t.n = n;
    t.df = (n as f64 - 3.0).max(1.0);
    t.phi = if o.diff_ar { rho } else { phi_levels };
    t.model = NoiseModel::Integrated;
    t
}

/// Prais–Winsten GLS with AR(1) coefficient `phi` of y on x, with an
/// intercept (on centred levels) or through the origin (on increments).
fn prais_winsten(xc: &[f64], yc: &[f64], phi: f64, intercept: bool) -> Trend {
    let n = xc.len();
    let w = (1.0 - phi * phi).sqrt();
    // Transformed design: columns z0 (the intercept's, or none), z1 (x's).
    let i0 = if intercept { 1.0 } else { 0.0 };
    let mut rows = Vec::with_capacity(n);
    rows.push((w * i0, w * xc[0], w * yc[0]));
    for k in 1..n {
        rows.push(((1.0 - phi) * i0, xc[k] - phi * xc[k - 1], yc[k] - phi * yc[k - 1]));
    }
    let (mut a, mut b, mut c, mut p, mut q) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(z0, z1, v) in &rows {
        a += z0 * z0;
        b += z0 * z1;
        c += z1 * z1;
        p += z0 * v;
        q += z1 * v;
    }
    let (icept, slope, var_unit, k) = if intercept {
        let det = a * c - b * b;
        ((c * p - b * q) / det, (a * q - b * p) / det, a / det, 2)
    } else {
        (0.0, q / c, 1.0 / c, 1)
    };
    let rss: f64 = rows.iter().map(|&(z0, z1, v)| (v - icept * z0 - slope * z1).powi(2)).sum();
    let s2 = rss / (n - k) as f64;
    let var = s2 * var_unit;
    Trend { n, slope, se: var.max(0.0).sqrt(), df: (n - 3).max(1) as f64, phi, model: NoiseModel::Stationary }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The difference of two independent trends (module − baseline) with the
/// Welch–Satterthwaite degrees of freedom.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub delta: f64,
    pub se: f64,
    pub df: f64,
}

pub fn difference(module: &Trend, baseline: &Trend) -> Difference {
    let (vm, vb) = (module.se * module.se, baseline.se * baseline.se);
    let var = vm + vb;
    let df = if var == 0.0 {
        f64::INFINITY
    } else {
        let den = term(vm, module.df) + term(vb, baseline.df);
        if den == 0.0 {
            f64::INFINITY
        } else {
            var * var / den
        }
    };
    Difference { delta: module.slope - baseline.slope, se: var.sqrt(), df }
}

fn term(v: f64, df: f64) -> f64 {
    if v == 0.0 || !df.is_finite() {
        0.0
    } else {
        v * v / df
    }
}

impl Difference {
    /// One-sided p-value of "the difference is at most `floor`".
    pub fn p_above(&self, floor: f64) -> f64 {
        if self.se == 0.0 {
            return if self.delta > floor { 0.0 } else { 1.0 };
        }
        super::student::t_sf((self.delta - floor) / self.se, self.df)
    }

    /// The one-sided `1 − a` bounds `(lower, upper)`.
    pub fn bounds(&self, a: f64) -> (f64, f64) {
        if self.se == 0.0 {
            return (self.delta, self.delta);
        }
        let t = super::student::t_quantile(1.0 - a, self.df);
        (self.delta - t * self.se, self.delta + t * self.se)
    }

    /// The smallest leak above `floor` that a test at level `a` would find
    /// with probability `power` at this standard error:
    /// `floor + (t_{1−a} + t_{power})·se`.
    pub fn detectable(&self, floor: f64, a: f64, power: f64) -> f64 {
        if self.se == 0.0 {
            return floor;
        }
        let df = self.df;
        floor + (super::student::t_quantile(1.0 - a, df) + super::student::t_quantile(power, df)) * self.se
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_line_has_no_noise_and_its_own_slope() {
        let x: Vec<f64> = (0..10).map(|i| i as f64 * 1000.0 + 5e7).collect();
        let y: Vec<f64> = x.iter().map(|v| 0.01 * v + 3.0).collect();
        let t = trend(&x, &y).unwrap();
        assert_eq!(t.model, NoiseModel::Exact);
        assert!((t.slope - 0.01).abs() < 1e-12, "{}", t.slope);
        assert_eq!(t.se, 0.0);
    }

    #[test]
    fn a_step_series_is_seen_as_integrated_noise_not_a_trend() {
        // Slab-sized jumps: 0 for ten samples, then 32 for the rest. The
        // residuals of a straight line through it are a sawtooth with
        // strong autocorrelation, so the fit must fall back to differences,
        // whose interval is wide enough to include zero.
        let x: Vec<f64> = (0..30).map(|i| i as f64).collect();
        let y: Vec<f64> = (0..30).map(|i| if i < 10 { 0.0 } else { 32.0 }).collect();
        let t = trend(&x, &y).unwrap();
        assert_eq!(t.model, NoiseModel::Integrated, "{t:?}");
        let d = difference(&t, &Trend::zero(30));
        assert!(d.p_above(0.0) > 0.05, "{d:?} p {}", d.p_above(0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(trend(&[1.0; 5], &[1.0; 5]), Err(StatsError::TooFewPoints { .. })));
        assert!(matches!(trend(&[1.0; 8], &[1.0; 8]), Err(StatsError::AllTimesEqual { .. })));
        assert!(matches!(trend(&[1.0, 2.0], &[1.0]), Err(StatsError::LengthMismatch { .. })));
        let mut y = vec![0.0; 8];
        y[3] = f64::NAN;
        assert!(matches!(trend(&(0..8).map(f64::from).collect::<Vec<_>>(), &y), Err(StatsError::NonFinite { which: "y", index: 3 })));
    }

    /// Student's t, not the normal: P(T₅ > 3.365) = 0.01 (t table), where
    /// the normal would give 0.00038; the 99 % bound at df 5 is 3.365.
    #[test]
    fn p_values_and_bounds_use_students_t() {
        let d = Difference { delta: 3.365, se: 1.0, df: 5.0 };
        assert!((d.p_above(0.0) - 0.01).abs() < 2e-4, "{}", d.p_above(0.0));
        assert!((Difference { delta: 0.0, se: 1.0, df: 5.0 }.p_above(3.365) - 0.99).abs() < 2e-4);
        let (lo, hi) = Difference { delta: 0.0, se: 1.0, df: 5.0 }.bounds(0.01);
        assert!((hi - 3.365).abs() < 2e-3 && (lo + 3.365).abs() < 2e-3, "{lo} {hi}");
    }

    #[test]
    fn welch_difference_and_its_bounds() {
        let m = Trend { n: 30, slope: 1.0, se: 0.3, df: 27.0, phi: 0.0, model: NoiseModel::Stationary };
        let b = Trend { n: 30, slope: 0.2, se: 0.4, df: 27.0, phi: 0.0, model: NoiseModel::Stationary };
        let d = difference(&m, &b);
        assert!((d.delta - 0.8).abs() < 1e-12 && (d.se - 0.5).abs() < 1e-12);
        // Welch: 0.25² / (0.09²/27 + 0.16²/27) = 49.6.
        assert!((d.df - 0.0625 / ((0.0081 + 0.0256) / 27.0)).abs() < 1e-9, "{}", d.df);
        let (lo, hi) = d.bounds(0.05);
        assert!(lo < 0.8 && hi > 0.8 && ((0.8 - lo) - (hi - 0.8)).abs() < 1e-12);
        // A cache absent from the baseline is an exact zero there.
        let only = difference(&m, &Trend::zero(30));
        assert_eq!((only.se, only.df), (0.3, 27.0));
        // The detectable leak is above the floor by (t_α + t_power)·se.
        assert!(d.detectable(0.1, 0.01, 0.8) > 0.1 + 2.0 * 0.5);
    }
}
