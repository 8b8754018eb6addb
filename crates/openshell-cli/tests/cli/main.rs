//! The `openshell` binary driven as a user would: real files, real
//! gateways, asserting whole outputs and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway;
mod policy;
mod sandbox;
