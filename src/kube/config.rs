//! Where the Kubernetes API is and how to prove who we are, in controller-runtime's order:
//! `--kubeconfig`, `KUBECONFIG` (the first path that exists; files are not merged), in-cluster
//! (`KUBERNETES_SERVICE_HOST`/`PORT`, the service account's CA and token), `~/.kube/config`.
//!
//! The kubeconfig subset: `current-context` → its cluster and user; cluster `server` (a path
//! prefix kept), `certificate-authority(-data)`, `insecure-skip-tls-verify`; user `token`,
//! `tokenFile`, `client-certificate(-data)` + `client-key(-data)`. Paths are relative to the
//! file. `exec`, `auth-provider` and basic auth are refused when they are the only credential.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey};

use super::token::Token;
use super::yaml;
use crate::error::{Error, quote};

/// The service account's files in a pod.
pub(crate) const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach the API server.
pub(crate) struct Access {
    /// `https://host:port[/prefix]`, no trailing `/`.
    pub(crate) server: String,
    /// The CA certificates to trust; empty: the usual roots.
    pub(crate) roots: Vec<Certificate<'static>>,
    /// `insecure-skip-tls-verify`.
    pub(crate) insecure: bool,
    pub(crate) token: Option<Token>,
    pub(crate) client_cert: Option<ClientCert>,
    /// Where this came from, for the start-up line: "in-cluster", "kubeconfig PATH".
    pub(crate) source: String,
    /// Warnings to log once logging is up.
    pub(crate) warnings: Vec<String>,
}

/// Finds the access in controller-runtime's order. `flag` is `--kubeconfig`; `get` reads the
/// environment; `sa_dir` is `SA_DIR` (tests hand in another).
pub(crate) fn find(
    flag: Option<&Path>,
    get: &dyn Fn(&str) -> Option<String>,
    sa_dir: &Path,
) -> Result<Access, Error> {
    if let Some(path) = flag {
        return from_kubeconfig(path, "--kubeconfig");
    }
    if let Some(list) = get("KUBECONFIG") {
        let found = std::env::split_paths(&list).find(|p| p.is_file());
        match found {
            Some(path) => return from_kubeconfig(&path, "KUBECONFIG"),
            None => {
                let reason = format!("none of {} exists", quote(&list));
                return Err(Error::env("KUBECONFIG", reason));
            }
        }
    }
    if let Some(host) = get("KUBERNETES_SERVICE_HOST") {
        return in_cluster(&host, get("KUBERNETES_SERVICE_PORT"), sa_dir);
    }
    if let Some(home) = get("HOME") {
        let path = Path::new(&home).join(".kube/config");
        if path.is_file() {
            return from_kubeconfig(&path, "~/.kube/config");
        }
    }
    Err(Error::env(
        "KUBECONFIG",
        "no Kubernetes API to talk to: not in a cluster (KUBERNETES_SERVICE_HOST unset), no --kubeconfig, KUBECONFIG or ~/.kube/config",
    ))
}

fn in_cluster(host: &str, port: Option<String>, sa_dir: &Path) -> Result<Access, Error> {
    let port = port.unwrap_or_else(|| "443".into());
    if port.parse::<u16>().is_err() {
        let reason = format!("{} is not a port", quote(&port));
        return Err(Error::env("KUBERNETES_SERVICE_PORT", reason));
    }
    // An IPv6 address is bracketed in a URL.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let ca = sa_dir.join("ca.crt");
    let pem = std::fs::read(&ca).map_err(|e| Error::io("read the cluster CA", &ca, e))?;
    Ok(Access {
        server: format!("https://{host}:{port}"),
        roots: certificates(&pem, &ca.to_string_lossy())?,
        insecure: false,
        token: Some(Token::file(
            sa_dir.join("token"),
            "the service account token",
        )),
        client_cert: None,
        source: "in-cluster".into(),
        warnings: Vec::new(),
    })
}

fn from_kubeconfig(path: &Path, named_by: &str) -> Result<Access, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read kubeconfig", path, e))?;
    let bad = |reason: String| Error::env(named_by, format!("{}: {reason}", path.display()));
    let doc = yaml::parse(&text).map_err(bad)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let context_name = doc["current-context"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("no current-context".into()))?;
    let named = |list: &str, name: &str, field: &str| -> Result<Value, Error> {
        doc[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e[field].clone())
            .ok_or_else(|| bad(format!("no {field} named {}", quote(name))))
    };
    let context = named("contexts", context_name, "context")?;
    let cluster_name = context["cluster"].as_str().unwrap_or_default();
    let cluster = named("clusters", cluster_name, "cluster")?;
    let user = match context["user"].as_str() {
        Some(name) if !name.is_empty() => named("users", name, "user")?,
        _ => Value::Null,
    };
    let server = cluster["server"]
        .as_str()
        .ok_or_else(|| bad(format!("cluster {} has no server", quote(cluster_name))))?
        .trim_end_matches('/')
        .to_string();
    if !server.starts_with("https://") && !server.starts_with("http://") {
        return Err(bad(format!(
            "server {} is not an http(s) URL",
            quote(&server)
        )));
    }
    let mut warnings = Vec::new();
    for field in ["proxy-url", "tls-server-name"] {
        if cluster.get(field).is_some() {
            warnings.push(format!(
                "kubeconfig: cluster field {field} is not supported, ignored"
            ));
        }
    }
    let read = |field: &str, holder: &Value| -> Result<Option<Vec<u8>>, Error> {
        let data_field = format!("{field}-data");
        if let Some(data) = holder[data_field.as_str()].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| bad(format!("{data_field} is not base64: {e}")))?;
            return Ok(Some(bytes));
        }
        match holder[field].as_str() {
            Some(file) => {
                let file = dir.join(file);
                let bytes = std::fs::read(&file)
                    .map_err(|e| Error::io("read kubeconfig file", &file, e))?;
                Ok(Some(bytes))
            }
            None => Ok(None),
        }
    };
    let roots = match read("certificate-authority", &cluster)? {
        Some(pem) => certificates(&pem, "certificate-authority")?,
        None => Vec::new(),
    };
    let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
        (Some(t), _) if !t.is_empty() => Some(Token::Value(crate::settings::Secret::new(t))),
        (_, Some(f)) if !f.is_empty() => Some(Token::file(dir.join(f), "kubeconfig tokenFile")),
        _ => None,
    };
    let client_cert = match (
        read("client-certificate", &user)?,
        read("client-key", &user)?,
    ) {
        (Some(cert), Some(key)) => {
            let chain = certificates(&cert, "client-certificate")?;
            let key = PrivateKey::from_pem(&key)
                .map_err(|e| bad(format!("client-key is not a PEM private key: {e}")))?;
            Some(ClientCert::new_with_certs(&chain, key))
        }
        (None, None) => None,
        _ => return Err(bad("client-certificate and client-key go together".into())),
    };
    if token.is_none() && client_cert.is_none() {
        for (field, advice) in [
            (
                "exec",
                "use a token from `kubectl create token` in `token` or `tokenFile`",
            ),
            ("auth-provider", "use a token in `token` or `tokenFile`"),
            ("username", "basic auth is not supported; use a token"),
        ] {
            if user.get(field).is_some() {
                return Err(bad(format!(
                    "user credential `{field}` is not supported: {advice}"
                )));
            }
        }
    }
    Ok(Access {
        server,
        roots,
        insecure: cluster["insecure-skip-tls-verify"] == true,
        token,
        client_cert,
        source: format!("kubeconfig {} (context {context_name})", path.display()),
        warnings,
    })
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>, Error> {
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::env(
            "KUBECONFIG",
            format!("{}: no PEM certificate in it", quote(what)),
        ));
    }
    Ok(certs)
}

/// The namespace the pod runs in: `POD_NAMESPACE`, else the service account's file.
pub(crate) fn pod_namespace(get: &dyn Fn(&str) -> Option<String>, sa_dir: &Path) -> Option<String> {
    get("POD_NAMESPACE").or_else(|| {
        std::fs::read_to_string(sa_dir.join("namespace"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
}

/// `SA_DIR`, or `MR_CONTROLLER_SA_DIR` when set (tests: a folder standing in for the mount).
pub(crate) fn sa_dir(get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    get("MR_CONTROLLER_SA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SA_DIR))
}
