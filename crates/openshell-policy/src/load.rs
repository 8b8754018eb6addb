//! Reading a policy: YAML text → [`PolicyDocument`] → validated [`crate::Policy`].
//!
//! Every diagnostic carries the field path and the line and column in the
//! source, whether it came from the YAML parser, from deserialization or
//! from validation.

use std::path::{Path, PathBuf};

use crate::document::PolicyDocument;
use crate::policy::Diagnostic;
use crate::validate::{Validated, validate};
use crate::yaml::{self, FieldPath, de::from_node};

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadPolicyError {
    #[error("failed to read policy file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not a policy document (YAML syntax, unknown key, wrong type).
    #[error("failed to parse sandbox policy YAML: {0}")]
    Parse(Diagnostic),
    /// The document is well-formed but breaks validation rules.
    #[error("policy is invalid: {}", join(.0))]
    Invalid(Vec<Diagnostic>),
}

fn join(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl LoadPolicyError {
    /// Every located problem, in source order (empty for read errors).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            LoadPolicyError::Read { .. } => Vec::new(),
            LoadPolicyError::Parse(diagnostic) => vec![diagnostic.clone()],
            LoadPolicyError::Invalid(diagnostics) => diagnostics.clone(),
        }
    }
}

/// Parses YAML into a document without validating it.
pub fn parse_document(source: &str) -> Result<(PolicyDocument, yaml::Node), LoadPolicyError> {
    let root = yaml::parse(source).map_err(|e| {
        LoadPolicyError::Parse(Diagnostic {
            path: FieldPath::root(),
            message: e.message,
            location: e.location,
        })
    })?;
    let document = from_node::<PolicyDocument>(&root).map_err(|e| {
        LoadPolicyError::Parse(Diagnostic {
            path: e.path,
            message: e.message,
            location: e.location,
        })
    })?;
    Ok((document, root))
}

/// Parses and validates policy YAML. Warnings come back located too.
pub fn load_str(source: &str) -> Result<Validated, LoadPolicyError> {
    let (document, root) = parse_document(source)?;
    let place = |mut diagnostic: Diagnostic| {
        diagnostic.location = Some(root.locate(&diagnostic.path));
        diagnostic
    };
    match validate(&document) {
        Ok(mut validated) => {
            validated.warnings = validated.warnings.into_iter().map(place).collect();
            Ok(validated)
        }
        Err(errors) => {
            let mut errors: Vec<Diagnostic> = errors.into_iter().map(place).collect();
            errors.sort_by_key(|d| d.location);
            Err(LoadPolicyError::Invalid(errors))
        }
    }
}

/// Reads, parses and validates a policy file.
pub fn load_file(path: &Path) -> Result<Validated, LoadPolicyError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadPolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_str(&source)
}
