//! Whole-process launch benchmark: wall time of
//! `openshell-sandbox run --policy p.yaml -- /bin/true` against `/bin/true`
//! alone and `unshare --fork --net --mount --pid /bin/true`, interleaved
//! round by round so all three see the same machine state.
//!
//! Run as root: `cargo bench -p openshell-sandbox --bench launch`
//! (`LAUNCH_ROUNDS` sets the number of rounds, default 300).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POLICY: &str = "version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom]
  read_write: [/sandbox, /tmp, /dev/null]
landlock:
  compatibility: hard_requirement
process:
  run_as_user: sandbox
  run_as_group: sandbox
";

fn time(command: &mut Command) -> Duration {
    let start = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "{command:?} failed: {status}");
    elapsed
}

struct Stats {
    median: Duration,
    p90: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats {
        median: samples[samples.len() / 2],
        p90: samples[samples.len() * 9 / 10],
        mean,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes harness=false benches this way
    }
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the launch benchmark needs root"
    );
    let rounds: usize = std::env::var("LAUNCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let sandbox = env!("CARGO_BIN_EXE_openshell-sandbox");
    let run_true = || Command::new("/bin/true");
    let run_unshare = || {
        let mut c = Command::new("unshare");
        c.args(["--fork", "--net", "--mount", "--pid", "/bin/true"]);
        c
    };
    let run_sandbox = || {
        let mut c = Command::new(sandbox);
        c.env("XDG_STATE_HOME", dir.path())
            .arg("run")
            .arg("--policy")
            .arg(&policy)
            .args(["--", "/bin/true"]);
        c
    };
    for _ in 0..10 {
        time(&mut run_true());
        time(&mut run_unshare());
        time(&mut run_sandbox());
    }
    let (mut t, mut u, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        t.push(time(&mut run_true()));
        u.push(time(&mut run_unshare()));
        s.push(time(&mut run_sandbox()));
    }
    let (t, u, s) = (stats(t), stats(u), stats(s));
    println!("launch benchmark, {rounds} interleaved rounds\n");
    println!("| command | median | p90 | mean |");
    println!("|---|---|---|---|");
    for (name, st) in [
        ("/bin/true", &t),
        ("unshare --fork --net --mount --pid /bin/true", &u),
        ("openshell-sandbox run --policy p.yaml -- /bin/true", &s),
    ] {
        println!(
            "| `{name}` | {} | {} | {} |",
            ms(st.median),
            ms(st.p90),
            ms(st.mean)
        );
    }
    println!(
        "\noverhead per launch (median): {} over /bin/true, {} over unshare; ratio {:.1}x /bin/true, {:.1}x unshare",
        ms(s.median.saturating_sub(t.median)),
        ms(s.median.saturating_sub(u.median)),
        s.median.as_secs_f64() / t.median.as_secs_f64(),
        s.median.as_secs_f64() / u.median.as_secs_f64(),
    );
}
