//! Everything the program reads from its environment, read once, in one place.
//!
//! `Settings::from_lookup` takes a lookup function rather than calling `std::env::var`, so tests
//! hand in a map. An empty variable counts as unset, as in both upstream initializers. Errors
//! name the variable. Secrets are held in `Secret`, whose `Debug` never shows the value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use crate::error::Error;

/// The registry's API path below the base URL.
pub const API_PREFIX: &str = "/api/model_registry/v1alpha3";

/// Everything read from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where and how to reach the Model Registry.
    pub registry: RegistrySettings,
    /// Extra trust for TLS, shared by every HTTPS connection the program makes.
    pub tls: TlsSettings,
    /// `ALLOWED_ARTIFACT_URI_PREFIXES`: when set, artifact URIs must start with one of these.
    pub allowed_artifact_prefixes: Option<Vec<String>>,
    /// `<hostname>-headers`: extra HTTP headers for one host, as KServe reads them (a JSON
    /// object), keyed by the lowercased host name. Held as secrets: they often carry tokens.
    pub http_headers: BTreeMap<String, Secret>,
}

/// The `MODEL_REGISTRY_*` variables.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// The default registry (`MODEL_REGISTRY_BASE_URL` with `MODEL_REGISTRY_SCHEME`).
    pub base: BaseUrl,
    /// `MODEL_REGISTRY_SERVICE_NAME`, used with `?namespace=`.
    pub service_name: String,
    /// `MODEL_REGISTRY_CLUSTER_DOMAIN`, used with `?namespace=`.
    pub cluster_domain: String,
    /// Where the bearer token comes from, if anywhere.
    pub token: Option<TokenSource>,
    /// `MODEL_REGISTRY_CA_FILE`: an extra PEM bundle to trust for the registry.
    pub ca_file: Option<PathBuf>,
}

/// A registry base URL: scheme, `host[:port]` and an optional path prefix (a gateway's `/mr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `host`, `host:port` or `[v6]:port`, as written.
    pub authority: String,
    /// Empty, or a path starting with `/` and not ending with one.
    pub path_prefix: String,
}

impl BaseUrl {
    /// Parses `host[:port]` (taking `default_scheme`) or `scheme://host[:port][/prefix]`.
    pub fn parse(value: &str, default_scheme: &str) -> Result<BaseUrl, String> {
        let (scheme, rest) = match value.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => (default_scheme.to_string(), value),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme '{scheme}' is not http or https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("'{value}' names no host"));
        }
        if authority.contains(['?', '#', '@', ' ']) {
            return Err(format!("'{value}' is not host[:port] or a URL"));
        }
        Ok(BaseUrl {
            scheme,
            authority: authority.to_string(),
            path_prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The port written in the authority, if any.
    pub fn port(&self) -> Option<u16> {
        split_port(&self.authority).1
    }

    /// `scheme://authority/prefix`, the registry's URL as shown to users.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path_prefix)
    }

    /// The URL of an API path such as `/registered_model?name=iris`.
    pub fn api(&self, path_and_query: &str) -> String {
        format!("{}{API_PREFIX}{path_and_query}", self.url())
    }
}

/// Splits `host:port` or `[v6]:port` into host and a numeric port; anything else has no port.
pub fn split_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// Where the registry's bearer token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// `MODEL_REGISTRY_TOKEN`.
    Value(Secret),
    /// `MODEL_REGISTRY_TOKEN_FILE`, read when the registry is called (a projected
    /// service-account token is rotated on disk).
    File(PathBuf),
}

impl TokenSource {
    /// The token itself; a file is read now, and surrounding whitespace is dropped.
    pub fn read(&self) -> Result<Secret, Error> {
        match self {
            TokenSource::Value(s) => Ok(s.clone()),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io("read registry token file", path, e))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(Error::Env {
                        var: "MODEL_REGISTRY_TOKEN_FILE".into(),
                        reason: format!("'{}' is empty", path.display()),
                    });
                }
                Ok(Secret(token.to_string()))
            }
        }
    }
}

/// Trust added to every TLS connection.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `SSL_CERT_FILE`: a PEM bundle that replaces the system bundle, as OpenSSL reads it.
    pub ssl_cert_file: Option<PathBuf>,
    /// KServe's CA bundle: `$CA_BUNDLE_VOLUME_MOUNT_POINT/cabundle.crt` when
    /// `CA_BUNDLE_CONFIGMAP_NAME` is set.
    pub kserve_ca_bundle: Option<PathBuf>,
}

/// A value that must never be printed: `Debug` and `Display` show `(redacted)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

// KServe's default mount point for its CA bundle configmap.
const DEFAULT_CA_BUNDLE_MOUNT: &str = "/etc/ssl/custom-certs";

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, Error> {
        let vars: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Settings::from_vars(&vars)
    }

    /// `from_lookup` over a map, plus the `<hostname>-headers` variables, which can only be
    /// found by looking at every name.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Settings, Error> {
        let mut settings = Settings::from_lookup(|k| vars.get(k).cloned())?;
        settings.http_headers = vars
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .filter_map(|(k, v)| {
                let host = k.strip_suffix("-headers")?;
                Some((host.to_ascii_lowercase(), Secret(v.clone())))
            })
            .collect();
        Ok(settings)
    }

    /// Reads every setting through `lookup` (in `main`: `|k| std::env::var(k).ok()`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        // Empty counts as unset.
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());

        let scheme = get("MODEL_REGISTRY_SCHEME")
            .unwrap_or_else(|| "http".into())
            .to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(Error::Env {
                var: "MODEL_REGISTRY_SCHEME".into(),
                reason: format!("'{scheme}' is not http or https"),
            });
        }
        let base_value = get("MODEL_REGISTRY_BASE_URL").unwrap_or_else(|| "localhost:8080".into());
        let base = BaseUrl::parse(base_value.trim(), &scheme).map_err(|reason| Error::Env {
            var: "MODEL_REGISTRY_BASE_URL".into(),
            reason,
        })?;

        let token = match (
            get("MODEL_REGISTRY_TOKEN"),
            get("MODEL_REGISTRY_TOKEN_FILE"),
        ) {
            (Some(t), _) => Some(TokenSource::Value(Secret(t.trim().to_string()))),
            (None, Some(f)) => Some(TokenSource::File(PathBuf::from(f))),
            (None, None) => None,
        };

        let kserve_ca_bundle = get("CA_BUNDLE_CONFIGMAP_NAME").map(|_| {
            let dir = get("CA_BUNDLE_VOLUME_MOUNT_POINT")
                .unwrap_or_else(|| DEFAULT_CA_BUNDLE_MOUNT.into());
            PathBuf::from(dir).join("cabundle.crt")
        });

        let allowed_artifact_prefixes = get("ALLOWED_ARTIFACT_URI_PREFIXES").map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        });

        Ok(Settings {
            registry: RegistrySettings {
                base,
                service_name: get("MODEL_REGISTRY_SERVICE_NAME")
                    .unwrap_or_else(|| "model-registry-service".into()),
                cluster_domain: get("MODEL_REGISTRY_CLUSTER_DOMAIN")
                    .unwrap_or_else(|| "svc.cluster.local".into()),
                token,
                ca_file: get("MODEL_REGISTRY_CA_FILE").map(PathBuf::from),
            },
            tls: TlsSettings {
                ssl_cert_file: get("SSL_CERT_FILE").map(PathBuf::from),
                kserve_ca_bundle,
            },
            allowed_artifact_prefixes,
            http_headers: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_upstream() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.registry.base.url(), "http://localhost:8080");
        assert_eq!(s.registry.service_name, "model-registry-service");
        assert_eq!(s.registry.cluster_domain, "svc.cluster.local");
        assert!(s.registry.token.is_none());
        assert!(s.allowed_artifact_prefixes.is_none());
    }

    #[test]
    fn empty_counts_as_unset() {
        let s = settings(&[
            ("MODEL_REGISTRY_BASE_URL", ""),
            ("MODEL_REGISTRY_SCHEME", ""),
        ])
        .unwrap();
        assert_eq!(s.registry.base.url(), "http://localhost:8080");
    }

    #[test]
    fn base_url_forms() {
        let cases = [
            ("mr:8080", "http", "http://mr:8080", Some(8080)),
            ("mr", "https", "https://mr", None),
            (
                "https://gw.example.com/mr/",
                "http",
                "https://gw.example.com/mr",
                None,
            ),
            (
                "HTTP://[::1]:9000",
                "https",
                "http://[::1]:9000",
                Some(9000),
            ),
        ];
        for (value, scheme, url, port) in cases {
            let b = BaseUrl::parse(value, scheme).unwrap();
            assert_eq!(b.url(), url, "{value}");
            assert_eq!(b.port(), port, "{value}");
        }
        let b = BaseUrl::parse("https://gw.example.com/mr", "http").unwrap();
        assert_eq!(
            b.api("/registered_model?name=iris"),
            "https://gw.example.com/mr/api/model_registry/v1alpha3/registered_model?name=iris"
        );
        assert!(BaseUrl::parse("ftp://x", "http").is_err());
        assert!(BaseUrl::parse("https:///mr", "http").is_err());
    }

    #[test]
    fn bad_scheme_names_the_variable() {
        let e = settings(&[("MODEL_REGISTRY_SCHEME", "grpc")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value in MODEL_REGISTRY_SCHEME: 'grpc' is not http or https"
        );
    }

    #[test]
    fn token_never_shows_in_debug() {
        let s = settings(&[("MODEL_REGISTRY_TOKEN", "s3cr3t-token")]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("(redacted)"), "{shown}");
    }

    #[test]
    fn allowed_prefixes_are_a_trimmed_comma_list() {
        let s = settings(&[("ALLOWED_ARTIFACT_URI_PREFIXES", " s3://models/ ,,gs://b/")]).unwrap();
        assert_eq!(
            s.allowed_artifact_prefixes.unwrap(),
            vec!["s3://models/".to_string(), "gs://b/".to_string()]
        );
    }

    #[test]
    fn header_variables_are_found_by_suffix_and_hidden() {
        let vars: HashMap<String, String> = [
            (
                "Models.Example.com-headers",
                r#"{"Authorization":"Bearer s3cr3t"}"#,
            ),
            ("empty-headers", " "),
            ("PATH", "/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = Settings::from_vars(&vars).unwrap();
        assert_eq!(
            s.http_headers.keys().collect::<Vec<_>>(),
            vec!["models.example.com"]
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn kserve_ca_bundle_path() {
        let s = settings(&[("CA_BUNDLE_CONFIGMAP_NAME", "cabundle")]).unwrap();
        assert_eq!(
            s.tls.kserve_ca_bundle.unwrap(),
            PathBuf::from("/etc/ssl/custom-certs/cabundle.crt")
        );
        let s = settings(&[
            ("CA_BUNDLE_CONFIGMAP_NAME", "cabundle"),
            ("CA_BUNDLE_VOLUME_MOUNT_POINT", "/certs"),
        ])
        .unwrap();
        assert_eq!(
            s.tls.kserve_ca_bundle.unwrap(),
            PathBuf::from("/certs/cabundle.crt")
        );
    }

    #[test]
    fn split_port_cases() {
        assert_eq!(split_port("h:9090"), ("h", Some(9090)));
        assert_eq!(split_port("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(split_port("[::1]"), ("::1", None));
        assert_eq!(split_port("h"), ("h", None));
        assert_eq!(split_port("h:abc"), ("h:abc", None));
        assert_eq!(split_port("::1"), ("::1", None));
    }
}
