//! Paths inside an unpacked kernel tree. A package's symlinks mean paths of
//! the system it installs into: `lib/modules/<release>/build ->
//! /usr/src/linux-…-obj/x86_64/default` names a directory of the tree, not of
//! this machine. These helpers read and write such links as if the tree's
//! root were `/`, so a tree works wherever it lies (a scratch directory, the
//! cache entry it is renamed into).

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// A path component that matters once the root is fixed.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Up,
    Name(OsString),
}

fn parts(p: &Path) -> Vec<Part> {
    p.components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Part::Up),
            Component::Normal(n) => Some(Part::Name(n.to_os_string())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// `rel` inside `root`, following every symlink on the way as if `root` were
/// `/`: an absolute target starts again at `root`, and `..` stops at it, as
/// in a chroot. `None` if a component is missing or the links loop.
pub fn resolve_in_root(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut todo: Vec<Part> = parts(rel);
    todo.reverse();
    let mut done = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        let name = match part {
            Part::Up => {
                done.pop();
                continue;
            }
            Part::Name(n) => n,
        };
        let here = root.join(&done).join(&name);
        if fs::symlink_metadata(&here).ok()?.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = fs::read_link(&here).ok()?;
            if target.is_absolute() {
                done = PathBuf::new();
            }
            todo.extend(parts(&target).into_iter().rev());
        } else {
            done.push(name);
        }
    }
    Some(root.join(done))
}

/// Where `target`, a symlink target written in a package for a link in the
/// directory `dir` (both absolute paths of the installed system), points:
/// a path relative to the root, with `.` and `..` applied by name (`..`
/// stops at the root). The flag says whether a `..` had to stop there.
pub fn normalize_target(dir: &Path, target: &Path) -> (PathBuf, bool) {
    let mut out: Vec<OsString> = Vec::new();
    let mut clamped = false;
    let start = if target.is_absolute() { Vec::new() } else { parts(dir) };
    for part in start.into_iter().chain(parts(target)) {
        match part {
            Part::Up => clamped |= out.pop().is_none(),
            Part::Name(n) => out.push(n),
        }
    }
    (out.iter().collect(), clamped)
}

/// The relative symlink target that leads from a link in `dir` to `dest`
/// (both relative to the same root): `../` up to the root, then `dest`.
pub fn relative_target(dir: &Path, dest: &Path) -> PathBuf {
    let ups = parts(dir).len();
    let mut t: PathBuf = std::iter::repeat_n("..", ups).collect();
    t.push(dest);
    if t.as_os_str().is_empty() {
        t.push(".");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_links_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/src/linux-6.4.0-obj/x86_64/default")).unwrap();
        fs::write(root.join("usr/src/linux-6.4.0-obj/x86_64/default/Makefile"), "").unwrap();
        fs::create_dir_all(root.join("lib/modules/6.4.0-default")).unwrap();
        symlink("/usr/src/linux-6.4.0-obj/x86_64/default", root.join("lib/modules/6.4.0-default/build")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("lib/modules/6.4.0-default/build")),
            Some(root.join("usr/src/linux-6.4.0-obj/x86_64/default"))
        );
        // A chain: relative, then absolute, with `..` that would leave the root.
        symlink("../../../../../../usr/src", root.join("lib/modules/src")).unwrap();
        symlink("/lib/modules/src/linux-6.4.0-obj", root.join("obj")).unwrap();
        assert_eq!(resolve_in_root(root, Path::new("obj/x86_64/default/Makefile")), Some(root.join("usr/src/linux-6.4.0-obj/x86_64/default/Makefile")));
        // Missing components and loops give None.
        assert_eq!(resolve_in_root(root, Path::new("lib/modules/6.4.0-default/source")), None);
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_root(root, Path::new("loop/x")), None);
    }

    #[test]
    fn targets_are_normalized_and_made_relative() {
        let dir = Path::new("/lib/modules/6.4.0-default");
        assert_eq!(normalize_target(dir, Path::new("/usr/src/linux-obj/./x86_64")), (PathBuf::from("usr/src/linux-obj/x86_64"), false));
        assert_eq!(normalize_target(dir, Path::new("../../../usr/src/linux")), (PathBuf::from("usr/src/linux"), false));
        assert_eq!(normalize_target(dir, Path::new("../../../../../etc/passwd")), (PathBuf::from("etc/passwd"), true));
        assert_eq!(relative_target(Path::new("usr/lib/modules/6.4.0-default"), Path::new("usr/src/linux")), PathBuf::from("../../../../usr/src/linux"));
        assert_eq!(relative_target(Path::new(""), Path::new("usr/lib")), PathBuf::from("usr/lib"));
        assert_eq!(relative_target(Path::new("boot"), Path::new("")), PathBuf::from(".."));
        assert_eq!(relative_target(Path::new(""), Path::new("")), PathBuf::from("."));
    }
}
