//! The git plumbing of a module bisection, through [`Tool`]: resolving and
//! checking the revisions, the first-parent history between them, and
//! exporting one revision's module directories into a scratch directory
//! (`git archive`), which never touches the user's work tree, index or refs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::tool::{Tool, ToolError};

/// Any one git call.
const GIT_DEADLINE: Duration = Duration::from_secs(2 * 60);

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("--source `{}` is not in a git work tree: {detail}", dir.display())]
    NotARepo { dir: PathBuf, detail: String },
    #[error("{flag} `{rev}` does not name a commit in `{}`", top.display())]
    NoRev { flag: &'static str, rev: String, top: PathBuf },
    #[error("--good `{good}` is not an ancestor of --bad `{bad}` in `{}`", top.display())]
    NotAncestor { good: String, bad: String, top: PathBuf },
    #[error("--good `{good}` and --bad `{bad}` are the same commit")]
    Same { good: String, bad: String },
    #[error("{flag} `{rev}` has no directory `{}` (the lab's module source)", if sub.as_os_str().is_empty() { Path::new(".") } else { sub.as_path() }.display())]
    NoModuleDir { flag: &'static str, rev: String, sub: PathBuf },
    #[error("submodule `{}` at `{rev}` is commit {commit}, which its clone in `{}` does not have (run `git submodule update --init` there)", path.display(), top.display())]
    Submodule { path: PathBuf, rev: String, commit: String, top: PathBuf },
    #[error("git")]
    Tool(#[from] ToolError),
    #[error("unpacking `{}`", path.display())]
    Unpack {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    /// Whether the user's flags are at fault (exit 2) rather than git or the disk (101).
    pub fn is_usage(&self) -> bool {
        !matches!(self, GitError::Tool(_) | GitError::Unpack { .. } | GitError::Submodule { .. })
    }
}

fn git(top: &Path) -> Tool {
    Tool::new("git", GIT_DEADLINE).arg("-C").arg(top)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The top of the work tree holding `dir`, canonical.
pub fn toplevel(dir: &Path) -> Result<PathBuf, GitError> {
    let out = git(dir).args(["rev-parse", "--show-toplevel"]).output()?;
    if !out.status.success() {
        return Err(GitError::NotARepo { dir: dir.to_path_buf(), detail: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    let top = PathBuf::from(stdout(&out));
    Ok(top.canonicalize().unwrap_or(top))
}

/// The commit `rev` names, as a full sha.
pub fn resolve(top: &Path, flag: &'static str, rev: &str) -> Result<String, GitError> {
    let no = || GitError::NoRev { flag, rev: rev.to_string(), top: top.to_path_buf() };
    // A leading `-` would be read as an option.
    if rev.starts_with('-') || rev.is_empty() {
        return Err(no());
    }
    let out = git(top).args(["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{rev}^{{commit}}")]).output()?;
    if !out.status.success() {
        return Err(no());
    }
    Ok(stdout(&out))
}

/// Whether `a` is an ancestor of `b` (both shas).
pub fn is_ancestor(top: &Path, a: &str, b: &str) -> Result<bool, GitError> {
    let out = git(top).args(["merge-base", "--is-ancestor", a, b]).output()?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(ToolError::Failed { command: format!("git merge-base --is-ancestor {a} {b}"), status: out.status, stderr: String::from_utf8_lossy(&out.stderr).into() }.into()),
    }
}

/// Whether `rev` has a directory at `sub` (the whole tree for an empty `sub`).
pub fn has_dir(top: &Path, rev: &str, sub: &Path) -> Result<bool, GitError> {
    let out = git(top).args(["cat-file", "-t", &format!("{rev}:{}", sub.display())]).output()?;
    Ok(out.status.success() && stdout(&out) == "tree")
}

/// A commit of the range: its sha and subject line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub subject: String,
}

/// `git rev-list --first-parent --reverse good..bad` with subjects: the
/// commits after `good` through `bad`, oldest first.
pub fn range(top: &Path, good: &str, bad: &str) -> Result<Vec<Commit>, GitError> {
    let out = git(top).args(["log", "--first-parent", "--reverse", "--format=%H%x09%s", &format!("{good}..{bad}")]).run()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(sha, subject)| Commit { sha: sha.to_string(), subject: subject.to_string() }).or_else(|| (!l.is_empty()).then(|| Commit { sha: l.to_string(), subject: String::new() })))
        .collect())
}

/// The subject line of one commit.
pub fn subject(top: &Path, sha: &str) -> Result<String, GitError> {
    Ok(stdout(&git(top).args(["log", "-1", "--format=%s", sha]).run()?))
}

/// Writes the directories `subs` of `rev` under `dest` (`dest/<sub>`),
/// with `git archive`: nothing in the user's repository changes.
pub fn export(top: &Path, rev: &str, subs: &[PathBuf], dest: &Path) -> Result<(), GitError> {
    let tarball = dest.join(".export.tar");
    let mut tool = git(top).args(["archive", "--format=tar", "-o"]).arg(&tarball).arg(rev).arg("--");
    for s in subs {
        tool = tool.arg(if s.as_os_str().is_empty() { Path::new(".") } else { s.as_path() });
    }
    tool.run()?;
    let unpack = |source| GitError::Unpack { path: tarball.clone(), source };
    let file = std::fs::File::open(&tarball).map_err(unpack)?;
    tar::Archive::new(file).unpack(dest).map_err(unpack)?;
    let _ = std::fs::remove_file(&tarball);
    // `git archive` leaves a submodule out (an empty directory): export each
    // one at the commit the revision records, from its clone in the work
    // tree, as `git submodule update` would have checked it out.
    let mut ls = git(top).args(["ls-tree", "-r", "-z", rev, "--"]);
    for s in subs {
        ls = ls.arg(if s.as_os_str().is_empty() { Path::new(".") } else { s.as_path() });
    }
    let listing = ls.run()?;
    for (path, commit) in gitlinks(&listing.stdout) {
        let clone = top.join(&path);
        let has = git(&clone).args(["cat-file", "-e", &format!("{commit}^{{commit}}")]).run().is_ok();
        if !has {
            return Err(GitError::Submodule { path, rev: rev.to_string(), commit, top: top.to_path_buf() });
        }
        let into = dest.join(&path);
        std::fs::create_dir_all(&into).map_err(|source| GitError::Unpack { path: into.clone(), source })?;
        export(&clone, &commit, &[PathBuf::new()], &into)?;
    }
    Ok(())
}

/// The submodules (`160000 commit SHA\tPATH` entries) of `git ls-tree -r -z`.
pub fn gitlinks(out: &[u8]) -> Vec<(PathBuf, String)> {
    out.split(|b| *b == 0)
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (meta, path) = e.split_once('\t')?;
            let mut m = meta.split_whitespace();
            (m.next()? == "160000" && m.next()? == "commit").then(|| (PathBuf::from(path), m.next().unwrap_or("").to_string()))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `git` in `dir` with a fixed identity and no user configuration.
    pub fn sh(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A repo with `mod/` holding a.c over three commits, and a side branch.
    pub fn repo() -> (tempfile::TempDir, Vec<String>) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        sh(p, &["init", "-q"]);
        let mut shas = Vec::new();
        for i in 0..3 {
            std::fs::create_dir_all(p.join("mod")).unwrap();
            std::fs::write(p.join("mod/a.c"), format!("int v = {i};\n")).unwrap();
            std::fs::write(p.join("mod/Kbuild"), "obj-m := a.o\n").unwrap();
            sh(p, &["add", "-A"]);
            sh(p, &["commit", "-q", "-m", &format!("v{i}")]);
            shas.push(sh(p, &["rev-parse", "HEAD"]));
        }
        sh(p, &["checkout", "-q", "-b", "side", &shas[0]]);
        std::fs::write(p.join("other"), "x").unwrap();
        sh(p, &["add", "-A"]);
        sh(p, &["commit", "-q", "-m", "side"]);
        shas.push(sh(p, &["rev-parse", "HEAD"]));
        sh(p, &["checkout", "-q", "main"]);
        (d, shas)
    }

    #[test]
    fn revisions_resolve_and_are_checked() {
        let (d, shas) = repo();
        let top = toplevel(&d.path().join("mod")).unwrap();
        assert_eq!(top, d.path().canonicalize().unwrap());
        assert_eq!(resolve(&top, "--good", "HEAD~2").unwrap(), shas[0]);
        let e = resolve(&top, "--bad", "nope").unwrap_err();
        assert!(e.to_string().starts_with("--bad `nope` does not name a commit"), "{e}");
        assert!(e.is_usage());
        assert!(resolve(&top, "--good", "--all").is_err());
        assert!(is_ancestor(&top, &shas[0], &shas[2]).unwrap());
        assert!(!is_ancestor(&top, &shas[3], &shas[2]).unwrap());
        assert!(has_dir(&top, &shas[0], Path::new("mod")).unwrap());
        assert!(!has_dir(&top, &shas[0], Path::new("mod/a.c")).unwrap());
        assert!(!has_dir(&top, &shas[0], Path::new("gone")).unwrap());
        assert!(has_dir(&top, &shas[0], Path::new("")).unwrap());
        let r = range(&top, &shas[0], &shas[2]).unwrap();
        assert_eq!(r.iter().map(|c| c.sha.as_str()).collect::<Vec<_>>(), [shas[1].as_str(), shas[2].as_str()]);
        assert_eq!(r[0].subject, "v1");
        let e = toplevel(&std::env::temp_dir()).map(|_| ());
        // /tmp is not normally in a work tree; if it is, there is nothing to check.
        if let Err(e) = e {
            assert!(e.to_string().starts_with("--source"), "{e}");
        }
    }

    #[test]
    fn export_leaves_the_work_tree_alone() {
        let (d, shas) = repo();
        let top = toplevel(d.path()).unwrap();
        std::fs::write(d.path().join("mod/a.c"), "dirty\n").unwrap();
        let status = sh(&top, &["status", "--porcelain"]);
        let out = tempfile::tempdir().unwrap();
        export(&top, &shas[1], &[PathBuf::from("mod")], out.path()).unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("mod/a.c")).unwrap(), "int v = 1;\n");
        assert!(!out.path().join(".export.tar").exists());
        assert_eq!(sh(&top, &["status", "--porcelain"]), status);
        assert_eq!(sh(&top, &["rev-parse", "HEAD"]), shas[2]);
        assert_eq!(std::fs::read_to_string(d.path().join("mod/a.c")).unwrap(), "dirty\n");
        let whole = tempfile::tempdir().unwrap();
        export(&top, &shas[0], &[PathBuf::new()], whole.path()).unwrap();
        assert!(whole.path().join("mod/a.c").is_file());
    }

    #[test]
    fn an_export_takes_submodules_at_the_commit_the_revision_records() {
        let d = tempfile::tempdir().unwrap();
        let lib = d.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        sh(&lib, &["init", "-q"]);
        std::fs::write(lib.join("lib.c"), "int v = 1;\n").unwrap();
        sh(&lib, &["add", "-A"]);
        sh(&lib, &["commit", "-q", "-m", "lib v1"]);
        let top = d.path().join("product");
        std::fs::create_dir(&top).unwrap();
        sh(&top, &["init", "-q"]);
        std::fs::create_dir(top.join("driver")).unwrap();
        std::fs::write(top.join("driver/Kbuild"), "obj-m := d.o\n").unwrap();
        sh(&top, &["-c", "protocol.file.allow=always", "submodule", "add", "-q", lib.to_str().unwrap(), "driver/third_party/lib"]);
        sh(&top, &["add", "-A"]);
        sh(&top, &["commit", "-q", "-m", "driver with lib v1"]);
        let first = sh(&top, &["rev-parse", "HEAD"]);
        std::fs::write(lib.join("lib.c"), "int v = 2;\n").unwrap();
        sh(&lib, &["commit", "-q", "-a", "-m", "lib v2"]);
        let sub = top.join("driver/third_party/lib");
        sh(&sub, &["-c", "protocol.file.allow=always", "pull", "-q", "origin", "main"]);
        sh(&top, &["commit", "-q", "-a", "-m", "lib v2"]);
        for (rev, want) in [(first.as_str(), "int v = 1;\n"), ("HEAD", "int v = 2;\n")] {
            let out = tempfile::tempdir().unwrap();
            export(&top, rev, &[PathBuf::from("driver")], out.path()).unwrap();
            assert_eq!(std::fs::read_to_string(out.path().join("driver/third_party/lib/lib.c")).unwrap(), want, "at {rev}");
            assert!(out.path().join("driver/Kbuild").is_file());
            assert!(!out.path().join("driver/third_party/lib/.git").exists());
        }
        // A recorded commit the clone lacks is said, with what to run.
        let gone = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        std::fs::create_dir(&sub).unwrap();
        sh(&sub, &["init", "-q"]);
        let e = export(&top, "HEAD", &[PathBuf::from("driver")], gone.path()).unwrap_err().to_string();
        assert!(e.contains("submodule `driver/third_party/lib`") && e.contains("git submodule update --init"), "{e}");
    }
}