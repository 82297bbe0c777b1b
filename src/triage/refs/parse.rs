//! Parsers for the `crash` output the reference survey reads: `struct -o`
//! offsets, `kmem -p` slab pages, `kmem -S CACHE` listings, the super block
//! list, `struct kmem_cache` members, and raw `rd` memory.

use std::collections::{BTreeMap, HashMap, HashSet};

/// The offset of `member` in a `struct -o TYPE` listing (`  [88] struct
/// lockref d_lockref;`, `    [72] const unsigned int i_nlink;`).
pub fn member_offset(text: &str, member: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix('[')?;
        let (off, decl) = rest.split_once(']')?;
        let decl = decl.trim().trim_end_matches(';');
        let name = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?;
        // Arrays (`name[4]`) and bitfields (`name : 3`) are not what is asked for.
        (name == member).then(|| off.trim().parse().ok()).flatten()
    })
}

/// `$1 = 0xffff888000000000` (gdb's `p/x`).
pub fn print_hex(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (_, v) = l.trim().strip_prefix('$')?.split_once(" = ")?;
        u64::from_str_radix(v.trim().strip_prefix("0x")?, 16).ok()
    })
}

/// `  size = 192,` from `struct kmem_cache.size,red_left_pad,oo ADDR`
/// (`oo = { x = 65546 }` spans lines: its `x = ` is read).
pub fn struct_member(text: &str, member: &str) -> Option<u64> {
    let mut lines = text.lines().map(str::trim);
    while let Some(l) = lines.next() {
        let Some(v) = l.strip_prefix(member).and_then(|r| r.trim_start().strip_prefix('=')) else { continue };
        let v = v.trim().trim_end_matches(',');
        if v == "{" {
            let x = lines.next()?.trim().strip_prefix("x =")?.trim().trim_end_matches(',');
            return x.parse().ok();
        }
        return v.parse().ok().or_else(|| u64::from_str_radix(v.strip_prefix("0x")?, 16).ok());
    }
    None
}

/// A slab page in `kmem -p`: `PAGE PHYSICAL MAPPING INDEX CNT FLAGS` where
/// for a slab's head page MAPPING is its `slab_cache` and INDEX its
/// `freelist` (`struct slab` overlays `struct page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabPage {
    pub phys: u64,
    pub cache: u64,
    pub freelist: u64,
}

pub fn slab_pages(text: &str, caches: &HashSet<u64>) -> Vec<SlabPage> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 6 || !w[5..].iter().any(|f| f.split(',').any(|x| x == "slab")) {
                return None;
            }
            let hex = |s: &str| u64::from_str_radix(s, 16).ok();
            let cache = hex(w[2])?;
            caches.contains(&cache).then_some(SlabPage { phys: hex(w[1])?, cache, freelist: hex(w[3])? })
        })
        .collect()
}

/// What `kmem -S CACHE` lists: the slabs it walked (cpu, cpu partial, node
/// partial; full slabs are not tracked without SLUB debug) by their memory
/// address, and the allocated objects in them (`[ffff…]`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    pub slabs: HashSet<u64>,
    pub allocated: Vec<u64>,
}

pub fn kmem_big_s(text: &str) -> Listing {
    let mut out = Listing::default();
    let mut slab_row = false;
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.first() == Some(&"SLAB") && w.get(1) == Some(&"MEMORY") {
            slab_row = true;
            continue;
        }
        if slab_row {
            slab_row = false;
            if let Some(m) = w.get(1).and_then(|m| u64::from_str_radix(m, 16).ok()) {
                out.slabs.insert(m);
            }
            continue;
        }
        if w.len() == 1 {
            if let Some(a) = w[0].strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                if let Ok(a) = u64::from_str_radix(a, 16) {
                    out.allocated.push(a);
                }
            }
        }
    }
    out
}

/// A super block: its file system type's address and its `s_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sb {
    pub fs_type: u64,
    pub flags: u64,
}

/// `SB_NOUSER` (`1<<31`, sign-extended in `s_flags`): a kernel-internal
/// mount (sockfs, pipefs, anon_inodefs, shmem's own): its files are
/// pseudo files.
pub const SB_NOUSER: u64 = 1 << 31;

/// `list super_block.s_list -H super_blocks -s super_block.s_type,s_flags`.
pub fn super_blocks(text: &str) -> HashMap<u64, Sb> {
    let mut out = HashMap::new();
    let mut cur: Option<(u64, Option<u64>)> = None;
    for l in text.lines() {
        let t = l.trim();
        if let Some(v) = t.strip_prefix("s_type = 0x") {
            let v = v.split(|c: char| !c.is_ascii_hexdigit()).next().unwrap_or("");
            if let (Some((_, ty)), Ok(x)) = (cur.as_mut(), u64::from_str_radix(v, 16)) {
                *ty = Some(x);
            }
        } else if let Some(v) = t.strip_prefix("s_flags = ") {
            if let (Some((sb, Some(ty))), Ok(flags)) = (cur.take(), v.trim_end_matches(',').parse::<u64>()) {
                out.insert(sb, Sb { fs_type: ty, flags });
            }
        } else if !l.starts_with(' ') && t.len() == 16 {
            cur = u64::from_str_radix(t, 16).ok().map(|sb| (sb, None));
        }
    }
    out
}

/// Raw memory from `rd -64 ADDR N` lines (`ffff…:  0000000400400108
/// ffff888004925c08   ..@......`): address → 64-bit word.
pub fn qwords(text: &str) -> HashMap<u64, u64> {
    let mut out = HashMap::new();
    for l in text.lines() {
        let Some((addr, rest)) = l.split_once(':') else { continue };
        let Ok(addr) = u64::from_str_radix(addr.trim(), 16) else { continue };
        for (i, w) in rest.split_whitespace().take(2).enumerate() {
            if w.len() != 16 {
                break;
            }
            let Ok(v) = u64::from_str_radix(w, 16) else { break };
            out.insert(addr + 8 * i as u64, v);
        }
    }
    out
}

/// Strings from `rd -a ADDR` (`ffffffff82312eca:  tmpfs`), for the
/// addresses asked. crash ends such a string with no newline, so several
/// run together on one line (`…:  rootfsffffffff822e2ded:  iomem`): each
/// `:  ` is preceded by the 16 hex digits of the next string's address.
pub fn strings(text: &str, asked: &HashSet<u64>) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let marks: Vec<usize> = l.match_indices(":  ").map(|(i, _)| i).filter(|&i| i >= 16 && l.is_char_boundary(i - 16)).collect();
        for (k, &m) in marks.iter().enumerate() {
            let Ok(addr) = u64::from_str_radix(&l[m - 16..m], 16) else { continue };
            if !asked.contains(&addr) || out.contains_key(&addr) {
                continue;
            }
            let end = marks.get(k + 1).map_or(l.len(), |&n| n - 16);
            if let Some(v) = l.get(m + 3..end.max(m + 3)) {
                out.insert(addr, v.trim().to_string());
            }
        }
    }
    out
}

/// Reads little-endian integers out of parsed `rd -64` words.
pub struct Mem(pub HashMap<u64, u64>);

impl Mem {
    pub fn u64(&self, addr: u64) -> Option<u64> {
        self.0.get(&addr).copied()
    }
    pub fn u32(&self, addr: u64) -> Option<u32> {
        let q = self.0.get(&(addr & !7))?;
        Some((q >> ((addr & 7) * 8)) as u32)
    }
}
