//! Who may call what (ARCHITECTURE.md, "One port, two protocols").
//!
//! - Users call `openshell.v1.Gateway`. With mTLS on, only a connection
//!   that presented a certificate from the gateway's CA gets through; the
//!   TLS layer verifies any certificate offered but lets connections without
//!   one complete the handshake, because supervisors have none.
//! - Supervisors call `openshell.v1.Supervisor` with a sandbox token
//!   (`authorization: Bearer <token>`): an HMAC-SHA256 of the sandbox id
//!   under the gateway's secret, so it names exactly one sandbox and cannot
//!   be forged without the secret. A token never opens the user API, even
//!   when client certificates are not required.
//!
//! The peer's state reaches the interceptors as a request extension
//! ([`Peer`]) set by the server for each connection.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Status};

/// How the connection's client authenticated at the TLS layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// A certificate signed by the gateway's CA was presented (and verified).
    pub client_cert: bool,
}

/// The sandbox a supervisor's token names (set by [`Tokens::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxIdentity(pub String);

const TOKEN_PREFIX: &str = "v1";
const SECRET_FILE: &str = "token.key";

/// Mints and checks sandbox tokens.
#[derive(Clone)]
pub struct Tokens {
    key: Arc<ring::hmac::Key>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

impl Tokens {
    /// The gateway's token secret in `state_dir` (created 0600 on first use).
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<Tokens> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = state_dir.join(SECRET_FILE);
        let secret = match std::fs::read(&path) {
            Ok(secret) if secret.len() >= 32 => secret,
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is shorter than 32 bytes",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = vec![0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                    .map_err(|_| std::io::Error::other("no system randomness"))?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                file.write_all(&secret)?;
                file.sync_all()?;
                secret
            }
            Err(e) => return Err(e),
        };
        Ok(Tokens::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8]) -> Tokens {
        Tokens {
            key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)),
        }
    }

    /// The token of one sandbox: `v1.<id>.<hex mac>`.
    pub fn mint(&self, sandbox_id: &str) -> String {
        let tag = ring::hmac::sign(&self.key, sandbox_id.as_bytes());
        let hex = openshell_core::hex::encode(tag.as_ref());
        format!("{TOKEN_PREFIX}.{sandbox_id}.{hex}")
    }

    /// The sandbox a token names, if the token is genuine.
    pub fn verify(&self, token: &str) -> Option<String> {
        let mut parts = token.splitn(3, '.');
        let (Some(TOKEN_PREFIX), Some(id), Some(hex)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let mac = openshell_core::hex::decode(hex)?;
        ring::hmac::verify(&self.key, id.as_bytes(), &mac).ok()?;
        Some(id.to_owned())
    }

    /// Interceptor of the supervisor service: a genuine token, whose
    /// sandbox is recorded on the request.
    pub fn check(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = bearer(&request)
            .ok_or_else(|| Status::unauthenticated("a sandbox token is required"))?;
        let id = self
            .verify(token)
            .ok_or_else(|| Status::unauthenticated("invalid sandbox token"))?;
        request.extensions_mut().insert(SandboxIdentity(id));
        Ok(request)
    }
}

fn bearer<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Interceptor of the user API. `require_client_cert`: mTLS is on.
pub fn check_user(request: Request<()>, require_client_cert: bool) -> Result<Request<()>, Status> {
    if bearer(&request).is_some() {
        return Err(Status::permission_denied(
            "sandbox tokens cannot call the user API",
        ));
    }
    if require_client_cert {
        let presented = request
            .extensions()
            .get::<Peer>()
            .is_some_and(|peer| peer.client_cert);
        if !presented {
            return Err(Status::unauthenticated(
                "a client certificate from this gateway's CA is required (mTLS)",
            ));
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_one_sandbox_and_cannot_be_altered() {
        let tokens = Tokens::from_secret(&[7u8; 32]);
        let token = tokens.mint("abc123");
        assert_eq!(tokens.verify(&token).as_deref(), Some("abc123"));
        let forged = token.replace("abc123", "def456");
        assert_eq!(tokens.verify(&forged), None);
        let other_gateway = Tokens::from_secret(&[8u8; 32]);
        assert_eq!(other_gateway.verify(&token), None);
        for junk in [
            "",
            "v1",
            "v1.abc123",
            "v1.abc123.zz",
            "v2.abc123.00",
            &token[..token.len() - 1],
        ] {
            assert_eq!(tokens.verify(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_secret_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Tokens::load_or_create(dir.path()).unwrap().mint("x");
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Tokens::load_or_create(dir.path()).unwrap().mint("x"), first);
    }
}
