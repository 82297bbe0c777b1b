//! `kernlab kernel list` and `kernlab kernel fetch`.

use std::path::PathBuf;

use super::{fail, registry};
use crate::cache::Cache;
use crate::exit;

pub fn kernel_list(dirs: &[PathBuf]) -> i32 {
    let r = match registry(dirs) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let cache = Cache::from_env().ok();
    for d in r.iter() {
        let cached = cache
            .as_ref()
            .map(|c| c.kernel_pointer(&d.name).exists())
            .unwrap_or(false);
        println!(
            "{:<32} {:<8} {:<56} {}",
            d.name,
            if cached { "cached" } else { "-" },
            d.source_summary(),
            d.description
        );
    }
    exit::OK
}

pub fn kernel_fetch(name: &str, dirs: &[PathBuf]) -> i32 {
    let desc = match registry(dirs).and_then(|r| r.get(name).cloned()) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let cache = match Cache::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match crate::kernel::fetch(&cache, &desc) {
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

