//! What more than one OpenShell crate needs: the product version, where
//! configuration and state live on disk, the registered runtime settings,
//! UTC timestamp formatting, the provider catalog and placeholders, private files, the removal of a tree an agent
//! wrote, and the arguments a driver starts a supervisor with
//! ([`launch::SupervisorLaunch`]).
//!
//! Owns: the file layout of docs/cli.md ("Files"). Does not own: reading or
//! writing those files; each binary does its own I/O.
//!
//! Invariant: this crate stays small; add to it only what two crates share.

pub mod fs;
pub mod hex;
pub mod launch;
pub mod paths;
pub mod providers;
pub mod resources;
pub mod settings;
pub mod time;

/// The port of a sandbox's egress proxy on its loopback (`HTTP_PROXY`
/// points there); it is never a port forward's target.
pub const PROXY_PORT: u16 = 3128;

/// The version every binary reports (`openshell --version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
