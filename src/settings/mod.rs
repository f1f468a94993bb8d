//! Everything the program reads from its environment, read once, in one place.
//!
//! `Settings::from_lookup` takes a lookup function rather than calling `std::env::var`, so tests
//! hand in a map. An empty variable counts as unset, as in both upstream initializers. Errors
//! name the variable. Secrets are held in `Secret`, whose `Debug` never shows the value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use crate::error::Error;
use crate::uri::BaseUrl;

// `http` imports the port grammar from here.
pub use crate::uri::port_text;

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
    /// The S3 variables KServe injects.
    pub s3: S3Settings,
    /// Google Cloud Storage.
    pub gcs: GcsSettings,
    /// Azure Blob Storage.
    pub azure: AzureSettings,
}

/// Azure Blob settings, under the names KServe and Azure's own tools read (`AZ_*` are KServe's
/// legacy names, read when the `AZURE_*` one is unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureSettings {
    /// `AZURE_STORAGE_ACCESS_KEY`: the account key, for Shared Key signing.
    pub account_key: Option<Secret>,
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`.
    pub client_secret: Option<Secret>,
    /// `AZURE_FEDERATED_TOKEN_FILE`: workload identity's projected token.
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`).
    pub authority_host: Option<String>,
    /// `AZURE_STORAGE_BLOB_ENDPOINT`: replaces `https://ACCOUNT.blob.core.windows.net`.
    pub blob_endpoint: Option<String>,
    /// `AZURE_STORAGE_CONNECTION_STRING`, held whole: it may carry a key or a SAS.
    pub connection_string: Option<Secret>,
}

/// GCS settings, under the names Google's own libraries read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcsSettings {
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service-account (or authorized-user) JSON file.
    pub credentials_file: Option<PathBuf>,
    /// `GCE_METADATA_HOST`: the metadata server's `host[:port]` (default
    /// `metadata.google.internal`).
    pub metadata_host: Option<String>,
    /// `STORAGE_EMULATOR_HOST` as `http(s)://host:port`: an emulator, reached without auth.
    pub emulator: Option<String>,
    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE` as `scheme://host[:port]`: another endpoint
    /// for the JSON API (Private Service Connect, a proxy), reached with auth.
    pub endpoint: Option<String>,
}

/// S3 settings, from KServe's variables with `STORAGE_CONFIG`/`STORAGE_OVERRIDE_CONFIG`
/// (KServe's storage spec) laid over them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `AWS_ENDPOINT_URL`, or `S3_ENDPOINT` with `S3_USE_HTTPS`: `scheme://host[:port]`.
    /// `None` means AWS itself.
    pub endpoint: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    pub credentials: S3Credentials,
    /// `S3_USER_VIRTUAL_BUCKET`: `Some(true)` virtual-hosted, `Some(false)` path-style.
    pub virtual_hosted: Option<bool>,
    /// `S3_USE_ACCELERATE`.
    pub accelerate: bool,
    /// `S3_VERIFY_SSL` (`0` or `false` turns certificate checks off).
    pub verify_tls: bool,
    /// `AWS_CA_BUNDLE`: replaces the trust store for S3, as in KServe.
    pub ca_bundle: Option<PathBuf>,
    /// `AWS_ENDPOINT_URL_STS`: where web-identity credentials are exchanged.
    pub sts_endpoint: Option<String>,
}

/// Which credentials sign S3 requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum S3Credentials {
    /// Nothing set: requests go unsigned (public buckets).
    #[default]
    None,
    /// `awsAnonymousCredential=true`: unsigned, on purpose.
    Anonymous,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and maybe `AWS_SESSION_TOKEN`.
    Keys {
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
    /// IRSA: `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, exchanged at STS
    /// (`AssumeRoleWithWebIdentity`) for temporary keys; `AWS_ROLE_SESSION_NAME` optional.
    WebIdentity {
        role_arn: String,
        token_file: PathBuf,
        session_name: Option<String>,
    },
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

// KServe's storage-spec keys for `type: s3`, and the variables they stand for.
const STORAGE_SPEC_S3_KEYS: [(&str, &str); 7] = [
    ("endpoint_url", "AWS_ENDPOINT_URL"),
    ("access_key_id", "AWS_ACCESS_KEY_ID"),
    ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("region", "AWS_DEFAULT_REGION"),
    ("ca_bundle", "AWS_CA_BUNDLE"),
    ("verify_ssl", "S3_VERIFY_SSL"),
    ("anonymous", "awsAnonymousCredential"),
];

/// The variables KServe's storage spec sets: `STORAGE_CONFIG` (the secret's JSON) with
/// `STORAGE_OVERRIDE_CONFIG` (the InferenceService's parameters) laid over it, mapped onto
/// S3 variable names when its `type` is `s3`. Values may be strings (KServe's form) or plain
/// JSON booleans and numbers. The JSON holds keys, so errors never quote it.
fn storage_spec_vars(
    get: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<&'static str, String>, Error> {
    let mut spec = serde_json::Map::new();
    for var in ["STORAGE_CONFIG", "STORAGE_OVERRIDE_CONFIG"] {
        let Some(text) = get(var) else { continue };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Env {
            var: var.into(),
            reason: format!(
                "not JSON (line {}, column {}; the value is not shown: it may hold keys)",
                e.line(),
                e.column()
            ),
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(Error::Env {
                var: var.into(),
                reason: "not a JSON object".into(),
            });
        };
        spec.extend(map);
    }
    let mut vars = HashMap::new();
    match spec.get("type").and_then(|t| t.as_str()) {
        Some("s3") => {}
        Some(other) => {
            log::warn!("ignoring the storage spec: its type '{other}' is not s3");
            return Ok(vars);
        }
        None if spec.is_empty() => return Ok(vars),
        None => {
            return Err(Error::Env {
                var: "STORAGE_CONFIG".into(),
                reason: "the storage spec has no \"type\"".into(),
            });
        }
    }
    for (key, var) in STORAGE_SPEC_S3_KEYS {
        let value = match spec.get(key) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => v.to_string(),
            Some(_) => {
                return Err(Error::Env {
                    var: "STORAGE_CONFIG".into(),
                    reason: format!("\"{key}\" is not a string"),
                });
            }
        };
        vars.insert(var, value);
    }
    Ok(vars)
}

// `true`/`1`/`yes` or `false`/`0`/`no`, any case; anything else names the variable.
fn flag(var: &str, value: Option<String>) -> Result<Option<bool>, Error> {
    let Some(value) = value else { return Ok(None) };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(Error::Env {
            var: var.into(),
            reason: format!("'{value}' is not true or false"),
        }),
    }
}

// An endpoint as `scheme://host[:port]`: a path cannot be signed for or routed to here.
fn endpoint_url(var: &str, value: &str, default_scheme: &str) -> Result<String, Error> {
    let base = BaseUrl::parse(value.trim(), default_scheme).map_err(|reason| Error::Env {
        var: var.into(),
        reason,
    })?;
    if !base.path_prefix.is_empty() {
        return Err(Error::Env {
            var: var.into(),
            reason: format!(
                "'{value}' has a path ('{}'); give scheme://host[:port] only",
                base.path_prefix
            ),
        });
    }
    Ok(base.url())
}

impl S3Settings {
    fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<S3Settings, Error> {
        let spec = storage_spec_vars(get)?;
        if !spec.is_empty() {
            let keys: Vec<&str> = spec.keys().copied().collect();
            log::debug!("storage spec sets {}", keys.join(", "));
        }
        // The storage spec wins over the plain variables, as in KServe.
        let get = |k: &str| spec.get(k).cloned().or_else(|| get(k));

        let endpoint = match (get("AWS_ENDPOINT_URL"), get("S3_ENDPOINT")) {
            (Some(url), _) => Some(endpoint_url("AWS_ENDPOINT_URL", &url, "https")?),
            (None, Some(host)) => {
                let https = flag("S3_USE_HTTPS", get("S3_USE_HTTPS"))?.unwrap_or(true);
                let scheme = if https { "https" } else { "http" };
                Some(endpoint_url("S3_ENDPOINT", &host, scheme)?)
            }
            (None, None) => None,
        };
        let sts_endpoint = get("AWS_ENDPOINT_URL_STS")
            .map(|url| endpoint_url("AWS_ENDPOINT_URL_STS", &url, "https"))
            .transpose()?;

        let anonymous = flag("awsAnonymousCredential", get("awsAnonymousCredential"))?;
        let credentials = match (
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SECRET_ACCESS_KEY"),
            get("AWS_ROLE_ARN"),
            get("AWS_WEB_IDENTITY_TOKEN_FILE"),
        ) {
            _ if anonymous == Some(true) => S3Credentials::Anonymous,
            (Some(id), Some(secret), _, _) => S3Credentials::Keys {
                access_key_id: Secret(id.trim().to_string()),
                secret_access_key: Secret(secret.trim().to_string()),
                session_token: get("AWS_SESSION_TOKEN").map(|t| Secret(t.trim().to_string())),
            },
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                return Err(Error::Env {
                    var: "AWS_ACCESS_KEY_ID".into(),
                    reason: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together"
                        .into(),
                });
            }
            (None, None, Some(role_arn), Some(token_file)) => S3Credentials::WebIdentity {
                role_arn: role_arn.trim().to_string(),
                token_file: PathBuf::from(token_file),
                session_name: get("AWS_ROLE_SESSION_NAME"),
            },
            (None, None, _, _) => S3Credentials::None,
        };

        Ok(S3Settings {
            endpoint,
            region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .map(|r| r.trim().to_string()),
            credentials,
            virtual_hosted: flag("S3_USER_VIRTUAL_BUCKET", get("S3_USER_VIRTUAL_BUCKET"))?,
            accelerate: flag("S3_USE_ACCELERATE", get("S3_USE_ACCELERATE"))?.unwrap_or(false),
            verify_tls: flag("S3_VERIFY_SSL", get("S3_VERIFY_SSL"))?.unwrap_or(true),
            ca_bundle: get("AWS_CA_BUNDLE").map(PathBuf::from),
            sts_endpoint,
        })
    }
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
            s3: S3Settings::from_lookup(&get)?,
            azure: AzureSettings {
                account_key: get("AZURE_STORAGE_ACCESS_KEY").map(|k| Secret(k.trim().into())),
                client_id: get("AZURE_CLIENT_ID").or_else(|| get("AZ_CLIENT_ID")),
                tenant_id: get("AZURE_TENANT_ID").or_else(|| get("AZ_TENANT_ID")),
                client_secret: get("AZURE_CLIENT_SECRET")
                    .or_else(|| get("AZ_CLIENT_SECRET"))
                    .map(Secret),
                federated_token_file: get("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
                authority_host: get("AZURE_AUTHORITY_HOST")
                    .map(|h| h.trim().trim_end_matches('/').to_string()),
                blob_endpoint: get("AZURE_STORAGE_BLOB_ENDPOINT")
                    .map(|e| {
                        // A SAS belongs in the URI or the connection string: on the endpoint
                        // it would end up before the container's path.
                        if e.contains(['?', '#']) {
                            return Err(Error::Env {
                                var: "AZURE_STORAGE_BLOB_ENDPOINT".into(),
                                reason: "it has a query (not shown); give scheme://host[:port][/account] and put a SAS token in the URI".into(),
                            });
                        }
                        Ok(e.trim().trim_end_matches('/').to_string())
                    })
                    .transpose()?,
                connection_string: get("AZURE_STORAGE_CONNECTION_STRING").map(Secret),
            },
            gcs: GcsSettings {
                credentials_file: get("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
                metadata_host: get("GCE_METADATA_HOST").map(|h| h.trim().to_string()),
                emulator: get("STORAGE_EMULATOR_HOST")
                    .map(|h| endpoint_url("STORAGE_EMULATOR_HOST", &h, "http"))
                    .transpose()?,
                endpoint: get("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE")
                    .map(|url| {
                        // gcloud's form names the API path too: `https://host/storage/v1/`.
                        let url = url.trim().trim_end_matches('/');
                        let url = url.strip_suffix("/storage/v1").unwrap_or(url);
                        endpoint_url("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", url, "https")
                    })
                    .transpose()?,
            },
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
    fn a_bad_port_names_the_variable() {
        let e = settings(&[("MODEL_REGISTRY_BASE_URL", "host:xyz")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value in MODEL_REGISTRY_BASE_URL: the port 'xyz' in 'host:xyz' is not a number"
        );
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
    fn s3_endpoint_region_and_flags() {
        let s = settings(&[]).unwrap().s3;
        assert_eq!(s.endpoint, None);
        assert_eq!(s.credentials, S3Credentials::None);
        assert!(s.verify_tls);
        let s = settings(&[
            ("S3_ENDPOINT", "minio.minio:9000"),
            ("S3_USE_HTTPS", "0"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "eu-central-1"),
            ("S3_VERIFY_SSL", "False"),
            ("S3_USER_VIRTUAL_BUCKET", "true"),
        ])
        .unwrap()
        .s3;
        assert_eq!(s.endpoint.as_deref(), Some("http://minio.minio:9000"));
        assert_eq!(s.region.as_deref(), Some("eu-central-1"), "AWS_REGION wins");
        assert!(!s.verify_tls);
        assert_eq!(s.virtual_hosted, Some(true));
        let s = settings(&[
            ("AWS_ENDPOINT_URL", "https://ceph.local/"),
            ("S3_ENDPOINT", "ignored:1"),
        ])
        .unwrap()
        .s3;
        assert_eq!(s.endpoint.as_deref(), Some("https://ceph.local"));
        assert_eq!(
            settings(&[("S3_ENDPOINT", "h:1")])
                .unwrap()
                .s3
                .endpoint
                .as_deref(),
            Some("https://h:1"),
            "S3_USE_HTTPS defaults to https"
        );
        let e = settings(&[("S3_VERIFY_SSL", "maybe")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value in S3_VERIFY_SSL: 'maybe' is not true or false"
        );
        let e = settings(&[("AWS_ENDPOINT_URL", "http://h:9000/bucket")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value in AWS_ENDPOINT_URL: "),
            "{e}"
        );
    }

    #[test]
    fn s3_credentials_in_kserve_order_and_hidden() {
        let keys = [
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-s3cr3t"),
            ("AWS_SESSION_TOKEN", "FwoG-s3cr3t-token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
        ];
        let s = settings(&keys).unwrap();
        assert!(matches!(s.s3.credentials, S3Credentials::Keys { .. }));
        let shown = format!("{s:?}");
        for secret in ["AKIAEXAMPLE", "s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let s = settings(&keys[3..]).unwrap().s3;
        assert_eq!(
            s.credentials,
            S3Credentials::WebIdentity {
                role_arn: "arn:aws:iam::1:role/r".into(),
                token_file: PathBuf::from("/var/run/token"),
                session_name: None,
            }
        );
        let mut anonymous = keys.to_vec();
        anonymous.push(("awsAnonymousCredential", "true"));
        assert_eq!(
            settings(&anonymous).unwrap().s3.credentials,
            S3Credentials::Anonymous
        );
        let e = settings(&keys[..1]).unwrap_err();
        assert!(e.to_string().contains("must be set together"), "{e}");
    }

    #[test]
    fn storage_spec_json_overrides_the_variables() {
        let s = settings(&[
            (
                "STORAGE_CONFIG",
                r#"{"type":"s3","access_key_id":"AK","secret_access_key":"SK-s3cr3t",
                    "endpoint_url":"http://minio:9000","region":"r1","bucket":"b",
                    "verify_ssl":"0","ca_bundle":"/ca.pem"}"#,
            ),
            (
                "STORAGE_OVERRIDE_CONFIG",
                r#"{"endpoint_url":"http://other:9000","anonymous":false}"#,
            ),
            ("AWS_ENDPOINT_URL", "http://env:1"),
            ("AWS_ACCESS_KEY_ID", "ENV"),
        ])
        .unwrap()
        .s3;
        assert_eq!(s.endpoint.as_deref(), Some("http://other:9000"));
        assert_eq!(s.region.as_deref(), Some("r1"));
        assert!(!s.verify_tls);
        assert_eq!(s.ca_bundle, Some(PathBuf::from("/ca.pem")));
        match s.credentials {
            S3Credentials::Keys {
                access_key_id,
                secret_access_key,
                ..
            } => {
                assert_eq!(access_key_id.expose(), "AK");
                assert_eq!(secret_access_key.expose(), "SK-s3cr3t");
            }
            other => panic!("{other:?}"),
        }

        // Another type is not S3's business; broken JSON is an error that does not quote it.
        let s = settings(&[("STORAGE_CONFIG", r#"{"type":"hdfs","endpoint_url":"x"}"#)]).unwrap();
        assert_eq!(s.s3.endpoint, None);
        let e = settings(&[(
            "STORAGE_CONFIG",
            r#"{"type":"s3","secret_access_key":"s3cr3t"#,
        )])
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value in STORAGE_CONFIG: not JSON"),
            "{e}"
        );
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let e = settings(&[("STORAGE_OVERRIDE_CONFIG", "[1]")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value in STORAGE_OVERRIDE_CONFIG: not a JSON object"
        );
    }

    #[test]
    fn gcs_endpoints_in_both_forms() {
        let g = settings(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")])
            .unwrap()
            .gcs;
        assert_eq!(g.emulator.as_deref(), Some("http://127.0.0.1:4443"));
        let g = settings(&[
            ("STORAGE_EMULATOR_HOST", "https://gcs.local:4443/"),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE",
                "https://storage-psc.p.googleapis.com/storage/v1/",
            ),
            ("GCE_METADATA_HOST", "169.254.169.254"),
        ])
        .unwrap()
        .gcs;
        assert_eq!(g.emulator.as_deref(), Some("https://gcs.local:4443"));
        assert_eq!(
            g.endpoint.as_deref(),
            Some("https://storage-psc.p.googleapis.com")
        );
        assert_eq!(g.metadata_host.as_deref(), Some("169.254.169.254"));
        let e = settings(&[("STORAGE_EMULATOR_HOST", "ftp://x")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value in STORAGE_EMULATOR_HOST"),
            "{e}"
        );
    }

    #[test]
    fn an_azure_endpoint_with_a_query_is_refused_unseen() {
        let e = settings(&[(
            "AZURE_STORAGE_BLOB_ENDPOINT",
            "https://acct.blob.core.windows.net?sv=1&sig=s3cr3t",
        )])
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value in AZURE_STORAGE_BLOB_ENDPOINT"),
            "{e}"
        );
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }
}
