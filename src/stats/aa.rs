//! Real A/A noise for the simulations: a loader for recorded arm pairs and
//! a block bootstrap that resamples them (issue 24, item 2).
//!
//! The corpus is not recorded yet (it needs guests with the new sampler);
//! this is the hook it plugs into. Each file under `tests/data/aa/` is one
//! A/A pair, `NAME.csv` or `NAME.csv.gz`, with a header and one row per
//! arm, sample and cache:
//!
//! ```text
//! arm,t,ops,cache,objects
//! a,0.0,0,dentry,11099
//! b,0.0,0,dentry,11102
//! ```
//!
//! `arm` is `a` or `b`, `t` seconds since the arm's start, `ops` the
//! cumulative operation count at that sample, `objects` the cache's
//! `active_objs`.
//!
//! Resampling: the moving-block bootstrap of a series' first differences,
//! demeaned (so the resampled series has no drift: an A/A null) and summed
//! again from the first value (Paparoditis & Politis, "Residual-based
//! block bootstrap for unit root testing", Econometrica 71, 2003). Blocks
//! keep the short-range dependence within them, and resampling increments
//! rather than levels keeps a wander that never returns (a random walk)
//! as it was. The block length is ⌈n^⅓⌉ by default (Hall, Horowitz & Jing
//! 1995).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::sim::Rng;

/// One arm of a pair: per cache, (t, ops, objects) in sampling order.
pub type AaArm = BTreeMap<String, Vec<(f64, f64, f64)>>;

/// One recorded A/A pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AaPair {
    pub name: String,
    pub arms: [AaArm; 2],
}

/// Why a corpus file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AaError {
    #[error("failed to read A/A pair `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("A/A pair `{path}` line {line}: {why}")]
    Row { path: PathBuf, line: usize, why: String },
}

/// Every pair under `dir` (`*.csv`, `*.csv.gz`), by name; an absent
/// directory is an empty corpus.
pub fn load_corpus(dir: &Path) -> Result<Vec<AaPair>, AaError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.to_string_lossy().ends_with(".csv") || p.to_string_lossy().ends_with(".csv.gz")).collect();
    paths.sort();
    paths.iter().map(|p| load_pair(p)).collect()
}

/// One pair from its file.
pub fn load_pair(path: &Path) -> Result<AaPair, AaError> {
    let read = |source| AaError::Read { path: path.to_path_buf(), source };
    let bytes = std::fs::read(path).map_err(read)?;
    let text = if path.to_string_lossy().ends_with(".gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut s).map_err(read)?;
        s
    } else {
        String::from_utf8(bytes).map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?
    };
    let name = path.file_name().map(|f| f.to_string_lossy().trim_end_matches(".gz").trim_end_matches(".csv").to_string()).unwrap_or_default();
    let mut pair = AaPair { name, ..AaPair::default() };
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let row = |why: &str| AaError::Row { path: path.to_path_buf(), line: i + 1, why: why.to_string() };
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            return Err(row("want 5 fields: arm,t,ops,cache,objects"));
        }
        let arm = match f[0] {
            "a" => 0,
            "b" => 1,
            _ => return Err(row("arm must be `a` or `b`")),
        };
        let num = |s: &str, what: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| row(&format!("{what} is not a number")));
        let (t, ops, objects) = (num(f[1], "t")?, num(f[2], "ops")?, num(f[4], "objects")?);
        pair.arms[arm].entry(f[3].to_string()).or_default().push((t, ops, objects));
    }
    Ok(pair)
}

/// The default block length for `n` increments: ⌈n^⅓⌉.
pub fn block_length(n: usize) -> usize {
    ((n as f64).cbrt().ceil() as usize).max(1)
}

/// A moving-block bootstrap resample of `y` (length `n_out`): its
/// increments, demeaned, drawn in blocks of `block` consecutive ones and
/// summed from `y[0]`.
pub fn block_bootstrap(y: &[f64], block: usize, n_out: usize, rng: &mut Rng) -> Vec<f64> {
    if y.len() < 2 || n_out == 0 {
        return y.iter().copied().cycle().take(n_out).collect();
    }
    let d: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let d: Vec<f64> = d.iter().map(|v| v - mean).collect();
    let block = block.clamp(1, d.len());
    let starts = d.len() - block + 1;
    let mut out = Vec::with_capacity(n_out);
    let mut level = y[0];
    out.push(level);
    while out.len() < n_out {
        let s = (rng.u64() % starts as u64) as usize;
        for v in &d[s..s + block] {
            if out.len() == n_out {
                break;
            }
            level += v;
            out.push(level);
        }
    }
    out
}

/// A moving-block bootstrap of a whole arm (length `n_out`): the **same**
/// blocks of sample indices for every series, so caches that move together
/// (a churned file's dentry, inode, LSM blob and `struct file`) still do,
/// and the operation count and the clock keep their pace. Increments are
/// kept as recorded, drift included: an A/A null is two arms resampled
/// independently from the **same** recorded arm (same process, same drift in
/// expectation, different series). Demeaning each arm instead turns a cache
/// that stepped once into a perfect line when the step is not drawn, a
/// trend with no noise that any test calls significant. Series are aligned
/// by sample index over the shortest one; an arm with fewer than 2 samples
/// is returned as it is.
pub fn resample_arm(arm: &AaArm, block: usize, n_out: usize, rng: &mut Rng) -> AaArm {
    let n = arm.values().map(Vec::len).min().unwrap_or(0);
    let Some(clock) = arm.values().next() else { return arm.clone() };
    if n < 2 || n_out == 0 {
        return arm.clone();
    }
    let block = block.clamp(1, n - 1);
    let starts = n - 1 - block + 1;
    // The increments' indices, drawn once for every series.
    let mut idx = Vec::with_capacity(n_out - 1);
    while idx.len() < n_out - 1 {
        let s = (rng.u64() % starts as u64) as usize;
        idx.extend((s..s + block).take(n_out - 1 - idx.len()));
    }
    let walk = |first: f64, step: &dyn Fn(usize) -> f64| -> Vec<f64> {
        std::iter::once(first)
            .chain(idx.iter().scan(first, |level, &k| {
                *level += step(k);
                Some(*level)
            }))
            .collect()
    };
    let t = walk(clock[0].0, &|k| clock[k + 1].0 - clock[k].0);
    let ops = walk(clock[0].1, &|k| clock[k + 1].1 - clock[k].1);
    arm.iter()
        .map(|(name, rows)| {
            let y = walk(rows[0].2, &|k| rows[k + 1].2 - rows[k].2);
            (name.clone(), (0..n_out).map(|i| (t[i], ops[i], y[i])).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_loads_from_csv_and_gzip_and_bad_rows_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = "arm,t,ops,cache,objects\na,0,0,dentry,100\na,1,1000,dentry,101\nb,0,0,dentry,99\nb,1,990,filp,7\n";
        std::fs::write(dir.path().join("one.csv"), text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        std::fs::write(dir.path().join("two.csv.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a pair").unwrap();
        let corpus = load_corpus(dir.path()).unwrap();
        assert_eq!(corpus.len(), 2);
        assert_eq!(corpus[0], AaPair { name: "one".into(), ..corpus[1].clone() });
        assert_eq!(corpus[0].arms[0]["dentry"], vec![(0.0, 0.0, 100.0), (1.0, 1000.0, 101.0)]);
        assert_eq!(corpus[0].arms[1]["filp"], vec![(1.0, 990.0, 7.0)]);
        std::fs::write(dir.path().join("bad.csv"), "arm,t,ops,cache,objects\nc,0,0,dentry,1\n").unwrap();
        let err = load_pair(&dir.path().join("bad.csv")).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("arm must be"), "{err}");
        assert!(load_corpus(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn the_bootstrap_draws_whole_blocks_of_demeaned_increments() {
        // Increments 0, 1, 2, … (mean 9.5 over 20) are told apart by value,
        // so every resampled increment shows where it came from.
        let y: Vec<f64> = (0..21).scan(0.0, |s, k| {
            *s += k as f64;
            Some(*s)
        }).collect();
        let mut rng = Rng::new(1);
        let r = block_bootstrap(&y, 4, 41, &mut rng);
        assert_eq!((r.len(), r[0]), (41, 0.0));
        let inc: Vec<f64> = r.windows(2).map(|w| w[1] - w[0] + 9.5).collect();
        for b in inc.chunks(4) {
            for w in b.windows(2) {
                assert!((w[1] - w[0] - 1.0).abs() < 1e-9, "a block is consecutive increments: {b:?}");
            }
        }
        assert_eq!(block_length(27), 3);
        assert_eq!(block_length(28), 4);
    }

    /// Known truth: an AR(1) φ = 0.5 series' increments have lag-1
    /// autocorrelation −0.25; resampled in blocks of 8 over 400 series the
    /// mean is kept within 0.05 (a block length of 1 would make it 0).
    #[test]
    fn the_bootstrap_keeps_short_range_dependence() {
        let mut rng = Rng::new(9);
        let (mut sum, runs) = (0.0, 400);
        for _ in 0..runs {
            let y = super::super::sim::Noise::Ar1(0.5).series(300, &mut rng);
            let r = block_bootstrap(&y, 8, 300, &mut rng);
            let d: Vec<f64> = r.windows(2).map(|w| w[1] - w[0]).collect();
            let m = d.iter().sum::<f64>() / d.len() as f64;
            let c: Vec<f64> = d.iter().map(|v| v - m).collect();
            sum += c.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / c.iter().map(|v| v * v).sum::<f64>();
        }
        let mean = sum / runs as f64;
        assert!((mean + 0.25).abs() < 0.05, "{mean}");
    }

    /// Known truth: two caches that move in lockstep (b = 3a) still do
    /// after resampling, the drift is kept, and the clock keeps its pace.
    #[test]
    fn an_arm_is_resampled_with_the_same_blocks_for_every_cache() {
        let mut rng = Rng::new(4);
        let a = super::super::sim::Noise::Ar1(0.5).series(200, &mut rng);
        let row = |k: usize, v: f64| (k as f64, 1000.0 * k as f64, v);
        let arm: AaArm = [
            ("a".to_string(), a.iter().enumerate().map(|(k, v)| row(k, v + k as f64)).collect::<Vec<_>>()),
            ("b".to_string(), a.iter().enumerate().map(|(k, v)| row(k, 3.0 * v + 3.0 * k as f64)).collect()),
        ]
        .into();
        let r = resample_arm(&arm, 6, 300, &mut rng);
        let (ra, rb) = (&r["a"], &r["b"]);
        assert_eq!((ra.len(), rb.len()), (300, 300));
        for (x, y) in ra.iter().zip(rb) {
            assert_eq!((x.0, x.1), (y.0, y.1));
        }
        // Lockstep: b's increments are 3 × a's.
        for (wa, wb) in ra.windows(2).zip(rb.windows(2)) {
            assert!(((wb[1].2 - wb[0].2) - 3.0 * (wa[1].2 - wa[0].2)).abs() < 1e-6);
        }
        // The clock: one second and 1,000 operations per sample, as recorded.
        assert!(ra.windows(2).all(|w| w[1].0 - w[0].0 == 1.0 && w[1].1 - w[0].1 == 1000.0));
        // The drift is kept: 1 per sample recorded, 1 per sample resampled
        // within the increments' noise (SD ≈ 0.04 per sample over 50 blocks).
        let drift = (ra[299].2 - ra[0].2) / 299.0;
        assert!((drift - 1.0).abs() < 0.15, "{drift}");
    }
}
