//! Small host-side helpers shared by every layer: private files and
//! directories, atomic writes, content hashes, free space, and every child
//! process: the process registry (`process`) and host tools run with a
//! deadline, their stderr kept for error messages (`tool`).

pub mod decompress;
pub mod fsx;
pub mod process;
pub mod tool;

/// An error and its sources on one line, `: `-joined (logs, one-line
/// reasons).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    chain_with(e, ": ")
}

/// An error and its sources, one `caused by:` line per source (what the
/// user reads).
pub fn error_causes(e: &dyn std::error::Error) -> String {
    chain_with(e, "\n  caused by: ")
}

fn chain_with(e: &dyn std::error::Error, sep: &str) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(sep);
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Every non-test, non-comment line of `src/` as (path from the crate
/// root, line number, text), files in `skip` left out: for the tests that
/// hold a fact to one file (`arch`, `outcome::layout`). A file's test part
/// starts at its first `#[cfg(test)]`; `tests.rs` and `tests/` are tests.
#[cfg(test)]
pub(crate) fn source_lines(skip: &[&str]) -> Vec<(String, usize, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if skip.contains(&rel.as_str()) || rel.ends_with("/tests.rs") || rel.contains("/tests/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            if !line.trim_start().starts_with("//") {
                lines.push((rel.clone(), n + 1, line.trim().to_string()));
            }
        }
    }
    lines
}

