//! A YAML tree that remembers where every node came from.
//!
//! The policy loader parses YAML once into [`Node`]s (with line and column),
//! deserializes the document from that tree ([`de`]), and looks up the same
//! tree again to place validation errors. One parser, so the location of an
//! error can never disagree with what was parsed.
//!
//! Hostile input is bounded: document size, nesting depth and the number of
//! nodes (which also caps alias expansion, the "billion laughs" attack).
//! Duplicate mapping keys and multi-document streams are rejected.

pub mod de;

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Largest policy document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes one document may expand to (aliases count every time they are used).
pub const MAX_NODES: usize = 200_000;

/// A position in the source, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    fn from_span(span: &Span) -> Self {
        Location {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits in the document, e.g. `network_policies.gh.endpoints[0].host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        FieldPath(segments)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        FieldPath(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed YAML value with its source location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `plain` is false for quoted and block scalars: they are always strings.
    Scalar {
        value: String,
        plain: bool,
    },
    Sequence(Vec<Node>),
    /// Entries in source order; keys are unique.
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// True for a plain `null`, `~` or empty scalar (YAML 1.2 core schema).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The node at `path`, if the document has one there.
    pub fn find(&self, path: &FieldPath) -> Option<&Node> {
        let mut node = self;
        for segment in path.segments() {
            node = match (segment, &node.kind) {
                (Segment::Key(key), NodeKind::Mapping(entries)) => entries
                    .iter()
                    .find(|(k, _)| k.scalar() == Some(key.as_str()))
                    .map(|(_, v)| v)?,
                (Segment::Index(index), NodeKind::Sequence(items)) => items.get(*index)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The location of `path`, or of its closest ancestor present in the document.
    pub fn locate(&self, path: &FieldPath) -> Location {
        let mut node = self;
        for segment in path.segments() {
            let next = match (segment, &node.kind) {
                (Segment::Key(key), NodeKind::Mapping(entries)) => entries
                    .iter()
                    .find(|(k, _)| k.scalar() == Some(key.as_str()))
                    .map(|(_, v)| v),
                (Segment::Index(index), NodeKind::Sequence(items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node.location
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Why a YAML document could not be read into a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseYamlError {
    pub message: String,
    pub location: Option<Location>,
}

impl ParseYamlError {
    fn at(location: Location, message: impl Into<String>) -> Self {
        ParseYamlError {
            message: message.into(),
            location: Some(location),
        }
    }
}

enum Frame {
    Sequence {
        location: Location,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        location: Location,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(source: &str) -> Result<Node, ParseYamlError> {
    if source.len() > MAX_DOCUMENT_BYTES {
        return Err(ParseYamlError {
            message: format!(
                "document is too large ({} > {MAX_DOCUMENT_BYTES} bytes)",
                source.len()
            ),
            location: None,
        });
    }
    let mut builder = TreeBuilder::default();
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|e| ParseYamlError {
            message: e.info().to_owned(),
            location: Some(Location {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            }),
        })?;
        builder.push(event, &span)?;
    }
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Mapping(Vec::new()),
        location: Location { line: 1, column: 1 },
    }))
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
}

impl TreeBuilder {
    fn push(&mut self, event: Event<'_>, span: &Span) -> Result<(), ParseYamlError> {
        let location = Location::from_span(span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(ParseYamlError::at(
                        location,
                        "expected a single YAML document, found more than one",
                    ));
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let node = Node {
                    kind: NodeKind::Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    location,
                };
                self.finish(node, anchor)?;
            }
            Event::Alias(anchor) => {
                let node = self.anchors.get(&anchor).cloned().ok_or_else(|| {
                    ParseYamlError::at(location, "alias refers to an unknown anchor")
                })?;
                self.count(count_nodes(&node), location)?;
                self.finish(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(
                    Frame::Sequence {
                        location,
                        anchor,
                        items: Vec::new(),
                    },
                    location,
                )?;
            }
            Event::MappingStart(anchor, _) => {
                self.open(
                    Frame::Mapping {
                        location,
                        anchor,
                        entries: Vec::new(),
                        pending_key: None,
                    },
                    location,
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Sequence {
                        location,
                        anchor,
                        items,
                    }) => (
                        Node {
                            kind: NodeKind::Sequence(items),
                            location,
                        },
                        anchor,
                    ),
                    Some(Frame::Mapping {
                        location,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            kind: NodeKind::Mapping(entries),
                            location,
                        },
                        anchor,
                    ),
                    None => return Err(ParseYamlError::at(location, "unbalanced collection end")),
                };
                // Collections were counted when opened; only record the anchor.
                self.attach(node, anchor)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn count(&mut self, nodes: usize, location: Location) -> Result<(), ParseYamlError> {
        self.nodes += nodes;
        if self.nodes > MAX_NODES {
            return Err(ParseYamlError::at(
                location,
                format!("document expands to more than {MAX_NODES} nodes"),
            ));
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, location: Location) -> Result<(), ParseYamlError> {
        self.count(1, location)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseYamlError::at(
                location,
                format!("document is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), ParseYamlError> {
        if matches!(node.kind, NodeKind::Scalar { .. }) {
            self.count(1, node.location)?;
        }
        self.attach(node, anchor)
    }

    /// Places a completed node into its parent (or makes it the root).
    fn attach(&mut self, node: Node, anchor: usize) -> Result<(), ParseYamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let Some(key) = node.scalar() else {
                        return Err(ParseYamlError::at(
                            node.location,
                            "mapping keys must be plain strings",
                        ));
                    };
                    if entries.iter().any(|(k, _)| k.scalar() == Some(key)) {
                        return Err(ParseYamlError::at(
                            node.location,
                            format!("duplicate key `{key}`"),
                        ));
                    }
                    *pending_key = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Sequence(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Mapping(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_one_based_line_and_column() {
        let root = parse("a:\n  b: [1, 2]\n").unwrap();
        let path = FieldPath::root().key("a").key("b").index(1);
        assert_eq!(
            root.locate(&path),
            Location {
                line: 2,
                column: 10
            }
        );
        assert_eq!(path.to_string(), "a.b[1]");
    }

    #[test]
    fn locate_falls_back_to_closest_ancestor() {
        let root = parse("a:\n  b: 1\n").unwrap();
        let path = FieldPath::root().key("a").key("missing");
        assert_eq!(root.locate(&path), Location { line: 2, column: 3 });
    }

    #[test]
    fn rejects_duplicate_keys_at_the_second_key() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a`");
        assert_eq!(err.location, Some(Location { line: 3, column: 1 }));
    }

    #[test]
    fn rejects_multiple_documents() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("single YAML document"), "{err:?}");
    }

    #[test]
    fn rejects_alias_bombs() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("more than"), "{err:?}");
    }

    #[test]
    fn rejects_deep_nesting() {
        let doc = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err:?}");
    }

    #[test]
    fn resolves_aliases_to_copies() {
        let root = parse("a: &x {k: v}\nb: *x\n").unwrap();
        let b = root.find(&FieldPath::root().key("b").key("k")).unwrap();
        assert_eq!(b.scalar(), Some("v"));
    }

    #[test]
    fn reports_syntax_errors_with_location() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.location.is_some(), "{err:?}");
    }

    #[test]
    fn empty_document_is_an_empty_mapping() {
        let root = parse("").unwrap();
        assert_eq!(root.kind, NodeKind::Mapping(Vec::new()));
    }

    #[test]
    fn quoted_scalars_are_not_plain() {
        let root = parse("a: 'null'\nb: null\n").unwrap();
        assert!(!root.find(&FieldPath::root().key("a")).unwrap().is_null());
        assert!(root.find(&FieldPath::root().key("b")).unwrap().is_null());
    }
}
