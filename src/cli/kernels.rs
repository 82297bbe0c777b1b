//! `kernlab kernel list` and `kernlab kernel fetch`.

use std::path::PathBuf;

use super::{fail, registry};
use crate::cache::Cache;
use crate::exit;

pub fn kernel_list(dirs: &[PathBuf], json: bool) -> i32 {
    let r = match registry(dirs) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let cache = Cache::from_env().ok();
    let mut rows = Vec::new();
    for d in r.iter() {
        let cached = cache
            .as_ref()
            .map(|c| c.kernel_pointer(&d.name).exists())
            .unwrap_or(false);
        if json {
            rows.push(serde_json::json!({"name": d.name, "cached": cached, "source": d.source_summary(), "description": d.description}));
            continue;
        }
        println!(
            "{:<32} {:<8} {:<56} {}",
            d.name,
            if cached { "cached" } else { "-" },
            d.source_summary(),
            d.description
        );
    }
    if json {
        crate::ui::json_line(&serde_json::json!({"kernels": rows}).to_string());
    }
    exit::OK
}

pub fn kernel_fetch(name: &str, dirs: &[PathBuf], json: bool) -> i32 {
    let desc = match registry(dirs).and_then(|r| r.get(name).cloned()) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let cache = match Cache::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match crate::kernel::fetch(&cache, &desc) {
        Ok(k) if json => {
            let v = serde_json::json!({"name": k.name, "release": k.release, "source": k.source, "version": k.version, "package_sha256": k.package_sha256, "vmlinuz_sha256": k.vmlinuz_sha256, "root": k.root});
            crate::ui::json_line(&v.to_string());
            exit::OK
        }
        Ok(k) => {
            println!("{} {} {} {}", k.name, k.release, k.package_sha256, k.root.display());
            exit::OK
        }
        Err(e) => {
            fail(&e);
            exit::INFRA
        }
    }
}

