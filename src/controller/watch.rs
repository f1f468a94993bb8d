//! List + watch of InferenceServices in one scope (all namespaces, or one), and the resync
//! timer. The list is paged (`limit=500`, `continue`; a 410 on a later page starts again);
//! its resourceVersion starts the watch, which asks for bookmarks and ends by itself after
//! `timeoutSeconds` (240–360 s, or `WATCH_TIMEOUT_SECONDS`). A clean end re-watches at once;
//! 410 (HTTP or an `ERROR` event), an oversized or non-JSON line, or a second `ERROR` in a row
//! relists; transport errors, 5xx, 429 and a stream that outlives its deadline
//! (`timeoutSeconds` plus a grace of 30 s, or of `timeoutSeconds` when that is shorter: a
//! half-dead connection) back off (0.8 s doubling to 30 s, ±20 %) and re-watch from the last
//! resourceVersion. The back-off starts again from 0.8 s after a watch that was healthy: it
//! ran 60 s, ended cleanly, or brought a BOOKMARK (so a short `WATCH_TIMEOUT_SECONDS` resets
//! it too).
//! 403/404 (RBAC, no CRD) say so at error level and retry every 30 s.
//!
//! Only relevant objects are queued: an id label or our finalizer. A `MODIFIED` whose digest
//! equals the key's last successful pass's is status churn and is dropped.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Shared;
use super::queue::jitter;
use crate::kube::Line;

const PAGE: u32 = 500;
const FORBIDDEN_RETRY: Duration = Duration::from_secs(30);
const BACKOFF_FIRST: Duration = Duration::from_millis(800);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const HEALTHY_WATCH: Duration = Duration::from_secs(60);
/// How long past its `timeoutSeconds` a watch may run before it counts as half-dead.
const WATCH_GRACE: u64 = 30;

/// The API path of the InferenceServices in a scope.
pub(crate) fn collection(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"),
        None => "/apis/serving.kserve.io/v1beta1/inferenceservices".into(),
    }
}

// How a list or watch ended.
enum End {
    /// The server closed the stream: re-watch at once.
    Clean,
    /// History is gone or the stream is garbled: list again.
    Relist(&'static str, String),
    /// Back off, then re-watch from the last resourceVersion.
    Retry(&'static str, String),
    /// An `ERROR` event other than 410.
    ErrorEvent(String),
    /// 403 or 404: RBAC or the CRD; retry slowly.
    Forbidden(String),
}

/// The list+watch loop of one scope; never returns.
pub(crate) fn run(sh: &Shared, namespace: Option<&str>) {
    let base = collection(namespace);
    let scope = namespace.unwrap_or("all namespaces").to_string();
    let mut failures = 0u32;
    loop {
        let rv = match list(sh, &base, namespace) {
            Ok(rv) => rv,
            Err(End::Forbidden(why)) => {
                forbidden(sh, &scope, &why);
                thread::sleep(FORBIDDEN_RETRY);
                continue;
            }
            Err(End::Retry(_, why) | End::Relist(_, why) | End::ErrorEvent(why)) => {
                failures += 1;
                let wait = backoff(failures);
                log::warn!(
                    "list of InferenceServices in {scope} failed, again in {wait:.1?}: {why}"
                );
                thread::sleep(wait);
                continue;
            }
            Err(End::Clean) => continue,
        };
        sh.health.listed(&scope);
        log::info!("listed InferenceServices in {scope} at resourceVersion {rv}; watching");
        let mut rv = rv;
        let mut errors_in_row = 0;
        loop {
            let started = Instant::now();
            let mut bookmarked = false;
            let end = watch_once(sh, &base, &mut rv, &mut bookmarked);
            if bookmarked || matches!(end, End::Clean) || started.elapsed() >= HEALTHY_WATCH {
                failures = 0;
            }
            let (reason, why) = match end {
                End::Clean => {
                    log::debug!("watch in {scope} ended; watching again from {rv}");
                    errors_in_row = 0;
                    continue;
                }
                End::Relist(reason, why) => {
                    sh.metrics.inc(format!(
                        "mr_controller_watch_restarts_total{{reason=\"{reason}\"}}"
                    ));
                    log::info!("watch in {scope}: {why}; listing again");
                    break;
                }
                End::Forbidden(why) => {
                    forbidden(sh, &scope, &why);
                    thread::sleep(FORBIDDEN_RETRY);
                    break;
                }
                End::ErrorEvent(why) => {
                    errors_in_row += 1;
                    if errors_in_row >= 2 {
                        sh.metrics
                            .inc("mr_controller_watch_restarts_total{reason=\"error_event\"}");
                        log::info!(
                            "watch in {scope}: a second ERROR in a row ({why}); listing again"
                        );
                        break;
                    }
                    ("error_event", why)
                }
                End::Retry(reason, why) => {
                    errors_in_row = 0;
                    (reason, why)
                }
            };
            failures += 1;
            let wait = backoff(failures);
            sh.metrics.inc(format!(
                "mr_controller_watch_restarts_total{{reason=\"{reason}\"}}"
            ));
            log::warn!("watch in {scope}: {why}; watching again from {rv} in {wait:.1?}");
            thread::sleep(wait);
        }
    }
}

fn forbidden(sh: &Shared, scope: &str, why: &str) {
    let line = format!(
        "cannot list or watch InferenceServices in {scope}: {why} (RBAC, or the KServe CRD is not installed); trying again every 30 s"
    );
    log::error!("{line}");
    sh.health.problem(line);
}

fn backoff(failures: u32) -> Duration {
    let d = BACKOFF_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(BACKOFF_CAP);
    jitter(d, "watch")
}

// Lists every page; offers each relevant item; returns the list's resourceVersion.
fn list(sh: &Shared, base: &str, namespace: Option<&str>) -> Result<String, End> {
    let mut token = String::new();
    let mut seen = HashSet::new();
    loop {
        let path = if token.is_empty() {
            format!("{base}?limit={PAGE}")
        } else {
            format!(
                "{base}?limit={PAGE}&continue={}",
                crate::uri::percent_encode(&token)
            )
        };
        let reply = sh
            .kube
            .get(&path)
            .map_err(|e| End::Retry("transport", e.to_string()))?;
        match reply.status {
            200 => {}
            410 if !token.is_empty() => {
                log::info!("list page expired (410): listing from the first page again");
                token.clear();
                seen.clear();
                continue;
            }
            403 | 404 => {
                return Err(End::Forbidden(format!(
                    "HTTP {}: {}",
                    reply.status,
                    reply.message()
                )));
            }
            s => return Err(End::Retry("http", format!("HTTP {s}: {}", reply.message()))),
        }
        let doc = reply.json();
        for item in doc["items"].as_array().into_iter().flatten() {
            if let Some(key) = offer(sh, item, "LISTED") {
                seen.insert(key);
            }
        }
        token = doc["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if token.is_empty() {
            // Keys known from before that the list no longer holds went away unseen.
            let gone: Vec<String> = {
                let known = sh.known.lock().unwrap_or_else(|e| e.into_inner());
                known
                    .iter()
                    .filter(|k| namespace.is_none_or(|ns| k.split('/').next() == Some(ns)))
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect()
            };
            for key in gone {
                sh.queue.offer(&key);
            }
            return doc["metadata"]["resourceVersion"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| End::Retry("http", "a list without a resourceVersion".into()));
        }
    }
}

// One watch request, read to its end; `bookmarked` says whether a BOOKMARK came (the
// server's sign of a healthy watch).
fn watch_once(sh: &Shared, base: &str, rv: &mut String, bookmarked: &mut bool) -> End {
    let timeout = sh
        .settings
        .watch_timeout
        .unwrap_or_else(|| 240 + RandomState::new().hash_one(&*rv) % 121);
    let path = format!(
        "{base}?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={timeout}",
        crate::uri::percent_encode(rv)
    );
    let limit = Duration::from_secs(timeout + timeout.min(WATCH_GRACE));
    let mut stream = match sh.kube.stream(&path, limit) {
        Err(e) => return End::Retry("transport", e.to_string()),
        Ok(Err(reply)) => {
            return match reply.status {
                410 => End::Relist("gone", "HTTP 410: the resourceVersion is too old".into()),
                403 | 404 => End::Forbidden(format!("HTTP {}: {}", reply.status, reply.message())),
                s => End::Retry("http", format!("HTTP {s}: {}", reply.message())),
            };
        }
        Ok(Ok(stream)) => stream,
    };
    loop {
        let event = match stream.next() {
            Line::Event(e) => e,
            Line::End => return End::Clean,
            Line::Garbled(why) => return End::Relist("garbled", why),
            Line::Broken(why) => return End::Retry("transport", why),
        };
        let object = &event["object"];
        match event["type"].as_str().unwrap_or("") {
            kind @ ("ADDED" | "MODIFIED" | "DELETED") => {
                if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                    *rv = v.to_string();
                }
                offer(sh, object, kind);
            }
            "BOOKMARK" => {
                *bookmarked = true;
                if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                    log::debug!("bookmark at {v}");
                    *rv = v.to_string();
                }
            }
            "ERROR" => {
                let code = object["code"].as_u64().unwrap_or(0);
                let message = object["message"].as_str().unwrap_or("").to_string();
                if code == 410 {
                    return End::Relist("gone", format!("ERROR 410: {message}"));
                }
                return End::ErrorEvent(format!("ERROR {code}: {message}"));
            }
            other => log::debug!("ignoring a watch event of type {other:?}"),
        }
    }
}

/// Offers an object to the queue when it is relevant; returns its key when it is.
fn offer(sh: &Shared, object: &Value, kind: &str) -> Option<String> {
    let meta = &object["metadata"];
    let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
        return None;
    };
    let key = format!("{ns}/{name}");
    let s = &sh.settings;
    let labels = &meta["labels"];
    let relevant = labels.get(&s.rm_label).is_some()
        || labels.get(&s.is_label).is_some()
        || has_finalizer(object, &s.finalizer);
    let mut known = sh.known.lock().unwrap_or_else(|e| e.into_inner());
    if !relevant || kind == "DELETED" {
        let was = known.remove(&key);
        drop(known);
        if kind == "DELETED" {
            sh.digests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        if was || (relevant && kind == "DELETED") {
            sh.queue.offer(&key);
        } else {
            log::debug!("{kind} {key}: not ours (no id label, no finalizer)");
        }
        return None;
    }
    known.insert(key.clone());
    drop(known);
    if kind == "MODIFIED" {
        let digests = sh.digests.lock().unwrap_or_else(|e| e.into_inner());
        if digests.get(&key) == Some(&digest(sh, object)) {
            log::debug!("MODIFIED {key}: nothing that matters changed");
            return Some(key);
        }
    }
    log::debug!("{kind} {key}: queued");
    sh.queue.offer(&key);
    Some(key)
}

/// Whether `object` carries the finalizer `f`.
pub(crate) fn has_finalizer(object: &Value, f: &str) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

/// What a pass reads from an object, in one string: uid, deletion, our finalizer, the five
/// labels, the URL annotation, `status.url`, the runtime.
pub(crate) fn digest(sh: &Shared, object: &Value) -> String {
    let s = &sh.settings;
    let meta = &object["metadata"];
    let label = |k: &str| meta["labels"][k].as_str().unwrap_or("").to_string();
    let parts = [
        meta["uid"].as_str().unwrap_or("").to_string(),
        (!meta["deletionTimestamp"].is_null()).to_string(),
        has_finalizer(object, &s.finalizer).to_string(),
        label(&s.rm_label),
        label(&s.is_label),
        label(&s.mv_label),
        label(&s.name_label),
        label(&s.namespace_label),
        meta["annotations"][&s.url_annotation]
            .as_str()
            .unwrap_or("")
            .to_string(),
        object["status"]["url"].as_str().unwrap_or("").to_string(),
        object["spec"]["predictor"]["model"]["runtime"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    ];
    parts.join("\u{1f}")
}

/// Queues every relevant key the watches know, every `period` ±10 %; never returns.
pub(crate) fn resync(sh: &Shared, period: Duration) {
    loop {
        let r = RandomState::new().hash_one("resync") % 201; // -10.0 %..+10.0 %
        let wait = Duration::from_millis(period.as_millis() as u64 * (900 + r) / 1000);
        thread::sleep(wait);
        let keys: Vec<String> = sh
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        log::info!("resync: {} InferenceService(s) queued", keys.len());
        for key in keys {
            sh.queue.offer(&key);
        }
    }
}
