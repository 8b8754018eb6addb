//! `gateway login|logout` and the bearer branch of `gateway add`
//! (docs/cli.md, "How the CLI authenticates"): a browser flow with a
//! loopback callback. The CLI listens on `127.0.0.1:<port>`, opens
//! `<gateway>/auth/connect?callback_port=<port>&code=<code>` (or prints it
//! with `OPENSHELL_NO_BROWSER=1`), and waits up to two minutes for the
//! browser to come back with the user token, which it keeps in
//! `gateways/<name>/edge_token` (0600) and sends on every call.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use openshell_proto::v1 as pb;

use crate::client;
use crate::commands::Exit;
use crate::commands::scope::status;
use crate::output;
use crate::registry::{Metadata, Registry, Target};

/// How long the browser has to come back.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(120);

/// A confirmation code `XXXX-XXXX` (A-Z 0-9) the page shows too.
fn confirmation_code() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut random = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("reading /dev/urandom")?;
    let chars: String = random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    Ok(format!("{}-{}", &chars[..4], &chars[4..]))
}

fn no_browser() -> bool {
    std::env::var("OPENSHELL_NO_BROWSER")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The token in a callback request (`POST /callback`, the login page's
/// form: `callback_port`, `code`, `token`), when its code matches.
fn callback_token(request: &str, code: &str) -> Option<String> {
    let (head, body) = request.split_once("\r\n\r\n")?;
    let target = head
        .lines()
        .next()?
        .strip_prefix("POST ")?
        .split(' ')
        .next()?;
    if target != "/callback" {
        return None;
    }
    let mut got_code = None;
    let mut token = None;
    for pair in body.trim_end().split('&') {
        match pair.split_once('=') {
            Some(("code", value)) => got_code = Some(value),
            Some(("token", value)) => token = Some(value),
            _ => {}
        }
    }
    let token = token?;
    let plain = !token.is_empty()
        && token.len() <= 4096
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.');
    (got_code? == code && plain).then(|| token.to_owned())
}

/// Reads one HTTP request (head and a body of at most 16 KiB).
fn read_request(stream: &mut std::net::TcpStream) -> String {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while request.len() < 16 * 1024 {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

/// Runs the browser flow against `endpoint`; the user token.
fn browser_flow(endpoint: &str) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("listening for the login callback")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let code = confirmation_code()?;
    let url = format!("{endpoint}/auth/connect?callback_port={port}&code={code}");
    output::stderr_line(&format!("Confirmation code: {code}"));
    if no_browser() {
        output::stderr_line("Open this URL in a browser on this machine to log in:");
        output::stderr_line(&format!("  {url}"));
    } else {
        output::stderr_line(&format!("Opening {url}"));
        if std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_err()
        {
            output::stderr_line("No browser could be opened; open the URL above yourself.");
        }
    }
    let deadline = Instant::now() + CALLBACK_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let request = read_request(&mut stream);
                match callback_token(&request, &code) {
                    Some(token) => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nLogged in. You can close this window and return to the terminal.\n",
                        );
                        return Ok(token);
                    }
                    None => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\nnot an OpenShell login callback for this code\n",
                        );
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    bail!(
                        "no login within {}s (the browser never came back to 127.0.0.1:{port})",
                        CALLBACK_TIMEOUT.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e).context("waiting for the login callback"),
        }
    }
}

/// Logs in to the bearer gateway `metadata` names: browser flow, then the
/// token is checked with `whoami` and stored. The subject.
pub fn log_in(registry: &Registry, metadata: &Metadata, insecure: bool) -> anyhow::Result<String> {
    let token = browser_flow(&metadata.gateway_endpoint)?;
    let target = Target {
        name: metadata.name.clone(),
        endpoint: metadata.gateway_endpoint.clone(),
        auth: "bearer".to_owned(),
        mtls_dir: registry.bundle_dir(metadata),
        token: Some(token.clone()),
        insecure,
    };
    let user = client::runtime()?.block_on(async {
        let mut client = client::connect(&target).await?;
        anyhow::Ok(
            client
                .get_current_user(pb::GetCurrentUserRequest {})
                .await
                .map_err(status)?
                .into_inner(),
        )
    })?;
    registry.set_token(&metadata.name, &token)?;
    Ok(user.subject)
}

fn bearer_registration(registry: &Registry, name: &str) -> anyhow::Result<Metadata> {
    let Some(metadata) = registry.load(name)? else {
        bail!(
            "Unknown gateway '{name}'.\nRegister it first: openshell gateway add <endpoint> --name {name}\nOr list available gateways: openshell gateway select"
        );
    };
    match metadata.auth() {
        "bearer" => Ok(metadata),
        "mtls" => bail!(
            "gateway '{name}' authenticates with mTLS certificates; there is nothing to log in to\nIts client bundle is in {}",
            registry.bundle_dir(&metadata).display()
        ),
        "plaintext" => bail!(
            "gateway '{name}' is plaintext and needs no login (put it behind a TLS-terminating proxy for anything but local use)"
        ),
        mode => {
            bail!("gateway '{name}' uses '{mode}' authentication, which this CLI cannot log in to")
        }
    }
}

/// `gateway login [NAME]`.
pub fn login(name: &str, insecure: bool) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    let metadata = bearer_registration(&registry, name)?;
    let subject = log_in(&registry, &metadata, insecure)?;
    output::success(&format!("Authenticated to gateway '{name}' as {subject}"));
    Ok(Exit::Success)
}

/// `gateway logout [NAME]`.
pub fn logout(name: &str) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    bearer_registration(&registry, name)?;
    if registry.remove_token(name)? {
        output::success(&format!("Logged out of gateway '{name}'"));
    } else {
        output::warning(&format!("Not logged in to gateway '{name}'"));
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_callback_with_this_code_and_a_plain_token_is_taken() {
        let post = |target: &str, body: &str| {
            format!(
                "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let good = post(
            "/callback",
            "callback_port=1&code=AB12-CD34&token=u1.61.user.9.ff",
        );
        assert_eq!(
            callback_token(&good, "AB12-CD34").as_deref(),
            Some("u1.61.user.9.ff")
        );
        assert_eq!(callback_token(&good, "ZZZZ-ZZZZ"), None, "another code");
        for bad in [
            "GET /callback?code=AB12-CD34&token=u1 HTTP/1.1\r\n\r\n".to_owned(),
            post("/other", "code=AB12-CD34&token=u1"),
            post("/callback", "code=AB12-CD34"),
            post("/callback", "code=AB12-CD34&token=u1%0Aevil"),
            post("/callback", "code=AB12-CD34&token="),
        ] {
            assert_eq!(callback_token(&bad, "AB12-CD34"), None, "{bad}");
        }
        let code = confirmation_code().unwrap();
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
    }
}
