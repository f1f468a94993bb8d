//! Which failures are tried again and how long to wait: transport errors, 429 and 5xx, with
//! exponential backoff, jitter and the server's `Retry-After`; and the retried GET and POST.
//!
//! A GET follows redirects itself, not through ureq, so that each hop passes the address policy
//! (no metadata or link-local hosts) and credentials never follow a redirect to another host.

use std::hash::{BuildHasher, RandomState};
use std::thread;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::{Agent, Body};

use super::status::{Failure, deadline_passed, unanswered};
use crate::error::redact_url;
use crate::policy::is_blocked_host;
use crate::uri::{percent_encode, url_host};

/// How many times a GET is tried in all before its failure is final.
pub(crate) const ATTEMPTS: u32 = 4;

// The first retry waits about this long; each later one twice as long, plus jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
// A server's Retry-After is honoured up to this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(10);
// Browsers and curl stop at 20; a model download has no reason to need more than a few.
const MAX_REDIRECTS: usize = 10;

/// A GET that is tried again on transport errors, 429 and 5xx, with exponential backoff and
/// jitter; TLS failures and refused redirects are final at once. Returns the last response
/// (whatever its status) or a `Transport` or `Tls` failure.
pub(crate) fn get_with_retry(
    agent: &Agent,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Response<Body>, Failure> {
    with_retry(agent, "GET", url, |left| {
        send_within(agent, url, headers, left)
    })
}

/// A POST of a form (`application/x-www-form-urlencoded`), retried as `get_with_retry`:
/// token exchanges, whose bodies carry credentials that must stay out of URLs and logs.
/// Redirects are not followed.
pub(crate) fn post_form_with_retry(
    agent: &Agent,
    url: &str,
    form: &[(&str, &str)],
) -> Result<Response<Body>, Failure> {
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    with_retry(agent, "POST", url, |left| {
        agent
            .post(url)
            .content_type("application/x-www-form-urlencoded")
            .header("Accept", "application/json, application/xml")
            .config()
            .timeout_global(left)
            .build()
            .send(body.as_str())
            .map_err(Sent::Transport)
    })
}

// Calls until a response that is an answer, or the last attempt's response whatever its
// status; a transport error on the last attempt is final. When the agent has a deadline (the
// registry's), it bounds all the attempts together, the response's body included: each call
// is given the time left (`call`'s argument), and no retry starts past it.
fn with_retry(
    agent: &Agent,
    method: &str,
    url: &str,
    mut call: impl FnMut(Option<Duration>) -> Result<Response<Body>, Sent>,
) -> Result<Response<Body>, Failure> {
    let limit = agent.config().timeouts().global;
    let deadline = limit.map(|limit| Instant::now() + limit);
    let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let mut attempt = 1;
    loop {
        let (cause, wait) = match call(left()) {
            Ok(response) => {
                let status = response.status().as_u16();
                if !is_retryable(status) || attempt == ATTEMPTS {
                    return Ok(response);
                }
                (format!("HTTP {status}"), retry_after(&response))
            }
            Err(sent) => {
                let cause = sent.retry_cause(agent, url)?;
                if attempt == ATTEMPTS {
                    return Err(gave_up(&cause));
                }
                (cause, None)
            }
        };
        let wait = wait.unwrap_or_else(|| backoff(attempt));
        if let Some(limit) = limit
            && left().is_some_and(|left| left <= wait)
        {
            return Err(Failure::Transport(format!(
                "{cause}; {}",
                deadline_passed(limit)
            )));
        }
        log::warn!(
            "{method} {}: {cause}, attempt {attempt} of {ATTEMPTS}",
            redact_url(url)
        );
        thread::sleep(wait);
        attempt += 1;
    }
}

// The final failure once every attempt failed for want of a response.
pub(super) fn gave_up(cause: &str) -> Failure {
    Failure::Transport(format!("{cause} (after {ATTEMPTS} attempts)"))
}

/// 429 and 5xx are worth another try; other statuses are answers.
pub(crate) fn is_retryable(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// The wait before retry number `attempt` (1-based): base × 2^(attempt-1), plus up to one
/// base of jitter so that many init containers do not retry in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE * 2u32.pow(attempt.saturating_sub(1).min(6));
    let jitter_ms = RandomState::new().hash_one(attempt) % BACKOFF_BASE.as_millis() as u64;
    exp + Duration::from_millis(jitter_ms)
}

/// The value of a response's header `name`, when it is text.
pub(crate) fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name)?.to_str().ok()
}

// The server's `Retry-After` in seconds, capped; the HTTP-date form is ignored.
pub(super) fn retry_after(response: &Response<Body>) -> Option<Duration> {
    let secs: u64 = header(response, "retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP))
}

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
    send_within(agent, url, headers, None)
}

// `send`, all of it (redirects and the body) within `left` when given.
fn send_within(
    agent: &Agent,
    url: &str,
    headers: &[(&str, &str)],
    left: Option<Duration>,
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
        if left.is_some() {
            request = request.config().timeout_global(left).build();
        }
        let response = request.call().map_err(Sent::Transport)?;
        let status = response.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(response);
        }
        // A 3xx without a Location is an answer, not a redirect (S3 says PermanentRedirect
        // this way when the region is wrong): the caller reads its body.
        let Some(location) = header(&response, "location") else {
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
}
