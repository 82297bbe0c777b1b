//! File-system helpers. A run directory can hold a whole guest's memory (a
//! vmcore) and SSH private keys, so everything kernlab creates is private:
//! directories 0700, files 0600. Files that readers may see half-written
//! (reports, manifests, cache pointers) are written atomically: temp file in
//! the same directory, fsync, rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// `--share`: a finished run's tree is group-readable (0750/0640) instead
/// of private. Set once by the command line.
static SHARE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets `--share` for this process.
pub fn set_share(on: bool) {
    SHARE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Gives every directory and file under `root` (itself included) the
/// modes of a finished run: 0700 and 0600, or 0750 and 0640 with
/// `--share`. Whatever created them (QEMU's console log, a guest script's
/// output, an instrument's directory), a run directory can hold customer
/// data. A `keys` directory stays 0700/0600 either way (SSH refuses a
/// private key others can read). Symbolic links are left alone. Returns
/// how many entries it changed.
pub fn seal_tree(root: &Path) -> io::Result<usize> {
    let share = SHARE.load(std::sync::atomic::Ordering::Relaxed);
    seal(root, share, 0)
}

fn seal(path: &Path, share: bool, depth: usize) -> io::Result<usize> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() || depth > 64 {
        return Ok(0);
    }
    let private = !share || path.file_name().is_some_and(|n| n == "keys") || path.parent().and_then(Path::file_name).is_some_and(|n| n == "keys");
    let want = match (meta.is_dir(), private) {
        (true, true) => 0o700,
        (true, false) => 0o750,
        (false, true) => 0o600,
        (false, false) => 0o640,
    };
    let mut changed = 0;
    if meta.permissions().mode() & 0o777 != want {
        fs::set_permissions(path, fs::Permissions::from_mode(want))?;
        changed += 1;
    }
    if meta.is_dir() {
        for e in fs::read_dir(path)? {
            changed += seal(&e?.path(), share, depth + 1)?;
        }
    }
    Ok(changed)
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // `create` leaves an existing directory's mode alone; the leaf is ours to tighten.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Creates a new private file (0600) for writing; fails if it exists.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Opens a private file (0600) for appending, creating it if needed.
pub fn append_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(0o600).open(path)
}

/// Sets a file's mode to 0600.
pub fn set_private(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

/// Writes `data` to `path` atomically with mode 0600.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Hex sha256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Hex sha256 of bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The last `max_lines` lines of a text file, lossily decoded; empty when the
/// file is missing. Used for console tails in boot errors.
pub fn tail_lines(path: &Path, max_lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else { return String::new() };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

/// Bytes of the regular files under `dir`, recursively (a file counts too).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return 0 };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| dir_bytes(&e.path())).sum()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        // No temp file is left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dir_tightens_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        private_dir(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn tail_of_missing_file_is_empty() {
        assert_eq!(tail_lines(Path::new("/nonexistent/console.log"), 5), "");
    }

    #[test]
    fn a_sealed_tree_is_private_and_shared_only_when_asked_keys_never() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("run");
        for sub in ["module/instruments", "module/keys"] {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(root.join(sub)).unwrap();
        }
        for f in ["module/console.log", "module/instruments/x.txt", "module/keys/id"] {
            fs::write(root.join(f), "x").unwrap();
            fs::set_permissions(root.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
        assert!(seal(&root, false, 0).unwrap() >= 6);
        for (p, m) in [("", 0o700), ("module/instruments", 0o700), ("module/console.log", 0o600), ("module/instruments/x.txt", 0o600), ("module/keys/id", 0o600)] {
            assert_eq!(mode(p), m, "{p}");
        }
        assert_eq!(fs::metadata("/etc/passwd").unwrap().permissions().mode() & 0o777, 0o644, "a link's target is not touched");
        seal(&root, true, 0).unwrap();
        for (p, m) in [("", 0o750), ("module/instruments", 0o750), ("module/console.log", 0o640), ("module/keys", 0o700), ("module/keys/id", 0o600)] {
            assert_eq!(mode(p), m, "shared {p}");
        }
    }
}

/// Free bytes for an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod free_tests {
    #[test]
    fn free_space_of_a_real_directory() {
        let d = tempfile::tempdir().unwrap();
        assert!(super::free_bytes(d.path()).unwrap() > 0);
        assert!(super::free_bytes(&d.path().join("missing")).is_err());
    }
}
