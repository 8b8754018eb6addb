//! The child's network namespace: only loopback, where the supervisor's
//! proxy listener is the one thing that answers. Every target here is the
//! host's loopback or a network namespace this test creates.

use std::io::ErrorKind;
use std::net::TcpListener;

use crate::netns::TestNetwork;
use crate::support::{probe, sandbox};

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

#[test]
fn an_address_the_host_can_reach_is_unreachable_from_the_sandbox() {
    let mut network = TestNetwork::new();
    network.serve(8080, crate::netns::ECHO_SERVER);
    let outcome = sandbox()
        .python(&connect_script(&network.peer.to_string(), 8080))
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
fn the_proxy_inside_the_sandbox_denies_everything_under_the_default_policy() {
    let script = "import socket\n\
         s = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n\
         s.sendall(b'CONNECT upstream.invalid:443 HTTP/1.1\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n    chunk = s.recv(4096)\n    if not chunk:\n        break\n    data += chunk\n\
         print(data.decode())\n";
    let outcome = sandbox().python(script).success();
    let body = r#"{"error":"policy_denied","detail":"CONNECT upstream.invalid:443 not permitted by policy","reason":"network connections not allowed by policy"}"#;
    assert_eq!(
        outcome.stdout.trim_end(),
        format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
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

/// Escape: a policy naming one of the host's own addresses (here the host's
/// end of a test veth) let the agent reach services on the host itself
/// through the proxy, which runs there. Such addresses are refused like
/// loopback unless `allowed_ips` names them exactly.
#[test]
fn the_hosts_own_addresses_are_refused_unless_allowed_ips_names_them() {
    use std::io::{Read, Write};
    let network = TestNetwork::new();
    let listener = TcpListener::bind((network.host, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(4) {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nhost",
            );
        }
    });
    let policy = |extra: &str| {
        format!(
            "version: 1\nnetwork_policies:\n  own:\n    endpoints:\n      - host: \"{h}\"\n        port: {port}\n{extra}    binaries:\n      - path: /usr/bin/curl\n",
            h = network.host
        )
    };
    let url = format!("http://{}:{port}/", network.host);
    let curl = ["curl", "-sS", "-m", "10", "--noproxy", "", &url];
    let outcome = sandbox().policy(&policy("")).run(&curl);
    assert!(
        outcome.stdout.contains("ssrf_denied") && outcome.stdout.contains("host address"),
        "{outcome:#?}"
    );
    let broad = "        allowed_ips: [\"10.213.0.0/16\"]\n";
    let outcome = sandbox().policy(&policy(broad)).run(&curl);
    assert!(
        outcome.stdout.contains("ssrf_denied"),
        "a range does not name it: {outcome:#?}"
    );
    let exact = format!("        allowed_ips: [\"{}\"]\n", network.host);
    let outcome = sandbox().policy(&policy(&exact)).run(&curl).success();
    assert_eq!(outcome.stdout, "host");
}

/// The sandbox's only link is loopback (agent ⇄ proxy): it does not pace
/// its traffic even where the host's default congestion control does
/// (BBR halved proxied downloads on such a host), and the host's own
/// default is left as it was. A namespace may only pick an algorithm the
/// host allows (`tcp_allowed_congestion_control`); where CUBIC is not
/// among them the sandbox keeps the host's default, as the launch says.
#[test]
fn the_sandbox_loopback_runs_cubic_and_the_host_keeps_its_own() {
    let read = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
    let host_before = read("tcp_congestion_control");
    let available = read("tcp_available_congestion_control");
    assert!(
        available.split_whitespace().any(|c| c == "cubic"),
        "this kernel offers no cubic: {available}"
    );
    let allowed = read("tcp_allowed_congestion_control");
    let expected = if allowed.split_whitespace().any(|c| c == "cubic") {
        "cubic"
    } else {
        eprintln!(
            "NOTE: this host allows namespaces only {allowed:?}: the sandbox keeps {host_before:?}"
        );
        host_before.trim()
    };
    let outcome = sandbox()
        .run(&["cat", "/proc/sys/net/ipv4/tcp_congestion_control"])
        .success();
    assert_eq!(outcome.stdout.trim(), expected);
    assert_eq!(read("tcp_congestion_control"), host_before);
}
