//! Compute drivers (architecture.md "Compute drivers"): turn "create
//! sandbox S with spec X" into a running workload and report its lifecycle
//! into the store. Only the `process` driver exists so far.

pub mod process;

pub use process::{Connect, ProcessDriver};

/// Why a driver could not act.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the supervisor {binary}")]
    Spawn {
        binary: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
