//! First-and-last and growth views of a run's sample series, for its
//! `report.json` and its page.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sample::rows::{self, MeminfoRow, SlabRow};

/// A meminfo field's first and last value in a run, bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct FirstLast {
    pub first: u64,
    pub last: u64,
    pub delta: i64,
}

/// A slab cache's growth over a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct CacheGrowth {
    pub cache: String,
    pub first_bytes: u64,
    pub last_bytes: u64,
    pub delta_bytes: i64,
    pub delta_objs: i64,
}

const HEADLINE: [&str; 5] = ["MemAvailable", "MemFree", "Slab", "SReclaimable", "SUnreclaim"];

/// From `meminfo.csv` text: first and last value of the headline keys.
pub fn meminfo_first_last(csv: &str) -> BTreeMap<String, FirstLast> {
    let mut out: BTreeMap<String, FirstLast> = BTreeMap::new();
    for row in rows::parse::<MeminfoRow>(csv).filter(|r| HEADLINE.contains(&r.key.as_str())) {
        let v = row.bytes;
        out.entry(row.key)
            .and_modify(|e| {
                e.last = v;
                e.delta = v as i64 - e.first as i64;
            })
            .or_insert(FirstLast { first: v, last: v, delta: 0 });
    }
    out
}

/// From `slabinfo.csv` text: the `top` caches by growth of active bytes
/// between the first and the last sample time.
pub fn slab_growth(csv: &str, top: usize) -> Vec<CacheGrowth> {
    // cache -> (first (objs, bytes), last (objs, bytes)); rows come in time order.
    let mut first_t: Option<f64> = None;
    // (objects, bytes) at the first and the last sample.
    type Span = ((u64, u64), (u64, u64));
    let mut per: BTreeMap<String, Span> = BTreeMap::new();
    for row in rows::parse::<SlabRow>(csv) {
        let objs = row.active_objs;
        let cur = (objs, objs.saturating_mul(row.objsize));
        let t0 = *first_t.get_or_insert(row.t);
        per.entry(row.cache)
            .and_modify(|e| e.1 = cur)
            .or_insert(if row.t == t0 { (cur, cur) } else { ((0, 0), cur) });
    }
    let mut v: Vec<CacheGrowth> = per
        .into_iter()
        .map(|(cache, (a, b))| CacheGrowth {
            cache,
            first_bytes: a.1,
            last_bytes: b.1,
            delta_bytes: b.1 as i64 - a.1 as i64,
            delta_objs: b.0 as i64 - a.0 as i64,
        })
        .collect();
    v.sort_by(|x, y| y.delta_bytes.cmp(&x.delta_bytes).then(x.cache.cmp(&y.cache)));
    v.truncate(top);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_ranks_by_bytes() {
        let csv = "t,uptime,cache,active_objs,num_objs,objsize\n\
                   0.0,1,dentry,100,100,192\n0.0,1,kmalloc-64,10,10,64\n\
                   2.0,3,dentry,1100,1100,192\n2.0,3,kmalloc-64,5,10,64\n2.0,3,newcache,4,4,1000\n";
        let g = slab_growth(csv, 10);
        assert_eq!(g[0], CacheGrowth { cache: "dentry".into(), first_bytes: 19200, last_bytes: 211200, delta_bytes: 192000, delta_objs: 1000 });
        assert_eq!(g[1].cache, "newcache");
        assert_eq!(g[1].first_bytes, 0);
        assert_eq!(g[2].delta_bytes, -320);
    }

    #[test]
    fn meminfo_headline_first_last() {
        let csv = "t,uptime,key,bytes\n0,1,MemAvailable,1000\n0,1,Cached,5\n1,2,MemAvailable,400\n";
        let m = meminfo_first_last(csv);
        assert_eq!(m["MemAvailable"], FirstLast { first: 1000, last: 400, delta: -600 });
        assert!(!m.contains_key("Cached"));
    }
}
