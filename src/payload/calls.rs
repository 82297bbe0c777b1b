//! Which functions of a built module call which kernel functions, read
//! from the `.ko`'s relocations (an out-of-tree module's calls into the
//! kernel are relocations against undefined symbols, resolved at load).
//!
//! The attribution pass uses it where tracing cannot see a module's calls
//! (on a kernel without fprobe events, references taken inside the
//! module's own kprobe handlers are missed): the module functions that take
//! references on the VFS's objects are the candidates for a reference leak.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind, SymbolKind};

/// Kernel functions that hand their caller a reference on a dentry (or a
/// path, which holds one): `dget` is inline and calls `lockref_get`.
pub const DENTRY_GETS: [&str; 10] =
    ["path_get", "dget_parent", "lockref_get", "lockref_get_not_zero", "lockref_get_not_dead", "d_find_alias", "d_find_any_alias", "kern_path", "user_path_at_empty", "d_obtain_alias"];
/// ... on an inode.
pub const INODE_GETS: [&str; 3] = ["igrab", "ihold", "ilookup"];
/// ... on an open file.
pub const FILE_GETS: [&str; 5] = ["fget", "fget_raw", "fget_task", "filp_open", "file_open_root"];

/// Module function → the undefined (kernel) symbols it refers to.
pub fn calls(elf: &[u8]) -> Result<BTreeMap<String, BTreeSet<String>>, object::Error> {
    let file = object::File::parse(elf)?;
    // Functions per section, with their extents.
    let mut functions: BTreeMap<usize, Vec<(u64, u64, String)>> = BTreeMap::new();
    for s in file.symbols() {
        if s.kind() != SymbolKind::Text || s.size() == 0 {
            continue;
        }
        if let (Some(idx), Ok(name)) = (s.section_index(), s.name()) {
            functions.entry(idx.0).or_default().push((s.address(), s.address() + s.size(), name.to_string()));
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for section in file.sections() {
        if section.kind() != SectionKind::Text {
            continue;
        }
        let Some(funcs) = functions.get(&section.index().0) else { continue };
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(si) = reloc.target() else { continue };
            let Ok(sym) = file.symbol_by_index(si) else { continue };
            if !sym.is_undefined() {
                continue;
            }
            let Ok(target) = sym.name() else { continue };
            if let Some((_, _, f)) = funcs.iter().find(|(a, b, _)| (*a..*b).contains(&offset)) {
                out.entry(f.clone()).or_default().insert(target.to_string());
            }
        }
    }
    Ok(out)
}

/// The module functions that call any of `gets` (kernel functions handing
/// out references), each with the ones it calls.
pub fn reference_takers(ko: &Path, gets: &[&str]) -> std::io::Result<Vec<(String, Vec<String>)>> {
    let bytes = std::fs::read(ko)?;
    let map = calls(&bytes).map_err(|e| std::io::Error::other(format!("{}: not a readable ELF module: {e}", ko.display())))?;
    Ok(map
        .into_iter()
        .filter_map(|(f, targets)| {
            let hit: Vec<String> = targets.into_iter().filter(|t| gets.contains(&t.as_str())).collect();
            (!hit.is_empty()).then_some((f, hit))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// labs/khm built against Debian's 6.1.0-54-cloud headers, debug info
    /// stripped (symbols and relocations kept).
    const KHM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/payload/testdata/khm-6.1.0-54-cloud.ko");

    #[test]
    fn the_module_functions_calling_the_kernel_are_read_from_its_relocations() {
        let map = calls(&std::fs::read(KHM).unwrap()).unwrap();
        assert!(map["khm_entry"].contains("path_get"), "{map:?}");
        assert!(map["khm_return"].contains("lockref_put_not_zero") || map["khm_return"].contains("mntput"), "{map:?}");
        assert!(map["khm_init"].contains("register_kretprobe"), "{map:?}");
        // khm's only dentry reference: path_get in its kretprobe's entry handler.
        assert_eq!(reference_takers(Path::new(KHM), &DENTRY_GETS).unwrap(), vec![("khm_entry".to_string(), vec!["path_get".to_string()])]);
        assert!(reference_takers(Path::new(KHM), &FILE_GETS).unwrap().is_empty());
        assert!(reference_takers(Path::new(KHM), &["kfree"]).unwrap().is_empty());
        assert!(calls(b"not an elf").is_err());
    }
}
