//! Every registry fixture against the OpenAPI spec, and the replay server's own checks.
//!
//! For each route in `fixtures/registry/*/routes.json`, the spec decides: the path must be a
//! GET operation of the spec, each query parameter one the operation declares, the status one
//! it lists, and the body must validate against that status's response schema. The validator
//! covers what the spec's schemas use: `$ref`, `allOf`, `oneOf` with a discriminator, `type`,
//! `enum`, `required`, `minLength`, `items`, `additionalProperties`; and it is strict about
//! property names (a name no schema declares is an error), so a typo fails. `pattern` is not
//! checked.
//!
//! The spec is `fixtures/model-registry.openapi.json`, a JSON copy of
//! `fixtures/model-registry.openapi.yaml` (`.ci/run` checks that they are the same).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use serde_json::Value;

use crate::support::replay::{Replay, normalize, scenario_dir};

/// The spec, for the replay fixtures here and for the stateful registry
/// (`support/registry_fake.rs`), which checks every request and response against it.
pub(crate) struct Spec(pub(crate) Value);

impl Spec {
    pub(crate) fn load() -> Spec {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/model-registry.openapi.json");
        let text = std::fs::read_to_string(&path).expect("read the spec copy");
        Spec(serde_json::from_str(&text).expect("the spec copy is JSON"))
    }

    // Follows `$ref: "#/a/b"` (repeatedly).
    pub(crate) fn deref<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r.strip_prefix('#').expect("local $ref");
            v = self
                .0
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
        }
        v
    }

    // The path item whose template (`/a/{id}/b`) matches `path`.
    pub(crate) fn path_item(&self, path: &str) -> Option<&Value> {
        let want: Vec<&str> = path.split('/').collect();
        self.0["paths"]
            .as_object()?
            .iter()
            .find_map(|(template, item)| {
                let have: Vec<&str> = template.split('/').collect();
                let same = have.len() == want.len()
                    && have
                        .iter()
                        .zip(&want)
                        .all(|(h, w)| h == w || (h.starts_with('{') && !w.is_empty()));
                same.then_some(item)
            })
    }

    pub(crate) fn query_params(&self, item: &Value) -> HashSet<String> {
        let lists = [&item["parameters"], &item["get"]["parameters"]];
        lists
            .iter()
            .filter_map(|l| l.as_array())
            .flatten()
            .map(|p| self.deref(p))
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    }

    // Property names declared by a schema and its `allOf` parts; `true` when it allows more.
    fn declared(&self, schema: &Value, names: &mut HashSet<String>) -> bool {
        let schema = self.deref(schema);
        let mut open = schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false));
        if let Some(props) = schema["properties"].as_object() {
            names.extend(props.keys().cloned());
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            open |= self.declared(part, names);
        }
        open
    }

    pub(crate) fn validate(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        strict: bool,
        errs: &mut Vec<String>,
    ) {
        let schema = self.deref(schema);
        for part in schema["allOf"].as_array().into_iter().flatten() {
            self.validate(part, value, at, false, errs);
        }
        if let Some(branches) = schema["oneOf"].as_array() {
            match schema.get("discriminator") {
                Some(d) => {
                    let prop = d["propertyName"].as_str().unwrap();
                    let tag = value[prop].as_str().unwrap_or("");
                    match d["mapping"][tag].as_str() {
                        Some(r) => {
                            self.validate(&serde_json::json!({"$ref": r}), value, at, true, errs)
                        }
                        None => {
                            errs.push(format!("{at}: {prop} '{tag}' is none of the spec's kinds"))
                        }
                    }
                }
                None => {
                    let fits = branches
                        .iter()
                        .filter(|b| {
                            let mut e = Vec::new();
                            self.validate(b, value, at, true, &mut e);
                            e.is_empty()
                        })
                        .count();
                    if fits != 1 {
                        errs.push(format!("{at}: fits {fits} of the oneOf branches, not 1"));
                    }
                }
            }
        }
        if let Some(ty) = schema["type"].as_str() {
            let ok = match ty {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                errs.push(format!("{at}: expected {ty}, got {value}"));
                return;
            }
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            errs.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if let (Some(min), Some(s)) = (schema["minLength"].as_u64(), value.as_str())
            && (s.chars().count() as u64) < min
        {
            errs.push(format!("{at}: shorter than {min}"));
        }
        if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
            for (i, item) in list.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{i}]"), true, errs);
            }
        }
        let Some(obj) = value.as_object() else { return };
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap();
            if !obj.contains_key(key) {
                errs.push(format!("{at}: required property '{key}' is missing"));
            }
        }
        let props = schema["properties"].as_object();
        for (key, v) in obj {
            if let Some(p) = props.and_then(|p| p.get(key)) {
                self.validate(p, v, &format!("{at}.{key}"), true, errs);
            } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                self.validate(extra, v, &format!("{at}.{key}"), true, errs);
            }
        }
        if strict && schema.get("oneOf").is_none() {
            let mut names = HashSet::new();
            if !self.declared(schema, &mut names) {
                for key in obj.keys().filter(|k| !names.contains(*k)) {
                    errs.push(format!("{at}: property '{key}' is not in the spec"));
                }
            }
        }
    }

    /// Every problem with one route of a fixture.
    fn check_route(&self, key: &str, status: u16, body: &[u8]) -> Vec<String> {
        let normalized = normalize(key);
        let (method, target) = normalized.split_once(' ').unwrap();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if method != "GET" {
            return vec![format!("{key}: only GET is replayed")];
        }
        let Some(item) = self.path_item(path) else {
            return vec![format!("{key}: no such path in the spec")];
        };
        let mut errs = Vec::new();
        let known = self.query_params(item);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            if !known.contains(name) {
                errs.push(format!("{key}: query parameter '{name}' is not declared"));
            }
        }
        let Some(response) = item["get"]["responses"].get(status.to_string()) else {
            errs.push(format!("{key}: status {status} is not declared"));
            return errs;
        };
        let schema = &self.deref(response)["content"]["application/json"]["schema"];
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => self.validate(schema, &value, key, true, &mut errs),
            Err(e) => errs.push(format!("{key}: body is not JSON: {e}")),
        }
        errs
    }
}

// Each answer (status, body file) of a route value, which is one answer or a list of them.
fn answers(value: &Value) -> Vec<(u16, String)> {
    let one = |v: &Value| {
        (
            v["status"].as_u64().unwrap() as u16,
            v["body"].as_str().unwrap().to_string(),
        )
    };
    match value {
        Value::Array(list) => list.iter().map(one).collect(),
        v => vec![one(v)],
    }
}

#[test]
fn fixtures_match_the_openapi_spec() {
    let spec = Spec::load();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/registry");
    let mut scenarios = 0;
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !scenario_dir(&name).join("routes.json").exists() {
            continue;
        }
        scenarios += 1;
        let dir = scenario_dir(&name);
        let routes: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("routes.json")).unwrap())
                .unwrap();
        let mut checked: Vec<(String, u16, String)> = Vec::new();
        for (key, value) in routes["routes"].as_object().unwrap() {
            for (status, file) in answers(value) {
                checked.push((key.clone(), status, file));
            }
        }
        if let Some(auth) = routes.get("auth") {
            let first = routes["routes"].as_object().unwrap().keys().next().unwrap();
            let (status, file) = answers(auth).remove(0);
            checked.push((first.clone(), status, file));
        }
        let mut scenario_errs = Vec::new();
        for (key, status, file) in &checked {
            let body = std::fs::read(dir.join(file)).unwrap();
            scenario_errs.extend(
                spec.check_route(key, *status, &body)
                    .into_iter()
                    .map(|e| format!("{name}/{file}: {e}")),
            );
        }
        // A scenario marked off-spec must really be off-spec, and only it may be.
        match routes.get("off_spec") {
            Some(_) => assert!(
                !scenario_errs.is_empty(),
                "{name} is marked off_spec but conforms"
            ),
            None => problems.extend(scenario_errs),
        }
    }
    assert!(
        scenarios >= 10,
        "only {scenarios} scenarios found under {}",
        root.display()
    );
    assert!(
        problems.is_empty(),
        "fixtures that do not match the spec:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_validator_catches_typos_wrong_types_and_missing_fields() {
    let spec = Spec::load();
    let key = "GET /api/model_registry/v1alpha3/registered_models/1/versions?pageSize=50";
    let good = r#"{"items":[{"id":"2","name":"v1","registeredModelId":"1","createTimeSinceEpoch":"1","state":"LIVE"}],"size":1,"pageSize":50,"nextPageToken":""}"#;
    assert_eq!(
        spec.check_route(key, 200, good.as_bytes()),
        Vec::<String>::new()
    );

    let cases = [
        (
            good.replace("createTimeSinceEpoch", "createTimeSinceEpcoh"),
            "is not in the spec",
        ),
        (
            good.replace(r#""size":1"#, r#""size":"1""#),
            "expected integer",
        ),
        (
            good.replace(r#","nextPageToken":"""#, ""),
            "required property 'nextPageToken'",
        ),
        (good.replace(r#""LIVE""#, r#""GONE""#), "is not one of"),
        (
            good.replace(r#""registeredModelId":"1","#, ""),
            "required property 'registeredModelId'",
        ),
    ];
    for (body, want) in cases {
        let errs = spec.check_route(key, 200, body.as_bytes());
        assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
    }
    let errs = spec.check_route(&key.replace("pageSize", "page_size"), 200, good.as_bytes());
    assert!(
        errs.iter()
            .any(|e| e.contains("query parameter 'page_size' is not declared")),
        "{errs:?}"
    );
    let artifacts = "GET /api/model_registry/v1alpha3/model_versions/2/artifacts";
    let odd_kind = r#"{"items":[{"artifactType":"model-artefact","id":"3"}],"size":1,"pageSize":1,"nextPageToken":""}"#;
    let errs = spec.check_route(artifacts, 200, odd_kind.as_bytes());
    assert!(
        errs.iter().any(|e| e.contains("none of the spec's kinds")),
        "{errs:?}"
    );
}

#[test]
fn replay_normalizes_queries() {
    assert_eq!(
        normalize("GET /a?b=2&a=my%20model"),
        normalize("GET /a?a=my model&b=2")
    );
}

#[test]
#[should_panic(expected = "replay server got requests with no fixture")]
fn replay_fails_the_test_on_an_unexpected_request() {
    let replay = Replay::start("iris");
    let mut s = TcpStream::connect(replay.authority()).unwrap();
    s.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    drop(replay);
}
