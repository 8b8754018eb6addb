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

    /// The problems alone, for a caller that says what was being loaded:
    /// each located diagnostic, joined by `; ` (with `{:#}`, one per line,
    /// indented), or for a read error its text.
    pub fn problems(&self) -> Problems<'_> {
        Problems(self)
    }
}

/// [`LoadPolicyError::problems`].
#[derive(Debug, Clone, Copy)]
pub struct Problems<'a>(&'a LoadPolicyError);

impl std::fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let diagnostics = match self.0 {
            LoadPolicyError::Read { .. } => return write!(f, "{}", self.0),
            LoadPolicyError::Parse(diagnostic) => std::slice::from_ref(diagnostic),
            LoadPolicyError::Invalid(diagnostics) => diagnostics.as_slice(),
        };
        for (i, diagnostic) in diagnostics.iter().enumerate() {
            match (f.alternate(), i) {
                (true, _) => write!(f, "\n  {diagnostic}")?,
                (false, 0) => write!(f, "{diagnostic}")?,
                (false, _) => write!(f, "; {diagnostic}")?,
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_the_diagnostics_alone() {
        let error = load_str("version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - host: ''\n      - port: 0\n")
            .unwrap_err();
        let count = error.diagnostics().len();
        assert!(count >= 1);
        let text = error.problems().to_string();
        assert!(!text.starts_with("policy is invalid"), "{text}");
        let each: Vec<String> = error
            .diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(text, each.join("; "));
        let lines = format!("{:#}", error.problems());
        assert_eq!(lines.lines().count(), count + 1, "{lines}");
        let unread = load_file(Path::new("/nonexistent/policy.yaml")).unwrap_err();
        assert!(
            unread
                .problems()
                .to_string()
                .starts_with("failed to read policy file")
        );
    }
}
