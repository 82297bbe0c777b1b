//! Monte Carlo checks of the verdict's error rates with known truth: two
//! independent arms of noise (independent, AR(1) φ = 0.5 and 0.8, a random
//! walk), 2,000 simulated A/A pairs per kind, against the nominal α. The
//! same harness shows the Theil–Sen/Sen method of schema 1 failing.
//!
//! Bound: a rate r̂ from N runs has Monte Carlo standard error
//! √(α(1−α)/N); a method holds α when r̂ ≤ α + 2.33·MCSE (one-sided 99 %).

use super::trend::{difference, trend, Trend};

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

/// The kinds of noise the verdict must hold its α under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    Independent,
    Ar1(f64),
    RandomWalk,
}

impl Noise {
    /// `n` values of unit-scale noise (stationary AR starts in its
    /// stationary distribution).
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
            (Noise::Independent, 0.005, 0.65),
            (Noise::Independent, 0.02, 0.95),
            (Noise::Ar1(0.5), 0.02, 0.95),
            (Noise::Ar1(0.8), 0.02, 0.95),
            (Noise::RandomWalk, 0.02, 0.90),
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
}
