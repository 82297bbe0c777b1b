//! The verdict on real A/A noise (issue 24, item 2): two corpora of 30 arm
//! pairs of 3 min each, made by `scripts/aa-corpus.sh`: `tests/data/aa/`,
//! recorded with the guest sampler over its virtio-serial port (the
//! sampler kernlab uses), and `tests/data/aa-ssh/`, recorded earlier with
//! the sampler's records over SSH (noisier: the channel's own skbuffs).
//! Each is used as recorded and resampled by the block bootstrap of
//! `src/stats/aa.rs`. Both arms of every pair ran the same thing, so every
//! LEAK here is false.

use std::path::Path;

use kernlab::analysis::leak::{self, ArmSeries, Floors, Policy};
use kernlab::lab::{DEFAULT_FLOOR_BYTES_PER_OP, DEFAULT_FLOOR_OBJECTS_PER_OP};
use kernlab::stats::aa::{self, AaArm, AaPair};
use kernlab::stats::sim::Rng;
use kernlab::stats::Verdict;

/// The corpora: (name, pairs), the port's first.
const CORPORA: [&str; 2] = ["tests/data/aa", "tests/data/aa-ssh"];

fn corpus_at(rel: &str) -> Vec<AaPair> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    aa::load_corpus(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// An arm as the analysis reads it: `meminfo:KEY` rows are that meminfo
/// line in bytes, every other row a cache's active objects.
fn series(arm: &AaArm) -> ArmSeries {
    let mut s = ArmSeries::default();
    for (name, rows) in arm {
        match name.strip_prefix("meminfo:") {
            Some(key) => {
                s.meminfo.insert(key.to_string(), rows.iter().map(|&(t, _, v)| (t, v)).collect());
            }
            None => {
                s.caches.insert(name.clone(), rows.iter().map(|&(t, _, v)| (t, v, 64.0)).collect());
            }
        }
        if s.ops.is_empty() {
            s.ops = rows.iter().map(|&(t, ops, _)| (t, ops)).collect();
        }
    }
    s
}

/// The metrics the corpus is decided with: the default (`objects`, every
/// cache's objects × their size; the corpus has no object sizes, so 64
/// bytes each, which α at floor 0 does not depend on) and `slab`.
const METRICS: [&str; 2] = ["objects", "slab"];

/// The shipped clean lab's policy (1 s samples, 5 s warm-up, α 1 %) for
/// `n` samples per arm, with `metric`.
fn policy(n: usize, floors: Floors, stop_early: bool, metric: &str) -> Policy {
    Policy {
        metric: metric.parse().unwrap(),
        floors,
        alpha: 0.01,
        planned_samples: n,
        warmup_samples: 5,
        stop_early,
        interval_s: 1.0,
    }
}

fn default_floors() -> Floors {
    Floors { objects_per_op: DEFAULT_FLOOR_OBJECTS_PER_OP, bytes_per_op: DEFAULT_FLOOR_BYTES_PER_OP, bytes_per_hour: 16.0 * 1024.0 * 1024.0 }
}

fn samples(arm: &AaArm) -> usize {
    arm.values().map(Vec::len).min().unwrap_or(0)
}

#[test]
fn the_corpus_holds_at_least_30_real_pairs_of_3_minutes() {
    for rel in CORPORA {
        let c = corpus_at(rel);
        assert!(c.len() >= 30, "{rel} holds {} pairs; scripts/aa-corpus.sh records them", c.len());
        check_pairs(&c);
    }
}

fn check_pairs(c: &[AaPair]) {
    for p in c {
        for (arm, a) in p.arms.iter().enumerate() {
            let n = samples(a);
            assert!(n >= 150, "{} arm {arm}: {n} samples", p.name);
            assert!(a.contains_key("meminfo:Slab"), "{} arm {arm}: no Slab", p.name);
            // Real churn: the operation count rises, ~1,000/s.
            let ops = &a["meminfo:Slab"];
            let rate = (ops[n - 1].1 - ops[0].1) / (ops[n - 1].0 - ops[0].0);
            assert!(rate > 100.0, "{} arm {arm}: {rate:.0} ops/s", p.name);
        }
    }
}

/// Every pair as recorded, at the default floors and with the looks a gate
/// takes: no LEAK. (The same runs' verdicts at recording time are in
/// docs/method.md; this re-decides them with today's method.)
#[test]
fn every_recorded_pair_is_no_false_leak_at_the_default_floors() {
    let c: Vec<AaPair> = CORPORA.iter().flat_map(|rel| corpus_at(rel)).collect();
    let mut verdicts = std::collections::BTreeMap::<&str, usize>::new();
    for p in &c {
        let (a, b) = (series(&p.arms[0]), series(&p.arms[1]));
        let n = samples(&p.arms[0]).min(samples(&p.arms[1]));
        for (stop_early, metric) in [true, false].into_iter().flat_map(|s| METRICS.map(|m| (s, m))) {
            let an = leak::analyze(&a, &b, &policy(n, default_floors(), stop_early, metric), true);
            assert_ne!(an.verdict, Verdict::Leak, "{} (stop_early {stop_early}, {metric}): {}", p.name, an.reason);
            *verdicts.entry(an.verdict.word()).or_default() += 1;
            if !stop_early {
                eprintln!("{} ({metric}): {} {}", p.name, an.verdict.word(), an.reason);
            }
        }
    }
    eprintln!("verdicts over {} pairs × 2 × {} metrics: {verdicts:?}", c.len(), METRICS.len());
}

/// The block bootstrap of the real pairs: each replicate draws both arms
/// from one recorded arm (the pair's `a` or `b` in turn), each with its own
/// blocks (every cache of an arm the same blocks): two different series of
/// one real process, with its steps, dependence and drift, so the truth is
/// "no difference". Floors 0 so that only α protects, every look. The
/// whole-verdict false-LEAK rate must stay within α + 3 Monte Carlo SE
/// (1,000 replicates: 1.94 %; measured 0.50 %, 5 of 1,000).
#[test]
fn the_block_bootstrap_of_real_pairs_holds_alpha_over_a_whole_verdict() {
    for rel in CORPORA {
        for metric in METRICS {
            block_bootstrap_holds_alpha(rel, metric);
        }
    }
}

fn block_bootstrap_holds_alpha(rel: &str, metric: &str) {
    let c = corpus_at(rel);
    assert!(!c.is_empty());
    let reps = 1000;
    let mut rng = Rng::new(2024);
    let mut false_leaks = Vec::new();
    for r in 0..reps {
        let p = &c[r % c.len()];
        let source = &p.arms[(r / c.len()) % 2];
        let n = samples(source);
        let block = aa::block_length(n - 1);
        let a = series(&aa::resample_arm(source, block, n, &mut rng));
        let b = series(&aa::resample_arm(source, block, n, &mut rng));
        let an = leak::analyze(&a, &b, &policy(n, Floors { objects_per_op: 0.0, bytes_per_op: 0.0, bytes_per_hour: 0.0 }, true, metric), true);
        if an.verdict == Verdict::Leak {
            false_leaks.push(format!("{} (replicate {r}): {}", p.name, an.reason));
        }
    }
    let alpha: f64 = 0.01;
    let bound = alpha + 3.0 * (alpha * (1.0 - alpha) / reps as f64).sqrt();
    let rate = false_leaks.len() as f64 / reps as f64;
    for f in &false_leaks {
        eprintln!("false LEAK ({metric}): {f}");
    }
    eprintln!("block bootstrap of {} real pairs ({rel}), metric {metric}: {} false LEAK in {reps} ({:.2} %, bound {:.2} %)", c.len(), false_leaks.len(), 100.0 * rate, 100.0 * bound);
    assert!(rate <= bound, "{metric}: {:.2} % > {:.2} %:\n{}", 100.0 * rate, 100.0 * bound, false_leaks.join("\n"));
}

/// Known truth in real noise: a leak of exactly the default floor (0.0005
/// objects/op, one object per 2,000 operations) planted into the busiest
/// shared cache (`dentry`, 192 B, and its bytes into `Slab`) of the module
/// arm, both arms resampled from one recorded arm as above. NO-LEAK there
/// is a false NO-LEAK; the intersection–union test allows it at most α of
/// the time, within 3 Monte Carlo SE. `skbuff_head_cache` is left out of
/// both arms: it is the SSH channel the corpus was recorded over (the port
/// removes it) and it alone keeps every pair INCONCLUSIVE, which would make
/// this test unable to fail. The same replicates without the plant must
/// reach NO-LEAK in at least a fifth of them, so that NO-LEAK is within
/// reach. Measured: NO-LEAK 1 of 500 with the plant (bound 2.33 %), 294 of
/// 500 without it, with a 2 s warm-up and ρ = 3 on both sides; with the 5 s
/// warm-up and the NO-LEAK side spent linearly (more α early, less left for
/// the last look, where these SSH-era pairs are decided) 0 of 500 with the
/// plant, 208 of 500 without it.
#[test]
fn a_leak_planted_at_the_floor_in_real_noise_is_no_leak_at_most_alpha() {
    for rel in CORPORA {
        for metric in METRICS {
            planted_leak_is_no_leak_at_most_alpha(rel, metric);
        }
    }
}

fn planted_leak_is_no_leak_at_most_alpha(rel: &str, metric: &str) {
    let c = corpus_at(rel);
    assert!(!c.is_empty());
    let reps = 500;
    let floor = DEFAULT_FLOOR_OBJECTS_PER_OP;
    let mut rng = Rng::new(77);
    let (mut no_leak, mut leak, mut clean_no_leak) = (0, 0, 0);
    for r in 0..reps {
        let p = &c[r % c.len()];
        let source = &p.arms[(r / c.len()) % 2];
        let n = samples(source);
        let block = aa::block_length(n - 1);
        let mut module = aa::resample_arm(&without_skbuff(source), block, n, &mut rng);
        let clean = module.clone();
        let ops0 = module["dentry"][0].1;
        let planted: Vec<f64> = module["dentry"].iter().map(|&(_, ops, _)| ((ops - ops0) * floor).round()).collect();
        for (row, k) in module.get_mut("dentry").expect("every pair has dentry").iter_mut().zip(&planted) {
            row.2 += k;
        }
        for (row, k) in module.get_mut("meminfo:Slab").expect("every pair has Slab").iter_mut().zip(&planted) {
            row.2 += k * 192.0;
        }
        let baseline = aa::resample_arm(&without_skbuff(source), block, n, &mut rng);
        let policy = policy(n, default_floors(), true, metric);
        let an = leak::analyze(&series(&module), &series(&baseline), &policy, true);
        no_leak += usize::from(an.verdict == Verdict::NoLeak);
        leak += usize::from(an.verdict == Verdict::Leak);
        clean_no_leak += usize::from(leak::analyze(&series(&clean), &series(&baseline), &policy, true).verdict == Verdict::NoLeak);
    }
    eprintln!("the same replicates without the plant ({rel}, {metric}): NO-LEAK {clean_no_leak} of {reps}");
    assert!(clean_no_leak * 5 >= reps, "{metric}: NO-LEAK out of reach: {clean_no_leak} of {reps} without the plant");
    let alpha: f64 = 0.01;
    let bound = alpha + 3.0 * (alpha * (1.0 - alpha) / reps as f64).sqrt();
    eprintln!("leak at the floor in resampled real noise ({rel}, {metric}): NO-LEAK {no_leak}, LEAK {leak} of {reps} (bound for NO-LEAK {:.2} %)", 100.0 * bound);
    assert!(no_leak as f64 / reps as f64 <= bound, "{metric}: false NO-LEAK in {no_leak} of {reps}");
}

fn without_skbuff(arm: &AaArm) -> AaArm {
    arm.iter().filter(|(k, _)| *k != "skbuff_head_cache").map(|(k, v)| (k.clone(), v.clone())).collect()
}
