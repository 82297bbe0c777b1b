//! Decompressing the formats distro kernels use for modules (`.ko.xz`,
//! `.ko.zst`, `.ko.gz`): the guest image carries plain `.ko` files, so the
//! guest's busybox `insmod` needs no decompressor and the TCG guest spends
//! no time unpacking. Uses the maintained crates (liblzma, zstd, flate2).

use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    /// By file name suffix, the way kmod decides.
    pub fn of_path(path: &str) -> Compression {
        if path.ends_with(".xz") {
            Compression::Xz
        } else if path.ends_with(".zst") {
            Compression::Zstd
        } else if path.ends_with(".gz") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}

/// `kernel/fs/x.ko.xz` → `kernel/fs/x.ko`; other names unchanged.
pub fn strip_suffix(path: &str) -> &str {
    for s in [".xz", ".zst", ".gz"] {
        if let Some(p) = path.strip_suffix(s) {
            return p;
        }
    }
    path
}

/// The whole content of `data`, decompressed as `kind` says.
pub fn decompress(kind: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 3);
    match kind {
        Compression::None => return Ok(data.to_vec()),
        Compression::Xz => {
            liblzma::read::XzDecoder::new_multi_decoder(data).read_to_end(&mut out)?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(data)?.read_to_end(&mut out)?;
        }
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read `{}`", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Reads a file and decompresses it by its suffix.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    let err = |source| ReadError { path: path.to_path_buf(), source };
    let data = std::fs::read(path).map_err(err)?;
    decompress(Compression::of_path(&path.to_string_lossy()), &data).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn each_format_round_trips() {
        let plain: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let mut xz = Vec::new();
        liblzma::write::XzEncoder::new(&mut xz, 6).write_all(&plain).unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        for (name, data) in [("a.ko.xz", xz), ("a.ko.zst", zst), ("a.ko.gz", gz), ("a.ko", plain.clone())] {
            assert_eq!(strip_suffix(name), "a.ko");
            assert_eq!(decompress(Compression::of_path(name), &data).unwrap(), plain, "{name}");
        }
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        assert!(decompress(Compression::Xz, b"not xz at all").is_err());
        assert!(decompress(Compression::Zstd, b"not zstd").is_err());
        assert!(decompress(Compression::Gzip, b"\x1f\x8b broken").is_err());
    }
}
