//! Which registry serves an InferenceService (contract section 3), first match wins: the URL
//! annotation; else the registry's Service in the namespace label's namespace (or
//! `REGISTRIES_NAMESPACE`), by the name label or by `component=model-registry`; from the
//! Service, its external-address annotation or its `http-api` port. Empty values count as
//! absent. Kubernetes reads, no writes, no cache.

use serde_json::Value;

use super::Shared;
use super::settings::is_dns_label;
use crate::error::{Error, quote, redact_url};
use crate::kube::unexpected;
use crate::uri::BaseUrl;

/// Why no registry URL.
#[derive(Debug)]
pub(crate) enum Missing {
    /// The Service is not there, or not usable: the registry went first.
    Gone(String),
    /// The annotation or the namespace label cannot name a registry.
    Invalid(String),
    /// Kubernetes failed to answer: try again.
    Transient(Error),
}

/// The registry's base URL for `isvc`.
pub(crate) fn registry_url(sh: &Shared, isvc: &Value) -> Result<BaseUrl, Missing> {
    let s = &sh.settings;
    let meta = &isvc["metadata"];
    let non_empty = |v: &Value| {
        v.as_str()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    if let Some(url) = non_empty(&meta["annotations"][&s.url_annotation]) {
        return parse_url(&url)
            .map_err(|why| Missing::Invalid(format!("annotation {}: {why}", s.url_annotation)));
    }
    let mrns = non_empty(&meta["labels"][&s.namespace_label])
        .unwrap_or_else(|| s.registries_namespace.clone());
    if !is_dns_label(&mrns) {
        return Err(Missing::Invalid(format!(
            "label {}: {} is not a namespace name",
            s.namespace_label,
            quote(&mrns)
        )));
    }
    let service = match non_empty(&meta["labels"][&s.name_label]) {
        Some(name) => {
            let path = format!(
                "/api/v1/namespaces/{mrns}/services/{}",
                crate::uri::percent_encode(&name)
            );
            let reply = sh.kube.get(&path).map_err(Missing::Transient)?;
            match reply.status {
                200 => reply.json(),
                404 => {
                    return Err(Missing::Gone(format!(
                        "no Service {} in namespace {mrns}",
                        quote(&name)
                    )));
                }
                _ => {
                    return Err(Missing::Transient(unexpected(
                        "GET",
                        &sh.kube.url(&path),
                        &reply,
                    )));
                }
            }
        }
        None => {
            let path = format!(
                "/api/v1/namespaces/{mrns}/services?labelSelector=component%3Dmodel-registry"
            );
            let reply = sh.kube.get(&path).map_err(Missing::Transient)?;
            if reply.status != 200 {
                return Err(Missing::Transient(unexpected(
                    "GET",
                    &sh.kube.url(&path),
                    &reply,
                )));
            }
            let list = reply.json();
            let items = list["items"].as_array().cloned().unwrap_or_default();
            match items.len() {
                1 => items.into_iter().next().unwrap_or_default(),
                0 => {
                    return Err(Missing::Gone(format!(
                        "no Service with the label component=model-registry in namespace {mrns}"
                    )));
                }
                n => {
                    return Err(Missing::Gone(format!(
                        "{n} Services with the label component=model-registry in namespace {mrns}: name one with the label {}",
                        s.name_label
                    )));
                }
            }
        }
    };
    let svc_name = service["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if let Some(address) = non_empty(&service["metadata"]["annotations"][&s.service_annotation]) {
        let url = if address.contains("://") {
            address
        } else {
            format!("https://{address}")
        };
        return parse_url(&url).map_err(|why| {
            Missing::Invalid(format!(
                "Service {mrns}/{svc_name} annotation {}: {why}",
                s.service_annotation
            ))
        });
    }
    let port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "http-api")
        .and_then(|p| p["port"].as_u64());
    match port {
        Some(port) => parse_url(&format!(
            "http://{svc_name}.{mrns}.{}:{port}",
            s.cluster_domain
        ))
        .map_err(Missing::Invalid),
        None => Err(Missing::Gone(format!(
            "Service {mrns}/{svc_name} has no port named http-api and no {} annotation",
            s.service_annotation
        ))),
    }
}

/// `http(s)://host[:port][/prefix]`, a trailing `/` trimmed; nothing else. Whoever may
/// annotate an InferenceService writes this URL, and the reason goes to the log and an Event:
/// it shows the URL without userinfo or query, where credentials would be.
pub(crate) fn parse_url(url: &str) -> Result<BaseUrl, String> {
    let url = url.trim().trim_end_matches('/');
    let shown = quote(&redact_url(url));
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{shown} is not an http(s):// URL"));
    }
    if url.contains(['?', '#']) {
        return Err(format!("{shown} has a query or fragment"));
    }
    if url
        .split('/')
        .nth(2)
        .is_some_and(|authority| authority.contains('@'))
    {
        return Err(format!(
            "{shown} carries userinfo (user@ or user:password@)"
        ));
    }
    BaseUrl::parse(url, "http")
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn registry_urls() {
        assert_eq!(
            parse_url("http://mr:8080/").unwrap().url(),
            "http://mr:8080"
        );
        assert_eq!(
            parse_url("https://gw.example/mr/").unwrap().url(),
            "https://gw.example/mr"
        );
        assert!(parse_url("mr:8080").is_err());
        assert!(parse_url("ftp://mr").is_err());
        assert_eq!(
            parse_url("http://u:secret@mr").unwrap_err(),
            "'http://u:<redacted>@mr' carries userinfo (user@ or user:password@)"
        );
        assert_eq!(
            parse_url("http://mr/x?token=secret").unwrap_err(),
            "'http://mr/x?<redacted>' has a query or fragment"
        );
        assert!(parse_url("http://mr:x").is_err());
    }
}
