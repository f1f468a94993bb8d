//! The registry's serving side, which the controller writes: `ServingEnvironment` find and
//! create, `InferenceService` find, create, get and patch (REST `v1alpha3`).
//!
//! Each call sends `Accept: application/json`, the controller's `User-Agent` and the bearer
//! token when there is one, and ends by `CALL_TIMEOUT`. GET and PATCH (idempotent) are tried
//! again twice on a transport error, 429, 502, 503 or 504; POST never (the next pass finds
//! first). Only 404 means absent; 409 on a create is reported as `Created::Conflict` so the
//! caller finds again. The entities stay JSON values: the controller reads a few fields and
//! writes back `customProperties` whole, so nothing it does not know is dropped.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

use crate::error::{Error, one_line, redact_url};
use crate::http;
use crate::settings::Secret;
use crate::uri::{BaseUrl, percent_encode};

/// The whole of one call, retries included.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_WAITS: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];
// The server's message, as far as the log and Events show it.
const MESSAGE_LIMIT: usize = 300;

/// What a create came to.
pub(crate) enum Created {
    Made(Value),
    /// 409: the name exists (another pass or controller made it): find it again.
    Conflict,
}

/// A client for one registry's serving side.
pub(crate) struct Serving<'a> {
    agent: &'a Agent,
    base: BaseUrl,
    token: Option<Secret>,
    /// Called with (operation, status or "error") for each request: the metrics.
    note: &'a (dyn Fn(&str, &str) + Sync),
}

impl<'a> Serving<'a> {
    pub(crate) fn new(
        agent: &'a Agent,
        base: BaseUrl,
        token: Option<Secret>,
        note: &'a (dyn Fn(&str, &str) + Sync),
    ) -> Serving<'a> {
        Serving {
            agent,
            base,
            token,
            note,
        }
    }

    /// `GET /serving_environment?name=NAME`: `None` on 404.
    pub(crate) fn find_environment(&self, name: &str) -> Result<Option<Value>, Error> {
        let path = format!("/serving_environment?name={}", percent_encode(name));
        self.found("find_serving_environment", &path, name)
    }

    /// `POST /serving_environments {"name": NAME}`.
    pub(crate) fn create_environment(&self, name: &str) -> Result<Created, Error> {
        let body = serde_json::json!({ "name": name });
        self.create("create_serving_environment", "/serving_environments", &body)
    }

    /// `GET /inference_service?name=NAME&parentResourceId=SE`: `None` on 404.
    pub(crate) fn find_inference_service(
        &self,
        name: &str,
        environment: &str,
    ) -> Result<Option<Value>, Error> {
        let path = format!(
            "/inference_service?name={}&parentResourceId={}",
            percent_encode(name),
            percent_encode(environment)
        );
        self.found("find_inference_service", &path, name)
    }

    /// `POST /inference_services BODY`.
    pub(crate) fn create_inference_service(&self, body: &Value) -> Result<Created, Error> {
        self.create("create_inference_service", "/inference_services", body)
    }

    /// `GET /inference_services/ID`: `None` on 404.
    pub(crate) fn get_inference_service(&self, id: &str) -> Result<Option<Value>, Error> {
        let path = format!("/inference_services/{}", percent_encode(id));
        let (status, body) = self.call("get_inference_service", "GET", &path, None)?;
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(self.unexpected("GET", &path, status, &body)),
        }
    }

    /// `PATCH /inference_services/ID BODY`: `None` on 404.
    pub(crate) fn patch_inference_service(
        &self,
        id: &str,
        patch: &Value,
    ) -> Result<Option<Value>, Error> {
        let path = format!("/inference_services/{}", percent_encode(id));
        let (status, body) = self.call("update_inference_service", "PATCH", &path, Some(patch))?;
        match status {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(self.unexpected("PATCH", &path, status, &body)),
        }
    }

    /// The registry's URL (scheme, host, prefix), for logs and Events.
    pub(crate) fn url(&self) -> String {
        self.base.url()
    }

    // A find by name: 200 with that very name (finds match with SQL LIKE), or 404.
    fn found(&self, op: &str, path: &str, name: &str) -> Result<Option<Value>, Error> {
        let (status, body) = self.call(op, "GET", path, None)?;
        match status {
            200 if body["name"] == name => Ok(Some(body)),
            200 => Err(Error::Call {
                service: "model registry",
                method: "GET",
                url: redact_url(&self.base.api(path)),
                status: Some(200),
                reason: format!(
                    "asked for {name:?}, the registry answered with {}",
                    body["name"]
                ),
            }),
            404 => Ok(None),
            _ => Err(self.unexpected("GET", path, status, &body)),
        }
    }

    fn create(&self, op: &str, path: &str, body: &Value) -> Result<Created, Error> {
        let (status, answer) = self.call(op, "POST", path, Some(body))?;
        match status {
            200..=299 if answer["id"].is_string() => Ok(Created::Made(answer)),
            409 => Ok(Created::Conflict),
            _ => Err(self.unexpected("POST", path, status, &answer)),
        }
    }

    fn unexpected(&self, method: &'static str, path: &str, status: u16, body: &Value) -> Error {
        let message = body["message"].as_str().map(one_line).unwrap_or_default();
        let message = match message.char_indices().nth(MESSAGE_LIMIT) {
            Some((i, _)) => format!("{}…", &message[..i]),
            None => message,
        };
        Error::Call {
            service: "model registry",
            method,
            url: redact_url(&self.base.api(path)),
            status: Some(status),
            reason: message,
        }
    }

    // One call and its retries; the body as JSON (`Null` when it is not JSON).
    fn call(
        &self,
        op: &str,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Error> {
        let url = self.base.api(path);
        let started = std::time::Instant::now();
        let retried = method != "POST";
        let mut attempt = 0;
        loop {
            let left = CALL_TIMEOUT.saturating_sub(started.elapsed());
            let result = self.send(method, &url, body, left);
            let retry = match &result {
                Ok((status, _)) => {
                    (self.note)(op, &status.to_string());
                    matches!(status, 429 | 502 | 503 | 504)
                }
                Err(_) => {
                    (self.note)(op, "error");
                    true
                }
            };
            let Some(&wait) = RETRY_WAITS.get(attempt).filter(|_| retried && retry) else {
                return result;
            };
            let jitter = RandomState::new().hash_one(attempt) % 250;
            let wait = wait + Duration::from_millis(jitter);
            if started.elapsed() + wait >= CALL_TIMEOUT {
                return result;
            }
            log::debug!("{method} {}: trying again in {wait:?}", redact_url(&url));
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<&Value>,
        left: Duration,
    ) -> Result<(u16, Value), Error> {
        let failed = |reason: String| Error::Call {
            service: "model registry",
            method,
            url: redact_url(url),
            status: None,
            reason,
        };
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()));
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Accept", "application/json")
            .header("User-Agent", crate::kube::USER_AGENT);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        let result = match body {
            Some(body) => request
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .map(|r| http::run_within(self.agent, r, left)),
            None => request
                .body(())
                .map(|r| http::run_within(self.agent, r, left)),
        };
        let result = result.map_err(|e| failed(e.to_string()))?;
        let mut response = result.map_err(|e| failed(http::describe_in(self.agent, &e)))?;
        let status = response.status().as_u16();
        let text = http::read_text(&mut response, 10 << 20)
            .map_err(|e| failed(format!("reading the response: {e}")))?;
        log::debug!("{method} {}: {status}", redact_url(url));
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}
