//! TLS settings shared by every protocol: rustls with the ring provider, TLS
//! 1.2 and 1.3 only, the certificate from PEM files or a self-signed one made
//! at first start.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::rustls::crypto::ring::default_provider;
use futures_rustls::rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use futures_rustls::rustls::version::{TLS12, TLS13};
use futures_rustls::rustls::ServerConfig;
use futures_rustls::TlsAcceptor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate and key come from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The names of the self-signed pair kept in the data directory.
pub const SELF_SIGNED_CERT: &str = "tls-cert.pem";
pub const SELF_SIGNED_KEY: &str = "tls-key.pem";

impl TlsFiles {
    /// The files given on the command line, or the self-signed pair in the
    /// data directory, made now if it does not exist yet.
    pub fn resolve(
        data_dir: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
        hostname: &str,
    ) -> Result<TlsFiles, String> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(TlsFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }),
            (None, None) => {
                let files = TlsFiles {
                    cert: data_dir.join(SELF_SIGNED_CERT),
                    key: data_dir.join(SELF_SIGNED_KEY),
                };
                if !files.cert.exists() || !files.key.exists() {
                    generate_self_signed(&files, hostname)?;
                    log::warn!(
                        "tls: made a self-signed certificate for {hostname} in {}; clients will ask to trust it. \
                         For a trusted one, pass --tls-cert and --tls-key (for example from certbot)",
                        files.cert.display()
                    );
                }
                Ok(files)
            }
            _ => Err("--tls-cert and --tls-key go together: give both, or neither for a self-signed certificate".into()),
        }
    }

    /// Reads and checks the pair; returns an acceptor and the certificate's
    /// SHA-256 fingerprint, which users compare when their client asks.
    pub fn load(&self) -> Result<(TlsAcceptor, String), String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|iter| iter.collect())
            .map_err(|e| format!("cannot read the certificate {}: {e}", self.cert.display()))?;
        let Some(leaf) = certs.first() else {
            return Err(format!(
                "{} holds no certificate (expected PEM, -----BEGIN CERTIFICATE-----)",
                self.cert.display()
            ));
        };
        let fingerprint = fingerprint(leaf);
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("cannot read the private key {}: {e}", self.key.display()))?;
        let config = ServerConfig::builder_with_provider(Arc::new(server_provider()))
            .with_protocol_versions(&[&TLS13, &TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "the certificate {} and key {} do not work together: {e}",
                    self.cert.display(),
                    self.key.display()
                )
            })?;
        Ok((TlsAcceptor::from(Arc::new(config)), fingerprint))
    }
}

/// ring's provider without the signature verification algorithms: a server
/// that asks for no client certificate never verifies a signature, and
/// leaving them out keeps their code (RSA, ECDSA and Ed25519 verification)
/// out of the binary. Signing with any key type ring supports is unchanged.
fn server_provider() -> CryptoProvider {
    CryptoProvider {
        signature_verification_algorithms: WebPkiSupportedAlgorithms {
            all: &[],
            mapping: &[],
        },
        ..default_provider()
    }
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = String::with_capacity(95);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

fn generate_self_signed(files: &TlsFiles, hostname: &str) -> Result<(), String> {
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    // The key is written first and only readable by us; the certificate last,
    // so a crash in between leaves no certificate without its key.
    write_new(
        &files.key,
        made.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&files.cert, made.cert.pem().as_bytes(), 0o644)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_made_once_and_loads() {
        let dir = std::env::temp_dir().join(format!("letterbox-tls-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles::resolve(&dir, None, None, "mail.example").unwrap();
        let (_, first) = files.load().unwrap();
        assert_eq!(first.len(), 95);
        let again = TlsFiles::resolve(&dir, None, None, "mail.example").unwrap();
        let (_, second) = again.load().unwrap();
        assert_eq!(first, second, "an existing pair must be kept");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join(SELF_SIGNED_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(TlsFiles::resolve(&dir, Some(&dir), None, "x").is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
