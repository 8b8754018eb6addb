//! Bad input gets a clear answer and never stops the proxy serving others.

use crate::support::sandbox;
use crate::{PORT, allow, upstream};

/// Python that sends `payload` to the proxy and prints the status line.
fn status_of(payload: &str) -> String {
    format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=10)\ns.sendall({payload})\nprint(s.recv(4096).split(b'\\r\\n')[0].decode())\n"
    )
}

#[test]
fn oversized_headers_get_431_and_garbage_gets_400() {
    let outcome = sandbox()
        .python(&status_of(
            "b'CONNECT h.test:443 HTTP/1.1\\r\\nX-Big: ' + b'a' * 9000 + b'\\r\\n\\r\\n'",
        ))
        .success();
    assert_eq!(
        outcome.stdout.trim(),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let outcome = sandbox()
        .python(&status_of(
            "b'\\x16\\x03\\x01\\x02\\x00garbage\\r\\n\\r\\n'",
        ))
        .success();
    assert_eq!(outcome.stdout.trim(), "HTTP/1.1 400 Bad Request");
    let outcome = sandbox()
        .python(&status_of(
            "b'GET https://h.test/ HTTP/1.1\\r\\nHost: h.test\\r\\n\\r\\n'",
        ))
        .success();
    assert_eq!(outcome.stdout.trim(), "HTTP/1.1 400 Bad Request");
}

#[test]
fn smuggling_shaped_framing_gets_400() {
    let outcome = sandbox()
        .python(&status_of(
            "b'POST http://h.test/ HTTP/1.1\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n'",
        ))
        .success();
    assert_eq!(outcome.stdout.trim(), "HTTP/1.1 400 Bad Request");
}

#[test]
fn silent_and_half_open_clients_do_not_stop_others() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/still-serving", network.peer);
    let script = format!(
        "import socket, subprocess\n\
         silent = [socket.create_connection(('127.0.0.1', 3128)) for _ in range(50)]\n\
         half = socket.create_connection(('127.0.0.1', 3128))\n\
         half.sendall(b'CONNECT h.test:4')\n\
         half.shutdown(socket.SHUT_WR)\n\
         print(half.recv(100))\n\
         out = subprocess.run(['curl', '-sS', '-m', '10', '--noproxy', '', '{url}'], capture_output=True, text=True)\n\
         print(out.stdout.strip())\n"
    );
    let policy = allow(&network, &["/usr/bin/curl"], "");
    let outcome = sandbox().policy(&policy).python(&script).success();
    assert_eq!(outcome.stdout, "b''\nGET /still-serving 0\n");
}

/// A server that keeps connections alive (it never says close).
const KEEP_ALIVE_SERVER: &str = r#"
import http.server, os, socketserver
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        text = f'{self.path} host={self.headers.get("Host")}\n'.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(text)))
        self.end_headers()
        self.wfile.write(text)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
Server((os.environ['ADDR'], int(os.environ['PORT'])), Echo).serve_forever()
"#;

/// Forward requests: the response says `Connection: close` (the proxy
/// closes after one request, and a client reusing the connection failed);
/// a `Host` naming another server than the URL is refused; a backslash in
/// the path is refused rather than forwarded raw.
#[test]
fn forward_requests_keep_their_host_and_say_when_the_connection_closes() {
    let mut network = crate::netns::TestNetwork::new();
    network.serve(PORT, KEEP_ALIVE_SERVER);
    let peer = network.peer;
    let script = format!(
        "import http.client\n\
         c = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n\
         for path in ('/a', '/b'):\n    c.request('GET', 'http://{peer}:{PORT}' + path)\n    r = c.getresponse()\n    print(r.status, r.getheader('Connection'), r.read().decode().strip())\n\
         c = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n\
         c.request('GET', 'http://{peer}:{PORT}/c', headers={{'Host': 'evil.test'}})\n\
         r = c.getresponse(); print(r.status, r.read().decode())\n\
         c = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n\
         c.request('GET', 'http://{peer}:{PORT}/x\\\\..\\\\admin')\n\
         print(c.getresponse().status)\n"
    );
    let outcome = sandbox()
        .policy(&allow(&network, &["/usr/bin/python3*"], ""))
        .python(&script)
        .success();
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("200 close /a host={peer}:{PORT}"),
        "{outcome:#?}"
    );
    assert_eq!(
        lines[1],
        format!("200 close /b host={peer}:{PORT}"),
        "{outcome:#?}"
    );
    assert!(
        lines[2].starts_with("403 ") && lines[2].contains("request_authority_mismatch"),
        "{outcome:#?}"
    );
    assert_eq!(lines[3], "400", "{outcome:#?}");
}
