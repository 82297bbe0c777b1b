//! apt, the one way kernlab asks this machine's package sources: packages
//! come from its own configured and verified sources (kernlab names no
//! mirror). `apt-get download` needs no root; the queries are `apt-cache`.
//! Every call has a deadline (see [`crate::util::tool`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arch::Arch;
use crate::util::tool::{Tool, ToolError};

/// A download of a kernel's packages (the `-dbg` one is ~280 MB).
pub const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// An `apt-cache` query.
const QUERY_DEADLINE: Duration = Duration::from_secs(2 * 60);

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("`{package}` is not in this machine's apt sources: {detail}")]
    NotInArchive { package: String, detail: String },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot set up the private apt configuration for {arch} packages in {}: {source}", dir.display())]
    Setup { arch: Arch, dir: PathBuf, source: std::io::Error },
    #[error("`apt-get update` of the {arch} package lists (this machine's apt sources, architecture {}) failed: {source}", arch.debian())]
    Update { arch: Arch, source: ToolError },
}

/// What apt says when the archive has no such package or version.
const MISSING: [&str; 5] = ["Unable to locate package", "Can't select version", "was not found", "has no installation candidate", "No packages found"];

/// A failed apt call: a missing package, or apt's own failure.
fn failed(package: &str, err: ToolError) -> AptError {
    match err {
        ToolError::Failed { stderr, .. } if MISSING.iter().any(|m| stderr.contains(m)) => {
            AptError::NotInArchive { package: package.to_string(), detail: stderr }
        }
        e => AptError::Tool(e),
    }
}

/// Which apt answers: the machine's own (its architecture), or a private
/// configuration for a foreign architecture's packages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Apt {
    /// `APT_CONFIG` for every call; None: the machine's apt as it is.
    config: Option<PathBuf>,
}

/// How long a foreign architecture's package lists are trusted before
/// `apt-get update` refreshes them.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// `apt-get update` of a foreign architecture's lists.
const UPDATE_DEADLINE: Duration = Duration::from_secs(15 * 60);

impl Apt {
    /// The machine's own apt.
    pub const HOST: Apt = Apt { config: None };

    /// apt for packages of `arch`: the machine's own for the host's
    /// architecture; else a private configuration in the cache
    /// (`apt/<arch>/`: its own state, lists and archives, the machine's
    /// sources and keys, `APT::Architecture` set), its lists fetched with
    /// `apt-get update` when missing or a day old. Nothing of the machine's
    /// apt state changes.
    pub fn for_arch(cache: &crate::cache::Cache, arch: Arch) -> Result<Apt, AptError> {
        if Arch::host() == Some(arch) {
            return Ok(Apt::HOST);
        }
        let dir = cache.apt_dir(arch.debian());
        let _lock = cache.lock(crate::cache::Lock::Apt(arch.debian())).map_err(|e| AptError::Setup { arch, dir: dir.clone(), source: e })?;
        let setup = |e| AptError::Setup { arch, dir: dir.clone(), source: e };
        for d in ["state/lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(d)).map_err(setup)?;
        }
        let status = dir.join("state/status");
        if !status.exists() {
            std::fs::write(&status, b"").map_err(setup)?;
        }
        // Replaced by rename, and only when it differs: another process may
        // be reading it (a truncated file would be the machine's own apt).
        let conf = dir.join("apt.conf");
        let text = private_config(&dir, arch);
        if std::fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
            crate::util::fsx::write_atomic(&conf, text.as_bytes()).map_err(setup)?;
        }
        let apt = Apt { config: Some(conf) };
        if lists_age(&dir.join("state/lists")).is_none_or(|age| age > LISTS_MAX_AGE) {
            apt.tool("apt-get", UPDATE_DEADLINE).args(["update", "-q"]).run().map_err(|e| AptError::Update { arch, source: e })?;
        }
        Ok(apt)
    }

    fn tool(&self, program: &str, deadline: Duration) -> Tool {
        let t = Tool::new(program, deadline);
        match &self.config {
            Some(c) => t.env("APT_CONFIG", c),
            None => t,
        }
    }

    /// `apt-get download SPECS` (`name` or `name=version`) into `dir`,
    /// quietly: a caller on a terminal follows the bytes with its own bar
    /// (apt's own progress would fight the run's progress lines).
    pub fn download(&self, specs: &[String], dir: &Path) -> Result<(), AptError> {
        self.tool("apt-get", DOWNLOAD_DEADLINE)
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(specs)
            .current_dir(dir)
            .run()
            .map_err(|e| failed(&specs.join(" "), e))?;
        Ok(())
    }

    /// `apt-cache show --no-all-versions SPEC`: the package's record.
    pub fn show(&self, spec: &str) -> Result<String, AptError> {
        let out = self.tool("apt-cache", QUERY_DEADLINE).args(["show", "--no-all-versions", spec]).run().map_err(|e| failed(spec, e))?;
        let record = String::from_utf8_lossy(&out.stdout).into_owned();
        if record.trim().is_empty() {
            return Err(AptError::NotInArchive { package: spec.into(), detail: "apt-cache show printed no record".into() });
        }
        Ok(record)
    }

    /// `apt-cache policy PACKAGE`'s candidate version; None when the archive has none.
    pub fn candidate(&self, package: &str) -> Result<Option<String>, AptError> {
        let out = self.tool("apt-cache", QUERY_DEADLINE).args(["policy", package]).run().map_err(|e| failed(package, e))?;
        Ok(parse_candidate(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `apt-cache pkgnames PREFIX`: the package names apt knows that start so.
    pub fn pkgnames(&self, prefix: &str) -> Result<Vec<String>, AptError> {
        let out = self.tool("apt-cache", QUERY_DEADLINE).args(["pkgnames", prefix]).run().map_err(|e| failed(prefix, e))?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
    }
}

/// The private configuration of a foreign architecture rooted at `dir`:
/// the machine's sources and trusted keys, everything else its own. Pure.
pub fn private_config(dir: &Path, arch: Arch) -> String {
    let d = dir.display();
    format!(
        "Dir::State \"{d}/state\";\nDir::State::status \"{d}/state/status\";\nDir::Cache \"{d}/cache\";\n\
         Dir::Etc::SourceList \"/etc/apt/sources.list\";\nDir::Etc::SourceParts \"/etc/apt/sources.list.d\";\n\
         APT::Architecture \"{a}\";\nAPT::Architectures {{ \"{a}\"; }};\nAPT::Sandbox::User \"root\";\n",
        a = arch.debian()
    )
}

/// How old the newest package list in `lists` is; None when there is none.
fn lists_age(lists: &Path) -> Option<Duration> {
    std::fs::read_dir(lists)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
        .and_then(|m| m.elapsed().ok())
}

/// `apt-get download` with the machine's apt (see [`Apt::download`]).
pub fn download(specs: &[String], dir: &Path) -> Result<(), AptError> {
    Apt::HOST.download(specs, dir)
}

/// `apt-cache show` with the machine's apt (see [`Apt::show`]).
pub fn show(spec: &str) -> Result<String, AptError> {
    Apt::HOST.show(spec)
}

/// A field of a package record (`Size`, `Depends`, …).
pub fn field<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// `apt-cache policy` with the machine's apt (see [`Apt::candidate`]).
pub fn candidate(package: &str) -> Result<Option<String>, AptError> {
    Apt::HOST.candidate(package)
}

/// The `Candidate:` of `apt-cache policy PKG`; None for `(none)` or a
/// package apt does not know (empty output).
pub fn parse_candidate(policy: &str) -> Option<String> {
    let c = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:"))?.trim();
    (c != "(none)" && !c.is_empty()).then(|| c.to_string())
}

/// `apt-cache pkgnames` with the machine's apt (see [`Apt::pkgnames`]).
pub fn pkgnames(prefix: &str) -> Result<Vec<String>, AptError> {
    Apt::HOST.pkgnames(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_candidate() {
        let text = "linux-image-6.1.0-54-cloud-amd64:\n  Installed: (none)\n  Candidate: 6.1.190-1\n  Version table:\n";
        assert_eq!(parse_candidate(text).as_deref(), Some("6.1.190-1"));
        assert_eq!(parse_candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"), None);
        assert_eq!(parse_candidate(""), None);
    }

    #[test]
    fn record_fields() {
        let rec = "Package: linux-image-6.1.0-54-cloud-amd64-dbg\nVersion: 6.1.190-1\nSize: 293019096\nDepends: a, b\n";
        assert_eq!(field(rec, "Size"), Some("293019096"));
        assert_eq!(field(rec, "Depends"), Some("a, b"));
        assert_eq!(field(rec, "Pre-Depends"), None);
    }

    #[test]
    fn a_missing_package_is_named_as_such() {
        let stderr = "E: Unable to locate package linux-image-9.9";
        let status = std::os::unix::process::ExitStatusExt::from_raw(256);
        let e = failed("linux-image-9.9", ToolError::Failed { command: "apt-get download linux-image-9.9".into(), status, stderr: stderr.into() });
        assert!(matches!(&e, AptError::NotInArchive { package, .. } if package == "linux-image-9.9"), "{e}");
        assert!(e.to_string().contains("not in this machine's apt sources"), "{e}");
    }

    #[test]
    fn a_foreign_architecture_gets_its_own_state_and_the_machines_sources() {
        let c = private_config(Path::new("/c/apt/arm64"), Arch::Aarch64);
        assert!(c.contains("Dir::State \"/c/apt/arm64/state\";"), "{c}");
        assert!(c.contains("Dir::Cache \"/c/apt/arm64/cache\";"), "{c}");
        assert!(c.contains("Dir::Etc::SourceList \"/etc/apt/sources.list\";"), "{c}");
        assert!(c.contains("APT::Architecture \"arm64\";") && c.contains("APT::Architectures { \"arm64\"; };"), "{c}");
    }

    #[test]
    fn the_hosts_own_architecture_is_the_machines_apt() {
        let d = tempfile::tempdir().unwrap();
        let cache = crate::cache::Cache::at(d.path().to_path_buf()).unwrap();
        assert_eq!(Apt::for_arch(&cache, Arch::host().unwrap()).unwrap(), Apt::HOST);
        assert!(!cache.apt_dir(Arch::host().unwrap().debian()).exists());
    }
}
