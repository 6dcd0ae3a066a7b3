//! HTTPS: loading configured PEM certificates, or making a self-signed one in the data dir
//! (the demo, and `serve --tls-self-signed` for a first try), into a rustls server config with
//! the ring provider (no aws-lc in the build).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where `self_signed` keeps the certificate and key, under the data dir.
pub const TLS_DIR: &str = "tls";
/// The certificate file clients can trust (`--ca-cert`); the CLI trusts it on its own when
/// run with the server's `--data-dir`.
pub const CERT_FILE: &str = "cert.pem";
/// The private key file (0600).
pub const KEY_FILE: &str = "key.pem";

/// A rustls server config from a PEM certificate chain and a PEM private key. Errors name the
/// file and what was wrong with it.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow!("{}: not a readable PEM file: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: bad PEM certificate: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("{}: no usable private key: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| {
        anyhow!(
            "{}: the key does not fit the certificate: {e}",
            cert.display()
        )
    })?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The self-signed certificate in `DATA_DIR/tls/`, made on first use for `localhost`,
/// `127.0.0.1`, `::1` and `names`; returns the certificate and key paths.
pub fn self_signed(data_dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join(TLS_DIR);
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    sans.extend(names.iter().cloned());
    let made =
        rcgen::generate_simple_self_signed(sans).context("making a self-signed certificate")?;
    let key_pem = zeroize::Zeroizing::new(made.signing_key.serialize_pem());
    crate::write_private_file(&key, key_pem.as_bytes())?;
    std::fs::write(&cert, made.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_loads_and_is_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (cert, key) = self_signed(dir.path(), &["bg.example".into()])
            .unwrap_or_else(|e| panic!("self-signed: {e}"));
        assert!(load(&cert, &key).is_ok());
        let first = std::fs::read(&cert).unwrap_or_default();
        self_signed(dir.path(), &[]).unwrap_or_else(|e| panic!("again: {e}"));
        assert_eq!(
            std::fs::read(&cert).unwrap_or_default(),
            first,
            "kept, not remade"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not pem").unwrap_or_else(|e| panic!("{e}"));
        let err = load(&cert, &dir.path().join("k.pem"))
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("c.pem"));
    }
}
