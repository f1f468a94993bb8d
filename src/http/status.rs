//! What a failed request comes to: a `Failure`, and for an error status a `StatusError` with
//! the code and message the server's body gave. A request that got no response at all is a
//! transport error worth another try, or a final TLS failure. An `https://` URL on a server
//! that speaks plain HTTP fails in the TLS handshake with words that do not say so ("unexpected
//! end of file"); it is checked and said plainly.

use std::fmt;
use std::time::Duration;

use ureq::http::Response;
use ureq::{Agent, Body};

use super::agent::Cut;
use super::retry::authority_of;
use crate::error::{Error, one_line};
use crate::uri::port_text;

/// How every backend words an `https://` URL on a plain-HTTP server.
pub(crate) const PLAIN_HTTP: &str = "TLS handshake failed: is the server plain HTTP?";

/// Why a request failed, before a backend puts it in its own words.
#[derive(Debug)]
pub enum Failure {
    /// No HTTP answer (connection refused, DNS, timeout) after retries, or a redirect that
    /// cannot be followed.
    Transport(String),
    /// The TLS handshake failed (an untrusted or wrong certificate): trying again cannot help.
    Tls(String),
    /// The TLS handshake failed and `http://` on the same host and port gets an answer: the
    /// URL should say `http://`. Holds what went wrong and what answered.
    PlainHttp(String),
    /// An error status, final (429 and 5xx only after retries).
    Status(StatusError),
    /// The server broke the protocol (a wrong range, a short body), or the writer failed.
    Other(String),
    /// The caller's header function failed (signing, a token exchange): its own error,
    /// already worded, with its hint.
    Headers(Box<Error>),
}

impl Failure {
    /// The caller's own error when its header function failed, else `word(self)`.
    pub(crate) fn or_else(self, word: impl FnOnce(Failure) -> Error) -> Error {
        match self {
            Failure::Headers(e) => *e,
            other => word(other),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Transport(cause) | Failure::Tls(cause) | Failure::Other(cause) => {
                f.write_str(cause)
            }
            Failure::PlainHttp(evidence) => write!(f, "{PLAIN_HTTP} ({evidence})"),
            Failure::Status(status) => status.fmt(f),
            Failure::Headers(e) => e.fmt(f),
        }
    }
}

/// An error status and what the body said about it: `{"message":...}`,
/// `{"error":{"message":...}}`, or XML `<Code>` and `<Message>` (S3, STS, Azure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    pub(crate) status: u16,
    /// The server's error code (`NoSuchBucket`), when it gives one.
    pub(crate) code: Option<String>,
    /// The server's message, on one line and cut at 200 characters.
    pub(crate) message: Option<String>,
}

impl StatusError {
    /// Reads up to 64 KiB of an error response's body.
    pub(crate) fn read(mut response: Response<Body>) -> StatusError {
        let body = read_text(&mut response, 64 * 1024).unwrap_or_default();
        StatusError::parse(response.status().as_u16(), &body)
    }

    /// The status with what `body` says about it.
    pub(crate) fn parse(status: u16, body: &str) -> StatusError {
        let json = serde_json::from_str::<serde_json::Value>(body).ok();
        let message = json
            .as_ref()
            .and_then(|v| {
                let m = v
                    .get("message")
                    .or_else(|| v.get("error")?.get("message"))?;
                m.as_str().map(String::from)
            })
            .or_else(|| xml_element(body, "Message"));
        let code = xml_element(body, "Code").filter(|_| json.is_none());
        StatusError {
            status,
            code: code.map(|c| one_line(&c)).filter(|c| !c.is_empty()),
            message: message
                .map(|m| shorten(&one_line(&m)))
                .filter(|m| !m.is_empty()),
        }
    }
}

impl fmt::Display for StatusError {
    /// `HTTP 404 Not Found (server said: NoSuchKey: The specified key does not exist.)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(reason) = ureq::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
        {
            write!(f, " {reason}")?;
        }
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, " (server said: {code}: {message})"),
            (Some(said), None) | (None, Some(said)) => write!(f, " (server said: {said})"),
            (None, None) => Ok(()),
        }
    }
}

/// Up to `limit` bytes of a response's body, as text.
pub(crate) fn read_text(response: &mut Response<Body>, limit: u64) -> Result<String, ureq::Error> {
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_string()
}

// The text of the first `<name>` element; enough for the flat error documents servers send.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{name}>"))?;
    Some(body[start..start + len].to_string())
}

fn shorten(message: &str) -> String {
    match message.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &message[..i]),
        None => message.to_string(),
    }
}

// The check that a server which failed a TLS handshake speaks plain HTTP: one request, no retry.
const PLAIN_HTTP_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

// The cause, worth another try, or `Err` when trying again cannot help (TLS, plain HTTP).
pub(super) fn unanswered(agent: &Agent, url: &str, e: &ureq::Error) -> Result<String, Failure> {
    let cause = describe_in(agent, e);
    if let Some(failure) = unsendable(e, &cause) {
        return Err(failure);
    }
    if is_refused(e) {
        return Err(Failure::Transport(cause));
    }
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

// A request that was never sent because ureq cannot build it (a raw space or DEL in the URL,
// a header value with a newline): the same request fails the same way every time.
fn unsendable(e: &ureq::Error, cause: &str) -> Option<Failure> {
    let url = match e {
        ureq::Error::BadUri(_) => true,
        ureq::Error::Http(http) => {
            let inner = http.get_ref();
            inner.is::<ureq::http::uri::InvalidUri>()
                || inner.is::<ureq::http::uri::InvalidUriParts>()
        }
        _ => return None,
    };
    Some(Failure::Other(if url && cause.contains("character") {
        format!("not a valid request URL ({cause}); write special characters as %XX")
    } else if url {
        format!("not a valid request URL ({cause})")
    } else {
        format!("the request cannot be built: {cause}")
    }))
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

// The address policy refused where the host resolves: no other try can go elsewhere.
fn is_refused(e: &ureq::Error) -> bool {
    let ureq::Error::Io(io) = e else {
        return false;
    };
    matches!(
        io.get_ref().and_then(|inner| inner.downcast_ref::<Cut>()),
        Some(Cut::Refused(_))
    )
}

/// `describe`, and a call that ran past the agent's deadline (the registry's) says how long
/// that was.
pub(crate) fn describe_in(agent: &Agent, e: &ureq::Error) -> String {
    match (e, agent.config().timeouts().global) {
        (ureq::Error::Timeout(ureq::Timeout::Global), Some(limit)) => deadline_passed(limit),
        _ => describe(e),
    }
}

/// The cause once a call's deadline passed.
pub(crate) fn deadline_passed(limit: Duration) -> String {
    format!(
        "no complete answer within {} s (MRSI_REGISTRY_TIMEOUT)",
        limit.as_secs()
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_keep_the_servers_code_and_message() {
        let s3 = "<?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code>\n<Message>The specified\n bucket does not exist</Message><BucketName>b</BucketName></Error>";
        let e = StatusError::parse(404, s3);
        assert_eq!(e.code.as_deref(), Some("NoSuchBucket"));
        assert_eq!(
            e.to_string(),
            "HTTP 404 Not Found (server said: NoSuchBucket: The specified bucket does not exist)"
        );
        let json = r#"{"error":{"code":403,"message":"denied"}}"#;
        assert_eq!(
            StatusError::parse(403, json).to_string(),
            "HTTP 403 Forbidden (server said: denied)"
        );
        assert_eq!(
            StatusError::parse(500, "<html>").to_string(),
            "HTTP 500 Internal Server Error"
        );
        let long = format!("{{\"message\":\"{}\"}}", "x".repeat(500));
        assert_eq!(StatusError::parse(400, &long).message.unwrap().len(), 203);
    }
}
