//! An in-memory file tree and its deterministic cpio (newc) encoding. Pure:
//! the same tree always encodes to the same bytes.

use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// Guest paths (absolute, without the leading `/`) to nodes. A BTreeMap keeps
/// the order stable; parents sort before their children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory and its missing parents (0755).
    pub fn dir(&mut self, path: &str, mode: u32) {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !self.nodes.contains_key(parent) {
                self.dir(parent, 0o755);
            }
        }
        self.nodes.insert(path.to_string(), Node::Dir { mode });
    }

    /// Adds a regular file, creating parent directories.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        let path = path.trim_matches('/');
        self.parent_dirs(path);
        self.nodes.insert(path.to_string(), Node::File { mode, data });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = path.trim_matches('/');
        self.parent_dirs(path);
        self.nodes.insert(path.to_string(), Node::Symlink { target: target.to_string() });
    }

    fn parent_dirs(&mut self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !matches!(self.nodes.get(parent), Some(Node::Dir { .. })) {
                self.dir(parent, 0o755);
            }
        }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path.trim_matches('/'))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The regular files, in order: absolute guest path, mode, contents.
    pub fn files(&self) -> impl Iterator<Item = (String, u32, &[u8])> {
        self.nodes.iter().filter_map(|(path, node)| match node {
            Node::File { mode, data } => Some((format!("/{path}"), *mode, &data[..])),
            _ => None,
        })
    }

    /// The directories, parents first: absolute guest path, mode.
    pub fn dirs(&self) -> impl Iterator<Item = (String, u32)> + '_ {
        self.nodes.iter().filter_map(|(path, node)| match node {
            Node::Dir { mode } => Some((format!("/{path}"), *mode)),
            _ => None,
        })
    }

    /// The symlinks: absolute guest path, target.
    pub fn symlinks(&self) -> impl Iterator<Item = (String, &str)> {
        self.nodes.iter().filter_map(|(path, node)| match node {
            Node::Symlink { target } => Some((format!("/{path}"), target.as_str())),
            _ => None,
        })
    }

    /// Encodes the tree as a cpio newc archive: mtime 0, uid/gid 0, inode
    /// numbers by position, so the bytes depend only on the tree.
    pub fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (path, node)) in self.nodes.iter().enumerate() {
            let (mode, data): (u32, &[u8]) = match node {
                Node::Dir { mode } => (0o040000 | mode, &[]),
                Node::File { mode, data } => (0o100000 | mode, data),
                Node::Symlink { target } => (0o120777, target.as_bytes()),
            };
            let nlink = if matches!(node, Node::Dir { .. }) { 2 } else { 1 };
            let mut w = cpio::newc::Builder::new(path)
                .ino(i as u32 + 1)
                .mode(mode)
                .uid(0)
                .gid(0)
                .nlink(nlink)
                .mtime(0)
                .write(&mut out, data.len() as u32);
            w.write_all(data).expect("writing to a Vec cannot fail");
            w.finish().expect("writing to a Vec cannot fail");
        }
        cpio::newc::trailer(&mut out).expect("writing to a Vec cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.file("/etc/kernlab/modules", 0o644, b"a.ko\n".to_vec());
        t.symlink("/bin/sh", "busybox");
        t.file("/init", 0o755, b"#!/bin/busybox sh\n".to_vec());
        t
    }

    #[test]
    fn parents_are_created_and_sorted_first() {
        let t = sample();
        assert!(matches!(t.get("etc"), Some(Node::Dir { mode: 0o755 })));
        assert!(matches!(t.get("etc/kernlab"), Some(Node::Dir { .. })));
        let names: Vec<_> = t.nodes.keys().cloned().collect();
        assert_eq!(names, ["bin", "bin/sh", "etc", "etc/kernlab", "etc/kernlab/modules", "init"]);
        let files: Vec<_> = t.files().map(|(p, m, _)| (p, m)).collect();
        assert_eq!(files, [("/etc/kernlab/modules".to_string(), 0o644), ("/init".to_string(), 0o755)]);
    }

    #[test]
    fn encoding_is_deterministic_and_readable() {
        let a = sample().to_cpio();
        // Same tree built in another order encodes to the same bytes.
        let mut t = Tree::new();
        t.file("/init", 0o755, b"#!/bin/busybox sh\n".to_vec());
        t.symlink("/bin/sh", "busybox");
        t.file("/etc/kernlab/modules", 0o644, b"a.ko\n".to_vec());
        assert_eq!(a, t.to_cpio());

        // And the cpio crate's reader gets every entry back.
        let mut r = &a[..];
        let mut seen = Vec::new();
        loop {
            let entry = cpio::newc::Reader::new(r).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            seen.push((entry.entry().name().to_string(), entry.entry().mode(), entry.entry().mtime()));
            r = entry.finish().unwrap();
        }
        assert_eq!(seen.len(), 6);
        assert!(seen.contains(&("init".to_string(), 0o100755, 0)));
        assert!(seen.contains(&("bin/sh".to_string(), 0o120777, 0)));
    }
}
