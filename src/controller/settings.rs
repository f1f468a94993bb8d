//! The controller's environment, read once through a lookup function (tests hand in a map):
//! upstream's variables with params.env's values as defaults, the seed's `MODEL_REGISTRY_*`
//! aliases, and ours. Empty counts as unset. Pure: warnings are returned for the caller to log.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::error::{Error, quote};
use crate::kube::token::Token;
use crate::settings::Secret;

/// Everything the controller reads from its environment.
#[derive(Debug)]
pub(crate) struct Settings {
    /// `INFERENCE_SERVICE_CONTROLLER=managed`: reconcile; otherwise probes only.
    pub(crate) enabled: bool,
    pub(crate) rm_label: String,
    pub(crate) is_label: String,
    pub(crate) mv_label: String,
    pub(crate) name_label: String,
    pub(crate) namespace_label: String,
    pub(crate) url_annotation: String,
    pub(crate) service_annotation: String,
    pub(crate) finalizer: String,
    pub(crate) registries_namespace: String,
    /// `SKIP_TLS_VERIFY`: registry calls only.
    pub(crate) skip_tls_verify: bool,
    /// Empty: all namespaces.
    pub(crate) namespaces: Vec<String>,
    pub(crate) workers: usize,
    /// `None`: no periodic resync.
    pub(crate) resync: Option<Duration>,
    pub(crate) finalizer_timeout: Duration,
    /// `WATCH_TIMEOUT_SECONDS`: each watch's `timeoutSeconds`; `None`: random in 240–360.
    pub(crate) watch_timeout: Option<u64>,
    /// `MODEL_REGISTRY_AUTH=kube`: the Kubernetes token goes to the registry too.
    pub(crate) auth_kube: bool,
    /// `MODEL_REGISTRY_TOKEN` / `MODEL_REGISTRY_TOKEN_FILE`.
    pub(crate) token: Option<Token>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cluster_domain: String,
    /// `POD_NAME`, for Events and the Lease holder.
    pub(crate) pod_name: Option<String>,
    /// Things to say once logging is up.
    pub(crate) warnings: Vec<String>,
}

/// `WATCH_TIMEOUT_SECONDS`'s bounds: a watch the server ends after more than an hour is one
/// whose half-dead connection goes unnoticed as long.
const WATCH_TIMEOUT_RANGE_START: u64 = 1;
const WATCH_TIMEOUT_RANGE_END: u64 = 3600;

/// Upstream's params.env, the defaults when a variable is unset.
const DEFAULTS: [(&str, &str); 9] = [
    (
        "REGISTERED_MODEL_ID_LABEL",
        "modelregistry.kubeflow.org/registered-model-id",
    ),
    (
        "INFERENCE_SERVICE_ID_LABEL",
        "modelregistry.kubeflow.org/inference-service-id",
    ),
    (
        "MODEL_VERSION_ID_LABEL",
        "modelregistry.kubeflow.org/model-version-id",
    ),
    ("NAME_LABEL", "modelregistry.kubeflow.org/name"),
    ("NAMESPACE_LABEL", "modelregistry.kubeflow.org/namespace"),
    ("URL_ANNOTATION", "modelregistry.kubeflow.org/url"),
    (
        "SERVICE_ANNOTATION",
        "routing.kubeflow.org/external-address-rest",
    ),
    ("FINALIZER", "modelregistry.kubeflow.org/finalizer"),
    ("REGISTRIES_NAMESPACE", "kubeflow"),
];

/// The seed's names for two of upstream's variables, and ours for one.
const ALIASES: [(&str, &str); 3] = [
    ("NAMESPACE_LABEL", "MODEL_REGISTRY_NAMESPACE_LABEL"),
    ("URL_ANNOTATION", "MODEL_REGISTRY_URL_ANNOTATION"),
    ("WATCH_NAMESPACES", "WATCH_NAMESPACE"),
];

impl Settings {
    /// Reads every variable through `get` (which already treats empty as unset).
    pub(crate) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let mut warnings = Vec::new();
        let (names, enabled, namespaces_value) = {
            // A variable, or its alias; both set and different: the upstream name wins.
            let mut var = |name: &str| -> Option<String> {
                let value = get(name);
                let Some((_, alias)) = ALIASES.iter().find(|(n, _)| *n == name) else {
                    return value;
                };
                match (value, get(alias)) {
                    (Some(v), Some(a)) if v != a => {
                        warnings.push(format!("{name} and {alias} differ: using {name}"));
                        Some(v)
                    }
                    (v, a) => v.or(a),
                }
            };
            let mut names = Vec::new();
            for (name, default) in DEFAULTS {
                names.push(var(name).unwrap_or_else(|| default.to_string()));
            }
            let enabled = matches!(
                var("INFERENCE_SERVICE_CONTROLLER").as_deref(),
                Some("managed" | "Managed" | "true")
            );
            let namespaces_value = var("WATCH_NAMESPACES");
            (names, enabled, namespaces_value)
        };
        for (i, (name, _)) in DEFAULTS.iter().enumerate().take(8) {
            if !is_qualified_name(&names[i]) {
                let reason = format!(
                    "{} is not a qualified name ([prefix/]name)",
                    quote(&names[i])
                );
                return Err(Error::env(*name, reason));
            }
        }
        let registries_namespace = names[8].clone();
        if !is_dns_label(&registries_namespace) {
            let reason = format!("{} is not a namespace name", quote(&registries_namespace));
            return Err(Error::env("REGISTRIES_NAMESPACE", reason));
        }
        let skip_tls_verify = match get("SKIP_TLS_VERIFY").as_deref() {
            None => false,
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => true,
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
            Some(other) => {
                warnings.push(format!(
                    "SKIP_TLS_VERIFY={} is not a boolean: taken as false",
                    quote(other)
                ));
                false
            }
        };
        let mut namespaces = Vec::new();
        for ns in namespaces_value.as_deref().unwrap_or("").split(',') {
            let ns = ns.trim();
            if ns.is_empty() || namespaces.iter().any(|n| n == ns) {
                continue;
            }
            if !is_dns_label(ns) {
                let reason = format!("{} is not a namespace name", quote(ns));
                return Err(Error::env("WATCH_NAMESPACES", reason));
            }
            namespaces.push(ns.to_string());
        }
        let workers = match get("WORKERS") {
            None => 1,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n @ 1..=16) => n,
                _ => {
                    return Err(Error::env(
                        "WORKERS",
                        format!("{} is not 1 to 16", quote(&v)),
                    ));
                }
            },
        };
        let resync = match get("RESYNC_PERIOD") {
            None => Some(Duration::from_secs(3600)),
            Some(v) => match parse_duration(&v) {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => return Err(Error::env("RESYNC_PERIOD", not_a_duration(&v))),
            },
        };
        let finalizer_timeout = match get("FINALIZER_TIMEOUT") {
            None => Duration::from_secs(120),
            Some(v) => parse_duration(&v)
                .ok_or_else(|| Error::env("FINALIZER_TIMEOUT", not_a_duration(&v)))?,
        };
        let watch_timeout = match get("WATCH_TIMEOUT_SECONDS") {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n @ WATCH_TIMEOUT_RANGE_START..=WATCH_TIMEOUT_RANGE_END) => Some(n),
                _ => {
                    let reason = format!(
                        "{} is not a whole number of seconds from {WATCH_TIMEOUT_RANGE_START} to {WATCH_TIMEOUT_RANGE_END}",
                        quote(&v)
                    );
                    return Err(Error::env("WATCH_TIMEOUT_SECONDS", reason));
                }
            },
        };
        let auth_kube = match get("MODEL_REGISTRY_AUTH").as_deref() {
            None | Some("kube") => true,
            Some("none") => false,
            Some(other) => {
                let reason = format!("{} is not kube or none", quote(other));
                return Err(Error::env("MODEL_REGISTRY_AUTH", reason));
            }
        };
        let token = match (
            get("MODEL_REGISTRY_TOKEN"),
            get("MODEL_REGISTRY_TOKEN_FILE"),
        ) {
            (Some(t), _) => Some(Token::Value(Secret::new(t.trim()))),
            (None, Some(f)) => Some(Token::file(f, "MODEL_REGISTRY_TOKEN_FILE")),
            (None, None) => None,
        };
        let mut names = names.into_iter();
        let mut next = || names.next().unwrap_or_default();
        Ok(Settings {
            enabled,
            rm_label: next(),
            is_label: next(),
            mv_label: next(),
            name_label: next(),
            namespace_label: next(),
            url_annotation: next(),
            service_annotation: next(),
            finalizer: next(),
            registries_namespace,
            skip_tls_verify,
            namespaces,
            workers,
            resync,
            finalizer_timeout,
            watch_timeout,
            auth_kube,
            token,
            ca_file: get("MODEL_REGISTRY_CA_FILE").map(PathBuf::from),
            cluster_domain: get("MODEL_REGISTRY_CLUSTER_DOMAIN")
                .unwrap_or_else(|| "svc.cluster.local".into()),
            pod_name: get("POD_NAME"),
            warnings,
        })
    }

    /// The effective settings as one JSON object: token sources named, never their values.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let secs = |d: Option<Duration>| d.map_or(0, |d| d.as_secs());
        let token = match (&self.token, self.auth_kube) {
            (Some(t), _) => t.describe(),
            (None, true) => "the Kubernetes API token".into(),
            (None, false) => "none".into(),
        };
        json!({
            "INFERENCE_SERVICE_CONTROLLER": if self.enabled { "managed" } else { "off" },
            "REGISTERED_MODEL_ID_LABEL": self.rm_label,
            "INFERENCE_SERVICE_ID_LABEL": self.is_label,
            "MODEL_VERSION_ID_LABEL": self.mv_label,
            "NAME_LABEL": self.name_label,
            "NAMESPACE_LABEL": self.namespace_label,
            "URL_ANNOTATION": self.url_annotation,
            "SERVICE_ANNOTATION": self.service_annotation,
            "FINALIZER": self.finalizer,
            "REGISTRIES_NAMESPACE": self.registries_namespace,
            "SKIP_TLS_VERIFY": self.skip_tls_verify,
            "WATCH_NAMESPACES": self.namespaces,
            "WORKERS": self.workers,
            "RESYNC_PERIOD_SECONDS": secs(self.resync),
            "FINALIZER_TIMEOUT_SECONDS": self.finalizer_timeout.as_secs(),
            // null: a random 240-360 s per watch.
            "WATCH_TIMEOUT_SECONDS": self.watch_timeout,
            "MODEL_REGISTRY_AUTH": if self.auth_kube { "kube" } else { "none" },
            "registry_token": token,
            "MODEL_REGISTRY_CA_FILE": self.ca_file,
            "MODEL_REGISTRY_CLUSTER_DOMAIN": self.cluster_domain,
            "POD_NAME": self.pod_name,
        })
    }
}

fn not_a_duration(value: &str) -> String {
    format!(
        "{} is not a duration such as 90s, 5m, 1h or 0",
        quote(value)
    )
}

/// `0`, or numbers with units `ms`, `s`, `m`, `h` in sequence (`90s`, `1h30m`), as Go writes
/// durations.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            match rest.chars().next()? {
                's' => (Duration::from_secs(1), 1),
                'm' => (Duration::from_secs(60), 1),
                'h' => (Duration::from_secs(3600), 1),
                _ => return None,
            }
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// A DNS label (RFC 1123): what a namespace or Service name is.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes qualified name: `[prefix/]name`, the prefix a DNS subdomain, the name 1–63
/// alphanumerics with `-`, `_`, `.` inside.
pub(crate) fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns_label));
    name_ok && prefix_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        Settings::read(&|k| {
            vars.iter()
                .find(|v| v.0 == k)
                .map(|v| v.1.to_string())
                .filter(|v| !v.trim().is_empty())
        })
    }

    #[test]
    fn defaults_are_params_env() {
        let s = read(&[]).unwrap();
        assert!(!s.enabled);
        assert_eq!(
            s.is_label,
            "modelregistry.kubeflow.org/inference-service-id"
        );
        assert_eq!(s.finalizer, "modelregistry.kubeflow.org/finalizer");
        assert_eq!(s.registries_namespace, "kubeflow");
        assert_eq!(s.workers, 1);
        assert_eq!(s.resync, Some(Duration::from_secs(3600)));
        assert_eq!(s.finalizer_timeout, Duration::from_secs(120));
        assert_eq!(s.watch_timeout, None);
        assert!(s.auth_kube);
    }

    #[test]
    fn aliases_and_their_conflicts() {
        let s = read(&[("MODEL_REGISTRY_URL_ANNOTATION", "a.io/url")]).unwrap();
        assert_eq!(s.url_annotation, "a.io/url");
        let s = read(&[
            ("URL_ANNOTATION", "b.io/url"),
            ("MODEL_REGISTRY_URL_ANNOTATION", "a.io/url"),
            ("WATCH_NAMESPACE", "a,b,a"),
        ])
        .unwrap();
        assert_eq!(s.url_annotation, "b.io/url");
        assert_eq!(s.namespaces, ["a", "b"]);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = read(&[("FINALIZER", "not a name")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid value in FINALIZER: "), "{e}");
        let e = read(&[("WORKERS", "17")]).unwrap_err().to_string();
        assert_eq!(e, "invalid value in WORKERS: '17' is not 1 to 16");
        let e = read(&[("WATCH_TIMEOUT_SECONDS", "0")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid value in WATCH_TIMEOUT_SECONDS: '0' is not a whole number of seconds from 1 to 3600"
        );
        let s = read(&[("WATCH_TIMEOUT_SECONDS", "5")]).unwrap();
        assert_eq!(s.watch_timeout, Some(5));
        assert_eq!(s.to_json()["WATCH_TIMEOUT_SECONDS"], 5);
        assert!(read(&[]).unwrap().to_json()["WATCH_TIMEOUT_SECONDS"].is_null());
        let e = read(&[("RESYNC_PERIOD", "soon")]).unwrap_err().to_string();
        assert!(e.starts_with("invalid value in RESYNC_PERIOD"), "{e}");
        let s = read(&[("SKIP_TLS_VERIFY", "yes"), ("RESYNC_PERIOD", "0")]).unwrap();
        assert!(!s.skip_tls_verify);
        assert_eq!(s.resync, None);
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn durations_and_names() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration(""), None);
        assert!(is_qualified_name("modelregistry.kubeflow.org/name"));
        assert!(is_qualified_name("name"));
        assert!(!is_qualified_name("a/b/c"));
        assert!(!is_qualified_name("Bad_Prefix/x"));
        assert!(!is_dns_label("Team-A"));
    }
}
