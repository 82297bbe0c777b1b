//! The rows of the sample series in a run's `samples/` directory, defined
//! once for the writer ([`super::store`]) and every reader (the analysis,
//! the pages, `kernlab report`). The files are CSV (the csv crate) in long
//! format, one row per (time, key), with a header line:
//!
//! | file | header |
//! | --- | --- |
//! | `meminfo.csv` | `t,uptime,key,bytes` |
//! | `slabinfo.csv` | `t,uptime,cache,active_objs,num_objs,objsize` |
//! | `dentry-state.csv` | `t,uptime,nr_dentry,nr_unused,age_limit,want_pages,nr_negative` |
//! | `ops.csv` | `t,uptime,ops` |
//! | `balloon.csv` | `t,key,value` |
//! | `kernlab.csv` | `t,rss_bytes,fds,threads` |
//!
//! `t` is the run time in seconds with three decimals, `uptime` the guest's
//! own clock with two (empty when the capture had none).
//!
//! A run killed while writing leaves a torn last line: readers skip a
//! record that does not parse, and so never fail on what a sample left.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

/// One row type of one series file.
pub trait Row: Serialize + DeserializeOwned {
    /// The file's name in `samples/`.
    const FILE: &'static str;
    /// The header line, the row's field names in order.
    const HEADER: &'static str;
}

/// Run time: three decimals (milliseconds), as every series writes it.
fn secs3<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:.3}"))
}

/// Guest uptime: two decimals (procfs' own precision), empty when unknown.
fn uptime2<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.collect_str(&format_args!("{u:.2}")),
        None => s.serialize_none(),
    }
}

/// One meminfo field at one sample (bytes for `kB` fields, counts as they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeminfoRow {
    #[serde(serialize_with = "secs3")]
    pub t: f64,
    #[serde(serialize_with = "uptime2")]
    pub uptime: Option<f64>,
    pub key: String,
    pub bytes: u64,
}

impl Row for MeminfoRow {
    const FILE: &'static str = "meminfo.csv";
    const HEADER: &'static str = "t,uptime,key,bytes";
}

/// One slab cache at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlabRow {
    #[serde(serialize_with = "secs3")]
    pub t: f64,
    #[serde(serialize_with = "uptime2")]
    pub uptime: Option<f64>,
    pub cache: String,
    pub active_objs: u64,
    pub num_objs: u64,
    pub objsize: u64,
}

impl Row for SlabRow {
    const FILE: &'static str = "slabinfo.csv";
    const HEADER: &'static str = "t,uptime,cache,active_objs,num_objs,objsize";
}

/// `/proc/sys/fs/dentry-state` at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DentryRow {
    #[serde(serialize_with = "secs3")]
    pub t: f64,
    #[serde(serialize_with = "uptime2")]
    pub uptime: Option<f64>,
    pub nr_dentry: u64,
    pub nr_unused: u64,
    pub age_limit: u64,
    pub want_pages: u64,
    pub nr_negative: u64,
}

impl Row for DentryRow {
    const FILE: &'static str = "dentry-state.csv";
    const HEADER: &'static str = "t,uptime,nr_dentry,nr_unused,age_limit,want_pages,nr_negative";
}

/// The workload's cumulative operation count at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsRow {
    #[serde(serialize_with = "secs3")]
    pub t: f64,
    #[serde(serialize_with = "uptime2")]
    pub uptime: Option<f64>,
    pub ops: u64,
}

impl Row for OpsRow {
    const FILE: &'static str = "ops.csv";
    const HEADER: &'static str = "t,uptime,ops";
}

/// One of the balloon's guest statistics (`stat-*`, bytes) at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalloonRow {
    #[serde(serialize_with = "secs3")]
    pub t: f64,
    pub key: String,
    pub value: u64,
}

impl Row for BalloonRow {
    const FILE: &'static str = "balloon.csv";
    const HEADER: &'static str = "t,key,value";
}

/// kernlab's own footprint at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    #[serde(serialize_with = "secs3")]
    pub t: f64,
    pub rss_bytes: u64,
    pub fds: u64,
    pub threads: u64,
}

impl Row for HostRow {
    const FILE: &'static str = "kernlab.csv";
    const HEADER: &'static str = "t,rss_bytes,fds,threads";
}

/// The rows of a series' text, in file order. A record that does not parse
/// (the torn last line of a killed run, a foreign line) is skipped; an
/// empty text (a series never written) has none.
pub fn parse<'a, R: Row + 'a>(text: &'a str) -> impl Iterator<Item = R> + 'a {
    let reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    reader.into_deserialize::<R>().filter_map(Result::ok)
}

/// The rows of `samples_dir/R::FILE`; none when the file does not exist
/// (a series the lab did not sample, or a run killed before it).
pub fn read<R: Row>(samples_dir: &Path) -> std::io::Result<Vec<R>> {
    let path = samples_dir.join(R::FILE);
    match std::fs::read(&path) {
        Ok(b) => Ok(parse::<R>(&String::from_utf8_lossy(&b)).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display()))),
    }
}

/// Rows as CSV text without the header, the bytes one sample appends.
pub fn to_csv<'a, R: Row + 'a>(rows: impl IntoIterator<Item = &'a R>) -> csv::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header line each file starts with is the row's field names.
    fn header_of<R: Row>(sample: R) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(sample).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        text.lines().next().unwrap().to_string()
    }

    #[test]
    fn headers_are_the_field_names() {
        let m = MeminfoRow { t: 0.0, uptime: None, key: "k".into(), bytes: 1 };
        assert_eq!(header_of(m), MeminfoRow::HEADER);
        let s = SlabRow { t: 0.0, uptime: None, cache: "c".into(), active_objs: 1, num_objs: 1, objsize: 1 };
        assert_eq!(header_of(s), SlabRow::HEADER);
        let d = DentryRow { t: 0.0, uptime: None, nr_dentry: 1, nr_unused: 1, age_limit: 1, want_pages: 1, nr_negative: 1 };
        assert_eq!(header_of(d), DentryRow::HEADER);
        assert_eq!(header_of(OpsRow { t: 0.0, uptime: None, ops: 1 }), OpsRow::HEADER);
        assert_eq!(header_of(BalloonRow { t: 0.0, key: "k".into(), value: 1 }), BalloonRow::HEADER);
        assert_eq!(header_of(HostRow { t: 0.0, rss_bytes: 1, fds: 1, threads: 1 }), HostRow::HEADER);
    }

    #[test]
    fn rows_are_written_as_before_and_read_back() {
        let rows = [
            MeminfoRow { t: 1.0, uptime: Some(12.5), key: "Active(anon)".into(), bytes: 1556480 },
            MeminfoRow { t: 2.25, uptime: None, key: "Slab".into(), bytes: 7 },
        ];
        let text = String::from_utf8(to_csv(&rows).unwrap()).unwrap();
        assert_eq!(text, "1.000,12.50,Active(anon),1556480\n2.250,,Slab,7\n");
        let back: Vec<MeminfoRow> = parse(&format!("{}\n{text}", MeminfoRow::HEADER)).collect();
        assert_eq!(back, rows);
    }

    #[test]
    fn a_torn_last_line_and_foreign_lines_are_skipped() {
        let text = "t,uptime,cache,active_objs,num_objs,objsize\n\
                    1.000,3.00,dentry,10,10,192\nnot a row\n2.000,4.00,dentry,11,-1,192\n3.000,5.00,dentry,12,12,192\n4.000,6.00,den";
        let rows: Vec<SlabRow> = parse(text).collect();
        assert_eq!(rows.iter().map(|r| r.active_objs).collect::<Vec<_>>(), [10, 12]);
        assert_eq!(parse::<SlabRow>("").count(), 0);
        assert_eq!(parse::<SlabRow>("t,upt").count(), 0, "a header torn at creation");
    }

    #[test]
    fn a_missing_file_has_no_rows() {
        let d = tempfile::tempdir().unwrap();
        assert!(read::<OpsRow>(d.path()).unwrap().is_empty());
        std::fs::write(d.path().join(OpsRow::FILE), "t,uptime,ops\n1.000,,5\n2.000,,9").unwrap();
        assert_eq!(read::<OpsRow>(d.path()).unwrap().last().unwrap().ops, 9);
    }
}
