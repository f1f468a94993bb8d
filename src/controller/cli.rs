//! The controller's command line: upstream's kubebuilder flags, all accepted (`--f=v` or
//! `--f v`; a boolean takes `--f` or `--f=v`), so its Deployment args work unchanged, and ours.
//! Pure: parses arguments, reads no environment.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, quote};

/// `--help`. `.ci/check-kustomize` reads the variable names the manifests may set from it.
pub(crate) const HELP: &str = "\
mr-controller: keeps the Kubeflow Model Registry in step with KServe InferenceServices.

Watches InferenceServices labelled with a registered model or inference service id, creates or
links an InferenceService entity per deployed model (one ServingEnvironment per namespace),
keeps its url in step, and holds a finalizer so a deletion marks it UNDEPLOYED.

USAGE:
    mr-controller [FLAGS]

FLAGS:
    --health-probe-bind-address ADDR  /healthz and /readyz (default :8081)
    --metrics-bind-address ADDR       /metrics, plain HTTP (default 0: off); the probe
                                      address too: one listener serves both
    --leader-elect[=BOOL]             hold the Lease a7d60e25.kubeflow.org before working
    --kubeconfig PATH                 the kubeconfig to use (else KUBECONFIG, in-cluster,
                                      ~/.kube/config)
    --zap-log-level LEVEL             debug, info or error (N >= 1: debug) when RUST_LOG is
                                      unset
    --metrics-secure, --enable-http2, --zap-devel, --zap-encoder, --zap-stacktrace-level,
    --zap-time-encoding               accepted for upstream's manifests, ignored
    --print-config                    print the effective settings as JSON and exit
    -h, --help                        print this help
    -V, --version                     print the version

ENVIRONMENT (empty counts as unset; defaults are upstream's params.env):
    INFERENCE_SERVICE_CONTROLLER   managed (or Managed, true) to reconcile; else probes only
    REGISTERED_MODEL_ID_LABEL      (modelregistry.kubeflow.org/registered-model-id)
    INFERENCE_SERVICE_ID_LABEL     (modelregistry.kubeflow.org/inference-service-id), written
    MODEL_VERSION_ID_LABEL         (modelregistry.kubeflow.org/model-version-id)
    NAME_LABEL                     (modelregistry.kubeflow.org/name) the registry's Service
    NAMESPACE_LABEL                (modelregistry.kubeflow.org/namespace) its namespace; alias
                                   MODEL_REGISTRY_NAMESPACE_LABEL
    URL_ANNOTATION                 (modelregistry.kubeflow.org/url) the registry's URL; alias
                                   MODEL_REGISTRY_URL_ANNOTATION
    SERVICE_ANNOTATION             (routing.kubeflow.org/external-address-rest)
    FINALIZER                      (modelregistry.kubeflow.org/finalizer)
    REGISTRIES_NAMESPACE           namespace of the registry without a label (kubeflow)
    SKIP_TLS_VERIFY                true: registry calls skip TLS verification (false)
    WATCH_NAMESPACES               comma-separated namespaces (default all); alias
                                   WATCH_NAMESPACE
    WORKERS                        reconcile threads, 1 to 16 (1)
    RESYNC_PERIOD                  every relevant InferenceService again (1h; 0 = off)
    FINALIZER_TIMEOUT              how long a deletion waits for the registry (2m)
    WATCH_TIMEOUT_SECONDS          each watch's timeoutSeconds, 1 to 3600 (random 240 to
                                   360); a silent watch is replaced after it plus 30 s or
                                   plus itself, whichever is shorter
    MODEL_REGISTRY_AUTH            kube: send the Kubernetes token to the registry; none (kube)
    MODEL_REGISTRY_TOKEN           the registry's bearer token (beats MODEL_REGISTRY_AUTH)
    MODEL_REGISTRY_TOKEN_FILE      a file holding it, re-read each minute and after a 401
    MODEL_REGISTRY_CA_FILE         extra PEM CA bundle for the registry
    MODEL_REGISTRY_CLUSTER_DOMAIN  Service URL suffix (svc.cluster.local)
    POD_NAME, POD_NAMESPACE        from the downward API: Events, the Lease
    KUBECONFIG                     kubeconfig path(s): the first that exists
    KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT
                                   in-cluster API server (with the service account's files)
    MR_CONTROLLER_SA_DIR           where the service account's files are
                                   (/var/run/secrets/kubernetes.io/serviceaccount)
    SSL_CERT_FILE                  extra PEM CA bundle to trust
    ALL_PROXY, HTTPS_PROXY, HTTP_PROXY, NO_PROXY
                                   proxies, as for the storage initializer
    RUST_LOG                       log level (default info)
";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub(crate) probe_address: String,
    /// `None`: off (`0`).
    pub(crate) metrics_address: Option<String>,
    pub(crate) leader_elect: bool,
    pub(crate) kubeconfig: Option<PathBuf>,
    /// `--zap-log-level` as a `log` level name.
    pub(crate) log_level: Option<String>,
    pub(crate) print_config: bool,
    /// Flags accepted and ignored, for one warning each.
    pub(crate) ignored: Vec<String>,
}

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Help,
    Version,
    Run(Flags),
}

/// Parses the arguments (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut flags = Flags {
        probe_address: ":8081".into(),
        ..Flags::default()
    };
    let usage = |e: lexopt::Error| Error::Usage(e.to_string());
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("print-config") => flags.print_config = true,
            Long("health-probe-bind-address") => {
                flags.probe_address = text(parser.value().map_err(usage)?)?;
            }
            Long("metrics-bind-address") => {
                let value = text(parser.value().map_err(usage)?)?;
                flags.metrics_address = (value != "0").then_some(value);
            }
            Long("kubeconfig") => {
                flags.kubeconfig = Some(PathBuf::from(parser.value().map_err(usage)?));
            }
            Long("leader-elect") => {
                flags.leader_elect = boolean("leader-elect", parser.optional_value())?;
            }
            Long("zap-log-level") => {
                let value = text(parser.value().map_err(usage)?)?;
                flags.log_level = Some(zap_level(&value)?);
            }
            Long("metrics-secure") => {
                let on = boolean("metrics-secure", parser.optional_value())?;
                if on {
                    flags
                        .ignored
                        .push("--metrics-secure=true: metrics are served over plain HTTP".into());
                }
            }
            // HTTP/1.1 is all the probes speak: nothing to warn about.
            Long("enable-http2") => {
                boolean("enable-http2", parser.optional_value())?;
            }
            // zap's development mode: our log format is fixed, which the contract says with
            // a warning, as for the other zap flags.
            Long("zap-devel") => {
                boolean("zap-devel", parser.optional_value())?;
                flags.ignored.push("--zap-devel is ignored".into());
            }
            Long(name @ ("zap-encoder" | "zap-stacktrace-level" | "zap-time-encoding")) => {
                let name = name.to_string();
                parser.value().map_err(usage)?;
                flags.ignored.push(format!("--{name} is ignored"));
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(Command::Run(flags))
}

fn text(value: OsString) -> Result<String, Error> {
    value
        .into_string()
        .map_err(|v| Error::Usage(format!("{} is not UTF-8", quote(&v.to_string_lossy()))))
}

// Go's strconv.ParseBool words; a bare flag is true.
fn boolean(name: &str, value: Option<OsString>) -> Result<bool, Error> {
    let Some(value) = value else { return Ok(true) };
    match value.to_str() {
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        _ => Err(Error::Usage(format!(
            "--{name}: {} is not true or false",
            quote(&value.to_string_lossy())
        ))),
    }
}

// zap's levels: names, or a number N >= 1 meaning verbosity (debug here).
fn zap_level(value: &str) -> Result<String, Error> {
    match value {
        "debug" | "info" | "error" => Ok(value.into()),
        "warn" => Ok("warn".into()),
        n if n.parse::<u32>().is_ok_and(|n| n >= 1) => Ok("debug".into()),
        _ => Err(Error::Usage(format!(
            "--zap-log-level: {} is not debug, info, error or a number",
            quote(value)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn upstreams_args_parse() {
        let Command::Run(f) = run(&[
            "--leader-elect",
            "--health-probe-bind-address=:8081",
            "--metrics-bind-address",
            ":8080",
            "--zap-log-level=2",
            "--metrics-secure=false",
            "--zap-encoder",
            "json",
            "--zap-devel=false",
            "--enable-http2",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(f.leader_elect);
        assert_eq!(f.metrics_address.as_deref(), Some(":8080"));
        assert_eq!(f.log_level.as_deref(), Some("debug"));
        assert_eq!(
            f.ignored,
            ["--zap-encoder is ignored", "--zap-devel is ignored"]
        );
        let Command::Run(f) = run(&["--leader-elect=false", "--metrics-bind-address=0"]).unwrap()
        else {
            panic!()
        };
        assert!(!f.leader_elect);
        assert_eq!(f.metrics_address, None);
    }

    #[test]
    fn unknown_flags_and_bad_booleans_are_usage_errors() {
        assert!(matches!(run(&["--nope"]), Err(Error::Usage(_))));
        assert!(matches!(
            run(&["--leader-elect=maybe"]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(run(&["stray"]), Err(Error::Usage(_))));
        assert_eq!(run(&["-h"]).unwrap(), Command::Help);
    }
}
