//! What credential substitution adds per request, whole-process, in one
//! run: `curl` inside a sandbox sends keep-alive requests through an L7
//! tunnel (plain HTTP inside CONNECT) to an upstream in a test network, in
//! three cases, interleaved round by round:
//! - baseline: a sandbox without providers, `Authorization: Bearer <a
//!   literal token of the placeholder's length>`;
//! - providers, nothing to substitute: a sandbox with a provider attached,
//!   the same literal header (the proxy scans every request);
//! - substituted: that sandbox, the header carrying the placeholder.
//!
//! Per-request times are curl's `time_total` of each transfer on one
//! connection (p50, p99); the upstream answers with an empty body.
//!
//! Run as root, after a build of every binary:
//! `cargo build --release --workspace && cargo bench -p openshell-cli --bench providers`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use openshell_test_support::netns::TestNetwork;

const PORT: u16 = 8080;
const REQUESTS: usize = 1000;
const ROUNDS: usize = 5;
const SECRET: &str = "bench-SECRET-value-000000000000000001";

/// A keep-alive HTTP/1.1 server answering every request with an empty 200.
const SERVER: &str = r#"
import http.server, os, socketserver
class Empty(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
Server((os.environ['ADDR'], int(os.environ['PORT'])), Empty).serve_forever()
"#;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the providers benchmark needs root"
    );
    let mut network = TestNetwork::new();
    network.serve(PORT, SERVER);
    let peer = network.peer;
    let home = tempfile::tempdir().unwrap();
    let openshell = |args: &[&str]| support::openshell(home.path(), args);
    let port = support::free_port().to_string();
    support::time(&mut openshell(&[
        "gateway", "start", "--port", &port, "--driver", "process",
    ]));
    support::time(&mut openshell(&[
        "provider",
        "create",
        "--name",
        "tok",
        "--type",
        "generic",
        "--credential",
        &format!("API_TOKEN={SECRET}"),
    ]));
    let policy = |binding: &str| {
        let path = home.path().join(format!("policy{}.yaml", binding.len()));
        std::fs::write(
            &path,
            format!(
                "version: 1\nnetwork_policies:\n  bench:\n    endpoints:\n      - host: \"{peer}\"\n        port: {PORT}\n        protocol: rest\n        access: full\n{binding}    binaries:\n      - path: /usr/bin/curl\n"
            ),
        )
        .unwrap();
        path
    };
    let plain = policy("");
    let bound = policy("        credential_binding:\n          provider: tok\n");
    for (name, file, provider) in [("plain", &plain, None), ("bound", &bound, Some("tok"))] {
        let mut args = vec![
            "sandbox",
            "create",
            "--name",
            name,
            "--policy",
            file.to_str().unwrap(),
            "--detach",
        ];
        if let Some(provider) = provider {
            args.extend(["--provider", provider]);
        }
        args.extend(["--", "sleep", "infinity"]);
        support::time(&mut openshell(&args));
    }
    let placeholder = "openshell:resolve:env:v1_API_TOKEN";
    let literal = "x".repeat(placeholder.len());
    let url = format!("http://{peer}:{PORT}/r[1-{REQUESTS}]");
    let measure = |sandbox: &str, token: &str| -> Vec<Duration> {
        let script = format!(
            "curl -s -p -w '%{{time_total}}\\n' -H \"Authorization: Bearer {token}\" '{url}'"
        );
        let out = openshell(&["sandbox", "exec", "-n", sandbox, "--", "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let times: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .collect();
        assert_eq!(times.len(), REQUESTS, "not every request was answered");
        times
    };
    // The proxy really looks at the bound sandbox's requests: an unknown
    // placeholder fails there, the issued one passes.
    let status = |token: &str| {
        let out = openshell(&[
            "sandbox",
            "exec",
            "-n",
            "bound",
            "--",
            "sh",
            "-c",
            &format!(
                "curl -s -p -o /dev/null -w '%{{http_code}}' -H \"Authorization: Bearer {token}\" http://{peer}:{PORT}/x"
            ),
        ])
        .output()
        .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status("openshell:resolve:env:v9_API_TOKEN"), "500");
    assert_eq!(status("$API_TOKEN"), "200");
    // Warm-up.
    let _ = measure("plain", &literal);
    let _ = measure("bound", "$API_TOKEN");
    let (mut base, mut scanned, mut substituted) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        base.extend(measure("plain", &literal));
        scanned.extend(measure("bound", &literal));
        substituted.extend(measure("bound", "$API_TOKEN"));
    }
    let direct = {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "%{time_total}\n"])
            .arg(&url)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .output()
            .unwrap();
        let mut times: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .collect();
        (percentile(&mut times, 0.5), percentile(&mut times, 0.99))
    };
    let base_p50 = percentile(&mut base, 0.5);
    println!(
        "{} requests × {ROUNDS} rounds per case, one keep-alive connection each\n",
        REQUESTS
    );
    println!("| case | p50 | p99 | p50 − baseline |");
    println!("|---|---|---|---|");
    println!(
        "| direct from the host (no proxy) | {} | {} | |",
        us(direct.0),
        us(direct.1)
    );
    for (name, samples) in [
        ("baseline: no providers", &mut base),
        ("provider attached, nothing to substitute", &mut scanned),
        ("placeholder substituted", &mut substituted),
    ] {
        let p50 = percentile(samples, 0.5);
        let p99 = percentile(samples, 0.99);
        let added = p50.as_secs_f64() - base_p50.as_secs_f64();
        println!(
            "| {name} | {} | {} | {:+.0} µs |",
            us(p50),
            us(p99),
            added * 1e6
        );
    }
    for name in ["plain", "bound"] {
        let _ = openshell(&["sandbox", "delete", name]).output();
    }
    let _ = openshell(&["gateway", "stop"]).output();
}
