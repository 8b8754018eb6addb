//! File transfer throughput, in one run: `scp` to a sandbox through the
//! gateway's relay (ProxyCommand `openshell ssh-proxy`, the sandbox's
//! russh server, sftp-server inside the sandbox) and `openshell sandbox
//! upload|download` (tar over the exec relay), against `scp` over loopback
//! to a local OpenSSH sshd, the baseline. Each direction, 5 interleaved
//! rounds of a 256 MiB file after one warm-up; medians.
//!
//! Run as root, after a release build of every binary (needs sshd, from
//! Debian's openssh-server):
//! `cargo build --release --workspace && cargo bench -p openshell-cli --bench transfer`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{free_port, median, time};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const SIZE: usize = 256 * 1024 * 1024;

/// A private sshd on loopback that lets root in with `key`.
fn sshd(dir: &Path, port: u16) -> (Child, PathBuf) {
    let key = dir.join("client_key");
    for (path, comment) in [(dir.join("host_key"), "host"), (key.clone(), "client")] {
        time(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(&path),
        );
    }
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let sshd = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string(), "-h"])
        .arg(dir.join("host_key"))
        .args([
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            "PermitRootLogin=prohibit-password",
        ])
        .args([
            "-o",
            "UsePAM=no",
            "-o",
            "StrictModes=no",
            "-o",
            "PidFile=none",
        ])
        .arg("-o")
        .arg(format!(
            "AuthorizedKeysFile={}",
            dir.join("authorized_keys").display()
        ))
        .args(["-o", "Subsystem=sftp /usr/lib/openssh/sftp-server"])
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (Debian: apt-get install openssh-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (sshd, key)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let cli = Path::new(env!("CARGO_BIN_EXE_openshell"));
    assert!(
        cli.with_file_name("openshell-gateway").is_file()
            && cli.with_file_name("openshell-sandbox").is_file(),
        "build every binary first: cargo build --release --workspace"
    );
    let home = tempfile::tempdir_in("/var/tmp").unwrap();
    let openshell = |args: &[&str]| support::openshell(home.path(), args);
    time(&mut openshell(&[
        "gateway",
        "start",
        "--port",
        &free_port().to_string(),
        "--driver",
        "process",
    ]));
    time(&mut openshell(&[
        "sandbox", "create", "--name", "bench", "--detach",
    ]));
    let config = home.path().join("ssh_config");
    let printed = openshell(&["sandbox", "ssh-config", "bench"])
        .output()
        .unwrap();
    std::fs::write(&config, &printed.stdout).unwrap();
    let ssh_port = free_port();
    let (mut sshd, key) = sshd(home.path(), ssh_port);
    let direct_dir = home.path().join("direct");
    std::fs::create_dir_all(&direct_dir).unwrap();

    let source = home.path().join("source.bin");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..SIZE / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::write(&source, data).unwrap();
    let back = home.path().join("back.bin");
    let back_dir = home.path().join("back");
    let (src, back_s) = (source.to_str().unwrap(), back.to_str().unwrap());

    let scp_relay = |from: &str, to: &str| {
        let mut c = Command::new("scp");
        c.arg("-q")
            .arg("-F")
            .arg(&config)
            .args([from, to])
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_STATE_HOME", home.path().join("state"));
        c
    };
    let scp_direct = |from: &str, to: &str| {
        let mut c = Command::new("scp");
        c.args(["-q", "-P", &ssh_port.to_string(), "-i"])
            .arg(&key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .args([from, to]);
        c
    };
    let direct_remote = format!("root@127.0.0.1:{}/file.bin", direct_dir.display());
    type Case<'a> = (&'a str, Box<dyn Fn() -> Command + 'a>);
    let cases: Vec<Case> = vec![
        (
            "scp direct, upload",
            Box::new(|| scp_direct(src, &direct_remote)),
        ),
        (
            "scp direct, download",
            Box::new(|| scp_direct(&direct_remote, back_s)),
        ),
        (
            "scp via relay, upload",
            Box::new(|| scp_relay(src, "openshell-bench:/sandbox/file.bin")),
        ),
        (
            "scp via relay, download",
            Box::new(|| scp_relay("openshell-bench:/sandbox/file.bin", back_s)),
        ),
        (
            "sandbox upload",
            Box::new(|| openshell(&["sandbox", "upload", "bench", src, "/sandbox/up.bin"])),
        ),
        (
            "sandbox download",
            Box::new(|| {
                let _ = std::fs::remove_dir_all(&back_dir);
                openshell(&[
                    "sandbox",
                    "download",
                    "bench",
                    "/sandbox/up.bin",
                    back_dir.to_str().unwrap(),
                ])
            }),
        ),
    ];
    for (_, command) in &cases {
        time(&mut command());
    }
    let mut samples = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, command)) in cases.iter().enumerate() {
            samples[i].push(time(&mut command()));
        }
    }
    let mib = (SIZE / (1024 * 1024)) as f64;
    let rates: Vec<f64> = samples
        .into_iter()
        .map(|s| mib / median(s).as_secs_f64())
        .collect();
    println!(
        "| transfer ({} MiB, median of {ROUNDS}) | MiB/s | vs scp direct |",
        SIZE >> 20
    );
    println!("|---|---|---|");
    for (i, (name, _)) in cases.iter().enumerate() {
        let baseline = rates[i % 2];
        println!(
            "| {name} | {:.0} | {:.0}% |",
            rates[i],
            100.0 * rates[i] / baseline
        );
    }
    let _ = sshd.kill();
    let _ = openshell(&["sandbox", "delete", "bench"]).output();
    let _ = openshell(&["gateway", "stop"]).output();
}
