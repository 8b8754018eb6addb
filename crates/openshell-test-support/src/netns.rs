//! A test network: a network namespace joined to the host by a veth pair,
//! with servers listening on the far side. The only non-loopback addresses
//! tests ever dial. Removed on drop.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::PYTHON;

/// An HTTP/1.1 server answering every method with
/// `<METHOD> <path> <body length>` and `Connection: close`.
pub const ECHO_SERVER: &str = r#"
import http.server, os, socketserver
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def answer(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        text = f'{self.command} {self.path} {len(body)}\n'.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(text)))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(text)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = answer
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
Server((os.environ['ADDR'], int(os.environ['PORT'])), Echo).serve_forever()
"#;

#[derive(Debug)]
pub struct TestNetwork {
    netns: String,
    host_if: String,
    servers: Vec<Child>,
    pub peer: Ipv4Addr,
    /// The host's end of the veth pair: an address of this host.
    pub host: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 (ip)");
    assert!(status.success(), "ip {args:?}");
}

fn quiet_ip(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

impl TestNetwork {
    pub fn new() -> TestNetwork {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + n % 10;
        let netns = format!("osh-t-{id}");
        let host_if = format!("osh{id}h");
        let peer_if = format!("osh{id}p");
        // A /30 in 10.213.0.0/16 chosen from the id, so parallel tests differ.
        let subnet = (id % 16_384) * 4;
        let (hi, lo) = ((subnet >> 8) as u8, (subnet & 0xff) as u8);
        let host_ip = Ipv4Addr::new(10, 213, hi, lo + 1);
        let peer = Ipv4Addr::new(10, 213, hi, lo + 2);
        // Leftovers of a crashed earlier run with the same id, if any.
        quiet_ip(&["netns", "del", &netns]);
        quiet_ip(&["link", "del", &host_if]);
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &netns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let peer_cidr = format!("{peer}/30");
        for args in [
            ["addr", "add", peer_cidr.as_str(), "dev", peer_if.as_str()].as_slice(),
            &["link", "set", peer_if.as_str(), "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["netns", "exec", netns.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        }
        TestNetwork {
            netns,
            host_if,
            servers: Vec::new(),
            peer,
            host: host_ip,
        }
    }

    /// Runs `python_code` in the namespace with `ADDR` and `PORT` set and
    /// waits until the port accepts connections from the host.
    pub fn serve(&mut self, port: u16, python_code: &str) {
        self.serve_with(port, python_code, &[]);
    }

    /// [`TestNetwork::serve`] with more environment for the server
    /// (`CERT`, `KEY`, a log file…).
    pub fn serve_with(&mut self, port: u16, python_code: &str, env: &[(&str, &std::ffi::OsStr)]) {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, PYTHON, "-c", python_code])
            .env("ADDR", self.peer.to_string())
            .env("PORT", port.to_string())
            .envs(env.iter().copied());
        self.serve_command(port, command);
    }

    /// Runs `program ARGS` in the namespace (a real server: sshd…) and
    /// waits until `port` accepts connections from the host.
    pub fn serve_program(&mut self, port: u16, program: &str, args: &[&str]) {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, program])
            .args(args);
        self.serve_command(port, command);
    }

    /// The namespace's network namespace file (to tell its processes).
    pub fn netns_path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.netns)
    }

    fn serve_command(&mut self, port: u16, mut command: Command) {
        let child = command.spawn().unwrap();
        self.servers.push(child);
        let addr = SocketAddrV4::new(self.peer, port).into();
        for _ in 0..400 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the test server on {}:{port} never came up", self.peer);
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        quiet_ip(&["link", "del", &self.host_if]);
        quiet_ip(&["netns", "del", &self.netns]);
    }
}

/// A network namespace with nothing but loopback, for a supervisor whose
/// proxy must not be able to reach anything real even if it tried.
#[derive(Debug)]
pub struct Isolated {
    pub name: String,
}

impl Isolated {
    pub fn new() -> Isolated {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("osh-iso-{}-{n}", std::process::id());
        quiet_ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Isolated { name }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        quiet_ip(&["netns", "del", &self.name]);
    }
}
