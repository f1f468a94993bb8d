//! `mr-controller`, the second binary: mirrors KServe InferenceServices into the Model
//! Registry (the contract: `docs` of the shared reference, summarised in README "Controller").
//!
//! This file is the controller's face and wiring: the command line (`cli`), the environment
//! (`settings`), logging, the one error line, and the threads: one list+watch per namespace
//! scope (`watch`), `WORKERS` reconcile workers fed by the `queue`, a resync timer, and the
//! probe/metrics listener (`health`). `locate` finds a registry for an InferenceService,
//! `reconcile` is the state table, `events` writes Kubernetes Events, `lease` is leader
//! election. Everything is synchronous: threads and blocking I/O.

pub(crate) mod cli;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod lease;
pub(crate) mod locate;
pub(crate) mod queue;
pub(crate) mod reconcile;
pub(crate) mod settings;
pub(crate) mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Instant, SystemTime};

use ureq::Agent;

use crate::error::{Error, escape_controls, one_line};
use crate::http::{self, Trust};
use crate::kube::{self, Kube};
use crate::settings::TlsSettings;
use cli::Command;
use queue::Queue;
use settings::Settings;

/// Everything the threads share.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) kube: Kube,
    /// The agent for registry calls (its trust: the usual roots and `MODEL_REGISTRY_CA_FILE`,
    /// or none with `SKIP_TLS_VERIFY`).
    pub(crate) registry_agent: Agent,
    pub(crate) queue: Queue,
    /// The digest of each key's last successful pass: a `MODIFIED` with the same digest is
    /// status churn and is dropped.
    pub(crate) digests: Mutex<HashMap<String, String>>,
    /// The relevant keys the watches know of: what a resync queues.
    pub(crate) known: Mutex<HashSet<String>>,
    /// When this process first saw each deleting InferenceService (by uid) fail to release:
    /// `FINALIZER_TIMEOUT` counts from there.
    pub(crate) deleting_since: Mutex<HashMap<String, Instant>>,
    /// Events sent, by (uid, reason, message), so one is not repeated within 10 minutes.
    pub(crate) events_sent: Mutex<HashMap<String, Instant>>,
    pub(crate) health: Arc<health::Health>,
    pub(crate) metrics: Metrics,
}

/// Prometheus counters and gauges by their full series name (`name{label="v"}`).
#[derive(Default)]
pub(crate) struct Metrics {
    series: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Adds one to a counter.
    pub(crate) fn inc(&self, series: impl Into<String>) {
        *self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(series.into())
            .or_insert(0) += 1;
    }

    /// The Prometheus text exposition, with the live gauges.
    pub(crate) fn render(&self, depth: usize) -> String {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut typed = HashSet::new();
        for (name, value) in series.iter() {
            let base = name.split('{').next().unwrap_or(name);
            if typed.insert(base.to_string()) {
                out.push_str(&format!("# TYPE {base} counter\n"));
            }
            out.push_str(&format!("{name} {value}\n"));
        }
        out.push_str("# TYPE workqueue_depth gauge\n");
        out.push_str(&format!(
            "workqueue_depth{{name=\"inferenceservice\"}} {depth}\n"
        ));
        out
    }
}

/// The binary's whole life.
pub fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Error::Usage(_) = err {
                eprintln!("usage: mr-controller [FLAGS] (see --help)");
            }
            eprintln!("error: {}", one_line(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}

fn run() -> Result<(), Error> {
    let flags = match cli::parse(std::env::args_os().skip(1))? {
        Command::Help => {
            print!("{}", cli::HELP);
            return Ok(());
        }
        Command::Version => {
            println!("mr-controller {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Run(flags) => flags,
    };
    handle_signals()?;
    let vars: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let get = |k: &str| vars.get(k).filter(|v| !v.trim().is_empty()).cloned();
    init_logging(get("RUST_LOG").as_deref().or(flags.log_level.as_deref()));
    for warning in &flags.ignored {
        log::warn!("{warning}");
    }
    let settings = Settings::read(&get)?;
    for warning in &settings.warnings {
        log::warn!("{warning}");
    }
    if flags.print_config {
        let mut config = settings.to_json();
        config["flags"] = serde_json::json!({
            "health_probe_bind_address": flags.probe_address,
            "metrics_bind_address": flags.metrics_address.as_deref().unwrap_or("0"),
            "leader_elect": flags.leader_elect,
            "kubeconfig": flags.kubeconfig,
        });
        println!("{config}");
        return Ok(());
    }
    // SSL_CERT_FILE, KServe's CA bundle and the address policy, as the initializer reads them.
    let shared_settings = crate::settings::Settings::from_vars(&vars)?;
    let health = Arc::new(health::Health::default());
    if !settings.enabled {
        log::info!(
            "mr-controller {}: INFERENCE_SERVICE_CONTROLLER is not managed: probes only, no Kubernetes calls",
            env!("CARGO_PKG_VERSION")
        );
        health.ready_anyway();
        health::serve(&flags, health, None)?;
        return wait_for_stop();
    }

    let sa_dir = kube::config::sa_dir(&get);
    let access = kube::config::find(flags.kubeconfig.as_deref(), &get, &sa_dir)?;
    for warning in &access.warnings {
        log::warn!("{warning}");
    }
    let kube = Kube::new(access);
    let registry_agent = registry_agent(&settings, &shared_settings.tls)?;
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    health.expect_lists(scopes.len());
    let registry_auth = match (&settings.token, settings.auth_kube) {
        (Some(t), _) => format!("registry token from {}", t.describe()),
        (None, true) => "registry token: the Kubernetes one".into(),
        (None, false) => "no registry token".into(),
    };
    log::info!(
        "mr-controller {}: managed, namespaces {}, {} worker(s), Kubernetes API {} ({}), {registry_auth}",
        env!("CARGO_PKG_VERSION"),
        if settings.namespaces.is_empty() {
            "all".to_string()
        } else {
            settings.namespaces.join(",")
        },
        settings.workers,
        kube.source,
        kube.credential_kind(),
    );
    let workers = settings.workers;
    let shared = Arc::new(Shared {
        settings,
        kube,
        registry_agent,
        queue: Queue::default(),
        digests: Mutex::default(),
        known: Mutex::default(),
        deleting_since: Mutex::default(),
        events_sent: Mutex::default(),
        health: health.clone(),
        metrics: Metrics::default(),
    });
    health::serve(&flags, health, Some(shared.clone()))?;
    if flags.leader_elect {
        let namespace = kube::config::pod_namespace(&get, &sa_dir);
        lease::lead(&shared, namespace)?;
    }
    for scope in scopes {
        let name = format!("watch {}", scope.as_deref().unwrap_or("all namespaces"));
        let s = shared.clone();
        spawn(&shared.health, name, move || {
            watch::run(&s, scope.as_deref())
        })?;
    }
    for n in 0..workers {
        let s = shared.clone();
        spawn(&shared.health, format!("worker {n}"), move || {
            reconcile::work(&s)
        })?;
    }
    if let Some(period) = shared.settings.resync {
        let s = shared.clone();
        spawn(&shared.health, "resync".into(), move || {
            watch::resync(&s, period)
        })?;
    }
    wait_for_stop()
}

/// The agent for registry calls: the shared HTTP stack (its proxies, address policy and trust:
/// the usual roots and `MODEL_REGISTRY_CA_FILE`, or none with `SKIP_TLS_VERIFY`) with the
/// contract's 5 s to connect, as for the Kubernetes API, not the initializer's 10 s. Each
/// call's 30 s in all is set per request by `Serving`.
fn registry_agent(settings: &Settings, tls: &TlsSettings) -> Result<Agent, Error> {
    let mut tls = tls.clone();
    tls.net.connect_timeout = kube::CONNECT_TIMEOUT;
    let extra_ca: Vec<_> = settings.ca_file.iter().cloned().collect();
    let trust = if settings.skip_tls_verify {
        Trust::Unverified
    } else {
        Trust::Usual(&extra_ca)
    };
    http::agent(&tls, trust)
}

// The signal that asked the controller to stop (SIGTERM, SIGINT), or 0.
static STOP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Notes SIGTERM and SIGINT in `STOP`, from the start, so none is lost before the threads
/// run. The controller runs as PID 1 in its image, where a signal with no handler is
/// ignored: without this, every pod stop would wait out the whole grace period for the
/// SIGKILL.
fn handle_signals() -> Result<(), Error> {
    use signal_hook::consts::signal::{SIGINT, SIGTERM};
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_usize(signal, &STOP, signal as usize)
            .map_err(|e| Error::io("handle signal", format!("signal {signal}"), e))?;
    }
    Ok(())
}

/// Returns when SIGTERM or SIGINT has arrived. Every step is crash-safe (the contract's 4.3),
/// so stopping needs no drain: the threads end with the process.
fn wait_for_stop() -> Result<(), Error> {
    use std::sync::atomic::Ordering;
    loop {
        match STOP.load(Ordering::SeqCst) {
            0 => thread::sleep(std::time::Duration::from_millis(100)),
            signal => {
                let name = match signal as i32 {
                    signal_hook::consts::signal::SIGTERM => "SIGTERM",
                    _ => "SIGINT",
                };
                log::info!("stopping on {name}");
                return Ok(());
            }
        }
    }
}

// Starts a named thread; if it ever ends, /healthz names it.
fn spawn(
    health: &Arc<health::Health>,
    name: String,
    work: impl FnOnce() + Send + 'static,
) -> Result<(), Error> {
    struct Watchman(Arc<health::Health>, String);
    impl Drop for Watchman {
        fn drop(&mut self) {
            self.0.died(&self.1);
        }
    }
    let watchman = Watchman(health.clone(), name.clone());
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let _watchman = watchman;
            work();
        })
        .map(drop)
        .map_err(|e| Error::io("start thread", name, e))
}

/// Logs to stderr as `2026-11-29T20:01:02Z INFO message`, filtered by `RUST_LOG` (or
/// `--zap-log-level`) as the initializer's logs are.
fn init_logging(level: Option<&str>) {
    use std::io::Write;
    env_logger::Builder::new()
        .parse_filters(&crate::face::log_filter(level))
        .format(|buf, record| {
            writeln!(
                buf,
                "{} {} {}",
                rfc3339(SystemTime::now()),
                record.level(),
                escape_controls(&record.args().to_string())
            )
        })
        .init();
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let http::date::Civil {
        year,
        month,
        day,
        secs: rem,
        ..
    } = http::date::civil(at);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rfc3339_in_utc() {
        use std::time::Duration;
        let at = UNIX_EPOCH + Duration::from_secs(1_795_982_462);
        assert_eq!(rfc3339(at), "2026-11-29T20:01:02Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    // The contract's 5 s to connect reaches the registry's agent, whichever trust it has,
    // while the initializer's agents keep their 10 s.
    #[test]
    fn registry_calls_connect_within_5_s() {
        use std::time::Duration;
        let tls = TlsSettings::default();
        for skip in [None, Some("true")] {
            let get = |k: &str| {
                (k == "SKIP_TLS_VERIFY")
                    .then_some(skip)
                    .flatten()
                    .map(String::from)
            };
            let settings = Settings::read(&get).unwrap();
            assert_eq!(settings.skip_tls_verify, skip.is_some());
            let agent = registry_agent(&settings, &tls).unwrap();
            assert_eq!(
                agent.config().timeouts().connect,
                Some(Duration::from_secs(5))
            );
        }
        let initializer = http::agent(&tls, Trust::Usual(&[])).unwrap();
        assert_eq!(
            initializer.config().timeouts().connect,
            Some(Duration::from_secs(10))
        );
    }
}
