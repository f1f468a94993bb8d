//! Kubernetes Events on InferenceServices (core v1, `POST /api/v1/namespaces/NS/events`), best
//! effort: a failure is a debug line. The same (uid, reason, message) is sent once per 10
//! minutes, so a resync or a retry loop does not flood the namespace.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::{Shared, rfc3339};

const REPEAT_AFTER: Duration = Duration::from_secs(600);
const COMPONENT: &str = "model-registry-controller";

/// Sends an Event of `kind` (`Normal`, `Warning`) about `isvc`.
pub(crate) fn send(sh: &Shared, isvc: &Value, kind: &str, reason: &str, message: &str) {
    let meta = &isvc["metadata"];
    let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
        return;
    };
    let uid = meta["uid"].as_str().unwrap_or("");
    let dedupe = format!("{uid}\u{1f}{reason}\u{1f}{message}");
    {
        let mut sent = sh.events_sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.retain(|_, at| at.elapsed() < REPEAT_AFTER);
        if sent.contains_key(&dedupe) {
            log::debug!("event {reason} on {ns}/{name} already sent");
            return;
        }
        sent.insert(dedupe, Instant::now());
    }
    let now = rfc3339(SystemTime::now());
    let instance = sh.settings.pod_name.clone().unwrap_or_default();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "name": name,
            "namespace": ns,
            "uid": uid,
            "resourceVersion": meta["resourceVersion"],
        },
        "type": kind,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let path = format!("/api/v1/namespaces/{ns}/events");
    match sh.kube.post(&path, &event) {
        Ok(r) if (200..300).contains(&r.status) => {}
        Ok(r) => log::debug!(
            "event {reason} on {ns}/{name}: HTTP {}: {}",
            r.status,
            r.message()
        ),
        Err(e) => log::debug!("event {reason} on {ns}/{name}: {e}"),
    }
}
