//! What `inference.local` adds to a streamed completion, in one run: the
//! same client (Python's http.client, one keep-alive connection, 200
//! streamed chat completions of 20 chunks each, 5 ms apart) talks to the
//! same upstream (a Python server in a test network namespace):
//! - direct: from the host to the upstream;
//! - routed: from inside a sandbox under the default policy, through the
//!   proxy's CONNECT to `inference.local` (TLS with the sandbox CA) and
//!   the router, which sends it on to the upstream.
//!
//! First byte: from sending the request to the first chunk. Per chunk:
//! from the upstream writing a chunk (its CLOCK_MONOTONIC time is in the
//! chunk) to the client reading it (same clock: no time namespace).
//!
//! Run as root, after a build of every binary:
//! `cargo build --release --workspace && cargo bench -p openshell-cli --bench inference`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use openshell_test_support::netns::TestNetwork;
use serde_json::Value;

const PORT: u16 = 8080;
const REQUESTS: usize = 200;

const UPSTREAM: &str = r#"
import http.server, json, os, socket, socketserver, time
class Model(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_GET(self):
        data = b'{"object":"list","data":[]}'
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length') or 0))
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        for i in range(20):
            if i:
                time.sleep(0.005)
            data = ('data: ' + json.dumps({'t': time.monotonic(), 'choices': [{'delta': {'content': 'x'}}]}) + '\n\n').encode()
            self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b'0\r\n\r\n')
        self.wfile.flush()
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
Server((os.environ['ADDR'], int(os.environ['PORT'])), Model).serve_forever()
"#;

/// The client: `direct HOST PORT N` or `routed N`; prints
/// `{"first": [s…], "chunk": [s…]}`.
const CLIENT: &str = r#"
import http.client, json, ssl, sys, time
if sys.argv[1] == 'direct':
    conn = http.client.HTTPConnection(sys.argv[2], int(sys.argv[3]))
    n = int(sys.argv[4])
else:
    conn = http.client.HTTPSConnection('127.0.0.1', 3128, context=ssl.create_default_context())
    conn.set_tunnel('inference.local', 443)
    n = int(sys.argv[2])
body = json.dumps({'model': 'm', 'stream': True, 'messages': [{'role': 'user', 'content': 'hi'}]})
first, chunk = [], []
for _ in range(n):
    start = time.monotonic()
    conn.request('POST', '/v1/chat/completions', body, {'Content-Type': 'application/json'})
    response = conn.getresponse()
    seen = False
    while True:
        line = response.readline()
        if not line:
            break
        now = time.monotonic()
        if line.startswith(b'data: {'):
            if not seen:
                first.append(now - start)
                seen = True
            chunk.append(now - json.loads(line[6:])['t'])
print(json.dumps({'first': first, 'chunk': chunk}))
"#;

fn percentile(samples: &mut [f64], p: f64) -> Duration {
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_secs_f64(samples[index])
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn parse(stdout: &[u8]) -> (Vec<f64>, Vec<f64>) {
    let value: Value = serde_json::from_slice(stdout).unwrap();
    let list = |key: &str| -> Vec<f64> {
        value[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    (list("first"), list("chunk"))
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the inference benchmark needs root"
    );
    let mut network = TestNetwork::new();
    network.serve(PORT, UPSTREAM);
    let peer = network.peer.to_string();
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
        "local",
        "--type",
        "generic",
        "--credential",
        "KEY=bench",
        "--config",
        &format!("base_url=http://{peer}:{PORT}/v1"),
    ]));
    support::time(&mut openshell(&[
        "inference",
        "set",
        "--provider",
        "local",
        "--model",
        "m",
    ]));
    support::time(&mut openshell(&[
        "sandbox", "create", "--name", "bench", "--detach", "--", "sleep", "infinity",
    ]));
    let direct = |n: usize| {
        let out = std::process::Command::new("/usr/bin/python3")
            .args([
                "-c",
                CLIENT,
                "direct",
                &peer,
                &PORT.to_string(),
                &n.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse(&out.stdout)
    };
    let routed = |n: usize| {
        let out = openshell(&[
            "sandbox",
            "exec",
            "-n",
            "bench",
            "--",
            "/usr/bin/python3",
            "-c",
            CLIENT,
            "routed",
            &n.to_string(),
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse(&out.stdout)
    };
    // Warm-up, then interleaved rounds.
    let _ = direct(10);
    let _ = routed(10);
    let (mut direct_first, mut direct_chunk) = (Vec::new(), Vec::new());
    let (mut routed_first, mut routed_chunk) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let (f, c) = direct(REQUESTS / 4);
        direct_first.extend(f);
        direct_chunk.extend(c);
        let (f, c) = routed(REQUESTS / 4);
        routed_first.extend(f);
        routed_chunk.extend(c);
    }
    println!(
        "{REQUESTS} streamed completions per case, 20 chunks each, one keep-alive connection\n"
    );
    println!("| measure | direct p50 | routed p50 | added p50 | direct p99 | routed p99 |");
    println!("|---|---|---|---|---|---|");
    for (name, direct, routed) in [
        ("first byte", &mut direct_first, &mut routed_first),
        ("per chunk", &mut direct_chunk, &mut routed_chunk),
    ] {
        let (d50, r50) = (percentile(direct, 0.5), percentile(routed, 0.5));
        let (d99, r99) = (percentile(direct, 0.99), percentile(routed, 0.99));
        println!(
            "| {name} | {} | {} | {:+.0} µs | {} | {} |",
            us(d50),
            us(r50),
            (r50.as_secs_f64() - d50.as_secs_f64()) * 1e6,
            us(d99),
            us(r99)
        );
    }
    let _ = openshell(&["sandbox", "delete", "bench"]).output();
    let _ = openshell(&["gateway", "stop"]).output();
}
