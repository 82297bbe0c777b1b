//! From the dump alone: how many objects of the largest slab caches are
//! referenced yet belong to deleted files, and the kind of leak that makes.
//!
//! Three `crash` sessions after the triage's own. The first (full mode)
//! reads the layout: member offsets (`struct -o`), the super blocks' file
//! system types, each measured cache's object stride and its cpu and
//! partial slabs (`kmem -S CACHE`), and the slab pages (`kmem -p`: for a
//! slab's head page MAPPING is its cache and INDEX its freelist, so a page
//! of the cache that `kmem -S` did not list is a full slab, all objects
//! allocated). A uniform sample (fixed seed) of each measured cache's
//! allocated objects is then read raw (`rd`, `crash --minimal`: fast), and
//! a last minimal session reads the sampled dentries' inodes and the file
//! system names. Counts are estimated with a 95 % binomial interval scaled
//! to the cache's allocated objects.
//!
//! Counted per object (6.1's fields, offsets read from the dump's vmlinux):
//! a dentry is *of a deleted file* when `d_lockref.count > 0`, unhashed
//! (`d_hash.pprev == NULL`), not a root (`d_parent != itself`) and its
//! inode has `i_nlink == 0`; a referenced unhashed root dentry is a *pseudo*
//! dentry (sockets, pipes, anon inodes via `d_alloc_pseudo`, never hashed)
//! or a file system's root, reported apart. An inode is deleted yet
//! referenced when `i_nlink == 0 && i_count > 0`, and a referenced pseudo
//! file when it is live on a kernel-internal mount (`SB_NOUSER`: sockfs,
//! pipefs, anon_inodefs). Objects pinned so are the dump's evidence of a
//! reference leak; it cannot tell a leaked reference on a socket from an
//! open one.

pub mod parse;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::parse::{Listing, Mem};
pub use self::verdict::{classify, Estimate};
use super::CacheAtCrash;
use crate::analysis::kind::{CacheClass, LeakKind};
use crate::util::tool::Tool;

/// Objects read per measured cache.
pub const SAMPLE: u64 = 2000;
/// The sample's seed: the same dump gives the same numbers.
const SEED: u64 = 0x6b65_726e_6c61_6231;
const DEADLINE: Duration = Duration::from_secs(300);

/// The survey of a dump's largest caches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct DumpRefs {
    pub kind: LeakKind,
    pub evidence: Vec<String>,
    pub caches: Vec<CacheRefs>,
    /// Objects sampled per measured cache (all of them when fewer).
    pub sample: u64,
    /// Time the survey added to the triage.
    pub secs: f64,
}

impl DumpRefs {
    /// `reference leak (from the dump: …)`: the headline.
    pub fn headline(&self) -> String {
        format!("{} (from the dump alone; {} objects sampled per dentry/inode cache, {:.1} s)", self.kind.words(), self.sample, self.secs)
    }

    /// The read caches' numbers, then what decided.
    pub fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self.caches.iter().filter(|c| c.sample > 0).map(CacheRefs::evidence).collect();
        v.extend(self.evidence.last().cloned());
        v
    }
}

/// One of the largest caches: its size, and for dentries and inodes what
/// the sampled objects were.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct CacheRefs {
    pub name: String,
    pub class: CacheClass,
    pub allocated: u64,
    pub bytes: u64,
    /// Objects read (0: size only).
    pub sample: u64,
    /// Referenced objects (count > 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referenced: Option<Estimate>,
    /// Referenced objects of deleted files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Estimate>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted_by_fs: BTreeMap<String, Estimate>,
    /// Referenced pseudo-file objects: unhashed root dentries (sockets,
    /// pipes, anon inodes, file system roots), live inodes of a
    /// kernel-internal (`SB_NOUSER`) file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo: Option<Estimate>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pseudo_by_fs: BTreeMap<String, Estimate>,
    /// Why the objects were not read, or what to know about the sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CacheRefs {
    pub fn size_only(c: &CacheAtCrash, note: Option<String>) -> CacheRefs {
        CacheRefs {
            name: c.name.clone(),
            class: CacheClass::of(&c.name),
            allocated: c.allocated,
            bytes: c.bytes,
            sample: 0,
            referenced: None,
            deleted: None,
            deleted_by_fs: BTreeMap::new(),
            pseudo: None,
            pseudo_by_fs: BTreeMap::new(),
            note,
        }
    }

    /// Pinned objects: referenced deleted-file objects and pseudo dentries
    /// (disjoint).
    pub fn pinned(&self) -> Estimate {
        let hits = self.deleted.map_or(0, |e| e.hits) + self.pseudo.map_or(0, |e| e.hits);
        Estimate::new(hits, self.sample, self.allocated)
    }

    /// One line of numbers, as the evidence and the terminal say it.
    pub fn evidence(&self) -> String {
        let mut s = format!("{}: {} allocated", self.name, self.allocated);
        if self.sample == 0 {
            if let Some(n) = &self.note {
                let _ = write!(s, " ({n})");
            }
            return s;
        }
        let by = |m: &BTreeMap<String, Estimate>| {
            let v: Vec<String> = m.iter().map(|(fs, e)| format!("{fs} {}", e.count)).collect();
            if v.is_empty() {
                String::new()
            } else {
                format!(" [{}]", v.join(", "))
            }
        };
        if let Some(d) = &self.deleted {
            let _ = write!(s, "; referenced deleted-file objects {} = {:.1} %{}", d.words(), 100.0 * d.fraction(), by(&self.deleted_by_fs));
        }
        if let Some(p) = &self.pseudo {
            let _ = write!(s, "; referenced pseudo-file objects {}{}", p.words(), by(&self.pseudo_by_fs));
        }
        if let Some(r) = &self.referenced {
            let _ = write!(s, "; referenced at all {}", r.count);
        }
        s
    }
}

/// `struct -o` types: where the `struct inode` sits in each inode cache's
/// objects (6.1 names). Inode caches not listed are reported by size.
const INODE_CONTAINERS: &[(&str, &str, &str)] = &[
    ("inode_cache", "inode", ""),
    ("shmem_inode_cache", "shmem_inode_info", "vfs_inode"),
    ("ext4_inode_cache", "ext4_inode_info", "vfs_inode"),
    ("proc_inode_cache", "proc_inode", "vfs_inode"),
    ("sock_inode_cache", "socket_alloc", "vfs_inode"),
    ("xfs_inode", "xfs_inode", "i_vnode"),
    ("btrfs_inode", "btrfs_inode", "vfs_inode"),
    ("fuse_inode", "fuse_inode", "inode"),
    ("nfs_inode_cache", "nfs_inode", "vfs_inode"),
    ("hugetlbfs_inode_cache", "hugetlbfs_inode_info", "vfs_inode"),
    ("mqueue_inode_cache", "mqueue_inode_info", "vfs_inode"),
    ("overlay_inode", "ovl_inode", "vfs_inode"),
];

/// What is measured in a cache, and how its objects are laid out.
#[derive(Debug, Clone)]
struct Target {
    idx: usize,
    addr: u64,
    /// The `struct inode` offset in an inode cache's object; None: dentry.
    inode_at: Option<(String, String)>,
}

/// Cache name → `kmem_cache` address, from `kmem -s` rows.
pub fn cache_addrs(kmem_s: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let mut inside = false;
    for l in kmem_s.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.first() == Some(&"CACHE") && w.contains(&"OBJSIZE") {
            inside = true;
            continue;
        }
        if inside && w.len() >= 7 {
            if let Ok(a) = u64::from_str_radix(w[0], 16) {
                out.entry(w[6..].join(" ")).or_insert(a);
            }
        }
    }
    out
}

/// Runs one `crash` session on a command file in `work`.
fn session(vmlinux: &Path, vmcore: &Path, work: &Path, name: &str, cmds: &str, minimal: bool) -> Result<String, String> {
    let file = work.join(format!("{name}.cmds"));
    std::fs::write(&file, format!("{cmds}quit\n")).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let t0 = Instant::now();
    let mut t = Tool::new("crash", DEADLINE);
    if minimal {
        t = t.arg("--minimal");
    }
    let o = t.arg("-s").arg(vmlinux).arg(vmcore).arg("-i").arg(&file).output().map_err(|e| format!("crash ({name}): {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::write(work.join(format!("{name}.txt")), &text);
    tracing::debug!("crash session `{name}` ({} commands): {:.1} s", cmds.lines().count(), t0.elapsed().as_secs_f64());
    Ok(text)
}

fn read(work: &Path, f: &str) -> String {
    std::fs::read_to_string(work.join(f)).unwrap_or_default()
}

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// `k` distinct indices of `0..n`, uniformly (Floyd), in order.
pub fn sample_indices(n: u64, k: u64, seed: u64) -> Vec<u64> {
    if k >= n {
        return (0..n).collect();
    }
    let mut rng = Rng(seed);
    let mut set = BTreeSet::new();
    for j in n - k..n {
        let t = rng.below(j + 1);
        if !set.insert(t) {
            set.insert(j);
        }
    }
    set.into_iter().collect()
}

/// A cache's allocated objects: full slabs' objects and the listed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objects {
    /// Full slabs' first object addresses.
    pub full: Vec<u64>,
    pub per_slab: u64,
    pub stride: u64,
    pub listed: Vec<u64>,
    /// Slab pages neither full nor listed (a freelist crash did not walk).
    pub unlisted: u64,
}

impl Objects {
    pub fn new(pages: &[parse::SlabPage], cache: u64, base: u64, pad: u64, stride: u64, per_slab: u64, listing: &Listing) -> Objects {
        let mut full = Vec::new();
        let mut unlisted = 0;
        for p in pages.iter().filter(|p| p.cache == cache) {
            let mem = base.wrapping_add(p.phys);
            if listing.slabs.contains(&mem) {
                continue;
            }
            if p.freelist != 0 {
                unlisted += 1;
                continue;
            }
            full.push(mem + pad);
        }
        full.sort_unstable();
        Objects { full, per_slab, stride, listed: listing.allocated.clone(), unlisted }
    }
    pub fn count(&self) -> u64 {
        self.full.len() as u64 * self.per_slab + self.listed.len() as u64
    }
    pub fn at(&self, i: u64) -> u64 {
        let f = self.full.len() as u64 * self.per_slab;
        if i < f {
            self.full[(i / self.per_slab) as usize] + (i % self.per_slab) * self.stride
        } else {
            self.listed[(i - f) as usize]
        }
    }
}

fn off(work: &Path, ty: &str, member: &str) -> Result<u64, String> {
    parse::member_offset(&read(work, &format!("o-{ty}.txt")), member).ok_or_else(|| format!("`struct -o {ty}` gave no offset of `{member}`"))
}

/// Field offsets (dentry, inode, file_system_type).
#[derive(Debug, Clone, Copy)]
struct Offsets {
    d_hash_pprev: u64,
    d_parent: u64,
    d_inode: u64,
    d_count: u64,
    d_sb: u64,
    i_sb: u64,
    i_nlink: u64,
    i_count: u64,
    fs_name: u64,
}

fn offsets(work: &Path) -> Result<Offsets, String> {
    Ok(Offsets {
        d_hash_pprev: off(work, "dentry", "d_hash")? + off(work, "hlist_bl_node", "pprev")?,
        d_parent: off(work, "dentry", "d_parent")?,
        d_inode: off(work, "dentry", "d_inode")?,
        d_count: off(work, "dentry", "d_lockref")? + off(work, "lockref", "count")?,
        d_sb: off(work, "dentry", "d_sb")?,
        i_sb: off(work, "inode", "i_sb")?,
        i_nlink: off(work, "inode", "__i_nlink").or_else(|_| off(work, "inode", "i_nlink"))?,
        i_count: off(work, "inode", "i_count")?,
        fs_name: off(work, "file_system_type", "name")?,
    })
}

/// Surveys the largest caches (`top`, from the triage's `kmem -s` text).
pub fn survey(vmlinux: &Path, vmcore: &Path, kmem_s: &str, top: &[CacheAtCrash], work: &Path) -> Result<DumpRefs, String> {
    let t0 = Instant::now();
    std::fs::create_dir_all(work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let addrs = cache_addrs(kmem_s);
    let mut caches: Vec<CacheRefs> = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    for (idx, c) in top.iter().enumerate() {
        let class = CacheClass::of(&c.name);
        let addr = addrs.get(&c.name).copied();
        let note = match (class, addr) {
            (CacheClass::Other, _) => None,
            (CacheClass::File, _) => Some("open files: no deleted-file accounting read for them".to_string()),
            (_, None) => Some("its kmem_cache address is not in `kmem -s`".into()),
            (CacheClass::Dentry, Some(a)) => {
                targets.push(Target { idx, addr: a, inode_at: None });
                None
            }
            (CacheClass::Inode, Some(a)) => match INODE_CONTAINERS.iter().find(|(n, _, _)| *n == c.name) {
                Some((_, ty, m)) => {
                    targets.push(Target { idx, addr: a, inode_at: Some((ty.to_string(), m.to_string())) });
                    None
                }
                None => Some(format!("no struct inode layout known for `{}` (lsm_inode_cache holds LSM blobs, not inodes)", c.name)),
            },
        };
        caches.push(CacheRefs::size_only(c, note));
    }
    if targets.is_empty() {
        let (kind, evidence) = classify(&caches);
        return Ok(DumpRefs { kind, evidence, caches, sample: SAMPLE, secs: t0.elapsed().as_secs_f64() });
    }
    let w = work.display();
    // Session 1: layout.
    let mut cmds = format!("p/x page_offset_base > {w}/base.txt\n");
    let mut types: BTreeSet<&str> = ["dentry", "inode", "lockref", "hlist_bl_node", "file_system_type", "slab", "page"].into();
    for t in &targets {
        if let Some((ty, _)) = &t.inode_at {
            types.insert(ty);
        }
    }
    for ty in &types {
        let _ = writeln!(cmds, "struct -o {ty} > {w}/o-{ty}.txt");
    }
    let _ = writeln!(cmds, "list super_block.s_list -H super_blocks -s super_block.s_type,s_flags > {w}/sbs.txt");
    for t in &targets {
        let _ = writeln!(cmds, "kmem -S {} > {w}/S-{}.txt", top[t.idx].name, t.idx);
        let _ = writeln!(cmds, "struct kmem_cache.size,red_left_pad,oo {:#x} > {w}/k-{}.txt", t.addr, t.idx);
    }
    let _ = writeln!(cmds, "kmem -p | grep slab > {w}/pages.txt");
    session(vmlinux, vmcore, work, "layout", &cmds, false)?;
    let base = parse::print_hex(&read(work, "base.txt")).ok_or("`p/x page_offset_base` gave no value")?;
    let (slab_cache, mapping) = (off(work, "slab", "slab_cache")?, off(work, "page", "mapping")?);
    let (freelist, index) = (off(work, "slab", "freelist")?, off(work, "page", "index")?);
    if (slab_cache, freelist) != (mapping, index) {
        return Err(format!(
            "this kernel's struct slab does not overlay page.mapping/page.index with slab_cache/freelist ({slab_cache}/{freelist} vs {mapping}/{index}): `kmem -p` cannot list its slabs"
        ));
    }
    let o = offsets(work)?;
    let want: HashSet<u64> = targets.iter().map(|t| t.addr).collect();
    let pages = parse::slab_pages(&read(work, "pages.txt"), &want);
    let _ = std::fs::remove_file(work.join("pages.txt"));
    let sbs = parse::super_blocks(&read(work, "sbs.txt"));

    // Session 2: the sampled objects, raw; the file system types' name pointers.
    let mut samples: Vec<(usize, Vec<u64>, u64)> = Vec::new(); // (target, object addresses, inode offset)
    let mut cmds = String::new();
    let dentry_words = [o.d_hash_pprev, o.d_parent, o.d_inode, o.d_count, o.d_sb].into_iter().max().unwrap_or(0) / 8 + 1;
    for (ti, t) in targets.iter().enumerate() {
        let k = read(work, &format!("k-{}.txt", t.idx));
        let c = &top[t.idx];
        let (Some(stride), Some(oo)) = (parse::struct_member(&k, "size"), parse::struct_member(&k, "oo")) else {
            caches[t.idx].note = Some("`struct kmem_cache` gave no size/oo".into());
            continue;
        };
        let pad = parse::struct_member(&k, "red_left_pad").unwrap_or(0);
        let inode_at = match &t.inode_at {
            None => 0,
            Some((_, m)) if m.is_empty() => 0,
            Some((ty, m)) => match off(work, ty, m) {
                Ok(v) => v,
                Err(e) => {
                    caches[t.idx].note = Some(e);
                    continue;
                }
            },
        };
        let listing = parse::kmem_big_s(&read(work, &format!("S-{}.txt", t.idx)));
        let objs = Objects::new(&pages, t.addr, base, pad, stride, oo & 0xffff, &listing);
        let n = objs.count();
        if n == 0 {
            caches[t.idx].note = Some("`kmem -p` and `kmem -S` found none of its objects".into());
            continue;
        }
        let mut note = Vec::new();
        if n.abs_diff(c.allocated) * 100 > c.allocated {
            note.push(format!("the slabs walked hold {n} allocated objects, kmem -s says {}", c.allocated));
        }
        if objs.unlisted > 0 {
            note.push(format!("{} slabs with free objects were not listed by kmem -S and were left out", objs.unlisted));
        }
        if !note.is_empty() {
            caches[t.idx].note = Some(note.join("; "));
        }
        let addrs: Vec<u64> = sample_indices(n, SAMPLE, SEED ^ t.addr).into_iter().map(|i| objs.at(i)).collect();
        for &a in &addrs {
            match t.inode_at {
                None => {
                    let _ = writeln!(cmds, "rd -64 {a:#x} {dentry_words}");
                }
                Some(_) => {
                    let i = a + inode_at;
                    for f in [o.i_sb, o.i_nlink, o.i_count] {
                        let _ = writeln!(cmds, "rd -64 {:#x} 1", (i + f) & !7);
                    }
                }
            }
        }
        samples.push((ti, addrs, inode_at));
    }
    let fs_types: BTreeSet<u64> = sbs.values().map(|s| s.fs_type).collect();
    for t in &fs_types {
        let _ = writeln!(cmds, "rd -64 {:#x} 1", (t + o.fs_name) & !7);
    }
    let mem = Mem(parse::qwords(&session(vmlinux, vmcore, work, "objects", &cmds, true)?));

    // Session 3: the inodes of the candidate dentries; the file system names.
    let mut cmds = String::new();
    let dentry = |a: u64| -> Option<(i32, u64, u64, u64, u64)> {
        Some((mem.u32(a + o.d_count)? as i32, mem.u64(a + o.d_hash_pprev)?, mem.u64(a + o.d_parent)?, mem.u64(a + o.d_inode)?, mem.u64(a + o.d_sb)?))
    };
    for (ti, addrs, _) in &samples {
        if targets[*ti].inode_at.is_none() {
            for &a in addrs {
                if let Some((count, 0, parent, inode, _)) = dentry(a) {
                    if count > 0 && parent != a && inode != 0 {
                        let _ = writeln!(cmds, "rd -64 {:#x} 1", (inode + o.i_nlink) & !7);
                    }
                }
            }
        }
    }
    // The names last: crash ends `rd -a` output with no newline.
    let mut name_ptrs = HashSet::new();
    for t in &fs_types {
        if let Some(p) = mem.u64(t + o.fs_name) {
            if name_ptrs.insert(p) {
                let _ = writeln!(cmds, "rd -a {p:#x}");
            }
        }
    }
    let text = session(vmlinux, vmcore, work, "inodes", &cmds, true)?;
    let mem2 = Mem(parse::qwords(&text));
    let names = parse::strings(&text, &name_ptrs);
    let fs_of = |sb: u64| -> String {
        sbs.get(&sb).and_then(|s| mem.u64(s.fs_type + o.fs_name)).and_then(|p| names.get(&p)).cloned().unwrap_or_else(|| "?".into())
    };

    for (ti, addrs, inode_at) in &samples {
        let t = &targets[*ti];
        let mut tally = Tally::default();
        for &a in addrs {
            match t.inode_at {
                None => {
                    let Some((count, pprev, parent, inode, sb)) = dentry(a) else { continue };
                    tally.read += 1;
                    if count <= 0 {
                        continue;
                    }
                    tally.referenced += 1;
                    if pprev != 0 {
                        continue;
                    }
                    if parent == a {
                        *tally.pseudo.entry(fs_of(sb)).or_default() += 1;
                    } else if inode != 0 && mem2.u32(inode + o.i_nlink) == Some(0) {
                        *tally.deleted.entry(fs_of(sb)).or_default() += 1;
                    }
                }
                Some(_) => {
                    let i = a + inode_at;
                    let (Some(sb), Some(nlink), Some(count)) = (mem.u64(i + o.i_sb), mem.u32(i + o.i_nlink), mem.u32(i + o.i_count)) else { continue };
                    tally.read += 1;
                    if (count as i32) > 0 {
                        tally.referenced += 1;
                        if nlink == 0 {
                            *tally.deleted.entry(fs_of(sb)).or_default() += 1;
                        } else if sbs.get(&sb).is_some_and(|s| s.flags & parse::SB_NOUSER != 0) {
                            *tally.pseudo.entry(fs_of(sb)).or_default() += 1;
                        }
                    }
                }
            }
        }
        tally.apply(&mut caches[t.idx]);
    }
    let (kind, evidence) = classify(&caches);
    Ok(DumpRefs { kind, evidence, caches, sample: SAMPLE, secs: t0.elapsed().as_secs_f64() })
}

/// Surveys beside the triage's text `out` (in `crash-refs/` next to it, or a
/// temporary directory when that path is not one crash's `>` can take):
/// the survey, or why there is none.
pub fn survey_beside(vmlinux: &Path, vmcore: &Path, kmem_s: &str, top: &[CacheAtCrash], out: &Path) -> Result<DumpRefs, String> {
    let dir = out.parent().unwrap_or(Path::new(".")).join("crash-refs");
    let plain = |p: &Path| p.to_str().is_some_and(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:+@".contains(c)));
    let abs = std::path::absolute(&dir).unwrap_or(dir);
    if plain(&abs) {
        return survey(vmlinux, vmcore, kmem_s, top, &abs);
    }
    let tmp = tempfile::tempdir().map_err(|e| format!("a temporary directory for crash's output: {e}"))?;
    survey(vmlinux, vmcore, kmem_s, top, tmp.path())
}

/// Counts over one cache's sample.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub read: u64,
    pub referenced: u64,
    pub deleted: BTreeMap<String, u64>,
    pub pseudo: BTreeMap<String, u64>,
}

impl Tally {
    pub fn apply(&self, c: &mut CacheRefs) {
        let est = |hits: u64| Estimate::new(hits, self.read, c.allocated);
        c.sample = self.read;
        c.referenced = Some(est(self.referenced));
        c.deleted = Some(est(self.deleted.values().sum()));
        c.deleted_by_fs = self.deleted.iter().map(|(k, v)| (k.clone(), est(*v))).collect();
        c.pseudo = Some(est(self.pseudo.values().sum()));
        c.pseudo_by_fs = self.pseudo.iter().map(|(k, v)| (k.clone(), est(*v))).collect();
    }
}

#[cfg(test)]
mod tests;
