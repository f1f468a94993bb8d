//! The Kubernetes API over ureq, as the controller needs it and no more: JSON GETs, merge
//! patches, POSTs (Events, Leases), and watch streams read line by line. `config` finds the
//! server and credentials, `token` keeps a rotated token fresh, `yaml` reads a kubeconfig.
//!
//! Every call sends `Accept: application/json` and `User-Agent: mr-controller/<version>`, has
//! 5 s to connect and 30 s in all (a watch: its own `timeoutSeconds` plus 30 s or less, so a
//! half-dead stream ends). A 401 makes the token be read again and the call be sent once more.
//! Redirects are not followed. Debug lines show the method, URL and status, never a header.

pub(crate) mod config;
pub(crate) mod token;
pub(crate) mod yaml;

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::tls::{RootCerts, TlsConfig};

use crate::error::{Error, one_line};
use crate::http;
use crate::settings::Secret;
use config::Access;
use token::Token;

/// `User-Agent` of the controller's requests, Kubernetes and registry alike.
pub(crate) const USER_AGENT: &str = concat!("mr-controller/", env!("CARGO_PKG_VERSION"));
/// The whole of a call that is not a watch.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may take to open, the registry's too.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A list page of 500 InferenceServices is a few MB; more than this is not an answer.
const BODY_LIMIT: u64 = 64 << 20;
/// A watch event longer than this is treated as a broken stream (relist).
pub(crate) const EVENT_LIMIT: u64 = 4 << 20;

/// A client for one API server.
pub(crate) struct Kube {
    agent: Agent,
    server: String,
    token: Option<Token>,
    /// Where the access came from (for the start-up line).
    pub(crate) source: String,
}

/// An answer: the status and the body as text.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A `Status` body's message, or the start of the body.
    pub(crate) fn message(&self) -> String {
        match self.json()["message"].as_str() {
            Some(m) => one_line(m),
            None => one_line(&self.body.chars().take(200).collect::<String>()),
        }
    }
}

/// A watch that the server accepted: its events, one JSON line at a time.
pub(crate) struct Stream {
    reader: BufReader<Box<dyn Read + Send>>,
}

/// One line of a watch stream.
pub(crate) enum Line {
    Event(Value),
    /// The server ended the stream.
    End,
    /// Over `EVENT_LIMIT`, or not JSON.
    Garbled(String),
    /// The connection failed (or the stream outlived its deadline).
    Broken(String),
}

impl Stream {
    /// The next event.
    pub(crate) fn next(&mut self) -> Line {
        let mut buf = Vec::new();
        let read = (&mut self.reader)
            .take(EVENT_LIMIT + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Err(e) => Line::Broken(one_line(&e.to_string())),
            Ok(0) => Line::End,
            Ok(_) if buf.len() as u64 > EVENT_LIMIT => {
                Line::Garbled(format!("an event longer than {} MiB", EVENT_LIMIT >> 20))
            }
            Ok(_) if buf.iter().all(u8::is_ascii_whitespace) => self.next(),
            Ok(_) => match serde_json::from_slice(&buf) {
                Ok(v) => Line::Event(v),
                Err(e) => Line::Garbled(format!("an event that is not JSON: {e}")),
            },
        }
    }
}

impl Kube {
    /// A client for what `access` says.
    pub(crate) fn new(access: Access) -> Kube {
        let tls = if access.insecure {
            TlsConfig::builder().disable_verification(true)
        } else if access.roots.is_empty() {
            let roots: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der.as_ref()))
                .collect();
            TlsConfig::builder().root_certs(RootCerts::new_with_certs(&roots))
        } else {
            TlsConfig::builder().root_certs(RootCerts::new_with_certs(&access.roots))
        };
        let config = Agent::config_builder()
            .user_agent(USER_AGENT)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .tls_config(tls.client_cert(access.client_cert).build())
            .build();
        Kube {
            agent: Agent::new_with_config(config),
            server: access.server,
            token: access.token,
            source: access.source,
        }
    }

    /// The token now used for the API, if any (`MODEL_REGISTRY_AUTH=kube` sends it on).
    pub(crate) fn token(&self) -> Result<Option<Secret>, Error> {
        self.token.as_ref().map(Token::get).transpose()
    }

    /// What kind of credential is used, never its value.
    pub(crate) fn credential_kind(&self) -> String {
        match &self.token {
            Some(t) => format!("token ({})", t.describe()),
            None => "client certificate or none".into(),
        }
    }

    /// The full URL of an API path.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// A GET; the body as text.
    pub(crate) fn get(&self, path: &str) -> Result<Reply, Error> {
        self.call("GET", path, None)
    }

    /// A JSON merge patch (`application/merge-patch+json`) with our field manager.
    pub(crate) fn merge_patch(&self, path: &str, patch: &Value) -> Result<Reply, Error> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}fieldManager=mr-controller");
        let body = patch.to_string();
        self.call(
            "PATCH",
            &path,
            Some(("application/merge-patch+json", body.as_str())),
        )
    }

    /// A POST of a JSON object.
    pub(crate) fn post(&self, path: &str, object: &Value) -> Result<Reply, Error> {
        let body = object.to_string();
        self.call("POST", path, Some(("application/json", body.as_str())))
    }

    /// A PUT of a JSON object (a Lease's renewal).
    pub(crate) fn put(&self, path: &str, object: &Value) -> Result<Reply, Error> {
        let body = object.to_string();
        self.call("PUT", path, Some(("application/json", body.as_str())))
    }

    /// Sends a request; a 401 makes the token be read again and the request be sent once more.
    pub(crate) fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> Result<Reply, Error> {
        let url = self.url(path);
        let mut retried = false;
        loop {
            let response = self.send(method, &url, body, CALL_TIMEOUT)?;
            let status = response.status().as_u16();
            if status == 401 && !retried && self.token.is_some() {
                log::debug!("{method} {url}: 401, reading the token again");
                self.token.as_ref().map(Token::stale);
                retried = true;
                continue;
            }
            let mut response = response;
            let text = response
                .body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_string()
                .map_err(|e| self.failed(method, &url, None, http::describe(&e)))?;
            log::debug!("{method} {url}: {status}");
            return Ok(Reply { status, body: text });
        }
    }

    /// Starts a watch (or anything streamed): a 200 gives the stream, any other status its
    /// reply. The stream ends by `limit`.
    pub(crate) fn stream(
        &self,
        path: &str,
        limit: Duration,
    ) -> Result<Result<Stream, Reply>, Error> {
        let url = self.url(path);
        let mut retried = false;
        loop {
            let mut response = self.send("GET", &url, None, limit)?;
            let status = response.status().as_u16();
            log::debug!("GET {url}: {status}");
            if status == 401 && !retried && self.token.is_some() {
                self.token.as_ref().map(Token::stale);
                retried = true;
                continue;
            }
            if status != 200 {
                let body = http::read_text(&mut response, 64 * 1024).unwrap_or_default();
                return Ok(Err(Reply { status, body }));
            }
            let reader: Box<dyn Read + Send> = Box::new(response.into_body().into_reader());
            return Ok(Ok(Stream {
                reader: BufReader::with_capacity(64 * 1024, reader),
            }));
        }
    }

    fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<(&str, &str)>,
        limit: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let auth = match &self.token {
            Some(t) => Some(format!("Bearer {}", t.get()?.expose())),
            None => None,
        };
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Accept", "application/json");
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        let result = match body {
            Some((content_type, text)) => {
                let request = request
                    .header("Content-Type", content_type)
                    .body(text.to_string())
                    .map_err(|e| self.failed(method, url, None, e.to_string()))?;
                http::run_within(&self.agent, request, limit)
            }
            None => {
                let request = request
                    .body(())
                    .map_err(|e| self.failed(method, url, None, e.to_string()))?;
                http::run_within(&self.agent, request, limit)
            }
        };
        result.map_err(|e| self.failed(method, url, None, http::describe(&e)))
    }

    fn failed(
        &self,
        method: &'static str,
        url: &str,
        status: Option<u16>,
        reason: String,
    ) -> Error {
        Error::Call {
            service: "Kubernetes API",
            method,
            url: crate::error::redact_url(url),
            status,
            reason,
        }
    }
}

/// An error for a reply the caller does not handle.
pub(crate) fn unexpected(method: &'static str, url: &str, reply: &Reply) -> Error {
    Error::Call {
        service: "Kubernetes API",
        method,
        url: crate::error::redact_url(url),
        status: Some(reply.status),
        reason: reply.message(),
    }
}
