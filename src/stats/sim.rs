//! Monte Carlo checks of the verdict's error rates with known truth: two
//! independent arms of noise (independent, AR(1) φ = 0.5 and 0.8, a random
//! walk), 2,000 simulated A/A pairs per kind, against the nominal α. The
//! same harness shows the Theil–Sen/Sen method of schema 1 failing.
//!
//! Bound: a rate r̂ from N runs has Monte Carlo standard error
//! √(α(1−α)/N); a method holds α when r̂ ≤ α + 2.33·MCSE (one-sided 99 %).

use super::trend::{difference, trend, trend_with, Options, Trend};

/// SplitMix64: small, fast and good enough for simulation; seeded per run so
/// every test is deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        ((self.u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal, Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The kinds of noise the verdict must hold its α under: the AR(1)/random
/// walk family the method was first built on, and the families of issue 24
/// outside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    Independent,
    Ar1(f64),
    RandomWalk,
    /// A random walk of `q` per step under unit measurement noise (the
    /// local-level model).
    LocalLevel(f64),
    /// A random walk whose steps are AR(1) with this coefficient.
    RandomWalkAr1(f64),
    /// Stationary AR(2) with these two coefficients.
    Ar2(f64, f64),
    /// Independent noise with one level shift of this many σ (random sign,
    /// at a uniform position between 10 % and 90 % of the series).
    Shift(f64),
}

impl Noise {
    /// The families of issue 24's table, plus the original four.
    pub const FAMILIES: [Noise; 8] = [
        Noise::Independent,
        Noise::Ar1(0.5),
        Noise::Ar1(0.8),
        Noise::RandomWalk,
        Noise::LocalLevel(0.2),
        Noise::RandomWalkAr1(0.5),
        Noise::Ar2(0.3, 0.6),
        Noise::Shift(5.0),
    ];

    /// A short name for tables.
    pub fn name(self) -> String {
        match self {
            Noise::Independent => "independent".into(),
            Noise::Ar1(p) => format!("AR(1) {p}"),
            Noise::RandomWalk => "random walk".into(),
            Noise::LocalLevel(q) => format!("local level (RW {q}σ + noise)"),
            Noise::RandomWalkAr1(p) => format!("RW, AR(1) {p} steps"),
            Noise::Ar2(a, b) => format!("AR(2) ({a}, {b})"),
            Noise::Shift(k) => format!("one {k}σ level shift"),
        }
    }

    /// `n` values of unit-scale noise (stationary AR starts in its
    /// stationary distribution, AR(2) after a burn-in).
    pub fn series(self, n: usize, rng: &mut Rng) -> Vec<f64> {
        match self {
            Noise::Independent => (0..n).map(|_| rng.normal()).collect(),
            Noise::Ar1(phi) => {
                let mut v = Vec::with_capacity(n);
                let mut e = rng.normal() / (1.0 - phi * phi).sqrt();
                for _ in 0..n {
                    v.push(e);
                    e = phi * e + rng.normal();
                }
                v
            }
            Noise::RandomWalk => {
                let mut e = 0.0;
                (0..n)
                    .map(|_| {
                        e += rng.normal();
                        e
                    })
                    .collect()
            }
            Noise::LocalLevel(q) => {
                let mut level = 0.0;
                (0..n)
                    .map(|_| {
                        level += q * rng.normal();
                        level + rng.normal()
                    })
                    .collect()
            }
            Noise::RandomWalkAr1(phi) => {
                let steps = Noise::Ar1(phi).series(n, rng);
                let mut e = 0.0;
                steps
                    .into_iter()
                    .map(|s| {
                        e += s;
                        e
                    })
                    .collect()
            }
            Noise::Ar2(a, b) => {
                let (mut e1, mut e2) = (0.0, 0.0);
                let mut v = Vec::with_capacity(n);
                for k in 0..n + 200 {
                    let e = a * e1 + b * e2 + rng.normal();
                    (e2, e1) = (e1, e);
                    if k >= 200 {
                        v.push(e);
                    }
                }
                v
            }
            Noise::Shift(k) => {
                let at = ((0.1 + 0.8 * rng.uniform()) * n as f64) as usize;
                let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                (0..n).map(|i| rng.normal() + if i >= at { sign * k } else { 0.0 }).collect()
            }
        }
    }
}

/// One simulated arm: cumulative ops at ~1,000 ops/s with ±10 % jitter per
/// interval, and objects = `slope`·ops + `scale`·noise + a level.
pub fn arm(n: usize, slope: f64, scale: f64, noise: Noise, rng: &mut Rng) -> (Vec<f64>, Vec<f64>) {
    let mut ops = Vec::with_capacity(n);
    let mut total = 0.0;
    for _ in 0..n {
        ops.push(total);
        total += 1000.0 * (0.9 + 0.2 * rng.uniform());
    }
    let e = noise.series(n, rng);
    let y = ops.iter().zip(e).map(|(o, e)| 5000.0 + slope * o + scale * e).collect();
    (ops, y)
}

/// The new method: is module − baseline above `floor` at one-sided `alpha`?
pub fn new_method_leak(m: &(Vec<f64>, Vec<f64>), b: &(Vec<f64>, Vec<f64>), floor: f64, alpha: f64) -> Option<bool> {
    let tm: Trend = trend(&m.0, &m.1).ok()?;
    let tb: Trend = trend(&b.0, &b.1).ok()?;
    Some(difference(&tm, &tb).p_above(floor) <= alpha)
}

/// Schema 1's method: Theil–Sen with Sen's interval per arm, compared with
/// a normal approximation.
pub fn old_method_leak(m: &(Vec<f64>, Vec<f64>), b: &(Vec<f64>, Vec<f64>), floor: f64, alpha: f64) -> Option<bool> {
    let fa = (2.0 * alpha).min(0.5);
    let fm = super::fit(&m.0, &m.1, fa).ok()?;
    let fb = super::fit(&b.0, &b.1, fa).ok()?;
    Some(super::compare(&fm, &fb, floor, alpha).verdict == super::Verdict::Leak)
}

/// A simulated arm: (cumulative ops, objects).
pub type SimArm = (Vec<f64>, Vec<f64>);

/// A verdict on two arms at (floor, α): `Some(true)` for LEAK.
pub type Method = fn(&SimArm, &SimArm, f64, f64) -> Option<bool>;

/// False-LEAK rate over `runs` simulated A/A pairs of `n` samples a side.
pub fn aa_rate(method: Method, noise: Noise, n: usize, runs: u64, alpha: f64) -> f64 {
    let mut hits = 0u64;
    for seed in 0..runs {
        let mut rng = Rng::new(seed * 7919 + n as u64);
        let m = arm(n, 0.0, 20.0, noise, &mut rng);
        let b = arm(n, 0.0, 20.0, noise, &mut rng);
        if method(&m, &b, 0.0, alpha) == Some(true) {
            hits += 1;
        }
    }
    hits as f64 / runs as f64
}

/// False LEAKs of one series' test with the fit's knobs `o`, over `runs`
/// A/A pairs of `n` samples a side (noise scale 20 objects, floor 0).
pub fn aa_hits_with(o: &Options, noise: Noise, n: usize, runs: u64, alpha: f64) -> u64 {
    let mut hits = 0u64;
    for seed in 0..runs {
        let mut rng = Rng::new(seed * 7919 + n as u64);
        let m = arm(n, 0.0, 20.0, noise, &mut rng);
        let b = arm(n, 0.0, 20.0, noise, &mut rng);
        let (Ok(tm), Ok(tb)) = (trend_with(&m.0, &m.1, o), trend_with(&b.0, &b.1, o)) else { continue };
        if difference(&tm, &tb).p_above(0.0) <= alpha {
            hits += 1;
        }
    }
    hits
}

/// A rate and its Monte Carlo standard error, in percent: `1.20 ± 0.24 %`.
pub fn rate_se(hits: u64, runs: u64) -> String {
    let r = hits as f64 / runs as f64;
    format!("{:.2} ± {:.2} %", 100.0 * r, 100.0 * (r.max(0.5 / runs as f64) * (1.0 - r) / runs as f64).sqrt())
}

/// The one-sided 99 % Monte Carlo bound on a rate whose truth is `alpha`.
pub fn mc_bound(alpha: f64, runs: u64) -> f64 {
    alpha + 2.33 * (alpha * (1.0 - alpha) / runs as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNS: u64 = 2000;
    const ALPHA: f64 = 0.01;
    const KINDS: [Noise; 4] = [Noise::Independent, Noise::Ar1(0.5), Noise::Ar1(0.8), Noise::RandomWalk];

    #[test]
    fn the_false_leak_rate_holds_alpha_under_every_kind_of_noise() {
        for n in [12, 31, 61, 121] {
            for noise in KINDS {
                let r = aa_rate(new_method_leak, noise, n, RUNS, ALPHA);
                eprintln!("new method, n {n}, {noise:?}: false LEAK {:.2} % (bound {:.2} %)", r * 100.0, mc_bound(ALPHA, RUNS) * 100.0);
                assert!(r <= mc_bound(ALPHA, RUNS), "{noise:?} n {n}: false-LEAK rate {r} above α {ALPHA} within MC error");
            }
        }
    }

    /// The harness can fail: schema 1's method breaks α under autocorrelation
    /// (the issue measured 6.8 % at φ 0.5, 18 % at 0.8, 35 % for a random walk).
    #[test]
    fn the_old_theil_sen_method_fails_the_same_check() {
        for noise in [Noise::Ar1(0.5), Noise::Ar1(0.8), Noise::RandomWalk] {
            let r = aa_rate(old_method_leak, noise, 31, RUNS, ALPHA);
            eprintln!("old method, n 31, {noise:?}: false LEAK {:.2} %", r * 100.0);
            assert!(r > mc_bound(ALPHA, RUNS), "{noise:?}: {r}");
        }
    }

    /// Power at the effects docs/method.md states, for 31 samples a side
    /// of noise with scale 20 objects at ~1,000 ops per interval: the
    /// share of 2,000 simulated leaks found must be at least the stated
    /// power less its one-sided 99 % Monte Carlo error.
    #[test]
    fn power_at_the_stated_effects_is_what_the_docs_claim() {
        // (noise, leak in objects/op, stated power)
        let table = [
            // 63.6 % before the local-level guard: the price of holding α
            // under a local level (docs/method.md).
            (Noise::Independent, 0.005, 0.30),
            (Noise::Independent, 0.02, 0.95),
            (Noise::Ar1(0.5), 0.02, 0.95),
            (Noise::Ar1(0.8), 0.02, 0.93),
            (Noise::RandomWalk, 0.02, 0.80),
            (Noise::RandomWalk, 0.03, 0.95),
        ];
        for (noise, effect, stated) in table {
            let mut found = 0u64;
            for seed in 0..RUNS {
                let mut rng = Rng::new(9_000_011 + seed);
                let m = arm(31, effect, 20.0, noise, &mut rng);
                let b = arm(31, 0.0, 20.0, noise, &mut rng);
                if new_method_leak(&m, &b, 0.0, ALPHA) == Some(true) {
                    found += 1;
                }
            }
            let power = found as f64 / RUNS as f64;
            let mc = 2.33 * (stated * (1.0 - stated) / RUNS as f64).sqrt();
            eprintln!("{noise:?}: leak {effect} objects/op → found in {:.1} % (stated {:.0} %)", power * 100.0, stated * 100.0);
            assert!(power >= stated - mc, "{noise:?}: power {power} at {effect}, stated {stated}");
        }
    }

    /// The campaign's first table (`scripts/stats-campaign.sh`): one
    /// series' test, family × n, the AR(1)-only fit before issue 24 and
    /// the method now.
    #[test]
    #[ignore = "a campaign: run in release by scripts/stats-campaign.sh"]
    fn campaign_one_series_false_leak() {
        let runs: u64 = std::env::var("KERNLAB_CAMPAIGN_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
        println!("| noise | n | false LEAK, AR(1) fit (before) | false LEAK, now |");
        println!("|---|---|---|---|");
        for noise in Noise::FAMILIES {
            for n in [31, 61, 121, 301] {
                let before = aa_hits_with(&Options::ar1_only(), noise, n, runs, ALPHA);
                let now = aa_hits_with(&Options::default(), noise, n, runs, ALPHA);
                println!("| {} | {n} | {} | {} |", noise.name(), rate_se(before, runs), rate_se(now, runs));
            }
        }
    }
}

/// Each step of the fit, shown to matter with known truth: these are the
/// tests `scripts/mutate-stats.sh` expects to fail when a step is broken.
#[cfg(test)]
mod steps {
    use super::*;
    use crate::stats::trend::{bias_corrected, persistence};

    /// The mean over `runs` series of `noise` (n samples, detrended by OLS
    /// on time) of the persistence estimate, bias-corrected, and its MC SE.
    fn mean_persistence(noise: Noise, n: usize, runs: u64) -> (f64, f64) {
        let mut v = Vec::new();
        for seed in 0..runs {
            let mut rng = Rng::new(4242 + seed);
            let y = noise.series(n, &mut rng);
            let t: Vec<f64> = (0..n).map(|k| k as f64).collect();
            let (mt, my) = ((n - 1) as f64 / 2.0, y.iter().sum::<f64>() / n as f64);
            let sxx: f64 = t.iter().map(|x| (x - mt).powi(2)).sum();
            let b = t.iter().zip(&y).map(|(x, y)| (x - mt) * (y - my)).sum::<f64>() / sxx;
            let u: Vec<f64> = t.iter().zip(&y).map(|(x, y)| y - my - b * (x - mt)).collect();
            v.push(bias_corrected(persistence(&u, MAX_ORDER).1, n as f64));
        }
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
        (m, sd / (v.len() as f64).sqrt())
    }

    use crate::stats::trend::MAX_ORDER;

    /// Shaman & Stine's correction: AR(1) φ = 0.5 at n = 41, the corrected
    /// estimate's mean is within 0.03 of 0.5 (uncorrected it is about
    /// 0.5 − (2 + 4·0.5)/41 = 0.40).
    #[test]
    fn the_bias_corrected_persistence_of_an_ar1_is_unbiased() {
        let (m, se) = mean_persistence(Noise::Ar1(0.5), 41, 2000);
        eprintln!("AR(1) 0.5, n 41: mean corrected persistence {m:.4} ± {se:.4}");
        assert!((m - 0.5).abs() < 0.03 + 3.0 * se, "{m} ± {se}");
    }

    /// Perron & Yabu's persistence is the sum of the AR coefficients: for
    /// AR(2) (0.3, 0.6) that is 0.9, where the lag-1 autocorrelation alone
    /// is 0.3/(1 − 0.6) = 0.75. At n = 121 the mean estimate is within
    /// 0.06 of 0.9.
    #[test]
    fn the_persistence_of_an_ar2_is_the_sum_of_its_coefficients() {
        let (m, se) = mean_persistence(Noise::Ar2(0.3, 0.6), 121, 1000);
        eprintln!("AR(2) (0.3, 0.6), n 121: mean corrected persistence {m:.4} ± {se:.4}");
        assert!((m - 0.9).abs() < 0.06 + 3.0 * se, "{m} ± {se}");
    }

    /// One series' test at α 1 %, 1,000 A/A pairs, under the families the
    /// AR(1)-only fit broke (issue 24): each within α + 3 MC SE.
    fn holds(noise: Noise, n: usize) {
        let runs = 1000;
        let hits = aa_hits_with(&Options::default(), noise, n, runs, 0.01);
        let bound = 0.01 + 3.0 * (0.01f64 * 0.99 / runs as f64).sqrt();
        eprintln!("{}, n {n}: false LEAK {}", noise.name(), rate_se(hits, runs));
        assert!(hits as f64 / runs as f64 <= bound, "{}, n {n}: {}", noise.name(), rate_se(hits, runs));
    }

    /// One 5σ level shift at n = 301 (29 % false LEAK with the AR(1)-only
    /// fit).
    #[test]
    fn a_level_shift_is_not_a_trend() {
        holds(Noise::Shift(5.0), 301);
    }

    /// The increments' own autocorrelation: a random walk with AR(1) 0.5
    /// steps (9.6 % at n = 61 when the increments are taken as independent).
    #[test]
    fn a_random_walk_with_autocorrelated_steps_holds_alpha() {
        holds(Noise::RandomWalkAr1(0.5), 61);
    }

    /// The local-level guard: a random walk of 0.2σ per step under
    /// measurement noise σ at n = 121 (10 % false LEAK for one series
    /// without it, 29 % with the AR(1)-only fit).
    #[test]
    fn a_local_level_holds_alpha() {
        holds(Noise::LocalLevel(0.2), 121);
    }

    /// The AR order: AR(2) (0.3, 0.6) at n = 301 (6.5 % with AR(1) only).
    #[test]
    fn an_ar2_holds_alpha() {
        holds(Noise::Ar2(0.3, 0.6), 301);
    }

    /// One 5σ level shift at n = 121 is fitted on differences in at least
    /// 95 % of 1,000 series by the autoregression's persistence and the
    /// unit-root switch alone.
    #[test]
    fn a_level_shift_is_fitted_on_differences() {
        use crate::stats::trend::NoiseModel;
        let runs = 1000;
        let count = |o: &Options| {
            (0..runs)
                .filter(|seed| {
                    let mut rng = Rng::new(60_000 + seed);
                    let (x, y) = arm(121, 0.0, 20.0, Noise::Shift(5.0), &mut rng);
                    trend_with(&x, &y, o).unwrap().model == NoiseModel::Integrated
                })
                .count()
        };
        let now = count(&Options::default());
        eprintln!("5σ shift, n 121: differenced {now} of {runs}");
        assert!(now as f64 >= 0.95 * runs as f64, "{now} of {runs}");
    }
}
