//! End-to-end create benchmark, in one run: `openshell sandbox create
//! --no-keep -- /bin/true` through a warm local gateway (process driver)
//! vs `openshell-sandbox run -- /bin/true` vs `/bin/true`, and the round
//! trip of `openshell sandbox exec -- /bin/true` into a running sandbox.
//!
//! Then, through the gRPC API with the CLI's mTLS bundle: create+delete
//! operations per second (8 in flight), and memory with 200 idle
//! sandboxes: the gateway's RSS and each idle supervisor's RSS.
//!
//! Run as root, after a release build of every binary:
//! `cargo build --release --workspace && cargo bench -p openshell-cli --bench create`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{free_port, median, time};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ROUNDS: usize = 100;

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
    let port = free_port();
    let openshell = |args: &[&str]| support::openshell(home.path(), args);
    time(&mut openshell(&[
        "gateway",
        "start",
        "--port",
        &port.to_string(),
        "--driver",
        "process",
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
    time(&mut openshell(&[
        "sandbox", "create", "--name", "target", "--detach", "--", "sleep", "infinity",
    ]));
    let exec = || openshell(&["sandbox", "exec", "-n", "target", "--", "/bin/true"]);
    for _ in 0..5 {
        time(&mut exec());
    }
    let (mut t, mut r, mut c, mut e) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        e.push(time(&mut exec()));
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
    time(&mut openshell(&["sandbox", "delete", "target"]));
    let state = home.path().join("state/openshell/gateways/openshell");
    let mtls = home.path().join("config/openshell/gateways/openshell/mtls");
    let api = api::measure(port, &mtls, &state);
    time(&mut openshell(&["gateway", "stop"]));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (t, r, c, e) = (median(t), median(r), median(c), median(e));
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
    println!(
        "\n| `openshell sandbox exec -n target -- /bin/true` (running sandbox) | {:.2} ms (target < 50 ms) |",
        ms(e)
    );
    println!("\n| gateway API | value |");
    println!("|---|---|");
    println!(
        "| create+delete operations/s (8 in flight) | {:.0} |",
        api.ops_per_second
    );
    println!(
        "| gateway RSS, no sandboxes | {:.1} MiB |",
        api.gateway_rss_empty
    );
    println!(
        "| gateway RSS, 200 idle sandboxes | {:.1} MiB |",
        api.gateway_rss_200
    );
    println!(
        "| idle supervisor RSS, mean / max of 200 | {:.1} / {:.1} MiB (target < 15 MiB) |",
        api.supervisor_rss_mean, api.supervisor_rss_max
    );
}

mod api {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use openshell_proto::v1 as pb;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

    pub struct Measured {
        pub ops_per_second: f64,
        pub gateway_rss_empty: f64,
        pub gateway_rss_200: f64,
        pub supervisor_rss_mean: f64,
        pub supervisor_rss_max: f64,
    }

    fn rss_mib(pid: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap();
        kib / 1024.0
    }

    fn spec() -> pb::SandboxSpec {
        pb::SandboxSpec {
            command: vec!["sleep".into(), "3600".into()],
            ..Default::default()
        }
    }

    pub fn measure(port: u16, mtls: &Path, state: &Path) -> Measured {
        let read = |f: &str| std::fs::read_to_string(mtls.join(f)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("ca.crt")))
                .identity(Identity::from_pem(read("tls.crt"), read("tls.key")));
            let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let client = pb::gateway_client::GatewayClient::new(channel);
            let gateway_pid = std::fs::read_to_string(state.join("gateway.pid")).unwrap();
            let gateway_rss_empty = rss_mib(&gateway_pid);

            // create+delete, 8 at a time, for 5 s
            let started = Instant::now();
            let mut done = 0u64;
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(5) {
                let mut tasks = Vec::new();
                for _ in 0..8 {
                    n += 1;
                    let mut client = client.clone();
                    let name = format!("ops-{n}");
                    tasks.push(tokio::spawn(async move {
                        client
                            .create_sandbox(pb::CreateSandboxRequest {
                                name: name.clone(),
                                spec: Some(spec()),
                            })
                            .await
                            .unwrap();
                        client
                            .delete_sandbox(pb::DeleteSandboxRequest { name })
                            .await
                            .unwrap();
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                    done += 1;
                }
            }
            let ops_per_second = done as f64 / started.elapsed().as_secs_f64();

            // 200 idle sandboxes
            let mut client = client.clone();
            for i in 0..200 {
                client
                    .create_sandbox(pb::CreateSandboxRequest {
                        name: format!("idle-{i}"),
                        spec: Some(spec()),
                    })
                    .await
                    .unwrap();
            }
            loop {
                let list = client
                    .list_sandboxes(pb::ListSandboxesRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .sandboxes;
                if list.iter().all(|s| s.phase == "Ready") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let gateway_rss_200 = rss_mib(&gateway_pid);
            let mut rss = Vec::new();
            for entry in std::fs::read_dir(state.join("sandboxes"))
                .unwrap()
                .flatten()
            {
                if let Ok(pid) = std::fs::read_to_string(entry.path().join("pid")) {
                    rss.push(rss_mib(&pid));
                }
            }
            for i in 0..200 {
                client
                    .delete_sandbox(pb::DeleteSandboxRequest {
                        name: format!("idle-{i}"),
                    })
                    .await
                    .unwrap();
            }
            Measured {
                ops_per_second,
                gateway_rss_empty,
                gateway_rss_200,
                supervisor_rss_mean: rss.iter().sum::<f64>() / rss.len() as f64,
                supervisor_rss_max: rss.iter().cloned().fold(0.0, f64::max),
            }
        })
    }
}
