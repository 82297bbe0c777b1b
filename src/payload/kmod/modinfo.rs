//! What a `.ko` says about itself: its `.modinfo` section (the strings
//! `modinfo` prints: `name=`, `depends=`, `vermagic=`, `parm=`), read
//! straight from the ELF so that no tool of the host's kernel version
//! stands between kernlab and the module.

use std::path::Path;

use object::{Object, ObjectSection};

/// A module's own description of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// The name the kernel knows it by (`name=`; the file's stem with `-`
    /// as `_` for modules too old to carry one).
    pub name: String,
    /// Modules it needs loaded first (`depends=`).
    pub depends: Vec<String>,
    /// `vermagic=`: the kernel release it was built for, then its flags.
    pub vermagic: String,
    /// Its parameter names (`parm=` and `parmtype=`), sorted, unique.
    pub params: Vec<String>,
}

impl ModInfo {
    /// The kernel release of `vermagic` (its first word).
    pub fn release(&self) -> &str {
        self.vermagic.split_whitespace().next().unwrap_or("")
    }
}

/// Reads the `.modinfo` of the module at `path`.
pub fn read(path: &Path) -> Result<ModInfo, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("`{}` is not an ELF object: {e}", path.display()))?;
    let section = file.section_by_name(".modinfo").ok_or_else(|| format!("`{}` has no .modinfo section: not a kernel module", path.display()))?;
    let bytes = section.data().map_err(|e| format!("`{}`: cannot read .modinfo: {e}", path.display()))?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().replace('-', "_")).unwrap_or_default();
    Ok(parse(bytes, &stem))
}

/// Parses `.modinfo`'s NUL-separated `key=value` strings.
pub fn parse(bytes: &[u8], stem: &str) -> ModInfo {
    let mut info = ModInfo::default();
    for s in bytes.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let s = String::from_utf8_lossy(s);
        let Some((k, v)) = s.split_once('=') else { continue };
        match k {
            "name" => info.name = v.to_string(),
            "depends" => info.depends = v.split(',').filter(|d| !d.is_empty()).map(str::to_string).collect(),
            "vermagic" => info.vermagic = v.trim().to_string(),
            "parm" | "parmtype" => {
                if let Some((p, _)) = v.split_once(':') {
                    info.params.push(p.to_string());
                }
            }
            _ => {}
        }
    }
    info.params.sort();
    info.params.dedup();
    if info.name.is_empty() {
        info.name = stem.to_string();
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_modules_modinfo() {
        let ko = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/payload/testdata/khm-6.1.0-54-cloud.ko");
        let info = read(&ko).unwrap();
        assert_eq!(info.name, "khm");
        assert_eq!(info.release(), "6.1.0-54-cloud-amd64");
        assert!(info.vermagic.contains("SMP"), "{}", info.vermagic);
        assert!(info.params.contains(&"leak".to_string()), "{:?}", info.params);
        assert!(info.depends.is_empty());
    }

    #[test]
    fn fields_and_fallbacks() {
        let raw = b"license=GPL\0depends=prod_core,other\0parmtype=leak:int\0parm=leak:the bug\0vermagic=6.12.57+deb13-amd64 SMP preempt mod_unload modversions \0";
        let info = parse(raw, "prod_pipe");
        assert_eq!(info.name, "prod_pipe");
        assert_eq!(info.depends, ["prod_core", "other"]);
        assert_eq!(info.release(), "6.12.57+deb13-amd64");
        assert_eq!(info.params, ["leak"]);
        assert!(read(Path::new("/nonexistent.ko")).is_err());
        assert!(read(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").as_path()).unwrap_err().contains("not an ELF"));
    }
}
