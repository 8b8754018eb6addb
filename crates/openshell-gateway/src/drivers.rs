//! Compute drivers (ARCHITECTURE.md, "Compute drivers"): the contract is
//! `openshell-driver`'s; the process driver (supervisors on this host) is
//! here, the docker driver (containers through the Docker Engine API,
//! which also drives Podman) is the `openshell-driver-docker` crate.

pub mod process;

pub use openshell_driver::*;
pub use openshell_driver_docker as docker;
pub use openshell_driver_docker::{DockerDriver, Engine};
pub use process::ProcessDriver;
