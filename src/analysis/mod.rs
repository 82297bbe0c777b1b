//! Turning sample series into findings. `leak` reads two arms' series
//! (module and baseline), fits them and decides LEAK / NO-LEAK /
//! INCONCLUSIVE with the in-house statistics in `crate::stats`. Pure over the
//! CSV text, so a verdict can be recomputed from any run directory.

pub mod attribution;
pub mod growth;
pub mod kind;
pub mod leak;
