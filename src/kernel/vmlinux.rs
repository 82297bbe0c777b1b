//! The uncompressed kernel. A bzImage carries the kernel ELF (`vmlinux`)
//! compressed behind a real-mode setup; under TCG, decompressing it in the
//! guest costs up to 2.5 s of every boot (XZ). A kernel built with
//! `CONFIG_PVH=y` can instead be started directly from its ELF through the
//! PVH entry point (QEMU's `-kernel vmlinux`), so kernlab extracts the ELF
//! once on the host, caches it next to the kernel and boots that. Anything
//! that stops the extraction (no PVH, a compression kernlab does not read, a
//! payload that is not an ELF with the PVH note) leaves the bzImage as the
//! boot image, with the reason.
//!
//! The header is the x86 boot protocol's (Documentation/arch/x86/boot.rst):
//! `setup_sects` at 0x1f1, `HdrS` at 0x202, the protocol version at 0x206,
//! and since 2.08 `payload_offset`/`payload_length` at 0x248/0x24c, the
//! offset counted from the start of the protected-mode code, which follows
//! the `setup_sects + 1` sectors of setup. The payload's last four bytes
//! are the uncompressed length (gzip's own ISIZE, or the size the kernel's
//! build appends after the other formats).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::cache::{Cache, Lock};
use crate::util::{error_chain, fsx};

/// Bumped when the extraction or what is cached with it changes (and so
/// part of a snapshot's key: the vmlinux booted is this extraction of the
/// bzImage).
pub const FORMAT: u32 = 1;

/// How a bzImage's payload is compressed (`CONFIG_KERNEL_*`), by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadCompression {
    Gzip,
    Xz,
    Zstd,
    Lz4,
    Lzma,
    Bzip2,
    Lzo,
    /// An uncompressed ELF (`CONFIG_KERNEL_UNCOMPRESSED`).
    None,
}

impl PayloadCompression {
    /// The compression a payload starts with, if any known one.
    pub fn from_magic(b: &[u8]) -> Option<Self> {
        let starts = |m: &[u8]| b.starts_with(m);
        Some(if starts(&[0x1f, 0x8b]) || starts(&[0x1f, 0x9e]) {
            Self::Gzip
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if starts(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
            Self::Lz4
        } else if starts(&[0x5d, 0x00, 0x00]) {
            Self::Lzma
        } else if starts(b"BZh") {
            Self::Bzip2
        } else if starts(&[0x89, b'L', b'Z', b'O']) {
            Self::Lzo
        } else if starts(b"\x7fELF") {
            Self::None
        } else {
            return None;
        })
    }

    /// Whether kernlab can decompress it. Debian's kernels use XZ (6.1
    /// generic), LZ4 (6.1 cloud) and ZSTD (6.12); SUSE's use ZSTD or gzip.
    /// LZMA, bzip2 and LZO are rare on x86 distro kernels; those boot as
    /// bzImage.
    pub fn supported(self) -> bool {
        !matches!(self, Self::Lzma | Self::Bzip2 | Self::Lzo)
    }
}

impl std::fmt::Display for PayloadCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
            Self::Lzma => "lzma",
            Self::Bzip2 => "bzip2",
            Self::Lzo => "lzo",
            Self::None => "none",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("not a bzImage: {0}")]
    NotBzImage(String),
    #[error("boot protocol {0}.{1:02} predates payload_offset (2.08)")]
    OldProtocol(u8, u8),
    #[error("the payload ({offset}+{length}) lies outside the {size}-byte image")]
    PayloadOutOfRange { offset: u64, length: u64, size: u64 },
    #[error("the payload starts with {0}, no compression magic kernlab knows")]
    UnknownCompression(String),
    #[error("the payload is {0}-compressed, which kernlab does not decompress (gzip, xz, zstd and lz4 only)")]
    Unsupported(PayloadCompression),
    #[error("decompressing the {compression} payload")]
    Decompress {
        compression: PayloadCompression,
        #[source]
        source: std::io::Error,
    },
    #[error("the {compression} payload decompressed to {got} bytes, but its trailer says {want}")]
    Length { compression: PayloadCompression, got: usize, want: u32 },
    #[error("the payload is not a 64-bit x86 ELF: {0}")]
    NotElf(String),
    #[error("the ELF has no PVH entry note (Xen, XEN_ELFNOTE_PHYS32_ENTRY = 18)")]
    NoPvhNote,
}

/// The compressed kernel inside a bzImage.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    pub compression: PayloadCompression,
    pub data: &'a [u8],
    /// The uncompressed length from the payload's trailer.
    pub uncompressed_len: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Finds the payload through the setup header. Pure.
pub fn payload(image: &[u8]) -> Result<Payload<'_>, ExtractError> {
    if image.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Err(ExtractError::NotBzImage("no `HdrS` setup header at 0x202".into()));
    }
    let version = u16_at(image, 0x206).unwrap_or(0);
    if version < 0x0208 {
        return Err(ExtractError::OldProtocol((version >> 8) as u8, version as u8));
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => n as u64,
    };
    let (Some(offset), Some(length)) = (u32_at(image, 0x248), u32_at(image, 0x24c)) else {
        return Err(ExtractError::NotBzImage("header too short".into()));
    };
    let start = (setup_sects + 1) * 512 + offset as u64;
    let end = start + length as u64;
    if length < 8 || end > image.len() as u64 {
        return Err(ExtractError::PayloadOutOfRange { offset: start, length: length as u64, size: image.len() as u64 });
    }
    let data = &image[start as usize..end as usize];
    let compression = PayloadCompression::from_magic(data)
        .ok_or_else(|| ExtractError::UnknownCompression(hex::encode(&data[..data.len().min(6)])))?;
    let uncompressed_len = u32_at(data, data.len() - 4).expect("length checked");
    Ok(Payload { compression, data, uncompressed_len })
}

/// The decompressed payload, its length checked against the trailer.
pub fn decompress_payload(p: &Payload<'_>) -> Result<Vec<u8>, ExtractError> {
    let c = p.compression;
    if !c.supported() {
        return Err(ExtractError::Unsupported(c));
    }
    let err = |source| ExtractError::Decompress { compression: c, source };
    // gzip's trailer is its own ISIZE; the other formats have the length
    // appended after the stream, where their decoders would take it for
    // the start of another one.
    let stream = match c {
        PayloadCompression::Gzip | PayloadCompression::None => p.data,
        _ => &p.data[..p.data.len() - 4],
    };
    let want = p.uncompressed_len as usize;
    let mut out = Vec::with_capacity(want);
    match c {
        PayloadCompression::None => out.extend_from_slice(stream),
        PayloadCompression::Gzip => {
            flate2::read::GzDecoder::new(stream).read_to_end(&mut out).map_err(err)?;
        }
        PayloadCompression::Xz => {
            liblzma::read::XzDecoder::new(stream).read_to_end(&mut out).map_err(err)?;
        }
        PayloadCompression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(stream).map_err(err)?;
            // `zstd -22 --ultra` may use windows beyond the default limit.
            d.window_log_max(31).map_err(err)?;
            d.read_to_end(&mut out).map_err(err)?;
        }
        PayloadCompression::Lz4 => out = unlz4_legacy(stream, want).map_err(err)?,
        PayloadCompression::Lzma | PayloadCompression::Bzip2 | PayloadCompression::Lzo => unreachable!("checked above"),
    }
    // An uncompressed payload carries no length trailer to check.
    if c != PayloadCompression::None && out.len() as u64 % (1 << 32) != want as u64 {
        return Err(ExtractError::Length { compression: c, got: out.len(), want: p.uncompressed_len });
    }
    Ok(out)
}

const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// The LZ4 "legacy" frame `lz4 -l` writes and the kernel's unlz4 reads: the
/// magic, then blocks of `[u32 compressed size][LZ4 block]`, each
/// decompressing to at most 8 MiB; a repeated magic starts another frame.
fn unlz4_legacy(data: &[u8], size_hint: usize) -> std::io::Result<Vec<u8>> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    if u32_at(data, 0) != Some(LZ4_LEGACY_MAGIC) {
        return Err(bad("no LZ4 legacy magic".into()));
    }
    let mut out = Vec::with_capacity(size_hint);
    let mut pos = 4;
    while pos < data.len() {
        let n = u32_at(data, pos).ok_or_else(|| bad(format!("truncated block header at {pos}")))?;
        pos += 4;
        if n == LZ4_LEGACY_MAGIC {
            continue;
        }
        let block = data.get(pos..pos + n as usize).ok_or_else(|| bad(format!("block of {n} bytes at {pos} runs past the end")))?;
        pos += n as usize;
        let len = out.len();
        out.resize(len + LZ4_LEGACY_BLOCK, 0);
        let got = lz4_flex::block::decompress_into(block, &mut out[len..]).map_err(|e| bad(format!("block at {}: {e}", pos - n as usize)))?;
        out.truncate(len + got);
    }
    Ok(out)
}

/// Checks that `elf` is a 64-bit little-endian x86 ELF with the PVH entry
/// note, and returns the entry's physical address. Pure.
pub fn pvh_entry(elf: &[u8]) -> Result<u64, ExtractError> {
    let not = |m: &str| ExtractError::NotElf(m.to_string());
    if !elf.starts_with(b"\x7fELF") {
        return Err(not("no ELF magic"));
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(not("not ELF64 little-endian"));
    }
    if u16_at(elf, 0x12) != Some(crate::arch::Arch::X86_64.elf_machine()) {
        return Err(not(&format!("e_machine is not {}", crate::arch::Arch::X86_64.name())));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(elf, 0x20), u16_at(elf, 0x36), u16_at(elf, 0x38)) else {
        return Err(not("truncated ELF header"));
    };
    for i in 0..phnum as u64 {
        let ph = (phoff + i * phentsize as u64) as usize;
        let (Some(p_type), Some(off), Some(size)) = (u32_at(elf, ph), u64_at(elf, ph + 8), u64_at(elf, ph + 32)) else {
            return Err(not("truncated program headers"));
        };
        const PT_NOTE: u32 = 4;
        if p_type != PT_NOTE {
            continue;
        }
        let notes = elf.get(off as usize..(off + size) as usize).ok_or_else(|| not("a note segment lies outside the file"))?;
        if let Some(entry) = find_pvh_note(notes) {
            return Ok(entry);
        }
    }
    Err(ExtractError::NoPvhNote)
}

/// The PVH entry in a note segment: name `Xen`, type 18, a 32- or 64-bit address.
fn find_pvh_note(mut notes: &[u8]) -> Option<u64> {
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    let pad4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (u32_at(notes, 0)? as usize, u32_at(notes, 4)? as usize, u32_at(notes, 8)?);
        let name = notes.get(12..12 + namesz)?;
        let desc_at = 12 + pad4(namesz);
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.strip_suffix(&[0]).unwrap_or(name) == b"Xen" {
            return match descsz {
                4 => u32_at(desc, 0).map(u64::from),
                8 => u64_at(desc, 0),
                _ => None,
            };
        }
        notes = notes.get(desc_at + pad4(descsz)..)?;
    }
    None
}

/// A bzImage's ELF, decompressed and checked.
#[derive(Debug)]
pub struct Extracted {
    pub elf: Vec<u8>,
    pub compression: PayloadCompression,
    pub pvh_entry: u64,
}

/// Payload → decompressed → checked ELF with a PVH note.
pub fn extract(image: &[u8]) -> Result<Extracted, ExtractError> {
    let p = payload(image)?;
    let elf = decompress_payload(&p)?;
    let pvh_entry = pvh_entry(&elf)?;
    Ok(Extracted { elf, compression: p.compression, pvh_entry })
}

/// `name=y` (or `=m`) in a kernel config's text.
pub fn config_enabled(config: &str, name: &str) -> Option<char> {
    config.lines().find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix('=')?;
        v.chars().next().filter(|c| matches!(c, 'y' | 'm'))
    })
}

/// Which kernel image a VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// The distro's compressed `vmlinuz`: the guest decompresses it at every boot.
    Bzimage,
    /// The uncompressed ELF, entered through PVH.
    Vmlinux,
    /// Another architecture's kernel image as the distro ships it
    /// (`Arch::image_format`, arm64's `Image.gz`), which QEMU loads as it is.
    Image,
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageFormat::Bzimage => "bzimage",
            ImageFormat::Vmlinux => "vmlinux",
            ImageFormat::Image => "image",
        })
    }
}

/// What kernlab knows about booting this kernel uncompressed, for the
/// machine choice and the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BootImages {
    /// The bzImage (`boot/vmlinuz-<release>`).
    pub bzimage: PathBuf,
    /// The extracted ELF, when there is one.
    pub vmlinux: Option<PathBuf>,
    /// How the bzImage's payload is compressed, when its header was read.
    pub compression: Option<PayloadCompression>,
    /// `CONFIG_PVH` from `boot/config-<release>`; `None` without a config.
    pub pvh: Option<bool>,
    /// Why there is no vmlinux, or where it came from.
    pub note: String,
}

/// What the cache remembers of one extraction, success or not, so a
/// failure is not retried at every run.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    vmlinuz_sha256: String,
    compression: Option<PayloadCompression>,
    /// `Ok(bytes)` or the reason it failed.
    outcome: Result<u64, String>,
}

/// Where a kernel's extracted ELF lives: inside its cache entry, or for a
/// local tree (not the cache's to write into) in the cache keyed by the
/// vmlinuz's hash.
fn dir_for(cache: &Cache, kernel: &Kernel) -> PathBuf {
    if kernel.root.starts_with(cache.root()) {
        kernel.root.join("kernlab")
    } else {
        cache.local_boot_dir(&kernel.vmlinuz_sha256)
    }
}

/// The kernel's boot images: extracts the ELF on first use (under the
/// kernel's cache lock, published by rename) when the config has
/// `CONFIG_PVH`, and remembers why not otherwise. Never fails: every
/// problem leaves the bzImage, with the reason in `note`.
pub fn boot_images(cache: &Cache, kernel: &Kernel) -> BootImages {
    let bzimage = kernel.vmlinuz();
    let mut out = BootImages { bzimage: bzimage.clone(), vmlinux: None, compression: None, pvh: None, note: String::new() };
    let arch = kernel.arch();
    if !arch.has_pc() {
        out.note = format!("{} kernels boot their {} as it is (PVH is x86's)", arch.name(), arch.image_format());
        return out;
    }
    let config_name = format!("boot/config-{}", kernel.release);
    match std::fs::read_to_string(kernel.config()) {
        Ok(c) => out.pvh = Some(config_enabled(&c, "CONFIG_PVH") == Some('y')),
        Err(e) => {
            out.note = format!("no {config_name} to tell whether the kernel has CONFIG_PVH ({e}); booting the bzImage");
            return out;
        }
    }
    if out.pvh == Some(false) {
        out.note = format!("CONFIG_PVH is not set in {config_name}: the kernel has no PVH entry; booting the bzImage");
        return out;
    }
    let dir = dir_for(cache, kernel);
    let (vmlinux, meta_path) = (dir.join("vmlinux"), dir.join("vmlinux.json"));
    let done = |out: &mut BootImages, meta: &Meta| {
        out.compression = meta.compression;
        match &meta.outcome {
            Ok(_) => {
                out.vmlinux = Some(vmlinux.clone());
                out.note = format!(
                    "CONFIG_PVH=y: the {} payload extracted once to {}",
                    meta.compression.map(|c| c.to_string()).unwrap_or_default(),
                    vmlinux.display()
                );
            }
            Err(reason) => out.note = format!("CONFIG_PVH=y, but the vmlinux cannot be extracted: {reason}; booting the bzImage"),
        }
    };
    let read_meta = || -> Option<Meta> {
        let m: Meta = serde_json::from_slice(&std::fs::read(&meta_path).ok()?).ok()?;
        let complete = match m.outcome {
            Ok(bytes) => std::fs::metadata(&vmlinux).is_ok_and(|f| f.len() == bytes),
            Err(_) => true,
        };
        (m.format == FORMAT && m.vmlinuz_sha256 == kernel.vmlinuz_sha256 && complete).then_some(m)
    };
    if let Some(m) = read_meta() {
        done(&mut out, &m);
        return out;
    }
    let _lock = match cache.lock(Lock::Kernel(&kernel.name)) {
        Ok(l) => l,
        Err(e) => {
            out.note = format!("cannot lock the kernel's cache entry ({e}); booting the bzImage");
            return out;
        }
    };
    if let Some(m) = read_meta() {
        done(&mut out, &m);
        return out;
    }
    let t = std::time::Instant::now();
    let meta = match std::fs::read(&bzimage) {
        Err(e) => {
            out.note = format!("cannot read {} ({e}); booting it anyway", bzimage.display());
            return out;
        }
        Ok(image) => {
            let compression = payload(&image).ok().map(|p| p.compression);
            let outcome = match extract(&image) {
                Ok(x) => fsx::private_dir(&dir)
                    .and_then(|_| fsx::write_atomic(&vmlinux, &x.elf))
                    .map(|_| x.elf.len() as u64)
                    .map_err(|e| format!("cannot write {}: {e}", vmlinux.display())),
                Err(e) => Err(error_chain(&e)),
            };
            Meta { format: FORMAT, vmlinuz_sha256: kernel.vmlinuz_sha256.clone(), compression, outcome }
        }
    };
    tracing::info!(kernel = %kernel.name, secs = t.elapsed().as_secs_f64(), outcome = ?meta.outcome, "extracted vmlinux from the bzImage");
    // A failure to write the record only costs a second extraction later.
    let _ = fsx::private_dir(&dir).and_then(|_| fsx::write_atomic(&meta_path, &serde_json::to_vec_pretty(&meta).unwrap_or_default()));
    done(&mut out, &meta);
    out
}

/// True when `path` looks like a bzImage (used to check what a VM was given).
pub fn is_bzimage(path: &Path) -> bool {
    let mut head = [0u8; 0x210];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[0x202..0x206] == b"HdrS"
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal ELF64 x86-64 with one PT_NOTE segment holding `notes`.
    pub fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 0x40 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let off = e.len() as u64;
        e[0x40..0x44].copy_from_slice(&4u32.to_le_bytes());
        e[0x48..0x50].copy_from_slice(&off.to_le_bytes());
        e[0x60..0x68].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        e.extend_from_slice(notes);
        // Some body, so compressors have something to chew on.
        e.extend((0..200_000u32).flat_map(|i| ((i * 7) % 251).to_le_bytes()));
        e
    }

    pub fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32 + 1).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(kind.to_le_bytes());
        n.extend(name);
        n.push(0);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n.extend(desc);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n
    }

    pub fn pvh_elf() -> Vec<u8> {
        let mut notes = note(b"GNU", 3, &[1, 2, 3, 4, 5]);
        notes.extend(note(b"Xen", 18, &0x100_0000u64.to_le_bytes()));
        elf_with_notes(&notes)
    }

    /// A bzImage-like buffer: setup sectors with the header, then the
    /// protected-mode part holding `payload` at `payload_offset`.
    pub fn bzimage(payload: &[u8], version: u16) -> Vec<u8> {
        let setup_sects = 3u8;
        let pm = (setup_sects as usize + 1) * 512;
        let offset = 0x2c0usize;
        let mut b = vec![0u8; pm + offset];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&(offset as u32).to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        b.extend_from_slice(&[0xcc; 64]); // code after the payload
        b
    }

    /// The kernel build's `size_append`: the uncompressed length, little-endian.
    fn with_size(mut c: Vec<u8>, plain: &[u8]) -> Vec<u8> {
        c.extend((plain.len() as u32).to_le_bytes());
        c
    }

    fn lz4_legacy(plain: &[u8]) -> Vec<u8> {
        let mut c = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        // Small blocks (the kernel's are 8 MiB), to cover several of them.
        for chunk in plain.chunks(64 * 1024) {
            let b = lz4_flex::block::compress(chunk);
            c.extend((b.len() as u32).to_le_bytes());
            c.extend(b);
        }
        c
    }

    fn compressed(kind: PayloadCompression, plain: &[u8]) -> Vec<u8> {
        match kind {
            PayloadCompression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                gz.write_all(plain).unwrap();
                gz.finish().unwrap()
            }
            PayloadCompression::Xz => {
                let mut xz = Vec::new();
                liblzma::write::XzEncoder::new(&mut xz, 6).write_all(plain).unwrap();
                with_size(xz, plain)
            }
            PayloadCompression::Zstd => with_size(zstd::encode_all(plain, 19).unwrap(), plain),
            PayloadCompression::Lz4 => with_size(lz4_legacy(plain), plain),
            _ => unreachable!(),
        }
    }

    #[test]
    fn header_parse_finds_the_payload() {
        let elf = pvh_elf();
        let bz = bzimage(&compressed(PayloadCompression::Zstd, &elf), 0x020f);
        let p = payload(&bz).unwrap();
        assert_eq!(p.compression, PayloadCompression::Zstd);
        assert_eq!(p.uncompressed_len as usize, elf.len());
        assert_eq!(&p.data[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }

    #[test]
    fn every_supported_compression_round_trips_to_the_pvh_entry() {
        let elf = pvh_elf();
        for kind in [PayloadCompression::Gzip, PayloadCompression::Xz, PayloadCompression::Zstd, PayloadCompression::Lz4] {
            let bz = bzimage(&compressed(kind, &elf), 0x020f);
            let x = extract(&bz).unwrap_or_else(|e| panic!("{kind}: {}", error_chain(&e)));
            assert_eq!(x.compression, kind);
            assert_eq!(x.elf, elf, "{kind}");
            assert_eq!(x.pvh_entry, 0x100_0000, "{kind}");
        }
    }

    #[test]
    fn what_cannot_be_extracted_says_why() {
        let elf = pvh_elf();
        let mut not_hdrs = bzimage(b"xxxxxxxx", 0x020f);
        not_hdrs[0x202] = b'X';
        let mut truncated = bzimage(&compressed(PayloadCompression::Xz, &elf), 0x020f);
        truncated.truncate(truncated.len() - 100); // the 64 bytes after the payload and some of it
        let mut bad_len = compressed(PayloadCompression::Zstd, &elf);
        let n = bad_len.len();
        bad_len[n - 4..].copy_from_slice(&7u32.to_le_bytes());
        let mut corrupt = compressed(PayloadCompression::Lz4, &elf);
        corrupt[20] ^= 0xff;
        corrupt[21] ^= 0xff;
        let no_note = elf_with_notes(&note(b"GNU", 3, &[0; 4]));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0; 100], "no `HdrS`"),
            (not_hdrs, "no `HdrS`"),
            (bzimage(b"xxxxxxxx", 0x0206), "predates payload_offset"),
            (truncated, "outside the"),
            (bzimage(&[0x42, 0x5a, 0x68, 0x39, 0, 0, 0, 0], 0x020f), "bzip2-compressed"),
            (bzimage(&[0x89, b'L', b'Z', b'O', 0, 0, 0, 0], 0x020f), "lzo-compressed"),
            (bzimage(&[0x5d, 0, 0, 0x80, 0, 0, 0, 0], 0x020f), "lzma-compressed"),
            (bzimage(b"garbage!", 0x020f), "no compression magic"),
            (bzimage(&bad_len, 0x020f), "trailer says 7"),
            (bzimage(&corrupt, 0x020f), "decompressing the lz4 payload"),
            (bzimage(&compressed(PayloadCompression::Gzip, &no_note), 0x020f), "no PVH entry note"),
            (bzimage(&compressed(PayloadCompression::Gzip, &vec![1u8; 5000]), 0x020f), "not a 64-bit x86 ELF"),
        ];
        for (i, (bz, want)) in cases.iter().enumerate() {
            let e = error_chain(&extract(bz).unwrap_err());
            assert!(e.contains(want), "case {i}: {e}");
        }
    }

    #[test]
    fn config_values() {
        let c = "# CONFIG_FOO is not set\nCONFIG_PVH=y\nCONFIG_VIRTIO_MMIO=m\nCONFIG_PVHX=y\n";
        assert_eq!(config_enabled(c, "CONFIG_PVH"), Some('y'));
        assert_eq!(config_enabled(c, "CONFIG_VIRTIO_MMIO"), Some('m'));
        assert_eq!(config_enabled(c, "CONFIG_FOO"), None);
        assert_eq!(config_enabled(c, "CONFIG_PV"), None);
    }

    fn fake_kernel(d: &Path, cache: &Cache, config: Option<&str>, vmlinuz: &[u8]) -> Kernel {
        let root = cache.kernel_dir("abc");
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join("boot/vmlinuz-6.1.0-test"), vmlinuz).unwrap();
        if let Some(c) = config {
            std::fs::write(root.join("boot/config-6.1.0-test"), c).unwrap();
        }
        let _ = d;
        Kernel {
            name: "test".into(),
            release: "6.1.0-test".into(),
            source: "test".into(),
            version: "1".into(),
            package_sha256: "abc".into(),
            vmlinuz_sha256: fsx::sha256_bytes(vmlinuz),
            root,
            arch: None,
        }
    }

    #[test]
    fn boot_images_extracts_once_and_remembers_failures() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let elf = pvh_elf();
        let k = fake_kernel(d.path(), &cache, Some("CONFIG_PVH=y\n"), &bzimage(&compressed(PayloadCompression::Xz, &elf), 0x020f));
        let b = boot_images(&cache, &k);
        assert_eq!(b.vmlinux.as_deref(), Some(k.root.join("kernlab/vmlinux").as_path()), "{}", b.note);
        assert_eq!(b.compression, Some(PayloadCompression::Xz));
        assert_eq!(std::fs::read(k.root.join("kernlab/vmlinux")).unwrap(), elf);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(k.root.join("kernlab/vmlinux")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Found again without extracting: the file's mtime does not change.
        let m1 = std::fs::metadata(k.root.join("kernlab/vmlinux")).unwrap().modified().unwrap();
        assert_eq!(boot_images(&cache, &k), b);
        assert_eq!(std::fs::metadata(k.root.join("kernlab/vmlinux")).unwrap().modified().unwrap(), m1);

        // No PVH: the bzImage, and why.
        std::fs::write(k.config(), "# CONFIG_PVH is not set\n").unwrap();
        let b = boot_images(&cache, &k);
        assert!(b.vmlinux.is_none() && b.note.contains("CONFIG_PVH is not set"), "{}", b.note);
        std::fs::remove_file(k.config()).unwrap();
        assert!(boot_images(&cache, &k).note.contains("no boot/config-6.1.0-test"));

        // A payload kernlab cannot read: the failure is recorded once.
        let d2 = tempfile::tempdir().unwrap();
        let cache2 = Cache::at(d2.path().join("cache")).unwrap();
        let k2 = fake_kernel(d2.path(), &cache2, Some("CONFIG_PVH=y\n"), &bzimage(b"BZh91AY&SY\0\0\0\0", 0x020f));
        let b2 = boot_images(&cache2, &k2);
        assert!(b2.vmlinux.is_none() && b2.note.contains("bzip2") && b2.note.contains("booting the bzImage"), "{}", b2.note);
        assert_eq!(b2.compression, Some(PayloadCompression::Bzip2));
        assert!(k2.root.join("kernlab/vmlinux.json").is_file());
        assert!(!k2.root.join("kernlab/vmlinux").exists());
    }
}
