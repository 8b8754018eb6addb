//! TLS for inspected tunnels: a per-sandbox certificate authority,
//! generated at start, whose private key never leaves the supervisor's
//! memory; leaf certificates minted per host (bounded cache); and the
//! upstream client configuration, verified against the system roots.
//!
//! The child trusts the authority through a bundle (system roots + this CA)
//! mounted read-only at [`SANDBOX_TLS_DIR`], with the usual variables
//! pointing at it ([`trust_env`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Where the bundle and the CA appear inside the sandbox.
pub const SANDBOX_TLS_DIR: &str = "/run/openshell/tls";
/// File names in that directory.
pub const BUNDLE_FILE: &str = "ca-bundle.pem";
pub const CA_FILE: &str = "openshell-ca.pem";
/// Leaf certificates kept; the cache is cleared when full (docs/policy.md, "Limits").
pub const LEAF_CACHE: usize = 256;
/// System bundles tried, in order, after `$SSL_CERT_FILE`.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why the authority could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("generating the sandbox certificate authority")]
    Generate(#[source] rcgen::Error),
    #[error("building a TLS configuration")]
    Config(#[source] rustls::Error),
    #[error("writing the CA bundle to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The sandbox's certificate authority and TLS configurations.
pub struct Authority {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// One key for every leaf: minting is then a signature, not a keygen.
    leaf_key: KeyPair,
    leaves: Mutex<HashMap<String, Arc<ServerConfig>>>,
    /// Built on the first inspected TLS tunnel: loading the system roots
    /// costs more than the whole rest of a launch.
    upstream: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("ca", &"[sandbox CA]")
            .field("key", &"[redacted]")
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Authority {
    /// Generates a fresh CA.
    pub fn generate(sandbox: &str) -> Result<Authority, TlsSetupError> {
        let ca_key = KeyPair::generate().map_err(TlsSetupError::Generate)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(TlsSetupError::Generate)?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("OpenShell sandbox CA ({sandbox})"),
        );
        name.push(DnType::OrganizationName, "OpenShell");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params
            .self_signed(&ca_key)
            .map_err(TlsSetupError::Generate)?;
        let leaf_key = KeyPair::generate().map_err(TlsSetupError::Generate)?;
        Ok(Authority {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            issuer: Issuer::new(params, ca_key),
            leaf_key,
            leaves: Mutex::new(HashMap::new()),
            upstream: OnceLock::new(),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The upstream (client) configuration, verifying against the system
    /// roots (`$SSL_CERT_FILE`/`$SSL_CERT_DIR` honoured, as
    /// rustls-native-certs does).
    pub fn upstream(&self) -> Result<Arc<ClientConfig>, String> {
        self.upstream
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                for error in &native.errors {
                    tracing::warn!(%error, "loading system root certificates");
                }
                let (added, ignored) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    tracing::warn!(
                        "no system root certificates: upstream TLS will fail verification"
                    );
                }
                tracing::debug!(added, ignored, "system roots loaded for upstream TLS");
                let mut config = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(Arc::new(config))
            })
            .clone()
    }

    /// A server configuration presenting a leaf for `host`, minted on first
    /// use and cached.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, TlsSetupError> {
        if let Ok(cache) = self.leaves.lock()
            && let Some(config) = cache.get(host)
        {
            return Ok(config.clone());
        }
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(TlsSetupError::Generate)?),
        };
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(TlsSetupError::Generate)?;
        params.subject_alt_names = vec![san];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, host.to_owned());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(TlsSetupError::Generate)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Config)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), self.ca_der.clone()], key)
            .map_err(TlsSetupError::Config)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut cache) = self.leaves.lock() {
            if cache.len() >= LEAF_CACHE {
                cache.clear();
            }
            cache.insert(host.to_owned(), config.clone());
        }
        Ok(config)
    }

    /// Writes `ca-bundle.pem` (system roots, then this CA) and
    /// `openshell-ca.pem` into `dir`, readable by the child.
    pub fn write_trust_files(&self, dir: &Path) -> Result<(), TlsSetupError> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| TlsSetupError::Write { path, source })
        };
        std::fs::create_dir_all(dir).map_err(|source| TlsSetupError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let mut bundle = system_bundle().unwrap_or_default();
        if !bundle.is_empty() && !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle.push_str(&self.ca_pem);
        write(BUNDLE_FILE, &bundle)?;
        write(CA_FILE, &self.ca_pem)?;
        use std::os::unix::fs::PermissionsExt;
        for (path, mode) in [
            (dir.to_owned(), 0o755),
            (dir.join(BUNDLE_FILE), 0o644),
            (dir.join(CA_FILE), 0o644),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|source| TlsSetupError::Write { path, source })?;
        }
        Ok(())
    }
}

/// The system's PEM bundle, as text.
fn system_bundle() -> Option<String> {
    let from_env = std::env::var("SSL_CERT_FILE").ok();
    from_env
        .iter()
        .map(String::as_str)
        .chain(SYSTEM_BUNDLES)
        .find_map(|path| std::fs::read_to_string(path).ok())
}

/// The child's trust variables, pointing into [`SANDBOX_TLS_DIR`].
pub fn trust_env() -> Vec<(String, String)> {
    let bundle = format!("{SANDBOX_TLS_DIR}/{BUNDLE_FILE}");
    let ca = format!("{SANDBOX_TLS_DIR}/{CA_FILE}");
    let mut env: Vec<(String, String)> = [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), bundle.clone()))
    .collect();
    env.push(("NODE_EXTRA_CA_CERTS".into(), ca.clone()));
    env.push(("DENO_CERT".into(), ca));
    env
}

/// The name to send as SNI and verify the upstream certificate against.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_chain_to_the_sandbox_ca_and_are_cached() {
        let authority = Authority::generate("test").unwrap();
        assert!(
            authority
                .ca_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let a = authority.server_config("api.example.test").unwrap();
        let again = authority.server_config("api.example.test").unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        authority.server_config("10.0.0.1").unwrap();
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(format!("{authority:?}").contains("[redacted]"));
    }

    #[test]
    fn trust_files_hold_the_ca_after_the_system_roots() {
        let authority = Authority::generate("test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        authority.write_trust_files(dir.path()).unwrap();
        let bundle = std::fs::read_to_string(dir.path().join(BUNDLE_FILE)).unwrap();
        assert!(bundle.ends_with(authority.ca_pem()));
        let ca = std::fs::read_to_string(dir.path().join(CA_FILE)).unwrap();
        assert_eq!(ca, authority.ca_pem());
        let env = trust_env();
        assert!(env.contains(&(
            "SSL_CERT_FILE".to_owned(),
            "/run/openshell/tls/ca-bundle.pem".to_owned()
        )));
    }
}
