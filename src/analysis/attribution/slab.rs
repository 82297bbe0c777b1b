//! The allocation instrument: SLUB's own allocation traces.
//!
//! Booted with `slub_debug=U,CACHE,…`, SLUB records the allocating call
//! site and stack (stack depot) of every object of those caches; debugfs'
//! `/sys/kernel/debug/slab/CACHE/alloc_traces` lists the *live* objects
//! grouped by site:
//!
//! ```text
//!     145 leaky_alloc+0x50/0x70 [leaky] age=29/2182/4025 pid=126
//!         __kmalloc+0x49/0x150
//!         leaky_alloc+0x50/0x70 [leaky]
//!         leaky_pre+0xcb/0x138 [leaky]
//!         …
//! ```
//!
//! The sites of the module arm minus the baseline's are the leak's
//! allocating functions: the kernel's own allocations are in both arms.

use std::collections::BTreeMap;

use super::Site;

/// Section marker in the collected text: `@@kernlab-cache NAME`.
const MARK: &str = "@@kernlab-cache ";

/// The kernel command-line word that records allocation traces for
/// `caches` (`slub_debug=U,a,b`).
pub fn cmdline(caches: &[String]) -> String {
    format!("slub_debug=U,{}", caches.join(","))
}

/// The guest script that prints every cache's `alloc_traces`, each after
/// its marker (a cache without traces prints why, after its marker).
pub fn collect_script(caches: &[String]) -> String {
    let list = caches.iter().map(|c| crate::util::tool::shell_quote(std::ffi::OsStr::new(c))).collect::<Vec<_>>().join(" ");
    format!(
        "grep -q ' /sys/kernel/debug debugfs' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null\n\
         for c in {list}; do echo \"{MARK}$c\"; cat \"/sys/kernel/debug/slab/$c/alloc_traces\" 2>&1 || echo \"@@kernlab-error no alloc_traces for $c\"; done\n"
    )
}

/// One site of one cache, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub cache: String,
    pub objects: i64,
    /// `leaky_alloc` (the offset dropped), `<not-available>` when SLUB did
    /// not record it.
    pub function: String,
    /// `leaky`, or `vmlinux`.
    pub module: String,
    /// `function [module]`, innermost first.
    pub stack: Vec<String>,
}

/// `leaky_alloc+0x50/0x70 [leaky]` → (`leaky_alloc`, `leaky`).
fn symbol(frame: &str) -> (String, String) {
    let mut words = frame.split_whitespace();
    let sym = words.next().unwrap_or("");
    let function = sym.split('+').next().unwrap_or(sym).to_string();
    let module = words.next().and_then(|m| m.strip_prefix('[')).and_then(|m| m.strip_suffix(']')).unwrap_or("vmlinux").to_string();
    (function, module)
}

/// Parses the collected text: every cache's sites. Errors the guest
/// printed (`@@kernlab-error …`) are returned beside them.
pub fn parse(text: &str) -> (Vec<Trace>, Vec<String>) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    let mut cache: Option<String> = None;
    let mut current: Option<Trace> = None;
    for line in text.lines() {
        if let Some(c) = line.strip_prefix(MARK) {
            out.extend(current.take());
            cache = Some(c.trim().to_string());
            continue;
        }
        if let Some(e) = line.strip_prefix("@@kernlab-error ") {
            errors.push(e.to_string());
            continue;
        }
        let Some(c) = &cache else { continue };
        let t = line.trim_start();
        if t.is_empty() {
            out.extend(current.take());
            continue;
        }
        let indent = line.len() - t.len();
        // A site's first line: the count, right-aligned in 7 columns.
        let first = t.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
        match first {
            Some(n) if indent < 8 => {
                out.extend(current.take());
                let rest = t.split_once(char::is_whitespace).map_or("", |r| r.1).trim_start();
                // `leaky_alloc+0x50/0x70 [leaky] age=…`: the module word is
                // there only when it is bracketed.
                let mut words = rest.split_whitespace();
                let sym = words.next().unwrap_or("<not-available>");
                let module = words.next().filter(|w| w.starts_with('[')).unwrap_or("");
                let (function, module) = symbol(&format!("{sym} {module}"));
                current = Some(Trace { cache: c.clone(), objects: n, function, module, stack: Vec::new() });
            }
            _ => {
                if let Some(cur) = current.as_mut() {
                    let (f, m) = symbol(t);
                    cur.stack.push(format!("{f} [{m}]"));
                }
            }
        }
    }
    out.extend(current);
    (out, errors)
}

/// The module arm's sites minus the baseline's, per cache and allocating
/// function: the sites that hold more objects in the module arm, largest
/// first, with the stack of the module arm's largest entry for that
/// function. Sites under a tenth of the largest difference in their cache
/// are left out (the kernel's own allocations differ a little between any
/// two guests).
pub fn sites(module: &[Trace], baseline: &[Trace]) -> Vec<Site> {
    type Key = (String, String, String);
    let mut net: BTreeMap<Key, (i64, i64, Vec<String>)> = BTreeMap::new();
    for t in module {
        let e = net.entry((t.cache.clone(), t.function.clone(), t.module.clone())).or_insert((0, 0, Vec::new()));
        e.0 += t.objects;
        if t.objects > e.1 {
            e.1 = t.objects;
            e.2 = t.stack.clone();
        }
    }
    for t in baseline {
        net.entry((t.cache.clone(), t.function.clone(), t.module.clone())).or_insert((0, 0, Vec::new())).0 -= t.objects;
    }
    let mut top: BTreeMap<String, i64> = BTreeMap::new();
    for ((cache, _, _), (n, _, _)) in &net {
        let t = top.entry(cache.clone()).or_insert(0);
        *t = (*t).max(*n);
    }
    let mut out: Vec<Site> = net
        .into_iter()
        .filter(|((cache, _, _), (n, _, _))| *n > 0 && *n * 10 >= top[cache])
        .map(|((cache, function, module), (objects, _, stack))| Site { function, module, cache, objects, stack, role: super::Role::Allocates })
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.objects));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KMALLOC: &str = include_str!("testdata/alloc_traces-6.1-kmalloc-256.txt");

    #[test]
    fn real_alloc_traces_parse_with_their_stacks() {
        let (t, errors) = parse(KMALLOC);
        assert!(errors.is_empty());
        assert_eq!(t.len(), 209, "every site of the real listing");
        let leaky = &t[0];
        assert_eq!((leaky.cache.as_str(), leaky.objects, leaky.function.as_str(), leaky.module.as_str()), ("kmalloc-256", 145, "leaky_alloc", "leaky"));
        assert_eq!(leaky.stack[..3], ["__kmalloc [vmlinux]", "leaky_alloc [leaky]", "leaky_pre [leaky]"]);
        let dev = &t[1];
        assert_eq!((dev.objects, dev.function.as_str(), dev.module.as_str()), (63, "device_add", "vmlinux"));
        assert!(t.iter().all(|x| x.objects > 0 && !x.function.is_empty() && !x.function.contains('+')));
    }

    #[test]
    fn the_module_arm_minus_the_baseline_names_the_leaking_function_only() {
        let (m, _) = parse(KMALLOC);
        // The baseline: the same guest without the leak (the module's site
        // gone) and the kernel's own sites a little different.
        let b: Vec<Trace> = m.iter().filter(|t| t.module != "leaky").map(|t| Trace { objects: t.objects + 3, ..t.clone() }).collect();
        let s = sites(&m, &b);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].function.as_str(), s[0].module.as_str(), s[0].cache.as_str(), s[0].objects), ("leaky_alloc", "leaky", "kmalloc-256", 145));
        assert_eq!(s[0].stack[1], "leaky_alloc [leaky]");
        // The same arm against itself names nothing.
        assert!(sites(&m, &m).is_empty());
    }

    #[test]
    fn a_cache_without_traces_is_an_error_not_a_site() {
        let (t, e) = parse("@@kernlab-cache nope\ncat: can't open '/sys/kernel/debug/slab/nope/alloc_traces': No such file or directory\n@@kernlab-error no alloc_traces for nope\n");
        assert!(t.is_empty());
        assert_eq!(e, ["no alloc_traces for nope"]);
        assert_eq!(cmdline(&["leaky_obj".into(), "kmalloc-256".into()]), "slub_debug=U,leaky_obj,kmalloc-256");
        assert!(collect_script(&["kmalloc-256".into()]).contains("/sys/kernel/debug/slab/$c/alloc_traces"));
    }
}
