//! A serde `Deserializer` over a [`Node`] tree.
//!
//! Scalars are resolved by the type asked for (a plain `1000` is the string
//! `"1000"` when a string is wanted and the number when a number is), the
//! YAML 1.2 core schema applies when the target is untyped. Every error
//! carries the field path and location of the innermost node that failed,
//! including serde's own `unknown field` and `missing field` errors.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::{FieldPath, Location, Node, NodeKind};

/// Why a YAML tree could not be read into the requested type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeserializeError {
    pub message: String,
    pub path: FieldPath,
    pub location: Option<Location>,
}

impl DeserializeError {
    /// Sets path and location unless an inner node already did.
    fn or_at(mut self, path: &FieldPath, location: Location) -> Self {
        if self.location.is_none() {
            self.path = path.clone();
            self.location = Some(location);
        }
        self
    }
}

impl fmt::Display for DeserializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DeserializeError {}

impl de::Error for DeserializeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeserializeError {
            message: msg.to_string(),
            path: FieldPath::root(),
            location: None,
        }
    }
}

/// Deserializes `T` from `node`, strictly (types as `T` declares them).
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T> {
    T::deserialize(NodeDeserializer {
        node,
        path: FieldPath::root(),
    })
}

struct NodeDeserializer<'a> {
    node: &'a Node,
    path: FieldPath,
}

type Result<T> = std::result::Result<T, DeserializeError>;

enum Resolved<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(&'a str),
}

/// Resolves a plain scalar by the YAML 1.2 core schema, except that a number
/// must be written canonically (`443`, `-1`, `1.5`): text that would not read
/// back the same (`007`, `1.10`, `0x1F`) stays a string, so matchers and
/// names never lose characters.
fn resolve(value: &str) -> Resolved<'_> {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        _ => {}
    }
    if let Ok(n) = value.parse::<u64>()
        && n.to_string() == value
    {
        return Resolved::Unsigned(n);
    }
    if let Ok(n) = value.parse::<i64>()
        && n.to_string() == value
    {
        return Resolved::Signed(n);
    }
    let numeric = value
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'e' | b'E'));
    if numeric
        && let Ok(f) = value.parse::<f64>()
        && f.to_string() == value
    {
        return Resolved::Float(f);
    }
    Resolved::Str(value)
}

impl<'a> NodeDeserializer<'a> {
    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.kind {
            NodeKind::Scalar { value, plain: true } => match resolve(value) {
                Resolved::Null => de::Unexpected::Unit,
                Resolved::Bool(b) => de::Unexpected::Bool(b),
                Resolved::Unsigned(n) => de::Unexpected::Unsigned(n),
                Resolved::Signed(n) => de::Unexpected::Signed(n),
                Resolved::Float(f) => de::Unexpected::Float(f),
                Resolved::Str(s) => de::Unexpected::Str(s),
            },
            NodeKind::Scalar { value, .. } => de::Unexpected::Str(value),
            NodeKind::Sequence(_) => de::Unexpected::Seq,
            NodeKind::Mapping(_) => de::Unexpected::Map,
        }
    }

    fn plain_scalar(&self) -> Option<&'a str> {
        match &self.node.kind {
            NodeKind::Scalar { value, plain: true } => Some(value),
            _ => None,
        }
    }

    fn at<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| e.or_at(&self.path, self.node.location))
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = match self.plain_scalar().map(resolve) {
            Some(Resolved::Unsigned(n)) => visitor.visit_u64(n),
            Some(Resolved::Signed(n)) => visitor.visit_i64(n),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }
}

macro_rules! integer_methods {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.integer(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = DeserializeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Scalar { value, plain: true } => match resolve(value) {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Unsigned(n) => visitor.visit_u64(n),
                Resolved::Signed(n) => visitor.visit_i64(n),
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str(s) => visitor.visit_str(s),
            },
            NodeKind::Scalar { value, .. } => visitor.visit_str(value),
            NodeKind::Sequence(items) => visitor.visit_seq(SeqAccess::new(items, &self.path)),
            NodeKind::Mapping(entries) => visitor.visit_map(MapAccess::new(entries, &self.path)),
        };
        self.at(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = match self.plain_scalar().map(resolve) {
            Some(Resolved::Bool(b)) => visitor.visit_bool(b),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }

    integer_methods!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = match self.plain_scalar().map(resolve) {
            Some(Resolved::Unsigned(n)) => visitor.visit_u64(n),
            Some(Resolved::Signed(n)) => visitor.visit_i64(n),
            Some(Resolved::Float(f)) => visitor.visit_f64(f),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Scalar { value, .. } => visitor.visit_str(value),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.node.is_null() {
            self.at(visitor.visit_none())
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = if self.node.is_null() {
            visitor.visit_unit()
        } else {
            Err(de::Error::invalid_type(self.unexpected(), &visitor))
        };
        self.at(result)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    /// A plain null reads as an empty sequence, like an omitted list.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Sequence(items) => visitor.visit_seq(SeqAccess::new(items, &self.path)),
            _ if self.node.is_null() => visitor.visit_seq(SeqAccess::new(&[], &self.path)),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    /// A plain null reads as an empty mapping, like an omitted section.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Mapping(entries) => visitor.visit_map(MapAccess::new(entries, &self.path)),
            _ if self.node.is_null() => visitor.visit_map(MapAccess::new(&[], &self.path)),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Scalar { value, .. } => {
                visitor.visit_enum(value.as_str().into_deserializer())
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a FieldPath,
}

impl<'a> SeqAccess<'a> {
    fn new(items: &'a [Node], path: &'a FieldPath) -> Self {
        SeqAccess {
            items: items.iter().enumerate(),
            path,
        }
    }
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = DeserializeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>> {
        match self.items.next() {
            None => Ok(None),
            Some((index, node)) => {
                let path = self.path.index(index);
                let value = seed
                    .deserialize(NodeDeserializer {
                        node,
                        path: path.clone(),
                    })
                    .map_err(|e| e.or_at(&path, node.location))?;
                Ok(Some(value))
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
    value_path: FieldPath,
    path: &'a FieldPath,
}

impl<'a> MapAccess<'a> {
    fn new(entries: &'a [(Node, Node)], path: &'a FieldPath) -> Self {
        MapAccess {
            entries: entries.iter(),
            value: None,
            value_path: FieldPath::root(),
            path,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapAccess<'_> {
    type Error = DeserializeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key_text = key.scalar().unwrap_or_default();
        self.value_path = self.path.key(key_text);
        self.value = Some(value);
        // An unknown or mistyped key is reported at the key itself.
        let parsed = seed
            .deserialize(NodeDeserializer {
                node: key,
                path: self.value_path.clone(),
            })
            .map_err(|e| e.or_at(&self.value_path, key.location))?;
        Ok(Some(parsed))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let Some(node) = self.value.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        seed.deserialize(NodeDeserializer {
            node,
            path: self.value_path.clone(),
        })
        .map_err(|e| e.or_at(&self.value_path, node.location))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::yaml::parse;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
        #[serde(default)]
        name: String,
        #[serde(default)]
        flag: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        version: u32,
        #[serde(default)]
        items: BTreeMap<String, Vec<Inner>>,
    }

    fn load(source: &str) -> Result<Outer> {
        from_node(&parse(source).unwrap())
    }

    #[test]
    fn unknown_field_is_reported_at_the_key() {
        let err = load("version: 1\nitems:\n  a:\n    - port: 1\n      prot: 2\n").unwrap_err();
        assert!(err.message.starts_with("unknown field `prot`"), "{err}");
        assert_eq!(err.path.to_string(), "items.a[0].prot");
        assert_eq!(err.location, Some(Location { line: 5, column: 7 }));
    }

    #[test]
    fn missing_field_is_reported_at_the_mapping() {
        let err = load("version: 1\nitems:\n  a:\n    - name: x\n").unwrap_err();
        assert_eq!(err.message, "missing field `port`");
        assert_eq!(err.path.to_string(), "items.a[0]");
        assert_eq!(err.location, Some(Location { line: 4, column: 7 }));
    }

    #[test]
    fn out_of_range_port_fails_at_the_value() {
        let err = load("version: 1\nitems:\n  a:\n    - port: 70000\n").unwrap_err();
        assert!(err.message.contains("70000"), "{err}");
        assert_eq!(
            err.location,
            Some(Location {
                line: 4,
                column: 13
            })
        );
    }

    #[test]
    fn quoted_number_is_not_a_port() {
        let err = load("version: 1\nitems:\n  a:\n    - port: '443'\n").unwrap_err();
        assert!(err.message.starts_with("invalid type: string"), "{err}");
    }

    #[test]
    fn plain_scalars_read_as_strings_when_strings_are_wanted() {
        let outer = load("version: 1\nitems:\n  a:\n    - {port: 1, name: 1000}\n").unwrap();
        assert_eq!(outer.items["a"][0].name, "1000");
    }

    #[test]
    fn string_is_not_a_bool() {
        let err = load("version: 1\nitems:\n  a:\n    - {port: 1, flag: 'yes'}\n").unwrap_err();
        assert!(err.message.starts_with("invalid type"), "{err}");
        assert_eq!(err.path.to_string(), "items.a[0].flag");
    }

    #[test]
    fn null_collection_reads_as_empty() {
        let outer = load("version: 1\nitems:\n").unwrap();
        assert!(outer.items.is_empty());
    }

    #[test]
    fn missing_version_is_an_error() {
        let err = load("items: {}\n").unwrap_err();
        assert_eq!(err.message, "missing field `version`");
        assert_eq!(err.location, Some(Location { line: 1, column: 1 }));
    }
}
