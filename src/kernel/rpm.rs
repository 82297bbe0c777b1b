//! Kernel RPMs unpacked without rpm(8): the `rpm` crate reads the header
//! and streams the payload (gzip, zstd or xz), and the files are written
//! into a tree that stands on its own wherever it lies:
//!
//! - usr-merge: `/lib`, `/lib64`, `/bin`, `/sbin` go to `usr/…`, with
//!   top-level links back, so a package that ships `/lib/modules/<release>`
//!   (SLE 15) and one that ships `/usr/lib/modules/<release>` (SLE 16,
//!   Tumbleweed) end up in the same place, and `lib/modules/<release>`
//!   works for both;
//! - symlinks that point outside the tree (`/usr/src/…`) are rewritten
//!   into relative ones that point at the same path inside it;
//! - a kernel that ships its image only as `usr/lib/modules/<release>/vmlinuz`
//!   (`/boot` being filled by a scriptlet on a real system) gets
//!   `boot/vmlinuz-<release>` and friends as links to it.
//!
//! Scriptlets are not run, owners are not set, device nodes are skipped:
//! none of that matters for booting the kernel or building against it.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use ::rpm::{FileFlags, FileType, IndexTag, PackageMetadata, PackageReader};

use super::tree;

/// The first bytes of every RPM (the lead's magic).
const MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];

/// Top-level directories that usr-merge moves under `usr/`.
const MERGED: [&str; 4] = ["lib", "lib64", "bin", "sbin"];

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("not an RPM package: {0}")]
    NotRpm(String),
    #[error("bad payload: {0}")]
    Payload(String),
    #[error("I/O on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io { path: path.to_path_buf(), source }
}

/// Reads the package's header: `name-version-release`, after checking
/// that the file is a binary RPM.
pub fn identify(pkg: &Path) -> Result<(String, PackageMetadata), UnpackError> {
    let mut magic = [0u8; 4];
    File::open(pkg).and_then(|mut f| f.read_exact(&mut magic)).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => UnpackError::NotRpm("shorter than an RPM lead".into()),
        _ => UnpackError::Io { path: pkg.to_path_buf(), source: e },
    })?;
    if magic != MAGIC {
        return Err(UnpackError::NotRpm("no RPM lead magic at the start".into()));
    }
    let meta = PackageMetadata::open(pkg).map_err(|e| UnpackError::NotRpm(short(&e.to_string())))?;
    if meta.is_source_package() {
        return Err(UnpackError::NotRpm("a source RPM, not a binary package".into()));
    }
    let field = |r: Result<&str, ::rpm::Error>| r.map(str::to_string).map_err(|e| UnpackError::NotRpm(short(&e.to_string())));
    let nvr = format!("{}-{}-{}", field(meta.get_name())?, field(meta.get_version())?, field(meta.get_release())?);
    Ok((nvr, meta))
}

/// Error texts of the parser may carry the whole input: keep the start.
fn short(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Unpacks the payload of `pkg` into `root` (created if needed; several
/// packages may go into one root, later files replacing earlier ones).
pub fn unpack(pkg: &Path, root: &Path) -> Result<(), UnpackError> {
    let mut reader = PackageReader::open(pkg).map_err(|e| UnpackError::NotRpm(short(&e.to_string())))?;
    // Members of a hardlink set share (device, inode) in the header; the
    // payload carries the content once, for one of them.
    let identities: HashMap<PathBuf, (u32, u32)> = {
        let h = &reader.metadata.header;
        let devices = h.get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEDEVICES).unwrap_or_default();
        let inodes = h.get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEINODES).unwrap_or_default();
        let entries = reader.metadata.get_file_entries().map_err(|e| UnpackError::Payload(short(&e.to_string())))?;
        entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((e.path(), (*devices.get(i)?, *inodes.get(i)?))))
            .collect()
    };
    fs::create_dir_all(root).map_err(io_at(root))?;
    let mut dirs = HashSet::new();
    let mut content_at: HashMap<(u32, u32), PathBuf> = HashMap::new();
    let mut links_to_make: Vec<(PathBuf, (u32, u32))> = Vec::new();
    while let Some(mut file) = reader.next_file().map_err(|e| UnpackError::Payload(short(&e.to_string())))? {
        let meta = file.metadata.clone();
        if meta.flags().contains(FileFlags::GHOST) {
            continue;
        }
        let orig = meta.path();
        let Some(rel) = merged_path(&orig)? else { continue };
        let dest = root.join(&rel);
        match meta.file_type() {
            FileType::Dir => make_dirs(root, &rel, &mut dirs)?,
            FileType::Regular => {
                make_dirs(root, rel.parent().unwrap_or(Path::new("")), &mut dirs)?;
                clear(&dest, &orig)?;
                let id = identities.get(&orig).copied();
                if !file.has_payload() {
                    match id {
                        Some(id) => links_to_make.push((rel, id)),
                        None => return Err(UnpackError::Payload(format!("`{}` has no content", orig.display()))),
                    }
                    continue;
                }
                let mut out = File::create(&dest).map_err(io_at(&dest))?;
                io::copy(&mut file, &mut out).map_err(|e| UnpackError::Payload(format!("`{}`: {e}", orig.display())))?;
                file.finish().map_err(|e| UnpackError::Payload(format!("`{}`: {e}", orig.display())))?;
                // The package's permission bits, without set-id bits, and
                // always writable by us (the cache must stay removable).
                let mode = (u32::from(meta.permissions()) & 0o777) | 0o600;
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io_at(&dest))?;
                if let Some(id) = id {
                    content_at.insert(id, rel);
                }
            }
            FileType::SymbolicLink => {
                let dir = rel.parent().unwrap_or(Path::new(""));
                make_dirs(root, dir, &mut dirs)?;
                clear(&dest, &orig)?;
                let target = Path::new(meta.linkto().unwrap_or(""));
                if target.as_os_str().is_empty() {
                    return Err(UnpackError::Payload(format!("symlink `{}` has no target", orig.display())));
                }
                let orig_dir = orig.parent().unwrap_or(Path::new("/"));
                let (dest_in_root, escapes) = tree::normalize_target(orig_dir, target);
                // Relative links stay as written unless usr-merge moved the
                // link or they climb out of the tree.
                let moved = rel.parent() != orig_dir.strip_prefix("/").ok();
                let t = if target.is_absolute() || moved || escapes {
                    let dest_in_root = merged_path(&Path::new("/").join(&dest_in_root))?.unwrap_or_default();
                    tree::relative_target(dir, &dest_in_root)
                } else {
                    target.to_path_buf()
                };
                symlink(&t, &dest).map_err(io_at(&dest))?;
            }
            // Device nodes, FIFOs and sockets: nothing a kernel tree needs.
            _ => {}
        }
    }
    for (rel, id) in links_to_make {
        let Some(src) = content_at.get(&id) else {
            return Err(UnpackError::Payload(format!("hardlink `/{}` has no member with content", rel.display())));
        };
        let dest = root.join(&rel);
        fs::hard_link(root.join(src), &dest).map_err(io_at(&dest))?;
    }
    Ok(())
}

/// The place of a payload path in the tree: relative, checked (absolute,
/// no `..`), with usr-merge applied. `None` for `/` itself.
fn merged_path(p: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut c = p.components();
    if c.next() != Some(Component::RootDir) {
        return Err(UnpackError::Payload(format!("path `{}` is not absolute", p.display())));
    }
    let mut out = PathBuf::new();
    for (i, part) in c.enumerate() {
        match part {
            Component::Normal(n) => {
                if i == 0 && MERGED.iter().any(|m| n == *m) {
                    out.push("usr");
                }
                out.push(n);
            }
            Component::CurDir => {}
            _ => return Err(UnpackError::Payload(format!("path `{}` leaves the package root", p.display()))),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates `rel` and its parents under `root` as real directories; a file
/// or symlink on the way is an error (nothing is written through a link).
fn make_dirs(root: &Path, rel: &Path, known: &mut HashSet<PathBuf>) -> Result<(), UnpackError> {
    let mut at = PathBuf::new();
    for c in rel.components() {
        at.push(c);
        if known.contains(&at) {
            continue;
        }
        let p = root.join(&at);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(UnpackError::Payload(format!("`/{}` is not a directory but holds files", at.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&p).map_err(io_at(&p))?,
            Err(e) => return Err(UnpackError::Io { path: p, source: e }),
        }
        known.insert(at.clone());
    }
    Ok(())
}

/// Removes a file or link another package put at `dest`.
fn clear(dest: &Path, orig: &Path) -> Result<(), UnpackError> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => Err(UnpackError::Payload(format!("`{}` is a directory in another package", orig.display()))),
        Ok(_) => fs::remove_file(dest).map_err(io_at(dest)),
        Err(_) => Ok(()),
    }
}

/// After every package is unpacked: the top-level usr-merge links, and
/// `boot/` links for a kernel that ships its image under its module
/// directory only.
pub fn finish_layout(root: &Path) -> io::Result<()> {
    for m in MERGED {
        if root.join("usr").join(m).is_dir() && fs::symlink_metadata(root.join(m)).is_err() {
            symlink(Path::new("usr").join(m), root.join(m))?;
        }
    }
    let Ok(releases) = fs::read_dir(root.join("usr/lib/modules")) else { return Ok(()) };
    for r in releases.filter_map(|e| e.ok()) {
        let release = r.file_name().to_string_lossy().into_owned();
        for (file, boot) in [("vmlinuz", "vmlinuz"), ("config", "config"), ("System.map", "System.map")] {
            let have = r.path().join(file);
            let want = root.join(format!("boot/{boot}-{release}"));
            if have.is_file() && fs::symlink_metadata(&want).is_err() {
                fs::create_dir_all(root.join("boot"))?;
                symlink(Path::new("../usr/lib/modules").join(&release).join(file), &want)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ::rpm::{BuildConfig, CompressionType, FileOptions, PackageBuilder};

    /// An entry of a test package.
    pub enum E<'a> {
        File(&'a str, &'a [u8]),
        Link(&'a str, &'a str),
        Dir(&'a str),
    }

    /// Writes a small RPM with `entries` to `path`.
    pub fn build(path: &Path, name: &str, compression: CompressionType, entries: &[E]) {
        let mut b = PackageBuilder::new(name, "6.4.0", "GPL-2.0-only", "x86_64", "kernlab test package");
        b.using_config(BuildConfig::default().compression(compression)).release("150600.23.25.1");
        for e in entries {
            match e {
                E::File(p, data) => b.with_file_contents(data.to_vec(), FileOptions::new(*p).permissions(0o644)),
                E::Link(p, t) => b.with_symlink(FileOptions::symlink(*p, *t)),
                E::Dir(p) => b.with_dir_entry(FileOptions::dir(*p)),
            }
            .unwrap();
        }
        b.build().unwrap().write_file(path).unwrap();
    }

    #[test]
    fn packages_merge_into_one_self_contained_tree() {
        let d = tempfile::tempdir().unwrap();
        let (k, dev) = (d.path().join("k.rpm"), d.path().join("dev.rpm"));
        // SLE 16 style: the image and modules under /usr/lib/modules only.
        build(
            &k,
            "kernel-default",
            CompressionType::Zstd,
            &[
                E::File("/usr/lib/modules/6.4.0-1-default/vmlinuz", b"kernel"),
                E::File("/usr/lib/modules/6.4.0-1-default/config", b"CONFIG_X=y\n"),
                E::File("/usr/lib/modules/6.4.0-1-default/kernel/fs/x.ko.zst", b"module"),
            ],
        );
        // SLE 15 style devel: /lib/modules/…/build, absolute, and a relative link that climbs out.
        build(
            &dev,
            "kernel-default-devel",
            CompressionType::Xz,
            &[
                E::Dir("/usr/src/linux-6.4.0-1-obj/x86_64/default"),
                E::File("/usr/src/linux-6.4.0-1-obj/x86_64/default/Makefile", b"include /usr/src/linux-6.4.0-1/Makefile\n"),
                E::Link("/lib/modules/6.4.0-1-default/build", "/usr/src/linux-6.4.0-1-obj/x86_64/default"),
                E::Link("/lib/modules/6.4.0-1-default/source", "../../../usr/src/linux-6.4.0-1"),
                E::Link("/usr/src/linux-6.4.0-1-obj/x86_64/default/etc", "../../../../../../../etc"),
                E::Link("/usr/src/linux-6.4.0-1-obj/x86_64/default/rel", "Makefile"),
            ],
        );
        assert_eq!(identify(&k).unwrap().0, "kernel-default-6.4.0-150600.23.25.1");
        let root = d.path().join("root");
        unpack(&k, &root).unwrap();
        unpack(&dev, &root).unwrap();
        finish_layout(&root).unwrap();

        assert_eq!(fs::read(root.join("boot/vmlinuz-6.4.0-1-default")).unwrap(), b"kernel");
        assert_eq!(fs::read(root.join("lib/modules/6.4.0-1-default/kernel/fs/x.ko.zst")).unwrap(), b"module");
        assert!(root.join("lib/modules/6.4.0-1-default/vmlinuz").is_file());
        // Links point inside the tree, relatively: it can move.
        let build = root.join("usr/lib/modules/6.4.0-1-default/build");
        assert_eq!(fs::read_link(&build).unwrap(), Path::new("../../../../usr/src/linux-6.4.0-1-obj/x86_64/default"));
        assert!(build.join("Makefile").is_file());
        assert_eq!(fs::read_link(root.join("usr/lib/modules/6.4.0-1-default/source")).unwrap(), Path::new("../../../../usr/src/linux-6.4.0-1"));
        let obj = root.join("usr/src/linux-6.4.0-1-obj/x86_64/default");
        assert_eq!(fs::read_link(obj.join("etc")).unwrap(), Path::new("../../../../../etc"));
        assert_eq!(fs::read_link(obj.join("rel")).unwrap(), Path::new("Makefile"));
        let moved = d.path().join("moved");
        fs::rename(&root, &moved).unwrap();
        assert!(moved.join("lib/modules/6.4.0-1-default/build/Makefile").is_file());
    }

    #[test]
    fn hardlinked_files_are_unpacked_as_hardlinks() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("k.rpm");
        let mut b = PackageBuilder::new("kernel-default", "6.4.0", "GPL-2.0-only", "x86_64", "test");
        for p in ["/boot/vmlinuz-6.4.0-1-default", "/usr/lib/modules/6.4.0-1-default/vmlinuz"] {
            b.with_file_contents(b"image".to_vec(), FileOptions::new(p).permissions(0o644).hardlink("image")).unwrap();
        }
        b.build().unwrap().write_file(&pkg).unwrap();
        let root = d.path().join("root");
        unpack(&pkg, &root).unwrap();
        let (a, b) = (root.join("boot/vmlinuz-6.4.0-1-default"), root.join("usr/lib/modules/6.4.0-1-default/vmlinuz"));
        assert_eq!(fs::read(&a).unwrap(), b"image");
        assert_eq!(fs::metadata(&a).unwrap().ino(), fs::metadata(&b).unwrap().ino());
    }

    #[test]
    fn what_is_not_an_rpm_is_named_so() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kernel-default.rpm");
        fs::write(&p, b"<html>not found</html>").unwrap();
        assert!(matches!(identify(&p), Err(UnpackError::NotRpm(m)) if m.contains("magic")), "{:?}", identify(&p));
        fs::write(&p, b"\xed\xab").unwrap();
        assert!(matches!(identify(&p), Err(UnpackError::NotRpm(_))));
        fs::write(&p, [&MAGIC[..], &[0u8; 200]].concat()).unwrap();
        assert!(matches!(identify(&p), Err(UnpackError::NotRpm(_))));
    }

    #[test]
    fn paths_out_of_the_root_are_refused() {
        assert!(merged_path(Path::new("/usr/../../etc/x")).is_err());
        assert!(merged_path(Path::new("etc/x")).is_err());
        assert_eq!(merged_path(Path::new("/lib/modules")).unwrap(), Some(PathBuf::from("usr/lib/modules")));
        assert_eq!(merged_path(Path::new("/library/x")).unwrap(), Some(PathBuf::from("library/x")));
        assert_eq!(merged_path(Path::new("/")).unwrap(), None);
    }
}
