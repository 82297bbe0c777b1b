//! The seed disk: a small vfat image labelled `cidata` that hands a guest
//! its per-run identity (host key, the client key it must accept, hostname)
//! before it has a network. Two readers use it. cloud-init's NoCloud data
//! source, in the user's own images, reads `meta-data` and `user-data` (a
//! `#cloud-config` that installs the host key kernlab made, so kernlab can
//! check it on connect, and lets root in with the client key only). kernlab's
//! own Debian image has no cloud-init; a shell script there copies the plain
//! `kernlab-*` files into place.
//!
//! The image is written in-process with `fatfs`, with fixed timestamps, so the
//! same seed gives the same bytes. The label is lowercase `cidata`: every
//! cloud-init release looks for it, the newer ones also for `CIDATA`. All
//! files sit in the root directory: `fatfs` 0.3 writes long-name entries
//! for a new directory's `.` and `..`, which `fsck.fat` calls corrupt.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_saphyr::LitString;

/// Volume label cloud-init's NoCloud data source looks for.
pub const SEED_LABEL: &str = "cidata";

/// Size of the seed image: room for a few KiB of files on FAT12, which
/// `fatfs` picks for a volume this small.
const SEED_SIZE: u64 = 1 << 20;

/// Prefix of the plain files for kernlab's own image on the seed disk:
/// `kernlab-ssh_host_ed25519_key` (install 0600), `…key.pub`,
/// `kernlab-authorized_keys` (root's) and `kernlab-hostname`.
pub const KERNLAB_PREFIX: &str = "kernlab-";

/// A guest's per-run identity, as written to its seed disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// cloud-init's instance id: a new one makes cloud-init run its
    /// per-instance modules (SSH keys among them) again.
    pub instance_id: String,
    pub hostname: String,
    /// The guest's host key: an OpenSSH ed25519 private key (PEM text).
    pub host_key: String,
    /// Its public half as an OpenSSH line.
    pub host_public: String,
    /// The client's public key line, for root's authorized_keys.
    pub authorized_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot create the seed disk next to `{}`", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot format the seed disk `{}` as vfat", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{name}` on the seed disk `{}`", path.display())]
    File {
        path: PathBuf,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot render the seed's {what} as YAML")]
    Yaml {
        what: &'static str,
        #[source]
        source: serde_saphyr::ser::Error,
    },
    #[error("cannot put the seed disk in place at `{}`", path.display())]
    Persist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// cloud-init's `meta-data`.
#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

/// cloud-init's `user-data` (after the `#cloud-config` line). Root gets the
/// client key without cloud-init's "log in as the default user" prefix
/// (`disable_root: false`); passwords are off; the image's own host keys are
/// deleted and none generated, so the only host key is the one kernlab made.
#[derive(Serialize)]
struct UserData<'a> {
    disable_root: bool,
    ssh_authorized_keys: [&'a str; 1],
    ssh_pwauth: bool,
    ssh_deletekeys: bool,
    ssh_genkeytypes: [&'a str; 0],
    ssh_keys: SshKeys<'a>,
}

#[derive(Serialize)]
struct SshKeys<'a> {
    /// A literal block, so the key's lines stay lines.
    ed25519_private: LitString,
    ed25519_public: &'a str,
}

impl Seed {
    /// The files on the seed disk, by name, in the order they are written.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>, SeedError> {
        let yaml = |what, r: Result<String, serde_saphyr::ser::Error>| r.map_err(|source| SeedError::Yaml { what, source });
        let meta = yaml(
            "meta-data",
            serde_saphyr::to_string(&MetaData { instance_id: &self.instance_id, local_hostname: &self.hostname }),
        )?;
        let user = UserData {
            disable_root: false,
            ssh_authorized_keys: [self.authorized_key.trim()],
            ssh_pwauth: false,
            ssh_deletekeys: true,
            ssh_genkeytypes: [],
            ssh_keys: SshKeys { ed25519_private: LitString(line_ended(&self.host_key)), ed25519_public: self.host_public.trim() },
        };
        let user = format!("#cloud-config\n{}", yaml("user-data", serde_saphyr::to_string(&user))?);
        let k = |name: &str| format!("{KERNLAB_PREFIX}{name}");
        Ok(vec![
            ("meta-data".to_string(), meta.into_bytes()),
            ("user-data".to_string(), user.into_bytes()),
            (k("ssh_host_ed25519_key"), line_ended(&self.host_key).into_bytes()),
            (k("ssh_host_ed25519_key.pub"), line_ended(&self.host_public).into_bytes()),
            (k("authorized_keys"), line_ended(&self.authorized_key).into_bytes()),
            (k("hostname"), line_ended(&self.hostname).into_bytes()),
        ])
    }
}

/// `text` trimmed and ending in exactly one newline: OpenSSH refuses a
/// private key file whose last line has none.
fn line_ended(text: &str) -> String {
    format!("{}\n", text.trim())
}

/// Writes `seed` as a vfat image at `path` (0600), atomically: a reader sees
/// no file or the whole image, never half of one.
pub fn write_seed(seed: &Seed, path: &Path) -> Result<(), SeedError> {
    let files = seed.files()?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let create = |source| SeedError::Create { path: path.to_path_buf(), source };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-seed-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(create)?;
    tmp.as_file().set_len(SEED_SIZE).map_err(create)?;

    let format = |source| SeedError::Format { path: path.to_path_buf(), source };
    let mut label = [b' '; 11];
    label[..SEED_LABEL.len()].copy_from_slice(SEED_LABEL.as_bytes());
    let options = fatfs::FormatVolumeOptions::new().volume_label(label).volume_id(volume_id(&seed.instance_id));
    fatfs::format_volume(tmp.as_file_mut(), options).map_err(format)?;
    tmp.as_file_mut().seek(SeekFrom::Start(0)).map_err(format)?;
    {
        let fs = fatfs::FileSystem::new(tmp.as_file_mut(), fatfs::FsOptions::new()).map_err(format)?;
        write_files(&fs.root_dir(), path, &files)?;
        fs.unmount().map_err(format)?;
    }
    let persist = |source| SeedError::Persist { path: path.to_path_buf(), source };
    tmp.as_file().sync_all().map_err(persist)?;
    tmp.persist(path).map_err(|e| persist(e.error))?;
    Ok(())
}

/// Writes `files` into `root`; `path` names the image in errors.
fn write_files<T: fatfs::ReadWriteSeek>(root: &fatfs::Dir<T>, path: &Path, files: &[(String, Vec<u8>)]) -> Result<(), SeedError> {
    for (name, data) in files {
        let file_err = |source| SeedError::File { path: path.to_path_buf(), name: name.clone(), source };
        let mut f = root.create_file(name).map_err(file_err)?;
        f.truncate().map_err(file_err)?;
        f.write_all(data).map_err(file_err)?;
        f.flush().map_err(file_err)?;
    }
    Ok(())
}

/// The volume serial number (blkid's UUID): from the instance id, so two
/// runs' seeds differ and one seed's bytes do not.
fn volume_id(instance_id: &str) -> u32 {
    let h = crate::util::fsx::sha256_bytes(instance_id.as_bytes());
    u32::from_str_radix(&h[..8], 16).unwrap_or(0)
}

#[cfg(test)]
mod tests;
