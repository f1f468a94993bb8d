//! Google access tokens for GCS, hand-written over the one HTTP stack.
//!
//! - A service-account key file (`"type": "service_account"`): an RS256 JWT signed with its
//!   private key (`ring`), exchanged at its `token_uri`.
//! - An authorized-user file (`"type": "authorized_user"`, from `gcloud auth
//!   application-default login`): its refresh token, exchanged at its `token_uri`.
//! - The metadata server (GKE workload identity, GCE): `GET .../service-accounts/default/token`
//!   with `Metadata-Flavor: Google`, asked once with a 2 s limit and no proxy.
//!
//! What is sent is Google's; the exchange and the cache the tokens live in are shared
//! (`credentials`). Tokens and keys live in `Secret`s; error phrases never quote a file's
//! contents or a token.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use ureq::Agent;

use crate::fetch::credentials::{self, Token};
use crate::http;
use crate::settings::Secret;

/// Read-only access to Cloud Storage: all a download needs.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub(crate) const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
const METADATA_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// Where tokens come from.
pub(crate) enum Credentials {
    ServiceAccount {
        email: String,
        key_id: Option<String>,
        key: Box<RsaKeyPair>,
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
        token_uri: String,
    },
    Metadata {
        host: String,
    },
}

impl Credentials {
    /// How the log names these credentials.
    pub(crate) fn describe(&self) -> String {
        match self {
            Credentials::ServiceAccount { email, .. } => {
                format!("service account {email} (GOOGLE_APPLICATION_CREDENTIALS)")
            }
            Credentials::AuthorizedUser { .. } => {
                "user credentials (GOOGLE_APPLICATION_CREDENTIALS)".into()
            }
            Credentials::Metadata { host } => format!("the metadata server at {host}"),
        }
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// Reads a `GOOGLE_APPLICATION_CREDENTIALS` file.
pub(crate) fn load(path: &Path) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    // The file holds a private key: a parse error must not quote it.
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "not a JSON credentials file (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let need = |field: Option<String>, name: &str| {
        field
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("it has no \"{name}\""))
    };
    let token_uri = file
        .token_uri
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
    match file.kind.as_deref() {
        Some("service_account") => {
            let pem = need(file.private_key, "private_key")?;
            let der = ureq::tls::parse_pem(pem.as_bytes())
                .find_map(|item| match item {
                    Ok(ureq::tls::PemItem::PrivateKey(key)) => Some(key.der().to_vec()),
                    _ => None,
                })
                .ok_or("its \"private_key\" holds no PEM private key")?;
            let key = RsaKeyPair::from_pkcs8(&der)
                .map_err(|_| "its \"private_key\" is not a PKCS#8 RSA key".to_string())?;
            Ok(Credentials::ServiceAccount {
                email: need(file.client_email, "client_email")?,
                key_id: file.private_key_id,
                key: Box::new(key),
                token_uri,
            })
        }
        Some("authorized_user") => Ok(Credentials::AuthorizedUser {
            client_id: need(file.client_id, "client_id")?,
            client_secret: Secret::new(need(file.client_secret, "client_secret")?),
            refresh_token: Secret::new(need(file.refresh_token, "refresh_token")?),
            token_uri,
        }),
        Some(other) => Err(format!(
            "its type \"{other}\" is not supported (use a service-account key or user credentials)"
        )),
        None => Err("it has no \"type\"".into()),
    }
}

/// A service-account JWT for the token endpoint: RS256 over `header.claims`.
pub(crate) fn jwt(
    email: &str,
    key_id: Option<&str>,
    key: &RsaKeyPair,
    token_uri: &str,
    now: SystemTime,
) -> Result<String, String> {
    let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = kid.into();
    }
    let claims = serde_json::json!({
        "iss": email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": iat,
        "exp": iat + 3600,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the JWT failed".to_string())?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// A fresh access token. `agent` is the run's agent; the metadata server gets its own, short
/// one.
pub(crate) fn token(agent: &Agent, credentials: &Credentials) -> Result<Token, String> {
    match credentials {
        Credentials::ServiceAccount {
            email,
            key_id,
            key,
            token_uri,
        } => {
            let assertion = jwt(email, key_id.as_deref(), key, token_uri, SystemTime::now())?;
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ];
            credentials::exchange(agent, token_uri, &form)
        }
        Credentials::AuthorizedUser {
            client_id,
            client_secret,
            refresh_token,
            token_uri,
        } => {
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", client_id.as_str()),
                ("client_secret", client_secret.expose()),
                ("refresh_token", refresh_token.expose()),
            ];
            credentials::exchange(agent, token_uri, &form)
        }
        Credentials::Metadata { host } => {
            let now = SystemTime::now();
            let url = format!("http://{host}{METADATA_PATH}");
            let response = metadata_agent()
                .get(&url)
                .header("Metadata-Flavor", "Google")
                .call()
                .map_err(|e| {
                    format!(
                        "the metadata server at {host} did not answer: {}",
                        http::describe(&e)
                    )
                })?;
            credentials::token_answer(&url, response, now)
        }
    }
}

// The metadata server is on the node's own network: no proxy, and a short limit, so that off
// Google Cloud the run falls through to anonymous access at once instead of hanging.
fn metadata_agent() -> Agent {
    Agent::config_builder()
        .user_agent(http::USER_AGENT)
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into()
}
