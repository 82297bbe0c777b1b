//! The parsers on real `crash` 8 output from a Debian 6.1.0-54 vmcore (the
//! leak-to-crash lab: khm leak=1 churning tmpfs until OOM), and the kind of
//! leak as a function of the counts.

use std::collections::HashSet;

use super::parse::*;
use super::*;

macro_rules! data {
    ($f:literal) => {
        include_str!(concat!("../testdata/", $f))
    };
}

#[test]
fn offsets_of_the_6_1_structs() {
    let d = data!("o-dentry.txt");
    assert_eq!(
        [member_offset(d, "d_hash"), member_offset(d, "d_parent"), member_offset(d, "d_inode"), member_offset(d, "d_lockref"), member_offset(d, "d_sb")],
        [Some(8), Some(24), Some(48), Some(88), Some(104)]
    );
    assert_eq!(member_offset(data!("o-lockref.txt"), "count"), Some(4));
    assert_eq!(member_offset(data!("o-hlist_bl_node.txt"), "pprev"), Some(8));
    let i = data!("o-inode.txt");
    assert_eq!([member_offset(i, "i_sb"), member_offset(i, "__i_nlink"), member_offset(i, "i_count")], [Some(40), Some(72), Some(344)]);
    assert_eq!(member_offset(data!("o-shmem_inode_info.txt"), "vfs_inode"), Some(144));
    assert_eq!(member_offset(data!("o-file_system_type.txt"), "name"), Some(0));
    // struct slab overlays page.mapping and page.index with slab_cache and
    // freelist: what makes `kmem -p` list slabs by cache.
    let (s, p) = (data!("o-slab.txt"), data!("o-page.txt"));
    assert_eq!(member_offset(s, "slab_cache"), member_offset(p, "mapping"));
    assert_eq!(member_offset(s, "freelist"), member_offset(p, "index"));
    assert_eq!(member_offset(s, "objects"), None, "a bitfield is not a member offset asked for");
    assert_eq!(member_offset(d, "no_such_member"), None);
}

#[test]
fn kmem_cache_stride_and_objects_per_slab() {
    let k = data!("k-shmem_inode_cache.txt");
    assert_eq!(struct_member(k, "size"), Some(784), "the stride, not kmem -s's 776-byte object");
    assert_eq!(struct_member(k, "red_left_pad"), Some(0));
    assert_eq!(struct_member(k, "oo").map(|x| (x >> 16, x & 0xffff)), Some((1, 10)), "order 1, 10 objects");
    assert_eq!(print_hex("$1 = 0xffff888000000000\n"), Some(0xffff_8880_0000_0000));
}

#[test]
fn kmem_big_s_lists_the_cpu_and_partial_slabs() {
    let l = kmem_big_s(data!("S-dentry.txt"));
    assert_eq!(l.slabs, HashSet::from([0xffff_8880_006a_5000]));
    assert_eq!(l.allocated.len(), 12, "the SLAB row says 12 allocated");
    assert_eq!(l.allocated[0], 0xffff_8880_006a_5000);
    assert!(!l.allocated.contains(&0xffff_8880_006a_5240), "a cpu-cache (free) object");
}

#[test]
fn slab_pages_and_super_blocks() {
    let want = HashSet::from([0xffff_8880_03db_5d00]);
    let p = slab_pages(data!("pages.txt"), &want);
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!(p[0], SlabPage { phys: 0x400000, cache: 0xffff_8880_03db_5d00, freelist: 0 });
    let sbs = super_blocks(data!("sbs.txt"));
    let tmpfs = sbs[&0xffff_8880_1fe7_2800];
    assert_eq!(tmpfs.fs_type, 0xffff_ffff_82b4_ecc0, "the churn's tmpfs → shmem_fs_type");
    assert_eq!(tmpfs.flags & SB_NOUSER, 0, "a user's mount");
    assert_ne!(sbs[&0xffff_8880_03df_2800].flags & SB_NOUSER, 0, "sockfs (its s_flags print sign-extended)");
    assert!(sbs.len() > 20, "{}", sbs.len());
}

#[test]
fn a_sampled_dentry_read_raw_is_a_referenced_deleted_tmpfs_file() {
    let mem = Mem(qwords(data!("rd-objects.txt")));
    let a = 0xffff_8880_0040_2cc0;
    assert_eq!(mem.u32(a + 88 + 4), Some(1), "d_lockref.count");
    assert_eq!(mem.u64(a + 8 + 8), Some(0), "d_hash.pprev: unhashed");
    assert_eq!(mem.u64(a + 24), Some(0xffff_8880_04cf_a300), "d_parent: not a root");
    let inode = mem.u64(a + 48).unwrap();
    assert_eq!(mem.u64(a + 104), Some(0xffff_8880_1fe7_2800), "d_sb");
    // A shmem inode read as three single words (i_sb, i_nlink, i_count).
    assert_eq!(mem.u64(0xffff_8880_0015_2cf8), Some(0xffff_8880_1fe7_2800));
    assert_eq!(mem.u32(0xffff_8880_0015_2e28), Some(1));
    let text = data!("rd-names.txt");
    let mem2 = Mem(qwords(text));
    assert_eq!(mem2.u32(inode + 72), Some(0), "i_nlink of the dentry's inode: deleted");
    let name_ptr = mem.u64(0xffff_ffff_82b4_ecc0).unwrap();
    let names = strings(text, &HashSet::from([name_ptr, 0xffff_ffff_8231_3420, 0xffff_ffff_8238_373b]));
    assert_eq!(names.get(&name_ptr).map(String::as_str), Some("tmpfs"));
    assert_eq!(names.get(&0xffff_ffff_8231_3420).map(String::as_str), Some("rootfs"));
    assert_eq!(names.get(&0xffff_ffff_8238_373b).map(String::as_str), Some("sockfs"), "the last one, at the end of the line");
}

#[test]
fn objects_of_full_slabs_and_listed_ones() {
    let pages = [
        SlabPage { phys: 0x1000, cache: 7, freelist: 0 },
        SlabPage { phys: 0x3000, cache: 7, freelist: 0 },
        SlabPage { phys: 0x5000, cache: 7, freelist: 0 }, // listed (cpu slab)
        SlabPage { phys: 0x9000, cache: 7, freelist: 0xdead }, // partial, not listed
        SlabPage { phys: 0x7000, cache: 8, freelist: 0 },
    ];
    let base = 0xffff_0000_0000_0000;
    let listing = Listing { slabs: HashSet::from([base + 0x5000]), allocated: vec![base + 0x5000, base + 0x50c0] };
    let o = Objects::new(&pages, 7, base, 0, 192, 21, &listing);
    assert_eq!((o.count(), o.unlisted), (2 * 21 + 2, 1));
    assert_eq!(o.at(0), base + 0x1000);
    assert_eq!(o.at(20), base + 0x1000 + 20 * 192);
    assert_eq!(o.at(21), base + 0x3000);
    assert_eq!(o.at(43), base + 0x50c0);
}

#[test]
fn samples_are_distinct_uniform_and_repeatable() {
    let s = sample_indices(308_733, 2000, 42);
    assert_eq!(s.len(), 2000);
    assert!(s.windows(2).all(|w| w[0] < w[1]) && *s.last().unwrap() < 308_733);
    assert_eq!(s, sample_indices(308_733, 2000, 42));
    assert_ne!(s, sample_indices(308_733, 2000, 43));
    let low_half = s.iter().filter(|&&i| i < 308_733 / 2).count();
    assert!((900..1100).contains(&low_half), "{low_half}");
    assert_eq!(sample_indices(5, 2000, 1), vec![0, 1, 2, 3, 4], "fewer objects than the sample: all of them");
}

#[test]
fn estimates_scale_with_a_wilson_interval() {
    let (lo, hi) = verdict::wilson(1911, 2000);
    assert!((lo - 0.946).abs() < 0.002 && (hi - 0.964).abs() < 0.002, "{lo} {hi}");
    let e = Estimate::new(1911, 2000, 308_733);
    assert_eq!(e.count, 294_994);
    assert!(e.low < e.count && e.count < e.high && e.high <= 308_733, "{e:?}");
    let all = Estimate::new(2000, 2000, 308_733);
    assert_eq!(all.high, 308_733);
    let census = Estimate::new(3, 12, 12);
    assert_eq!((census.count, census.low, census.high), (3, 3, 3));
    assert_eq!(Estimate::new(0, 0, 10).fraction(), 0.0);
}

fn cache(name: &str, bytes: u64, allocated: u64, pinned: Option<(u64, u64)>) -> CacheRefs {
    let c = CacheAtCrash { name: name.into(), objsize: 1, allocated, total: allocated, bytes };
    let mut r = CacheRefs::size_only(&c, None);
    if let Some((hits, n)) = pinned {
        let t = Tally { read: n, referenced: hits, deleted: [("tmpfs".to_string(), hits)].into(), pseudo: Default::default() };
        t.apply(&mut r);
    }
    r
}

#[test]
fn the_khm_dump_is_a_reference_leak() {
    let caches = [
        cache("shmem_inode_cache", 230_945_360, 297_610, Some((1997, 2000))),
        cache("dentry", 59_276_736, 308_733, Some((1911, 2000))),
        cache("lsm_inode_cache", 9_880_032, 308_751, None),
        cache("inode_cache", 6_837_608, 10_819, Some((0, 2000))),
        cache("kernfs_node_cache", 1_575_552, 12_309, None),
    ];
    let (kind, ev) = classify(&caches);
    assert_eq!(kind, LeakKind::Reference, "{ev:#?}");
    assert!(ev.iter().any(|e| e.starts_with("dentry: 308733 allocated; referenced deleted-file objects 294994 (95 % CI")), "{ev:#?}");
    assert!(ev.iter().any(|e| e.contains("[tmpfs 294994]")), "{ev:#?}");
}

#[test]
fn a_kmalloc_cache_on_top_with_live_dentries_is_an_allocation_leak() {
    let caches = [
        cache("kmalloc-256", 200_000_000, 780_000, None),
        cache("dentry", 6_000_000, 31_000, Some((12, 2000))),
        cache("inode_cache", 5_000_000, 8_000, Some((0, 2000))),
        cache("kmalloc-64", 1_000_000, 15_000, None),
    ];
    let (kind, ev) = classify(&caches);
    assert_eq!(kind, LeakKind::Allocation, "{ev:#?}");
    assert!(ev.iter().any(|e| e.contains("kmalloc-256 190.7 MiB (not a VFS cache)")), "{ev:#?}");
    // A module's own cache the same, even with no VFS cache read at all.
    let (kind, _) = classify(&[cache("leaky_obj", 100_000_000, 400_000, None), cache("dentry", 1_000_000, 5_000, None)]);
    assert_eq!(kind, LeakKind::Allocation);
}

#[test]
fn what_the_dump_cannot_decide_is_unknown() {
    // A big dcache of live (hashed) files.
    let (kind, ev) = classify(&[cache("dentry", 200_000_000, 1_000_000, Some((40, 2000))), cache("kmalloc-64", 1_000_000, 15_000, None)]);
    assert_eq!(kind, LeakKind::Unknown);
    assert!(ev.last().unwrap().contains("mostly live"), "{ev:#?}");
    // Others hold most of the slab, yet the dentries are mostly pinned.
    let (kind, ev) = classify(&[cache("kmalloc-64", 10_000_000, 150_000, None), cache("dentry", 9_000_000, 46_000, Some((1500, 2000)))]);
    assert_eq!(kind, LeakKind::Unknown);
    assert!(ev.last().unwrap().contains("also dominated"), "{ev:#?}");
    // VFS caches on top but none of them could be read.
    let (kind, ev) = classify(&[cache("filp", 10_000_000, 40_000, None), cache("kmalloc-64", 1_000_000, 15_000, None)]);
    assert_eq!(kind, LeakKind::Unknown);
    assert!(ev.last().unwrap().contains("none could be read"), "{ev:#?}");
    assert_eq!(classify(&[]).0, LeakKind::Unknown);
}
