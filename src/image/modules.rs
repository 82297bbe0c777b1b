//! Which `.ko` files the guest needs and in what order. The roots are the
//! drivers of the devices kernlab attaches (see `qemu::Device`); their
//! dependencies come from the kernel's own `modules.dep`, and the load order
//! is a depth-first post-order over it (dependencies first). A module listed
//! in `modules.builtin` needs nothing. Pure: the caller reads the files.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModuleError {
    #[error("module `{module}` is neither in modules.dep nor modules.builtin of kernel {release}")]
    NotFound { module: String, release: String },
    #[error("modules.dep of kernel {release}: dependency cycle through `{module}`")]
    Cycle { module: String, release: String },
}

/// `virtio-net` and `virtio_net` name the same module.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a modules.dep path: `kernel/drivers/net/virtio_net.ko` → `virtio_net`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

/// Parsed `modules.dep` plus `modules.builtin`.
#[derive(Debug, Default)]
pub struct DepTable {
    release: String,
    /// Module name → (path relative to the release dir, dependency paths).
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl DepTable {
    pub fn parse(release: &str, modules_dep: &str, modules_builtin: &str) -> Self {
        let mut deps = BTreeMap::new();
        for line in modules_dep.lines() {
            let Some((path, rest)) = line.split_once(':') else { continue };
            let path = path.trim();
            let list = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(module_name(path), (path.to_string(), list));
        }
        let builtin = modules_builtin.lines().filter(|l| !l.trim().is_empty()).map(module_name).collect();
        DepTable { release: release.to_string(), deps, builtin }
    }

    /// The module files (paths relative to `lib/modules/<release>/`) to load,
    /// in load order, for the given root modules. Built-in roots are skipped.
    pub fn load_order(&self, roots: &[&str]) -> Result<Vec<String>, ModuleError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for root in roots {
            let name = normalize(root);
            if self.builtin.contains(&name) && !self.deps.contains_key(&name) {
                continue;
            }
            self.visit(&name, &mut done, &mut BTreeSet::new(), &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        stack: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if done.contains(name) {
            return Ok(());
        }
        let Some((path, deps)) = self.deps.get(name) else {
            return Err(ModuleError::NotFound { module: name.to_string(), release: self.release.clone() });
        };
        if !stack.insert(name.to_string()) {
            return Err(ModuleError::Cycle { module: name.to_string(), release: self.release.clone() });
        }
        // modules.dep lists the deepest dependencies last; visiting in reverse
        // loads them first, as modprobe does.
        for dep in deps.iter().rev() {
            self.visit(&module_name(dep), done, stack, order)?;
        }
        stack.remove(name);
        done.insert(name.to_string());
        order.push(path.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An excerpt of the real modules.dep of Debian's 6.1.0-54-cloud-amd64.
    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/misc/pvpanic/pvpanic-pci.ko: kernel/drivers/misc/pvpanic/pvpanic.ko
kernel/drivers/misc/pvpanic/pvpanic.ko:
";

    fn table() -> DepTable {
        DepTable::parse("6.1.0-54-cloud-amd64", DEP, "kernel/fs/ext4/ext4.ko\n")
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let order = table().load_order(&["virtio_pci", "virtio-net", "pvpanic-pci"]).unwrap();
        let names: Vec<_> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net",
                "pvpanic",
                "pvpanic_pci"
            ]
        );
        for (i, p) in order.iter().enumerate() {
            for dep in &table().deps[&module_name(p)].1 {
                let j = order.iter().position(|q| q == dep).unwrap();
                assert!(j < i, "{dep} must load before {p}");
            }
        }
    }

    #[test]
    fn builtin_roots_are_skipped_and_unknown_ones_fail() {
        assert_eq!(table().load_order(&["ext4"]).unwrap(), Vec::<String>::new());
        assert_eq!(
            table().load_order(&["9p"]).unwrap_err(),
            ModuleError::NotFound { module: "9p".into(), release: "6.1.0-54-cloud-amd64".into() }
        );
    }

    #[test]
    fn cycles_are_errors_not_hangs() {
        let t = DepTable::parse("r", "a.ko: b.ko\nb.ko: a.ko\n", "");
        assert!(matches!(t.load_order(&["a"]), Err(ModuleError::Cycle { .. })));
    }
}
