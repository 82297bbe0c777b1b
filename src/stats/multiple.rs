//! Error rates over many tests: Holm's step-down over the slab caches of one
//! look, and alpha spent over the looks of a run that may stop early.
//!
//! Holm (1979) controls the family-wise error at `a` under any dependence
//! between the tests, which matters here: a leaked dentry moves `dentry`,
//! `shmem_inode_cache` and `lsm_inode_cache` together. It needs no
//! resampling, which a max-statistic (Westfall–Young) would, and a block
//! bootstrap of 30 autocorrelated samples is not to be trusted.
//!
//! Looks: a run is analysed at planned sample counts (geometric, ×1.4) and
//! look k may spend `α·(f_k^ρ − f_{k−1}^ρ)`, f the fraction of the planned
//! samples, ρ = 3 (the Lan–DeMets power family; ρ = 3 is close to
//! O'Brien–Fleming: little is spent early, most at the end). The spent
//! amounts add up to α, and by the union bound the chance of a false
//! verdict at any look is at most α whatever the correlation between looks.
//! This is more conservative than exact group-sequential boundaries, and it
//! needs no assumption about how information grows with samples.
//!
//! The two errors are spent apart, as in group-sequential designs with an
//! upper and a lower boundary of their own (Pampallona & Tsiatis 1994;
//! Jennison & Turnbull 2000, ch. 4): a false LEAK (LEAK when nothing
//! leaks) spends α with ρ = 3, a false NO-LEAK (NO-LEAK when the leak is at
//! its floor) spends α with ρ = 1 (linear in the looks' sample counts, close
//! to Pocock's). Each side's amounts add up to α, so each error stays at
//! most α by the union bound. A gate stops at its first look that rules the
//! leak out, so the NO-LEAK side is the one that must be strong early; a
//! LEAK stops the run for good, so its side keeps most of α for the end.

/// The spending exponent ρ of the LEAK side.
pub const SPENDING_RHO: f64 = 3.0;

/// The spending exponent ρ of the NO-LEAK side.
pub const NO_LEAK_RHO: f64 = 1.0;

/// Which hypotheses Holm's procedure rejects at family-wise level `a`.
pub fn holm(p: &[f64], a: f64) -> Vec<bool> {
    let adj = holm_adjusted(p);
    adj.iter().map(|q| *q <= a).collect()
}

/// Holm-adjusted p-values: `max_{j≤i} min(1, (m − j + 1)·p_(j))` in sorted order.
pub fn holm_adjusted(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut out = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let q = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(q);
        out[i] = running;
    }
    out
}

/// The planned looks for a run of `n_max` samples per arm: the first at
/// `first` samples, then ×`LOOK_RATIO` (rounded up), and the last at `n_max`. No
/// look is planned within ×`LAST_GAP` of the last: with ρ = 3 the last
/// look then spends at least 1 − 1/LAST_GAP³ = 54 % of α, where a look
/// just before it (27 of 31 samples) left it a third.
pub fn looks(first: usize, n_max: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut n = first.max(1);
    while (n as f64) * LAST_GAP <= n_max as f64 {
        v.push(n);
        n = ((n as f64) * LOOK_RATIO).ceil() as usize;
    }
    v.push(n_max.max(first));
    v
}

/// The ratio between one planned look and the next. ×1.4 rather than ×1.5
/// puts a look at 48 samples, where ×1.5 went from 41 to 62: a gate whose
/// clean module is decided a little after 41 waits 14 s less. The LEAK
/// side spends almost nothing early (ρ = 3), the NO-LEAK side spends in
/// proportion to the samples (ρ = 1), so one more look costs either side
/// next to nothing.
pub const LOOK_RATIO: f64 = 1.4;

/// The smallest ratio between the last look and the one before it.
pub const LAST_GAP: f64 = 1.3;

/// The alpha look `k` (0-based) of `looks` may spend against a false LEAK,
/// out of `alpha`. The last look spends what is left.
pub fn spend(alpha: f64, looks: &[usize], k: usize) -> f64 {
    spend_with(alpha, looks, k, SPENDING_RHO)
}

/// The alpha look `k` (0-based) of `looks` may spend against a false
/// NO-LEAK, out of `alpha`. The last look spends what is left.
pub fn spend_no_leak(alpha: f64, looks: &[usize], k: usize) -> f64 {
    spend_with(alpha, looks, k, NO_LEAK_RHO)
}

/// The Lan–DeMets power family with exponent `rho`.
fn spend_with(alpha: f64, looks: &[usize], k: usize, rho: f64) -> f64 {
    let n_max = *looks.last().unwrap_or(&1) as f64;
    let f = |i: usize| (looks[i] as f64 / n_max).min(1.0).powf(rho);
    let before = if k == 0 { 0.0 } else { f(k - 1) };
    let now = if k + 1 >= looks.len() { 1.0 } else { f(k) };
    alpha * (now - before).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_matches_a_worked_example() {
        // p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005·4 = 0.02,
        // 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → running max 0.06.
        let adj = holm_adjusted(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.01, 0.04, 0.03, 0.005], 0.05), vec![true, false, false, true]);
        assert_eq!(holm(&[], 0.05), Vec::<bool>::new());
    }

    #[test]
    fn looks_grow_geometrically_and_spending_adds_up_to_alpha() {
        assert_eq!(looks(8, 31), vec![8, 12, 17, 31]);
        assert_eq!(looks(8, 10), vec![10]);
        assert_eq!(looks(8, 8), vec![8]);
        assert_eq!(looks(8, 5), vec![8]);
        let l = looks(8, 121);
        let total: f64 = (0..l.len()).map(|k| spend(0.01, &l, k)).sum();
        assert!((total - 0.01).abs() < 1e-15, "{total}");
        // Most of it is kept for the end.
        assert!(spend(0.01, &l, l.len() - 1) > 0.0054);
        assert!(spend(0.01, &l, 0) < 0.0001);
        let l = looks(8, 31);
        assert!(spend(0.01, &l, l.len() - 1) > 0.0054, "the last look is not starved");
    }

    #[test]
    fn the_no_leak_side_spends_linearly_and_adds_up_to_alpha() {
        let l = looks(8, 298);
        assert_eq!(l, vec![8, 12, 17, 24, 34, 48, 68, 96, 135, 189, 298]);
        let total: f64 = (0..l.len()).map(|k| spend_no_leak(0.01, &l, k)).sum();
        assert!((total - 0.01).abs() < 1e-15, "{total}");
        // Look 6 (48 samples) may spend 14/298 of α against a false NO-LEAK,
        // and 17 times what it may against a false LEAK.
        assert!((spend_no_leak(0.01, &l, 5) - 0.01 * 14.0 / 298.0).abs() < 1e-15);
        assert!(spend_no_leak(0.01, &l, 5) > 17.0 * spend(0.01, &l, 5));
        // Every look spends something, the first too.
        assert!((0..l.len()).all(|k| spend_no_leak(0.01, &l, k) > 0.0));
    }
}
