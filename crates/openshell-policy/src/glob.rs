//! The one glob implementation, shared by validation and matching.
//!
//! Three syntaxes, chosen by what is matched (docs/policy.md, "Rules": globs):
//!
//! | syntax | `*` | `**` |
//! |---|---|---|
//! | [`Syntax::Path`] (binary paths, HTTP paths) | any run within one `/` segment | a whole segment: zero or more segments; a trailing `/**` matches the directory itself and everything below |
//! | [`Syntax::Host`] (endpoint hosts, lower-cased by the caller) | any run within one `.` label | only as the whole first label: one or more labels |
//! | [`Syntax::Text`] (query values, names) | any run of characters | same as `*` |
//!
//! All syntaxes also accept `?` (one character, never the delimiter),
//! classes `[abc]`, `[a-z]`, `[!x]`/`[^x]`, alternatives `{a,b}` and `\`
//! escapes. A malformed pattern is an error, never a silent literal.
//!
//! A pattern compiles to a forward-only automaton that is simulated with a
//! bit set, so matching is linear in the input and never backtracks.

use std::fmt;

use smallvec::SmallVec;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Most alternatives one pattern may expand to through `{a,b}` groups.
pub const MAX_ALTERNATIVES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Path,
    Host,
    Text,
}

impl Syntax {
    fn delimiter(self) -> Option<u8> {
        match self {
            Syntax::Path => Some(b'/'),
            Syntax::Host => Some(b'.'),
            Syntax::Text => None,
        }
    }
}

/// Why a glob pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("glob is longer than {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    #[error("unclosed `[` in glob '{0}'")]
    UnclosedClass(String),
    #[error("unbalanced `{{`/`}}` in glob '{0}'")]
    UnbalancedBraces(String),
    #[error("glob '{0}' expands to more than {MAX_ALTERNATIVES} alternatives")]
    TooManyAlternatives(String),
    #[error("glob '{0}' ends with a lone `\\`")]
    TrailingEscape(String),
    #[error("`**` must be a whole path segment in '{0}'")]
    PathGlobStar(String),
    #[error("`**` is only allowed as the entire first label in '{0}'")]
    HostGlobStar(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Consume exactly this byte.
    Byte(u8),
    /// Consume one byte that is not the delimiter.
    One,
    /// Consume one non-delimiter byte within the class.
    Class {
        ranges: Vec<(u8, u8)>,
        negated: bool,
    },
    /// Consume any run of non-delimiter bytes (possibly empty).
    Star,
    /// Consume any run of bytes (possibly empty).
    AnyRun,
    /// Epsilon: continue at the next state, or jump forward to `to`.
    Split { to: usize },
}

/// A compiled glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    syntax: Syntax,
    kind: GlobKind,
}

#[derive(Clone, PartialEq, Eq)]
enum GlobKind {
    /// No wildcard at all: plain equality.
    Literal(Vec<u8>),
    Automata {
        alternatives: Vec<Vec<State>>,
        /// Literal bytes every match starts with (cheap early rejection).
        prefix: Vec<u8>,
        /// Literal bytes every match ends with.
        suffix: Vec<u8>,
    },
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// True when `pattern` contains a glob metacharacter.
pub fn has_wildcard(pattern: &str) -> bool {
    pattern
        .bytes()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'{' | b'}' | b'\\'))
}

impl Glob {
    pub fn new(pattern: &str, syntax: Syntax) -> Result<Glob, GlobError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(GlobError::TooLong);
        }
        let kind = if has_wildcard(pattern) {
            let expanded = expand_braces(pattern)?;
            let mut alternatives = Vec::with_capacity(expanded.len());
            for alternative in &expanded {
                alternatives.push(compile(pattern, alternative, syntax)?);
            }
            let prefix = common(&alternatives, |states| literal_run(states.iter()), false);
            let suffix = common(
                &alternatives,
                |states| {
                    // States a Split can jump over are optional: only those at or
                    // after the furthest jump target are certain to be matched.
                    let floor = states
                        .iter()
                        .filter_map(|s| match s {
                            State::Split { to } => Some(*to),
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0);
                    literal_run(states[floor.min(states.len())..].iter().rev())
                },
                true,
            );
            GlobKind::Automata {
                alternatives,
                prefix,
                suffix,
            }
        } else {
            GlobKind::Literal(pattern.as_bytes().to_vec())
        };
        Ok(Glob {
            source: pattern.to_owned(),
            syntax,
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no wildcard.
    pub fn is_literal(&self) -> bool {
        matches!(self.kind, GlobKind::Literal(_))
    }

    /// Number of non-wildcard characters: how specific the pattern is.
    pub fn specificity(&self) -> usize {
        self.source.bytes().filter(|b| *b != b'*').count()
    }

    pub fn matches(&self, input: &str) -> bool {
        match &self.kind {
            GlobKind::Literal(literal) => literal.as_slice() == input.as_bytes(),
            GlobKind::Automata {
                alternatives,
                prefix,
                suffix,
            } => {
                let bytes = input.as_bytes();
                if !bytes.starts_with(prefix) || !bytes.ends_with(suffix) {
                    return false;
                }
                let delimiter = self.syntax.delimiter();
                alternatives
                    .iter()
                    .any(|states| run(states, bytes, delimiter))
            }
        }
    }
}

/// The literal bytes at one end of an automaton, read outward-in.
fn literal_run<'a>(states: impl Iterator<Item = &'a State>) -> Vec<u8> {
    states
        .map_while(|state| match state {
            State::Byte(b) => Some(*b),
            _ => None,
        })
        .collect()
}

/// The longest literal run shared by every alternative (`from_end` reverses
/// the runs back into reading order).
fn common(
    alternatives: &[Vec<State>],
    run_of: impl Fn(&Vec<State>) -> Vec<u8>,
    from_end: bool,
) -> Vec<u8> {
    let mut runs = alternatives.iter().map(run_of);
    let Some(mut shared) = runs.next() else {
        return Vec::new();
    };
    for run in runs {
        let len = shared.iter().zip(&run).take_while(|(a, b)| a == b).count();
        shared.truncate(len);
    }
    if from_end {
        shared.reverse();
    }
    shared
}

/// Splits `{a,b}` groups into plain alternatives (nested groups allowed).
fn expand_braces(pattern: &str) -> Result<Vec<Vec<u8>>, GlobError> {
    let bytes = pattern.as_bytes();
    let mut alternatives: Vec<Vec<u8>> = vec![Vec::new()];
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let Some(next) = bytes.get(i + 1) else {
                    return Err(GlobError::TrailingEscape(pattern.to_owned()));
                };
                for alternative in &mut alternatives {
                    alternative.extend_from_slice(&[b'\\', *next]);
                }
                i += 2;
            }
            b'[' => {
                let end = class_end(bytes, i)
                    .ok_or_else(|| GlobError::UnclosedClass(pattern.to_owned()))?;
                for alternative in &mut alternatives {
                    alternative.extend_from_slice(&bytes[i..=end]);
                }
                i = end + 1;
            }
            b'{' => {
                let end = brace_end(bytes, i)
                    .ok_or_else(|| GlobError::UnbalancedBraces(pattern.to_owned()))?;
                let mut options = Vec::new();
                for part in split_top_level(&bytes[i + 1..end]) {
                    let text = std::str::from_utf8(part)
                        .map_err(|_| GlobError::UnbalancedBraces(pattern.to_owned()))?;
                    options.extend(expand_braces(text)?);
                }
                let mut next = Vec::new();
                for prefix in &alternatives {
                    for option in &options {
                        let mut joined = prefix.clone();
                        joined.extend_from_slice(option);
                        next.push(joined);
                        if next.len() > MAX_ALTERNATIVES {
                            return Err(GlobError::TooManyAlternatives(pattern.to_owned()));
                        }
                    }
                }
                alternatives = next;
                i = end + 1;
            }
            b'}' => return Err(GlobError::UnbalancedBraces(pattern.to_owned())),
            b => {
                for alternative in &mut alternatives {
                    alternative.push(b);
                }
                i += 1;
            }
        }
    }
    Ok(alternatives)
}

/// Index of the `]` closing the class that opens at `start`.
fn class_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if matches!(bytes.get(i), Some(b'!' | b'^')) {
        i += 1;
    }
    // A `]` right after the opening bracket is a literal member.
    if bytes.get(i) == Some(&b']') {
        i += 1;
    }
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn brace_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' => i = class_end(bytes, i)?,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn split_top_level(bytes: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                parts.push(&bytes[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&bytes[start..]);
    parts
}

/// Compiles one brace-free alternative into automaton states.
fn compile(source: &str, pattern: &[u8], syntax: Syntax) -> Result<Vec<State>, GlobError> {
    let delimiter = syntax.delimiter();
    let mut states = Vec::with_capacity(pattern.len() + 2);
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' => {
                states.push(State::Byte(pattern[i + 1]));
                i += 2;
            }
            b'?' => {
                states.push(State::One);
                i += 1;
            }
            b'[' => {
                let end = class_end(pattern, i)
                    .ok_or_else(|| GlobError::UnclosedClass(source.to_owned()))?;
                states.push(parse_class(&pattern[i + 1..end]));
                i = end + 1;
            }
            b'*' if pattern.get(i + 1) == Some(&b'*') => {
                let at_start = i == 0 || Some(pattern[i - 1]) == delimiter;
                let after = pattern.get(i + 2).copied();
                let at_end = after.is_none() || after == delimiter;
                match syntax {
                    Syntax::Text => states.push(State::AnyRun),
                    Syntax::Path => {
                        if !at_start || !at_end {
                            return Err(GlobError::PathGlobStar(source.to_owned()));
                        }
                        let previous_is_slash = i > 0;
                        if after.is_some() {
                            // `**/`: zero segments, or any run ending with `/`.
                            let skip_to = states.len() + 3;
                            states.push(State::Split { to: skip_to });
                            states.push(State::AnyRun);
                            states.push(State::Byte(b'/'));
                            i += 3;
                            continue;
                        }
                        if previous_is_slash {
                            // Trailing `/**`: the directory itself, or anything below it.
                            states.pop();
                            let skip_to = states.len() + 3;
                            states.push(State::Split { to: skip_to });
                            states.push(State::Byte(b'/'));
                            states.push(State::AnyRun);
                        } else {
                            states.push(State::AnyRun);
                        }
                    }
                    Syntax::Host => {
                        if i != 0 || after != delimiter {
                            return Err(GlobError::HostGlobStar(source.to_owned()));
                        }
                        // `**.`: one or more labels, then the dot.
                        states.push(State::One);
                        states.push(State::AnyRun);
                    }
                }
                i += 2;
            }
            b'*' => {
                let whole_label = (i == 0 || Some(pattern[i - 1]) == delimiter)
                    && (i + 1 == pattern.len() || Some(pattern[i + 1]) == delimiter);
                match syntax {
                    Syntax::Text => states.push(State::AnyRun),
                    // A whole-label `*` stands for one label, never an empty one.
                    Syntax::Host if whole_label => {
                        states.push(State::One);
                        states.push(State::Star);
                    }
                    Syntax::Host | Syntax::Path => states.push(State::Star),
                }
                i += 1;
            }
            b => {
                states.push(State::Byte(b));
                i += 1;
            }
        }
    }
    Ok(states)
}

fn parse_class(body: &[u8]) -> State {
    let (negated, body) = match body.first() {
        Some(b'!' | b'^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let mut low = body[i];
        if low == b'\\' && i + 1 < body.len() {
            i += 1;
            low = body[i];
        }
        if body.get(i + 1) == Some(&b'-') && i + 2 < body.len() {
            ranges.push((low, body[i + 2]));
            i += 3;
        } else {
            ranges.push((low, low));
            i += 1;
        }
    }
    State::Class { ranges, negated }
}

type Active = SmallVec<[u64; 4]>;

fn set(active: &mut Active, index: usize) {
    active[index / 64] |= 1 << (index % 64);
}

fn get(active: &Active, index: usize) -> bool {
    active[index / 64] & (1 << (index % 64)) != 0
}

/// The lowest set bit at or after `from`.
fn next_set(active: &Active, from: usize) -> Option<usize> {
    let mut word = from / 64;
    let mut bits = *active.get(word)? & (u64::MAX << (from % 64));
    loop {
        if bits != 0 {
            return Some(word * 64 + bits.trailing_zeros() as usize);
        }
        word += 1;
        bits = *active.get(word)?;
    }
}

/// Follows epsilon edges; they only point forward, so one ascending pass
/// over the active states suffices.
fn close(states: &[State], active: &mut Active) {
    let mut cursor = next_set(active, 0);
    while let Some(index) = cursor {
        match states.get(index) {
            Some(State::Star | State::AnyRun) => set(active, index + 1),
            Some(State::Split { to }) => {
                set(active, index + 1);
                set(active, *to);
            }
            Some(_) => {}
            None => break,
        }
        cursor = next_set(active, index + 1);
    }
}

fn run(states: &[State], input: &[u8], delimiter: Option<u8>) -> bool {
    let words = (states.len() + 1).div_ceil(64);
    let mut active: Active = SmallVec::from_elem(0, words);
    let mut next: Active = SmallVec::from_elem(0, words);
    set(&mut active, 0);
    close(states, &mut active);
    for &byte in input {
        next.iter_mut().for_each(|w| *w = 0);
        let is_delimiter = Some(byte) == delimiter;
        let mut any = false;
        let mut cursor = next_set(&active, 0);
        while let Some(index) = cursor {
            cursor = next_set(&active, index + 1);
            let Some(state) = states.get(index) else {
                break;
            };
            let target = match state {
                State::Byte(b) if *b == byte => Some(index + 1),
                State::One if !is_delimiter => Some(index + 1),
                State::Class { ranges, negated } if !is_delimiter => {
                    let member = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&byte));
                    (member != *negated).then_some(index + 1)
                }
                State::Star if !is_delimiter => Some(index),
                State::AnyRun => Some(index),
                _ => None,
            };
            if let Some(target) = target {
                set(&mut next, target);
                any = true;
            }
        }
        if !any {
            return false;
        }
        close(states, &mut next);
        std::mem::swap(&mut active, &mut next);
    }
    get(&active, states.len())
}

#[cfg(test)]
mod tests;
