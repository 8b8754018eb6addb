//! End-to-end create benchmark, in one run: `openshell sandbox create
//! --no-keep -- /bin/true` through a warm local gateway (process driver)
//! vs `openshell-sandbox run -- /bin/true` vs `/bin/true`.
//!
//! Run as root, after a release build of every binary:
//! `cargo build --release --workspace && cargo bench -p openshell-cli --bench create`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 100;

fn time(command: &mut Command) -> Duration {
    let start = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "{command:?}: {status}");
    elapsed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let cli = Path::new(env!("CARGO_BIN_EXE_openshell"));
    let bin = cli.parent().unwrap();
    let supervisor = bin.join("openshell-sandbox");
    assert!(
        bin.join("openshell-gateway").is_file() && supervisor.is_file(),
        "build every binary first: cargo build --release --workspace"
    );
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let openshell = |args: &[&str]| {
        let mut c = Command::new(cli);
        c.args(args)
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_STATE_HOME", home.path().join("state"));
        c
    };
    time(&mut openshell(&[
        "gateway",
        "start",
        "--port",
        &port.to_string(),
    ]));
    let run = || {
        let mut c = Command::new(&supervisor);
        c.env("XDG_STATE_HOME", home.path().join("run"))
            .args(["run", "--", "/bin/true"]);
        c
    };
    for _ in 0..5 {
        time(&mut openshell(&[
            "sandbox",
            "create",
            "--no-keep",
            "--",
            "/bin/true",
        ]));
        time(&mut run());
    }
    let (mut t, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        t.push(time(&mut Command::new("/bin/true")));
        r.push(time(&mut run()));
        c.push(time(&mut openshell(&[
            "sandbox",
            "create",
            "--no-keep",
            "--",
            "/bin/true",
        ])));
    }
    time(&mut openshell(&["gateway", "stop"]));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (t, r, c) = (median(t), median(r), median(c));
    println!("create benchmark, {ROUNDS} interleaved rounds, medians\n");
    println!("| command | median |");
    println!("|---|---|");
    println!("| `/bin/true` | {:.2} ms |", ms(t));
    println!("| `openshell-sandbox run -- /bin/true` | {:.2} ms |", ms(r));
    println!(
        "| `openshell sandbox create --no-keep -- /bin/true` (warm gateway) | {:.2} ms |",
        ms(c)
    );
    println!(
        "\ncreate end to end: {:.1} ms (target < 150 ms); {:.1} ms over the bare supervisor",
        ms(c),
        ms(c) - ms(r)
    );
}
