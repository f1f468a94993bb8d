//! What every authenticated backend does with credentials, written once: a cache for what
//! expires (access tokens, temporary keys), renewed before it expires with one refresh in
//! flight; the token file of a projected service-account volume, read again at each exchange;
//! and the OAuth 2.0 token exchange (a form POSTed, `{access_token, expires_in}` back). Each
//! backend keeps only its own part: what it proves, where it asks, how it signs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use ureq::http::Response;
use ureq::{Agent, Body};

use crate::error::quote;
use crate::fetch::unreachable;
use crate::http::{self, StatusError};
use crate::settings::Secret;

/// A value that stops working at `expires`: an access token, or a set of temporary keys.
pub(crate) struct Expiring<T> {
    pub(crate) value: T,
    pub(crate) expires: SystemTime,
}

/// An access token, and when it stops working.
pub(crate) type Token = Expiring<Secret>;

/// What a refresh gave: the value, or a phrase for the backend to put in its own error.
pub(crate) type Outcome<T> = Result<Arc<Expiring<T>>, String>;

/// One expiring value for every worker thread, renewed when less than `renew_before` is left.
/// A refresh runs under the lock, so only one is in flight: a caller that arrives meanwhile
/// waits and takes its outcome, an error included, rather than asking again.
pub(crate) struct Cache<T> {
    /// What is cached, for the log ("an Azure access token from URL").
    name: String,
    renew_before: Duration,
    last: Mutex<Option<Outcome<T>>>,
    /// How many refreshes have ended. Read before waiting for the lock, it tells a caller
    /// whether one ended while it waited.
    ended: AtomicU64,
}

impl<T> Cache<T> {
    /// A cache holding `first`, when a value is already at hand (a token asked for at start).
    pub(crate) fn new(
        name: String,
        renew_before: Duration,
        first: Option<Expiring<T>>,
    ) -> Cache<T> {
        Cache {
            name,
            renew_before,
            last: Mutex::new(first.map(|value| Ok(Arc::new(value)))),
            ended: AtomicU64::new(0),
        }
    }

    /// The value at `now`, from `refresh` when the cache has none good for `renew_before`
    /// more, unless a refresh ended while this caller waited.
    pub(crate) fn get(
        &self,
        now: SystemTime,
        refresh: impl FnOnce() -> Result<Expiring<T>, String>,
    ) -> Outcome<T> {
        let arrived = self.ended.load(Ordering::SeqCst);
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let waited = self.ended.load(Ordering::SeqCst) != arrived;
        if let Some(outcome) = reuse(last.as_ref(), waited, now + self.renew_before) {
            return outcome;
        }
        let outcome = refresh().map(Arc::new);
        if outcome.is_ok() {
            log::debug!("got {}", self.name);
        }
        *last = Some(outcome.clone());
        self.ended.fetch_add(1, Ordering::SeqCst);
        outcome
    }
}

// What a caller may take without a refresh: the last outcome, whatever it was, when a refresh
// ended while it waited for the lock; else a value still good at `until`.
fn reuse<T>(last: Option<&Outcome<T>>, waited: bool, until: SystemTime) -> Option<Outcome<T>> {
    match last? {
        outcome if waited => Some(outcome.clone()),
        Ok(value) if value.expires > until => Some(Ok(value.clone())),
        _ => None,
    }
}

/// The token in the file that `var` names, read at each exchange: the kubelet rotates
/// projected service-account tokens on disk.
pub(crate) fn token_file(path: &Path, var: &str) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {var} {}: {e}", quote(&path.to_string_lossy())))?;
    match text.trim() {
        "" => Err(format!("{var} {} is empty", quote(&path.to_string_lossy()))),
        token => Ok(Secret::new(token)),
    }
}

/// An access token from an OAuth 2.0 token endpoint: `form` POSTed to `url` (retried like
/// every request; the form carries credentials, so it never goes in a URL).
pub(crate) fn exchange(agent: &Agent, url: &str, form: &[(&str, &str)]) -> Result<Token, String> {
    let now = SystemTime::now();
    let response = http::post_form_with_retry(agent, url, form)
        .map_err(|f| unreachable(&format!("the token endpoint {url}"), &f))?;
    token_answer(url, response, now)
}

/// A token endpoint's answer to a request sent at `now`: `{access_token, expires_in}` (an hour
/// when it does not say), or its refusal in its own words.
pub(crate) fn token_answer(
    url: &str,
    mut response: Response<Body>,
    now: SystemTime,
) -> Result<Token, String> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
        expires_in: Option<u64>,
    }
    if response.status().as_u16() != 200 {
        return Err(format!("{url} refused: {}", StatusError::read(response)));
    }
    // The answer holds the token: a parse error must not quote it.
    let answer: Answer = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_json()
        .map_err(|_| format!("{url} answered something that is not a token"))?;
    Ok(Expiring {
        value: Secret::new(answer.access_token),
        expires: now + Duration::from_secs(answer.expires_in.unwrap_or(3600)),
    })
}

/// The `Authorization` header that carries a bearer token.
pub(crate) fn bearer(token: &Secret) -> (String, String) {
    ("Authorization".into(), format!("Bearer {}", token.expose()))
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;
    use std::time::UNIX_EPOCH;

    use super::*;

    // Logical time: seconds after the epoch.
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // A refresh that gives a value good until `secs` (the value says which).
    fn until(secs: u64) -> Result<Expiring<u64>, String> {
        let (value, expires) = (secs, at(secs));
        Ok(Expiring { value, expires })
    }

    #[test]
    fn renewed_before_expiry_and_errors_passed_on() {
        let cache = Cache::new("a test token".into(), Duration::from_secs(10), None);
        let get = |now, refresh| cache.get(at(now), || refresh).map(|t| t.value);
        assert_eq!(get(0, Err("refused".into())), Err("refused".into()));
        assert_eq!(get(1, until(100)), Ok(100), "an error is not kept");
        assert_eq!(get(89, until(200)), Ok(100), "11 s left: kept");
        assert_eq!(get(90, until(200)), Ok(200), "10 s left: renewed");
        assert_eq!(get(195, Err("gone".into())), Err("gone".into()));
    }

    #[test]
    fn a_caller_that_waited_for_a_refresh_takes_its_outcome() {
        let reused = |last: Option<Outcome<u64>>, waited, now| {
            reuse(last.as_ref(), waited, at(now)).map(|o| o.map(|t| t.value))
        };
        let stale = || Some(until(10).map(Arc::new));
        let failed = || Some(Err("refused".to_string()));
        assert_eq!(reused(None, false, 0), None);
        assert_eq!(reused(stale(), false, 9), Some(Ok(10)));
        assert_eq!(reused(stale(), false, 10), None);
        // A value too old for a new caller still serves the callers that waited for it, and so
        // does an error: they asked at the same time, and the answer would be the same.
        assert_eq!(reused(stale(), true, 10), Some(Ok(10)));
        assert_eq!(reused(failed(), true, 0), Some(Err("refused".into())));
        assert_eq!(reused(failed(), false, 0), None);
    }

    #[test]
    fn one_refresh_for_many_threads() {
        let cache = Cache::new("a shared token".into(), Duration::from_secs(10), None);
        let refreshes = AtomicUsize::new(0);
        let refresh = || {
            refreshes.fetch_add(1, Ordering::SeqCst);
            until(3600)
        };
        let start = Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    start.wait();
                    assert_eq!(cache.get(at(0), refresh).map(|t| t.value), Ok(3600));
                });
            }
        });
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    }
}
