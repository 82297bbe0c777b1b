//! Which code took the leaked memory: the attribution pass of a LEAK.
//!
//! The pass runs the A/B lab once more with the guest instrumented, and
//! compares what the instruments saw in the module arm with the baseline:
//! - an *allocation leak*: SLUB's allocation traces of the leaking caches
//!   (booted with `slub_debug=U,CACHE,…`; `alloc_traces` in debugfs hold
//!   every live object's allocating function and stack), module arm minus
//!   baseline per allocating function (`slab`);
//! - a *reference leak*: the functions that took references on VFS objects
//!   and never dropped them (`holders`).
//!
//! Each instrument is a pair of guest shell scripts (set up before the
//! workload, collect after it) and a pure reading of the two arms' text.

pub mod holders;
pub mod slab;

use serde::{Deserialize, Serialize};

/// One place in the code that the pass names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Site {
    /// The function, as the kernel symbolizes it (`leaky_alloc`, no offset).
    pub function: String,
    /// The module it lives in (`leaky`), or `vmlinux` for the kernel itself.
    pub module: String,
    /// The slab cache of the objects.
    pub cache: String,
    /// Objects this site holds in the module arm beyond the baseline.
    pub objects: i64,
    /// The call chain, innermost first, as `function [module]`, when the
    /// instrument recorded one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
    /// What the site did: allocated the objects, or took references on
    /// them that were never dropped.
    #[serde(default)]
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    #[default]
    Allocates,
    HoldsReferences,
    /// Read from the module's code, not counted: the only function of the
    /// lab's modules that takes references on the leaking objects, where
    /// tracing could not see its calls. `objects` is then the growth of
    /// the cache those references hold.
    TakesReferences,
}
