//! The lab's own `payload:` entries: a C source file or a directory with a
//! Makefile is built on the host for the guest (statically, like the churn
//! program) and cached by the hash of its sources and the compiler; any
//! other file or directory is taken as it is, modes kept. Each entry goes
//! into a [`Tree`] at its guest path, which the run puts in the initrd or
//! uploads.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{io, PayloadError, GCC_DEADLINE, MAKE_DEADLINE, QUERY_DEADLINE};
use crate::cache::{self, Cache, Lock};
use crate::image::tree::Tree;
use crate::util::fsx;
use crate::util::tool::Tool;

/// The names `make` reads a makefile from, in its order.
const MAKEFILES: [&str; 3] = ["GNUmakefile", "makefile", "Makefile"];

/// One payload entry as installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The sha256 of what was installed: a file's contents, or for a
    /// directory the sha256 of its listing (one `path mode sha256` line
    /// per file, `path mode ->target` per symlink, `path/ mode` per
    /// directory, sorted, paths relative to `dst`).
    pub sha256: String,
    /// Built from source (a C file, a directory with a Makefile).
    pub built: bool,
    /// The build came from the cache.
    pub cached: bool,
}

/// What kind of entry `src` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `*.c`: compiled into one static program.
    CSource,
    /// A directory with a makefile: `make` in a copy; the directory as built.
    Make,
    /// Anything else: copied as is.
    Copy,
}

pub fn kind(src: &Path) -> Kind {
    if src.is_dir() {
        if MAKEFILES.iter().any(|m| src.join(m).is_file()) {
            return Kind::Make;
        }
        return Kind::Copy;
    }
    if src.extension().is_some_and(|e| e == "c") {
        return Kind::CSource;
    }
    Kind::Copy
}

/// Builds or reads `src` and adds it to `tree` at `dst`.
pub fn install(cache: &Cache, src: &Path, dst: &str, tree: &mut Tree) -> Result<Installed, PayloadError> {
    match kind(src) {
        Kind::CSource => {
            let (program, cached) = build_c(cache, src)?;
            let data = fs::read(&program).map_err(io(&program))?;
            let sha256 = fsx::sha256_bytes(&data);
            tree.file(dst, 0o755, data);
            Ok(Installed { sha256, built: true, cached })
        }
        Kind::Make => {
            let (dir, cached) = build_make(cache, src)?;
            let sha256 = add_tree(&dir, dst, tree)?;
            Ok(Installed { sha256, built: true, cached })
        }
        Kind::Copy => {
            let sha256 = add_tree(src, dst, tree)?;
            Ok(Installed { sha256, built: false, cached: false })
        }
    }
}

/// The compiler's identity, part of every build's key.
fn gcc_version() -> Result<Vec<u8>, PayloadError> {
    Tool::new("gcc", QUERY_DEADLINE).arg("--version").run().map(|o| o.stdout).map_err(PayloadError::Tool)
}

/// The cache entry `key`'s `name` (`program`, `tree`), built by `build`
/// into a fresh staging directory unless it is there; true when it was.
/// The lock is taken only to build, and what `build` left is published
/// whole or not at all.
fn cached(cache: &Cache, key: &str, name: &str, build: impl FnOnce(&Path) -> Result<(), PayloadError>) -> Result<(PathBuf, bool), PayloadError> {
    let entry = cache.payload_dir(key);
    let done = entry.join(name);
    if done.exists() {
        return Ok((done, true));
    }
    let _lock = cache.lock(Lock::Payload(key)).map_err(io(&cache.locks()))?;
    if done.exists() {
        return Ok((done, true));
    }
    let scratch = cache.scratch("payload-").map_err(io(&cache.tmp()))?;
    let stage = scratch.path().join("out");
    fs::create_dir(&stage).map_err(io(&stage))?;
    build(&stage)?;
    cache::publish_dir(&stage, &entry).map_err(io(&entry))?;
    Ok((done, false))
}

/// A failed build's output (stdout then stderr) as the lab's error.
fn build_failed(src: &Path, out: &std::process::Output, text: impl FnOnce(String) -> String) -> PayloadError {
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    PayloadError::ProgramBuild { source_file: src.to_path_buf(), output: text(all) }
}

/// `gcc -O2 -static` of one C file, or the cached program. The compiler is
/// given the file where it is, so its messages name the user's path.
fn build_c(cache: &Cache, src: &Path) -> Result<(PathBuf, bool), PayloadError> {
    let text = fs::read(src).map_err(io(src))?;
    let key = fsx::sha256_bytes(&[b"payload-c-v1\n".as_slice(), &gcc_version()?, &text].concat());
    cached(cache, &key, "program", |stage| {
        let built = Tool::new("gcc", GCC_DEADLINE)
            .args(["-O2", "-static", "-Wall", "-o"])
            .arg(stage.join("program"))
            .arg(src)
            .output()
            .map_err(PayloadError::Tool)?;
        match built.status.success() {
            true => Ok(()),
            false => Err(build_failed(src, &built, |t| t.trim_end().to_string())),
        }
    })
}

/// `make` in a copy of the directory, with `CC=gcc` and `LDFLAGS=-static`
/// in its environment, or the cached result: the whole directory as built.
fn build_make(cache: &Cache, src: &Path) -> Result<(PathBuf, bool), PayloadError> {
    let listing = listing(src)?;
    let key = fsx::sha256_bytes(&[b"payload-make-v1\n".as_slice(), &gcc_version()?, listing.as_bytes()].concat());
    cached(cache, &key, "tree", |stage| {
        let work = stage.join("tree");
        copy_dir(src, &work)?;
        let built = Tool::new("make", MAKE_DEADLINE)
            .arg("-C")
            .arg(&work)
            .env("CC", "gcc")
            .env("LDFLAGS", "-static")
            .output()
            .map_err(PayloadError::Tool)?;
        match built.status.success() {
            true => Ok(()),
            // Name the user's directory, not the scratch copy.
            false => Err(build_failed(src, &built, |t| crate::util::tool::tail(t.replace(&work.display().to_string(), &src.display().to_string()).as_bytes()))),
        }
    })
}

/// Copies a directory tree (files, directories and symlinks), modes kept.
fn copy_dir(from: &Path, to: &Path) -> Result<(), PayloadError> {
    fs::create_dir(to).map_err(io(to))?;
    let mode = fs::metadata(from).map_err(io(from))?.mode() & 0o7777;
    for e in read_dir_sorted(from)? {
        let (path, target) = (from.join(&e), to.join(&e));
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            copy_dir(&path, &target)?;
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(&path).map_err(io(&path))?;
            std::os::unix::fs::symlink(&link, &target).map_err(io(&target))?;
        } else {
            fs::copy(&path, &target).map_err(io(&path))?;
        }
    }
    fs::set_permissions(to, fs::Permissions::from_mode(mode | 0o700)).map_err(io(to))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<String>, PayloadError> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|source| PayloadError::Source { dir: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// The listing a directory's sha256 is taken of (see [`Installed::sha256`]).
fn listing(root: &Path) -> Result<String, PayloadError> {
    let mut out = String::new();
    walk(root, "", &mut |rel, meta, path| {
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() {
            out.push_str(&format!("{rel}/ {mode:o}\n"));
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(path).map_err(io(path))?;
            out.push_str(&format!("{rel} {mode:o} ->{}\n", link.display()));
        } else {
            out.push_str(&format!("{rel} {mode:o} {}\n", fsx::sha256_file(path).map_err(io(path))?));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f` for `root` (relative path `""`) and everything under it, in
/// sorted order, without following symlinks.
fn walk(root: &Path, rel: &str, f: &mut dyn FnMut(&str, &fs::Metadata, &Path) -> Result<(), PayloadError>) -> Result<(), PayloadError> {
    let meta = fs::symlink_metadata(root).map_err(io(root))?;
    f(rel, &meta, root)?;
    if meta.is_dir() {
        for name in read_dir_sorted(root)? {
            walk(&root.join(&name), &format!("{rel}/{name}"), f)?;
        }
    }
    Ok(())
}

/// Adds `src` (a file, or a directory with everything under it) to `tree`
/// at `dst`, modes kept; returns its sha256.
fn add_tree(src: &Path, dst: &str, tree: &mut Tree) -> Result<String, PayloadError> {
    let dst = dst.trim_end_matches('/');
    let meta = fs::metadata(src).map_err(io(src))?;
    if !meta.is_dir() {
        let data = fs::read(src).map_err(io(src))?;
        let sha256 = fsx::sha256_bytes(&data);
        tree.file(dst, meta.mode() & 0o7777, data);
        return Ok(sha256);
    }
    walk(src, "", &mut |rel, meta, path| {
        let at = format!("{dst}{rel}");
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() {
            tree.dir(&at, mode);
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(path).map_err(io(path))?;
            tree.symlink(&at, &link.to_string_lossy());
        } else {
            tree.file(&at, mode, fs::read(path).map_err(io(path))?);
        }
        Ok(())
    })?;
    Ok(fsx::sha256_bytes(listing(src)?.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tree::Node;

    #[test]
    fn kinds() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("p.c");
        fs::write(&c, "int main(void){return 0;}\n").unwrap();
        let conf = d.path().join("p.conf");
        fs::write(&conf, "x=1\n").unwrap();
        let plain = d.path().join("plain");
        fs::create_dir(&plain).unwrap();
        let made = d.path().join("made");
        fs::create_dir(&made).unwrap();
        fs::write(made.join("Makefile"), "all:\n\ttrue\n").unwrap();
        assert_eq!(kind(&c), Kind::CSource);
        assert_eq!(kind(&conf), Kind::Copy);
        assert_eq!(kind(&plain), Kind::Copy);
        assert_eq!(kind(&made), Kind::Make);
    }

    #[test]
    fn files_and_directories_are_copied_with_their_modes() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let f = d.path().join("conf");
        fs::write(&f, "hello\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        let dir = d.path().join("tree");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("sub/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("sub/run.sh", dir.join("link")).unwrap();
        let mut t = Tree::new();
        let a = install(&cache, &f, "/etc/app.conf", &mut t).unwrap();
        assert_eq!(a, Installed { sha256: fsx::sha256_bytes(b"hello\n"), built: false, cached: false });
        assert_eq!(t.get("/etc/app.conf"), Some(&Node::File { mode: 0o640, data: b"hello\n".to_vec() }));
        let b = install(&cache, &dir, "/opt/app/", &mut t).unwrap();
        assert!(!b.built && b.sha256.len() == 64);
        assert!(matches!(t.get("/opt/app/sub"), Some(Node::Dir { .. })));
        assert_eq!(t.get("/opt/app/sub/run.sh"), Some(&Node::File { mode: 0o750, data: b"#!/bin/sh\n".to_vec() }));
        assert_eq!(t.get("/opt/app/link"), Some(&Node::Symlink { target: "sub/run.sh".into() }));
        // The directory's hash changes with a mode.
        fs::set_permissions(dir.join("sub/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(install(&cache, &dir, "/opt/app", &mut Tree::new()).unwrap().sha256, b.sha256);
    }

    #[test]
    fn a_c_file_is_built_once_and_a_compile_error_carries_the_compilers_message() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let c = d.path().join("hello.c");
        fs::write(&c, "int main(void) { return 0; }\n").unwrap();
        let mut t = Tree::new();
        let first = install(&cache, &c, "/usr/local/bin/hello", &mut t).unwrap();
        assert!(first.built && !first.cached);
        assert!(matches!(t.get("/usr/local/bin/hello"), Some(Node::File { mode: 0o755, data }) if data.starts_with(b"\x7fELF")));
        let again = install(&cache, &c, "/usr/local/bin/hello", &mut Tree::new()).unwrap();
        assert!(again.cached && again.sha256 == first.sha256);
        let bad = d.path().join("bad.c");
        fs::write(&bad, "int main(void) { return nope; }\n").unwrap();
        let e = install(&cache, &bad, "/x", &mut Tree::new()).unwrap_err().to_string();
        assert!(e.contains("bad.c") && e.contains("nope"), "{e}");
    }
}
