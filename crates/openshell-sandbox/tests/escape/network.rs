//! The child's network namespace: only loopback, where the supervisor's
//! proxy listener is the one thing that answers. Every target here is the
//! host's loopback or a network namespace this test creates.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::support::{PYTHON, probe, sandbox};

/// Python that connects to HOST:PORT and prints the outcome's errno name.
fn connect_script(host: &str, port: u16) -> String {
    format!(
        "import socket, errno\n\
         s = socket.socket()\n\
         s.settimeout(5)\n\
         try:\n    s.connect(({host:?}, {port}))\n    print('connected')\n\
         except OSError as e:\n    print(errno.errorcode.get(e.errno, e.errno))\n"
    )
}

fn accepted_nothing(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn direct_connect_to_the_host_loopback_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outcome = sandbox()
        .python(&connect_script("127.0.0.1", port))
        .success();
    assert_eq!(outcome.stdout.trim(), "ECONNREFUSED");
    assert!(
        accepted_nothing(&listener),
        "the host listener saw a connection"
    );
}

/// A network namespace with a veth pair and a listener inside it, removed
/// on drop.
struct TestNetwork {
    netns: String,
    host_if: String,
    server: std::process::Child,
    peer: Ipv4Addr,
    port: u16,
}

impl TestNetwork {
    fn new() -> TestNetwork {
        let id = std::process::id() % 10_000;
        let netns = format!("osh-esc-{id}");
        let host_if = format!("oshe{id}h");
        let peer_if = format!("oshe{id}p");
        // A /30 in 10.213.0.0/16 picked from the pid, so parallel runs differ.
        let subnet = (id % 16_000) * 4;
        let (hi, lo) = ((subnet >> 8) as u8, (subnet & 0xff) as u8);
        let host_ip = Ipv4Addr::new(10, 213, hi, lo + 1);
        let peer = Ipv4Addr::new(10, 213, hi, lo + 2);
        let ip = |args: &[&str]| {
            let status = Command::new("ip")
                .args(args)
                .status()
                .expect("iproute2 (ip)");
            assert!(status.success(), "ip {args:?}");
        };
        let _ = Command::new("ip").args(["netns", "del", &netns]).status();
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &netns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", netns.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&["addr", "add", &format!("{peer}/30"), "dev", &peer_if]);
        in_ns(&["link", "set", &peer_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        let port = 18_000 + (id % 1000) as u16;
        let server = Command::new("ip")
            .args(["netns", "exec", &netns, PYTHON, "-c"])
            .arg(format!(
                "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('{peer}', {port}))\ns.listen()\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'hello')\n    c.close()\n"
            ))
            .spawn()
            .unwrap();
        let network = TestNetwork {
            netns,
            host_if,
            server,
            peer,
            port,
        };
        network.wait_until_reachable_from_host();
        network
    }

    fn wait_until_reachable_from_host(&self) {
        let addr = SocketAddrV4::new(self.peer, self.port).into();
        for _ in 0..200 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the test network's listener never came up");
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[test]
fn an_address_the_host_can_reach_is_unreachable_from_the_sandbox() {
    let network = TestNetwork::new();
    let outcome = sandbox()
        .python(&connect_script(&network.peer.to_string(), network.port))
        .success();
    assert_eq!(outcome.stdout.trim(), "ENETUNREACH", "{outcome:#?}");
}

#[test]
fn only_loopback_exists_in_the_sandbox() {
    let outcome = sandbox().sh("cat /proc/net/dev").success();
    let names: Vec<&str> = outcome
        .stdout
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains('|'))
        .collect();
    assert_eq!(names, ["lo"], "{outcome:#?}");
}

#[test]
fn the_proxy_listener_is_inside_the_sandbox_and_refuses_until_the_proxy_serves_it() {
    let script = "import socket\n\
         s = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n\
         s.sendall(b'CONNECT upstream.invalid:443 HTTP/1.1\\r\\n\\r\\n')\n\
         try:\n    print('read', s.recv(100))\n\
         except ConnectionResetError:\n    print('reset')\n";
    let outcome = sandbox().python(script).success();
    assert!(
        ["read b''", "reset"].contains(&outcome.stdout.trim()),
        "{outcome:#?}"
    );
}

#[test]
fn netlink_route_stays_available_for_getifaddrs() {
    assert_eq!(probe("netlink_route"), "netlink_route: ok");
}

/// A world-connectable UNIX socket on the host, removed on drop.
struct HostSocket {
    path: std::path::PathBuf,
    _listener: std::os::unix::net::UnixListener,
}

impl HostSocket {
    fn new(dir: &str) -> HostSocket {
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::PathBuf::from(format!(
            "{dir}/openshell-escape-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        HostSocket {
            path,
            _listener: listener,
        }
    }
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn world_connectable_host_unix_sockets_in_run_and_dev_shm_are_out_of_reach() {
    // Landlock before ABI 9 does not govern connect() to pathname sockets;
    // the sandbox's private /run and /dev/shm do.
    for dir in ["/run", "/dev/shm"] {
        let socket = HostSocket::new(dir);
        let script = format!(
            "import socket, errno\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({:?})\n    print('connected')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n",
            socket.path.to_str().unwrap()
        );
        let outcome = sandbox().python(&script).success();
        assert_eq!(outcome.stdout.trim(), "ENOENT", "{dir}: {outcome:#?}");
    }
}
