//! `kernlab image debian`: the Debian guest disk kernlab builds for a
//! kernel, written out as a standalone qcow2 (e.g. with cloud-init added,
//! to boot as a lab's `image: {disk: PATH, root: LABEL=kernlab-root}`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{cached_kernel, fail, infra, registry};
use crate::exit;
use crate::image::debian::{self, Recipe};
use crate::util::tool::Tool;

pub fn image_debian(kernel: &str, packages: Vec<String>, out: &Path, dirs: &[PathBuf], json: bool) -> i32 {
    if out.exists() {
        eprintln!("kernlab: `{}` exists; kernlab writes a new disk image and never overwrites one", out.display());
        return exit::USAGE;
    }
    let desc = match registry(dirs).and_then(|r| r.get(kernel).cloned()) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let (cache, kernel) = match cached_kernel(&desc) {
        Ok(ck) => ck,
        Err(code) => return code,
    };
    let built = match debian::build(&cache, &kernel, &Recipe { packages }) {
        Ok(b) => b,
        Err(e) => return infra(&e),
    };
    for (stage, secs) in &built.built {
        eprintln!("image: built {stage} in {secs:.1} s");
    }
    let res = Tool::new("qemu-img", Duration::from_secs(10 * 60)).args(["convert", "-q", "-O", "qcow2"]).arg(&built.disk).arg(out).run();
    if let Err(e) = res {
        let _ = std::fs::remove_file(out);
        return infra(&e);
    }
    if json {
        let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        let v = serde_json::json!({"out": out, "kernel": kernel.name, "release": kernel.release, "format": "qcow2", "root_label": debian::ROOT_LABEL, "packages": built.packages, "bytes": bytes, "built": built.built});
        crate::ui::json_line(&v.to_string());
    } else {
        println!("{}", out.display());
    }
    eprintln!(
        "a Debian 12 disk for kernel {} (ext4, label {}, no bootloader): boot it with the lab's kernel, `image: {{disk: {}, root: LABEL={}}}`",
        kernel.release,
        debian::ROOT_LABEL,
        out.display(),
        debian::ROOT_LABEL
    );
    exit::OK
}
