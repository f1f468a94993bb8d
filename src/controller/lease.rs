//! Leader election (`--leader-elect`) on the Lease `a7d60e25.kubeflow.org` in the pod's
//! namespace, as controller-runtime does it: holder `<POD_NAME or hostname>_<8 hex>`, lease
//! 15 s, renew every 10 s... (here: tried every 2 s, renewed every 10 s), work starts once it is
//! held, and losing it ends the process with status 1. Expiry is judged by this process's own
//! clock (the record unchanged for a lease duration), never by comparing timestamps.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::{Shared, rfc3339};
use crate::error::Error;

/// controller-runtime's name for upstream's Lease.
pub(crate) const NAME: &str = "a7d60e25.kubeflow.org";
const DURATION: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

/// Blocks until the Lease is held, then keeps renewing it on a thread of its own.
pub(crate) fn lead(sh: &Arc<Shared>, namespace: Option<String>) -> Result<(), Error> {
    let ns = namespace.ok_or_else(|| {
        Error::env(
            "POD_NAMESPACE",
            "--leader-elect needs the pod's namespace (POD_NAMESPACE, or the service account's namespace file)",
        )
    })?;
    let who = sh
        .settings
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "mr-controller".into());
    let holder = format!(
        "{who}_{:08x}",
        RandomState::new().hash_one(std::process::id()) as u32
    );
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{NAME}");
    sh.health.ready_anyway();
    log::info!("waiting for the Lease {ns}/{NAME} as {holder}");
    let mut seen: Option<(String, Instant)> = None;
    loop {
        match try_hold(sh, &ns, &path, &holder, &mut seen) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => log::warn!("Lease {ns}/{NAME}: {e}"),
        }
        thread::sleep(RETRY);
    }
    log::info!("holding the Lease {ns}/{NAME}: starting work");
    sh.health.working();
    let sh = sh.clone();
    thread::Builder::new()
        .name("lease".into())
        .spawn(move || {
            let mut renewed = Instant::now();
            let mut seen = None;
            loop {
                thread::sleep(RENEW);
                match try_hold(&sh, &ns, &path, &holder, &mut seen) {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => lost(&format!("another holder took the Lease {ns}/{NAME}")),
                    Err(e) if renewed.elapsed() >= DURATION => {
                        lost(&format!("could not renew the Lease {ns}/{NAME}: {e}"))
                    }
                    Err(e) => log::warn!("renewing the Lease {ns}/{NAME}: {e}"),
                }
            }
        })
        .map(drop)
        .map_err(|e| Error::io("start thread", "lease", e))
}

fn lost(why: &str) {
    eprintln!("error: {why}: stopping");
    std::process::exit(1);
}

// One attempt to take or renew; whether we hold it now.
fn try_hold(
    sh: &Shared,
    ns: &str,
    path: &str,
    holder: &str,
    seen: &mut Option<(String, Instant)>,
) -> Result<bool, Error> {
    let now = micro_time();
    let reply = sh.kube.get(path)?;
    let url = sh.kube.url(path);
    if reply.status == 404 {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": NAME, "namespace": ns},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": DURATION.as_secs(),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        });
        let collection = path.rsplit_once('/').map_or(path, |(c, _)| c);
        let created = sh.kube.post(collection, &lease)?;
        return match created.status {
            200 | 201 => Ok(true),
            409 => Ok(false),
            _ => Err(crate::kube::unexpected("POST", &url, &created)),
        };
    }
    if reply.status != 200 {
        return Err(crate::kube::unexpected("GET", &url, &reply));
    }
    let mut lease: Value = reply.json();
    let spec = &lease["spec"];
    let current = spec["holderIdentity"].as_str().unwrap_or("").to_string();
    if current != holder && !current.is_empty() {
        // Another holder: expired only once its record has not changed for a whole duration.
        let record = spec.to_string();
        let duration = spec["leaseDurationSeconds"]
            .as_u64()
            .map_or(DURATION, Duration::from_secs);
        match seen {
            Some((r, at)) if *r == record => {
                if at.elapsed() < duration {
                    return Ok(false);
                }
            }
            _ => {
                *seen = Some((record, Instant::now()));
                return Ok(false);
            }
        }
    }
    let spec = &mut lease["spec"];
    if current != holder {
        spec["holderIdentity"] = json!(holder);
        spec["acquireTime"] = json!(now);
        let transitions = spec["leaseTransitions"].as_u64().unwrap_or(0);
        spec["leaseTransitions"] = json!(transitions + 1);
        spec["leaseDurationSeconds"] = json!(DURATION.as_secs());
    }
    spec["renewTime"] = json!(now);
    let put = sh.kube.put(path, &lease)?;
    match put.status {
        200 => Ok(true),
        409 => Ok(false),
        _ => Err(crate::kube::unexpected("PUT", &url, &put)),
    }
}

// A MicroTime: RFC 3339 with microseconds.
fn micro_time() -> String {
    let now = SystemTime::now();
    let micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    rfc3339(now).replace('Z', &format!(".{micros:06}Z"))
}
