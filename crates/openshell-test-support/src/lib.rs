//! Fixtures shared by the test suites (a dev-dependency only): the real
//! `openshell-sandbox` binary run as root with a deadline ([`sandbox`]), a
//! fresh user of the `openshell` CLI with real gateways ([`home`]), and
//! network namespaces with upstream servers the tests create
//! themselves ([`netns`]; tests never reach any other address).
// Fixtures fail loudly; a fixture made fresh per test has no default.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::new_without_default
)]

pub mod home;
pub mod netns;
pub mod sandbox;

/// The interpreter the fixtures and many tests run.
pub const PYTHON: &str = "/usr/bin/python3";
