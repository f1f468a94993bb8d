//! A std-only HTTP replay server on 127.0.0.1 that serves recorded registry responses.
//!
//! It reads `fixtures/registry/<scenario>/routes.json` (format in `fixtures/README.md`), answers
//! one request per connection (`Connection: close`, a thread each), and records every request so a test can
//! assert the exact sequence of calls. A request with no route gets a 404 naming the missing
//! fixture and is recorded as unexpected; dropping the server then fails the test (unless the
//! test is already failing). Queries are compared decoded and sorted, so fixture keys are
//! readable and the order of parameters does not matter.
//!
//! Shared by the integration tests and by `examples/quickstart.rs` (through `#[path]`).

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use mr_storage_initializer::percent_decode;
use serde_json::Value;

use super::server::{Server, read_head};
use super::web::{Behaviour, Web};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET /path?k=v` with the query decoded and sorted: the form of a routes.json key.
    pub key: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
}

impl Request {
    /// A header's value, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct Response {
    status: u16,
    file: PathBuf,
}

struct State {
    routes: HashMap<String, Vec<Response>>,
    hits: HashMap<String, usize>,
    auth: Option<(String, Response)>,
    // Stripped from request paths before matching: a registry behind a gateway at `/mr`.
    prefix: String,
    requests: Vec<Request>,
    unexpected: Vec<String>,
    // `{{name}}` in a body is replaced by the value: URLs known only at run time.
    vars: Vec<(String, String)>,
}

/// A running replay server; stops (and checks for unexpected requests) when dropped.
pub struct Replay {
    server: Server,
    state: Arc<Mutex<State>>,
}

/// The folder holding a scenario's fixtures.
pub fn scenario_dir(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/registry")
        .join(scenario)
}

/// `fixtures/artifacts`, the files the registry fixtures point at.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/artifacts")
}

/// Serves `scenario` and, over plain HTTP, `fixtures/artifacts`, with the placeholders
/// `{{artifact_server}}` and `{{artifacts}}` filled in.
pub fn with_artifacts(scenario: &str) -> (Web, Replay) {
    let files = Web::start(&artifacts_dir(), Behaviour::default());
    let registry = Replay::start(scenario);
    registry.set("artifact_server", &files.url());
    registry.set("artifacts", &artifacts_dir().display().to_string());
    (files, registry)
}

impl Replay {
    /// Serves `scenario` on 127.0.0.1 at a free port.
    pub fn start(scenario: &str) -> Replay {
        Replay::start_at("127.0.0.1:0", scenario)
    }

    /// Serves `scenario` at `addr` (a loopback address).
    pub fn start_at(addr: &str, scenario: &str) -> Replay {
        Replay::serve_on(addr, scenario, "")
    }

    /// Serves `scenario` below the path `prefix` (a registry behind a gateway).
    pub fn start_prefixed(scenario: &str, prefix: &str) -> Replay {
        Replay::serve_on("127.0.0.1:0", scenario, prefix)
    }

    fn serve_on(addr: &str, scenario: &str, prefix: &str) -> Replay {
        let mut loaded = load(scenario);
        loaded.prefix = prefix.to_string();
        let state = Arc::new(Mutex::new(loaded));
        let server = {
            let state = state.clone();
            Server::start(addr, move |stream| serve(stream, &state))
        };
        Replay { server, state }
    }

    /// Replaces `{{name}}` with `value` in every body served from now on (fixtures name
    /// artifact servers whose port is chosen at run time this way).
    pub fn set(&self, name: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        s.vars.push((format!("{{{{{name}}}}}"), value.to_string()));
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        self.server.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The keys (`GET /path?query`) of every request so far, in order.
    pub fn keys(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.key).collect()
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.server.stop();
        let unexpected = self.state.lock().unwrap().unexpected.clone();
        if !thread::panicking() && !unexpected.is_empty() {
            panic!("replay server got requests with no fixture: {unexpected:#?}");
        }
    }
}

fn load(scenario: &str) -> State {
    let dir = scenario_dir(scenario);
    let text = std::fs::read_to_string(dir.join("routes.json"))
        .unwrap_or_else(|e| panic!("cannot read {}/routes.json: {e}", dir.display()));
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}/routes.json is not JSON: {e}", dir.display()));
    let response = |v: &Value| Response {
        status: v["status"].as_u64().expect("route status") as u16,
        file: dir.join(v["body"].as_str().expect("route body file")),
    };
    let mut routes = HashMap::new();
    for (key, value) in doc["routes"].as_object().expect("routes object") {
        let list = match value {
            Value::Array(items) => items.iter().map(response).collect(),
            one => vec![response(one)],
        };
        routes.insert(normalize(key), list);
    }
    let auth = doc.get("auth").map(|a| {
        let bearer = a["bearer"].as_str().expect("auth.bearer");
        (format!("Bearer {bearer}"), response(a))
    });
    State {
        routes,
        hits: HashMap::new(),
        auth,
        prefix: String::new(),
        requests: Vec::new(),
        unexpected: Vec::new(),
        vars: Vec::new(),
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Some((method, target, headers)) = read_head(&stream) else {
        return;
    };
    let key = normalize(&format!("{method} {target}"));

    let (status, mut body, content_type) = {
        let mut s = state.lock().unwrap();
        s.requests.push(Request {
            key: key.clone(),
            headers: headers.clone(),
        });
        let denied = s.auth.as_ref().and_then(|(want, resp)| {
            (headers.get("authorization") != Some(want)).then(|| (resp.status, resp.file.clone()))
        });
        match denied {
            Some(d) => read_fixture(d),
            None => {
                // A route that is a list answers in turn; its last answer repeats.
                let route = key.replacen(
                    &format!("{method} {}/", s.prefix),
                    &format!("{method} /"),
                    1,
                );
                let n = s.hits.get(&route).copied().unwrap_or(0);
                let found = s.routes.get(&route).map(|list| {
                    let r = &list[n.min(list.len() - 1)];
                    (r.status, r.file.clone())
                });
                match found {
                    Some(f) => {
                        s.hits.insert(route, n + 1);
                        read_fixture(f)
                    }
                    None => {
                        s.unexpected.push(key.clone());
                        let msg = format!("replay: no fixture for {key}");
                        (
                            404,
                            serde_json::json!({"code": "Not Found", "message": msg})
                                .to_string()
                                .into_bytes(),
                            "application/json",
                        )
                    }
                }
            }
        }
    };
    let vars = state.lock().unwrap().vars.clone();
    if !vars.is_empty() {
        let mut text = String::from_utf8_lossy(&body).into_owned();
        for (name, value) in &vars {
            text = text.replace(name, value);
        }
        body = text.into_bytes();
    }
    let mut out = &stream;
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&body);
    let _ = out.flush();
}

fn read_fixture((status, file): (u16, PathBuf)) -> (u16, Vec<u8>, &'static str) {
    let body = std::fs::read(&file)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", file.display()));
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    (status, body, content_type)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Other",
    }
}

/// `METHOD /path?query` with the path and query decoded and the query pairs sorted.
pub fn normalize(request: &str) -> String {
    let (method, target) = request.split_once(' ').unwrap_or(("", request));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            format!("{}={}", decode(k), decode(v))
        })
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        format!("{method} {}", decode(path))
    } else {
        format!("{method} {}?{}", decode(path), pairs.join("&"))
    }
}

// Undecodable escapes are kept as written: the request then simply matches no route.
fn decode(s: &str) -> String {
    percent_decode(s).unwrap_or_else(|_| s.to_string())
}
