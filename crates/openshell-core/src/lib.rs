//! What more than one OpenShell crate needs: the product version, where
//! configuration and state live on disk, the registered runtime settings,
//! and UTC timestamp formatting.
//!
//! Owns: the file layout of spec/cli.md ("Files"). Does not own: reading or
//! writing those files; each binary does its own I/O.
//!
//! Invariant: this crate stays small; add to it only what two crates share.

pub mod paths;
pub mod settings;
pub mod time;

/// The version every binary reports (`openshell --version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
