//! The `openshell` binary driven as a user would: real files, real
//! gateways, asserting whole outputs and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod containers;
mod gateway;
mod live;
#[path = "../../../openshell-sandbox/tests/escape/netns.rs"]
#[allow(dead_code)]
mod netns;
mod policy;
mod sandbox;
mod ssh;

/// What the shared test-network module needs from its host crate.
mod support {
    pub const PYTHON: &str = "/usr/bin/python3";
}
