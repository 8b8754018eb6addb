//! Whole-process egress benchmark, proxy against direct in the same run:
//! - bulk: a 1 GiB download with curl, direct from the host vs through a
//!   CONNECT tunnel from inside `openshell-sandbox run`;
//! - latency: sequential keep-alive requests (p50, p99), direct vs through an
//!   L4 tunnel vs through an L7-inspected tunnel;
//! - fresh connections: a new connection per request (p50, p99), direct vs
//!   through an L4 tunnel (what package installs and git do);
//! - throughput: requests per second with 64 concurrent keep-alive clients
//!   through the L7 path vs direct.
//!
//! The upstream is a small Rust HTTP server in a network namespace this
//! benchmark creates (veth pair, 10.213.250.0/30); the client for latency and
//! throughput is this same binary, copied into the sandbox's workspace.
//!
//! Run as root: `cargo bench -p openshell-sandbox --bench proxy`; name
//! groups after `--` to run only those (`bulk`, `forward`, `latency`,
//! `fresh`, `rps`), e.g. `cargo bench -p openshell-sandbox --bench proxy --
//! fresh`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NETNS: &str = "osh-bench";
const HOST_IF: &str = "oshbh";
const PEER_IF: &str = "oshbp";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 250, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 213, 250, 2);
const PORT: u16 = 9090;
const BULK_BYTES: u64 = 1 << 30;
const LATENCY_REQUESTS: usize = 5000;
const RPS_CLIENTS: usize = 64;
const FRESH_CONNECTIONS: usize = 500;
const RPS_SECONDS: u64 = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes harness=false benches this way
    }
    if args.get(1).map(String::as_str) == Some("--client") {
        client(&args[2..]);
        return;
    }
    let named: Vec<&str> = args[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |group: &str| named.is_empty() || named.contains(&group);
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the proxy benchmark needs root"
    );
    let _network = Network::create();
    std::thread::spawn(serve_in_netns);
    wait_for_server();

    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let me = work.path().join("bench");
    std::fs::copy(std::env::current_exe().unwrap(), &me).unwrap();
    let policy = |extra: &str| {
        let path = work.path().join(format!("policy{}.yaml", extra.len()));
        std::fs::write(
            &path,
            format!(
                "version: 1\nnetwork_policies:\n  bench:\n    name: bench\n    endpoints:\n      - host: \"{PEER}\"\n        port: {PORT}\n{extra}    binaries:\n      - path: /usr/bin/curl\n      - path: /sandbox/bench\n"
            ),
        )
        .unwrap();
        path
    };
    let l4 = policy("");
    let l7 =
        policy("        protocol: rest\n        enforcement: enforce\n        access: read-only\n");
    let sandboxed = |policy: &std::path::Path, argv: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_openshell-sandbox"))
            .env("XDG_STATE_HOME", work.path())
            .args(["run", "--policy"])
            .arg(policy)
            .arg("--workdir")
            .arg(work.path())
            .arg("--")
            .args(argv)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "sandboxed {argv:?} failed");
        String::from_utf8(out.stdout).unwrap()
    };
    let host = |argv: &[&str]| -> String {
        let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
        assert!(out.status.success(), "{argv:?} failed");
        String::from_utf8(out.stdout).unwrap()
    };

    println!("egress benchmark (upstream in a network namespace over veth)\n");
    let url = format!("http://{PEER}:{PORT}/bulk");
    let curl = [
        "curl",
        "-sS",
        "--noproxy",
        "",
        "-o",
        "/dev/null",
        "-w",
        "%{speed_download}",
    ];
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    // Best of 3 per path, the paths interleaved.
    let bulk = |paths: &[(&str, &dyn Fn() -> String)]| {
        let mut speeds = vec![Vec::new(); paths.len()];
        for _ in 0..3 {
            for (i, (_, path)) in paths.iter().enumerate() {
                speeds[i].push(path().parse::<f64>().unwrap());
            }
        }
        println!("| bulk 1 GiB (curl, best of 3) | MB/s | of direct |");
        println!("|---|---|---|");
        let direct = best(&speeds[0]);
        for (i, (name, _)) in paths.iter().enumerate() {
            let speed = best(&speeds[i]);
            println!(
                "| {name} | {:.0} | {:.1}% |",
                speed / 1e6,
                100.0 * speed / direct
            );
        }
        println!();
    };
    let direct_curl = || host(&[&curl[..], &[url.as_str()]].concat());
    if run("bulk") {
        bulk(&[
            ("direct", &direct_curl),
            ("CONNECT tunnel (L4, splice relay)", &|| {
                sandboxed(&l4, &[&curl[..], &["-p", url.as_str()]].concat())
            }),
        ]);
    }
    if run("forward") {
        // Plain HTTP through the forward proxy: curl's absolute-form
        // request, judged and relayed by the proxy.
        bulk(&[
            ("direct", &direct_curl),
            ("forward proxy (plain HTTP, L4 endpoint)", &|| {
                sandboxed(
                    &l4,
                    &[&curl[..], &["-x", "http://127.0.0.1:3128", url.as_str()]].concat(),
                )
            }),
            ("forward proxy (plain HTTP, L7 endpoint)", &|| {
                sandboxed(
                    &l7,
                    &[&curl[..], &["-x", "http://127.0.0.1:3128", url.as_str()]].concat(),
                )
            }),
        ]);
    }

    let parse = |s: &str| -> (f64, f64) {
        let mut it = s.split_whitespace().map(|v| v.parse::<f64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    let me_in = "/sandbox/bench";
    let me_out = me.to_str().unwrap();
    let table = |title: &str, rows: &[(&str, String)]| {
        println!("| {title} | p50 µs | p99 µs | added p50 µs |");
        println!("|---|---|---|---|");
        let (base, _) = parse(&rows[0].1);
        for (i, (name, out)) in rows.iter().enumerate() {
            let (p50, p99) = parse(out);
            let added = if i == 0 {
                "—".to_owned()
            } else {
                format!("{:.0}", p50 - base)
            };
            println!("| {name} | {p50:.0} | {p99:.0} | {added} |");
        }
        println!();
    };
    if run("latency") {
        let n = LATENCY_REQUESTS.to_string();
        table(
            &format!("{LATENCY_REQUESTS} sequential keep-alive GETs"),
            &[
                (
                    "direct",
                    host(&[me_out, "--client", "latency", "direct", &n]),
                ),
                (
                    "L4 tunnel",
                    sandboxed(&l4, &[me_in, "--client", "latency", "connect", &n]),
                ),
                (
                    "L7 tunnel (inspected, plain HTTP)",
                    sandboxed(&l7, &[me_in, "--client", "latency", "connect", &n]),
                ),
            ],
        );
    }
    if run("fresh") {
        // Every sample opens its own connection (through the proxy: connect
        // filter, request, caller identity, policy) and sends one GET.
        let n = FRESH_CONNECTIONS.to_string();
        table(
            &format!("{FRESH_CONNECTIONS} fresh connections, one GET each"),
            &[
                ("direct", host(&[me_out, "--client", "fresh", "direct", &n])),
                (
                    "L4 tunnel (CONNECT)",
                    sandboxed(&l4, &[me_in, "--client", "fresh", "connect", &n]),
                ),
                (
                    "forward proxy (plain HTTP)",
                    sandboxed(&l4, &[me_in, "--client", "fresh", "forward", &n]),
                ),
            ],
        );
    }
    if run("rps") {
        let clients = RPS_CLIENTS.to_string();
        let secs = RPS_SECONDS.to_string();
        let direct_rps: f64 = host(&[me_out, "--client", "rps", "direct", &clients, &secs])
            .trim()
            .parse()
            .unwrap();
        let l7_rps: f64 = sandboxed(&l7, &[me_in, "--client", "rps", "connect", &clients, &secs])
            .trim()
            .parse()
            .unwrap();
        println!("| {RPS_CLIENTS} concurrent keep-alive clients, {RPS_SECONDS} s | requests/s |");
        println!("|---|---|");
        println!("| direct | {direct_rps:.0} |");
        println!("| L7 tunnel | {l7_rps:.0} |");
        println!("\nL7 / direct: {:.1}%", 100.0 * l7_rps / direct_rps);
    }
}

/// The test network; removed on drop.
struct Network;

impl Network {
    fn create() -> Network {
        let ip = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        };
        ip(&["netns", "del", NETNS]);
        ip(&["link", "del", HOST_IF]);
        ip(&["netns", "add", NETNS]);
        ip(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", PEER_IF,
        ]);
        ip(&["link", "set", PEER_IF, "netns", NETNS]);
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", HOST_IF]);
        ip(&["link", "set", HOST_IF, "up"]);
        ip(&[
            "netns",
            "exec",
            NETNS,
            "ip",
            "addr",
            "add",
            &format!("{PEER}/30"),
            "dev",
            PEER_IF,
        ]);
        ip(&["netns", "exec", NETNS, "ip", "link", "set", PEER_IF, "up"]);
        ip(&["netns", "exec", NETNS, "ip", "link", "set", "lo", "up"]);
        Network
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", HOST_IF]).status();
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    }
}

fn wait_for_server() {
    let addr = SocketAddr::from((PEER, PORT));
    for _ in 0..200 {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the benchmark server never came up");
}

/// Runs on a thread that joins the namespace; connection threads inherit it.
fn serve_in_netns() {
    let netns = std::fs::File::open(format!("/run/netns/{NETNS}")).unwrap();
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let listener = TcpListener::bind((PEER, PORT)).unwrap();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve_connection(stream));
    }
}

fn serve_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let chunk = vec![b'x'; 1 << 20];
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        if request_line.contains("/bulk") {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BULK_BYTES}\r\n\r\n");
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            let mut left = BULK_BYTES;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if writer.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
        } else if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// A keep-alive HTTP/1.1 client connection, direct or through a CONNECT
/// tunnel on the sandbox's proxy.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Requests in absolute form (to the forward proxy).
    absolute: bool,
}

impl Client {
    fn open(via: &str) -> Client {
        let stream = match via {
            "direct" => TcpStream::connect((PEER, PORT)).unwrap(),
            "forward" => TcpStream::connect("127.0.0.1:3128").unwrap(),
            _ => {
                let mut s = TcpStream::connect("127.0.0.1:3128").unwrap();
                write!(
                    s,
                    "CONNECT {PEER}:{PORT} HTTP/1.1\r\nHost: {PEER}:{PORT}\r\n\r\n"
                )
                .unwrap();
                let mut reply = [0u8; 39];
                s.read_exact(&mut reply).unwrap();
                assert!(reply.starts_with(b"HTTP/1.1 200"), "CONNECT refused");
                s
            }
        };
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            absolute: via == "forward",
        }
    }

    fn get(&mut self) {
        let origin = if self.absolute {
            format!("http://{PEER}:{PORT}")
        } else {
            String::new()
        };
        write!(
            self.writer,
            "GET {origin}/small HTTP/1.1\r\nHost: {PEER}:{PORT}\r\n\r\n"
        )
        .unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
    }
}

/// `--client latency VIA N` and `--client fresh VIA N` (a new connection
/// per request) print "p50 p99" in µs; `--client rps VIA C S` prints
/// requests per second.
fn client(args: &[String]) {
    match args[0].as_str() {
        "latency" => {
            let n: usize = args[2].parse().unwrap();
            let mut client = Client::open(&args[1]);
            for _ in 0..100 {
                client.get();
            }
            let mut samples: Vec<f64> = (0..n)
                .map(|_| {
                    let start = Instant::now();
                    client.get();
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("{} {}", samples[n / 2], samples[n * 99 / 100]);
        }
        "fresh" => {
            let n: usize = args[2].parse().unwrap();
            let mut samples: Vec<f64> = (0..n)
                .map(|_| {
                    let start = Instant::now();
                    let mut client = Client::open(&args[1]);
                    client.get();
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("{} {}", samples[n / 2], samples[n * 99 / 100]);
        }
        "rps" => {
            let clients: usize = args[2].parse().unwrap();
            let secs: u64 = args[3].parse().unwrap();
            let done = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let threads: Vec<_> = (0..clients)
                .map(|_| {
                    let (done, stop, via) = (done.clone(), stop.clone(), args[1].clone());
                    std::thread::spawn(move || {
                        let mut client = Client::open(&via);
                        while !stop.load(Ordering::Relaxed) {
                            client.get();
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                t.join().unwrap();
            }
            println!("{}", done.load(Ordering::Relaxed) as f64 / secs as f64);
        }
        other => panic!("unknown client mode {other}"),
    }
}
