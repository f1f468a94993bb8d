//! Why a request got no response at all: a transport error worth another try, or a final TLS
//! failure. An `https://` URL on a server that speaks plain HTTP fails in the TLS handshake
//! with words that do not say so ("unexpected end of file"); it is checked and said plainly.

use std::time::Duration;

use ureq::Agent;

use super::redirect::authority_of;
use super::status::Failure;
use crate::error::one_line;
use crate::uri::port_text;

// The check that a server which failed a TLS handshake speaks plain HTTP: one request, no retry.
const PLAIN_HTTP_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

// The cause, worth another try, or `Err` when trying again cannot help (TLS, plain HTTP).
pub(super) fn unanswered(agent: &Agent, url: &str, e: &ureq::Error) -> Result<String, Failure> {
    let cause = describe(e);
    if answered_in_plain_text(e) {
        return Err(Failure::PlainHttp(format!(
            "{cause}: the server's first bytes were not TLS"
        )));
    }
    if let Some(answered) = answers_plain_http(agent, url, e) {
        return Err(Failure::PlainHttp(format!(
            "{cause}; {answered} answers without TLS"
        )));
    }
    if is_tls(e) {
        return Err(Failure::Tls(cause));
    }
    Ok(cause)
}

// The TLS handshake got bytes that are no TLS record at all (`HTTP/1.1 400 ...` from a
// plain-HTTP server): rustls's own error says so, so nothing needs checking.
fn answered_in_plain_text(e: &ureq::Error) -> bool {
    let ureq::Error::Io(io) = e else {
        return false;
    };
    matches!(
        io.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}

// After an `https://` request got no answer at all (the server closed on the ClientHello, as
// some plain-HTTP servers do), whether `http://` on the same host and port answers; returns
// that URL when it does. A certificate failure never gets here: the server spoke TLS. TLS
// servers that answer a plain request (nginx, Go, Apache) answer 400 ("plain HTTP request sent
// to HTTPS port"), so a 400 proves nothing. No credentials are sent: the request is for `/`,
// with no headers of ours.
fn answers_plain_http(agent: &Agent, url: &str, e: &ureq::Error) -> Option<String> {
    let ureq::Error::Io(io) = e else {
        return None;
    };
    let handshake = io.kind() == std::io::ErrorKind::UnexpectedEof && io.get_ref().is_none();
    let scheme_end = url.find("://")?;
    if !handshake || !url[..scheme_end].eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = authority_of(url)[scheme_end + 3..].rsplit('@').next()?;
    // No port written means 443: that is where the handshake was tried.
    let probe = match port_text(authority) {
        Some(_) => format!("http://{authority}/"),
        None => format!("http://{authority}:443/"),
    };
    let response = agent
        .get(&probe)
        .config()
        .timeout_global(Some(PLAIN_HTTP_CHECK_TIMEOUT))
        .build()
        .call();
    let said = match &response {
        Ok(r) => format!("HTTP {}", r.status().as_u16()),
        Err(e) => describe(e),
    };
    log::debug!("GET {probe} (after a failed TLS handshake): {said}");
    response.is_ok_and(|r| r.status() != 400).then_some(probe)
}

// rustls reports handshake failures as I/O errors of kind InvalidData.
fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// A transport error as one short line. ureq's own words are kept; `io:` prefixes and
/// newlines are not.
pub(crate) fn describe(e: &ureq::Error) -> String {
    let text = match e {
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    one_line(&text)
}
