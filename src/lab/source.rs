//! Where each field of a lab file was written.
//!
//! serde gives neither field paths nor (for semantic checks) positions, so
//! the text is read a second time into a schema-free tree whose keys and
//! values are `serde_saphyr::Spanned`. Flattened, that tree maps a field
//! path such as `vm.memory` or `setup[2]` to its line and column. It serves
//! two purposes: `validate` looks up the position of the field it rejects,
//! and a deserialization error's position is mapped back to the field path
//! it belongs to (serde-saphyr errors carry a position but no path).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// A 1-based line and column; `(0, 0)` means unknown.
pub type Pos = (u64, u64);

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    /// Position of the mapping key; `None` for sequence elements.
    key: Option<Pos>,
    /// Position of the value node.
    value: Pos,
}

/// Field path → source position for one parsed lab file.
///
/// Empty for labs built in code; lookups then report position `(0, 0)`.
/// Positions are not part of a lab's identity, so every `SourceMap` compares
/// equal: a lab round-tripped through `to_yaml` equals the original.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    entries: Vec<Entry>,
}

impl PartialEq for SourceMap {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SourceMap {}

impl SourceMap {
    /// Builds the map from YAML text. This read accepts any YAML value, so
    /// an error here is about the YAML itself, never about the lab schema.
    pub(crate) fn build(text: &str) -> Result<SourceMap, serde_saphyr::Error> {
        let root: Node = serde_saphyr::from_str(text)?;
        let mut entries = Vec::new();
        flatten(&root, "", &mut entries);
        Ok(SourceMap { entries })
    }

    /// The map with the field `from` and everything under it found at `to`
    /// instead (what was at `to` is gone): a lab derived from another by
    /// moving a field (the baseline's `setup` becoming its arm's `setup`)
    /// keeps pointing at where the user wrote it.
    pub(crate) fn moved(&self, from: &str, to: &str) -> SourceMap {
        let under = |path: &str, top: &str| path.strip_prefix(top).filter(|rest| rest.is_empty() || rest.starts_with(['.', '['])).map(str::to_string);
        let mut entries: Vec<Entry> = self.entries.iter().filter(|e| under(&e.path, to).is_none()).cloned().collect();
        entries.extend(self.entries.iter().filter_map(|e| under(&e.path, from).map(|rest| Entry { path: format!("{to}{rest}"), ..e.clone() })));
        SourceMap { entries }
    }

    /// Position of the value at `path` (e.g. `vm.memory`, `setup[1]`). A field
    /// that was not written (left to its default) falls back to its nearest
    /// written ancestor, so an error still points somewhere useful.
    pub fn position(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == p) {
                return e.value;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (0, 0),
            }
        }
    }

    /// Where the document's first key was written.
    pub(crate) fn first_key(&self) -> Option<Pos> {
        self.entries.iter().filter_map(|e| e.key).min()
    }

    /// The field path a deserialization error at `pos` belongs to.
    ///
    /// serde-saphyr reports unknown keys at the key, type errors at the value
    /// and missing fields at the start of the enclosing mapping (which is
    /// also where that mapping's first key is), hence `container`.
    pub(crate) fn path_at(&self, pos: Pos, container: bool) -> Option<&str> {
        if !container {
            if let Some(p) = deepest(self.entries.iter().filter(|e| e.key == Some(pos))) {
                return Some(p);
            }
        }
        if let Some(p) = deepest(self.entries.iter().filter(|e| e.value == pos)) {
            return Some(p);
        }
        if container {
            // A missing field at the root mapping has no enclosing path.
            return None;
        }
        // Errors raised inside a scalar may point past its start: take the
        // last node that starts before the error.
        self.entries
            .iter()
            .flat_map(|e| {
                [e.key, Some(e.value)]
                    .into_iter()
                    .flatten()
                    .map(move |p| (p, e))
            })
            .filter(|(p, _)| *p <= pos && p.0 > 0)
            .max_by_key(|(p, e)| (*p, e.path.len()))
            .map(|(_, e)| e.path.as_str())
    }
}

fn deepest<'a>(it: impl Iterator<Item = &'a Entry>) -> Option<&'a str> {
    it.max_by_key(|e| e.path.len()).map(|e| e.path.as_str())
}

fn pos(loc: &Location) -> Pos {
    (loc.line(), loc.column())
}

fn flatten(node: &Node, prefix: &str, out: &mut Vec<Entry>) {
    match node {
        Node::Map(items) => {
            for (k, v) in items {
                let path = if prefix.is_empty() {
                    k.value.clone()
                } else {
                    format!("{prefix}.{}", k.value)
                };
                out.push(Entry {
                    path: path.clone(),
                    key: Some(pos(&k.referenced)),
                    value: pos(&v.referenced),
                });
                flatten(&v.value, &path, out);
            }
        }
        Node::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                out.push(Entry {
                    path: path.clone(),
                    key: None,
                    value: pos(&v.referenced),
                });
                flatten(&v.value, &path, out);
            }
        }
        Node::Leaf => {}
    }
}

/// Any YAML node, keeping only structure and positions.
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            items.push((k, v));
        }
        Ok(Node::Map(items))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<Node>>()? {
            items.push(v);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}
