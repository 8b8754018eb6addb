//! The escape suite: each test runs the real `openshell-sandbox` binary as
//! root and proves one way out of the sandbox fails, or one thing an agent
//! needs still works. CI runs it as root; without root every test fails
//! loudly rather than skipping.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod filesystem;
mod identity;
mod kernel;
mod launch;
mod network;
mod positive;
mod process;
mod resources;
mod support;

use openshell_test_support::netns;
