//! The Model Registry REST client (API `v1alpha3`): the wire types this program reads, the
//! three calls a resolution makes, and the bounded probe for two-segment URIs.
//!
//! Every call is a GET with `Accept: application/json`, our `User-Agent`, and a bearer token
//! only when one is configured. Statuses are mapped to `Lookup` here; what a 404 means (model
//! or version not found) is decided by the caller that knows what was asked.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use ureq::Agent;

use crate::error::{Lookup, one_line};
use crate::http::{self, Failure};
use crate::settings::Secret;
use crate::uri::{BaseUrl, percent_encode};

/// How many items a list call asks for. Pages are followed only when needed (see `select`).
pub(crate) const PAGE_SIZE: u32 = 50;

/// `RegisteredModel`: only the fields this program reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegisteredModel {
    /// Required in practice; the spec marks it read-only, not required.
    pub(crate) id: Option<String>,
    pub(crate) name: String,
}

/// `ModelVersion`: only the fields this program reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelVersion {
    pub(crate) id: String,
    pub(crate) name: String,
    /// `LIVE` or `ARCHIVED`; absent means `LIVE`.
    pub(crate) state: Option<String>,
    pub(crate) create_time_since_epoch: Option<String>,
}

/// `Artifact` (any of its kinds): only the fields this program reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Artifact {
    pub(crate) id: Option<String>,
    pub(crate) artifact_type: Option<String>,
    pub(crate) uri: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) create_time_since_epoch: Option<String>,
}

/// The list wrapper every list call returns.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct List<T> {
    pub(crate) items: Vec<T>,
    // Never read, but required by the spec: a body without them is not a list.
    #[allow(dead_code)]
    size: i64,
    #[allow(dead_code)]
    page_size: i64,
    /// Empty on the last page.
    pub(crate) next_page_token: String,
}

/// The registry's error body, `{"code": "...", "message": "..."}`; only `message` is shown.
#[derive(Debug, Deserialize)]
struct ApiError {
    message: String,
}

/// A client for one registry.
pub(crate) struct Client<'a> {
    agent: &'a Agent,
    base: BaseUrl,
    token: Option<Secret>,
}

impl<'a> Client<'a> {
    /// A client for the registry at `base`, sending `token` as a bearer token when given.
    pub(crate) fn new(agent: &'a Agent, base: BaseUrl, token: Option<Secret>) -> Client<'a> {
        Client { agent, base, token }
    }

    /// `GET /registered_model?name=NAME`; 404 is `ModelNotFound`.
    pub(crate) fn find_model(&self, name: &str) -> Result<RegisteredModel, Lookup> {
        let path = format!("/registered_model?name={}", percent_encode(name));
        self.get(&path).map_err(|e| match e {
            Lookup::Status {
                status: 404,
                message,
                ..
            } => Lookup::ModelNotFound { message },
            other => other,
        })
    }

    /// `GET /model_version?name=NAME&parentResourceId=ID`; 404 is `VersionNotFound`.
    pub(crate) fn find_version(&self, name: &str, model_id: &str) -> Result<ModelVersion, Lookup> {
        let path = format!(
            "/model_version?name={}&parentResourceId={}",
            percent_encode(name),
            percent_encode(model_id)
        );
        self.get(&path).map_err(|e| match e {
            Lookup::Status {
                status: 404,
                message,
                ..
            } => Lookup::VersionNotFound { message },
            other => other,
        })
    }

    /// One page of a model's versions, newest first.
    pub(crate) fn versions(
        &self,
        model_id: &str,
        page_token: &str,
    ) -> Result<List<ModelVersion>, Lookup> {
        let path = format!(
            "/registered_models/{}/versions?orderBy=CREATE_TIME&sortOrder=DESC&pageSize={PAGE_SIZE}{}",
            percent_encode(model_id),
            token_param(page_token)
        );
        self.get(&path)
    }

    /// One page of a version's model artifacts, newest first.
    pub(crate) fn artifacts(
        &self,
        version_id: &str,
        page_token: &str,
    ) -> Result<List<Artifact>, Lookup> {
        let path = format!(
            "/model_versions/{}/artifacts?artifactType=model-artifact&orderBy=CREATE_TIME&sortOrder=DESC&pageSize={PAGE_SIZE}{}",
            percent_encode(version_id),
            token_param(page_token)
        );
        self.get(&path)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Lookup> {
        let url = self.base.api(path);
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()));
        let mut headers = vec![("Accept", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        log::debug!("GET {url}");
        let mut response = http::get_with_retry(self.agent, &url, &headers).map_err(|f| {
            let url = url.clone();
            match f {
                Failure::Tls(cause) => Lookup::Tls { url, cause },
                Failure::PlainHttp(evidence) => Lookup::PlainHttp { url, evidence },
                // The storage side's words for a URL that cannot be sent (`http::status`): the
                // request was never made, so the registry is not unreachable.
                Failure::Other(reason) => Lookup::Unsendable { url, reason },
                other => Lookup::Unreachable {
                    url,
                    cause: other.to_string(),
                },
            }
        })?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|e| match e {
            // The registry answered: too much, and it would again.
            ureq::Error::BodyExceedsLimit(limit) => Lookup::Malformed {
                url: url.clone(),
                reason: format!("the response is larger than {} MB", limit >> 20),
            },
            e => Lookup::Unreachable {
                url: url.clone(),
                cause: format!(
                    "reading the response: {}",
                    http::describe_in(self.agent, &e)
                ),
            },
        })?;
        match status {
            200..=299 => serde_json::from_str(&body).map_err(|e| Lookup::Malformed {
                url,
                reason: format!("{} (body starts: {})", e, excerpt(&body)),
            }),
            401 | 403 => Err(Lookup::Unauthorized {
                url,
                status,
                message: error_message(&body),
            }),
            _ => Err(Lookup::Status {
                url,
                status,
                message: error_message(&body),
            }),
        }
    }
}

fn token_param(page_token: &str) -> String {
    if page_token.is_empty() {
        String::new()
    } else {
        format!("&nextPageToken={}", percent_encode(page_token))
    }
}

// The `message` of an `{"code","message"}` body; for anything else, the start of the body.
fn error_message(body: &str) -> String {
    match serde_json::from_str::<ApiError>(body) {
        Ok(e) => one_line(&e.message),
        Err(_) => excerpt(body),
    }
}

// At most 120 characters of a body, on one line, to show what came instead of JSON.
fn excerpt(body: &str) -> String {
    let line = one_line(body);
    if line.is_empty() {
        return "<empty>".into();
    }
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line,
    }
}

/// The probe's time limit: connect, send and answer together.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `base` answers like a Model Registry: one cheap request, no credentials,
/// no retry, at most `PROBE_TIMEOUT`. A 200 with a list body counts, and so do 401 and 403 (a
/// registry that wants a token is still a registry).
pub(crate) fn probe(agent: &Agent, base: &BaseUrl) -> bool {
    let url = base.api("/registered_models?pageSize=1");
    let result = agent
        .get(&url)
        .header("Accept", "application/json")
        .config()
        .timeout_global(Some(PROBE_TIMEOUT))
        .build()
        .call();
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            log::debug!("probe GET {url}: {}", http::describe(&e));
            return false;
        }
    };
    let status = response.status().as_u16();
    let answer = match status {
        401 | 403 => true,
        200 => http::read_text(&mut response, 1 << 20)
            .ok()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v.get("items").is_some_and(|i| i.is_array())),
        _ => false,
    };
    log::debug!("probe GET {url}: HTTP {status}, registry: {answer}");
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_the_servers_message() {
        let body = r#"{"code":"Not Found","message":"no registered models found for name=iris, externalId=: not found"}"#;
        assert_eq!(
            error_message(body),
            "no registered models found for name=iris, externalId=: not found"
        );
        assert_eq!(
            error_message("<html>\n<h1>Bad Gateway</h1>"),
            "<html> <h1>Bad Gateway</h1>"
        );
        assert_eq!(error_message(""), "<empty>");
    }

    #[test]
    fn excerpt_is_bounded() {
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).len(), 123);
    }

    #[test]
    fn list_wrapper_reads_the_spec_shape() {
        let body = r#"{"items":[{"id":"3","name":"v1","registeredModelId":"1","createTimeSinceEpoch":"1700000000000","state":"LIVE"}],"size":1,"pageSize":50,"nextPageToken":""}"#;
        let list: List<ModelVersion> = serde_json::from_str(body).unwrap();
        assert_eq!(list.items[0].id, "3");
        assert_eq!(
            list.items[0].create_time_since_epoch.as_deref(),
            Some("1700000000000")
        );
        assert!(list.next_page_token.is_empty());
    }
}
