//! The agent every request goes through (timeouts, buffers, idle connections, no automatic
//! redirects) and the certificates it trusts.
//!
//! Trust: the union of Mozilla's roots built into the binary (so an image with no system store
//! works), the system bundle when there is one, `SSL_CERT_FILE`, KServe's CA bundle and any
//! extra CA file (the registry's).
//!
//! Addresses: every connection is checked where the name resolves, so no spelling of a host
//! reaches a link-local or metadata address (`policy::is_blocked_ip`) unless
//! `MRSI_ALLOW_ADDRESSES` allows its range, nor a range in `MRSI_REFUSE_ADDRESSES`. Through a
//! proxy, the proxy resolves the target, and only the URL's own spelling is checked.
//!
//! Speed: a response that brings fewer than `MRSI_LOW_SPEED_LIMIT` bytes per second over
//! `MRSI_LOW_SPEED_TIME` seconds is abandoned with a transport error (retried as any other),
//! so a server that trickles bytes cannot hold the run forever.
//!
//! Proxies: ureq takes the first of `ALL_PROXY`, `HTTPS_PROXY` and `HTTP_PROXY` (each also in
//! lower case) that is set, for every request whatever its scheme, and honours `NO_PROXY`.

use std::fmt;
use std::io::{self, ErrorKind::InvalidData};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};

use crate::error::Error;
use crate::policy::is_blocked_ip;
use crate::settings::{NetSettings, TlsSettings};

/// `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("mr-storage-initializer/", env!("CARGO_PKG_VERSION"));

// What ureq reads from a socket at a time. Over TLS ureq keeps two of these per connection
// (the ciphertext's and the plaintext's): at 64 KiB, 16 workers over TLS peaked at 18 MiB
// RSS with 512 KiB body buffers, at 32 KiB 17 MiB; the per-byte cost did not move measurably.
const INPUT_BUFFER: usize = 32 * 1024;
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

/// Sends one request (any body) through `agent`, the whole call ended by `limit`: what the
/// controller's Kubernetes and registry writes do, where no retry layer sets a deadline.
pub(crate) fn run_within<B: ureq::AsSendBody>(
    agent: &Agent,
    request: ureq::http::Request<B>,
    limit: Duration,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let request = agent
        .configure_request(request)
        .timeout_global(Some(limit))
        .build();
    agent.run(request)
}

/// Builds the agent used for every request. Error statuses come back as responses (so the
/// registry's `{"code","message"}` body can be read); callers decide what they mean.
pub fn agent(tls: &TlsSettings, trust: Trust<'_>) -> Result<Agent, Error> {
    build(tls, trust, None)
}

/// The registry's agent: as `agent`, and every call, retries and body included, ends by
/// `MRSI_REGISTRY_TIMEOUT` (`retry` reads the deadline back from the agent's config).
pub(crate) fn registry_agent(tls: &TlsSettings, extra_ca: &[PathBuf]) -> Result<Agent, Error> {
    build(tls, Trust::Usual(extra_ca), Some(tls.net.registry_timeout))
}

fn build(tls: &TlsSettings, trust: Trust<'_>, deadline: Option<Duration>) -> Result<Agent, Error> {
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
        .timeout_connect(Some(tls.net.connect_timeout))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        // An idle timeout: a long body is fine as long as bytes keep coming.
        .timeout_per_read(Some(Duration::from_secs(30)))
        .timeout_global(deadline)
        .tls_config(tls_config.build())
        .build();
    let connector = Metering {
        inner: DefaultConnector::new(),
        limit: tls.net.low_speed_limit,
        time: tls.net.low_speed_time,
    };
    let resolver = Guard {
        inner: DefaultResolver::default(),
        net: tls.net.clone(),
    };
    Ok(Agent::with_parts(config, connector, resolver))
}

/// Why a connection was not made or was abandoned: the address policy refused where a name
/// resolves, or the server sent too slowly. Travels inside an `io::Error`, so that `status`
/// can tell a refusal (final) from a slow server (worth another try).
#[derive(Debug)]
pub(crate) enum Cut {
    Refused(String),
    Slow(String),
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cut::Refused(why) | Cut::Slow(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Cut {}

// The system resolver, then the address policy on what it found.
#[derive(Debug)]
struct Guard {
    inner: DefaultResolver,
    net: NetSettings,
}

/// Why no connection may be made to `ip`, if none may.
pub(crate) fn refusal(ip: IpAddr, net: &NetSettings) -> Option<String> {
    if net.refused.iter().any(|r| r.contains(ip)) {
        return Some(format!(
            "refusing to connect to {ip}: MRSI_REFUSE_ADDRESSES refuses it"
        ));
    }
    if is_blocked_ip(ip) && !net.allowed.iter().any(|r| r.contains(ip)) {
        return Some(format!(
            "refusing to connect to {ip}: it is a link-local or cloud metadata address"
        ));
    }
    None
}

impl Resolver for Guard {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let found = self.inner.resolve(uri, config, timeout)?;
        let mut kept = self.inner.empty();
        let mut first_refusal = None;
        for &addr in found.iter() {
            match refusal(addr.ip(), &self.net) {
                None => kept.push(addr),
                Some(why) => {
                    log::debug!("{}: {why}", uri.host().unwrap_or_default());
                    first_refusal.get_or_insert(why);
                }
            }
        }
        match first_refusal {
            Some(why) if kept.is_empty() => Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Cut::Refused(why),
            ))),
            _ => Ok(kept),
        }
    }
}

// The usual connectors, each transport metered for the low-speed limit.
#[derive(Debug)]
struct Metering {
    inner: DefaultConnector,
    limit: u64,
    time: Duration,
}

impl Connector<()> for Metering {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(inner) = self.inner.connect(details, chained)? else {
            return Ok(None);
        };
        if self.limit == 0 {
            return Ok(Some(inner));
        }
        Ok(Some(Box::new(Metered {
            inner,
            limit: self.limit,
            time: self.time,
            window: None,
        })))
    }
}

// A transport that fails a read once a whole `time` since the request (or since the last
// check) brought fewer than `limit` bytes per second. Time spent while nobody reads (the
// writer busy, the connection idle in the pool) is not the server's: a window starts when a
// request is sent and is checked only when input arrives.
#[derive(Debug)]
struct Metered {
    inner: Box<dyn Transport>,
    limit: u64,
    time: Duration,
    // When the window started and the bytes received since.
    window: Option<(Instant, u64)>,
}

impl Transport for Metered {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.window = None;
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let started = Instant::now();
        let before = self.inner.buffers().input().len();
        let progress = self.inner.await_input(timeout)?;
        let got = self.inner.buffers().input().len().saturating_sub(before) as u64;
        let (start, bytes) = self.window.get_or_insert((started, 0));
        *bytes += got;
        let elapsed = start.elapsed();
        if elapsed >= self.time {
            let wanted = self.limit.saturating_mul(elapsed.as_secs().max(1));
            if *bytes < wanted {
                log::debug!("{bytes} bytes in {elapsed:?}: too slow");
                let why = format!(
                    "the server sent less than {} bytes/s for {} s (MRSI_LOW_SPEED_LIMIT, MRSI_LOW_SPEED_TIME)",
                    self.limit,
                    self.time.as_secs()
                );
                return Err(ureq::Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    Cut::Slow(why),
                )));
            }
            self.window = Some((Instant::now(), 0));
        }
        Ok(progress)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
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
