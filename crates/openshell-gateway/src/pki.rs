//! The gateway's PKI (ARCHITECTURE.md, "One port, two protocols"): created
//! on first start, reused afterwards. A CA, a server certificate for the
//! loopback names and this host's name, and a client certificate the CLI
//! presents. Private keys are written 0600 in a 0700 directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::Role;

/// File names inside the PKI directory.
pub const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
/// The client bundle, laid out as the CLI stores it (`mtls/` in docs/cli.md, "Files").
pub const CLIENT_DIR: &str = "client";
pub const CLIENT_CERT: &str = "tls.crt";
pub const CLIENT_KEY: &str = "tls.key";

/// The subject of the client certificate the gateway makes for the CLI
/// that started it (an admin).
pub const BOOTSTRAP_SUBJECT: &str = "openshell-cli";

/// A client certificate (PEM) and its key (PEM) for `subject` in `role`
/// (the OU; see [`crate::auth::Caller::from_certificate`]).
fn client_certificate(
    issuer: &Issuer<'_, KeyPair>,
    subject: &str,
    role: Role,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(PkiError::Generate)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(PkiError::Generate)?;
    params.distinguished_name.push(DnType::CommonName, subject);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).map_err(PkiError::Generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Why the PKI could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating certificates")]
    Generate(#[source] rcgen::Error),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading PEM from {path}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("building the TLS configuration")]
    Tls(#[source] rustls::Error),
    #[error("building the client-certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The PKI as PEM text.
#[derive(Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: String,
    server_cert: String,
    server_key: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("keys", &"[redacted]")
            .finish()
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        op: "reading",
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let io = |op, source| PkiError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, text).map_err(|e| io("writing", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("setting permissions on", e))
}

/// The names the server certificate covers: loopback, `localhost`, this
/// host's name, and `extra`.
pub fn server_names(extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
        // How containers of the docker driver reach the gateway.
        crate::drivers::docker::HOST_ALIAS.to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_owned());
        }
    }
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

fn san(name: &str) -> Result<SanType, PkiError> {
    Ok(match name.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into().map_err(PkiError::Generate)?),
    })
}

impl Pki {
    /// Loads the PKI in `dir`, or creates it there when it does not exist.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Pki, PkiError> {
        if dir.join(CA_CERT).exists() {
            return Ok(Pki {
                dir: dir.to_owned(),
                ca_cert: read(&dir.join(CA_CERT))?,
                server_cert: read(&dir.join(SERVER_CERT))?,
                server_key: read(&dir.join(SERVER_KEY))?,
            });
        }
        let mkdir = |path: &Path| {
            std::fs::create_dir_all(path)
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|source| PkiError::Io {
                    op: "creating",
                    path: path.to_owned(),
                    source,
                })
        };
        mkdir(dir)?;
        mkdir(&dir.join(CLIENT_DIR))?;

        let ca_key = KeyPair::generate().map_err(PkiError::Generate)?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(PkiError::Generate)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "OpenShell gateway CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).map_err(PkiError::Generate)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(PkiError::Generate)?;
        let mut server =
            CertificateParams::new(Vec::<String>::new()).map_err(PkiError::Generate)?;
        server
            .distinguished_name
            .push(DnType::CommonName, "openshell-gateway");
        server.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .map_err(PkiError::Generate)?;

        let (client_cert, client_key) =
            client_certificate(&issuer, BOOTSTRAP_SUBJECT, Role::Admin)?;
        let client_dir = dir.join(CLIENT_DIR);
        write(&dir.join(CA_KEY), &ca_key_pem, 0o600)?;
        write(&dir.join(SERVER_KEY), &server_key.serialize_pem(), 0o600)?;
        write(&dir.join(SERVER_CERT), &server_cert.pem(), 0o644)?;
        write(&client_dir.join(CLIENT_KEY), &client_key, 0o600)?;
        write(&client_dir.join(CLIENT_CERT), &client_cert, 0o644)?;
        write(&client_dir.join(CA_CERT), &ca.pem(), 0o644)?;
        // The CA certificate last: its presence marks a complete PKI.
        write(&dir.join(CA_CERT), &ca.pem(), 0o644)?;
        Ok(Pki {
            dir: dir.to_owned(),
            ca_cert: ca.pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
        })
    }

    /// Issues a client bundle for `subject` in `role` into `out`, laid out
    /// as the gateway's own (`ca.crt`, `client/tls.crt`, `client/tls.key`),
    /// so `OPENSHELL_LOCAL_TLS_DIR=<out> openshell gateway add URL --local`
    /// registers it.
    pub fn issue_client(&self, subject: &str, role: Role, out: &Path) -> Result<(), PkiError> {
        let ca_key =
            KeyPair::from_pem(&read(&self.dir.join(CA_KEY))?).map_err(PkiError::Generate)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert, ca_key).map_err(PkiError::Generate)?;
        let (cert, key) = client_certificate(&issuer, subject, role)?;
        let client_dir = out.join(CLIENT_DIR);
        for dir in [out, client_dir.as_path()] {
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|source| PkiError::Io {
                    op: "creating",
                    path: dir.to_owned(),
                    source,
                })?;
        }
        write(&client_dir.join(CLIENT_KEY), &key, 0o600)?;
        write(&client_dir.join(CLIENT_CERT), &cert, 0o644)?;
        write(&out.join(CA_CERT), &self.ca_cert, 0o644)
    }

    /// The server's TLS configuration (ALPN h2 and http/1.1). A client
    /// certificate is optional at this layer but verified against this CA
    /// when offered (a bad one fails the handshake); whether a request
    /// needs one is decided per service ([`crate::auth`]).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|source| PkiError::Pem {
                    path: self.dir.join(SERVER_CERT),
                    source,
                })?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).map_err(|source| {
            PkiError::Pem {
                path: self.dir.join(SERVER_KEY),
                source,
            }
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(PkiError::Tls)?;
        let builder = {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(self.ca_cert.as_bytes()) {
                let ca = ca.map_err(|source| PkiError::Pem {
                    path: self.dir.join(CA_CERT),
                    source,
                })?;
                roots.add(ca).map_err(PkiError::Tls)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(PkiError::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(PkiError::Tls)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let names = server_names(&["gw.example.test".to_owned()]);
        let first = Pki::load_or_create(&pki_dir, &names).unwrap();
        let again = Pki::load_or_create(&pki_dir, &names).unwrap();
        assert_eq!(first.ca_cert, again.ca_cert);
        for key in [CA_KEY, SERVER_KEY, "client/tls.key"] {
            let mode = std::fs::metadata(pki_dir.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        assert!(first.server_config().is_ok());
        assert!(format!("{first:?}").contains("[redacted]"));
    }
}
