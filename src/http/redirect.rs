//! One GET that follows redirects itself, not through ureq, so that each hop passes the address
//! policy (no metadata or link-local hosts) and credentials never follow a redirect to another
//! host.

use ureq::http::Response;
use ureq::{Agent, Body};

use super::status::Failure;
use super::transport::unanswered;
use crate::error::redact_url;
use crate::policy::is_blocked_host;
use crate::uri::url_host;

// Browsers and curl stop at 20; a model download has no reason to need more than a few.
const MAX_REDIRECTS: usize = 10;

// Why `send` got no final response.
pub(super) enum Sent {
    Transport(ureq::Error),
    // A redirect that cannot be followed: final, never retried.
    Redirect(String),
}

impl Sent {
    // The cause, when another try may help; else the final failure (a refused redirect, TLS).
    pub(super) fn retry_cause(self, agent: &Agent, url: &str) -> Result<String, Failure> {
        match self {
            Sent::Transport(e) => unanswered(agent, url, &e),
            Sent::Redirect(cause) => Err(Failure::Transport(cause)),
        }
    }
}

// One GET, following redirects. Headers other than `Accept` and `Range` (credentials, a
// host's `-headers`) go only to the host the caller named.
pub(super) fn send(
    agent: &Agent,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Response<Body>, Sent> {
    let origin = authority_of(url);
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let same_origin = authority_of(&current).eq_ignore_ascii_case(origin);
        let mut request = agent.get(&current);
        for (name, value) in headers {
            let portable =
                name.eq_ignore_ascii_case("accept") || name.eq_ignore_ascii_case("range");
            if same_origin || portable {
                request = request.header(*name, *value);
            }
        }
        let response = request.call().map_err(Sent::Transport)?;
        let status = response.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(response);
        }
        // A 3xx without a Location is an answer, not a redirect (S3 says PermanentRedirect
        // this way when the region is wrong): the caller reads its body.
        let Some(location) = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(response);
        };
        let next = join_url(&current, location).ok_or_else(|| {
            Sent::Redirect(format!("HTTP {status} redirect to an unusable Location"))
        })?;
        let host = url_host(&next);
        if is_blocked_host(host) {
            return Err(Sent::Redirect(format!(
                "refusing a redirect to {host}: it is a link-local or cloud metadata address"
            )));
        }
        log::debug!(
            "GET {}: HTTP {status}, following to {}",
            redact_url(&current),
            redact_url(&next)
        );
        current = next;
    }
    Err(Sent::Redirect(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

// `scheme://authority` of an absolute URL.
pub(super) fn authority_of(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "";
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &url[..scheme.len() + 3 + end]
}

/// Resolves a `Location` against the URL that sent it: absolute, scheme-relative,
/// absolute-path and relative forms. `None` for a scheme other than http(s).
pub(crate) fn join_url(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if let Some((scheme, _)) = location.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        return (scheme == "http" || scheme == "https").then(|| location.to_string());
    }
    let origin = authority_of(base);
    if origin.is_empty() {
        return None;
    }
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &origin[..origin.find("://")?];
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &base[origin.len()..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{origin}{dir}{location}"))
}
