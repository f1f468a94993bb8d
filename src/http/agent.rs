//! The agent every request goes through (timeouts, buffers, idle connections, no automatic
//! redirects) and the certificates it trusts.
//!
//! Trust: the union of Mozilla's roots built into the binary (so an image with no system store
//! works), the system bundle when there is one, `SSL_CERT_FILE`, KServe's CA bundle and any
//! extra CA file (the registry's).
//!
//! Proxies: ureq takes the first of `ALL_PROXY`, `HTTPS_PROXY` and `HTTP_PROXY` (each also in
//! lower case) that is set, for every request whatever its scheme, and honours `NO_PROXY`.

use std::io::{self, ErrorKind::InvalidData};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::Error;
use crate::settings::TlsSettings;

/// `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("mr-storage-initializer/", env!("CARGO_PKG_VERSION"));

// What ureq reads from a socket at a time; a loopback or LAN read rarely returns more.
const INPUT_BUFFER: usize = 64 * 1024;
// Requests are a GET's head or a small token form.
const OUTPUT_BUFFER: usize = 16 * 1024;
// Idle connections kept per host: ureq keeps 3, so with more workers than that every request
// past the third opened a new connection (138 connects for 2,000 small objects).
const IDLE_PER_HOST: usize = 64;

// Where Linux distributions keep the system bundle, when there is one.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Which certificates an agent trusts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The built-in and system roots, `SSL_CERT_FILE`, KServe's CA bundle, and these files.
    Usual(&'a [PathBuf]),
    /// Only the certificates in this file (S3's `AWS_CA_BUNDLE`, which KServe lets replace
    /// the trust store).
    Only(&'a Path),
    /// No verification at all (S3's `S3_VERIFY_SSL=0`): any certificate is accepted.
    Unverified,
}

/// Builds the agent used for every request. Error statuses come back as responses (so the
/// registry's `{"code","message"}` body can be read); callers decide what they mean.
pub fn agent(tls: &TlsSettings, trust: Trust<'_>) -> Result<Agent, Error> {
    let tls_config = match trust {
        Trust::Usual(extra) => TlsConfig::builder().root_certs(usual_roots(tls, extra)?),
        Trust::Only(path) => {
            let certs = read_pem_certs(path)?;
            TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certs))
        }
        Trust::Unverified => TlsConfig::builder().disable_verification(true),
    };
    let config = Agent::config_builder()
        .user_agent(USER_AGENT)
        .http_status_as_error(false)
        // Redirects are followed hop by hop in `retry`, each through the address policy.
        .max_redirects(0)
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .max_idle_connections(IDLE_PER_HOST)
        .max_idle_connections_per_host(IDLE_PER_HOST)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        // An idle timeout: a long body is fine as long as bytes keep coming.
        .timeout_per_read(Some(Duration::from_secs(30)))
        .tls_config(tls_config.build())
        .build();
    Ok(config.into())
}

fn usual_roots(tls: &TlsSettings, extra_ca: &[PathBuf]) -> Result<RootCerts, Error> {
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()))
        .collect();
    // The system bundle can be missing (a scratch image) or unreadable: the built-in roots
    // still stand. Files the user named must exist.
    if let Some(system) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        match read_pem_certs(system) {
            Ok(found) => certs.extend(found),
            Err(e) => log::warn!("ignoring the system CA bundle: {e}"),
        }
    }
    let named = tls
        .ssl_cert_file
        .iter()
        .chain(&tls.kserve_ca_bundle)
        .chain(extra_ca);
    for path in named {
        certs.extend(read_pem_certs(path)?);
    }
    Ok(RootCerts::new_with_certs(&certs))
}

fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io("read CA bundle", path, e))?;
    let invalid = |what, why: &str| Error::io(what, path, io::Error::new(InvalidData, why));
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        let item = item.map_err(|e| invalid("parse CA bundle", &e.to_string()))?;
        if let PemItem::Certificate(c) = item {
            certs.push(c);
        }
    }
    log::debug!(
        "trusting {} certificate(s) from {}",
        certs.len(),
        path.display()
    );
    if certs.is_empty() {
        return Err(invalid("load CA bundle", "no PEM certificates in it"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_a_clear_error() {
        let tls = TlsSettings::default();
        let missing = [PathBuf::from("/nonexistent/ca.pem")];
        let err = agent(&tls, Trust::Usual(&missing)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read CA bundle '/nonexistent/ca.pem': "),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("mrsi-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = agent(&TlsSettings::default(), Trust::Only(&path)).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("no PEM certificates in it"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
