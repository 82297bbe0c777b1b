//! A user's own disk image (`image: {disk: PATH}`): checked before a run
//! starts, and never written. [`inspect`] asks `qemu-img info` what the file
//! is and refuses what would only fail later, inside the guest's boot
//! deadline: a missing file, anything that is not a qcow2 or raw disk, and an
//! image another process (a VM still running on it) holds locked. A run then
//! boots from a qcow2 [`overlay`] whose backing file is the image, so every
//! write lands in the run's overlay.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::util::fsx;
use crate::util::tool::{self, Tool};

/// `qemu-img` reads headers and writes a few KiB; on a busy host it still
/// takes well under a second.
const QEMU_IMG_DEADLINE: Duration = Duration::from_secs(60);

/// A raw image smaller than this must show a partition table or an ext
/// superblock to count as a disk.
const MIN_RAW_SIZE: u64 = 1 << 20;

/// The disk image formats kernlab boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// The name QEMU and `qemu-img` use (`format=`, `-F`).
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A disk image that [`inspect`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// Absolute and canonical, so an overlay's backing file names it
    /// whatever the working directory.
    pub path: PathBuf,
    pub format: DiskFormat,
    /// The size the guest sees, in bytes.
    pub virtual_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk image `{}` does not exist: give the path of a qcow2 or raw disk image", path.display())]
    NotFound { path: PathBuf },
    #[error("`{}` is not a disk image: {reason}", path.display())]
    NotADisk { path: PathBuf, reason: String },
    #[error("disk image `{}` is in use by another process (qemu-img: {message}): stop the VM that runs on it, or boot a copy", path.display())]
    InUse { path: PathBuf, message: String },
    #[error("cannot read disk image `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot inspect disk image `{}`", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: tool::ToolError,
    },
    #[error("`qemu-img info` printed what kernlab cannot read for `{}`", path.display())]
    Info {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create the overlay `{}` on disk image `{}`", out.display(), base.display())]
    Overlay {
        base: PathBuf,
        out: PathBuf,
        #[source]
        source: tool::ToolError,
    },
    #[error("cannot put the overlay `{}` in place", path.display())]
    OverlayFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The part of `qemu-img info --output=json` kernlab reads.
#[derive(Debug, Deserialize)]
struct QemuImgInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
}

/// Checks that `path` is a qcow2 or raw disk image kernlab can boot.
pub fn inspect(path: &Path) -> Result<DiskInfo, DiskError> {
    let abs = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(DiskError::NotFound { path: path.to_path_buf() }),
        Err(source) => return Err(DiskError::Read { path: path.to_path_buf(), source }),
    };
    let not_a_disk = |reason: String| DiskError::NotADisk { path: abs.clone(), reason };
    let meta = std::fs::metadata(&abs).map_err(|source| DiskError::Read { path: abs.clone(), source })?;
    if !meta.is_file() {
        return Err(not_a_disk("it is not a regular file".to_string()));
    }
    // Read the head ourselves first: a file kernlab may not read is a
    // permission problem, not "not a disk", and the raw check needs it.
    let head = read_head(&abs).map_err(|source| DiskError::Read { path: abs.clone(), source })?;

    // Without `-U`, qemu-img takes the image's lock as QEMU would, so an
    // image a running VM writes to is refused here and not at boot.
    let out = Tool::new("qemu-img", QEMU_IMG_DEADLINE)
        .args(["info", "--output=json"])
        .arg(&abs)
        .output()
        .map_err(|source| DiskError::Inspect { path: abs.clone(), source })?;
    if !out.status.success() {
        let message = tool::tail(&out.stderr);
        if is_lock_failure(&message) {
            return Err(DiskError::InUse { path: abs, message: one_line(&message) });
        }
        return Err(not_a_disk(format!("qemu-img cannot open it: {}", one_line(&message))));
    }
    let info: QemuImgInfo = serde_json::from_slice(&out.stdout).map_err(|source| DiskError::Info { path: abs.clone(), source })?;
    let format = match info.format.as_str() {
        "qcow2" => DiskFormat::Qcow2,
        "raw" => {
            // qemu-img calls any file it does not recognize raw.
            if !looks_like_raw_disk(&head, meta.len()) {
                return Err(not_a_disk(format!(
                    "qemu-img reads it as raw, but it has no partition table (MBR or GPT), no ext2/3/4 file system, \
                     and is only {} bytes long; give a qcow2 or raw disk image",
                    meta.len()
                )));
            }
            DiskFormat::Raw
        }
        other => {
            let ext = if abs.extension().is_some_and(|e| e == "qcow2") { "converted.qcow2" } else { "qcow2" };
            let hint = format!("qemu-img convert -O qcow2 {} {}", abs.display(), abs.with_extension(ext).display());
            return Err(not_a_disk(format!("its format is `{other}`, and kernlab boots qcow2 or raw images: convert it with `{hint}`")));
        }
    };
    if info.virtual_size == 0 {
        return Err(not_a_disk("its virtual size is 0 bytes".to_string()));
    }
    Ok(DiskInfo { path: abs, format, virtual_size: info.virtual_size })
}

/// Creates a qcow2 overlay at `out` backed by `base` (0600, atomically), so
/// a guest booted from `out` never writes `base`.
pub fn overlay(base: &DiskInfo, out: &Path) -> Result<(), DiskError> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_err = |source| DiskError::OverlayFile { path: out.to_path_buf(), source };
    // qemu-img writes the file itself; it gets a name no reader looks at,
    // and the final name only once it is complete.
    let tmp = tempfile::Builder::new().prefix(".tmp-overlay-").tempfile_in(dir).map_err(file_err)?.into_temp_path();
    Tool::new("qemu-img", QEMU_IMG_DEADLINE)
        .args(["create", "-q", "-f", "qcow2", "-F", base.format.as_str(), "-b"])
        .arg(&base.path)
        .arg(&tmp)
        .run()
        .map_err(|source| DiskError::Overlay { base: base.path.clone(), out: out.to_path_buf(), source })?;
    fsx::set_private(&tmp).map_err(file_err)?;
    tmp.persist(out).map_err(|e| file_err(e.error))?;
    Ok(())
}

/// The first bytes of `path`: enough for the MBR/GPT signature and the ext
/// superblock's magic (fewer if the file is shorter).
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_LEN);
    std::fs::File::open(path)?.take(HEAD_LEN as u64).read_to_end(&mut head)?;
    Ok(head)
}

const HEAD_LEN: usize = 2048;
/// Boot signature at the end of the first sector: MBR, and GPT's protective MBR.
const BOOT_SIGNATURE_AT: usize = 510;
/// `s_magic` of an ext2/3/4 superblock, which starts at byte 1024.
const EXT_MAGIC_AT: usize = 1024 + 0x38;

/// Whether a file qemu-img calls raw looks like a disk: a boot signature,
/// an ext file system without a partition table, or at least 1 MiB.
fn looks_like_raw_disk(head: &[u8], len: u64) -> bool {
    let at = |i: usize, bytes: [u8; 2]| head.get(i..i + 2) == Some(&bytes[..]);
    at(BOOT_SIGNATURE_AT, [0x55, 0xAA]) || at(EXT_MAGIC_AT, 0xEF53u16.to_le_bytes()) || len >= MIN_RAW_SIZE
}

/// QEMU's message when another process holds the image's lock: "Failed to
/// get shared "write" lock" (or "exclusive"/"consistent read"), followed by
/// "Is another process using the image [PATH]?".
fn is_lock_failure(stderr: &str) -> bool {
    stderr.contains("Is another process using the image") || (stderr.contains("Failed to get") && stderr.contains(" lock"))
}

/// qemu-img's message on one line, without its `qemu-img: ` prefixes.
fn one_line(stderr: &str) -> String {
    stderr.lines().map(|l| l.trim().trim_start_matches("qemu-img: ")).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
