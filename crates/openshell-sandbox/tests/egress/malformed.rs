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
