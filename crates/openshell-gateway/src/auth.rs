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
//! - Every user call runs as a [`Caller`]: the subject and role of the
//!   client certificate (CN, and OU `admin` or `user`; the CLI certificate
//!   the gateway makes for itself is an admin), or of a user token
//!   (`authorization: Bearer u1.…`, minted by `openshell-gateway
//!   --issue-token` for clients behind a reverse proxy). A gateway that
//!   requires no authentication serves everyone as the admin `anonymous`.
//!   What a role may do is decided in the API ([`crate::api`]).
//!
//! The peer's state reaches the interceptors as a request extension
//! ([`Peer`]) set by the server for each connection.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Status};

/// How the connection's client authenticated at the TLS layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// Who the client certificate (signed by the gateway's CA and verified
    /// by the TLS layer) names, when one was presented.
    pub certificate: Option<Caller>,
}

/// What a caller may do across the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: workspaces, members, global settings, every workspace.
    Admin,
    /// Only the workspaces it is a member of.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A client certificate from the gateway's CA.
    Certificate,
    /// A user token minted by the gateway.
    Token,
    /// Nothing: the gateway requires no authentication.
    None,
}

impl Proof {
    /// As `whoami` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Certificate => "mtls",
            Proof::Token => "bearer",
            Proof::None => "none",
        }
    }
}

/// Who calls the user API (set on every request by [`Tokens::check_user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    pub proof: Proof,
}

/// The subject of a gateway that requires no authentication.
pub const ANONYMOUS: &str = "anonymous";

/// A subject: 1–128 of `A-Z a-z 0-9 @ . _ -` (a user name, an e-mail).
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= 128
        && subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b))
}

impl Caller {
    /// The caller a verified client certificate names: its CN, and its OU
    /// as the role. The certificate the gateway makes for its own CLI
    /// carries OU `admin`; one made before roles existed carries no OU and
    /// was the only kind the gateway made, so it is an admin too.
    pub fn from_certificate(der: &[u8]) -> Option<Caller> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let cn = subject.iter_common_name().next()?.as_str().ok()?;
        let role = match subject.iter_organizational_unit().next() {
            None => Role::Admin,
            Some(unit) => Role::parse(unit.as_str().ok()?)?,
        };
        valid_subject(cn).then(|| Caller {
            subject: cn.to_owned(),
            role,
            proof: Proof::Certificate,
        })
    }

    fn anonymous() -> Caller {
        Caller {
            subject: ANONYMOUS.to_owned(),
            role: Role::Admin,
            proof: Proof::None,
        }
    }
}

/// The sandbox a supervisor's token names (set by [`Tokens::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxIdentity(pub String);

const TOKEN_PREFIX: &str = "v1";
const USER_TOKEN_PREFIX: &str = "u1";
/// What a user token's MAC covers before its payload, so that no user
/// token's MAC is a sandbox token's (sandbox ids contain no `:`).
const USER_TOKEN_DOMAIN: &str = "user:";
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

    /// A user token for `subject` in `role`, valid until `expires_at`
    /// (Unix seconds): `u1.<hex subject>.<role>.<expiry>.<hex mac>`.
    pub fn mint_user(&self, subject: &str, role: Role, expires_at: u64) -> String {
        let payload = format!(
            "{}.{}.{expires_at}",
            openshell_core::hex::encode(subject.as_bytes()),
            role.as_str()
        );
        let tag = ring::hmac::sign(
            &self.key,
            format!("{USER_TOKEN_DOMAIN}{payload}").as_bytes(),
        );
        format!(
            "{USER_TOKEN_PREFIX}.{payload}.{}",
            openshell_core::hex::encode(tag.as_ref())
        )
    }

    /// The caller a user token names, if it is genuine and not expired at
    /// `now` (Unix seconds).
    pub fn verify_user(&self, token: &str, now: u64) -> Option<Caller> {
        let rest = token.strip_prefix(USER_TOKEN_PREFIX)?.strip_prefix('.')?;
        let (payload, hex) = rest.rsplit_once('.')?;
        let mac = openshell_core::hex::decode(hex)?;
        ring::hmac::verify(
            &self.key,
            format!("{USER_TOKEN_DOMAIN}{payload}").as_bytes(),
            &mac,
        )
        .ok()?;
        let mut fields = payload.split('.');
        let (Some(subject), Some(role), Some(expires_at), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        let subject = String::from_utf8(openshell_core::hex::decode(subject)?).ok()?;
        let expires_at: u64 = expires_at.parse().ok()?;
        (now < expires_at && valid_subject(&subject)).then_some(Caller {
            subject,
            role: Role::parse(role)?,
            proof: Proof::Token,
        })
    }

    /// Interceptor of the user API: records the [`Caller`] on the request.
    /// A user token wins over a certificate; without either, only a
    /// gateway that requires no identity (`require_identity` false) lets
    /// the call through, as the admin `anonymous`. Sandbox tokens never
    /// open the user API.
    pub fn check_user(
        &self,
        mut request: Request<()>,
        require_identity: bool,
    ) -> Result<Request<()>, Status> {
        let caller = match bearer(&request) {
            Some(token) if token.starts_with(TOKEN_PREFIX) => {
                return Err(Status::permission_denied(
                    "sandbox tokens cannot call the user API",
                ));
            }
            Some(token) => self.verify_user(token, unix_now()).ok_or_else(|| {
                Status::unauthenticated(
                    "the user token is invalid or has expired\nhint: openshell gateway login",
                )
            })?,
            None => match request
                .extensions()
                .get::<Peer>()
                .and_then(|peer| peer.certificate.clone())
            {
                Some(caller) => caller,
                None if require_identity => {
                    return Err(Status::unauthenticated(
                        "a client certificate from this gateway's CA (mTLS) or a user token is required",
                    ));
                }
                None => Caller::anonymous(),
            },
        };
        request.extensions_mut().insert(caller);
        Ok(request)
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bearer<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
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
    fn a_user_token_names_its_subject_and_role_until_it_expires() {
        let tokens = Tokens::from_secret(&[7u8; 32]);
        let token = tokens.mint_user("alice@example.com", Role::User, 1000);
        let caller = tokens.verify_user(&token, 999).unwrap();
        assert_eq!(caller.subject, "alice@example.com");
        assert_eq!(caller.role, Role::User);
        assert_eq!(caller.proof, Proof::Token);
        assert_eq!(tokens.verify_user(&token, 1000), None, "expired");
        // The role, the subject or the expiry cannot be changed.
        let admin = token.replace(".user.", ".admin.");
        assert_eq!(tokens.verify_user(&admin, 0), None);
        let later = token.replace(".1000.", ".9999.");
        assert_eq!(tokens.verify_user(&later, 0), None);
        assert_eq!(Tokens::from_secret(&[8u8; 32]).verify_user(&token, 0), None);
        // A sandbox token is no user token, nor the other way round.
        let sandbox = tokens.mint("abc");
        assert_eq!(tokens.verify_user(&sandbox, 0), None);
        assert_eq!(tokens.verify(&token), None);
        for junk in [
            "",
            "u1",
            "u1.",
            "u1.61.user.5",
            "u1.61.user.5.00",
            "u1.zz.user.5.00",
        ] {
            assert_eq!(tokens.verify_user(junk, 0), None, "{junk:?}");
        }
    }

    #[test]
    fn the_user_api_runs_as_the_caller_a_token_or_certificate_names() {
        let tokens = Tokens::from_secret(&[7u8; 32]);
        let caller = |request: Request<()>, require: bool| {
            tokens
                .check_user(request, require)
                .map(|r| r.extensions().get::<Caller>().cloned().unwrap())
        };
        // Nothing presented: refused, unless no identity is required.
        assert_eq!(
            caller(Request::new(()), true).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(caller(Request::new(()), false).unwrap().subject, ANONYMOUS);
        // A certificate's subject.
        let mut with_cert = Request::new(());
        let bob = Caller {
            subject: "bob".into(),
            role: Role::User,
            proof: Proof::Certificate,
        };
        with_cert.extensions_mut().insert(Peer {
            certificate: Some(bob.clone()),
        });
        assert_eq!(caller(with_cert, true).unwrap(), bob);
        // A user token; a bad or a sandbox token is refused even where no
        // identity is required.
        let bearer = |token: &str| {
            let mut request = Request::new(());
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            request
        };
        let token = tokens.mint_user("carol", Role::Admin, u64::MAX);
        assert_eq!(caller(bearer(&token), true).unwrap().subject, "carol");
        assert_eq!(
            caller(bearer("u1.00.user.1.00"), false).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            caller(bearer(&tokens.mint("sb")), false)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn subjects_are_plain_names() {
        assert!(valid_subject("alice@example.com"));
        for bad in ["", "a b", "a/b", "a.b\n", &"x".repeat(129)] {
            assert!(!valid_subject(bad), "{bad:?}");
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
