//! Fixtures shared by the test suites (a dev-dependency only): the real
//! `openshell-sandbox` binary run as root with a deadline ([`sandbox`]), a
//! fresh user of the `openshell` CLI with real gateways ([`home`]), and
//! network namespaces with upstream servers the tests create
//! themselves ([`netns`]; tests never reach any other address), and the
//! certificates of HTTPS upstreams ([`tls`]).
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
pub mod tls;

/// The interpreter the fixtures and many tests run.
pub const PYTHON: &str = "/usr/bin/python3";

/// A binary of this build, `name`: next to the test executable's directory
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`), where cargo
/// puts the workspace's binaries when it builds them for the tests.
pub fn built_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|dir| dir.join(name))
        .unwrap();
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace's binaries (cargo test --workspace builds them)",
        bin.display()
    );
    bin
}
