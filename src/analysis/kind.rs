//! The kind of a leak, and what the kernel's own accounting says about the
//! objects of a slab cache.
//!
//! A *reference leak* keeps objects alive through references nobody drops:
//! dentries counted in `nr_dentry` but not `nr_unused`, inodes of files the
//! workload already deleted still allocated, open files nobody closes. The
//! VFS counts references on these objects, so its accounting (and a dump's
//! reference counts) sees them. An *allocation leak* is objects never freed
//! that nothing in the kernel's accounting references: a module's own cache
//! or a kmalloc cache growing while dentry and inode accounting stay flat.
//! Anything else is *unknown*, with the evidence saying why.
//!
//! The run's classification (`leak::classify`) and the dump's (`triage`)
//! both speak in these terms, so a support engineer holding only the
//! customer's vmcore gets the same words as the lab that reproduced it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LeakKind {
    Reference,
    Allocation,
    Unknown,
}

impl LeakKind {
    /// As the summary says it.
    pub fn words(self) -> &'static str {
        match self {
            LeakKind::Reference => "reference leak",
            LeakKind::Allocation => "allocation leak",
            LeakKind::Unknown => "unknown",
        }
    }
}

/// Which reference-counted VFS object a slab cache holds, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheClass {
    /// `dentry`: counted in `/proc/sys/fs/dentry-state`.
    Dentry,
    /// A file system's inodes (`inode_cache`, `shmem_inode_cache`,
    /// `ext4_inode_cache`, `sock_inode_cache`, `xfs_inode`, …).
    Inode,
    /// `filp`: open files.
    File,
    /// Anything else: kmalloc caches, a module's own caches, the kernel's
    /// other objects. Nothing in the VFS accounting refers to them.
    Other,
}

impl CacheClass {
    pub fn of(cache: &str) -> CacheClass {
        match cache {
            "dentry" => CacheClass::Dentry,
            "filp" => CacheClass::File,
            // The security modules' blob per inode: not an inode, owned by one.
            "lsm_inode_cache" => CacheClass::Other,
            c if c.ends_with("inode_cache") || c.ends_with("_inode") => CacheClass::Inode,
            _ => CacheClass::Other,
        }
    }

    /// Whether the VFS counts references on this cache's objects.
    pub fn referenced(self) -> bool {
        self != CacheClass::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_are_classed_by_their_names() {
        for (c, want) in [
            ("dentry", CacheClass::Dentry),
            ("filp", CacheClass::File),
            ("inode_cache", CacheClass::Inode),
            ("shmem_inode_cache", CacheClass::Inode),
            ("ext4_inode_cache", CacheClass::Inode),
            ("sock_inode_cache", CacheClass::Inode),
            ("xfs_inode", CacheClass::Inode),
            ("kmalloc-256", CacheClass::Other),
            ("lsm_inode_cache", CacheClass::Other),
            ("leaky_obj", CacheClass::Other),
            ("kernfs_node_cache", CacheClass::Other),
            ("dentry_cache_extra", CacheClass::Other),
        ] {
            assert_eq!(CacheClass::of(c), want, "{c}");
        }
        assert!(CacheClass::Inode.referenced() && !CacheClass::Other.referenced());
        assert_eq!(serde_json::to_string(&LeakKind::Reference).unwrap(), "\"reference\"");
    }
}
