//! The HTML of a dump's reference survey (`triage::refs`): per cache read,
//! how many objects are referenced yet of deleted files, and the kind.

use maud::{html, Markup};

use super::html::{self, TableCell};
use crate::triage::refs::{DumpRefs, Estimate};

fn est(e: Option<&Estimate>) -> TableCell {
    match e {
        Some(e) if e.low == e.high => TableCell::Num(e.count.to_string()),
        Some(e) => TableCell::Num(format!("{} ({}–{})", e.count, e.low, e.high)),
        None => TableCell::Text(String::new()),
    }
}

fn by_fs(m: &std::collections::BTreeMap<String, Estimate>) -> String {
    m.iter().map(|(fs, e)| format!("{fs} {}", e.count)).collect::<Vec<_>>().join(", ")
}

pub fn markup(r: &DumpRefs) -> Markup {
    let rows: Vec<Vec<TableCell>> = r
        .caches
        .iter()
        .filter(|c| c.sample > 0)
        .map(|c| {
            vec![
                TableCell::Text(c.name.clone()),
                TableCell::Num(c.allocated.to_string()),
                TableCell::Num(c.sample.to_string()),
                est(c.deleted.as_ref()),
                TableCell::Text(by_fs(&c.deleted_by_fs)),
                est(c.pseudo.as_ref()),
                TableCell::Text(by_fs(&c.pseudo_by_fs)),
            ]
        })
        .collect();
    let header = ["cache", "allocated", "read", "referenced, deleted files (95 % CI)", "by fs", "referenced pseudo dentries", "by fs"];
    html! {
        h3 { "Referenced objects of deleted files (from the dump alone): " (r.kind.words()) } "\n"
        (html::table("dump-refs", &header, &rows))
        @for e in &r.evidence { (html::note("", e)) }
    }
}

#[cfg(test)]
mod tests {
    use crate::analysis::kind::LeakKind;
    use crate::triage::refs::{CacheRefs, DumpRefs, Tally};
    use crate::triage::CacheAtCrash;

    #[test]
    fn the_table_names_the_kind_and_the_file_systems() {
        let c = CacheAtCrash { name: "dentry".into(), objsize: 192, allocated: 308_733, total: 308_742, bytes: 59_276_736 };
        let mut d = CacheRefs::size_only(&c, None);
        Tally { read: 2000, referenced: 2000, deleted: [("tmpfs".to_string(), 1911)].into(), pseudo: [("pipefs".to_string(), 3)].into() }.apply(&mut d);
        let other = CacheRefs::size_only(&CacheAtCrash { name: "kmalloc-64".into(), objsize: 64, allocated: 10, total: 10, bytes: 640 }, None);
        let r = DumpRefs { kind: LeakKind::Reference, evidence: vec!["reference leak: because".into()], caches: vec![d, other], sample: 2000, secs: 12.0 };
        let h = super::markup(&r).into_string();
        assert!(h.contains("from the dump alone): reference leak"), "{h}");
        assert!(h.contains("294994 (") && h.contains("tmpfs 294994") && h.contains("pipefs 463"), "{h}");
        assert!(!h.contains("kmalloc-64"), "size-only caches are in the kmem -s table, not here: {h}");
    }
}
