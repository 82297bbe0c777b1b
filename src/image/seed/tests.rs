use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde::Deserialize;
use ssh_key::PrivateKey;

use super::*;
use crate::image::keys::{KeyError, RunKeys};
use crate::util::tool::Tool;

/// A seed from fresh OpenSSH keys, as a run makes it.
fn fresh_seed(dir: &Path) -> (RunKeys, Seed) {
    let keys = RunKeys::generate_openssh(&dir.join("keys")).unwrap();
    let seed = keys.seed("iid-kernlab-0001", "kernlab-guest").unwrap();
    (keys, seed)
}

/// Every file on the vfat image at `path`, read back with `fatfs`: (path, content).
fn read_back(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(path).unwrap();
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
    let mut out = Vec::new();
    let mut dirs = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = dirs.pop() {
        for entry in dir.iter() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let full = format!("{prefix}{name}");
            if entry.is_dir() {
                dirs.push((format!("{full}/"), entry.to_dir()));
            } else {
                let mut data = Vec::new();
                entry.to_file().read_to_end(&mut data).unwrap();
                out.push((full, data));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_file_reads_back_with_its_content() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, seed) = fresh_seed(tmp.path());
    let img = tmp.path().join("seed.img");
    write_seed(&seed, &img).unwrap();

    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), SEED_SIZE);
    let mut want = seed.files().unwrap();
    want.sort();
    let names: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "kernlab-authorized_keys",
            "kernlab-hostname",
            "kernlab-ssh_host_ed25519_key",
            "kernlab-ssh_host_ed25519_key.pub",
            "meta-data",
            "user-data"
        ]
    );
    assert_eq!(read_back(&img), want);
    // Nothing but the image and the keys is left behind.
    let mut left: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["keys", "seed.img"]);
}

#[test]
fn plain_files_hold_the_keys_and_the_hostname() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, seed) = fresh_seed(tmp.path());
    let files: std::collections::BTreeMap<String, Vec<u8>> = seed.files().unwrap().into_iter().collect();
    let text = |name: &str| String::from_utf8(files[name].clone()).unwrap();

    let host = text("kernlab-ssh_host_ed25519_key");
    assert_eq!(host, std::fs::read_to_string(&keys.host_key).unwrap());
    let private = PrivateKey::from_openssh(&host).unwrap();
    assert_eq!(private.public_key().to_bytes().unwrap(), keys.host_key_blob);
    assert_eq!(text("kernlab-ssh_host_ed25519_key.pub"), format!("{}\n", keys.host_public().unwrap()));
    assert_eq!(text("kernlab-authorized_keys"), format!("{}\n", keys.client_public));
    assert_eq!(text("kernlab-hostname"), "kernlab-guest\n");
}

#[test]
fn fsck_fat_finds_nothing_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, seed) = fresh_seed(tmp.path());
    let img = tmp.path().join("seed.img");
    write_seed(&seed, &img).unwrap();
    // -n: check only; it exits 1 on anything it would fix (fatfs 0.3's
    // subdirectories among them).
    let out = Tool::new("fsck.fat", Duration::from_secs(30)).args(["-n", "-v"]).arg(&img).run().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("12 bit entries"), "{report}");
    let listing = Tool::new("fsck.fat", Duration::from_secs(30)).args(["-n", "-l"]).arg(&img).run().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for (name, _) in seed.files().unwrap() {
        assert!(listing.contains(&format!("/{name} (")), "{name} not in {listing}");
    }
}

#[test]
fn blkid_sees_a_vfat_volume_labelled_cidata() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, seed) = fresh_seed(tmp.path());
    let img = tmp.path().join("seed.img");
    write_seed(&seed, &img).unwrap();
    // -p probes the file itself, bypassing blkid's cache.
    let out = Tool::new("blkid", Duration::from_secs(30)).args(["-p", "-o", "export"]).arg(&img).run().unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"LABEL=cidata"), "{out}");
    assert!(lines.contains(&"TYPE=vfat"), "{out}");
}

/// What the test reads back from `user-data`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDataBack {
    disable_root: bool,
    ssh_authorized_keys: Vec<String>,
    ssh_pwauth: bool,
    ssh_deletekeys: bool,
    ssh_genkeytypes: Vec<String>,
    ssh_keys: SshKeysBack,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SshKeysBack {
    ed25519_private: String,
    ed25519_public: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaDataBack {
    #[serde(rename = "instance-id")]
    instance_id: String,
    #[serde(rename = "local-hostname")]
    local_hostname: String,
}

fn parse_back(seed: &Seed) -> (MetaDataBack, UserDataBack, String) {
    let files: std::collections::BTreeMap<String, Vec<u8>> = seed.files().unwrap().into_iter().collect();
    let user = String::from_utf8(files["user-data"].clone()).unwrap();
    let meta: MetaDataBack = serde_saphyr::from_slice(&files["meta-data"]).unwrap();
    let parsed: UserDataBack = serde_saphyr::from_str(&user).unwrap();
    (meta, parsed, user)
}

#[test]
fn user_data_is_cloud_config_with_the_run_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, seed) = fresh_seed(tmp.path());
    let (meta, user, text) = parse_back(&seed);
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    // The private key is a literal block, readable in the file as in the guest.
    assert!(text.contains("ed25519_private: |\n"), "{text}");

    assert_eq!(meta.instance_id, "iid-kernlab-0001");
    assert_eq!(meta.local_hostname, "kernlab-guest");
    assert!(!user.disable_root);
    assert_eq!(user.ssh_authorized_keys, std::slice::from_ref(&keys.client_public));
    assert!(!user.ssh_pwauth);
    assert!(user.ssh_deletekeys);
    assert!(user.ssh_genkeytypes.is_empty());
    // Byte for byte the key kernlab checks on connect, final newline included.
    assert_eq!(user.ssh_keys.ed25519_private, std::fs::read_to_string(&keys.host_key).unwrap());
    assert_eq!(user.ssh_keys.ed25519_public, keys.host_public().unwrap());
}

#[test]
fn yaml_special_characters_survive() {
    let seed = Seed {
        instance_id: "iid: #1 'quoted' \"double\" - [x]".to_string(),
        hostname: "yes".to_string(),
        host_key: "-----BEGIN OPENSSH PRIVATE KEY-----\n  indented: line #\n-----END OPENSSH PRIVATE KEY-----".to_string(),
        host_public: "ssh-ed25519 AAAA host".to_string(),
        authorized_key: "ssh-ed25519 AAAA user@host # comment\n".to_string(),
    };
    let (meta, user, _) = parse_back(&seed);
    assert_eq!(meta.instance_id, seed.instance_id);
    assert_eq!(meta.local_hostname, "yes");
    assert_eq!(user.ssh_keys.ed25519_private, format!("{}\n", seed.host_key));
    assert_eq!(user.ssh_authorized_keys, ["ssh-ed25519 AAAA user@host # comment"]);
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, seed) = fresh_seed(tmp.path());
    let (a, b) = (tmp.path().join("a.img"), tmp.path().join("b.img"));
    write_seed(&seed, &a).unwrap();
    write_seed(&seed, &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // Rewriting in place replaces the image whole.
    write_seed(&seed, &a).unwrap();
    assert_eq!(read_back(&a), read_back(&b));
}

#[test]
fn openssh_keys_are_found_again_by_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, _) = fresh_seed(tmp.path());
    let again = RunKeys::existing(&tmp.path().join("keys"), &keys.client_public, &keys.host_public().unwrap()).unwrap();
    assert_eq!(again.host_key, keys.host_key);
    assert_eq!(again.host_key_blob, keys.host_key_blob);
    for f in [&keys.client_key, &keys.host_key] {
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_seed_needs_an_openssh_host_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut keys, _) = fresh_seed(tmp.path());
    keys.host_key = tmp.path().join("dropbear_host_key");
    std::fs::write(&keys.host_key, b"\x00\x00\x00\x0bssh-ed25519 binary").unwrap();
    match keys.seed("iid", "h") {
        Err(e @ KeyError::NotOpenSsh { .. }) => assert!(e.to_string().contains("dropbear_host_key"), "{e}"),
        other => panic!("expected NotOpenSsh, got {other:?}"),
    }
}

#[test]
fn a_missing_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, seed) = fresh_seed(tmp.path());
    let img = tmp.path().join("no/such/dir/seed.img");
    let err = write_seed(&seed, &img).unwrap_err();
    assert!(matches!(err, SeedError::Create { .. }), "{err:?}");
    assert!(err.to_string().contains("no/such/dir/seed.img"), "{err}");
}
