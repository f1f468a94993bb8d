//! The `MODEL_REGISTRY_*` variables: which registry to call, its token and its own CA file.

use std::path::PathBuf;

use super::Secret;
use crate::error::{Error, quote};
use crate::uri::{BaseUrl, check_port};

/// The `MODEL_REGISTRY_*` variables.
#[derive(Debug, Clone)]
pub(crate) struct RegistrySettings {
    /// The default registry (`MODEL_REGISTRY_BASE_URL` with `MODEL_REGISTRY_SCHEME`).
    pub(crate) base: BaseUrl,
    /// `MODEL_REGISTRY_SERVICE_NAME`, used with `?namespace=`.
    pub(crate) service_name: String,
    /// `MODEL_REGISTRY_CLUSTER_DOMAIN`, used with `?namespace=`.
    pub(crate) cluster_domain: String,
    /// Where the bearer token comes from, if anywhere.
    pub(crate) token: Option<TokenSource>,
    /// `MODEL_REGISTRY_CA_FILE`: an extra PEM bundle to trust for the registry only.
    pub(crate) ca_file: Option<PathBuf>,
    /// `MODEL_REGISTRY_TOKEN_HOSTS`: `host[:port]` entries, besides the base URL's host and its
    /// namespaced form, that may receive the token when a URI names them.
    pub(crate) token_hosts: Vec<String>,
}

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<RegistrySettings, Error> {
    let scheme = get("MODEL_REGISTRY_SCHEME")
        .unwrap_or_else(|| "http".into())
        .to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        let reason = format!("{} is not http or https", quote(&scheme));
        return Err(Error::env("MODEL_REGISTRY_SCHEME", reason));
    }
    let base_value = get("MODEL_REGISTRY_BASE_URL").unwrap_or_else(|| "localhost:8080".into());
    let base = BaseUrl::parse(base_value.trim(), &scheme)
        .map_err(|reason| Error::env("MODEL_REGISTRY_BASE_URL", reason))?;

    // The value wins over the file.
    let token = get("MODEL_REGISTRY_TOKEN")
        .map(|t| TokenSource::Value(Secret::new(t.trim())))
        .or_else(|| get("MODEL_REGISTRY_TOKEN_FILE").map(|f| TokenSource::File(f.into())));

    let mut token_hosts = Vec::new();
    for entry in get("MODEL_REGISTRY_TOKEN_HOSTS")
        .unwrap_or_default()
        .split(',')
    {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entry.contains(['/', '?', '#', '@', ' ']) {
            let reason = format!("{} is not host[:port]", quote(entry));
            return Err(Error::env("MODEL_REGISTRY_TOKEN_HOSTS", reason));
        }
        check_port(entry).map_err(|reason| Error::env("MODEL_REGISTRY_TOKEN_HOSTS", reason))?;
        token_hosts.push(entry.to_string());
    }

    Ok(RegistrySettings {
        base,
        service_name: get("MODEL_REGISTRY_SERVICE_NAME")
            .unwrap_or_else(|| "model-registry-service".into()),
        cluster_domain: get("MODEL_REGISTRY_CLUSTER_DOMAIN")
            .unwrap_or_else(|| "svc.cluster.local".into()),
        token,
        ca_file: get("MODEL_REGISTRY_CA_FILE").map(PathBuf::from),
        token_hosts,
    })
}

/// Where the registry's bearer token comes from.
#[derive(Debug, Clone)]
pub(crate) enum TokenSource {
    /// `MODEL_REGISTRY_TOKEN`.
    Value(Secret),
    /// `MODEL_REGISTRY_TOKEN_FILE`, read when the registry is called (a projected
    /// service-account token is rotated on disk).
    File(PathBuf),
}

impl TokenSource {
    /// The token itself; a file is read now, and surrounding whitespace is dropped.
    pub(crate) fn read(&self) -> Result<Secret, Error> {
        match self {
            TokenSource::Value(s) => Ok(s.clone()),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io("read registry token file", path, e))?;
                let token = text.trim();
                if token.is_empty() {
                    let reason = format!("{} is empty", quote(&path.to_string_lossy()));
                    return Err(Error::env("MODEL_REGISTRY_TOKEN_FILE", reason));
                }
                Ok(Secret::new(token))
            }
        }
    }
}
