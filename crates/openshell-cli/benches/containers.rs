//! Create → command exit on the docker driver, on Docker and on Podman, in
//! one run against the bare engine: `openshell sandbox create --no-keep --
//! /bin/true` through a warm local gateway vs `docker run --rm IMAGE
//! /bin/true` (`podman run --rm …`), the same image, alternating, medians.
//!
//! Run as root with both engines up and the default image built
//! (`.ci/engines`), after a release build of every binary:
//! `cargo build --release --workspace && cargo bench -p openshell-cli --bench containers`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{free_port, median, time};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ROUNDS: usize = 30;
const IMAGE: &str = "openshell/sandbox:latest";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let cli = Path::new(env!("CARGO_BIN_EXE_openshell"));
    let bin = cli.parent().unwrap();
    assert!(
        bin.join("openshell-gateway").is_file() && bin.join("openshell-sandbox").is_file(),
        "build every binary first: cargo build --release --workspace"
    );
    let engines = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/engines");
    time(&mut Command::new(engines));
    println!("create -> exit of /bin/true, {ROUNDS} rounds each, alternating, medians");
    for engine in ["docker", "podman"] {
        let home = tempfile::tempdir().unwrap();
        let port = free_port();
        let openshell = |args: &[&str]| support::openshell(home.path(), args);
        let name = format!("bench-{engine}");
        time(&mut openshell(&[
            "gateway",
            "start",
            "--name",
            &name,
            "--port",
            &port.to_string(),
            "--driver",
            engine,
        ]));
        let create = || openshell(&["sandbox", "create", "--no-keep", "--", "/bin/true"]);
        let bare = || {
            let mut c = Command::new(engine);
            c.args(["run", "--rm", IMAGE, "/bin/true"]);
            c
        };
        for _ in 0..3 {
            time(&mut create());
            time(&mut bare());
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(time(&mut create()));
            theirs.push(time(&mut bare()));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        println!(
            "{engine:7} openshell sandbox create --no-keep: {:7.1} ms   {engine} run --rm: {:7.1} ms   ratio {:.2}x",
            ms(ours),
            ms(theirs),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
        time(&mut openshell(&["gateway", "destroy", "--name", &name]));
    }
}
