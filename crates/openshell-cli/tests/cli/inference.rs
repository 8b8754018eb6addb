//! `inference.local` end to end (docs/inference.md): a model upstream in a
//! test network namespace speaks the OpenAI and Anthropic shapes, SSE
//! streaming included, and records what arrives. A sandbox under the
//! restrictive default policy calls it through `https://inference.local`
//! with curl and the official SDKs; the upstream sees the provider's key
//! and the route's model, the sandbox never sees the key.

use std::path::PathBuf;

use serde_json::Value;

use crate::gateway::{Home, free_port, text};
use crate::netns::TestNetwork;
use openshell_test_support::home::{ok, openshell_bin, run_with_stdin};
use openshell_test_support::tls::Certs;

const PORT: u16 = 8443;
const SDK_DIR: &str = "/usr/local/lib/openshell-test-sdk";

/// The model upstream. A stream's first chunk goes out at once; the rest
/// only after `GET /v1/models?release=1` (the client asks for it once it
/// has the first chunk, which it can only have if nothing buffered the
/// stream), or after 15 s, marked `late`.
const UPSTREAM: &str = r#"
import http.server, json, os, socketserver, ssl, threading
LOG = os.environ['LOG']
release = threading.Event()
class Model(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def record(self, body):
        with open(LOG, 'a') as log:
            log.write(json.dumps({'method': self.command, 'path': self.path,
                'headers': [[k, v] for k, v in self.headers.items()],
                'body': body.decode('latin-1')}) + '\n')
    def send_json(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def stream(self, events):
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        def chunk(text):
            data = text.encode()
            self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.wfile.flush()
        chunk(events[0])
        late = not release.wait(15)
        release.clear()
        for event in events[1:]:
            chunk(event.replace('REST', 'late' if late else 'on time'))
        self.wfile.write(b'0\r\n\r\n')
        self.wfile.flush()
    def do_GET(self):
        self.record(b'')
        if 'release=1' in self.path:
            release.set()
        self.send_json({'object': 'list', 'data': [{'id': 'upstream-model', 'object': 'model', 'created': 0, 'owned_by': 'test'}]})
    def do_POST(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        self.record(body)
        request = json.loads(body or b'{}')
        model = request.get('model')
        if self.path.endswith('/chat/completions'):
            if request.get('stream'):
                def delta(text, finish=None):
                    return 'data: ' + json.dumps({'id': 'c1', 'object': 'chat.completion.chunk', 'created': 0, 'model': model,
                        'choices': [{'index': 0, 'delta': {'content': text}, 'finish_reason': finish}]}) + '\n\n'
                self.stream([delta('first '), delta('REST', 'stop'),
                    'data: ' + json.dumps({'id': 'c1', 'object': 'chat.completion.chunk', 'created': 0, 'model': model, 'choices': [],
                        'usage': {'prompt_tokens': 5, 'completion_tokens': 2, 'total_tokens': 7}}) + '\n\n', 'data: [DONE]\n\n'])
            else:
                self.send_json({'id': 'c1', 'object': 'chat.completion', 'created': 0, 'model': model,
                    'choices': [{'index': 0, 'finish_reason': 'stop', 'message': {'role': 'assistant', 'content': 'openai says hi'}}],
                    'usage': {'prompt_tokens': 5, 'completion_tokens': 3, 'total_tokens': 8}})
        elif self.path.endswith('/messages'):
            if request.get('stream'):
                def event(kind, value):
                    return 'event: ' + kind + '\ndata: ' + json.dumps(dict(type=kind, **value)) + '\n\n'
                self.stream([
                    event('message_start', {'message': {'id': 'm1', 'type': 'message', 'role': 'assistant', 'model': model,
                        'content': [], 'stop_reason': None, 'stop_sequence': None, 'usage': {'input_tokens': 9, 'output_tokens': 1}}}),
                    event('content_block_start', {'index': 0, 'content_block': {'type': 'text', 'text': ''}}),
                    event('content_block_delta', {'index': 0, 'delta': {'type': 'text_delta', 'text': 'REST'}}),
                    event('content_block_stop', {'index': 0}),
                    event('message_delta', {'delta': {'stop_reason': 'end_turn', 'stop_sequence': None}, 'usage': {'output_tokens': 4}}),
                    event('message_stop', {})])
            else:
                self.send_json({'id': 'm1', 'type': 'message', 'role': 'assistant', 'model': model,
                    'content': [{'type': 'text', 'text': 'anthropic says hi'}], 'stop_reason': 'end_turn', 'stop_sequence': None,
                    'usage': {'input_tokens': 9, 'output_tokens': 3}})
        else:
            self.send_json({'unexpected': self.path})
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
server = Server((os.environ['ADDR'], int(os.environ['PORT'])), Model)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(os.environ['CERT'], os.environ['KEY'])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

struct Upstream {
    network: TestNetwork,
    certs: Certs,
}

impl Upstream {
    fn new() -> Upstream {
        let mut network = TestNetwork::new();
        let certs = Certs::new(network.peer, "openshell-inference-");
        let log = certs.dir.path().join("log.jsonl");
        let [cert, key] = certs.server_env();
        network.serve_with(
            PORT,
            UPSTREAM,
            &[
                ("LOG", log.as_os_str()),
                (cert.0, cert.1.as_os_str()),
                (key.0, key.1.as_os_str()),
            ],
        );
        Upstream { network, certs }
    }

    fn base(&self) -> String {
        format!("https://{}:{PORT}/v1", self.network.peer)
    }

    fn ca(&self) -> PathBuf {
        self.certs.ca()
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.certs.dir.path().join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The last POST the upstream received for a path ending in `suffix`.
    fn last_post(&self, suffix: &str) -> Value {
        self.received()
            .into_iter()
            .rev()
            .find(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no POST …{suffix} arrived: {:#?}", self.received()))
    }
}

fn header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

fn sh(home: &Home, script: &str) -> std::process::Output {
    home.openshell(&["sandbox", "exec", "-n", "agent", "--", "sh", "-c", script])
}

fn python(home: &Home, script: &str) -> std::process::Output {
    home.openshell(&[
        "sandbox",
        "exec",
        "-n",
        "agent",
        "-e",
        &format!("PYTHONPATH={SDK_DIR}"),
        "--",
        "/usr/bin/python3",
        "-c",
        script,
    ])
}

const CHAT: &str = r#"{"model":"caller-model","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn inference_local_routes_model_calls_with_the_providers_key_and_never_shows_it() {
    let upstream = Upstream::new();
    let home = Home::new();
    let port = free_port().to_string();
    let mut start = home.command(openshell_bin());
    start
        .args(["gateway", "start", "--port", &port])
        .env("SSL_CERT_FILE", upstream.ca());
    ok(&run_with_stdin(start, b""));
    let openai_key = "sk-SECRET-openai-route-0001";
    let anthropic_key = "sk-ant-SECRET-route-0002";
    for (name, kind, key, value, base_key) in [
        (
            "oai",
            "openai",
            "OPENAI_API_KEY",
            openai_key,
            "OPENAI_BASE_URL",
        ),
        (
            "anth",
            "anthropic",
            "ANTHROPIC_API_KEY",
            anthropic_key,
            "ANTHROPIC_BASE_URL",
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
            &format!("{key}={value}"),
            "--config",
            &format!("{base_key}={}", upstream.base()),
        ]));
    }
    // The restrictive default policy: no network rule at all.
    ok(&home.openshell(&[
        "sandbox", "create", "--name", "agent", "--detach", "--", "sleep", "infinity",
    ]));
    let chat = format!(
        "curl -sS -m 30 -w ' %{{http_code}}' -H 'Content-Type: application/json' -H 'Authorization: Bearer sk-caller-own' -d '{CHAT}' https://inference.local/v1/chat/completions"
    );

    // No route yet: 503 naming our command.
    let out = ok(&sh(&home, &chat));
    assert!(
        out.contains("cluster inference is not configured")
            && out.contains("openshell inference set")
            && out.ends_with(" 503"),
        "{out}"
    );
    let shown = ok(&home.openshell(&["inference", "get"]));
    assert_eq!(
        shown,
        "Route default: Not configured\nRoute sandbox-system: Not configured\n"
    );

    // A route, verified by the probe.
    let out = ok(&home.openshell(&[
        "inference",
        "set",
        "--provider",
        "oai",
        "--model",
        "gpt-route",
    ]));
    assert!(out.starts_with("Inference configured:\n"), "{out}");
    assert!(
        out.contains(&format!(
            "  Validated Endpoints: {}/models",
            upstream.base()
        )),
        "{out}"
    );
    assert!(out.contains("  Model: gpt-route"), "{out}");

    // curl: the caller's key and model are replaced.
    let out = ok(&sh(&home, &chat));
    assert!(
        out.contains("openai says hi") && out.ends_with(" 200"),
        "{out}"
    );
    let sent = upstream.last_post("/v1/chat/completions");
    assert_eq!(
        header(&sent, "authorization"),
        Some(format!("Bearer {openai_key}").as_str())
    );
    let body: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "gpt-route");
    assert!(!sent.to_string().contains("sk-caller-own"));

    // Anything else: refused, and the connection closed.
    let out = ok(&sh(
        &home,
        "curl -sS -m 30 -w ' %{http_code}' https://inference.local/admin/keys",
    ));
    assert!(
        out.contains("connection not allowed by policy") && out.ends_with(" 403"),
        "{out}"
    );
    // Ordinary egress is still denied: only inference.local is open.
    let out = ok(&sh(
        &home,
        &format!(
            "curl -sS -m 30 -o /dev/null -w '%{{http_connect}}' {}/models; true",
            upstream.base()
        ),
    ));
    assert_eq!(out, "403");

    // The official OpenAI SDK, plain and streaming; the stream's first
    // chunk arrives before the rest is even sent.
    let sdks = std::path::Path::new(SDK_DIR).join("openai").is_dir()
        && std::path::Path::new(SDK_DIR).join("anthropic").is_dir();
    if sdks {
        let script = "import openai, urllib.request\n\
             c = openai.OpenAI(base_url='https://inference.local/v1', api_key='sk-caller-own')\n\
             r = c.chat.completions.create(model='caller-model', messages=[{'role': 'user', 'content': 'hi'}])\n\
             print(r.choices[0].message.content)\n\
             parts = []\n\
             for chunk in c.chat.completions.create(model='caller-model', messages=[{'role': 'user', 'content': 'hi'}], stream=True, stream_options={'include_usage': True}):\n\
             \x20   for choice in chunk.choices:\n\
             \x20       if choice.delta.content:\n\
             \x20           parts.append(choice.delta.content)\n\
             \x20           if len(parts) == 1:\n\
             \x20               c.models.list(extra_query={'release': '1'})\n\
             print(''.join(parts))\n";
        let out = ok(&python(&home, script));
        assert_eq!(out, "openai says hi\nfirst on time\n");
        assert_eq!(
            header(&upstream.last_post("/v1/chat/completions"), "authorization"),
            Some(format!("Bearer {openai_key}").as_str())
        );
    } else {
        eprintln!("note: the official SDKs are not installed in {SDK_DIR}; .ci/run installs them");
    }

    // The route changes while the sandbox runs: Anthropic, then another
    // model, each in force within seconds.
    let out = ok(&home.openshell(&[
        "inference",
        "set",
        "--provider",
        "anth",
        "--model",
        "claude-route",
    ]));
    assert!(out.contains("  Provider: anth (anthropic)"), "{out}");
    let messages = "curl -sS -m 30 -w ' %{http_code}' -H 'Content-Type: application/json' -H 'x-api-key: sk-caller-own' -d '{\"model\":\"x\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' https://inference.local/v1/messages";
    let out = ok(&sh(&home, messages));
    assert!(
        out.contains("anthropic says hi") && out.ends_with(" 200"),
        "{out}"
    );
    let sent = upstream.last_post("/v1/messages");
    assert_eq!(header(&sent, "x-api-key"), Some(anthropic_key));
    assert_eq!(header(&sent, "anthropic-version"), Some("2023-06-01"));
    assert!(header(&sent, "authorization").is_none());
    ok(&home.openshell(&["inference", "update", "--model", "claude-route-2"]));
    let out = ok(&sh(&home, messages));
    assert!(out.ends_with(" 200"), "{out}");
    let body: Value =
        serde_json::from_str(upstream.last_post("/v1/messages")["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "claude-route-2");

    if sdks {
        let script = "import anthropic\n\
             a = anthropic.Anthropic(base_url='https://inference.local', api_key='sk-caller-own')\n\
             m = a.messages.create(model='x', max_tokens=8, messages=[{'role': 'user', 'content': 'hi'}])\n\
             print(m.content[0].text)\n\
             parts = []\n\
             with a.messages.stream(model='x', max_tokens=8, messages=[{'role': 'user', 'content': 'hi'}]) as stream:\n\
             \x20   released = False\n\
             \x20   for event in stream:\n\
             \x20       if not released:\n\
             \x20           import urllib.request, ssl\n\
             \x20           urllib.request.urlopen('https://inference.local/v1/models?release=1', timeout=20).read()\n\
             \x20           released = True\n\
             \x20       if event.type == 'content_block_delta':\n\
             \x20           parts.append(event.delta.text)\n\
             print(''.join(parts))\n";
        let out = ok(&python(&home, script));
        assert_eq!(out, "anthropic says hi\non time\n");
        assert_eq!(
            header(&upstream.last_post("/v1/messages"), "x-api-key"),
            Some(anthropic_key)
        );
    }

    // Every call is an event: route, model, status, tokens, latency.
    let logs = ok(&home.openshell(&["logs", "agent", "-n", "0", "-o", "json"]));
    let events: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["layer"] == "inference")
        .collect();
    let routed = events
        .iter()
        .find(|e| e["model"] == "gpt-route" && e["status"] == 200)
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(routed["input_tokens"], 5);
    assert_eq!(routed["output_tokens"], 3);
    assert!(routed["latency_ms"].is_u64());
    assert!(
        events
            .iter()
            .any(|e| e["decision"] == "deny" && e["path"] == "/admin/keys")
    );
    let lines = ok(&home.openshell(&["logs", "agent", "-n", "0"]));
    assert!(lines.contains("model=claude-route-2 status=200"), "{lines}");

    // The key never enters the sandbox or the host's logs.
    let env = ok(&sh(&home, "env; tr '\\0' '\\n' < /proc/self/environ"));
    for key in [openai_key, anthropic_key] {
        assert!(!env.contains(key), "{env}");
        assert!(!logs.contains(key) && !lines.contains(key));
    }

    // Deleting the route: 503 again; deleting a provider a route uses is refused.
    let out = home.openshell(&["provider", "delete", "anth"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("openshell inference delete"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ok(&home.openshell(&["inference", "delete"])),
        "Inference route deleted.\n"
    );
    assert_eq!(
        ok(&home.openshell(&["inference", "delete"])),
        "Inference route default not found (already deleted).\n"
    );
    let out = ok(&sh(&home, &chat));
    assert!(out.ends_with(" 503"), "{out}");
}

#[test]
fn inference_routes_refuse_what_cannot_serve_and_endpoints_that_fail_the_probe() {
    let home = Home::new();
    crate::gateway::start(&home);
    ok(&home.openshell(&[
        "provider",
        "create",
        "--name",
        "gh",
        "--type",
        "github",
        "--credential",
        "GITHUB_TOKEN=x",
    ]));
    let out = home.openshell(&["inference", "set", "--provider", "gh", "--model", "m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot serve inference"),
        "{}",
        text(&out.stderr)
    );
    ok(&home.openshell(&[
        "provider",
        "create",
        "--name",
        "local",
        "--type",
        "generic",
        "--credential",
        "KEY=none",
    ]));
    let out = home.openshell(&["inference", "set", "--provider", "local", "--model", "m"]);
    assert!(
        text(&out.stderr).contains("names no base URL"),
        "{}",
        text(&out.stderr)
    );
    // A base URL nothing answers on: the probe fails; --no-verify stores it.
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    ok(&home.openshell(&[
        "provider",
        "update",
        "local",
        "--config",
        &format!("base_url={dead}"),
    ]));
    let out = home.openshell(&["inference", "set", "--provider", "local", "--model", "m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("did not answer the probe"),
        "{}",
        text(&out.stderr)
    );
    let out = ok(&home.openshell(&[
        "inference",
        "set",
        "--provider",
        "local",
        "--model",
        "m",
        "--no-verify",
        "--system",
    ]));
    assert!(
        out.contains("  Route: sandbox-system") && out.contains("<not verified>"),
        "{out}"
    );
    let out = home.openshell(&["inference", "update"]);
    assert_eq!(out.status.code(), Some(2), "update needs a field");
    let got: Value = serde_json::from_str(&ok(&home.openshell(&[
        "inference",
        "get",
        "--system",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(got[0]["model"], "m");
    assert_eq!(got[0]["endpoint"], dead);
}
