//! The one HTTP stack: a ureq agent with timeouts, the trust store, and GET with retries.
//!
//! Every remote call the program makes goes through here, so timeouts, proxies, CA bundles
//! and retry rules are the same for the registry and for every storage backend.
//!
//! Trust: with no CA configured, ureq's bundled Mozilla roots (works in an image with no system
//! store). With any of `SSL_CERT_FILE`, KServe's CA bundle or an extra CA file, the system bundle
//! (or `SSL_CERT_FILE`, which replaces it as in OpenSSL) plus the extra bundles. ureq cannot add
//! certificates to its bundled roots, only replace them, hence the two cases.
//!
//! Proxies: ureq reads `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and honours `NO_PROXY`.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use ureq::http::Response;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use crate::error::{Error, one_line, redact_url};
use crate::settings::TlsSettings;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("mr-storage-initializer/", env!("CARGO_PKG_VERSION"));

/// How many times a GET is tried in all before its failure is final.
pub const ATTEMPTS: u32 = 4;

// The first retry waits about this long; each later one twice as long, plus jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
// A server's Retry-After is honoured up to this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(10);

// Where Linux distributions keep the system bundle, when there is one.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Builds the agent used for every request. Error statuses come back as responses (so the
/// registry's `{"code","message"}` body can be read); callers decide what they mean.
pub fn agent(tls: &TlsSettings, extra_ca: &[PathBuf]) -> Result<Agent, Error> {
    let roots = root_certs(tls, extra_ca)?;
    let config = Agent::config_builder()
        .user_agent(USER_AGENT)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        // An idle timeout: a long body is fine as long as bytes keep coming.
        .timeout_per_read(Some(Duration::from_secs(30)))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build();
    Ok(config.into())
}

fn root_certs(tls: &TlsSettings, extra_ca: &[PathBuf]) -> Result<RootCerts, Error> {
    let extras: Vec<&Path> = tls
        .kserve_ca_bundle
        .iter()
        .chain(extra_ca)
        .map(PathBuf::as_path)
        .collect();
    if extras.is_empty() && tls.ssl_cert_file.is_none() {
        return Ok(RootCerts::WebPki);
    }
    let mut certs = Vec::new();
    let base = match &tls.ssl_cert_file {
        Some(path) => Some(path.clone()),
        None => SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    };
    match &base {
        Some(path) => certs.extend(read_pem_certs(path)?),
        None => log::warn!(
            "no system CA bundle found: trusting only {}",
            extras
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    for path in extras {
        let found = read_pem_certs(path)?;
        log::debug!(
            "trusting {} certificate(s) from {}",
            found.len(),
            path.display()
        );
        certs.extend(found);
    }
    Ok(RootCerts::new_with_certs(&certs))
}

fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io("read CA bundle", path, e))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::io(
                    "parse CA bundle",
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                ));
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::io(
            "load CA bundle",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no PEM certificates in it"),
        ));
    }
    Ok(certs)
}

/// A request that got no HTTP answer.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong, as one line.
    pub cause: String,
    /// The TLS handshake failed (an untrusted or wrong certificate): trying again cannot help.
    pub tls: bool,
}

/// A GET that is tried again on transport errors, 429 and 5xx, with exponential backoff and
/// jitter; TLS failures are final at once. Returns the last response (whatever its status) or
/// the last transport error.
pub fn get_with_retry(
    agent: &Agent,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Response<Body>, Failed> {
    let mut attempt = 1;
    loop {
        let mut request = agent.get(url).header("Accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let wait = match request.call() {
            Ok(response) => {
                let status = response.status().as_u16();
                if !is_retryable(status) || attempt == ATTEMPTS {
                    return Ok(response);
                }
                log::warn!(
                    "GET {}: HTTP {status}, attempt {attempt} of {ATTEMPTS}",
                    redact_url(url)
                );
                retry_after(&response).unwrap_or_else(|| backoff(attempt))
            }
            Err(e) => {
                let cause = describe(&e);
                if is_tls(&e) {
                    return Err(Failed { cause, tls: true });
                }
                if attempt == ATTEMPTS {
                    return Err(Failed {
                        cause: format!("{cause} (after {ATTEMPTS} attempts)"),
                        tls: false,
                    });
                }
                log::warn!(
                    "GET {}: {cause}, attempt {attempt} of {ATTEMPTS}",
                    redact_url(url)
                );
                backoff(attempt)
            }
        };
        thread::sleep(wait);
        attempt += 1;
    }
}

// rustls reports handshake failures as I/O errors of kind InvalidData.
fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// 429 and 5xx are worth another try; other statuses are answers.
pub fn is_retryable(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// The wait before retry number `attempt` (1-based): base × 2^(attempt-1), plus up to one
/// base of jitter so that many init containers do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE * 2u32.pow(attempt.saturating_sub(1).min(6));
    let jitter_ms = RandomState::new().hash_one(attempt) % BACKOFF_BASE.as_millis() as u64;
    exp + Duration::from_millis(jitter_ms)
}

fn retry_after(response: &Response<Body>) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP))
}

/// A transport error as one short line. ureq's own words are kept; `io:` prefixes and
/// newlines are not.
pub fn describe(e: &ureq::Error) -> String {
    let text = match e {
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 409] {
            assert!(!is_retryable(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_is_jittered_within_one_base() {
        for attempt in 1..=4 {
            let floor = BACKOFF_BASE * 2u32.pow(attempt - 1);
            let d = backoff(attempt);
            assert!(d >= floor && d < floor + BACKOFF_BASE, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn missing_ca_file_is_a_clear_error() {
        let tls = TlsSettings::default();
        let err = agent(&tls, &[PathBuf::from("/nonexistent/ca.pem")]).unwrap_err();
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
        let err = agent(&TlsSettings::default(), std::slice::from_ref(&path)).unwrap_err();
        assert!(
            err.to_string().contains("no PEM certificates in it"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
