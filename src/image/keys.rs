//! Per-run SSH keys. Every run gets a fresh client key (made in-process) and
//! a fresh guest host key, both 0600 in the private run directory, never
//! reused. For the minimal image the host key is made by `dropbearkey`, since
//! dropbear reads only its own format, and both reach the guest in a small
//! cpio archive appended to the cached image ([`RunKeys::overlay`]). For a
//! guest running OpenSSH the host key is an OpenSSH ed25519 key made
//! in-process, and both reach the guest on a seed disk ([`RunKeys::seed`]).
//! Either way the host checks the guest's host key against the one it made,
//! so the SSH connection is authenticated both ways.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey, PublicKey};

use super::seed::Seed;
use super::tree::Tree;
use crate::util::fsx;
use crate::util::tool::{self, Tool};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate the SSH client key")]
    Generate(#[source] ssh_key::Error),
    #[error("cannot make the guest host key")]
    HostKey(#[source] tool::ToolError),
    #[error("dropbearkey printed no public key for `{}`", path.display())]
    NoPublicKey { path: PathBuf },
    #[error("`{}` is not an OpenSSH private key (a guest running OpenSSH needs one; make the keys with `RunKeys::generate_openssh`)", path.display())]
    NotOpenSsh {
        path: PathBuf,
        #[source]
        source: ssh_key::Error,
    },
    #[error("cannot read key file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write key file `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct RunKeys {
    /// OpenSSH private key of the client (0600).
    pub client_key: PathBuf,
    /// The client's public key line, for the guest's authorized_keys.
    pub client_public: String,
    /// The guest's dropbear host key file (0600).
    pub host_key: PathBuf,
    /// The guest's host key as the SSH wire blob, to check on connect.
    pub host_key_blob: Vec<u8>,
}

impl RunKeys {
    /// Makes fresh keys in `dir` (the run's private `keys/` directory) for a
    /// guest running dropbear.
    pub fn generate(dir: &Path) -> Result<Self, KeyError> {
        Self::generate_with(dir, |host_key| {
            let out = Tool::new("dropbearkey", Duration::from_secs(60))
                .args(["-t", "ed25519", "-f"])
                .arg(host_key)
                .run()
                .map_err(KeyError::HostKey)?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout
                .lines()
                .find(|l| l.starts_with("ssh-ed25519 "))
                .ok_or_else(|| KeyError::NoPublicKey { path: host_key.to_path_buf() })?;
            PublicKey::from_openssh(line).map_err(KeyError::Generate)
        })
    }

    /// Makes fresh keys in `dir` for a guest running OpenSSH: the host key
    /// too is an OpenSSH ed25519 key, made in-process. The file names are
    /// those of [`RunKeys::generate`], so [`RunKeys::existing`] reads either.
    pub fn generate_openssh(dir: &Path) -> Result<Self, KeyError> {
        Self::generate_with(dir, |host_key| {
            let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(KeyError::Generate)?;
            write_openssh(&key, host_key)?;
            Ok(key.public_key().clone())
        })
    }

    /// The client key, then the host key that `make_host` writes at the path
    /// it is given and whose public half it returns.
    fn generate_with(dir: &Path, make_host: impl FnOnce(&Path) -> Result<PublicKey, KeyError>) -> Result<Self, KeyError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Write { path, source }
        };
        fsx::private_dir(dir).map_err(write_err(dir))?;
        let client = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(KeyError::Generate)?;
        let client_key = dir.join("client_ed25519");
        write_openssh(&client, &client_key)?;
        let client_public = client.public_key().to_openssh().map_err(KeyError::Generate)?;

        let host_key = dir.join("guest_host_ed25519");
        let host_key_blob = make_host(&host_key)?.to_bytes().map_err(KeyError::Generate)?;
        Ok(RunKeys { client_key, client_public, host_key, host_key_blob })
    }

    /// Keys made earlier and kept in `dir` (a snapshot's): the two private
    /// files by their usual names, and their public halves as OpenSSH lines.
    pub fn existing(dir: &Path, client_public: &str, host_public: &str) -> Result<Self, KeyError> {
        let host_key_blob = PublicKey::from_openssh(host_public).and_then(|k| k.to_bytes()).map_err(KeyError::Generate)?;
        let keys = RunKeys {
            client_key: dir.join("client_ed25519"),
            client_public: client_public.trim().to_string(),
            host_key: dir.join("guest_host_ed25519"),
            host_key_blob,
        };
        for f in [&keys.client_key, &keys.host_key] {
            std::fs::metadata(f).map_err(|source| KeyError::Read { path: f.clone(), source })?;
        }
        Ok(keys)
    }

    /// The guest's host key as an OpenSSH public key line.
    pub fn host_public(&self) -> Result<String, KeyError> {
        PublicKey::from_bytes(&self.host_key_blob).and_then(|k| k.to_openssh()).map_err(KeyError::Generate)
    }

    /// Copies the two private files into `dir` (made private), by the same names.
    pub fn copy_to(&self, dir: &Path) -> Result<RunKeys, KeyError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Write { path, source }
        };
        fsx::private_dir(dir).map_err(write_err(dir))?;
        let mut copy = self.clone();
        for (from, to) in [(&self.client_key, &mut copy.client_key), (&self.host_key, &mut copy.host_key)] {
            let name = from.file_name().unwrap_or_default();
            *to = dir.join(name);
            let data = std::fs::read(from).map_err(|source| KeyError::Read { path: from.clone(), source })?;
            fsx::write_atomic(to, &data).map_err(write_err(to))?;
        }
        Ok(copy)
    }

    /// The seed disk's content for a guest running OpenSSH: its host key
    /// (which must be an OpenSSH key, as [`RunKeys::generate_openssh`]
    /// makes), and the client key for root.
    pub fn seed(&self, instance_id: &str, hostname: &str) -> Result<Seed, KeyError> {
        let host_key = std::fs::read(&self.host_key).map_err(|source| KeyError::Read { path: self.host_key.clone(), source })?;
        // dropbear's key is binary: lossy text, so that it fails to parse.
        let host_key = String::from_utf8_lossy(&host_key).into_owned();
        PrivateKey::from_openssh(&host_key).map_err(|source| KeyError::NotOpenSsh { path: self.host_key.clone(), source })?;
        Ok(Seed {
            instance_id: instance_id.to_string(),
            hostname: hostname.to_string(),
            host_key,
            host_public: self.host_public()?,
            authorized_key: self.client_public.clone(),
        })
    }

    /// The per-run archive: host key and authorized_keys, with the modes
    /// dropbear insists on.
    pub fn overlay(&self) -> Result<Tree, KeyError> {
        let host = std::fs::read(&self.host_key).map_err(|source| KeyError::Read { path: self.host_key.clone(), source })?;
        let mut t = Tree::new();
        t.dir("/etc/dropbear", 0o700);
        t.file("/etc/dropbear/hostkey", 0o600, host);
        t.dir("/root", 0o700);
        t.dir("/root/.ssh", 0o700);
        t.file("/root/.ssh/authorized_keys", 0o600, format!("{}\n", self.client_public).into_bytes());
        Ok(t)
    }
}

/// Writes `key` to `path` (0600) in OpenSSH's PEM format.
fn write_openssh(key: &PrivateKey, path: &Path) -> Result<(), KeyError> {
    let pem = key.to_openssh(LineEnding::LF).map_err(KeyError::Generate)?;
    fsx::write_atomic(path, pem.as_bytes()).map_err(|source| KeyError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropbear_keys_still_come_from_dropbearkey() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let keys = RunKeys::generate(&dir).unwrap();
        assert_eq!(keys.client_key, dir.join("client_ed25519"));
        assert_eq!(keys.host_key, dir.join("guest_host_ed25519"));
        PrivateKey::from_openssh(std::fs::read_to_string(&keys.client_key).unwrap()).unwrap();
        // dropbear's own format: no seed disk can carry it to an OpenSSH guest.
        assert!(matches!(keys.seed("iid", "h"), Err(KeyError::NotOpenSsh { .. })));
        let again = RunKeys::existing(&dir, &keys.client_public, &keys.host_public().unwrap()).unwrap();
        assert_eq!(again.host_key_blob, keys.host_key_blob);
    }
}
