//! Everything the program reads from its environment, read once: `Settings`, made of each
//! subsystem's settings, and the lookup rules they share.
//!
//! `Settings::from_lookup` takes a lookup function rather than calling `std::env::var`, so tests
//! hand in a map. An empty variable counts as unset, as in both upstream initializers. Errors
//! name the variable. Secrets are held in `Secret`, which never prints its value.

mod azure;
mod download;
mod gcs;
mod hf;
mod net;
mod oci;
mod registry;
mod s3;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::engine::{Filter, Pins};
use crate::error::{Error, quote};
use crate::uri::BaseUrl;

pub(crate) use azure::AzureSettings;
pub(crate) use gcs::GcsSettings;
pub(crate) use hf::HfSettings;
pub use net::NetSettings;
pub(crate) use net::canonical;
pub(crate) use oci::OciSettings;
pub(crate) use registry::RegistrySettings;
pub(crate) use s3::{S3Credentials, S3Settings};
pub use tls::TlsSettings;

/// Everything read from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where and how to reach the Model Registry.
    pub(crate) registry: RegistrySettings,
    /// Extra trust for TLS, shared by every HTTPS connection the program makes.
    pub(crate) tls: TlsSettings,
    /// `ALLOWED_ARTIFACT_URI_PREFIXES`: when set, artifact URIs must start with one of these.
    pub(crate) allowed_artifact_prefixes: Option<Vec<String>>,
    /// `<hostname>-headers`: extra HTTP headers for one host, as KServe reads them (a JSON
    /// object), keyed by the lowercased host name. Held as secrets: they often carry tokens.
    pub(crate) http_headers: BTreeMap<String, Secret>,
    /// The S3 variables KServe injects.
    pub(crate) s3: S3Settings,
    /// Google Cloud Storage.
    pub(crate) gcs: GcsSettings,
    /// Azure Blob Storage.
    pub(crate) azure: AzureSettings,
    /// `STORAGE_ALLOW_PATTERNS`, `STORAGE_IGNORE_PATTERNS`: which listed files to download.
    pub(crate) filter: Filter,
    /// `VERIFICATION_DIGEST` and the digest manifest: what the files must hash to.
    pub(crate) pins: Pins,
    /// The Hugging Face Hub or a mirror of it.
    pub(crate) hf: HfSettings,
    /// OCI registries (`oci://`): credentials files, plain-HTTP registries, platform.
    pub(crate) oci: OciSettings,
}

/// A value that must never be printed: `Debug` and `Display` show `(redacted)`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub(crate) fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Settings {
    /// Reads the process environment.
    pub(crate) fn from_env() -> Result<Settings, Error> {
        let vars: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Settings::from_vars(&vars)
    }

    /// `from_lookup` over a map, plus the `<hostname>-headers` variables, which can only be
    /// found by looking at every name.
    pub(crate) fn from_vars(vars: &HashMap<String, String>) -> Result<Settings, Error> {
        let mut settings = Settings::from_lookup(|k| vars.get(k).cloned())?;
        settings.http_headers = vars
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .filter_map(|(k, v)| {
                let host = k.strip_suffix("-headers")?;
                Some((host.to_ascii_lowercase(), Secret::new(v.clone())))
            })
            .collect();
        Ok(settings)
    }

    /// Reads every setting through `lookup` (in `main`: `|k| std::env::var(k).ok()`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        // Empty counts as unset.
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let allowed_artifact_prefixes = get("ALLOWED_ARTIFACT_URI_PREFIXES").map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        });
        // Read in this order, which decides the error reported when several values are bad.
        let (filter, pins) = download::read(&get)?;
        Ok(Settings {
            registry: registry::read(&get)?,
            tls: tls::read(&get, net::read(&get)?),
            allowed_artifact_prefixes,
            http_headers: BTreeMap::new(),
            s3: s3::read(&get)?,
            azure: azure::read(&get)?,
            gcs: gcs::read(&get)?,
            filter,
            pins,
            hf: hf::read(&get)?,
            oci: oci::read(&get)?,
        })
    }
}

// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case; anything else names the variable.
fn flag(var: &str, value: Option<String>) -> Result<Option<bool>, Error> {
    let Some(value) = value else { return Ok(None) };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(Error::env(
            var,
            format!("{} is not true or false", quote(&value)),
        )),
    }
}

// An endpoint as `scheme://host[:port]`: a path cannot be signed for or routed to here.
fn endpoint_url(var: &str, value: &str, default_scheme: &str) -> Result<String, Error> {
    let base = BaseUrl::parse(value.trim(), default_scheme).map_err(|r| Error::env(var, r))?;
    if !base.path_prefix.is_empty() {
        let prefix = &base.path_prefix;
        let reason = format!(
            "{} has a path ({}); give scheme://host[:port] only",
            quote(value),
            quote(prefix)
        );
        return Err(Error::env(var, reason));
    }
    Ok(base.url())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        Settings::from_lookup(|k| vars.iter().find(|v| v.0 == k).map(|v| v.1.to_string()))
    }

    // The error line for these variables.
    fn error(vars: &[(&str, &str)]) -> String {
        settings(vars).unwrap_err().to_string()
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
        assert_eq!(
            error(&[("MODEL_REGISTRY_BASE_URL", "host:xyz")]),
            "invalid value in MODEL_REGISTRY_BASE_URL: the port 'xyz' in 'host:xyz' is not a number"
        );
    }

    #[test]
    fn bad_scheme_names_the_variable() {
        assert_eq!(
            error(&[("MODEL_REGISTRY_SCHEME", "grpc")]),
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
    fn a_secret_formats_as_redacted_both_ways() {
        let secret = Secret::new("s3cr3t-value");
        for shown in [format!("{secret}"), format!("{secret:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert_eq!(shown, "(redacted)");
        }
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
        let s = settings(&[("S3_ENDPOINT", "h:1")]).unwrap().s3;
        let https = Some("https://h:1");
        assert_eq!(
            s.endpoint.as_deref(),
            https,
            "S3_USE_HTTPS defaults to https"
        );
        assert_eq!(
            error(&[("S3_VERIFY_SSL", "maybe")]),
            "invalid value in S3_VERIFY_SSL: 'maybe' is not true or false"
        );
        let e = error(&[("AWS_ENDPOINT_URL", "http://h:9000/bucket")]);
        assert!(e.starts_with("invalid value in AWS_ENDPOINT_URL: "), "{e}");
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
        let e = error(&keys[..1]);
        assert!(e.contains("must be set together"), "{e}");
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
        let broken = r#"{"type":"s3","secret_access_key":"s3cr3t"#;
        let e = error(&[("STORAGE_CONFIG", broken)]);
        assert!(
            e.starts_with("invalid value in STORAGE_CONFIG: not JSON"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        assert_eq!(
            error(&[("STORAGE_OVERRIDE_CONFIG", "[1]")]),
            "invalid value in STORAGE_OVERRIDE_CONFIG: not a JSON object"
        );
    }

    #[test]
    fn an_azure_endpoint_with_a_query_is_refused_unseen() {
        let endpoint = "https://acct.blob.core.windows.net?sv=1&sig=s3cr3t";
        let e = error(&[("AZURE_STORAGE_BLOB_ENDPOINT", endpoint)]);
        assert!(
            e.starts_with("invalid value in AZURE_STORAGE_BLOB_ENDPOINT"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
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
        let e = error(&[("STORAGE_EMULATOR_HOST", "ftp://x")]);
        assert!(
            e.starts_with("invalid value in STORAGE_EMULATOR_HOST"),
            "{e}"
        );
    }
}
