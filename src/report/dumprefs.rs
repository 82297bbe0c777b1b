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
