//! The OpenShell policy language.
//!
//! Owns: parsing policy YAML strictly ([`yaml`], [`document`]), validating it
//! into a [`Policy`], compiling that into a [`CompiledPolicy`] that answers
//! L4 and L7 questions, and the pure helpers the proxy reuses (path
//! canonicalisation, SSRF address classes, globs), and incremental edits
//! of a document ([`merge`]).
//!
//! Does not own: any I/O beyond reading a policy file, any enforcement. The
//! supervisor applies what this crate decides.
//!
//! Invariants:
//! - raw → validated → compiled: only a validated `Policy` can be compiled,
//!   and the compiled form is what every decision uses;
//! - one glob implementation ([`glob`]) serves validation and matching;
//! - a denial is an ordinary value with its exact reason text (docs/policy.md, "Decisions").

pub mod canonical;
pub mod compile;
pub mod decision;
pub mod defaults;
pub mod document;
pub mod glob;
pub mod host;
pub mod l4;
pub mod l7;
pub mod live;
pub mod load;
pub mod merge;
pub mod policy;
pub mod ssrf;
pub mod validate;
pub mod yaml;

pub use compile::CompiledPolicy;
pub use load::{LoadPolicyError, Problems, load_file, load_str};
pub use policy::{Diagnostic, Policy};
pub use validate::Validated;
