//! Running host tools (`apt-get`, `dpkg-deb`, `depmod`, `ldd`, `dropbearkey`,
//! `qemu-system-x86_64 --version`). A failed tool becomes an error that names
//! the command and carries its stderr, because "exit status 100" alone tells
//! a user nothing.

use std::ffi::OsStr;
use std::process::{Command, Output};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run `{program}` (is it installed? {hint})")]
    Spawn {
        program: String,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed with {status}: {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
}

/// The Debian package that provides a host tool kernlab runs, for the hint in
/// the error when it is missing.
pub fn package_hint(program: &str) -> String {
    let pkg = match program {
        "apt-get" => "apt",
        "dpkg-deb" => "dpkg",
        "depmod" | "modinfo" => "kmod",
        "dropbearkey" | "dropbear" => "dropbear-bin",
        "busybox" => "busybox-static",
        "qemu-system-x86_64" => "qemu-system-x86",
        "ldd" => "libc-bin",
        _ => return "see `kernlab doctor`".to_string(),
    };
    format!("`apt-get install {pkg}` provides it")
}

/// Runs `cmd` to completion; non-zero exit is an error with stderr attached.
pub fn run(cmd: &mut Command) -> Result<Output, ToolError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| ToolError::Spawn {
        hint: package_hint(&program),
        program: program.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            command: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// A printable form of a command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

/// Quotes a word for a POSIX shell (the guest's busybox sh included): values
/// from lab files reach the guest as data, never as shell syntax.
pub fn shell_quote(word: impl AsRef<OsStr>) -> String {
    let w = word.as_ref().to_string_lossy();
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        return w.into_owned();
    }
    format!("'{}'", w.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let cases = [
            ("plain", "plain"),
            ("", "''"),
            ("a b", "'a b'"),
            ("$(reboot)", "'$(reboot)'"),
            ("it's", r"'it'\''s'"),
            ("x;rm -rf /", "'x;rm -rf /'"),
        ];
        for (input, want) in cases {
            assert_eq!(shell_quote(input), want, "quoting {input:?}");
        }
    }

    #[test]
    fn missing_tool_names_package() {
        let err = run(&mut Command::new("/nonexistent/dropbearkey")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dropbearkey"), "{err}");
    }

    #[test]
    fn failure_carries_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("boom") && msg.contains("exit status: 3"), "{msg}");
    }
}
