//! What a failed request comes to: a `Failure`, and for an error status a `StatusError` with
//! the code and message the server's body gave.

use std::fmt;

use ureq::Body;
use ureq::http::Response;

use crate::error::{Error, one_line};

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
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        StatusError::parse(status, &body)
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
