//! The `openshell` binary driven as a user would: real files, real
//! gateways, asserting whole outputs and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod containers;
mod gateway;
mod inference;
mod live;
mod policy;
mod providers;
mod python_sdk;
mod remote;
mod sandbox;
mod ssh;
mod term;
mod terminal;
mod workspaces;

use openshell_test_support::netns;
