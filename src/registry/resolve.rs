//! Look up and select: turn a parsed `model-registry://` URI into one artifact URI.
//!
//! Chooses the registry (namespace, host in the URI, probe, or the default), then makes at
//! most three calls — model, version, artifacts — following further pages only when `select`
//! says a later page could hold the answer. Every failure carries the model, version and
//! registry URL.

use serde::Serialize;
use ureq::Agent;

use crate::error::{Error, Lookup, redact_url};
use crate::registry::client::{self, Client, List};
use crate::registry::select::{self, ArtifactChoice};
use crate::settings::RegistrySettings;
use crate::uri::{BaseUrl, RegistryUri, Target, split_port};

/// What a `model-registry://` URI resolved to; printed as JSON by `--resolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Resolution {
    pub(crate) registry_url: String,
    pub(crate) model_name: String,
    pub(crate) model_id: String,
    pub(crate) version_name: String,
    pub(crate) version_id: String,
    pub(crate) artifact_id: String,
    pub(crate) artifact_uri: String,
}

// A safety net against a server whose page tokens never end.
const MAX_PAGES: usize = 100;

/// Resolves `uri` against the registry it names.
pub(crate) fn resolve(
    uri: &RegistryUri,
    settings: &RegistrySettings,
    agent: &Agent,
    fetchable: &dyn Fn(&str) -> bool,
) -> Result<Resolution, Error> {
    let (base, model, version, registry_in_uri) = choose_registry(uri, settings, agent);
    let fail = |why: Lookup| Error::Resolve {
        model: model.clone(),
        version: version.clone(),
        registry: base.url(),
        registry_in_uri,
        why: Box::new(why),
    };
    // The token is the operator's: it goes to the registry the operator configured, never
    // to a host a URI (user input) names, unless the operator listed that host.
    let trusted = uri.namespace.is_some() || may_get_token(&base, settings);
    let token = match &settings.token {
        Some(source) if trusted => Some(source.read()?),
        Some(_) => {
            log::warn!(
                "not sending the registry token to '{}': it is not MODEL_REGISTRY_BASE_URL's host; list it in MODEL_REGISTRY_TOKEN_HOSTS to send it",
                base.authority
            );
            None
        }
        None => None,
    };
    let client = Client::new(agent, base.clone(), token);

    let found = client.find_model(&model).map_err(fail)?;
    let model_id = found.id.clone().ok_or_else(|| {
        fail(malformed(
            &base.api("/registered_model"),
            "the registered model has no id",
        ))
    })?;
    log::info!("registered model '{}' is id {model_id}", found.name);

    let chosen = match &version {
        Some(name) => client.find_version(name, &model_id).map_err(fail)?,
        None => {
            let versions_url = base.api(&format!("/registered_models/{model_id}/versions"));
            let versions = collect_pages(
                |token| client.versions(&model_id, token),
                |all| {
                    let choice = select::newest_version(all)?;
                    Ok(choice
                        .newest
                        .map(|i| all[i].create_time_since_epoch.clone().unwrap_or_default()))
                },
                |v| v.create_time_since_epoch.as_deref(),
                &versions_url,
                &fail,
            )?;
            let choice = select::newest_version(&versions)
                .map_err(|reason| fail(malformed(&versions_url, reason)))?;
            let Some(i) = choice.newest else {
                return Err(fail(Lookup::NoVersions {
                    archived: choice.archived,
                }));
            };
            log::info!(
                "newest version is '{}' (id {}) of {} listed, {} archived skipped",
                versions[i].name,
                versions[i].id,
                versions.len(),
                choice.archived
            );
            versions[i].clone()
        }
    };
    if version.is_some() {
        log::info!("version '{}' is id {}", chosen.name, chosen.id);
    }

    let artifacts_url = base.api(&format!("/model_versions/{}/artifacts", chosen.id));
    let artifacts = collect_pages(
        |token| client.artifacts(&chosen.id, token),
        |all| {
            Ok(match select::newest_model_artifact(all)? {
                ArtifactChoice::Found(i) => {
                    Some(all[i].create_time_since_epoch.clone().unwrap_or_default())
                }
                _ => None,
            })
        },
        |a| a.create_time_since_epoch.as_deref(),
        &artifacts_url,
        &fail,
    )?;
    let choice = select::newest_model_artifact(&artifacts)
        .map_err(|reason| fail(malformed(&artifacts_url, reason)))?;
    let artifact = match choice {
        ArtifactChoice::Found(i) => &artifacts[i],
        ArtifactChoice::EmptyUri(artifact_id) => {
            return Err(fail(Lookup::EmptyArtifactUri { artifact_id }));
        }
        ArtifactChoice::None { seen, skipped } => {
            return Err(fail(Lookup::NoModelArtifact { seen, skipped }));
        }
    };
    let artifact_uri = artifact.uri.clone().unwrap_or_default().trim().to_string();
    let artifact_id = artifact.id.clone().unwrap_or_default();
    // A registry artifact must name its storage: a bare path is not a URI. Which schemes can be
    // fetched is the storage side's to say.
    if !artifact_uri.contains("://") || !fetchable(&artifact_uri) {
        return Err(fail(Lookup::UnsupportedScheme { uri: artifact_uri }));
    }
    log::info!(
        "model artifact {artifact_id} of version '{}': {}",
        chosen.name,
        redact_url(&artifact_uri)
    );

    Ok(Resolution {
        registry_url: base.url(),
        model_name: found.name,
        model_id,
        version_name: chosen.name,
        version_id: chosen.id,
        artifact_id,
        artifact_uri,
    })
}

/// Which registry to ask, the model and version to ask for, and whether the URI named the
/// registry (a host or a namespace) rather than leaving it to `MODEL_REGISTRY_BASE_URL`.
fn choose_registry(
    uri: &RegistryUri,
    settings: &RegistrySettings,
    agent: &Agent,
) -> (BaseUrl, String, Option<String>, bool) {
    let at = |authority: String| BaseUrl {
        scheme: settings.base.scheme.clone(),
        authority,
        path_prefix: String::new(),
    };
    let (base, model, version, named) = match (&uri.target, &uri.namespace) {
        // The parser folds this into `Default` when a namespace is given.
        (Target::HostOrModel { first, second }, _) => {
            let candidate = at(first.clone());
            if client::probe(agent, &candidate) {
                log::info!(
                    "'{first}' answers as a model registry: reading the URI as host '{first}', model '{second}'"
                );
                (candidate, second.clone(), None, true)
            } else {
                log::info!(
                    "'{first}' is not a reachable model registry: reading the URI as model '{first}', version '{second}'"
                );
                let version = Some(second.clone());
                (settings.base.clone(), first.clone(), version, false)
            }
        }
        (Target::Default { model, version } | Target::Host { model, version, .. }, ns) => {
            let host = match &uri.target {
                Target::Host { host, .. } => Some(host),
                _ => None,
            };
            let base = match (host, ns) {
                (Some(host), Some(ns)) => {
                    log::info!(
                        "?namespace={ns} names the registry: ignoring host '{host}' in the URI"
                    );
                    namespaced(settings, ns)
                }
                (None, Some(ns)) => namespaced(settings, ns),
                (Some(host), None) => at(host.clone()),
                (None, None) => settings.base.clone(),
            };
            let named = host.is_some() || ns.is_some();
            (base, model.clone(), version.clone(), named)
        }
    };
    log::info!("model registry: {}", base.url());
    (base, model, version, named)
}

/// Whether `base` is the configured registry's host and port, or a host listed in
/// `MODEL_REGISTRY_TOKEN_HOSTS` (an entry without a port matches any port).
fn may_get_token(base: &BaseUrl, settings: &RegistrySettings) -> bool {
    let default_port = |b: &BaseUrl| if b.scheme == "https" { 443 } else { 80 };
    let (host, port) = split_port(&base.authority);
    let port = port.unwrap_or(default_port(base));
    let configured = &settings.base;
    let (c_host, c_port) = split_port(&configured.authority);
    if c_host.eq_ignore_ascii_case(host) && c_port.unwrap_or(default_port(configured)) == port {
        return true;
    }
    settings.token_hosts.iter().any(|entry| {
        let (e_host, e_port) = split_port(entry);
        e_host.eq_ignore_ascii_case(host) && e_port.is_none_or(|p| p == port)
    })
}

/// `<service>.<ns>.<domain>:<port of the base URL, else 8080>`.
fn namespaced(settings: &RegistrySettings, ns: &str) -> BaseUrl {
    let port = settings.base.port().unwrap_or(8080);
    let authority = format!(
        "{}.{ns}.{}:{port}",
        settings.service_name, settings.cluster_domain
    );
    BaseUrl {
        scheme: settings.base.scheme.clone(),
        authority,
        path_prefix: String::new(),
    }
}

/// Reads pages of a list sorted newest first until `chosen` says a later page cannot hold a
/// better answer. `chosen` returns the create time of the current choice, if any; `list_url`
/// names the list in errors.
fn collect_pages<T>(
    mut page: impl FnMut(&str) -> Result<List<T>, Lookup>,
    chosen: impl Fn(&[T]) -> Result<Option<String>, String>,
    create_time: impl Fn(&T) -> Option<&str>,
    list_url: &str,
    fail: &impl Fn(Lookup) -> Error,
) -> Result<Vec<T>, Error> {
    let mut all = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_PAGES {
        let list = page(&token).map_err(fail)?;
        token = list.next_page_token;
        let last_time = list
            .items
            .last()
            .and_then(|i| create_time(i).map(String::from));
        all.extend(list.items);
        if token.is_empty() {
            return Ok(all);
        }
        let best = chosen(&all).map_err(|reason| fail(malformed(list_url, reason)))?;
        if !select::needs_next_page(last_time.as_deref(), best.as_deref()) {
            return Ok(all);
        }
        log::debug!("following nextPageToken: no better choice can be ruled out yet");
    }
    let reason = format!("more than {MAX_PAGES} pages of results");
    Err(fail(malformed(list_url, reason)))
}

// The registry answered `url` with something that is not what the API promises.
fn malformed(url: &str, reason: impl Into<String>) -> Lookup {
    let (url, reason) = (url.to_string(), reason.into());
    Lookup::Malformed { url, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn the_token_goes_to_the_base_host_and_listed_hosts_only() {
        let s = Settings::from_lookup(|k| match k {
            "MODEL_REGISTRY_BASE_URL" => Some("MR.kubeflow:8080".into()),
            "MODEL_REGISTRY_TOKEN_HOSTS" => Some(" other:9000, any-port ,".into()),
            _ => None,
        })
        .unwrap();
        let at = |authority: &str| BaseUrl {
            scheme: "http".into(),
            authority: authority.into(),
            path_prefix: String::new(),
        };
        for (authority, sent) in [
            ("mr.kubeflow:8080", true),
            ("mr.kubeflow:8081", false),
            ("mr.kubeflow", false),
            ("attacker:80", false),
            ("other:9000", true),
            ("other:9001", false),
            ("any-port:1234", true),
            ("any-port", true),
        ] {
            assert_eq!(
                may_get_token(&at(authority), &s.registry),
                sent,
                "{authority}"
            );
        }
        let bad = Settings::from_lookup(|k| {
            (k == "MODEL_REGISTRY_TOKEN_HOSTS").then(|| "https://x/".to_string())
        });
        assert!(bad.is_err());
    }

    #[test]
    fn namespace_uses_the_base_port_or_8080() {
        let s = Settings::from_lookup(|k| {
            (k == "MODEL_REGISTRY_BASE_URL").then(|| "mr.kubeflow:9090".to_string())
        })
        .unwrap();
        assert_eq!(
            namespaced(&s.registry, "team-a").url(),
            "http://model-registry-service.team-a.svc.cluster.local:9090"
        );
        let s = Settings::from_lookup(|k| {
            (k == "MODEL_REGISTRY_BASE_URL").then(|| "https://gw.example.com/mr".to_string())
        })
        .unwrap();
        assert_eq!(
            namespaced(&s.registry, "team-a").url(),
            "https://model-registry-service.team-a.svc.cluster.local:8080"
        );
    }
}
