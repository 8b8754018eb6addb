//! Providers end to end (docs/providers.md): real clients inside a sandbox
//! (curl, Python's urllib and requests, git, and the official `anthropic`
//! and `openai` SDKs when installed) call an HTTPS upstream in a test
//! network namespace that records what arrived. The secret arrives where
//! it is bound; the sandbox, the events, the gateway's log, the CLI's
//! output and the database never hold it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::gateway::{Home, free_port, text};
use crate::netns::TestNetwork;
use openshell_test_support::home::{ok, openshell_bin};
use openshell_test_support::tls::Certs;

const TLS_PORT: u16 = 8443;
const PLAIN_PORT: u16 = 8080;
/// A `tls: skip` endpoint (nothing listens: the refusal comes first).
const SKIP_PORT: u16 = 8444;
/// Where CI installs the official SDKs (`pip install --target`).
const SDK_DIR: &str = "/usr/local/lib/openshell-test-sdk";

/// Records every request (method, path, headers, body) as a JSON line in
/// LOG; answers like the services the SDKs expect, serves `/gh/files/`
/// from ROOT (after a Basic challenge, as a git host does) and says `ok`
/// otherwise.
const RECORDER: &str = r#"
import base64, functools, http.server, json, os, socketserver, ssl
LOG = os.environ['LOG']
class Recorder(http.server.SimpleHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def handle_any(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        with open(LOG, 'a') as log:
            log.write(json.dumps({'method': self.command, 'path': self.path,
                'headers': [[k, v] for k, v in self.headers.items()],
                'body': body.decode('latin-1')}) + '\n')
        if self.path.startswith('/gh/'):
            if 'Authorization' not in self.headers:
                self.send_response(401)
                self.send_header('WWW-Authenticate', 'Basic realm="git"')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.path = self.path[len('/gh/files'):]
            return super().do_GET()
        if self.path.endswith('/v1/messages'):
            text = json.dumps({'id': 'msg_1', 'type': 'message', 'role': 'assistant',
                'model': 'claude-test', 'content': [{'type': 'text', 'text': 'hi from upstream'}],
                'stop_reason': 'end_turn', 'stop_sequence': None,
                'usage': {'input_tokens': 1, 'output_tokens': 3}})
        elif self.path.endswith('/chat/completions'):
            text = json.dumps({'id': 'c1', 'object': 'chat.completion', 'created': 0,
                'model': 'gpt-test', 'choices': [{'index': 0, 'finish_reason': 'stop',
                'message': {'role': 'assistant', 'content': 'hi from upstream'}}],
                'usage': {'prompt_tokens': 1, 'completion_tokens': 3, 'total_tokens': 4}})
        else:
            text = 'ok\n'
        data = text.encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json' if text.startswith('{') else 'text/plain')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_PUT = do_DELETE = handle_any
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
server = Server((os.environ['ADDR'], int(os.environ['PORT'])), functools.partial(Recorder, directory=os.environ['ROOT']))
if os.environ.get('CERT'):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ['CERT'], os.environ['KEY'])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// The test network with a recording HTTPS upstream (and a plain HTTP
/// one on another port that no credential is bound to).
struct Upstream {
    network: TestNetwork,
    certs: Certs,
}

impl Upstream {
    fn new() -> Upstream {
        let mut network = TestNetwork::new();
        let certs = Certs::new(network.peer, "openshell-providers-");
        let root = certs.dir.path().join("files");
        std::fs::create_dir_all(&root).unwrap();
        let [cert, key] = certs.server_env();
        for (port, log, tls) in [
            (TLS_PORT, "tls.jsonl", true),
            (PLAIN_PORT, "plain.jsonl", false),
        ] {
            let log = certs.dir.path().join(log);
            let mut env = vec![("LOG", log.as_os_str()), ("ROOT", root.as_os_str())];
            if tls {
                env.extend([(cert.0, cert.1.as_os_str()), (key.0, key.1.as_os_str())]);
            }
            network.serve_with(port, RECORDER, &env);
        }
        Upstream { network, certs }
    }

    fn peer(&self) -> String {
        self.network.peer.to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}:{TLS_PORT}{path}", self.peer())
    }

    /// Every request the HTTPS (or plain) upstream received.
    fn received(&self, tls: bool) -> Vec<Value> {
        let name = if tls { "tls.jsonl" } else { "plain.jsonl" };
        std::fs::read_to_string(self.certs.dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn ca(&self) -> PathBuf {
        self.certs.ca()
    }
}

/// The header `name` of a recorded request.
fn header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

fn policy(upstream: &Upstream) -> String {
    let peer = upstream.peer();
    format!(
        r#"version: 1
network_policies:
  upstream:
    endpoints:
      - host: "{peer}"
        port: {TLS_PORT}
        protocol: rest
        access: full
        request_body_credential_rewrite: true
        credential_binding:
          provider: tok
      - host: "{peer}"
        port: {PLAIN_PORT}
      - host: "{peer}"
        port: {SKIP_PORT}
        tls: skip
    binaries:
      - path: /usr/bin/curl
      - path: /usr/bin/python3*
      - path: /usr/bin/git
"#
    )
}

/// `sandbox exec -n NAME [-e ENV]… -- sh -c SCRIPT`.
fn sh(home: &Home, name: &str, env: &[String], script: &str) -> std::process::Output {
    let mut args = vec!["sandbox", "exec", "-n", name];
    for e in env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend(["--", "sh", "-c", script]);
    home.openshell(&args)
}

/// Every file under `dir`, whole.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(all_bytes(&path));
        } else if path.is_file() {
            found.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
    found
}

fn assert_nowhere(what: &str, haystacks: &[(PathBuf, Vec<u8>)], secret: &str) {
    for (path, bytes) in haystacks {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{what}: {} holds a secret",
            path.display()
        );
    }
}

/// A git repository served as static files (git's dumb HTTP protocol).
fn make_repo(dir: &Path) {
    let run = |args: &[&str], cwd: &Path| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    let work = tempfile::tempdir().unwrap();
    run(&["init", "-q", "-b", "main"], work.path());
    std::fs::write(work.path().join("README"), "from the upstream\n").unwrap();
    run(&["add", "README"], work.path());
    run(&["commit", "-q", "-m", "one"], work.path());
    let repo = dir.join("repo.git");
    run(
        &[
            "clone",
            "-q",
            "--bare",
            work.path().to_str().unwrap(),
            repo.to_str().unwrap(),
        ],
        work.path(),
    );
    run(&["update-server-info"], &repo);
}

#[test]
fn providers_deliver_secrets_only_where_bound_and_never_into_the_sandbox() {
    let upstream = Upstream::new();
    make_repo(&upstream.certs.dir.path().join("files"));
    let home = Home::new();
    // The gateway (and the supervisors it starts) trust the upstream's CA.
    let port = free_port().to_string();
    let mut start = home.command(openshell_bin());
    start
        .args(["gateway", "start", "--port", &port])
        .env("SSL_CERT_FILE", upstream.ca());
    ok(&openshell_test_support::home::run_with_stdin(start, b""));

    let token = "tok-SECRET-0001-abcdef";
    let gh_secret = "ghs_SECRETgithubTOKEN000000000000000001";
    let anthropic_secret = "sk-ant-SECRET-anthropic-value-0001";
    let openai_secret = "sk-SECRET-openai-value-0001";
    let peer = upstream.peer();
    ok(&home.openshell(&[
        "provider",
        "create",
        "--name",
        "tok",
        "--type",
        "generic",
        "--credential",
        &format!("API_TOKEN={token}"),
    ]));
    let mut gh = home.command(openshell_bin());
    gh.args([
        "provider",
        "create",
        "--name",
        "gh",
        "--type",
        "github",
        "--from-existing",
        "--config",
        &format!("endpoints=https://{peer}:{TLS_PORT}/gh/"),
    ])
    .env("GH_TOKEN", gh_secret)
    .env_remove("GITHUB_TOKEN");
    let created = openshell_test_support::home::run_with_stdin(gh, b"");
    assert_eq!(ok(&created), "✓ Created provider gh\n");
    let nvidia_secret = "nvapi-SECRET-nvidia-0001";
    for (name, kind, key, secret, at) in [
        (
            "anth",
            "anthropic",
            "ANTHROPIC_API_KEY",
            anthropic_secret,
            format!("{TLS_PORT}/anth/"),
        ),
        (
            "oai",
            "openai",
            "OPENAI_API_KEY",
            openai_secret,
            format!("{TLS_PORT}/oai/"),
        ),
        (
            "nv",
            "nvidia",
            "NVIDIA_API_KEY",
            nvidia_secret,
            format!("{SKIP_PORT}/"),
        ),
    ] {
        ok(&home.openshell(&[
            "provider",
            "create",
            "--name",
            name,
            "--type",
            kind,
            "--credential",
            &format!("{key}={secret}"),
            "--config",
            &format!("endpoints=https://{peer}:{at}"),
        ]));
    }
    // Values are never shown.
    let listed = ok(&home.openshell(&["provider", "list", "-o", "json"]));
    let got = ok(&home.openshell(&["provider", "get", "gh", "-o", "json"]));
    let table = ok(&home.openshell(&["provider", "get", "tok"]));
    assert!(table.contains("Credential keys:  API_TOKEN"), "{table}");
    for shown in [&listed, &got, &table] {
        for secret in [
            token,
            gh_secret,
            anthropic_secret,
            openai_secret,
            nvidia_secret,
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["type"], "github");
    assert_eq!(got["credential_keys"], serde_json::json!(["GITHUB_TOKEN"]));

    let policy_file = home.dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy(&upstream)).unwrap();
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "agent",
        "--policy",
        policy_file.to_str().unwrap(),
        "--provider",
        "tok",
        "--provider",
        "gh",
        "--provider",
        "anth",
        "--provider",
        "oai",
        "--provider",
        "nv",
        "--detach",
    ]);
    ok(&out);
    let shown = ok(&home.openshell(&["sandbox", "get", "agent"]));
    assert!(
        shown.contains("  Providers: anth, gh, nv, oai, tok\n"),
        "{shown}"
    );
    let shown: Value = serde_json::from_str(&ok(
        &home.openshell(&["sandbox", "get", "agent", "-o", "json"])
    ))
    .unwrap();
    assert_eq!(
        shown["providers"],
        serde_json::json!(["anth", "gh", "nv", "oai", "tok"])
    );

    // The sandbox's environment holds placeholders, never values; shaped
    // ones keep their type's shape.
    let env = ok(&sh(
        &home,
        "agent",
        &[],
        "env; echo ===; tr '\\0' '\\n' < /proc/self/environ",
    ));
    for secret in [
        token,
        gh_secret,
        anthropic_secret,
        openai_secret,
        nvidia_secret,
    ] {
        assert!(!env.contains(secret), "the sandbox sees a secret:\n{env}");
    }
    assert!(
        env.contains("API_TOKEN=openshell:resolve:env:v1_API_TOKEN"),
        "{env}"
    );
    let value_of = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} is not in the sandbox's environment:\n{env}"))
            .to_owned()
    };
    let gh_placeholder = value_of("GITHUB_TOKEN");
    assert!(gh_placeholder.starts_with("ghp_") && gh_placeholder.len() == 40);
    let anthropic_placeholder = value_of("ANTHROPIC_API_KEY");
    assert!(
        anthropic_placeholder.starts_with("sk-ant-api03-") && anthropic_placeholder.len() == 108
    );
    assert!(value_of("OPENAI_API_KEY").starts_with("sk-proj-"));

    // curl: header, query and path, over TLS the proxy terminates.
    let url = upstream.url("/v1");
    let out = ok(&sh(
        &home,
        "agent",
        &[],
        &format!(
            "curl -sS -m 20 -H \"Authorization: Bearer $API_TOKEN\" \"{url}/bearer\" && \
             curl -sS -m 20 \"{url}/query?key=$API_TOKEN&x=1\" && \
             curl -sS -m 20 \"{url}/path/$API_TOKEN/end\""
        ),
    ));
    assert_eq!(out, "ok\nok\nok\n");
    let received = upstream.received(true);
    let find = |path: &str| {
        received
            .iter()
            .find(|r| r["path"].as_str().is_some_and(|p| p.starts_with(path)))
            .unwrap_or_else(|| panic!("no request for {path}: {received:#?}"))
            .clone()
    };
    assert_eq!(
        header(&find("/v1/bearer"), "authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        find("/v1/query")["path"],
        format!("/v1/query?key={token}&x=1")
    );
    assert_eq!(find("/v1/path/")["path"], format!("/v1/path/{token}/end"));

    // Python: urllib with the placeholder in a JSON body (the endpoint
    // rewrites bodies), requests with it in a header.
    let script = format!(
        "import json, os, urllib.request, requests\n\
         body = json.dumps({{'token': os.environ['API_TOKEN']}}).encode()\n\
         req = urllib.request.Request('{url}/json', data=body, headers={{'Content-Type': 'application/json'}})\n\
         print(urllib.request.urlopen(req, timeout=20).read().decode(), end='')\n\
         r = requests.get('{url}/requests', headers={{'X-Api-Key': os.environ['API_TOKEN']}}, timeout=20)\n\
         print(r.text, end='')\n"
    );
    let out = ok(&home.openshell(&[
        "sandbox",
        "exec",
        "-n",
        "agent",
        "--",
        "/usr/bin/python3",
        "-c",
        &script,
    ]));
    assert_eq!(out, "ok\nok\n");
    let received = upstream.received(true);
    let json = received.iter().find(|r| r["path"] == "/v1/json").unwrap();
    let sent: Value = serde_json::from_str(json["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["token"], token);
    assert_eq!(
        header(json, "content-length"),
        Some(json["body"].as_str().unwrap().len().to_string().as_str())
    );
    let by_requests = received
        .iter()
        .find(|r| r["path"] == "/v1/requests")
        .unwrap();
    assert_eq!(header(by_requests, "x-api-key"), Some(token));

    // git over HTTPS: Basic auth with the shaped placeholder as password.
    let out = sh(
        &home,
        "agent",
        &[],
        &format!(
            "cd /tmp && git clone -q \"https://x-access-token:$GITHUB_TOKEN@{peer}:{TLS_PORT}/gh/files/repo.git\" cloned && cat cloned/README"
        ),
    );
    assert_eq!(ok(&out), "from the upstream\n");
    let basic = upstream
        .received(true)
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/gh/"))
        .find_map(|r| header(r, "authorization").map(str::to_owned))
        .expect("git sent credentials");
    use base64_decode::decode;
    assert_eq!(
        decode(basic.strip_prefix("Basic ").unwrap()),
        format!("x-access-token:{gh_secret}")
    );

    // A placeholder sent where it is not bound: refused, nothing arrives.
    let before = upstream.received(false).len();
    let out = ok(&sh(
        &home,
        "agent",
        &[],
        &format!(
            "curl -sS -m 20 -w ' %{{http_code}}' -H \"X-Key: $API_TOKEN\" http://{peer}:{PLAIN_PORT}/unbound"
        ),
    ));
    assert!(
        out.contains("\"error\":\"credential_endpoint_mismatch\"") && out.ends_with(" 403"),
        "{out}"
    );
    let out = ok(&sh(
        &home,
        "agent",
        &[],
        &format!(
            "curl -sS -m 20 -w ' %{{http_code}}' -H \"X-Key: $GITHUB_TOKEN\" \"{url}/not-gh\""
        ),
    ));
    assert!(
        out.contains("\"error\":\"credential_endpoint_mismatch\"") && out.ends_with(" 403"),
        "{out}"
    );
    assert_eq!(
        upstream.received(false).len(),
        before,
        "the unbound upstream got a request"
    );
    assert!(
        !upstream
            .received(true)
            .iter()
            .any(|r| r["path"] == "/v1/not-gh"),
        "a refused request reached the upstream"
    );
    // A raw (`tls: skip`) tunnel to where a credential is bound would
    // carry its placeholder unsubstituted: refused before it opens.
    let out = sh(
        &home,
        "agent",
        &[],
        &format!("curl -s -m 20 -o /dev/null -w '%{{http_connect}}' https://{peer}:{SKIP_PORT}/"),
    );
    assert_eq!(text(&out.stdout), "403", "{}", text(&out.stderr));
    // An unknown placeholder fails closed; so does one in a body that is
    // not rewritten (octet-stream).
    let out = ok(&sh(
        &home,
        "agent",
        &[],
        &format!(
            "curl -sS -m 20 -w ' %{{http_code}}' -H 'X-Key: openshell:resolve:env:v9_NOPE' \"{url}/unknown\"; echo; \
             curl -sS -m 20 -w ' %{{http_code}}' -H 'Content-Type: application/octet-stream' --data-binary \"x=$API_TOKEN\" \"{url}/octet\""
        ),
    ));
    assert!(
        out.contains("credential_unavailable") && out.contains(" 500"),
        "{out}"
    );
    assert!(
        out.contains("credential_in_body") && out.ends_with(" 403"),
        "{out}"
    );

    // The official SDKs accept the shaped placeholders and their requests
    // arrive with the real keys.
    if Path::new(SDK_DIR).join("anthropic").is_dir() && Path::new(SDK_DIR).join("openai").is_dir() {
        let script = format!(
            "import anthropic, openai\n\
             a = anthropic.Anthropic(base_url='https://{peer}:{TLS_PORT}/anth')\n\
             m = a.messages.create(model='claude-test', max_tokens=8, messages=[{{'role': 'user', 'content': 'hi'}}])\n\
             print(m.content[0].text)\n\
             o = openai.OpenAI(base_url='https://{peer}:{TLS_PORT}/oai/v1')\n\
             c = o.chat.completions.create(model='gpt-test', messages=[{{'role': 'user', 'content': 'hi'}}])\n\
             print(c.choices[0].message.content)\n"
        );
        let out = home.openshell(&[
            "sandbox",
            "exec",
            "-n",
            "agent",
            "-e",
            &format!("PYTHONPATH={SDK_DIR}"),
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ]);
        assert_eq!(ok(&out), "hi from upstream\nhi from upstream\n");
        let received = upstream.received(true);
        let messages = received
            .iter()
            .find(|r| r["path"] == "/anth/v1/messages")
            .unwrap();
        // Older SDKs send `x-api-key`, newer ones a bearer token.
        let sent = header(messages, "x-api-key")
            .map(str::to_owned)
            .or_else(|| header(messages, "authorization").map(str::to_owned));
        assert!(
            sent.is_some_and(|s| s == anthropic_secret || s == format!("Bearer {anthropic_secret}")),
            "{messages:#}"
        );
        let chat = received
            .iter()
            .find(|r| r["path"] == "/oai/v1/chat/completions")
            .unwrap();
        assert_eq!(
            header(chat, "authorization"),
            Some(format!("Bearer {openai_secret}").as_str())
        );
    } else {
        eprintln!("note: the official SDKs are not installed in {SDK_DIR}; .ci/run installs them");
    }

    // Rotation reaches the running sandbox: the same placeholder now
    // carries the new value.
    let rotated = "tok-SECRET-0002-rotated";
    let out = home.openshell(&[
        "provider",
        "update",
        "tok",
        "--credential",
        &format!("API_TOKEN={rotated}"),
    ]);
    assert_eq!(ok(&out), "✓ Updated provider tok\n");
    let carries = |value: &str, path: &str| {
        (0..50).any(|_| {
            let out = sh(
                &home,
                "agent",
                &[],
                &format!("curl -sS -m 20 -H \"Authorization: Bearer $API_TOKEN\" \"{url}{path}\""),
            );
            ok(&out);
            let last = upstream
                .received(true)
                .into_iter()
                .rev()
                .find(|r| r["path"] == format!("/v1{path}"));
            let seen = last
                .as_ref()
                .and_then(|r| header(r, "authorization").map(str::to_owned));
            if seen.as_deref() == Some(format!("Bearer {value}").as_str()) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        })
    };
    assert!(
        carries(rotated, "/rotated"),
        "the rotated value never arrived"
    );

    // A gateway restart keeps providers; the reconnected supervisor gets
    // its credentials again.
    ok(&home.openshell(&["gateway", "stop"]));
    let mut again = home.command(openshell_bin());
    again
        .args(["gateway", "start", "--port", &port])
        .env("SSL_CERT_FILE", upstream.ca());
    ok(&openshell_test_support::home::run_with_stdin(again, b""));
    let table = ok(&home.openshell(&["provider", "list"]));
    assert!(
        table.contains("tok") && table.contains("generic"),
        "{table}"
    );
    assert!(
        carries(rotated, "/after-restart"),
        "credentials lost across a restart"
    );

    // A provider attached to the running sandbox: new commands see its
    // placeholder and it resolves; once detached it is gone and its old
    // placeholder fails closed.
    let late_secret = "glpat-SECRET-late-000001";
    ok(&home.openshell(&[
        "provider",
        "create",
        "--name",
        "late",
        "--type",
        "gitlab",
        "--credential",
        &format!("GITLAB_TOKEN={late_secret}"),
        "--config",
        &format!("endpoints=https://{peer}:{TLS_PORT}/late/"),
    ]));
    ok(&home.openshell(&["sandbox", "provider", "attach", "agent", "late"]));
    let out = ok(&sh(
        &home,
        "agent",
        &[],
        &format!(
            "echo $GITLAB_TOKEN; curl -sS -m 20 -H \"PRIVATE-TOKEN: $GITLAB_TOKEN\" \"{}\"",
            upstream.url("/late/x")
        ),
    ));
    let late_placeholder = out.lines().next().unwrap().to_owned();
    assert!(
        late_placeholder.starts_with("glpat-") && late_placeholder.len() == 26,
        "{out}"
    );
    assert!(out.ends_with("ok\n"), "{out}");
    let late = upstream
        .received(true)
        .into_iter()
        .find(|r| r["path"] == "/late/x")
        .unwrap();
    assert_eq!(header(&late, "private-token"), Some(late_secret));
    ok(&home.openshell(&["sandbox", "provider", "detach", "agent", "late"]));
    let out = ok(&sh(
        &home,
        "agent",
        &[],
        &format!(
            "echo \"[$GITLAB_TOKEN]\"; curl -sS -m 20 -w ' %{{http_code}}' -H 'PRIVATE-TOKEN: {late_placeholder}' \"{}\"",
            upstream.url("/late/y")
        ),
    ));
    assert!(
        out.starts_with("[]\n"),
        "a detached provider's variable stayed: {out}"
    );
    assert!(
        out.contains("credential_unavailable") && out.ends_with(" 500"),
        "{out}"
    );
    ok(&home.openshell(&["provider", "delete", "late"]));

    // Deleting an attached provider is refused (detached, it went above).
    let out = home.openshell(&["provider", "delete", "tok"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("attached to sandbox(es) agent"),
        "{}",
        text(&out.stderr)
    );

    // Nothing on the host holds a secret: the events, the gateway's state
    // (its log and the SQLite files) and the CLI's own files.
    let logs = ok(&home.openshell(&["logs", "agent", "-n", "0", "-o", "json"]));
    assert!(logs.contains("credential_endpoint_mismatch"), "{logs}");
    assert!(logs.contains("uninspected_credentials"), "{logs}");
    let mut haystacks = vec![(PathBuf::from("openshell logs"), logs.into_bytes())];
    haystacks.extend(all_bytes(home.dir.path()));
    assert!(
        haystacks
            .iter()
            .any(|(p, _)| p.file_name().is_some_and(|n| n == "gateway.db")),
        "the database was not found under the home"
    );
    for secret in [
        token,
        rotated,
        gh_secret,
        anthropic_secret,
        openai_secret,
        late_secret,
    ] {
        assert_nowhere("host files", &haystacks, secret);
    }
}

/// A tiny Base64 decoder (the test crate has no Base64 dependency).
mod base64_decode {
    pub fn decode(text: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for b in text.bytes().filter(|b| *b != b'=') {
            let value = ALPHABET.iter().position(|a| *a == b).unwrap() as u32;
            bits = (bits << 6) | value;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}

#[test]
fn provider_commands_refuse_bad_input_clearly_and_auto_providers_need_consent() {
    let home = Home::new();
    crate::gateway::start(&home);
    let run = |args: &[&str]| home.openshell(args);
    let fails = |args: &[&str], message: &str| {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: expected {message:?} in {}",
            text(&out.stderr)
        );
    };
    fails(
        &[
            "provider",
            "create",
            "--name",
            "x",
            "--type",
            "nope",
            "--credential",
            "A=b",
        ],
        "unknown provider type 'nope'",
    );
    fails(
        &[
            "provider",
            "create",
            "--name",
            "x",
            "--type",
            "generic",
            "--from-existing",
        ],
        "has no known credentials to discover",
    );
    fails(
        &[
            "provider",
            "create",
            "--name",
            "x",
            "--type",
            "generic",
            "--credential",
            "UNSET_FOR_SURE_123",
        ],
        "UNSET_FOR_SURE_123 is not set in this environment",
    );
    fails(
        &[
            "provider",
            "create",
            "--name",
            "x",
            "--type",
            "generic",
            "--credential",
            "v1_KEY=x",
        ],
        "is reserved",
    );
    fails(
        &[
            "provider",
            "create",
            "--name",
            "Bad_Name",
            "--type",
            "generic",
            "--credential",
            "A=b",
        ],
        "invalid provider name",
    );
    fails(
        &[
            "provider",
            "create",
            "--name",
            "x",
            "--type",
            "generic",
            "--credential",
            "A=b",
            "--config",
            "endpoints=nothost",
        ],
        "invalid endpoint 'nothost'",
    );
    // A value that would split a request is refused without being echoed.
    let out = run(&[
        "provider",
        "create",
        "--name",
        "x",
        "--type",
        "generic",
        "--credential",
        "A=evil\r\nX: 1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("CR, LF or NUL") && !text(&out.stderr).contains("evil"));
    // Exactly one credential source.
    let out = run(&["provider", "create", "--name", "x", "--type", "generic"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    ok(&run(&[
        "provider",
        "create",
        "--name",
        "x",
        "--type",
        "generic",
        "--credential",
        "A=b",
    ]));
    fails(
        &[
            "provider",
            "create",
            "--name",
            "x",
            "--type",
            "generic",
            "--credential",
            "A=c",
        ],
        "provider 'x' already exists",
    );
    assert_eq!(ok(&run(&["provider", "list", "--names"])), "x\n");
    assert_eq!(
        ok(&run(&["provider", "list"])),
        "NAME  TYPE     CREDENTIAL_KEYS  CONFIG_KEYS\nx     generic  1                0\n"
    );
    fails(&["provider", "get", "nope"], "provider 'nope' not found");
    fails(&["provider", "update", "x"], "nothing to update");

    // The command needs a provider: without consent and without a
    // terminal, a clear refusal and nothing created.
    let out = run(&[
        "sandbox",
        "create",
        "--name",
        "c",
        "--",
        "claude",
        "--version",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("missing required provider 'claude-code' for command 'claude'")
            && stderr.contains("--auto-providers"),
        "{stderr}"
    );
    assert_eq!(ok(&run(&["sandbox", "list", "--names"])), "");
    // --auto-providers with no local key says which variables it looked at.
    let mut auto = home.command(openshell_bin());
    auto.args([
        "sandbox",
        "create",
        "--name",
        "c",
        "--auto-providers",
        "--",
        "claude",
    ])
    .env_remove("ANTHROPIC_API_KEY");
    let out = openshell_test_support::home::run_with_stdin(auto, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("none of ANTHROPIC_API_KEY is set"),
        "{}",
        text(&out.stderr)
    );
    // With a local key it creates `claude-code` and attaches it.
    let mut auto = home.command(openshell_bin());
    auto.args([
        "sandbox",
        "create",
        "--name",
        "c",
        "--auto-providers",
        "--detach",
        "--",
        "claude",
    ])
    .env("ANTHROPIC_API_KEY", "sk-ant-local-SECRET");
    let out = openshell_test_support::home::run_with_stdin(auto, b"");
    assert!(
        text(&out.stderr).contains("Created provider claude-code from local credentials"),
        "{}",
        text(&out.stderr)
    );
    let attached = ok(&run(&["sandbox", "provider", "list", "c"]));
    assert!(attached.contains("claude-code"), "{attached}");

    // Attach and detach are idempotent and say so.
    assert_eq!(
        ok(&run(&["sandbox", "provider", "attach", "c", "x"])),
        "✓ Attached provider x to sandbox c\n"
    );
    assert_eq!(
        ok(&run(&["sandbox", "provider", "attach", "c", "x"])),
        "Provider x is already attached to sandbox c.\n"
    );
    assert_eq!(
        ok(&run(&["sandbox", "provider", "detach", "c", "x"])),
        "✓ Detached provider x from sandbox c\n"
    );
    assert_eq!(
        ok(&run(&["sandbox", "provider", "detach", "c", "x"])),
        "Provider x was not attached to sandbox c.\n"
    );
    assert_eq!(
        ok(&run(&["provider", "delete", "x"])),
        "✓ Deleted provider x\n"
    );
    let out = run(&["provider", "delete", "x"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("Provider x not found"));

    // A credential-looking --env is warned about, unless told not to.
    let out = run(&[
        "sandbox",
        "create",
        "--name",
        "w",
        "-e",
        "OPENAI_API_KEY=sk-x",
        "--",
        "true",
    ]);
    assert!(
        text(&out.stderr).contains("--env OPENAI_API_KEY looks like a credential"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "sandbox",
        "create",
        "--name",
        "w2",
        "--no-credential-warnings",
        "-e",
        "OPENAI_API_KEY=sk-x",
        "--",
        "true",
    ]);
    assert!(!text(&out.stderr).contains("looks like a credential"));
}
