//! A module's source tree as kernlab takes it: every file under the
//! directory, sub-directories and any names included, less what is not
//! source: `.git` (a repository's or a submodule's), the objects a build
//! leaves (`*.o`, `*.ko`, `.*.cmd`, `Module.symvers`, …) and whatever the
//! tree's own `.gitignore` files ignore (read as git reads them, by the
//! `ignore` crate, also outside a git checkout). Its content hash keys the
//! module cache.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::fsx;

/// One entry of a tree, relative to its top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir(PathBuf),
    File { path: PathBuf, mode: u32 },
    Symlink { path: PathBuf, target: PathBuf },
}

impl Entry {
    pub fn path(&self) -> &Path {
        match self {
            Entry::Dir(p) | Entry::File { path: p, .. } | Entry::Symlink { path: p, .. } => p,
        }
    }
}

/// What a kernel module build leaves in its tree (kbuild's `clean`
/// targets): never source, so neither copied nor hashed.
fn is_build_output(name: &str) -> bool {
    const EXACT: [&str; 6] = ["Module.symvers", "modules.order", "Module.markers", ".tmp_versions", ".cache.mk", "built-in.a"];
    const SUFFIXES: [&str; 9] = [".o", ".ko", ".mod", ".mod.c", ".mod.o", ".cmd", ".a", ".dwo", ".ko.cmd"];
    EXACT.contains(&name) || SUFFIXES.iter().any(|s| name.ends_with(s)) || (name.starts_with(".tmp_") && name.len() > 5)
}

/// The tree's entries, sorted by path.
pub fn entries(top: &Path) -> Result<Vec<Entry>, std::io::Error> {
    let meta = fs::metadata(top)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, format!("`{}` is not a directory", top.display())));
    }
    let walk = ignore::WalkBuilder::new(top)
        .hidden(false)
        .parents(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .ignore(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_path(|a, b| a.cmp(b))
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            name != ".git" && !is_build_output(&name)
        })
        .build();
    let mut out = Vec::new();
    for item in walk {
        let item = item.map_err(|e| std::io::Error::other(e.to_string()))?;
        let Ok(rel) = item.path().strip_prefix(top) else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let rel = rel.to_path_buf();
        let ft = item.file_type().ok_or_else(|| std::io::Error::other(format!("`{}`: no file type", item.path().display())))?;
        if ft.is_symlink() {
            out.push(Entry::Symlink { path: rel, target: fs::read_link(item.path())? });
        } else if ft.is_dir() {
            out.push(Entry::Dir(rel));
        } else if ft.is_file() {
            let mode = fs::metadata(item.path())?.permissions().mode() & 0o777;
            out.push(Entry::File { path: rel, mode });
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

/// The tree's content hash: one line per entry (`path/` for a directory,
/// `path mode sha256` for a file, `path -> target` for a symlink).
pub fn hash(top: &Path, entries: &[Entry]) -> Result<String, std::io::Error> {
    let mut listing = String::new();
    for e in entries {
        match e {
            Entry::Dir(p) => listing.push_str(&format!("{}/\n", p.display())),
            Entry::File { path, mode } => listing.push_str(&format!("{} {mode:o} {}\n", path.display(), fsx::sha256_file(&top.join(path))?)),
            Entry::Symlink { path, target } => listing.push_str(&format!("{} -> {}\n", path.display(), target.display())),
        }
    }
    Ok(fsx::sha256_bytes(listing.as_bytes()))
}

/// Copies the entries of `top` into `dest` (which exists), modes kept.
pub fn copy(top: &Path, entries: &[Entry], dest: &Path) -> Result<(), std::io::Error> {
    for e in entries {
        let to = dest.join(e.path());
        match e {
            Entry::Dir(_) => fs::create_dir_all(&to)?,
            Entry::File { path, mode } => {
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::copy(top.join(path), &to)?;
                fs::set_permissions(&to, fs::Permissions::from_mode(*mode | 0o200))?;
            }
            Entry::Symlink { target, .. } => {
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent)?;
                }
                std::os::unix::fs::symlink(target, &to)?;
            }
        }
    }
    Ok(())
}

/// Whether `dir` holds something kernlab can build: a Kbuild, a makefile
/// or a dkms.conf at its top.
pub fn buildable(dir: &Path) -> bool {
    ["Kbuild", "Makefile", "makefile", "GNUmakefile", "dkms.conf"].iter().any(|f| dir.join(f).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_tree_is_taken_whole_less_git_outputs_and_ignored_files() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        for f in ["Makefile", "dkms.conf", "core/core.c", "core/Kbuild", "include/linux/prod.h", "cases/pipe/pipe.c", "patches/compat.patch", "third_party/lib/x.c", "notes.txt", ".clang-format"] {
            fs::create_dir_all(t.join(f).parent().unwrap()).unwrap();
            fs::write(t.join(f), f).unwrap();
        }
        // Build outputs, a repository, a submodule's .git file, ignored files.
        for f in ["core/core.o", "core/core.ko", "core/.core.o.cmd", "Module.symvers", "modules.order", "core/core.mod.c", ".git/HEAD", "third_party/.git", "scratch/big.bin", "core/gen.h"] {
            fs::create_dir_all(t.join(f).parent().unwrap()).unwrap();
            fs::write(t.join(f), f).unwrap();
        }
        fs::write(t.join(".gitignore"), "/scratch/\n").unwrap();
        fs::write(t.join("core/.gitignore"), "gen.h\n").unwrap();
        std::os::unix::fs::symlink("core/core.c", t.join("link.c")).unwrap();
        let e = entries(t).unwrap();
        let paths: Vec<String> = e.iter().map(|e| e.path().display().to_string()).collect();
        for want in ["Makefile", "dkms.conf", "core/core.c", "core/Kbuild", "include/linux/prod.h", "cases/pipe/pipe.c", "patches/compat.patch", "third_party/lib/x.c", ".clang-format", ".gitignore", "link.c", "core", "include/linux"] {
            assert!(paths.contains(&want.to_string()), "{want} missing from {paths:?}");
        }
        for not in ["core/core.o", "core/core.ko", "core/.core.o.cmd", "Module.symvers", "modules.order", "core/core.mod.c", ".git", ".git/HEAD", "third_party/.git", "scratch", "scratch/big.bin", "core/gen.h"] {
            assert!(!paths.contains(&not.to_string()), "{not} taken: {paths:?}");
        }
        let h = hash(t, &e).unwrap();
        // Outputs do not change the hash; a source edit does.
        fs::write(t.join("core/core.o"), "other").unwrap();
        assert_eq!(hash(t, &entries(t).unwrap()).unwrap(), h);
        fs::write(t.join("cases/pipe/pipe.c"), "edited").unwrap();
        assert_ne!(hash(t, &entries(t).unwrap()).unwrap(), h);

        let out = tempfile::tempdir().unwrap();
        copy(t, &e, out.path()).unwrap();
        assert_eq!(fs::read_to_string(out.path().join("include/linux/prod.h")).unwrap(), "include/linux/prod.h");
        assert_eq!(fs::read_link(out.path().join("link.c")).unwrap(), Path::new("core/core.c"));
        assert!(!out.path().join("core/core.o").exists());
        assert!(buildable(t));
        assert!(!buildable(&t.join("include")));
        assert!(entries(&t.join("Makefile")).is_err());
    }
}
