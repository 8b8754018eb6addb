//! The egress proxy end to end: real `curl` and `python3` inside
//! `openshell-sandbox run`, upstream servers in a network namespace the
//! test creates (never loopback, never the internet). CI runs it as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openshell_test_support::{netns, sandbox as support};

mod l4;
mod l7;
mod malformed;
mod reload;
mod ssrf;
mod tls;

use netns::{ECHO_SERVER, TestNetwork};

/// The upstream port of every test network.
pub const PORT: u16 = 8080;

/// A test network with the echo server on [`PORT`].
pub fn upstream() -> TestNetwork {
    let mut network = TestNetwork::new();
    network.serve(PORT, ECHO_SERVER);
    network
}

/// A policy with one entry `upstream` allowing `binaries` to reach
/// `host:port`, plus `extra` endpoint lines (indented for the endpoint).
pub fn policy(host: &str, ports: &[u16], binaries: &[&str], extra: &str) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let binaries: String = binaries
        .iter()
        .map(|b| format!("      - path: \"{b}\"\n"))
        .collect();
    format!(
        "version: 1\nnetwork_policies:\n  upstream:\n    name: upstream\n    endpoints:\n      - host: \"{host}\"\n        ports: [{}]\n{extra}    binaries:\n{binaries}",
        ports.join(", ")
    )
}

/// [`policy`] for the test network's peer on [`PORT`].
pub fn allow(network: &TestNetwork, binaries: &[&str], extra: &str) -> String {
    policy(&network.peer.to_string(), &[PORT], binaries, extra)
}

/// curl arguments that always go through the proxy, even for addresses
/// curl's own NO_PROXY handling would send directly.
pub const CURL: [&str; 6] = ["curl", "-sS", "-m", "10", "--noproxy", ""];
