//! mr-controller end to end: the real binary against the Kubernetes API stand-in
//! (`support/kube.rs`) and the stateful registry (`support/registry_fake.rs`), both on
//! 127.0.0.1. Each test is one of the contract's numbered scenarios (section 9) and checks the
//! registry's final state, the InferenceService's labels and finalizers, the requests made
//! and the Events. Every run's log is checked for the test's tokens (scenario 18).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::Spec;
use crate::support::kube::{Kube, isvc_path, object_path};
use crate::support::registry_fake::{self, Registry};
use crate::support::{TempDir, closed_port};

const TOKEN: &str = "kube-token-7f3a9c-secret";
const ROTATED: &str = "kube-token-rotated-d41e-secret";
const RM: &str = "modelregistry.kubeflow.org/registered-model-id";
const IS: &str = "modelregistry.kubeflow.org/inference-service-id";
const MV: &str = "modelregistry.kubeflow.org/model-version-id";
const NAME: &str = "modelregistry.kubeflow.org/name";
const NSL: &str = "modelregistry.kubeflow.org/namespace";
const URL: &str = "modelregistry.kubeflow.org/url";
const EXTERNAL: &str = "routing.kubeflow.org/external-address-rest";
const F: &str = "modelregistry.kubeflow.org/finalizer";
const KSERVE_F: &str = "inferenceservice.finalizers";
const WAIT: Duration = Duration::from_secs(30);

/// The stateful registry, checking everything against the spec copy in fixtures/.
fn registry(bearer: Option<&str>) -> Registry {
    Registry::start(Arc::new(SpecCheck(Spec::load())), bearer)
}

struct SpecCheck(Spec);

impl registry_fake::Spec for SpecCheck {
    fn path_item(&self, path: &str) -> Option<Value> {
        self.0.path_item(path).cloned()
    }

    fn query_params(&self, item: &Value) -> HashSet<String> {
        self.0.query_params(item)
    }

    fn deref(&self, value: &Value) -> Value {
        self.0.deref(value).clone()
    }

    fn validate(&self, schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>) {
        self.0.validate(schema, value, at, true, errs)
    }
}

/// A running controller; killed (by its pid) when dropped.
struct Ctl {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    probe: String,
    _dir: TempDir,
}

fn kubeconfig(dir: &Path, server: &str, user: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {server}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: me\nusers:\n- name: me\n  user:\n{user}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Ctl {
    /// The controller on `kube` with the token user, plus `env`.
    fn start(kube: &Kube, env: &[(&str, &str)]) -> Ctl {
        Ctl::start_as(kube, &format!("    token: {TOKEN}\n"), env, &[])
    }

    fn start_as(kube: &Kube, user: &str, env: &[(&str, &str)], args: &[&str]) -> Ctl {
        let dir = TempDir::new("ctl");
        let config = kubeconfig(dir.path(), &kube.url(), user);
        // A probe address in `args` is the one used; else a free port.
        let given = args
            .iter()
            .find_map(|a| a.strip_prefix("--health-probe-bind-address="));
        let probe = given
            .map(String::from)
            .unwrap_or_else(|| format!("127.0.0.1:{}", closed_port()));
        // MR_CONTROLLER_BIN: measure a release build instead (controller_measure_5000).
        let bin = std::env::var("MR_CONTROLLER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mr-controller").to_string());
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("RUST_LOG", "debug")
            .env("INFERENCE_SERVICE_CONTROLLER", "managed")
            .env("KUBECONFIG", &config)
            .env("RESYNC_PERIOD", "0")
            .env("POD_NAME", "mr-controller-test")
            .args(
                given
                    .is_none()
                    .then(|| format!("--health-probe-bind-address={probe}")),
            )
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start mr-controller");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let reader = {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        Ctl {
            child,
            log,
            reader: Some(reader),
            probe,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line holding `needle`; the whole log then.
    fn wait_log(&self, needle: &str) -> String {
        self.wait_log_within(needle, WAIT)
    }

    fn wait_log_within(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} in {limit:?}:\n{log}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the n-th log line holding `needle`.
    fn wait_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.log().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} {needle:?} in {WAIT:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// One GET to the probe listener: status and body.
    fn probe(&self, path: &str) -> (u16, String) {
        http_get(&self.probe, path)
    }

    /// Waits for the process to end by itself: its exit code and log.
    fn wait_exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.code(), self.log())
    }

    /// Stops it (by pid), checks its log holds no secret, and returns the log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let log = self.log();
        for secret in [TOKEN, ROTATED, "registry-token-9e2b", "PRIVATE KEY"] {
            assert!(
                !log.contains(secret),
                "the log holds a secret ({secret}):\n{log}"
            );
        }
        log
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET to a listener of the controller (retried until it listens): status and body.
fn http_get(address: &str, path: &str) -> (u16, String) {
    let deadline = Instant::now() + WAIT;
    let mut stream = loop {
        match TcpStream::connect(address) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("GET {address}{path}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// An InferenceService as a user writes it, with KServe's finalizer already on.
fn isvc(ns: &str, name: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": annotations,
            "finalizers": [KSERVE_F],
        },
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "sklearn"},
            "runtime": "kserve-sklearnserver",
            "storageUri": "model-registry://iris/v1",
        }}},
    })
}

/// The registry's Service in `ns`, whose external-address annotation points at `url`.
fn registry_service(ns: &str, name: &str, url: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"component": "model-registry"},
            "annotations": {EXTERNAL: url},
        },
        "spec": {"ports": [{"name": "http-api", "port": 8080, "targetPort": 8080}]},
    })
}

fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"]
        .as_array()
        .map(|l| l.iter().map(|f| f.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn label<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o["metadata"]["labels"][k].as_str()
}

/// The Events posted, as `reason: message`.
fn events(kube: &Kube) -> Vec<String> {
    kube.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path().ends_with("/events"))
        .map(|r| {
            let e: Value = serde_json::from_str(&r.body).unwrap();
            format!(
                "{} {}: {}",
                e["type"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect()
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

// The registry entity of the IS label now on `path`, once there is one.
fn registered(kube: &Kube, path: &str) -> Value {
    kube.wait_for(path, WAIT, |o| o.and_then(|o| label(o, IS)).is_some())
        .unwrap()
}

/// Scenario 1: RM + MV + name labels and a runtime → SE `team-a`, IS `iris/<uid>` with the
/// exact body, the IS label, our finalizer after KServe's.
#[test]
fn controller_1_create_registers_and_labels() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    kube.create(registry_service(
        "kubeflow",
        "model-registry-service",
        &reg.url(),
    ));
    let mut object = isvc(
        "team-a",
        "iris",
        json!({RM: "1", MV: "2", NAME: "model-registry-service", NSL: "kubeflow"}),
        json!({}),
    );
    object["status"] = json!({"url": "http://iris.team-a.example.com"});
    let object = kube.create(object);
    let uid = object["metadata"]["uid"].as_str().unwrap().to_string();
    let ctl = Ctl::start(&kube, &[]);
    let path = isvc_path("team-a", "iris");
    let done = registered(&kube, &path);
    ctl.wait_log("reconcile team-a/iris: registered is=");
    assert_eq!(finalizers(&done), [KSERVE_F, F]);

    let se = &reg.environments()[0];
    assert_eq!(se["name"], "team-a");
    let services = reg.inference_services();
    assert_eq!(services.len(), 1);
    let is = &services[0];
    assert_eq!(label(&done, IS), is["id"].as_str());
    let post = reg
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.target == "/inference_services")
        .unwrap();
    assert_eq!(
        post.body,
        json!({
            "name": format!("iris/{uid}"),
            "registeredModelId": "1",
            "servingEnvironmentId": se["id"],
            "desiredState": "DEPLOYED",
            "modelVersionId": "2",
            "runtime": "kserve-sklearnserver",
            "customProperties": {"url": {"metadataType": "MetadataStringValue", "string_value": "http://iris.team-a.example.com"}},
        })
    );
    assert_eq!(
        reg.keys()[..4],
        [
            "GET /serving_environment?name=team-a".to_string(),
            "POST /serving_environments".into(),
            format!(
                "GET /inference_service?name=iris/{uid}&parentResourceId={}",
                se["id"].as_str().unwrap()
            ),
            "POST /inference_services".into(),
        ]
    );
    let writes = kube.writes();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert!(writes[0].contains("\"finalizers\":[\"inferenceservice.finalizers\",\"modelregistry.kubeflow.org/finalizer\"]"), "{writes:#?}");
    assert!(
        writes[0].contains("fieldManager=mr-controller"),
        "{writes:#?}"
    );
    assert!(
        writes[1].contains(&format!(
            "\"labels\":{{\"{IS}\":\"{}\"}}",
            is["id"].as_str().unwrap()
        )),
        "{writes:#?}"
    );
    assert!(
        writes.iter().all(|w| w.contains("\"resourceVersion\"")),
        "{writes:#?}"
    );
    let events = events(&kube);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Normal Registered: InferenceService")),
        "{events:?}"
    );
    // The registry got the Kubernetes token (MODEL_REGISTRY_AUTH=kube), every time.
    assert!(
        reg.calls()
            .iter()
            .all(|c| c.authorization == format!("Bearer {TOKEN}"))
    );
    ctl.stop();
}

/// Scenario 1, minimal: no MV label, a custom predictor (no `spec.predictor.model`), no
/// `status.url`: a body without those fields, and no crash.
#[test]
fn controller_1_minimal_legacy_predictor() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let mut object = isvc(
        "team-b",
        "custom",
        json!({RM: "7"}),
        json!({URL: format!("{}/", reg.url())}),
    );
    object["spec"] = json!({"predictor": {"containers": [{"name": "kserve-container", "image": "example/model:1"}]}});
    let object = kube.create(object);
    let uid = object["metadata"]["uid"].as_str().unwrap();
    let ctl = Ctl::start(&kube, &[]);
    registered(&kube, &isvc_path("team-b", "custom"));
    let post = reg
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.target == "/inference_services")
        .unwrap();
    assert_eq!(
        post.body,
        json!({"name": format!("custom/{uid}"), "registeredModelId": "7", "servingEnvironmentId": reg.environments()[0]["id"], "desiredState": "DEPLOYED"})
    );
    ctl.stop();
}

/// Scenario 2: an IS label on a new ISVC links: no POST of an IS, the SE ensured, our
/// finalizer added, the url synced.
#[test]
fn controller_2_link_without_a_post() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let id = reg.seed_inference_service(json!({"name": "iris/old-uid", "registeredModelId": "1", "servingEnvironmentId": "99", "desiredState": "DEPLOYED"}));
    let mut object = isvc(
        "team-a",
        "iris",
        json!({IS: id, RM: "1"}),
        json!({URL: reg.url()}),
    );
    object["status"] = json!({"url": "http://iris.example"});
    kube.create(object);
    let ctl = Ctl::start(&kube, &[]);
    ctl.wait_log("reconcile team-a/iris: synced");
    let done = kube.get(&isvc_path("team-a", "iris")).unwrap();
    assert_eq!(finalizers(&done), [KSERVE_F, F]);
    assert_eq!(reg.environments()[0]["name"], "team-a");
    let is = &reg.inference_services()[0];
    assert_eq!(
        is["customProperties"]["url"]["string_value"],
        "http://iris.example"
    );
    let keys = reg.keys();
    assert!(
        !keys.iter().any(|k| k == "POST /inference_services"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("PATCH /inference_services/{id}")),
        "{keys:?}"
    );
    let events = events(&kube);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Normal RegistryUpdated: pushed url")),
        "{events:?}"
    );
    ctl.stop();
}

/// Scenario 3: `status.url` set, changed, removed → PATCHes keeping other properties, the
/// last `""`; an UNDEPLOYED IS relinked returns to DEPLOYED; a resync then sends nothing.
#[test]
fn controller_3_url_sync_and_relink() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    reg.seed_environment("team-a");
    let id = reg.seed_inference_service(json!({
        "name": "iris/u", "registeredModelId": "1", "servingEnvironmentId": "1", "desiredState": "UNDEPLOYED",
        "customProperties": {"owner": {"metadataType": "MetadataStringValue", "string_value": "team-a"}},
    }));
    let path = isvc_path("team-a", "iris");
    kube.create(isvc(
        "team-a",
        "iris",
        json!({IS: id}),
        json!({URL: reg.url()}),
    ));
    let ctl = Ctl::start(&kube, &[("RESYNC_PERIOD", "2s")]);
    ctl.wait_count("reconcile team-a/iris: synced", 1);
    let is = || reg.inference_services()[0].clone();
    assert_eq!(is()["desiredState"], "DEPLOYED", "relinked");
    for (n, url) in [
        (2, Some("http://a.example")),
        (3, Some("http://b.example")),
        (4, None),
    ] {
        kube.update(&path, |o| match url {
            Some(u) => o["status"] = json!({"url": u}),
            None => o["status"] = json!({}),
        });
        ctl.wait_count("reconcile team-a/iris: synced", n);
        let now = is();
        assert_eq!(
            now["customProperties"]["url"]["string_value"],
            url.unwrap_or("")
        );
        assert_eq!(
            now["customProperties"]["owner"]["string_value"], "team-a",
            "kept"
        );
    }
    let patches = |reg: &Registry| reg.keys().iter().filter(|k| k.starts_with("PATCH")).count();
    assert_eq!(patches(&reg), 4);
    let writes = kube.writes().len();
    // A resync pass after convergence writes nothing anywhere.
    let resyncs = ctl.log().matches("resync:").count();
    ctl.wait_count("resync:", resyncs + 1);
    ctl.wait_count("reconcile team-a/iris: unchanged", 1);
    assert_eq!(patches(&reg), 4);
    assert_eq!(kube.writes().len(), writes);
    ctl.stop();
}

// Creates team-a/iris through the controller; its path.
fn create_registered(kube: &Kube, reg: &Registry) -> String {
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    let path = isvc_path("team-a", "iris");
    registered(kube, &path);
    path
}

/// Scenario 4: deletion marks the IS UNDEPLOYED before our finalizer goes; the ISVC stays
/// until KServe drops its own.
#[test]
fn controller_4_delete_undeploys_first() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[]);
    let path = create_registered(&kube, &reg);
    kube.delete(&path);
    let after = kube.wait_for(&path, WAIT, |o| {
        o.is_some_and(|o| !finalizers(o).contains(&F.to_string()))
    });
    assert_eq!(finalizers(&after.unwrap()), [KSERVE_F]);
    assert_eq!(reg.inference_services()[0]["desiredState"], "UNDEPLOYED");
    assert!(
        reg.keys()
            .iter()
            .any(|k| k.starts_with("PATCH /inference_services/"))
    );
    kube.update(&path, |o| o["metadata"]["finalizers"] = json!([]));
    assert!(kube.get(&path).is_none());
    assert_eq!(reg.inference_services().len(), 1, "the IS is never deleted");
    ctl.wait_log("reconcile team-a/iris: undeployed");
    let events = events(&kube);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Normal Undeployed: InferenceService")),
        "{events:?}"
    );
    ctl.wait_log("reconcile team-a/iris: undeployed");
    ctl.stop();
}

/// Scenario 5: the registry down during a deletion: back in time → UNDEPLOYED; past
/// FINALIZER_TIMEOUT → our finalizer removed with a Warning.
#[test]
fn controller_5_registry_down_during_delete() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[("FINALIZER_TIMEOUT", "10m")]);
    let path = create_registered(&kube, &reg);
    reg.stopped(true);
    kube.delete(&path);
    ctl.wait_count("reconcile team-a/iris: retry in", 2);
    assert!(finalizers(&kube.get(&path).unwrap()).contains(&F.to_string()));
    reg.stopped(false);
    kube.wait_for(&path, WAIT, |o| {
        o.is_some_and(|o| finalizers(o) == [KSERVE_F])
    });
    assert_eq!(reg.inference_services()[0]["desiredState"], "UNDEPLOYED");
    ctl.stop();

    // Past the timeout.
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[("FINALIZER_TIMEOUT", "1s")]);
    let path = create_registered(&kube, &reg);
    reg.stopped(true);
    kube.delete(&path);
    kube.wait_for(&path, WAIT, |o| {
        o.is_some_and(|o| finalizers(o) == [KSERVE_F])
    });
    assert_eq!(reg.inference_services()[0]["desiredState"], "DEPLOYED");
    ctl.wait_log("reconcile team-a/iris: abandoned");
    let events = events(&kube);
    assert!(
        events
            .iter()
            .any(|e| e
                .starts_with("Warning RegistryUpdateAbandoned: gave up after FINALIZER_TIMEOUT")),
        "{events:?}"
    );
    ctl.wait_log("reconcile team-a/iris: abandoned");
    ctl.stop();
}

/// Scenario 6: the registry's Service deleted first → our finalizer removed on the first
/// pass, `RegistryNotFound`, no registry call.
#[test]
fn controller_6_registry_service_gone_first() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let svc = kube.create(registry_service(
        "kubeflow",
        "model-registry-service",
        &reg.url(),
    ));
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1", NAME: "model-registry-service"}),
        json!({}),
    ));
    let ctl = Ctl::start(&kube, &[]);
    let path = isvc_path("team-a", "iris");
    registered(&kube, &path);
    // The label write brings a read-only pass (SE and IS reads): let it end before the
    // registry's call log is cleared, or its reads land after the clear.
    ctl.wait_count("reconcile team-a/iris: unchanged", 1);
    kube.delete(&object_path(&svc));
    reg.clear_calls();
    kube.delete(&path);
    kube.wait_for(&path, WAIT, |o| {
        o.is_some_and(|o| finalizers(o) == [KSERVE_F])
    });
    assert_eq!(reg.keys(), Vec::<String>::new());
    ctl.wait_log("reconcile team-a/iris: released");
    let events = events(&kube);
    assert!(
        events.iter().any(|e| e.starts_with("Warning RegistryNotFound: no Service 'model-registry-service' in namespace kubeflow: finalizer removed without an update")),
        "{events:?}"
    );
    ctl.stop();
}

/// Scenario 7: the controller killed right after the IS POST → the next run adopts that IS
/// (one IS); deleted instead before the next run → UNDEPLOYED, no POST.
#[test]
fn controller_7_crash_after_post() {
    for delete_meanwhile in [false, true] {
        let kube = Kube::start(Some(TOKEN));
        let reg = registry(Some(TOKEN));
        let ctl = Ctl::start(&kube, &[]);
        let pid = ctl.child.id();
        reg.after_post(move |entity| {
            if entity["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("iris/"))
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        let path = isvc_path("team-a", "iris");
        kube.create(isvc(
            "team-a",
            "iris",
            json!({RM: "1"}),
            json!({URL: reg.url()}),
        ));
        wait_until("the IS POST", || reg.inference_services().len() == 1);
        let log = ctl.stop();
        assert!(!log.contains("registered"), "{log}");
        assert!(label(&kube.get(&path).unwrap(), IS).is_none());
        reg.after_post(|_| {});
        reg.clear_calls();
        if delete_meanwhile {
            kube.delete(&path);
        }
        let ctl = Ctl::start(&kube, &[]);
        if delete_meanwhile {
            kube.wait_for(&path, WAIT, |o| {
                o.is_some_and(|o| finalizers(o) == [KSERVE_F])
            });
            assert_eq!(reg.inference_services()[0]["desiredState"], "UNDEPLOYED");
        } else {
            registered(&kube, &path);
            ctl.wait_log("(adopted)");
        }
        assert_eq!(reg.inference_services().len(), 1);
        assert!(
            !reg.keys()
                .iter()
                .any(|k| k.starts_with("POST /inference_services")),
            "{:?}",
            reg.keys()
        );
        ctl.stop();
    }
}

/// The ISVC vanishes (its finalizers stripped and deleted) between the IS POST and the id
/// label's write: the label PATCH finds it gone (404), and the pass ends `gone` (the
/// contract's R0) with no `Registered` Event; the IS it made stays, alone.
#[test]
fn controller_7_isvc_gone_before_its_label() {
    let kube = Arc::new(Kube::start(Some(TOKEN)));
    let reg = registry(Some(TOKEN));
    let path = isvc_path("team-a", "iris");
    {
        let (kube, path) = (kube.clone(), path.clone());
        reg.after_post(move |entity| {
            if entity["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("iris/"))
            {
                kube.update(&path, |o| {
                    o["metadata"]["deletionTimestamp"] = json!("2026-11-29T20:01:00Z");
                    o["metadata"]["finalizers"] = json!([]);
                });
            }
        });
    }
    let ctl = Ctl::start(&kube, &[]);
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    ctl.wait_log("reconcile team-a/iris: gone (deleted before its label was written; IS ");
    let log = ctl.stop();
    assert!(kube.get(&path).is_none());
    assert!(
        kube.writes()
            .iter()
            .any(|w| w.starts_with(&format!("PATCH {path}")) && w.contains(IS)),
        "the label write was tried: {:#?}",
        kube.writes()
    );
    assert!(!log.contains("reconcile team-a/iris: registered"), "{log}");
    assert!(
        !events(&kube).iter().any(|e| e.contains("Registered")),
        "{:#?}",
        events(&kube)
    );
    let entities = reg.inference_services();
    assert_eq!(entities.len(), 1, "{entities:#?}");
    assert_eq!(entities[0]["desiredState"], "DEPLOYED");
}

/// Scenario 8: a 500 on the IS find is not absence (no POST until it answers); a 409 on the
/// create (the IS exists after all) is answered by finding it again and adopting it.
#[test]
fn controller_8_find_error_is_not_absence() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    reg.fail("GET", "/inference_service", 500, 2);
    let ctl = Ctl::start(&kube, &[]);
    let path = create_registered(&kube, &reg);
    let keys = reg.keys();
    let first_post = keys
        .iter()
        .position(|k| k == "POST /inference_services")
        .unwrap();
    let finds = keys
        .iter()
        .take(first_post)
        .filter(|k| k.starts_with("GET /inference_service?"))
        .count();
    assert_eq!(finds, 3, "two failed finds, then a 404: {keys:?}");
    assert_eq!(reg.inference_services().len(), 1);
    ctl.wait_log("reconcile team-a/iris: retry in");
    ctl.stop();
    drop(path);

    // 409 on create → adopted.
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let se = reg.seed_environment("team-a");
    let object = kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    let uid = object["metadata"]["uid"].as_str().unwrap();
    let id = reg.seed_inference_service(json!({"name": format!("iris/{uid}"), "registeredModelId": "1", "servingEnvironmentId": se, "desiredState": "DEPLOYED"}));
    reg.fail("GET", "/inference_service", 404, 1);
    let ctl = Ctl::start(&kube, &[]);
    let done = registered(&kube, &isvc_path("team-a", "iris"));
    assert_eq!(label(&done, IS), Some(id.as_str()));
    assert_eq!(reg.inference_services().len(), 1);
    ctl.wait_log("(adopted)");
    ctl.stop();
}

/// Scenario 9: 409 on the finalizer's add and removal while KServe's finalizers change:
/// none is ever lost.
#[test]
fn controller_9_conflicts_lose_no_finalizer() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    kube.conflict_next_patches(2);
    let ctl = Ctl::start(&kube, &[]);
    let path = create_registered(&kube, &reg);
    assert_eq!(finalizers(&kube.get(&path).unwrap()), [KSERVE_F, F]);
    kube.update(&path, |o| {
        o["metadata"]["finalizers"] = json!([KSERVE_F, F, "kserve.io/other"])
    });
    kube.conflict_next_patches(2);
    kube.delete(&path);
    let after = kube.wait_for(&path, WAIT, |o| {
        o.is_some_and(|o| !finalizers(o).contains(&F.to_string()))
    });
    assert_eq!(finalizers(&after.unwrap()), [KSERVE_F, "kserve.io/other"]);
    let conflicts = kube
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert!(
        conflicts >= 6,
        "2 + 2 refused patches and the 3 that passed: {conflicts}"
    );
    ctl.stop();
}

/// Scenario 10: unlabeled InferenceServices cost no registry request and no write; status
/// churn on a converged one costs no GET.
#[test]
fn controller_10_unlabeled_and_status_churn_cost_nothing() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    for n in 0..3 {
        kube.create(isvc("team-a", &format!("plain-{n}"), json!({}), json!({})));
    }
    let ctl = Ctl::start(&kube, &[]);
    let path = create_registered(&kube, &reg);
    ctl.wait_count("reconcile team-a/iris: unchanged", 1);
    let gets = |kube: &Kube| {
        kube.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path().starts_with(&isvc_path("team-a", "")))
            .count()
    };
    let before = gets(&kube);
    for n in 0..5 {
        kube.update(&path, |o| {
            o["status"]["conditions"] = json!([{"type": "Ready", "status": n.to_string()}])
        });
        kube.update(&isvc_path("team-a", "plain-0"), |o| {
            o["status"]["url"] = json!(format!("http://p{n}"))
        });
    }
    // A sentinel after the churn: once it is done, the churn's events were seen.
    kube.create(isvc(
        "team-b",
        "sentinel",
        json!({RM: "2"}),
        json!({URL: reg.url()}),
    ));
    registered(&kube, &isvc_path("team-b", "sentinel"));
    assert_eq!(gets(&kube), before, "status churn read nothing");
    for n in 0..3 {
        let p = isvc_path("team-a", &format!("plain-{n}"));
        assert!(
            kube.requests().iter().all(|r| r.path() != p),
            "{p} was read or written"
        );
        assert_eq!(finalizers(&kube.get(&p).unwrap()), [KSERVE_F]);
    }
    assert!(reg.calls().iter().all(|c| !c.target.contains("plain")));
    ctl.stop();
}

/// Scenario 11: labels removed under our finalizer → it is removed (`Unlinked`); a
/// malformed id → `InvalidLabel`, no registry call, no finalizer.
#[test]
fn controller_11_unlinked_and_malformed() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[]);
    let path = create_registered(&kube, &reg);
    kube.update(&path, |o| o["metadata"]["labels"] = json!({}));
    kube.wait_for(&path, WAIT, |o| {
        o.is_some_and(|o| finalizers(o) == [KSERVE_F])
    });
    ctl.wait_log("reconcile team-a/iris: unlinked");
    reg.clear_calls();
    let bad = isvc("team-a", "bad", json!({RM: "01x"}), json!({URL: reg.url()}));
    kube.create(bad);
    ctl.wait_log("reconcile team-a/bad: invalid label");
    assert_eq!(
        finalizers(&kube.get(&isvc_path("team-a", "bad")).unwrap()),
        [KSERVE_F]
    );
    assert_eq!(reg.keys(), Vec::<String>::new());
    let events = events(&kube);
    assert!(
        events.iter().any(|e| e.starts_with("Normal Unlinked:")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with(
            "Warning InvalidLabel: label modelregistry.kubeflow.org/registered-model-id=\"01x\""
        )),
        "{events:?}"
    );
    ctl.stop();
}

/// Scenario 12: how a registry is found: the `http-api` port's in-cluster URL (through a
/// proxy that maps it to the registry), an empty annotation counting as absent, two or no
/// `component=model-registry` Services, no `http-api` port, a bad annotation.
#[test]
fn controller_12_url_matrix() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let proxy = crate::support::proxy::Proxy::start_mapped(&[(
        "model-registry-service.kubeflow.svc.cluster.local:8080",
        reg.authority(),
    )]);
    let mut svc = registry_service("kubeflow", "model-registry-service", "");
    svc["metadata"]["annotations"] = json!({});
    kube.create(svc);
    // An empty URL annotation and an empty namespace label count as absent.
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1", NSL: ""}),
        json!({URL: ""}),
    ));
    let mut two = registry_service("ns2", "a", "http://a");
    kube.create(two.clone());
    two["metadata"]["name"] = json!("b");
    kube.create(two);
    kube.create(isvc(
        "team-a",
        "two",
        json!({RM: "1", NSL: "ns2"}),
        json!({}),
    ));
    kube.create(isvc(
        "team-a",
        "none",
        json!({RM: "1", NSL: "empty"}),
        json!({}),
    ));
    let mut portless = registry_service("ns3", "mr", "");
    portless["metadata"]["annotations"] = json!({});
    portless["spec"]["ports"] = json!([{"name": "grpc-api", "port": 9090}]);
    kube.create(portless);
    kube.create(isvc(
        "team-a",
        "portless",
        json!({RM: "1", NSL: "ns3"}),
        json!({}),
    ));
    // A registry behind a gateway's path prefix, named by the annotation.
    let gateway = registry(Some(TOKEN));
    gateway.prefixed("/mr");
    kube.create(isvc(
        "team-a",
        "prefixed",
        json!({RM: "1"}),
        json!({URL: format!("{}/mr/", gateway.url())}),
    ));
    kube.create(isvc(
        "team-a",
        "badurl",
        json!({RM: "1"}),
        json!({URL: "mr:8080"}),
    ));
    let ctl = Ctl::start(&kube, &[("HTTP_PROXY", &proxy.url())]);
    registered(&kube, &isvc_path("team-a", "iris"));
    registered(&kube, &isvc_path("team-a", "prefixed"));
    assert_eq!(gateway.inference_services().len(), 1);
    assert!(
        proxy
            .targets()
            .iter()
            .all(|t| t == "CONNECT model-registry-service.kubeflow.svc.cluster.local:8080"),
        "{:?}",
        proxy.targets()
    );
    ctl.wait_log("reconcile team-a/badurl: invalid");
    ctl.wait_log("reconcile team-a/two: registry-not-found 2 Services with the label component=model-registry in namespace ns2: name one with the label modelregistry.kubeflow.org/name");
    ctl.wait_log("reconcile team-a/none: registry-not-found no Service with the label component=model-registry in namespace empty");
    ctl.wait_log(
        "reconcile team-a/portless: registry-not-found Service ns3/mr has no port named http-api",
    );
    for name in ["two", "none", "portless", "badurl"] {
        assert_eq!(
            finalizers(&kube.get(&isvc_path("team-a", name)).unwrap()),
            [KSERVE_F],
            "{name}: no finalizer without a registry"
        );
    }
    let events = events(&kube);
    assert!(
        events.iter().any(|e| e.starts_with(
            "Warning InvalidRegistryURL: annotation modelregistry.kubeflow.org/url: 'mr:8080'"
        )),
        "{events:?}"
    );
    ctl.stop();
}

/// Scenarios 12 and 18: a URL annotation carrying credentials (userinfo, a query) is refused
/// as an invalid registry URL, and neither the log nor the Event repeats them.
#[test]
fn controller_18_credentials_in_a_url_annotation_are_not_repeated() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[]);
    for (name, url) in [
        ("userinfo", "http://admin:hunter2-pass@127.0.0.1:1"),
        ("user", "https://hunter2-token@127.0.0.1:1/mr"),
        ("query", "http://127.0.0.1:1/mr?token=hunter2-query"),
        ("scheme", "ftp://admin:hunter2-ftp@127.0.0.1:1"),
    ] {
        kube.create(isvc("team-a", name, json!({RM: "1"}), json!({URL: url})));
        ctl.wait_log(&format!("reconcile team-a/{name}: invalid"));
    }
    let events = events(&kube);
    let log = ctl.stop();
    assert!(!log.contains("hunter2"), "{log}");
    assert!(events.iter().all(|e| !e.contains("hunter2")), "{events:?}");
    let invalid: Vec<&String> = events
        .iter()
        .filter(|e| {
            e.starts_with("Warning InvalidRegistryURL: annotation modelregistry.kubeflow.org/url: ")
        })
        .collect();
    assert_eq!(invalid.len(), 4, "{events:?}");
    assert!(
        invalid
            .iter()
            .any(|e| e.contains("'http://admin:<redacted>@127.0.0.1:1'")),
        "{events:?}"
    );
    assert_eq!(reg.keys(), Vec::<String>::new());
}

/// Scenario 12, the external-address annotation without a scheme: the registry Service named
/// by the name and namespace labels says `127.0.0.1:PORT`, which is reached as
/// `https://127.0.0.1:PORT` (TLS checked against MODEL_REGISTRY_CA_FILE).
#[test]
fn controller_12_external_address_without_a_scheme_is_https() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let dir = TempDir::new("external");
    let certs = crate::support::tls::make_certs(dir.path());
    let tls = crate::support::tls::TlsProxy::start(
        &certs,
        reg.url().rsplit(':').next().unwrap().parse().unwrap(),
    );
    let address = format!("127.0.0.1:{}", tls.port);
    kube.create(registry_service("mr-ns", "edge", &address));
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1", NAME: "edge", NSL: "mr-ns"}),
        json!({}),
    ));
    let ca = certs.ca.display().to_string();
    let ctl = Ctl::start(&kube, &[("MODEL_REGISTRY_CA_FILE", &ca)]);
    registered(&kube, &isvc_path("team-a", "iris"));
    // The pass logs its line after the label write (and its Event): wait for it, or the
    // stop can come first.
    ctl.wait_log(&format!(" se=1 registry=https://{address}"));
    ctl.stop();
    assert_eq!(reg.inference_services().len(), 1);
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path() == "/api/v1/namespaces/mr-ns/services/edge"),
        "the Service named by the labels was read"
    );
}

fn lists(kube: &Kube) -> usize {
    kube.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path().ends_with("/inferenceservices") && !r.is_watch())
        .count()
}

/// Scenario 13: compacted history (an `ERROR` 410 event) and HTTP 410 → a relist and every
/// change reconciled; a cut stream after a bookmark → a re-watch from the bookmark's
/// resourceVersion, no LIST.
#[test]
fn controller_13_watch_410_cut_and_bookmark() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[]);
    ctl.wait_log("watching");
    assert_eq!(lists(&kube), 1);
    // A bookmark, then a cut: re-watch from the bookmark, no list.
    let rv = kube.bookmark();
    ctl.wait_log(&format!("bookmark at {rv}"));
    kube.cut_watches();
    wait_until("a re-watch from the bookmark", || {
        kube.requests()
            .iter()
            .any(|r| r.is_watch() && r.query("resourceVersion") == Some(rv.to_string()))
    });
    assert_eq!(lists(&kube), 1);
    // Compacted history: ERROR 410 → relist; the change made meanwhile is reconciled.
    // (The open watch is held silent while the change is made and the history dropped.)
    kube.hang_watches(true);
    kube.create(isvc(
        "team-a",
        "during",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    kube.compact();
    kube.hang_watches(false);
    kube.cut_watches();
    registered(&kube, &isvc_path("team-a", "during"));
    wait_until("a relist after ERROR 410", || lists(&kube) >= 2);
    // HTTP 410 on the watch → relist.
    kube.http_410_next_watch();
    kube.cut_watches();
    wait_until("a relist after HTTP 410", || lists(&kube) >= 3);
    kube.create(isvc(
        "team-a",
        "after",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    registered(&kube, &isvc_path("team-a", "after"));
    let log = ctl.stop();
    assert!(log.contains("listing again"), "{log}");
}

/// Scenario 13, a hung stream: the open watch goes silent and stays open past its
/// `timeoutSeconds` (a half-dead connection). The controller gives up on it after
/// `timeoutSeconds` plus the grace (`WATCH_TIMEOUT_SECONDS=4`: 4 s more, 8 s in all), watches
/// again from the last resourceVersion with no LIST, and the change made meanwhile is
/// reconciled.
#[test]
fn controller_13_hung_watch_replaced() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[("WATCH_TIMEOUT_SECONDS", "4")]);
    ctl.wait_log("watching");
    let watches = |kube: &Kube| -> Vec<(String, String)> {
        kube.requests()
            .iter()
            .filter(|r| r.is_watch())
            .map(|r| {
                (
                    r.query("resourceVersion").unwrap_or_default(),
                    r.query("timeoutSeconds").unwrap_or_default(),
                )
            })
            .collect()
    };
    wait_until("the first watch", || watches(&kube).len() == 1);
    let (rv, timeout) = watches(&kube)[0].clone();
    assert_eq!(
        timeout, "4",
        "WATCH_TIMEOUT_SECONDS is the watch's timeoutSeconds"
    );
    // Just opened, the first watch has 4 s before the server would end it: it is the one
    // stalled.
    kube.stall_watches();
    kube.create(isvc(
        "team-a",
        "during",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    // The stalled watch delivers nothing: only its replacement can bring the change.
    kube.wait_for(&isvc_path("team-a", "during"), WAIT, |o| {
        o.and_then(|o| label(o, IS)).is_some()
    });
    let watches = watches(&kube);
    assert!(watches.len() >= 2, "a replacement watch: {watches:?}");
    assert_eq!(
        watches[1].0, rv,
        "the replacement starts at the last resourceVersion"
    );
    assert_eq!(lists(&kube), 1, "no relist for a hung stream");
    let log = ctl.stop();
    // A clean end re-watches without the back-off's " in <wait>": this is the deadline.
    assert!(
        log.contains(&format!("watching again from {rv} in")),
        "{log}"
    );
    assert_eq!(reg.inference_services().len(), 1);
}

/// The watch back-off's waits as the log gives them (`… in 812.3ms`), in order.
fn watch_waits(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(" WARN watch in all namespaces: "))
        .filter_map(|l| l.rsplit_once(" in "))
        .map(|(_, wait)| match wait.strip_suffix("ms") {
            Some(ms) => ms.parse::<f64>().unwrap() / 1000.0,
            None => wait.strip_suffix('s').unwrap().parse().unwrap(),
        })
        .collect()
}

/// Asserts each logged wait is the back-off's `step` (1: 0.8 s, 2: 1.6 s, 3: 3.2 s) ±20 %.
fn assert_steps(waits: &[f64], steps: &[u32], log: &str) {
    let want: Vec<f64> = steps
        .iter()
        .map(|n| 0.8 * f64::from(1 << (n - 1)))
        .collect();
    assert_eq!(waits.len(), want.len(), "{waits:?}\n{log}");
    for (wait, want) in waits.iter().zip(&want) {
        assert!(
            (want * 0.79..=want * 1.21).contains(wait),
            "waits {waits:?}, steps {steps:?}\n{log}"
        );
    }
}

/// The watch back-off starts again from its first step after a watch that ended cleanly,
/// even when `WATCH_TIMEOUT_SECONDS` is far under the 60 s that also reset it: two failed
/// watches (0.8 s, 1.6 s), a clean one, two more failed (0.8 s, 1.6 s again, not 3.2 s).
#[test]
fn controller_13_watch_backoff_resets_after_a_clean_watch() {
    let kube = Kube::start(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[("WATCH_TIMEOUT_SECONDS", "1")]);
    ctl.wait_log("watching");
    let collection = "/apis/serving.kserve.io/v1beta1/inferenceservices";
    let failed = "HTTP 500: injected by the test; watching again from";
    kube.fail("GET", collection, 500, 2);
    ctl.wait_count(failed, 2);
    // A watch that the server ends at its timeoutSeconds, after the second failure.
    wait_until("a clean watch after the failures", || {
        let log = ctl.log();
        let second = log.match_indices(failed).nth(1).unwrap().0;
        log[second..].contains("ended; watching again")
    });
    kube.fail("GET", collection, 500, 2);
    ctl.wait_count(failed, 4);
    let log = ctl.stop();
    assert_steps(&watch_waits(&log), &[1, 2, 1, 2], &log);
    assert_eq!(lists(&kube), 1, "failed watches re-watch, never relist");
}

/// A watch that delivered a BOOKMARK was a healthy one: when it then breaks, the back-off
/// starts again from its first step (0.8 s, not the 6.4 s that three failures before it
/// would make the fourth).
#[test]
fn controller_13_watch_backoff_resets_after_a_bookmark() {
    let kube = Kube::start(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[]);
    ctl.wait_log("watching");
    let collection = "/apis/serving.kserve.io/v1beta1/inferenceservices";
    let warned = " WARN watch in all namespaces: ";
    // The open watch brings a bookmark (so it is surely open), then is cut: one failure.
    let rv = kube.bookmark();
    ctl.wait_log(&format!("bookmark at {rv}"));
    kube.fail("GET", collection, 500, 2);
    kube.cut_watches();
    // The cut and the two 500s: three failures; then a watch that stays open.
    ctl.wait_count(warned, 3);
    let rv = kube.bookmark();
    ctl.wait_log(&format!("bookmark at {rv}"));
    kube.cut_watches();
    ctl.wait_count(warned, 4);
    let log = ctl.stop();
    assert_steps(&watch_waits(&log), &[1, 2, 3, 1], &log);
}

/// Scenario 14: the kubeconfig's token file replaced and the old token revoked → the
/// Kubernetes API and the registry both get the new one.
#[test]
fn controller_14_token_rotation() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(None);
    let dir = TempDir::new("token");
    let file = dir.path().join("token");
    std::fs::write(&file, TOKEN).unwrap();
    let ctl = Ctl::start_as(
        &kube,
        &format!("    tokenFile: {}\n", file.display()),
        &[],
        &[],
    );
    ctl.wait_log("watching");
    std::fs::write(&file, ROTATED).unwrap();
    kube.accept_token(ROTATED);
    kube.revoke_token(TOKEN);
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    registered(&kube, &isvc_path("team-a", "iris"));
    let last = kube.requests().last().unwrap().authorization.clone();
    assert_eq!(last, format!("Bearer {ROTATED}"));
    let calls = reg.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.authorization == format!("Bearer {ROTATED}")),
        "{calls:#?}"
    );
    ctl.stop();
}

/// Scenario 14, in a pod: the API server over TLS on 127.0.0.1 checked against the service
/// account's CA (for the IP), its token rotated on disk and the old one revoked.
#[test]
fn controller_14_in_cluster_token_rotation() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(ROTATED));
    let dir = TempDir::new("sa");
    let certs = crate::support::tls::make_certs(dir.path());
    let port: u16 = kube.url().rsplit(':').next().unwrap().parse().unwrap();
    let tls = crate::support::tls::TlsProxy::start(&certs, port);
    let sa = dir.path().join("sa");
    std::fs::create_dir(&sa).unwrap();
    std::fs::copy(&certs.ca, sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("token"), TOKEN).unwrap();
    let tls_port = tls.port.to_string();
    let sa_dir = sa.display().to_string();
    let ctl = Ctl::start(
        &kube,
        &[
            ("KUBECONFIG", ""),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &tls_port),
            ("MR_CONTROLLER_SA_DIR", &sa_dir),
        ],
    );
    ctl.wait_log("watching");
    assert!(
        ctl.log().contains("Kubernetes API in-cluster"),
        "{}",
        ctl.log()
    );
    std::fs::write(sa.join("token"), ROTATED).unwrap();
    kube.accept_token(ROTATED);
    kube.revoke_token(TOKEN);
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    registered(&kube, &isvc_path("team-a", "iris"));
    let calls = reg.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.authorization == format!("Bearer {ROTATED}")),
        "{calls:#?}"
    );
    ctl.stop();
}

/// Scenario 15: `WATCH_NAMESPACES=a,b` → only namespaced paths; switched off → no Kubernetes
/// request at all, probes ready.
#[test]
fn controller_15_modes() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    kube.create(isvc(
        "c",
        "other",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    let ctl = Ctl::start(&kube, &[("WATCH_NAMESPACES", "a,b")]);
    kube.create(isvc("b", "iris", json!({RM: "1"}), json!({URL: reg.url()})));
    registered(&kube, &isvc_path("b", "iris"));
    ctl.stop();
    let paths: Vec<String> = kube
        .requests()
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    assert!(
        paths
            .iter()
            .all(|p| p.contains("/namespaces/a/") || p.contains("/namespaces/b/")),
        "{paths:#?}"
    );
    assert!(label(&kube.get(&isvc_path("c", "other")).unwrap(), IS).is_none());

    let kube = Kube::start(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[("INFERENCE_SERVICE_CONTROLLER", "")]);
    ctl.wait_log("probes only");
    assert_eq!(ctl.probe("/readyz"), (200, "ok".into()));
    assert_eq!(ctl.probe("/healthz"), (200, "ok".into()));
    ctl.stop();
    assert_eq!(kube.requests().len(), 0);
}

/// Scenario 16: `/readyz` 503 (naming the cause) until a list succeeds, `/metrics` parses;
/// of two `--leader-elect` processes only the holder works, and the other takes over when
/// it is killed.
#[test]
fn controller_16_probes_metrics_lease() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    kube.fail(
        "GET",
        "/apis/serving.kserve.io/v1beta1/inferenceservices",
        403,
        1,
    );
    let metrics_address = format!("127.0.0.1:{}", closed_port());
    let ctl = Ctl::start_as(
        &kube,
        &format!("    token: {TOKEN}\n"),
        &[],
        &[&format!("--metrics-bind-address={metrics_address}")],
    );
    ctl.wait_log("cannot list or watch InferenceServices in all namespaces: HTTP 403");
    let (status, body) = ctl.probe("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("RBAC"), "{body}");
    // The contract's retry after a 403 is 30 s.
    ctl.wait_log_within("watching", Duration::from_secs(45));
    assert_eq!(ctl.probe("/readyz").0, 200);
    create_registered(&kube, &reg);
    ctl.wait_log("reconcile team-a/iris: registered");
    let (status, metrics) = http_get(&metrics_address, "/metrics");
    assert_eq!(status, 200);
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(
            series.chars().next().unwrap().is_ascii_alphabetic(),
            "{line}"
        );
    }
    assert!(
        metrics.contains(
            "controller_runtime_reconcile_total{controller=\"inferenceservice\",result=\"success\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "mr_controller_registry_requests_total{op=\"create_inference_service\",code=\"201\"} 1"
        ),
        "{metrics}"
    );
    ctl.stop();

    // Leader election.
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let env = [("POD_NAMESPACE", "kubeflow")];
    let first = Ctl::start_as(
        &kube,
        &format!("    token: {TOKEN}\n"),
        &env,
        &["--leader-elect"],
    );
    first.wait_log("holding the Lease");
    let second = Ctl::start_as(
        &kube,
        &format!("    token: {TOKEN}\n"),
        &env,
        &["--leader-elect"],
    );
    second.wait_log("waiting for the Lease");
    assert_eq!(second.probe("/readyz").0, 200, "standing by is ready");
    create_registered(&kube, &reg);
    first.wait_log("reconcile team-a/iris: registered");
    let lease = kube
        .get("/apis/coordination.k8s.io/v1/namespaces/kubeflow/leases/a7d60e25.kubeflow.org")
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .starts_with("mr-controller-test_")
    );
    first.stop();
    second.wait_log("holding the Lease");
    kube.create(isvc(
        "team-a",
        "second",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    registered(&kube, &isvc_path("team-a", "second"));
    second.wait_log("reconcile team-a/second: registered");
    let log = second.stop();
    assert!(log.contains("reconcile team-a/second: registered"), "{log}");
    assert!(!log.contains("reconcile team-a/iris: registered"), "{log}");
}

/// Scenario 16, where `/metrics` is served: nowhere with `--metrics-bind-address=0` (the
/// default); only on its own address when that differs from the probes' (which then answers
/// only the probes); on the one listener when both addresses are the same.
#[test]
fn controller_16_metrics_only_where_asked() {
    let kube = Kube::start(Some(TOKEN));
    let user = format!("    token: {TOKEN}\n");
    for off in [None, Some("--metrics-bind-address=0")] {
        let ctl = Ctl::start_as(&kube, &user, &[], off.as_slice());
        ctl.wait_log("watching");
        assert_eq!(ctl.probe("/metrics").0, 404, "{off:?}");
        assert_eq!(ctl.probe("/healthz"), (200, "ok".into()));
        let log = ctl.stop();
        assert!(
            log.contains("serving /healthz, /readyz on 127.0.0.1:"),
            "{log}"
        );
        assert!(!log.contains("/metrics"), "{log}");
    }

    let metrics = format!("127.0.0.1:{}", closed_port());
    let ctl = Ctl::start_as(
        &kube,
        &user,
        &[],
        &[&format!("--metrics-bind-address={metrics}")],
    );
    ctl.wait_log("watching");
    let (status, body) = http_get(&metrics, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("workqueue_depth{name=\"inferenceservice\"} "),
        "{body}"
    );
    assert_eq!(ctl.probe("/metrics").0, 404, "not on the probe address too");
    assert_eq!(ctl.probe("/readyz"), (200, "ok".into()));
    assert_eq!(http_get(&metrics, "/healthz").0, 404);
    assert_eq!(http_get(&metrics, "/readyz").0, 404);
    let log = ctl.stop();
    assert!(
        log.contains(&format!("serving /metrics on {metrics}")),
        "{log}"
    );

    // One address: one listener (a second bind of it would fail) serving both.
    let both = format!("127.0.0.1:{}", closed_port());
    let ctl = Ctl::start_as(
        &kube,
        &user,
        &[],
        &[
            &format!("--health-probe-bind-address={both}"),
            &format!("--metrics-bind-address={both}"),
        ],
    );
    ctl.wait_log("watching");
    assert_eq!(ctl.probe("/healthz"), (200, "ok".into()));
    assert_eq!(ctl.probe("/readyz"), (200, "ok".into()));
    let (status, body) = ctl.probe("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("workqueue_depth"), "{body}");
    let log = ctl.stop();
    assert!(
        log.contains(&format!("serving /healthz, /readyz, /metrics on {both}")),
        "{log}"
    );
}

/// A busy `--metrics-bind-address` or `--health-probe-bind-address` is a fatal
/// configuration: exit 1, the last line naming the flag, the address and the reason, before
/// any Kubernetes call.
#[test]
fn controller_16_busy_address_exits_1_naming_its_flag() {
    let kube = Kube::start(Some(TOKEN));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    for flag in ["--metrics-bind-address", "--health-probe-bind-address"] {
        let ctl = Ctl::start_as(
            &kube,
            &format!("    token: {TOKEN}\n"),
            &[],
            &[&format!("{flag}={address}")],
        );
        let (code, log) = ctl.wait_exit();
        assert_eq!(code, Some(1), "{log}");
        let last = log.lines().last().unwrap_or("");
        let expected = format!("error: cannot listen for {flag} on '{address}': ");
        assert!(last.starts_with(&expected), "{last:?}, not {expected:?}");
        assert!(last.contains("in use"), "{last}");
    }
    assert_eq!(kube.requests().len(), 0);
    drop(busy);
}

/// A client that connects to the probe listener and sends nothing (several, even) does not
/// delay `/healthz`: it is answered while they are still open. Beyond 16 open connections
/// one more is closed unanswered, and once they go, probes are answered again.
#[test]
fn controller_16_silent_clients_delay_no_probe() {
    use std::io::ErrorKind;
    let kube = Kube::start(Some(TOKEN));
    let ctl = Ctl::start(&kube, &[]);
    assert_eq!(ctl.probe("/healthz"), (200, "ok".into()));
    let open = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|_| TcpStream::connect(&ctl.probe).unwrap())
            .collect()
    };
    let still_open = |silent: &[TcpStream]| {
        for s in silent {
            s.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            match (&*s).read(&mut byte) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("the server closed a silent connection: {other:?}"),
            }
            s.set_nonblocking(false).unwrap();
        }
    };
    let mut silent = open(4);
    assert_eq!(ctl.probe("/healthz"), (200, "ok".into()));
    assert_eq!(ctl.probe("/readyz").0, 200);
    still_open(&silent);
    // 16 open: the 17th is closed without an answer.
    silent.extend(open(12));
    let mut extra = TcpStream::connect(&ctl.probe).unwrap();
    let _ = write!(extra, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = extra.read_to_string(&mut text);
    assert_eq!(text, "", "answered beyond 16 connections");
    still_open(&silent);
    drop(silent);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(&ctl.probe).unwrap();
        let _ = write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if text.starts_with("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer once the silent ones left"
        );
        thread::sleep(Duration::from_millis(20));
    }
    ctl.stop();
}

/// Scenario 17: an exec-only kubeconfig exits 1 naming it; a registry over https with
/// MODEL_REGISTRY_CA_FILE, then with SKIP_TLS_VERIFY=true; a registry 401 without a token.
#[test]
fn controller_17_auth_and_tls() {
    let kube = Kube::start(Some(TOKEN));
    let dir = TempDir::new("exec");
    let config = kubeconfig(dir.path(), &kube.url(), "    exec:\n      command: aws\n");
    let out = Command::new(env!("CARGO_BIN_EXE_mr-controller"))
        .env_clear()
        .env("INFERENCE_SERVICE_CONTROLLER", "managed")
        .env("KUBECONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error: invalid value in KUBECONFIG: ")
            && stderr.contains("user credential `exec` is not supported"),
        "{stderr}"
    );

    let reg = registry(Some(TOKEN));
    let certs = crate::support::tls::make_certs(dir.path());
    let tls = crate::support::tls::TlsProxy::start(
        &certs,
        reg.url().rsplit(':').next().unwrap().parse().unwrap(),
    );
    let https = format!("https://127.0.0.1:{}", tls.port);
    kube.create(isvc(
        "team-a",
        "iris",
        json!({RM: "1"}),
        json!({URL: &https}),
    ));
    let ca = certs.ca.display().to_string();
    let ctl = Ctl::start(&kube, &[("MODEL_REGISTRY_CA_FILE", &ca)]);
    registered(&kube, &isvc_path("team-a", "iris"));
    ctl.stop();
    kube.create(isvc(
        "team-a",
        "skip",
        json!({RM: "1"}),
        json!({URL: https}),
    ));
    let ctl = Ctl::start(&kube, &[("SKIP_TLS_VERIFY", "true")]);
    registered(&kube, &isvc_path("team-a", "skip"));
    ctl.stop();

    // No token for the registry: its 401 is retried, not taken for absence.
    kube.create(isvc(
        "team-a",
        "noauth",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    let ctl = Ctl::start(&kube, &[("MODEL_REGISTRY_AUTH", "none")]);
    let log = ctl.wait_log("reconcile team-a/noauth: retry in");
    assert!(
        log.contains("HTTP 401: missing or wrong bearer token"),
        "{log}"
    );
    assert!(label(&kube.get(&isvc_path("team-a", "noauth")).unwrap(), IS).is_none());
    ctl.stop();
}

/// Scenario 17, a client-certificate kubeconfig: the API server (TLS in front of the stand-in)
/// takes only clients with a certificate from its client CA, and checks no token. The key as
/// PKCS#8 and SEC1 files (paths relative to the kubeconfig) and as PKCS#1 inline data: each
/// run lists, watches and writes; no request carries a token, no log line a key. A
/// certificate from another CA gets no list.
#[test]
fn controller_17_client_certificate_kubeconfig() {
    use crate::support::tls::{self, KeyForm, TlsProxy};
    let b64 = |path: &Path| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
    };
    let kube = Kube::start(None);
    let reg = registry(None);
    let dir = TempDir::new("mtls");
    let (server_dir, client_ca_dir, other_dir) = (
        dir.path().join("server"),
        dir.path().join("client-ca"),
        dir.path().join("other-ca"),
    );
    for d in [&server_dir, &client_ca_dir, &other_dir] {
        std::fs::create_dir(d).unwrap();
    }
    let server = tls::make_certs(&server_dir);
    let client_ca = tls::make_certs(&client_ca_dir);
    let other_ca = tls::make_certs(&other_dir);
    let port: u16 = kube.url().rsplit(':').next().unwrap().parse().unwrap();
    let api = TlsProxy::start_requiring_client_cert(&server, port, &client_ca.ca);
    let server_url = format!("https://127.0.0.1:{}", api.port);
    // A kubeconfig in `dir` (relative paths resolve there) with `cluster` and `user` fields.
    let write_config = |name: &str, cluster: &str, user: &str| -> String {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {server_url}\n{cluster}contexts:\n- name: test\n  context:\n    cluster: test\n    user: me\nusers:\n- name: me\n  user:\n{user}"
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let ca_file = "    certificate-authority: server/ca.pem\n".to_string();
    let ca_data = format!("    certificate-authority-data: {}\n", b64(&server.ca));

    let (cert8, key8) = tls::client_cert(dir.path(), &client_ca, "pkcs8", KeyForm::Pkcs8);
    let (cert1, key1) = tls::client_cert(dir.path(), &client_ca, "pkcs1", KeyForm::Pkcs1);
    let (cert_ec, key_ec) = tls::client_cert(dir.path(), &client_ca, "sec1", KeyForm::Sec1);
    let file_name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
    let runs = [
        (
            "pkcs8",
            write_config(
                "pkcs8.kubeconfig",
                &ca_file,
                &format!(
                    "    client-certificate: {}\n    client-key: {}\n",
                    file_name(&cert8),
                    file_name(&key8)
                ),
            ),
        ),
        (
            "sec1",
            write_config(
                "sec1.kubeconfig",
                &ca_data,
                &format!(
                    "    client-certificate: {}\n    client-key: {}\n",
                    file_name(&cert_ec),
                    file_name(&key_ec)
                ),
            ),
        ),
        (
            "pkcs1",
            write_config(
                "pkcs1.kubeconfig",
                &ca_data,
                &format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(&cert1),
                    b64(&key1)
                ),
            ),
        ),
    ];
    for (name, config) in &runs {
        let ctl = Ctl::start(&kube, &[("KUBECONFIG", config.as_str())]);
        ctl.wait_log("watching");
        let path = isvc_path("team-a", name);
        kube.create(isvc(
            "team-a",
            name,
            json!({RM: "1"}),
            json!({URL: reg.url()}),
        ));
        let object = registered(&kube, &path);
        assert!(finalizers(&object).contains(&F.to_string()), "{object:#}");
        let log = ctl.stop();
        assert!(
            log.contains(&format!("Kubernetes API kubeconfig {config}")),
            "{log}"
        );
        for secret in [&key8, &key1, &key_ec] {
            let key = std::fs::read_to_string(secret).unwrap();
            let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(
                !log.contains(&body[..40]),
                "{name}: the log holds key bytes"
            );
        }
    }
    assert_eq!(reg.inference_services().len(), 3);
    let requests = kube.requests();
    assert!(
        requests.iter().all(|r| r.authorization.is_empty()),
        "a token was sent: {requests:#?}"
    );
    for (name, _) in &runs {
        assert!(
            requests
                .iter()
                .any(|r| r.method == "PATCH" && r.path() == isvc_path("team-a", name)),
            "{name}: no PATCH through the client certificate"
        );
    }

    // A certificate the API server's client CA did not sign: no list, not ready, nothing done.
    let (cert_x, key_x) = tls::client_cert(dir.path(), &other_ca, "stranger", KeyForm::Pkcs8);
    let config = write_config(
        "stranger.kubeconfig",
        &ca_file,
        &format!(
            "    client-certificate: {}\n    client-key: {}\n",
            file_name(&cert_x),
            file_name(&key_x)
        ),
    );
    let before = kube.requests().len();
    kube.create(isvc(
        "team-a",
        "stranger",
        json!({RM: "1"}),
        json!({URL: reg.url()}),
    ));
    let ctl = Ctl::start(&kube, &[("KUBECONFIG", config.as_str())]);
    ctl.wait_log("list of InferenceServices in all namespaces failed");
    let (status, body) = ctl.probe("/readyz");
    assert_eq!(status, 503, "{body}");
    ctl.stop();
    assert_eq!(
        kube.requests().len(),
        before,
        "no request got through the TLS handshake"
    );
    assert!(label(&kube.get(&isvc_path("team-a", "stranger")).unwrap(), IS).is_none());
    assert_eq!(reg.inference_services().len(), 3);
}

/// Scenario 19 (the manifests' half that needs the binary): every params.env key and the
/// Deployment's args pass `--print-config`.
#[test]
fn controller_19_params_env_and_args_pass_print_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let params = std::fs::read_to_string(root.join("kustomize/controller/params.env")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mr-controller"));
    cmd.env_clear();
    let mut keys = Vec::new();
    for line in params
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
        keys.push(k.to_string());
    }
    assert_eq!(keys.len(), 11, "upstream's params.env has 11 keys");
    let deployment =
        std::fs::read_to_string(root.join("kustomize/controller/deployment.yaml")).unwrap();
    let args: Vec<&str> = deployment
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- --"))
        .collect();
    assert!(args.contains(&"leader-elect"), "{args:?}");
    let out = cmd
        .args(args.iter().map(|a| format!("--{a}")))
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["INFERENCE_SERVICE_CONTROLLER"], "managed");
    for key in keys {
        assert!(config.get(&key).is_some(), "{key} is not in --print-config");
    }
    assert_eq!(config["flags"]["leader_elect"], true);
}

/// 5,000 InferenceServices, 300 of them labelled: all 300 are registered, and KServe's status
/// churn at steady state costs no request. It also prints the time to the first full sync,
/// peak RSS and the steady state's requests (`-- --nocapture`; `MR_CONTROLLER_BIN=<release
/// build>` to measure that one), numbers for README, never asserted.
#[test]
fn controller_measure_5000() {
    let kube = Kube::start(Some(TOKEN));
    let reg = registry(Some(TOKEN));
    let mut relevant = Vec::new();
    for n in 0..5000 {
        let ns = format!("team-{}", n % 50);
        let name = format!("model-{n}");
        let labels = if n % 50 < 3 && relevant.len() < 300 {
            relevant.push(isvc_path(&ns, &name));
            json!({RM: "1"})
        } else {
            json!({})
        };
        let mut object = isvc(&ns, &name, labels, json!({URL: reg.url()}));
        object["status"] = json!({"url": format!("http://{name}.{ns}.example.com"), "conditions": [{"type": "Ready", "status": "True"}]});
        kube.create(object);
    }
    let started = Instant::now();
    let ctl = Ctl::start(&kube, &[("RUST_LOG", "info")]);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !relevant
        .iter()
        .all(|p| kube.get(p).is_some_and(|o| label(&o, IS).is_some()))
    {
        assert!(Instant::now() < deadline, "no full sync in 10 minutes");
        thread::sleep(Duration::from_millis(100));
    }
    let labelled = started.elapsed();
    // Each registration's own finalizer write brings one more pass (3 reads); done when
    // nothing has been asked for 3 s.
    let count = || kube.requests().len() + reg.calls().len();
    let mut last = (count(), Instant::now());
    while last.1.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(200));
        if count() != last.0 {
            last = (count(), Instant::now());
        }
    }
    let sync = last.1 - started;
    let before = count();
    let window = Duration::from_secs(20);
    // Steady state: KServe's status churn on 100 objects (6 relevant) every second.
    let churn_until = Instant::now() + window;
    let mut n = 0;
    while Instant::now() < churn_until {
        for i in 0..100 {
            let path = isvc_path(&format!("team-{}", i % 50), &format!("model-{i}"));
            kube.update(&path, |o| {
                o["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "n": n}])
            });
        }
        n += 1;
        thread::sleep(Duration::from_secs(1));
    }
    let after = count();
    let status = std::fs::read_to_string(format!("/proc/{}/status", ctl.child.id())).unwrap();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap()
        .to_string();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_string();
    println!(
        "5000 ISVCs, {} relevant: all labelled after {:.1} s, last request of the first sync at {:.1} s; {hwm}; {rss}; {} requests in the {} s steady state ({} status updates)",
        relevant.len(),
        labelled.as_secs_f64(),
        sync.as_secs_f64(),
        after - before,
        window.as_secs(),
        n * 100
    );
    assert_eq!(reg.inference_services().len(), 300);
    assert_eq!(after, before, "status churn at steady state cost requests");
    ctl.stop();
}

/// SIGTERM (the kubelet stopping the pod) ends the controller at once with status 0 and a
/// line saying so. In its image it runs as PID 1, where a signal with no handler is ignored
/// and the pod would wait out its grace period for the SIGKILL.
#[test]
fn sigterm_stops_the_controller_cleanly() {
    let kube = Kube::start(Some(TOKEN));
    let mut ctl = Ctl::start(&kube, &[]);
    ctl.wait_log("watching");
    let pid = ctl.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = ctl.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let log = ctl.stop();
    assert!(log.contains("INFO stopping on SIGTERM"), "{log}");
}
