//! A test CA and a server certificate for an IP address: what an HTTPS
//! upstream in a test network presents, trusted by the supervisor through
//! `SSL_CERT_FILE` (as an operator would add a corporate root).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`; the server
/// certificate names `ip`.
pub fn write_certs(dir: &Path, ip: Ipv4Addr) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "openshell test upstream CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress(ip.into())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// An HTTPS upstream's files, in a directory under `/var/lib` (outside
/// the temporary directories a sandbox's policy may cover), removed on
/// drop; a server finds them through [`Certs::server_env`].
#[derive(Debug)]
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn new(ip: Ipv4Addr, prefix: &str) -> Certs {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/var/lib")
            .unwrap();
        write_certs(dir.path(), ip);
        Certs { dir }
    }

    /// The CA to trust (`SSL_CERT_FILE` of a supervisor or gateway).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `CERT` and `KEY` for a server's environment.
    pub fn server_env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("CERT", self.dir.path().join("server.pem")),
            ("KEY", self.dir.path().join("server.key")),
        ]
    }
}
