//! A Kubernetes API stand-in over real HTTP on 127.0.0.1, std-only like `replay.rs`: a generic
//! store of JSON objects under their API paths (InferenceServices, Services, Events, Leases
//! alike) with one global resourceVersion counter and an event log.
//!
//! - GET a collection: `limit`/`continue` pages, `labelSelector=k=v`, all namespaces when the
//!   path has none; `watch=1`: a chunked stream replayed from the event log after
//!   `resourceVersion` (older than the compacted history: an `ERROR` 410 event, or HTTP 410 when
//!   asked), then live events until `timeoutSeconds`; BOOKMARKs on request.
//! - POST (create, `generateName`), PUT and PATCH (`application/merge-patch+json` only, RFC
//!   7386; 415 otherwise) with the resourceVersion precondition (stale: 409); 422 when a
//!   finalizer is added to an object being deleted; DELETE sets `deletionTimestamp` while
//!   finalizers remain, and an object whose last finalizer goes is removed.
//! - Bearer tokens (revocable); faults: a status N times for a method and path prefix, cut or
//!   hung watches, stalled watches (silent and open past their `timeoutSeconds`, as a
//!   half-dead connection looks), 410 on the next watch, 409 on the next patches; a request
//!   log.
//!
//! The test drives it directly as KServe and users would (`create`, `update`, `delete`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::server::{Server, respond_json as respond};

/// One request as the API saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub content_type: String,
    pub authorization: String,
    pub body: String,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| mr_storage_initializer::percent_decode(v).unwrap_or_default())
        })
    }

    pub fn is_watch(&self) -> bool {
        self.query("watch").is_some_and(|w| w == "1" || w == "true")
    }
}

#[derive(Clone)]
struct Logged {
    rv: u64,
    kind: String,
    // The object's path, for scoping.
    path: String,
    object: Value,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    rv: u64,
    log: Vec<Logged>,
    // Events at or below this are compacted: a watch from an older rv gets 410.
    compacted: u64,
    tokens: Vec<String>,
    requests: Vec<Request>,
    // (method, path prefix, status, times left)
    faults: Vec<(String, String, u16, usize)>,
    conflicts_next: usize,
    http_410_next: bool,
    cut_gen: u64,
    hang_watches: bool,
    stall_gen: u64,
    uid: u64,
}

/// The running stand-in; stops when dropped.
pub struct Kube {
    server: Server,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Kube {
    /// Starts an API that accepts `token` (no token: no check).
    pub fn start(token: Option<&str>) -> Kube {
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        state.0.lock().unwrap().tokens = token.into_iter().map(String::from).collect();
        let server = {
            let state = state.clone();
            Server::start("127.0.0.1:0", move |stream| serve(stream, &state))
        };
        Kube { server, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// `METHOD target` of every request that is not a watch or list of InferenceServices, nor
    /// an Event: the writes and reads a pass makes.
    pub fn writes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .filter(|r| !r.path().ends_with("/events"))
            .map(|r| format!("{} {} {}", r.method, r.target, r.body))
            .collect()
    }

    /// Accepts another token from now on; `revoke` stops accepting one.
    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.push(token.to_string());
    }

    pub fn revoke_token(&self, token: &str) {
        self.lock().tokens.retain(|t| t != token);
    }

    /// Answers the next `times` requests of `method` whose path starts with `prefix` with
    /// `status`.
    pub fn fail(&self, method: &str, prefix: &str, status: u16, times: usize) {
        self.lock()
            .faults
            .push((method.into(), prefix.into(), status, times));
    }

    /// The next `n` PATCHes get 409, as if someone wrote first.
    pub fn conflict_next_patches(&self, n: usize) {
        self.lock().conflicts_next = n;
    }

    /// The next watch request gets HTTP 410.
    pub fn http_410_next_watch(&self) {
        self.lock().http_410_next = true;
    }

    /// Drops the event history: a watch from before now gets an `ERROR` 410 event.
    pub fn compact(&self) {
        let mut s = self.lock();
        s.compacted = s.rv;
        s.log.clear();
    }

    /// Every open watch loses its connection (no end-of-stream chunk); later ones are fine.
    pub fn cut_watches(&self) {
        self.lock().cut_gen += 1;
        self.state.1.notify_all();
    }

    /// Watches send nothing until this is turned off again.
    pub fn hang_watches(&self, on: bool) {
        self.lock().hang_watches = on;
        self.state.1.notify_all();
    }

    /// Every open watch goes silent and stays open past its `timeoutSeconds` until the client
    /// hangs up (a half-dead connection); later ones are fine.
    pub fn stall_watches(&self) {
        self.lock().stall_gen += 1;
        self.state.1.notify_all();
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch.
    pub fn bookmark(&self) -> u64 {
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv;
        s.log.push(Logged {
            rv,
            kind: "BOOKMARK".into(),
            path: String::new(),
            object: json!({"kind": "InferenceService", "apiVersion": "serving.kserve.io/v1beta1", "metadata": {"resourceVersion": rv.to_string()}}),
        });
        drop(s);
        self.state.1.notify_all();
        rv
    }

    /// The object at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Creates an object at its path (from apiVersion, kind, namespace and name).
    pub fn create(&self, mut object: Value) -> Value {
        let path = object_path(&object);
        let mut s = self.lock();
        s.uid += 1;
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{:04}-{}", s.uid, std::process::id()));
        }
        object["metadata"]["creationTimestamp"] = json!("2026-11-29T20:00:00Z");
        let out = store(&mut s, &path, object, "ADDED");
        drop(s);
        self.state.1.notify_all();
        out
    }

    /// Changes the object at `path` as KServe or a user would (no precondition).
    pub fn update(&self, path: &str, change: impl FnOnce(&mut Value)) -> Value {
        let mut s = self.lock();
        let mut object = s
            .objects
            .get(path)
            .cloned()
            .unwrap_or_else(|| panic!("no {path}"));
        change(&mut object);
        let out = if finished(&object) {
            remove(&mut s, path);
            object
        } else {
            store(&mut s, path, object, "MODIFIED")
        };
        drop(s);
        self.state.1.notify_all();
        out
    }

    /// `kubectl delete`: marked for deletion while finalizers remain, else gone.
    pub fn delete(&self, path: &str) {
        let mut s = self.lock();
        delete_at(&mut s, path);
        drop(s);
        self.state.1.notify_all();
    }

    /// Waits until `check` holds for the object at `path` (or its absence), up to `limit`.
    pub fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let object = self.get(path);
            if check(object.as_ref()) {
                return object;
            }
            if Instant::now() > deadline {
                panic!("{path} did not reach the expected state in {limit:?}: {object:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The API path of an object.
pub fn object_path(object: &Value) -> String {
    let api = object["apiVersion"].as_str().unwrap_or("v1");
    let kind = object["kind"].as_str().unwrap_or("");
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let resource = format!("{}s", kind.to_ascii_lowercase());
    let prefix = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    format!("{prefix}/namespaces/{ns}/{resource}/{name}")
}

/// An InferenceService's path.
pub fn isvc_path(ns: &str, name: &str) -> String {
    format!("/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/{name}")
}

fn finished(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
        && object["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|l| l.is_empty())
}

fn store(s: &mut State, path: &str, mut object: Value, kind: &str) -> Value {
    s.rv += 1;
    object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
    s.objects.insert(path.to_string(), object.clone());
    let rv = s.rv;
    s.log.push(Logged {
        rv,
        kind: kind.into(),
        path: path.into(),
        object: object.clone(),
    });
    object
}

fn remove(s: &mut State, path: &str) {
    if let Some(mut object) = s.objects.remove(path) {
        s.rv += 1;
        object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let rv = s.rv;
        s.log.push(Logged {
            rv,
            kind: "DELETED".into(),
            path: path.into(),
            object,
        });
    }
}

fn delete_at(s: &mut State, path: &str) -> bool {
    let Some(mut object) = s.objects.get(path).cloned() else {
        return false;
    };
    let pending = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| !l.is_empty());
    if pending {
        if object["metadata"]["deletionTimestamp"].is_null() {
            object["metadata"]["deletionTimestamp"] = json!("2026-11-29T20:10:00Z");
            store(s, path, object, "MODIFIED");
        }
    } else {
        remove(s, path);
    }
    true
}

// Where a path points: the collection's prefix, the namespace (None: all) and a name.
struct Target {
    // `/apis/g/v` or `/api/v1` plus `/resource`, without namespace.
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let api_len = match *parts.first()? {
        "api" => 2,
        "apis" => 3,
        _ => return None,
    };
    if parts.len() < api_len + 1 {
        return None;
    }
    let api = parts[..api_len].join("/");
    let rest = &parts[api_len..];
    match rest {
        ["namespaces", ns, resource] => Some(Target {
            collection: format!("/{api}/{resource}"),
            namespace: Some(ns.to_string()),
            name: None,
        }),
        ["namespaces", ns, resource, name] => Some(Target {
            collection: format!("/{api}/{resource}"),
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
        }),
        [resource] => Some(Target {
            collection: format!("/{api}/{resource}"),
            namespace: None,
            name: None,
        }),
        _ => None,
    }
}

impl Target {
    fn object_path(&self) -> String {
        let (api, resource) = self.collection.rsplit_once('/').unwrap();
        format!(
            "{api}/namespaces/{}/{resource}/{}",
            self.namespace.as_deref().unwrap_or(""),
            self.name.as_deref().unwrap_or("")
        )
    }

    // Whether an object path is in this collection (and namespace).
    fn holds(&self, path: &str) -> bool {
        let (api, resource) = self.collection.rsplit_once('/').unwrap();
        let Some(rest) = path.strip_prefix(&format!("{api}/namespaces/")) else {
            return false;
        };
        let mut it = rest.split('/');
        let (Some(ns), Some(res), Some(_)) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        res == resource && self.namespace.as_deref().is_none_or(|n| n == ns)
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let (method, target, mut headers, body) = super::server::read_request(stream)?;
    let mut take = |name: &str| headers.remove(name).unwrap_or_default();
    Some(Request {
        content_type: take("content-type"),
        authorization: take("authorization"),
        method,
        target,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

fn serve(stream: TcpStream, state: &Arc<(Mutex<State>, Condvar)>) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let (lock, wake) = &**state;
    let mut s = lock.lock().unwrap();
    s.requests.push(request.clone());
    if !s.tokens.is_empty() {
        let given = request.authorization.strip_prefix("Bearer ").unwrap_or("");
        if !s.tokens.iter().any(|t| t == given) {
            drop(s);
            let (code, body) = status(401, "Unauthorized", "Unauthorized");
            return respond(&stream, code, &body);
        }
    }
    let path = request.path().to_string();
    let fault = s
        .faults
        .iter_mut()
        .find(|(m, p, _, n)| *n > 0 && *m == request.method && path.starts_with(p.as_str()));
    if let Some(f) = fault {
        f.3 -= 1;
        let code = f.2;
        drop(s);
        let (code, body) = status(code, "Fault", "injected by the test");
        return respond(&stream, code, &body);
    }
    let Some(target) = parse_target(&path) else {
        drop(s);
        let (code, body) = status(404, "NotFound", "no such path");
        return respond(&stream, code, &body);
    };
    if request.method == "GET" && target.name.is_none() && request.is_watch() {
        drop(s);
        return watch(stream, state, &request, &target);
    }
    let (code, body) = handle(&mut s, &request, &target);
    drop(s);
    wake.notify_all();
    respond(&stream, code, &body);
}

fn handle(s: &mut State, request: &Request, target: &Target) -> (u16, Value) {
    let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
    match (request.method.as_str(), &target.name) {
        ("GET", None) => list(s, request, target),
        ("GET", Some(name)) => match s.objects.get(&target.object_path()) {
            Some(o) => (200, o.clone()),
            None => status(404, "NotFound", &format!("{name} not found")),
        },
        ("POST", None) => {
            let mut object = body;
            let Some(ns) = target.namespace.clone() else {
                return status(405, "MethodNotAllowed", "create needs a namespace");
            };
            if object["metadata"]["name"].is_null() {
                let prefix = object["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("x-")
                    .to_string();
                s.uid += 1;
                object["metadata"]["name"] = json!(format!("{prefix}{:05x}", s.uid));
            }
            object["metadata"]["namespace"] = json!(ns);
            let t = Target {
                name: object["metadata"]["name"].as_str().map(String::from),
                namespace: Some(ns),
                collection: target.collection.clone(),
            };
            let path = t.object_path();
            if s.objects.contains_key(&path) {
                return status(409, "AlreadyExists", "already exists");
            }
            s.uid += 1;
            object["metadata"]["uid"] = json!(format!("uid-{:04}", s.uid));
            (201, store(s, &path, object, "ADDED"))
        }
        ("PUT", Some(_)) => {
            let path = target.object_path();
            let Some(current) = s.objects.get(&path).cloned() else {
                return status(404, "NotFound", "not found");
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(409, "Conflict", "the object has been modified");
            }
            (200, store(s, &path, body, "MODIFIED"))
        }
        ("PATCH", Some(_)) => {
            if request.content_type != "application/merge-patch+json" {
                return status(415, "UnsupportedMediaType", "only merge patches here");
            }
            let path = target.object_path();
            let Some(current) = s.objects.get(&path).cloned() else {
                return status(404, "NotFound", "not found");
            };
            if s.conflicts_next > 0 {
                s.conflicts_next -= 1;
                return status(409, "Conflict", "injected conflict");
            }
            let wanted = &body["metadata"]["resourceVersion"];
            if !wanted.is_null() && *wanted != current["metadata"]["resourceVersion"] {
                return status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version",
                );
            }
            let mut next = current.clone();
            merge(&mut next, &body);
            let deleting = !current["metadata"]["deletionTimestamp"].is_null();
            let before: Vec<Value> = current["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let after: Vec<Value> = next["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if deleting && after.iter().any(|f| !before.contains(f)) {
                return status(
                    422,
                    "Invalid",
                    "no new finalizers can be added if the object is being deleted",
                );
            }
            if finished(&next) {
                remove(s, &path);
                let rv = s.rv;
                next["metadata"]["resourceVersion"] = json!(rv.to_string());
                return (200, next);
            }
            (200, store(s, &path, next, "MODIFIED"))
        }
        ("DELETE", Some(_)) => {
            if delete_at(s, &target.object_path()) {
                (200, json!({"kind": "Status", "status": "Success"}))
            } else {
                status(404, "NotFound", "not found")
            }
        }
        _ => status(405, "MethodNotAllowed", "not here"),
    }
}

// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn list(s: &mut State, request: &Request, target: &Target) -> (u16, Value) {
    let selector = request.query("labelSelector");
    let mut items: Vec<&Value> = s
        .objects
        .iter()
        .filter(|(p, _)| target.holds(p))
        .map(|(_, o)| o)
        .filter(|o| match &selector {
            Some(sel) => sel.split(',').all(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                o["metadata"]["labels"][k] == v
            }),
            None => true,
        })
        .collect();
    let offset: usize = match request.query("continue") {
        Some(token) => match token.strip_prefix("c").and_then(|t| t.split_once(':')) {
            Some((offset, rv))
                if rv.parse::<u64>().unwrap_or(0) > s.compacted || s.compacted == 0 =>
            {
                offset.parse().unwrap_or(0)
            }
            _ => return status(410, "Expired", "the continue token is too old"),
        },
        None => 0,
    };
    let limit: usize = request
        .query("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let total = items.len();
    let page: Vec<Value> = items.drain(..).skip(offset).take(limit).cloned().collect();
    let next = offset + page.len();
    let cont = if next < total {
        format!("c{next}:{}", s.rv)
    } else {
        String::new()
    };
    (
        200,
        json!({
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": s.rv.to_string(), "continue": cont},
            "items": page,
        }),
    )
}

fn chunk(stream: &TcpStream, value: &Value) -> bool {
    let line = format!("{value}\n");
    let mut out = stream;
    write!(out, "{:x}\r\n{line}\r\n", line.len()).is_ok() && out.flush().is_ok()
}

// Holds a watch open and silent until the client hangs up.
fn stall(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut byte = [0u8; 1];
    loop {
        match (&stream).read(&mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn watch(
    stream: TcpStream,
    state: &Arc<(Mutex<State>, Condvar)>,
    request: &Request,
    target: &Target,
) {
    let (lock, wake) = &**state;
    let from: u64 = request
        .query("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = request
        .query("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(300u64);
    let bookmarks = request
        .query("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    {
        let mut s = lock.lock().unwrap();
        if s.http_410_next {
            s.http_410_next = false;
            drop(s);
            let (code, body) = status(410, "Gone", "too old resource version");
            return respond(&stream, code, &body);
        }
    }
    let mut out = &stream;
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut sent = from;
    let mut s = lock.lock().unwrap();
    let generation = s.cut_gen;
    let stall_generation = s.stall_gen;
    if from < s.compacted {
        drop(s);
        chunk(
            &stream,
            &json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("too old resource version: {from} ({})", 0), "reason": "Expired", "code": 410}}),
        );
        let _ = out.write_all(b"0\r\n\r\n");
        return;
    }
    loop {
        if s.cut_gen != generation {
            drop(s);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if s.stall_gen != stall_generation {
            drop(s);
            return stall(stream);
        }
        if !s.hang_watches {
            let events: Vec<Logged> = s
                .log
                .iter()
                .filter(|e| e.rv > sent)
                .filter(|e| {
                    if e.kind == "BOOKMARK" {
                        bookmarks
                    } else {
                        target.holds(&e.path)
                    }
                })
                .cloned()
                .collect();
            if let Some(last) = s.log.last() {
                sent = sent.max(last.rv);
            }
            drop(s);
            for e in events {
                if !chunk(&stream, &json!({"type": e.kind, "object": e.object})) {
                    return;
                }
            }
            s = lock.lock().unwrap();
            if s.log.last().is_some_and(|l| l.rv > sent) {
                continue;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        s = wake
            .wait_timeout(s, (deadline - now).min(Duration::from_millis(200)))
            .unwrap()
            .0;
    }
    let hang = s.hang_watches;
    drop(s);
    if !hang {
        let _ = out.write_all(b"0\r\n\r\n");
    }
}
