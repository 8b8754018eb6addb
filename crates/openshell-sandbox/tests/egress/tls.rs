//! HTTPS: an upstream with its own CA (trusted by the supervisor through
//! `SSL_CERT_FILE`, as an operator would add a corporate root), reached
//! through L7 termination by curl, python and git, and through `tls: skip`
//! as an untouched tunnel.

use std::path::{Path, PathBuf};

use crate::netns::TestNetwork;
use crate::support::{Sandbox, sandbox};
use openshell_test_support::tls::Certs;

const TLS_PORT: u16 = 8443;

/// An HTTPS server: the echo handler, or static files from `ROOT`.
const TLS_SERVER: &str = r#"
import http.server, os, socketserver, ssl, functools
class Echo(http.server.SimpleHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def echo(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        text = f'{self.command} {self.path} {len(body)}\n'.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(text)))
        self.end_headers()
        self.wfile.write(text)
    def do_GET(self):
        if self.path.startswith('/files/'):
            self.path = self.path[len('/files'):]
            return super().do_GET()
        self.echo()
    do_POST = do_PUT = do_DELETE = echo
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
handler = functools.partial(Echo, directory=os.environ['ROOT'])
server = Server((os.environ['ADDR'], int(os.environ['PORT'])), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(os.environ['CERT'], os.environ['KEY'])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// A test network with an HTTPS server whose certificate comes from a CA
/// of the test's own; files for the sandbox live in `files`.
struct Https {
    network: TestNetwork,
    certs: Certs,
}

impl Https {
    fn new() -> Https {
        let mut network = TestNetwork::new();
        let certs = Certs::new(network.peer, "openshell-tls-");
        let root = certs.dir.path().join("files");
        std::fs::create_dir_all(&root).unwrap();
        let [cert, key] = certs.server_env();
        network.serve_with(
            TLS_PORT,
            TLS_SERVER,
            &[
                (cert.0, cert.1.as_os_str()),
                (key.0, key.1.as_os_str()),
                ("ROOT", root.as_os_str()),
            ],
        );
        Https { network, certs }
    }

    fn host(&self) -> String {
        self.network.peer.to_string()
    }

    fn ca(&self) -> PathBuf {
        self.certs.ca()
    }

    fn files(&self) -> PathBuf {
        self.certs.dir.path().join("files")
    }

    /// A sandbox whose supervisor trusts the test CA upstream.
    fn sandbox(&self, policy: &str) -> Sandbox {
        sandbox()
            .policy(policy)
            .supervisor_env("SSL_CERT_FILE", self.ca().to_str().unwrap())
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}:{TLS_PORT}{path}", self.host())
    }
}

const L7_READ_ONLY: &str =
    "        protocol: rest\n        enforcement: enforce\n        access: read-only\n";

/// Python that fetches `url` through the proxy tunnel and prints the
/// issuer CN of the certificate it was shown, then the response body.
fn issuer_and_body(host: &str, path: &str) -> String {
    format!(
        "import http.client, ssl\n\
         ctx = ssl.create_default_context()\n\
         c = http.client.HTTPSConnection('127.0.0.1', 3128, context=ctx)\n\
         c.set_tunnel('{host}', {TLS_PORT})\n\
         c.request('GET', '{path}')\n\
         r = c.getresponse()\n\
         issuer = dict(x[0] for x in c.sock.getpeercert()['issuer'])['commonName']\n\
         print(issuer.split(' (')[0])\n\
         print(r.read().decode().strip())\n"
    )
}

#[test]
fn terminated_https_applies_l7_rules_and_clients_trust_the_sandbox_ca() {
    let https = Https::new();
    let policy = crate::policy(
        &https.host(),
        &[TLS_PORT],
        &["/usr/bin/curl", "/usr/bin/python3*"],
        L7_READ_ONLY,
    );
    let url = https.url("/repos/o/r");
    let script = format!(
        "curl -sS -m 10 {url}; curl -sS -m 10 -X POST -d x=1 -w ' %{{http_code}}' {url}; echo; /usr/bin/python3 -c \"{}\"",
        issuer_and_body(&https.host(), "/py").replace('"', "\\\"")
    );
    let outcome = https.sandbox(&policy).sh(&script).success();
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines[0], "GET /repos/o/r 0", "{outcome:#?}");
    assert!(
        lines[1].starts_with(
            r#"{"error":"policy_denied","policy":"upstream","rule":"POST /repos/o/r""#
        ),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(" 403"), "{}", lines[1]);
    assert_eq!(
        lines[2], "OpenShell sandbox CA",
        "python saw another certificate"
    );
    assert_eq!(lines[3], "GET /py 0");
}

#[test]
fn tls_skip_passes_the_upstream_certificate_through_untouched() {
    let https = Https::new();
    let policy = crate::policy(
        &https.host(),
        &[TLS_PORT],
        &["/usr/bin/python3*"],
        "        tls: skip\n",
    );
    let outcome = https
        .sandbox(&policy)
        .python(&issuer_and_body(&https.host(), "/skip"))
        .success();
    assert_eq!(outcome.stdout, "openshell test upstream CA\nGET /skip 0\n");
}

#[test]
fn git_ls_remote_over_https_works_through_l7_inspection() {
    let https = Https::new();
    let repo = https.files().join("repo.git");
    let git = |args: &[&str], dir: &Path| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    let work = tempfile::tempdir().unwrap();
    git(&["init", "-q", "-b", "main"], work.path());
    git(
        &["commit", "-q", "--allow-empty", "-m", "first"],
        work.path(),
    );
    git(
        &[
            "clone",
            "-q",
            "--bare",
            work.path().to_str().unwrap(),
            repo.to_str().unwrap(),
        ],
        work.path(),
    );
    git(&["update-server-info"], &repo);
    let head = String::from_utf8(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(work.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let policy = crate::policy(
        &https.host(),
        &[TLS_PORT],
        &["/usr/bin/git", "/usr/local/bin/git"],
        L7_READ_ONLY,
    );
    let outcome = https
        .sandbox(&policy)
        .run(&["git", "ls-remote", &https.url("/files/repo.git")])
        .success();
    assert!(
        outcome
            .stdout
            .contains(&format!("{}\trefs/heads/main", head.trim())),
        "{outcome:#?}"
    );
}

#[test]
fn an_l4_https_endpoint_is_terminated_and_re_encrypted_without_request_rules() {
    let https = Https::new();
    let policy = crate::policy(&https.host(), &[TLS_PORT], &["/usr/bin/python3*"], "");
    let outcome = https
        .sandbox(&policy)
        .python(&issuer_and_body(&https.host(), "/l4"))
        .success();
    assert_eq!(outcome.stdout, "OpenShell sandbox CA\nGET /l4 0\n");
}

/// In a terminated L4 tunnel, each HTTP/1 request must still name the
/// tunnel's endpoint: a `Host` for another virtual host on the same
/// address is refused, as in inspected tunnels.
#[test]
fn a_terminated_l4_tunnel_refuses_a_request_for_another_host() {
    let https = Https::new();
    let policy = crate::policy(&https.host(), &[TLS_PORT], &["/usr/bin/curl"], "");
    let url = format!("https://{}:{TLS_PORT}/l4", https.host());
    let outcome = https
        .sandbox(&policy)
        .sh(&format!(
            "curl -sS -m 10 --noproxy '' {url}; \
             curl -sS -m 10 --noproxy '' -H 'Host: other.test' {url}"
        ))
        .success();
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines[0], "GET /l4 0", "{outcome:#?}");
    assert!(
        lines[1].contains("request_authority_mismatch"),
        "{outcome:#?}"
    );
}
