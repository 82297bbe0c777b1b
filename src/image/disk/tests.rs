use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::util::tool::Tool;

/// `qemu-img create` of a `format` image of `size` at `path`.
fn create(format: &str, path: &Path, size: &str) {
    Tool::new("qemu-img", Duration::from_secs(60)).args(["create", "-q", "-f", format]).arg(path).arg(size).run().unwrap();
}

/// Runs one qemu-io command on `path` (opened as `format`) and returns its output.
fn qemu_io(format: &str, command: &str, path: &Path) -> String {
    let out = Tool::new("qemu-io", Duration::from_secs(60)).args(["-f", format, "-c", command]).arg(path).run().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("failed"), "qemu-io {command}: {text}");
    text
}

fn sha256(path: &Path) -> String {
    fsx::sha256_file(path).unwrap()
}

/// A raw image holding an ext4 file system and no partition table, smaller
/// than 1 MiB, so only its superblock makes it a disk.
fn small_ext4(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(512 << 10).unwrap();
    drop(f);
    Tool::new("mkfs.ext4", Duration::from_secs(60)).args(["-F", "-q"]).arg(path).run().unwrap();
}

fn expect_not_a_disk(path: &Path, words: &str) -> String {
    match inspect(path) {
        Err(e @ DiskError::NotADisk { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.canonicalize().unwrap().display().to_string()), "{msg}");
            assert!(msg.contains(words), "{msg}");
            msg
        }
        other => panic!("expected NotADisk for {}, got {other:?}", path.display()),
    }
}

#[test]
fn a_qcow2_image_is_named_by_its_canonical_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    let img = tmp.path().join("guest.qcow2");
    create("qcow2", &img, "64M");

    let info = inspect(&tmp.path().join("sub/../guest.qcow2")).unwrap();
    assert_eq!(info, DiskInfo { path: img.canonicalize().unwrap(), format: DiskFormat::Qcow2, virtual_size: 64 << 20 });
}

#[test]
fn a_raw_ext4_image_is_a_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("root.ext4");
    small_ext4(&img);
    let info = inspect(&img).unwrap();
    assert_eq!(info.format, DiskFormat::Raw);
    assert_eq!(info.virtual_size, 512 << 10);
}

#[test]
fn a_raw_image_with_a_partition_table_or_of_a_disk_size_is_a_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mbr = tmp.path().join("mbr.img");
    let mut sector = vec![0u8; 4096];
    sector[510] = 0x55;
    sector[511] = 0xAA;
    std::fs::write(&mbr, &sector).unwrap();
    assert_eq!(inspect(&mbr).unwrap().format, DiskFormat::Raw);

    let blank = tmp.path().join("blank.img");
    std::fs::File::create(&blank).unwrap().set_len(8 << 20).unwrap();
    assert_eq!(inspect(&blank).unwrap().virtual_size, 8 << 20);
}

#[test]
fn a_text_file_is_not_a_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let txt = tmp.path().join("notes.txt");
    std::fs::write(&txt, "image: {disk: guest.qcow2}\n").unwrap();
    expect_not_a_disk(&txt, "no partition table");
}

#[test]
fn a_directory_or_an_empty_file_is_not_a_disk() {
    let tmp = tempfile::tempdir().unwrap();
    expect_not_a_disk(tmp.path(), "not a regular file");
    let empty = tmp.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    expect_not_a_disk(&empty, "empty.img");
}

#[test]
fn another_format_is_refused_with_the_conversion() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("guest.vmdk");
    create("vmdk", &img, "16M");
    let msg = expect_not_a_disk(&img, "`vmdk`");
    let path = img.canonicalize().unwrap();
    let hint = format!("qemu-img convert -O qcow2 {} {}", path.display(), path.with_extension("qcow2").display());
    assert!(msg.contains(&hint), "{msg}");
}

#[test]
fn a_missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such.qcow2");
    match inspect(&missing) {
        Err(e @ DiskError::NotFound { .. }) => assert!(e.to_string().contains("no-such.qcow2"), "{e}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// A paused QEMU with the image attached to a virtio disk, as a VM the
/// user forgot holds it; killed by its PID when the test ends, pass or fail.
struct HeldBy {
    child: Child,
}

impl HeldBy {
    fn spawn(img: &Path, log: &Path) -> HeldBy {
        let qmp = log.with_extension("qmp");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-S", "-nodefaults", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-drive")
            .arg(format!("file={},format=qcow2,if=none,id=d0", img.display()))
            .args(["-device", "virtio-blk-pci,drive=d0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        crate::util::process::own_std(&mut cmd);
        HeldBy { child: cmd.spawn().unwrap() }
    }
}

impl Drop for HeldBy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_image_a_running_qemu_holds_is_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("held.qcow2");
    create("qcow2", &img, "16M");
    let log = tmp.path().join("qemu.log");
    let mut qemu = HeldBy::spawn(&img, &log);

    // QEMU takes the image's lock while it opens its drives, before its
    // main loop serves QMP. Probing the image before then races QEMU for
    // the lock (our probe's shared lock can make QEMU's write lock fail,
    // and QEMU exits), so wait for QMP's greeting first, without touching
    // the image: at most 300 tries and 30 s, failing at once if QEMU dies.
    let start = Instant::now();
    let qmp = log.with_extension("qmp");
    let mut tries = 0;
    loop {
        use std::io::Read;
        if let Ok(mut sock) = std::os::unix::net::UnixStream::connect(&qmp) {
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 16];
            if sock.read(&mut buf).is_ok_and(|n| n > 0) {
                break;
            }
        }
        if let Some(status) = qemu.child.try_wait().unwrap() {
            panic!("QEMU exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tries += 1;
        assert!(tries < 300 && start.elapsed() < Duration::from_secs(30), "QEMU never served QMP");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut tries = 0;
    let err = loop {
        match inspect(&img) {
            Err(e @ DiskError::InUse { .. }) => break e,
            Ok(_) => {}
            Err(e) => panic!("expected InUse, got {e:?}"),
        }
        if let Some(status) = qemu.child.try_wait().unwrap() {
            panic!("QEMU exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tries += 1;
        assert!(tries < 300 && start.elapsed() < Duration::from_secs(30), "QEMU never locked {}", img.display());
        std::thread::sleep(Duration::from_millis(100));
    };
    let msg = err.to_string();
    assert!(msg.contains("held.qcow2") && msg.contains("lock"), "{msg}");
    assert!(msg.contains("stop the VM"), "{msg}");

    drop(qemu);
    assert_eq!(inspect(&img).unwrap().format, DiskFormat::Qcow2, "the lock goes with QEMU");
}

#[test]
fn writes_through_a_qcow2_overlay_leave_the_base_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.qcow2");
    create("qcow2", &base, "16M");
    qemu_io("qcow2", "write -P 0x11 0 128k", &base);
    let before = sha256(&base);

    let info = inspect(&base).unwrap();
    let ov = tmp.path().join("run.qcow2");
    overlay(&info, &ov).unwrap();
    assert_eq!(std::fs::metadata(&ov).unwrap().permissions().mode() & 0o777, 0o600);
    qemu_io("qcow2", "write -P 0xab 0 64k", &ov);
    qemu_io("qcow2", "read -P 0xab 0 64k", &ov);
    qemu_io("qcow2", "read -P 0x11 64k 64k", &ov);

    assert_eq!(sha256(&base), before, "the base changed");
    qemu_io("qcow2", "read -P 0x11 0 128k", &base);
    assert_overlay_of(&ov, &info);
}

#[test]
fn writes_through_an_overlay_on_a_raw_image_leave_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("root.ext4");
    small_ext4(&base);
    let before = sha256(&base);
    let info = inspect(&base).unwrap();
    let ov = tmp.path().join("run.qcow2");
    overlay(&info, &ov).unwrap();
    // Over the superblock, as a guest's fsck or mount would write it.
    qemu_io("qcow2", "write -P 0xab 0 4k", &ov);
    assert_eq!(sha256(&base), before, "the base changed");
    assert_overlay_of(&ov, &info);
}

#[test]
fn an_overlay_needs_a_directory_to_go_to() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("root.ext4");
    small_ext4(&base);
    let info = inspect(&base).unwrap();
    let err = overlay(&info, &tmp.path().join("gone/run.qcow2")).unwrap_err();
    assert!(matches!(err, DiskError::OverlayFile { .. }), "{err:?}");
    assert!(err.to_string().contains("gone/run.qcow2"), "{err}");
}

/// `ov` is a qcow2 image backed by `base` by its absolute path and format,
/// of the base's size.
fn assert_overlay_of(ov: &Path, base: &DiskInfo) {
    #[derive(Deserialize)]
    struct Info {
        format: String,
        #[serde(rename = "virtual-size")]
        virtual_size: u64,
        #[serde(rename = "backing-filename")]
        backing_filename: String,
        #[serde(rename = "backing-filename-format")]
        backing_filename_format: String,
    }
    let out = Tool::new("qemu-img", Duration::from_secs(60)).args(["info", "--output=json"]).arg(ov).run().unwrap();
    let info: Info = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info.format, "qcow2");
    assert_eq!(info.virtual_size, base.virtual_size);
    assert_eq!(Path::new(&info.backing_filename), base.path);
    assert_eq!(info.backing_filename_format, base.format.as_str());
}

#[test]
fn raw_files_that_look_like_disks() {
    let with = |at: usize, bytes: &[u8]| {
        let mut h = vec![0u8; HEAD_LEN];
        h[at..at + bytes.len()].copy_from_slice(bytes);
        h
    };
    assert!(looks_like_raw_disk(&with(510, &[0x55, 0xAA]), 4096));
    assert!(looks_like_raw_disk(&with(1080, &[0x53, 0xEF]), 600 << 10));
    assert!(looks_like_raw_disk(&[], MIN_RAW_SIZE));
    assert!(!looks_like_raw_disk(&with(510, &[0xAA, 0x55]), 4096));
    assert!(!looks_like_raw_disk(&with(1080, &[0xEF, 0x53]), 4096));
    assert!(!looks_like_raw_disk(b"hello\n", 6));
    assert!(!looks_like_raw_disk(&[0u8; 511], MIN_RAW_SIZE - 1));
}

#[test]
fn lock_failures_are_told_from_other_failures() {
    let locked = "qemu-img: Could not open '/x.qcow2': Failed to get shared \"write\" lock\nIs another process using the image [/x.qcow2]?";
    assert!(is_lock_failure(locked));
    assert_eq!(
        one_line(locked),
        "Could not open '/x.qcow2': Failed to get shared \"write\" lock Is another process using the image [/x.qcow2]?"
    );
    assert!(!is_lock_failure("qemu-img: Could not open '/x': Image is not in qcow2 format"));
}
