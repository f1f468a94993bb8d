//! One pass over one InferenceService (contract section 4): read it afresh, apply the first
//! matching row of the state table, log one line. Deletion comes before labels.
//!
//! | row | as read                                   | does                                   |
//! |-----|-------------------------------------------|----------------------------------------|
//! | R0  | 404                                       | nothing (`gone`)                       |
//! | R1  | deleting, no finalizer                    | nothing (`ignored`)                    |
//! | R2  | deleting, our finalizer                   | UNDEPLOYED, then our finalizer removed |
//! | R3  | no id label, no finalizer                 | nothing (`ignored`)                    |
//! | R4  | no id label, our finalizer                | finalizer removed (`unlinked`)         |
//! | R5  | a malformed id label                      | Warning, no requeue (`invalid`)        |
//! | R6  | IS label                                  | finalizer, SE, url/desiredState sync   |
//! | R7  | RM label, no IS label                     | finalizer, SE, find-or-create, label   |
//!
//! Every Kubernetes write is a merge patch carrying the resourceVersion just read; 409 or 422
//! reads again and restarts the pass, up to 3 times. The finalizer is on the object before any
//! registry write, and an IS is found by its `<name>/<uid>` before one is created, so a crash
//! anywhere ends in adoption, never a second IS.

use std::time::Instant;

use serde_json::{Map, Value, json};

use super::locate::{self, Missing};
use super::queue::After;
use super::watch::{digest, has_finalizer};
use super::{Shared, events};
use crate::error::Error;
use crate::registry::serving::{Created, Serving};
use crate::settings::Secret;
use crate::uri::BaseUrl;

// How many times a pass starts again after a 409/422 on a write.
const CONFLICT_RETRIES: u32 = 3;
// The failed pass after which a Warning Event says so.
const WARN_AFTER_FAILURES: u32 = 3;

/// A worker: takes keys from the queue for ever.
pub(crate) fn work(sh: &Shared) {
    loop {
        let key = sh.queue.next();
        run(sh, &key);
    }
}

// What a pass came to.
struct Done {
    /// `registered`, `synced`, ...
    word: &'static str,
    detail: String,
    level: log::Level,
    after: After,
    /// The object as it last stood (for the digest), when there is one.
    object: Option<Value>,
}

impl Done {
    fn new(word: &'static str, level: log::Level, object: Option<&Value>) -> Done {
        Done {
            word,
            detail: String::new(),
            level,
            after: After::Done,
            object: object.cloned(),
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Done {
        self.detail = detail.into();
        self
    }

    fn retry(mut self) -> Done {
        self.after = After::Retry;
        self
    }
}

// Why a pass stopped short.
enum Stop {
    /// 409/422 on a write: read again.
    Conflict,
    /// Anything else: retry with backoff. The object, when read, for the Warning Event.
    Fail(Error, Option<Value>),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Fail(e, None)
    }
}

/// One pass over `key`, logged, and its result handed to the queue.
pub(crate) fn run(sh: &Shared, key: &str) {
    let started = Instant::now();
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let mut conflicts = 0;
    let result = loop {
        match pass(sh, ns, name) {
            Err(Stop::Conflict) if conflicts < CONFLICT_RETRIES => conflicts += 1,
            Err(Stop::Conflict) => {
                let e = Error::Call {
                    service: "Kubernetes API",
                    method: "PATCH",
                    url: key.to_string(),
                    status: Some(409),
                    reason: format!("the object changed under {} writes in a row", conflicts + 1),
                };
                break Err((e, None));
            }
            Err(Stop::Fail(e, object)) => break Err((e, object)),
            Ok(done) => break Ok(done),
        }
    };
    let took = started.elapsed().as_millis();
    let series = |result: &str| {
        format!(
            "controller_runtime_reconcile_total{{controller=\"inferenceservice\",result=\"{result}\"}}"
        )
    };
    match result {
        Ok(done) => {
            if let Some(object) = &done.object {
                sh.digests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.to_string(), digest(sh, object));
            }
            let failures = sh.queue.done(key, done.after);
            let detail = if done.detail.is_empty() {
                String::new()
            } else {
                format!(" {}", done.detail)
            };
            let retry = match (done.after, sh.queue.retry_in(key)) {
                (After::Retry, Some(wait)) => {
                    sh.metrics
                        .inc("workqueue_retries_total{name=\"inferenceservice\"}");
                    format!("; retry in {:.0?} (attempt {})", wait, failures + 1)
                }
                _ => String::new(),
            };
            sh.metrics.inc(series(if done.after == After::Retry {
                "requeue"
            } else {
                "success"
            }));
            log::log!(
                done.level,
                "reconcile {key}: {}{detail} ({took} ms){retry}",
                done.word
            );
        }
        Err((e, object)) => {
            if let Error::Call {
                service: "model registry",
                status: Some(401),
                ..
            } = &e
                && let Some(token) = &sh.settings.token
            {
                token.stale();
            }
            let failures = sh.queue.done(key, After::Retry);
            sh.metrics.inc(series("error"));
            sh.metrics
                .inc("controller_runtime_reconcile_errors_total{controller=\"inferenceservice\"}");
            sh.metrics
                .inc("workqueue_retries_total{name=\"inferenceservice\"}");
            let wait = sh.queue.retry_in(key).unwrap_or_default();
            log::warn!(
                "reconcile {key}: retry in {wait:.0?} (attempt {}): {e} ({took} ms)",
                failures + 1
            );
            if failures == WARN_AFTER_FAILURES
                && let Some(object) = object
            {
                events::send(sh, &object, "Warning", "RegistryError", &e.to_string());
            }
        }
    }
}

// The state table.
fn pass(sh: &Shared, ns: &str, name: &str) -> Result<Done, Stop> {
    use log::Level::{Debug, Info, Warn};
    let s = &sh.settings;
    let Some(isvc) = read(sh, ns, name)? else {
        return Ok(Done::new("gone", Debug, None));
    };
    let meta = &isvc["metadata"];
    let ours = has_finalizer(&isvc, &s.finalizer);
    if !meta["deletionTimestamp"].is_null() {
        if !ours {
            return Ok(Done::new("ignored", Debug, Some(&isvc)).detail("(deleting, not ours)"));
        }
        return release(sh, &isvc);
    }
    let label = |k: &str| {
        meta["labels"][k]
            .as_str()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    let (rm, is, mv) = (label(&s.rm_label), label(&s.is_label), label(&s.mv_label));
    if rm.is_none() && is.is_none() {
        if !ours {
            return Ok(Done::new("ignored", Debug, Some(&isvc)).detail("(no id label)"));
        }
        let after = remove_finalizer(sh, &isvc)?;
        sh.metrics
            .inc("mr_controller_finalizer_released_total{reason=\"unlinked\"}");
        events::send(
            sh,
            &isvc,
            "Normal",
            "Unlinked",
            "the model registry labels were removed: finalizer removed",
        );
        return Ok(Done::new("unlinked", Info, after.as_ref()));
    }
    for (label_name, value) in [(&s.rm_label, &rm), (&s.is_label, &is), (&s.mv_label, &mv)] {
        if let Some(v) = value
            && !is_id(v)
        {
            let why = format!("label {label_name}={v:?} is not a registry id (1 to 9 digits)");
            events::send(sh, &isvc, "Warning", "InvalidLabel", &why);
            return Ok(Done::new("invalid", Warn, Some(&isvc)).detail(why));
        }
    }
    let base = match locate::registry_url(sh, &isvc) {
        Ok(base) => base,
        Err(Missing::Gone(why)) => {
            events::send(sh, &isvc, "Warning", "RegistryNotFound", &why);
            return Ok(Done::new("registry-not-found", Warn, Some(&isvc))
                .detail(why)
                .retry());
        }
        Err(Missing::Invalid(why)) => {
            events::send(sh, &isvc, "Warning", "InvalidRegistryURL", &why);
            return Ok(Done::new("invalid", Warn, Some(&isvc)).detail(why));
        }
        Err(Missing::Transient(e)) => return Err(Stop::Fail(e, Some(isvc))),
    };
    // The finalizer first: every IS we create is covered by it.
    let mut isvc = isvc;
    if !ours {
        match add_finalizer(sh, &isvc)? {
            Some(updated) => isvc = updated,
            None => return Ok(Done::new("gone", Debug, None)),
        }
    }
    let note = |op: &str, code: &str| {
        sh.metrics.inc(format!(
            "mr_controller_registry_requests_total{{op=\"{op}\",code=\"{code}\"}}"
        ));
    };
    let token = registry_token(sh).map_err(|e| Stop::Fail(e, Some(isvc.clone())))?;
    let reg = Serving::new(&sh.registry_agent, base.clone(), token, &note);
    let fail = |e: Error, isvc: &Value| Stop::Fail(e, Some(isvc.clone()));
    let se = ensure_environment(&reg, ns).map_err(|e| fail(e, &isvc))?;
    let uid = isvc["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let status_url = isvc["status"]["url"].as_str().unwrap_or("").to_string();

    if let Some(is_id) = is {
        // R6: link.
        let Some(entity) = reg
            .get_inference_service(&is_id)
            .map_err(|e| fail(e, &isvc))?
        else {
            let why = format!(
                "InferenceService {is_id} does not exist in the registry at {}",
                base.url()
            );
            events::send(
                sh,
                &isvc,
                "Warning",
                "RegistryInferenceServiceNotFound",
                &why,
            );
            return Ok(Done::new("invalid", Warn, Some(&isvc)).detail(why));
        };
        if let Some(mv) = &mv
            && entity["modelVersionId"].as_str().is_some_and(|v| v != mv)
        {
            log::info!(
                "{ns}/{name}: label {} changed to {mv}; the registry keeps {} (set at creation only)",
                s.mv_label,
                entity["modelVersionId"]
            );
        }
        let fields = sync(&reg, &is_id, &entity, &status_url).map_err(|e| fail(e, &isvc))?;
        let detail = format!("is={is_id} se={se} registry={}", base.url());
        if fields.is_empty() {
            return Ok(Done::new("unchanged", Debug, Some(&isvc)).detail(detail));
        }
        let message = format!(
            "pushed {} to InferenceService {is_id} in {}",
            fields.join(" and "),
            base.url()
        );
        events::send(sh, &isvc, "Normal", "RegistryUpdated", &message);
        return Ok(Done::new("synced", Info, Some(&isvc))
            .detail(format!("{detail} ({})", fields.join(", "))));
    }

    // R7: create (find first).
    let Some(rm) = rm else {
        return Ok(Done::new("ignored", Debug, Some(&isvc)));
    };
    let is_name = format!("{name}/{uid}");
    let mut adopted = true;
    let entity = match reg
        .find_inference_service(&is_name, &se)
        .map_err(|e| fail(e, &isvc))?
    {
        Some(found) => found,
        None => {
            let body = create_body(sh, &isvc, &is_name, &rm, &se, mv.as_deref(), &status_url);
            match reg
                .create_inference_service(&body)
                .map_err(|e| fail(e, &isvc))?
            {
                Created::Made(made) => {
                    adopted = false;
                    made
                }
                Created::Conflict => reg
                    .find_inference_service(&is_name, &se)
                    .map_err(|e| fail(e, &isvc))?
                    .ok_or_else(|| {
                        fail(
                            Error::Call {
                                service: "model registry",
                                method: "GET",
                                url: base.url(),
                                status: Some(404),
                                reason: format!(
                                    "{is_name:?} was a conflict on create and is not found"
                                ),
                            },
                            &isvc,
                        )
                    })?,
            }
        }
    };
    let is_id = entity["id"].as_str().unwrap_or("").to_string();
    if adopted {
        sync(&reg, &is_id, &entity, &status_url).map_err(|e| fail(e, &isvc))?;
    }
    // Gone (404) under our finalizer: someone stripped it. Nothing is registered for a
    // Kubernetes object that no longer exists, so no Event says so (R0).
    let Some(labelled) = write_label(sh, &isvc, &is_id)? else {
        return Ok(Done::new("gone", Debug, None).detail(format!(
            "(deleted before its label was written; IS {is_id} stays in {})",
            base.url()
        )));
    };
    let how = if adopted { "adopted" } else { "created" };
    let message = format!(
        "InferenceService {is_id} {how} in ServingEnvironment {se} of {}",
        base.url()
    );
    events::send(sh, &isvc, "Normal", "Registered", &message);
    Ok(
        Done::new("registered", Info, Some(&labelled)).detail(format!(
            "is={is_id} se={se} registry={}{}",
            base.url(),
            if adopted { " (adopted)" } else { "" }
        )),
    )
}

// R2: mark the IS UNDEPLOYED, then remove our finalizer; give up after FINALIZER_TIMEOUT.
fn release(sh: &Shared, isvc: &Value) -> Result<Done, Stop> {
    use log::Level::{Info, Warn};
    let uid = isvc["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let failure = match locate::registry_url(sh, isvc) {
        Err(Missing::Gone(why) | Missing::Invalid(why)) => {
            let after = remove_finalizer(sh, isvc)?;
            forget_deleting(sh, &uid);
            sh.metrics
                .inc("mr_controller_finalizer_released_total{reason=\"registry_gone\"}");
            let message = format!("{why}: finalizer removed without an update");
            events::send(sh, isvc, "Warning", "RegistryNotFound", &message);
            return Ok(Done::new("released", Warn, after.as_ref()).detail(message));
        }
        Err(Missing::Transient(e)) => e,
        Ok(base) => match undeploy(sh, isvc, &base) {
            Ok(found) => {
                let after = remove_finalizer(sh, isvc)?;
                forget_deleting(sh, &uid);
                let (word, reason, message) = match &found {
                    Some(id) => (
                        "undeployed",
                        "undeployed",
                        format!("InferenceService {id} in {} is UNDEPLOYED", base.url()),
                    ),
                    None => (
                        "released",
                        "nothing_registered",
                        format!("nothing registered in {}", base.url()),
                    ),
                };
                sh.metrics.inc(format!(
                    "mr_controller_finalizer_released_total{{reason=\"{reason}\"}}"
                ));
                events::send(sh, isvc, "Normal", "Undeployed", &message);
                return Ok(Done::new(word, Info, after.as_ref()).detail(message));
            }
            Err(e) => e,
        },
    };
    let since = *sh
        .deleting_since
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(uid.clone())
        .or_insert_with(Instant::now);
    if since.elapsed() < sh.settings.finalizer_timeout {
        return Err(Stop::Fail(failure, Some(isvc.clone())));
    }
    let after = remove_finalizer(sh, isvc)?;
    forget_deleting(sh, &uid);
    sh.metrics
        .inc("mr_controller_finalizer_released_total{reason=\"timeout\"}");
    let message = format!(
        "gave up after FINALIZER_TIMEOUT ({:?}); finalizer removed; last error: {failure}",
        sh.settings.finalizer_timeout
    );
    events::send(sh, isvc, "Warning", "RegistryUpdateAbandoned", &message);
    Ok(Done::new("abandoned", Warn, after.as_ref()).detail(message))
}

fn forget_deleting(sh: &Shared, uid: &str) {
    sh.deleting_since
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(uid);
}

// Finds the IS of a deleting ISVC (creating nothing) and sets it UNDEPLOYED; its id, or
// `None` when nothing is registered.
fn undeploy(sh: &Shared, isvc: &Value, base: &BaseUrl) -> Result<Option<String>, Error> {
    let s = &sh.settings;
    let meta = &isvc["metadata"];
    let label = |k: &str| {
        meta["labels"][k]
            .as_str()
            .filter(|v| is_id(v))
            .map(String::from)
    };
    let note = |op: &str, code: &str| {
        sh.metrics.inc(format!(
            "mr_controller_registry_requests_total{{op=\"{op}\",code=\"{code}\"}}"
        ));
    };
    let reg = Serving::new(&sh.registry_agent, base.clone(), registry_token(sh)?, &note);
    let entity = if let Some(id) = label(&s.is_label) {
        reg.get_inference_service(&id)?
    } else if label(&s.rm_label).is_some() {
        let ns = meta["namespace"].as_str().unwrap_or("");
        match reg.find_environment(ns)? {
            None => None,
            Some(se) => {
                let se_id = se["id"].as_str().unwrap_or("");
                let is_name = format!(
                    "{}/{}",
                    meta["name"].as_str().unwrap_or(""),
                    meta["uid"].as_str().unwrap_or("")
                );
                reg.find_inference_service(&is_name, se_id)?
            }
        }
    } else {
        None
    };
    let Some(entity) = entity else {
        return Ok(None);
    };
    let id = entity["id"].as_str().unwrap_or("").to_string();
    if entity["desiredState"] != "UNDEPLOYED" {
        let patch = json!({"desiredState": "UNDEPLOYED"});
        if reg.patch_inference_service(&id, &patch)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(id))
}

// The SE named after the namespace: found, or created (409: found again). Its id.
fn ensure_environment(reg: &Serving<'_>, ns: &str) -> Result<String, Error> {
    let id = |se: Value| se["id"].as_str().unwrap_or("").to_string();
    if let Some(se) = reg.find_environment(ns)? {
        return Ok(id(se));
    }
    match reg.create_environment(ns)? {
        Created::Made(se) => Ok(id(se)),
        Created::Conflict => reg
            .find_environment(ns)?
            .map(id)
            .ok_or_else(|| Error::Call {
                service: "model registry",
                method: "GET",
                url: reg.url(),
                status: Some(404),
                reason: format!(
                    "ServingEnvironment {ns:?} was a conflict on create and is not found"
                ),
            }),
    }
}

// Pushes what differs (url, desiredState) in one PATCH; the names of the fields pushed.
fn sync(
    reg: &Serving<'_>,
    id: &str,
    entity: &Value,
    status_url: &str,
) -> Result<Vec<&'static str>, Error> {
    let have = entity["customProperties"]["url"]["string_value"]
        .as_str()
        .unwrap_or("");
    let mut patch = Map::new();
    let mut fields = Vec::new();
    if have != status_url {
        let mut props = entity["customProperties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        props.insert(
            "url".into(),
            json!({"metadataType": "MetadataStringValue", "string_value": status_url}),
        );
        patch.insert("customProperties".into(), Value::Object(props));
        fields.push("url");
    }
    if entity["desiredState"] == "UNDEPLOYED" {
        fields.push("desiredState");
    }
    if fields.is_empty() {
        return Ok(fields);
    }
    // In every PATCH of a live ISVC: the server reads an absent desiredState as DEPLOYED anyway.
    patch.insert("desiredState".into(), json!("DEPLOYED"));
    reg.patch_inference_service(id, &Value::Object(patch))?;
    Ok(fields)
}

fn create_body(
    sh: &Shared,
    isvc: &Value,
    is_name: &str,
    rm: &str,
    se: &str,
    mv: Option<&str>,
    status_url: &str,
) -> Value {
    let _ = sh;
    let mut body = json!({
        "name": is_name,
        "registeredModelId": rm,
        "servingEnvironmentId": se,
        "desiredState": "DEPLOYED",
    });
    if let Some(mv) = mv {
        body["modelVersionId"] = json!(mv);
    }
    // Legacy and custom predictors have no spec.predictor.model: no runtime.
    if let Some(runtime) = isvc["spec"]["predictor"]["model"]["runtime"]
        .as_str()
        .filter(|r| !r.is_empty())
    {
        body["runtime"] = json!(runtime);
    }
    if !status_url.is_empty() {
        body["customProperties"] =
            json!({"url": {"metadataType": "MetadataStringValue", "string_value": status_url}});
    }
    body
}

// The registry's token: its own, else (MODEL_REGISTRY_AUTH=kube) the Kubernetes one.
fn registry_token(sh: &Shared) -> Result<Option<Secret>, Error> {
    match &sh.settings.token {
        Some(t) => t.get().map(Some),
        None if sh.settings.auth_kube => sh.kube.token(),
        None => Ok(None),
    }
}

/// `^[1-9][0-9]{0,8}$`: the spec's id pattern.
pub(crate) fn is_id(v: &str) -> bool {
    (1..=9).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0')
}

fn isvc_path(ns: &str, name: &str) -> String {
    format!("/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/{name}")
}

fn read(sh: &Shared, ns: &str, name: &str) -> Result<Option<Value>, Stop> {
    let path = isvc_path(ns, name);
    let reply = sh.kube.get(&path)?;
    match reply.status {
        200 => Ok(Some(reply.json())),
        404 => Ok(None),
        _ => Err(crate::kube::unexpected("GET", &sh.kube.url(&path), &reply).into()),
    }
}

// A merge patch of the ISVC's metadata with the resourceVersion just read: the object after,
// `None` when it is gone, `Stop::Conflict` on 409/422.
fn patch(sh: &Shared, isvc: &Value, mut metadata: Value) -> Result<Option<Value>, Stop> {
    let meta = &isvc["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("");
    let name = meta["name"].as_str().unwrap_or("");
    metadata["resourceVersion"] = meta["resourceVersion"].clone();
    let path = isvc_path(ns, name);
    let reply = sh
        .kube
        .merge_patch(&path, &json!({ "metadata": metadata }))?;
    match reply.status {
        200 => Ok(Some(reply.json())),
        404 => Ok(None),
        409 | 422 => Err(Stop::Conflict),
        _ => Err(Stop::Fail(
            crate::kube::unexpected("PATCH", &sh.kube.url(&path), &reply),
            Some(isvc.clone()),
        )),
    }
}

fn finalizers(isvc: &Value) -> Vec<Value> {
    isvc["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn add_finalizer(sh: &Shared, isvc: &Value) -> Result<Option<Value>, Stop> {
    let mut list = finalizers(isvc);
    list.push(json!(sh.settings.finalizer));
    patch(sh, isvc, json!({ "finalizers": list }))
}

// Our finalizer out, every other one kept in order.
fn remove_finalizer(sh: &Shared, isvc: &Value) -> Result<Option<Value>, Stop> {
    let list: Vec<Value> = finalizers(isvc)
        .into_iter()
        .filter(|f| f != &json!(sh.settings.finalizer))
        .collect();
    patch(sh, isvc, json!({ "finalizers": list }))
}

fn write_label(sh: &Shared, isvc: &Value, id: &str) -> Result<Option<Value>, Stop> {
    let mut labels = Map::new();
    labels.insert(sh.settings.is_label.clone(), json!(id));
    patch(sh, isvc, json!({ "labels": labels }))
}

#[cfg(test)]
mod tests {
    use super::is_id;

    #[test]
    fn ids_follow_the_spec_pattern() {
        for good in ["1", "12", "999999999"] {
            assert!(is_id(good), "{good}");
        }
        for bad in ["", "0", "01", "1234567890", "1a", " 1", "-1"] {
            assert!(!is_id(bad), "{bad}");
        }
    }
}
