//! The S3 variables KServe injects, with its storage spec (`STORAGE_CONFIG`) laid over them.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Secret, endpoint_url, flag};
use crate::error::Error;

/// S3 settings, from KServe's variables with `STORAGE_CONFIG`/`STORAGE_OVERRIDE_CONFIG`
/// (KServe's storage spec) laid over them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct S3Settings {
    /// `AWS_ENDPOINT_URL`, or `S3_ENDPOINT` with `S3_USE_HTTPS`: `scheme://host[:port]`.
    /// `None` means AWS itself.
    pub(crate) endpoint: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub(crate) region: Option<String>,
    pub(crate) credentials: S3Credentials,
    /// `S3_USER_VIRTUAL_BUCKET`: `Some(true)` virtual-hosted, `Some(false)` path-style.
    pub(crate) virtual_hosted: Option<bool>,
    /// `S3_USE_ACCELERATE`.
    pub(crate) accelerate: bool,
    /// `S3_VERIFY_SSL` (`0` or `false` turns certificate checks off).
    pub(crate) verify_tls: bool,
    /// `AWS_CA_BUNDLE`: replaces the trust store for S3, as in KServe.
    pub(crate) ca_bundle: Option<PathBuf>,
    /// `AWS_ENDPOINT_URL_STS`: where web-identity credentials are exchanged.
    pub(crate) sts_endpoint: Option<String>,
}

/// Which credentials sign S3 requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum S3Credentials {
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
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            let at = format!("line {}, column {}", e.line(), e.column());
            let reason = format!("not JSON ({at}; the value is not shown: it may hold keys)");
            Error::env(var, reason)
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(Error::env(var, "not a JSON object"));
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
            let reason = r#"the storage spec has no "type""#;
            return Err(Error::env("STORAGE_CONFIG", reason));
        }
    }
    for (key, var) in STORAGE_SPEC_S3_KEYS {
        let value = match spec.get(key) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => v.to_string(),
            Some(_) => {
                let reason = format!(r#""{key}" is not a string"#);
                return Err(Error::env("STORAGE_CONFIG", reason));
            }
        };
        vars.insert(var, value);
    }
    Ok(vars)
}

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<S3Settings, Error> {
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
            access_key_id: Secret::new(id.trim()),
            secret_access_key: Secret::new(secret.trim()),
            session_token: get("AWS_SESSION_TOKEN").map(|t| Secret::new(t.trim())),
        },
        (Some(_), None, _, _) | (None, Some(_), _, _) => {
            let reason = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together";
            return Err(Error::env("AWS_ACCESS_KEY_ID", reason));
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
