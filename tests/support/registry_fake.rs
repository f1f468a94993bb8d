//! A stateful Model Registry stand-in for the controller's tests: ServingEnvironment
//! find/create/get and InferenceService find/create/get/patch over real HTTP on 127.0.0.1,
//! with the real server's rules: 404 `{"code","message"}` for an empty find, 409 for a
//! duplicate name (within an SE for an IS), 400 for unknown or missing fields, a PATCH
//! replacing each field given (`customProperties` whole; an absent `desiredState` is
//! `DEPLOYED`). POSTs answer 201, as the server does.
//!
//! Every request body and every response is checked against `fixtures/model-registry.openapi.json`
//! with `tests/fixtures.rs`'s validator (a 201 where the spec lists only 200 is checked against
//! the 200 schema); a problem fails the test when the server is dropped. Bearer check; faults:
//! a status N times for an operation, stopped (connections closed), a hook after each POST.

use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};

use super::server::{Server, read_request, respond_json};

const API: &str = "/api/model_registry/v1alpha3";

/// The OpenAPI spec, as `tests/fixtures.rs`'s validator reads it (handed in, so this file
/// builds where that one is not: the bench includes `support`).
pub trait Spec: Send + Sync {
    /// The path item whose template matches `path`.
    fn path_item(&self, path: &str) -> Option<Value>;
    /// The query parameters a path item's GET declares.
    fn query_params(&self, item: &Value) -> HashSet<String>;
    /// Follows `$ref`s.
    fn deref(&self, value: &Value) -> Value;
    /// Every way `value` breaks `schema`.
    fn validate(&self, schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>);
}

/// One request as the registry saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path below the API prefix, with the query as sent.
    pub target: String,
    pub authorization: String,
    pub body: Value,
}

impl Call {
    /// `METHOD /path?query` (query decoded).
    pub fn key(&self) -> String {
        format!(
            "{} {}",
            self.method,
            mr_storage_initializer::percent_decode(&self.target).unwrap_or_default()
        )
    }
}

// Called with each created entity.
type Hook = Arc<dyn Fn(&Value) + Send + Sync>;

// Method, target, headers (lowercased names) and body of a request.

#[derive(Default)]
struct State {
    environments: Vec<Value>,
    services: Vec<Value>,
    next_id: u64,
    calls: Vec<Call>,
    problems: Vec<String>,
    bearer: Option<String>,
    // (method, path prefix below the API, status, times left)
    faults: Vec<(String, String, u16, usize)>,
    stopped: bool,
    // A gateway's path prefix (`/mr`) in front of the API.
    prefix: String,
    after_post: Option<Hook>,
}

/// The running registry; stops (and checks for spec violations) when dropped.
pub struct Registry {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl Registry {
    /// A registry that wants `Authorization: Bearer TOKEN` when a token is given.
    pub fn start(spec: Arc<dyn Spec>, bearer: Option<&str>) -> Registry {
        let state = Arc::new(Mutex::new(State {
            bearer: bearer.map(String::from),
            next_id: 1,
            ..State::default()
        }));
        let server = {
            let state = state.clone();
            Server::start("127.0.0.1:0", move |stream| serve(stream, &state, &*spec))
        };
        Registry { server, state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        self.server.addr().to_string()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// `METHOD /path?query` of every call.
    pub fn keys(&self) -> Vec<String> {
        self.calls().iter().map(Call::key).collect()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The InferenceService entities.
    pub fn inference_services(&self) -> Vec<Value> {
        self.lock().services.clone()
    }

    pub fn environments(&self) -> Vec<Value> {
        self.lock().environments.clone()
    }

    /// Puts an InferenceService in (as an earlier run would have); its id.
    pub fn seed_inference_service(&self, mut entity: Value) -> String {
        let mut s = self.lock();
        let id = s.next_id.to_string();
        s.next_id += 1;
        entity["id"] = json!(id);
        entity["createTimeSinceEpoch"] = json!("1764446400000");
        entity["lastUpdateTimeSinceEpoch"] = json!("1764446400000");
        s.services.push(entity);
        id
    }

    /// Puts a ServingEnvironment in; its id.
    pub fn seed_environment(&self, name: &str) -> String {
        let mut s = self.lock();
        let id = s.next_id.to_string();
        s.next_id += 1;
        s.environments.push(json!({"id": id, "name": name, "createTimeSinceEpoch": "1764446400000", "lastUpdateTimeSinceEpoch": "1764446400000"}));
        id
    }

    /// Answers the next `times` calls of `method` on paths starting with `prefix` (below the
    /// API prefix) with `status`.
    pub fn fail(&self, method: &str, prefix: &str, status: u16, times: usize) {
        self.lock()
            .faults
            .push((method.into(), prefix.into(), status, times));
    }

    /// Serves below a gateway's path `prefix` (`/mr`) from now on.
    pub fn prefixed(&self, prefix: &str) {
        self.lock().prefix = prefix.to_string();
    }

    /// Stopped: every connection is closed unanswered (a registry that is down).
    pub fn stopped(&self, on: bool) {
        self.lock().stopped = on;
    }

    /// Called with the created entity after each successful POST, before the answer is sent.
    pub fn after_post(&self, hook: impl Fn(&Value) + Send + Sync + 'static) {
        self.lock().after_post = Some(Arc::new(hook));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.server.stop();
        let problems = self.lock().problems.clone();
        if !std::thread::panicking() && !problems.is_empty() {
            panic!("the fake registry saw requests or answers off the spec: {problems:#?}");
        }
    }
}

fn error(code: u16, message: &str) -> (u16, Value) {
    let word = match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Internal Server Error",
    };
    (code, json!({"code": word, "message": message}))
}

fn serve(stream: TcpStream, state: &Mutex<State>, spec: &dyn Spec) {
    let Some((method, target, headers, body)) = read_request(&stream) else {
        return;
    };
    let mut s = state.lock().unwrap();
    if s.stopped {
        return;
    }
    let prefix = s.prefix.clone();
    let Some(target) = target.strip_prefix(prefix.as_str()).map(String::from) else {
        s.problems
            .push(format!("{method} {target}: not below {prefix}"));
        drop(s);
        return answer(&stream, error(404, "not here"));
    };
    let full_path = target.split('?').next().unwrap_or("").to_string();
    let Some(below) = target.strip_prefix(API).map(String::from) else {
        s.problems
            .push(format!("{method} {target}: not below {API}"));
        drop(s);
        return answer(&stream, error(404, "not here"));
    };
    let body_value: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| json!("<not JSON>"))
    };
    let authorization = headers.get("authorization").cloned().unwrap_or_default();
    s.calls.push(Call {
        method: method.clone(),
        target: below.clone(),
        authorization: authorization.clone(),
        body: body_value.clone(),
    });
    if let Some(want) = &s.bearer
        && authorization != format!("Bearer {want}")
    {
        drop(s);
        return answer(&stream, error(401, "missing or wrong bearer token"));
    }
    if headers.get("accept").map(String::as_str) != Some("application/json") {
        s.problems
            .push(format!("{method} {target}: Accept is not application/json"));
    }
    let path = below.split('?').next().unwrap_or("").to_string();
    let fault = s
        .faults
        .iter_mut()
        .find(|(m, p, _, n)| *n > 0 && *m == method && path.starts_with(p.as_str()));
    if let Some(f) = fault {
        f.3 -= 1;
        let code = f.2;
        drop(s);
        return answer(&stream, error(code, "injected by the test"));
    }
    // The request against the spec.
    let item = spec.path_item(&full_path);
    let op_name = method.to_ascii_lowercase();
    let Some(op) = item.as_ref().and_then(|i| i.get(&op_name)).cloned() else {
        s.problems.push(format!(
            "{method} {full_path}: no such operation in the spec"
        ));
        drop(s);
        return answer(&stream, error(404, "no such operation"));
    };
    let query: Vec<(String, String)> = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                k.to_string(),
                mr_storage_initializer::percent_decode(v).unwrap_or_default(),
            )
        })
        .collect();
    let declared = spec.query_params(item.as_ref().unwrap());
    for (k, _) in &query {
        if !declared.contains(k) {
            s.problems.push(format!(
                "{method} {target}: query parameter {k} is not declared"
            ));
        }
    }
    if let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"].as_object() {
        let mut errs = Vec::new();
        spec.validate(
            &Value::Object(schema.clone()),
            &body_value,
            "body",
            &mut errs,
        );
        if !errs.is_empty() {
            // The real server refuses these with 400 (DisallowUnknownFields, required).
            s.problems.push(format!("{method} {target}: {errs:?}"));
            drop(s);
            return answer(&stream, error(400, &errs.join("; ")));
        }
    }
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let now = "1764446500000";
    let (code, answer_body) = match (method.as_str(), segments.as_slice()) {
        ("GET", ["serving_environment"]) => {
            let name = q("name").unwrap_or_default();
            match s.environments.iter().find(|e| e["name"] == name.as_str()) {
                Some(e) => (200, e.clone()),
                None => error(
                    404,
                    &format!(
                        "no serving environments found for name={name}, externalId=: not found"
                    ),
                ),
            }
        }
        ("POST", ["serving_environments"]) => {
            let name = body_value["name"].as_str().unwrap_or("").to_string();
            if s.environments.iter().any(|e| e["name"] == name.as_str()) {
                error(409, &format!("serving environment {name} already exists"))
            } else {
                let id = s.next_id.to_string();
                s.next_id += 1;
                let mut e = body_value;
                e["id"] = json!(id);
                e["createTimeSinceEpoch"] = json!(now);
                e["lastUpdateTimeSinceEpoch"] = json!(now);
                s.environments.push(e.clone());
                (201, e)
            }
        }
        ("GET", ["serving_environments", id]) => {
            match s.environments.iter().find(|e| e["id"] == *id) {
                Some(e) => (200, e.clone()),
                None => error(404, "not found"),
            }
        }
        ("GET", ["inference_service"]) => {
            let name = q("name").unwrap_or_default();
            let parent = q("parentResourceId");
            match s.services.iter().find(|e| {
                e["name"] == name.as_str()
                    && parent
                        .as_deref()
                        .is_none_or(|p| e["servingEnvironmentId"] == p)
            }) {
                Some(e) => (200, e.clone()),
                None => error(
                    404,
                    &format!(
                        "no inference services found for name={name}, parentResourceId={}: not found",
                        parent.unwrap_or_default()
                    ),
                ),
            }
        }
        ("POST", ["inference_services"]) => {
            let name = body_value["name"].as_str().unwrap_or("").to_string();
            let se = body_value["servingEnvironmentId"].clone();
            if !s.environments.iter().any(|e| e["id"] == se) {
                error(400, "no such serving environment")
            } else if s
                .services
                .iter()
                .any(|e| e["name"] == name.as_str() && e["servingEnvironmentId"] == se)
            {
                error(409, &format!("inference service {name} already exists"))
            } else {
                let id = s.next_id.to_string();
                s.next_id += 1;
                let mut e = body_value;
                e["id"] = json!(id);
                if e["desiredState"].is_null() {
                    e["desiredState"] = json!("DEPLOYED");
                }
                e["createTimeSinceEpoch"] = json!(now);
                e["lastUpdateTimeSinceEpoch"] = json!(now);
                s.services.push(e.clone());
                (201, e)
            }
        }
        ("GET", ["inference_services", id]) => match s.services.iter().find(|e| e["id"] == *id) {
            Some(e) => (200, e.clone()),
            None => error(404, &format!("no InferenceService found for id {id}")),
        },
        ("PATCH", ["inference_services", id]) => {
            match s.services.iter_mut().find(|e| e["id"] == *id) {
                Some(e) => {
                    let patch = body_value.as_object().cloned().unwrap_or_default();
                    let mut m: Map<String, Value> = e.as_object().cloned().unwrap_or_default();
                    for (k, v) in patch {
                        m.insert(k, v);
                    }
                    if !body_value
                        .as_object()
                        .is_some_and(|p| p.contains_key("desiredState"))
                    {
                        m.insert("desiredState".into(), json!("DEPLOYED"));
                    }
                    m.insert("lastUpdateTimeSinceEpoch".into(), json!(now));
                    *e = Value::Object(m);
                    (200, e.clone())
                }
                None => error(404, &format!("no InferenceService found for id {id}")),
            }
        }
        _ => {
            s.problems
                .push(format!("{method} {target}: the fake does not serve it"));
            error(404, "not served by the fake")
        }
    };
    // The answer against the spec (a 201 against the 200 schema where only 200 is listed).
    let responses = &op["responses"];
    let declared_status = if responses.get(code.to_string()).is_some() {
        Some(code)
    } else if code == 201 && responses.get("200").is_some() {
        Some(200)
    } else {
        None
    };
    match declared_status {
        None => s.problems.push(format!(
            "{method} {target}: status {code} is not in the spec"
        )),
        Some(st) => {
            let response = spec.deref(&responses[st.to_string()]);
            let schema = response["content"]["application/json"]["schema"].clone();
            let mut errs = Vec::new();
            spec.validate(&schema, &answer_body, "answer", &mut errs);
            if !errs.is_empty() {
                s.problems
                    .push(format!("{method} {target} answer: {errs:?}"));
            }
        }
    }
    let hook = if method == "POST" && code == 201 {
        s.after_post.clone()
    } else {
        None
    };
    drop(s);
    if let Some(hook) = hook {
        hook(&answer_body);
    }
    answer(&stream, (code, answer_body));
}

fn answer(stream: &TcpStream, (code, body): (u16, Value)) {
    respond_json(stream, code, &body);
}
