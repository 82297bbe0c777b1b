//! Bisecting over kernels: the candidates a pattern matches, in Debian
//! version order from the good kernel to the bad one, and the kernels that
//! cannot run the lab at all (no headers to build its modules, no `-dbg`
//! package to triage its dumps), skipped before any run.

use std::cmp::Ordering;
use std::path::Path;

use crate::kernel::{Descriptor, PackageSource};
use crate::lab::Lab;

/// dpkg's order of one character in a non-digit run: `~` before the end,
/// the end before letters, letters before everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`: non-digit runs compared character by character in
/// [`order`], digit runs as numbers, alternately.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Debian's version order (`dpkg --compare-versions`): the epoch as a
/// number, then the upstream version, then the revision (after the last
/// `-`), each with dpkg's rules.
pub fn deb_version_cmp(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((up, rev)) => (epoch, up, rev),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| verrevcmp(ua, ub)).then_with(|| verrevcmp(ra, rb))
}

/// The order of kernel names: their releases (`debian-6.1.0-54-cloud-amd64`
/// → `6.1.0-54-cloud-amd64`) compared as dpkg compares version strings, so
/// `6.1.0-9` < `6.1.0-54` and `6.12.99+deb12` < `6.12.117+deb12`. A
/// release is not a version (its hyphens are not a revision), so it is
/// compared as one string; the name breaks ties.
pub fn kernel_cmp(a: &str, b: &str) -> Ordering {
    let release = |n: &str| n.strip_prefix("debian-").unwrap_or(n).to_string();
    verrevcmp(&release(a), &release(b)).then_with(|| a.cmp(b))
}

/// Why kernel bisection cannot use the flags it was given.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KernelRangeError {
    #[error("--kernel-pattern `{pattern}` matches no kernel (known: {known})")]
    NoMatch { pattern: String, known: String },
    #[error("{flag} `{name}` is not among the kernels `{pattern}` matches ({matched})")]
    NotMatched { flag: &'static str, name: String, pattern: String, matched: String },
    #[error("--good `{good}` is not older than --bad `{bad}` in version order")]
    Order { good: String, bad: String },
}

/// The candidates of a kernel bisection: the kernels in `names` that
/// `matches`, in version order, from just after `good` through `bad`.
pub fn candidates(names: &[String], pattern: &str, matches: impl Fn(&str) -> bool, good: &str, bad: &str) -> Result<Vec<String>, KernelRangeError> {
    let mut hit: Vec<String> = names.iter().filter(|n| matches(n)).cloned().collect();
    hit.sort_by(|a, b| kernel_cmp(a, b));
    hit.dedup();
    if hit.is_empty() {
        return Err(KernelRangeError::NoMatch { pattern: pattern.into(), known: names.join(", ") });
    }
    let pos = |flag: &'static str, name: &str| {
        hit.iter().position(|n| n == name).ok_or_else(|| KernelRangeError::NotMatched { flag, name: name.into(), pattern: pattern.into(), matched: hit.join(", ") })
    };
    let (g, b) = (pos("--good", good)?, pos("--bad", bad)?);
    if g >= b {
        return Err(KernelRangeError::Order { good: good.into(), bad: bad.into() });
    }
    Ok(hit[g + 1..=b].to_vec())
}

/// What a lab needs of a kernel beyond booting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Its headers: the lab builds modules (either arm).
    pub headers: bool,
    /// Its debug vmlinux (Debian's `-dbg` package): the lab takes a dump and
    /// reads it with `crash`.
    pub dbg: bool,
}

impl Needs {
    pub fn of(lab: &Lab) -> Needs {
        let baseline = lab.leak.as_ref().is_some_and(|l| !l.baseline.modules.is_empty());
        Needs {
            headers: !lab.modules.is_empty() || baseline,
            dbg: lab.exhaustion.as_ref().is_some_and(|x| x.dumps() && x.crash),
        }
    }
}

/// Why `desc` cannot run a lab with `needs`, if it cannot; `in_archive`
/// says whether this machine's apt sources have a package.
pub fn skip_reason(desc: &Descriptor, needs: Needs, in_archive: &dyn Fn(&str) -> bool) -> Option<String> {
    match &desc.source {
        PackageSource::Debian(s) => {
            let release = s.package.strip_prefix("linux-image-").unwrap_or(&s.package);
            let headers = format!("linux-headers-{release}");
            if needs.headers && !in_archive(&headers) {
                return Some(format!("no headers: `{headers}` is not in this machine's apt sources, so the lab's modules cannot be built"));
            }
            let dbg = format!("{}-dbg", s.package);
            if needs.dbg && !in_archive(&dbg) {
                return Some(format!("no debug package: `{dbg}` is not in this machine's apt sources, so the lab's dumps cannot be triaged"));
            }
            None
        }
        PackageSource::Rpm(r) if needs.headers && r.devel.is_empty() => Some("no headers: the descriptor names no -devel packages (source.rpm.devel)".into()),
        PackageSource::Local(l) if needs.headers && !has_build_dir(&l.dir) => {
            Some(format!("no headers: `{}` has no lib/modules/<release>/build", l.dir.display()))
        }
        _ => None,
    }
}

fn has_build_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("lib/modules")).is_ok_and(|rd| rd.filter_map(|e| e.ok()).any(|e| e.path().join("build").is_dir()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn debian_version_order() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0a", "1.0+", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("1:0.9", "2.0", Greater),
            ("6.1.190-1", "6.1.158-1", Greater),
            ("6.12.117-1~deb12u1", "6.12.117-1", Less),
            ("007", "7", Equal),
            ("1.0.0", "1.0", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(deb_version_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(deb_version_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn kernel_names_in_version_order() {
        let mut v: Vec<String> = [
            "debian-6.1.0-54-cloud-amd64",
            "debian-6.1.0-9-cloud-amd64",
            "debian-6.12.117+deb12-cloud-amd64",
            "debian-6.1.0-47-cloud-amd64",
            "debian-6.12.99+deb12-cloud-amd64",
            "debian-6.12.100+deb12-cloud-amd64",
        ]
        .map(String::from)
        .to_vec();
        v.sort_by(|a, b| kernel_cmp(a, b));
        assert_eq!(
            v,
            [
                "debian-6.1.0-9-cloud-amd64",
                "debian-6.1.0-47-cloud-amd64",
                "debian-6.1.0-54-cloud-amd64",
                "debian-6.12.99+deb12-cloud-amd64",
                "debian-6.12.100+deb12-cloud-amd64",
                "debian-6.12.117+deb12-cloud-amd64",
            ]
        );
    }

    fn names() -> Vec<String> {
        (47..=57).map(|abi| format!("debian-6.1.0-{abi}-cloud-amd64")).chain(["debian-6.1.0-54-amd64".to_string()]).collect()
    }

    #[test]
    fn candidates_run_from_after_good_through_bad() {
        let m = crate::matrix::glob("debian-6.1.0-*-cloud-amd64");
        let c = candidates(&names(), "p", |n| m.is_match(n), "debian-6.1.0-50-cloud-amd64", "debian-6.1.0-53-cloud-amd64").unwrap();
        assert_eq!(c, ["debian-6.1.0-51-cloud-amd64", "debian-6.1.0-52-cloud-amd64", "debian-6.1.0-53-cloud-amd64"]);
    }

    #[test]
    fn candidate_errors_name_the_flag() {
        let m = crate::matrix::glob("debian-6.1.0-*-cloud-amd64");
        let f = |n: &str| m.is_match(n);
        let e = candidates(&names(), "p", f, "debian-6.1.0-54-amd64", "debian-6.1.0-53-cloud-amd64").unwrap_err();
        assert!(matches!(&e, KernelRangeError::NotMatched { flag: "--good", .. }), "{e}");
        let e = candidates(&names(), "p", f, "debian-6.1.0-50-cloud-amd64", "debian-7").unwrap_err();
        assert!(e.to_string().starts_with("--bad `debian-7`"), "{e}");
        let e = candidates(&names(), "p", f, "debian-6.1.0-53-cloud-amd64", "debian-6.1.0-50-cloud-amd64").unwrap_err();
        assert!(matches!(e, KernelRangeError::Order { .. }));
        let e = candidates(&names(), "q*", |_| false, "a", "b").unwrap_err();
        assert!(e.to_string().contains("matches no kernel"), "{e}");
    }

    fn debian(release: &str) -> Descriptor {
        let text = format!("source:\n  debian:\n    package: linux-image-{release}\n");
        Descriptor::parse(&format!("debian-{release}"), "test", &text).unwrap()
    }

    #[test]
    fn kernels_without_headers_or_dbg_are_skipped_with_the_reason() {
        // The archive here: headers and -dbg for 50 and 53, neither for 51 and 52.
        let archive = |p: &str| ["50", "53"].iter().any(|abi| p.contains(&format!("6.1.0-{abi}-")));
        let all = Needs { headers: true, dbg: true };
        assert_eq!(skip_reason(&debian("6.1.0-50-cloud-amd64"), all, &archive), None);
        let r = skip_reason(&debian("6.1.0-51-cloud-amd64"), all, &archive).unwrap();
        assert!(r.starts_with("no headers") && r.contains("linux-headers-6.1.0-51-cloud-amd64"), "{r}");
        // A lab without modules runs on an image-only kernel.
        assert_eq!(skip_reason(&debian("6.1.0-51-cloud-amd64"), Needs::default(), &archive), None);
        // Headers but no -dbg: skipped only when the lab triages dumps.
        let headers_only = |p: &str| !p.ends_with("-dbg");
        let r = skip_reason(&debian("6.1.0-52-cloud-amd64"), all, &headers_only).unwrap();
        assert!(r.starts_with("no debug package") && r.contains("linux-image-6.1.0-52-cloud-amd64-dbg"), "{r}");
        assert_eq!(skip_reason(&debian("6.1.0-52-cloud-amd64"), Needs { headers: true, dbg: false }, &headers_only), None);
    }

    #[test]
    fn other_kernels_without_a_build_tree_are_skipped() {
        let rpm = Descriptor::parse("sles", "test", "source:\n  rpm:\n    package: k.rpm\n").unwrap();
        let need = Needs { headers: true, dbg: false };
        assert!(skip_reason(&rpm, need, &|_| true).unwrap().contains("source.rpm.devel"));
        let d = tempfile::tempdir().unwrap();
        let text = format!("source:\n  local:\n    dir: {}\n", d.path().display());
        let local = Descriptor::parse("mine", "test", &text).unwrap();
        assert!(skip_reason(&local, need, &|_| true).unwrap().starts_with("no headers"));
        std::fs::create_dir_all(d.path().join("lib/modules/6.9.0/build")).unwrap();
        assert_eq!(skip_reason(&local, need, &|_| true), None);
    }

    #[test]
    fn what_a_lab_needs() {
        let lab = crate::lab::parse("name: x\nmodules:\n  - source: m\n", Path::new("x.yaml")).unwrap();
        assert_eq!(Needs::of(&lab), Needs { headers: true, dbg: false });
        let lab = crate::lab::parse("name: x\n", Path::new("x.yaml")).unwrap();
        assert_eq!(Needs::of(&lab), Needs::default());
    }
}
