//! Kernel packages into the cache: the one path by which kernels, their
//! headers, kernel RPMs and `-dbg` packages land there. A [`Fetch`] holds
//! the entry's lock from start to end; packages are downloaded with apt
//! (or, for RPMs, taken where they lie) into a scratch directory inside the
//! cache and hashed; the caller unpacks them into that scratch directory
//! and [`Fetch::publish`]es the complete result with one rename (same file
//! system). A crash at any step leaves at most a scratch directory, never
//! an entry that looks complete; a concurrent fetch of the same entry
//! waits on the lock, then finds it.

use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::apt::{self, AptError};
use crate::cache::{self, Cache, CacheLock, Lock};
use crate::ui::Bar;
use crate::util::fsx;
use crate::util::tool::{Tool, ToolError};

/// Unpacking one package (dpkg-deb streams a few hundred MB at most).
const UNPACK_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// A package file with its content hash.
#[derive(Debug, Clone)]
pub struct Package {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Apt(#[from] AptError),
    #[error("`apt-get download {specs}` left no .deb")]
    NoDeb { specs: String },
    #[error("cannot unpack `{}`", deb.display())]
    Unpack {
        deb: PathBuf,
        #[source]
        source: ToolError,
    },
    #[error("`{}` holds no `{member}`", deb.display())]
    NoMember { deb: PathBuf, member: String },
    #[error("reading `{}` from `{}`", member, deb.display())]
    Member {
        deb: PathBuf,
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("cache I/O on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PackageError + '_ {
    move |source| PackageError::Io { path: path.to_path_buf(), source }
}

/// One fetch into the cache, under its entry's lock.
pub struct Fetch<'c> {
    cache: &'c Cache,
    prefix: &'static str,
    // Dropped before the lock: the scratch goes while the entry is ours.
    scratch: Option<tempfile::TempDir>,
    _lock: CacheLock,
}

impl<'c> Fetch<'c> {
    /// Takes `lock`, blocking while another process fetches the same entry;
    /// scratch directories are named `prefix…`.
    pub fn begin(cache: &'c Cache, lock: Lock, prefix: &'static str) -> Result<Self, PackageError> {
        let guard = cache.lock(lock).map_err(io_at(&cache.locks()))?;
        Ok(Fetch { cache, prefix, scratch: None, _lock: guard })
    }

    /// The scratch directory, made on first use.
    pub fn scratch(&mut self) -> Result<&Path, PackageError> {
        if self.scratch.is_none() {
            self.scratch = Some(self.cache.scratch(self.prefix).map_err(io_at(&self.cache.tmp()))?);
        }
        Ok(self.scratch.as_ref().expect("made above").path())
    }

    /// Where to unpack: `root` in the scratch directory (not yet made).
    pub fn root(&mut self) -> Result<PathBuf, PackageError> {
        Ok(self.scratch()?.join("root"))
    }

    /// `apt-get download` of `specs` into the scratch directory, `bar`
    /// following the bytes; the `.deb` files, sorted by name, hashed.
    pub fn download(&mut self, specs: &[String], bar: &Bar) -> Result<Vec<Package>, PackageError> {
        self.download_for(crate::arch::Arch::host().unwrap_or_default(), specs, bar)
    }

    /// [`Fetch::download`] of packages built for `arch` (a foreign one
    /// through its private apt configuration, [`apt::Apt::for_arch`]).
    pub fn download_for(&mut self, arch: crate::arch::Arch, specs: &[String], bar: &Bar) -> Result<Vec<Package>, PackageError> {
        let apt = apt::Apt::for_arch(self.cache, arch)?;
        let dir = self.scratch()?.join("debs");
        fsx::private_dir(&dir).map_err(io_at(&dir))?;
        crate::ui::follow_bytes(bar, &dir, || apt.download(specs, &dir))?;
        let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_at(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        debs.sort();
        if debs.is_empty() {
            return Err(PackageError::NoDeb { specs: specs.join(" ") });
        }
        hash(&debs)
    }

    /// `dpkg-deb -x` of each package, in order, into `root`.
    pub fn unpack_debs(&self, debs: &[Package], root: &Path) -> Result<(), PackageError> {
        for d in debs {
            Tool::new("dpkg-deb", UNPACK_DEADLINE)
                .arg("-x")
                .arg(&d.path)
                .arg(root)
                .run()
                .map_err(|source| PackageError::Unpack { deb: d.path.clone(), source })?;
        }
        Ok(())
    }

    /// Writes the one file `member` of `deb` (e.g.
    /// `./usr/lib/debug/boot/vmlinux-…`) to `out` (0600), reading the
    /// package's data stream only up to it; `bar` (or, off a terminal, a
    /// log line every few seconds) follows the bytes. Returns its size.
    pub fn extract_member(&self, deb: &Package, member: &str, out: &Path, bar: &Bar) -> Result<u64, PackageError> {
        let member_err = |source| PackageError::Member { deb: deb.path.clone(), member: member.into(), source };
        let mut stream = Tool::new("dpkg-deb", UNPACK_DEADLINE)
            .arg("--fsys-tarfile")
            .arg(&deb.path)
            .stream()
            .map_err(|source| PackageError::Unpack { deb: deb.path.clone(), source })?;
        let mut written = None;
        {
            let mut archive = tar::Archive::new(stream.stdout());
            for entry in archive.entries().map_err(member_err)? {
                let mut entry = entry.map_err(member_err)?;
                if !same_member(&entry.path().map_err(member_err)?, member) {
                    continue;
                }
                let file = fsx::create_private(out).map_err(io_at(out))?;
                let mut w = Progress { inner: file, bar, what: member, done: 0, last_log: Instant::now() };
                written = Some(io::copy(&mut entry, &mut w).map_err(member_err)?);
                w.inner.sync_all().map_err(io_at(out))?;
                break;
            }
        }
        // Stopping at the member closes the stream: dpkg-deb ends on
        // SIGPIPE, which is no failure here; a deadline still is.
        let (status, stderr) = stream.finish().map_err(|source| PackageError::Unpack { deb: deb.path.clone(), source })?;
        match written {
            Some(n) if n > 0 => Ok(n),
            _ if !status.success() => Err(PackageError::Unpack {
                deb: deb.path.clone(),
                source: ToolError::Failed { command: format!("dpkg-deb --fsys-tarfile {}", deb.path.display()), status, stderr },
            }),
            _ => Err(PackageError::NoMember { deb: deb.path.clone(), member: member.into() }),
        }
    }

    /// Publishes `staged` (inside the scratch directory) as `dest` by one
    /// rename, unless another process published it first.
    pub fn publish(&self, staged: &Path, dest: &Path) -> Result<(), PackageError> {
        cache::publish_dir(staged, dest).map_err(io_at(dest))
    }
}

/// Package files on this machine (RPMs), hashed where they lie.
pub fn hash(files: &[PathBuf]) -> Result<Vec<Package>, PackageError> {
    files.iter().map(|p| Ok(Package { sha256: fsx::sha256_file(p).map_err(io_at(p))?, path: p.clone() })).collect()
}

/// Tar member names with or without the leading `./`.
fn same_member(a: &Path, b: &str) -> bool {
    let norm = |p: &Path| p.components().filter(|c| *c != Component::CurDir).collect::<PathBuf>();
    norm(a) == norm(Path::new(b))
}

/// A writer that moves a bar, or logs now and then when there is none.
struct Progress<'b, W> {
    inner: W,
    bar: &'b Bar,
    what: &'b str,
    done: u64,
    last_log: Instant,
}

impl<W: Write> Write for Progress<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        self.bar.position(self.done);
        if !self.bar.is_shown() && self.last_log.elapsed() >= Duration::from_secs(5) {
            tracing::info!("extracting {}: {} MiB written", self.what, self.done >> 20);
            self.last_log = Instant::now();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .deb as dpkg-deb builds it, holding `files` (path → content).
    fn deb(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let tree = dir.join("tree");
        for (p, data) in files {
            let f = tree.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, data).unwrap();
        }
        std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        std::fs::write(tree.join("DEBIAN/control"), "Package: kernlab-test\nVersion: 1\nArchitecture: all\nMaintainer: k <k@example.org>\nDescription: test\n").unwrap();
        let out = dir.join("kernlab-test_1_all.deb");
        Tool::new("dpkg-deb", Duration::from_secs(60)).args(["--root-owner-group", "-b"]).arg(&tree).arg(&out).run().unwrap();
        out
    }

    #[test]
    fn one_member_is_extracted_and_a_missing_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let big = vec![7u8; 3 << 20];
        let pkg = deb(d.path(), &[("usr/lib/debug/boot/vmlinux-6.1.0-test", &big), ("usr/lib/debug/lib/modules/x.ko", b"ko")]);
        let pkg = hash(&[pkg]).unwrap().remove(0);
        let mut f = Fetch::begin(&cache, Lock::Debug("test"), "debug-").unwrap();
        let root = f.root().unwrap();
        fsx::private_dir(&root).unwrap();
        let bar = Bar::bytes("test", "extracting", None);
        let out = root.join("vmlinux");
        assert_eq!(f.extract_member(&pkg, "./usr/lib/debug/boot/vmlinux-6.1.0-test", &out, &bar).unwrap(), 3 << 20);
        assert_eq!(std::fs::read(&out).unwrap(), big);
        let err = f.extract_member(&pkg, "./usr/lib/debug/boot/vmlinux-9.9", &root.join("other"), &bar).unwrap_err();
        assert!(matches!(err, PackageError::NoMember { .. }), "{err}");
        f.publish(&root, &cache.debug_dir("test")).unwrap();
        drop(f);
        assert!(cache.debug_dir("test").join("vmlinux").is_file());
        assert_eq!(std::fs::read_dir(cache.tmp()).unwrap().count(), 0, "scratch left behind");
    }

    #[test]
    fn member_names_match_with_or_without_dot() {
        assert!(same_member(Path::new("./usr/lib/x"), "usr/lib/x"));
        assert!(same_member(Path::new("usr/lib/x"), "./usr/lib/x"));
        assert!(!same_member(Path::new("usr/lib/x"), "./usr/lib/y"));
    }
}
