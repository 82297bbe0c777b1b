//! apt, the one way kernlab asks this machine's package sources: packages
//! come from its own configured and verified sources (kernlab names no
//! mirror). `apt-get download` needs no root; the queries are `apt-cache`.
//! Every call has a deadline (see [`crate::util::tool`]).

use std::path::Path;
use std::time::Duration;

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

/// `apt-get download SPECS` (`name` or `name=version`) into `dir`, quietly:
/// a caller on a terminal follows the bytes with its own bar (apt's own
/// progress would fight the run's progress lines).
pub fn download(specs: &[String], dir: &Path) -> Result<(), AptError> {
    Tool::new("apt-get", DOWNLOAD_DEADLINE)
        .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
        .args(specs)
        .current_dir(dir)
        .run()
        .map_err(|e| failed(&specs.join(" "), e))?;
    Ok(())
}

/// `apt-cache show --no-all-versions SPEC`: the package's record.
pub fn show(spec: &str) -> Result<String, AptError> {
    let out = Tool::new("apt-cache", QUERY_DEADLINE).args(["show", "--no-all-versions", spec]).run().map_err(|e| failed(spec, e))?;
    let record = String::from_utf8_lossy(&out.stdout).into_owned();
    if record.trim().is_empty() {
        return Err(AptError::NotInArchive { package: spec.into(), detail: "apt-cache show printed no record".into() });
    }
    Ok(record)
}

/// A field of a package record (`Size`, `Depends`, …).
pub fn field<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// `apt-cache policy PACKAGE`'s candidate version; None when the archive has none.
pub fn candidate(package: &str) -> Result<Option<String>, AptError> {
    let out = Tool::new("apt-cache", QUERY_DEADLINE).args(["policy", package]).run().map_err(|e| failed(package, e))?;
    Ok(parse_candidate(&String::from_utf8_lossy(&out.stdout)))
}

/// The `Candidate:` of `apt-cache policy PKG`; None for `(none)` or a
/// package apt does not know (empty output).
pub fn parse_candidate(policy: &str) -> Option<String> {
    let c = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:"))?.trim();
    (c != "(none)" && !c.is_empty()).then(|| c.to_string())
}

/// `apt-cache pkgnames PREFIX`: the package names apt knows that start so.
pub fn pkgnames(prefix: &str) -> Result<Vec<String>, AptError> {
    let out = Tool::new("apt-cache", QUERY_DEADLINE).args(["pkgnames", prefix]).run().map_err(|e| failed(prefix, e))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
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
}
