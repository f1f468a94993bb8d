//! Web identity for S3 (IRSA): the service-account token that EKS mounts is exchanged at STS
//! (`AssumeRoleWithWebIdentity`) for temporary keys, over the one HTTP stack.
//!
//! The call needs no signature: the token is the proof. It goes in a POST body, never in a
//! URL, so it cannot reach a log. The token file is read again at each exchange
//! (`credentials::token_file`); the S3 source caches the keys and renews them before they
//! expire (`credentials::Cache`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use ureq::Agent;

use crate::error::Error;
use crate::fetch::{credentials, unreachable};
use crate::http::{self, StatusError, Trust};
use crate::settings::{Secret, TlsSettings};

/// Temporary keys from STS.
pub(crate) struct TemporaryKeys {
    pub(crate) access_key_id: Secret,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Secret,
    /// When they stop working.
    pub(crate) expires: SystemTime,
}

/// A role to assume with a web identity token, and the STS that hands out its keys.
pub(crate) struct WebIdentity {
    pub(crate) role_arn: String,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
    pub(crate) token_file: PathBuf,
    /// `AWS_ROLE_SESSION_NAME`, else one made of the time.
    pub(crate) session_name: Option<String>,
    pub(crate) endpoint: String,
    /// STS's own agent (`agent`), never the S3 endpoint's.
    pub(crate) agent: Agent,
}

/// The agent for STS: it always verifies certificates. `S3_VERIFY_SSL=0` is about the S3
/// endpoint; the web identity token must never go to a server whose certificate nobody
/// checked. `AWS_CA_BUNDLE` applies, as it does to every AWS service.
pub(crate) fn agent(tls: &TlsSettings, ca_bundle: Option<&Path>) -> Result<Agent, Error> {
    let trust = match ca_bundle {
        Some(bundle) => Trust::Only(bundle),
        None => Trust::Usual(&[]),
    };
    http::agent(tls, trust)
}

impl WebIdentity {
    /// Exchanges the token for temporary keys of the role. Errors are phrases ("STS at URL
    /// refused role ..."), for the caller to put in its own error.
    pub(crate) fn keys(&self) -> Result<TemporaryKeys, String> {
        let agent = &self.agent;
        let token = credentials::token_file(&self.token_file, "AWS_WEB_IDENTITY_TOKEN_FILE")?;
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let default_session = || format!("mr-storage-initializer-{secs}");
        let session = self.session_name.clone().unwrap_or_else(default_session);
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let role_arn = self.role_arn.as_str();
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn),
            ("RoleSessionName", &session),
            ("WebIdentityToken", token.expose()),
        ];
        log::debug!("exchanging the web identity token for role {role_arn} at {url}");
        let mut response = http::post_form_with_retry(agent, &url, &form)
            .map_err(|f| unreachable(&format!("STS at {url}"), &f))?;
        if response.status().as_u16() != 200 {
            let refusal = StatusError::read(response);
            return Err(format!("STS at {url} refused role {role_arn}: {refusal}"));
        }
        let body = http::read_text(&mut response, 1 << 20)
            .map_err(|e| format!("reading the answer of STS at {url}: {}", http::describe(&e)))?;
        parse_answer(&body, now)
            .map_err(|reason| format!("STS at {url} answered something unusable: {reason}"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    assume_role_with_web_identity_result: AnswerResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerResult {
    credentials: AnswerCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: Option<String>,
}

// STS's shortest session: when the expiry cannot be read, keys are trusted this long.
const SHORTEST_SESSION: Duration = Duration::from_secs(900);

fn parse_answer(xml: &str, now: SystemTime) -> Result<TemporaryKeys, String> {
    // The keys are in this document: the parser's error may quote it, so it is not shown.
    let answer: Answer = quick_xml::de::from_str(xml)
        .map_err(|_| "not an AssumeRoleWithWebIdentityResponse".to_string())?;
    let c = answer.assume_role_with_web_identity_result.credentials;
    let expires = c
        .expiration
        .as_deref()
        .and_then(parse_utc)
        .unwrap_or(now + SHORTEST_SESSION);
    Ok(TemporaryKeys {
        access_key_id: Secret::new(c.access_key_id),
        secret_access_key: Secret::new(c.secret_access_key),
        session_token: Secret::new(c.session_token),
        expires,
    })
}

/// `2026-11-21T09:30:00Z` (fractional seconds allowed) as a time; other forms are `None`.
pub(crate) fn parse_utc(text: &str) -> Option<SystemTime> {
    let text = text.trim().strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        let at = |t| {
            parse_utc(t)
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("2000-03-01T00:00:00Z"), 951_868_800);
        assert_eq!(at("2026-11-21T09:30:15.123Z"), 1_795_253_415);
        assert!(parse_utc("2026-11-21T09:30:15+01:00").is_none());
        assert!(parse_utc("2026-13-01T00:00:00Z").is_none());
        assert!(parse_utc("soon").is_none());
    }

    #[test]
    fn answer_gives_keys_and_expiry() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>
    <Credentials>
      <AccessKeyId>ASIATEST</AccessKeyId>
      <SecretAccessKey>c2VjcmV0</SecretAccessKey>
      <SessionToken>dG9rZW4=</SessionToken>
      <Expiration>2026-11-21T10:30:15Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        let keys = parse_answer(xml, UNIX_EPOCH).unwrap();
        assert_eq!(keys.access_key_id.expose(), "ASIATEST");
        assert_eq!(keys.secret_access_key.expose(), "c2VjcmV0");
        assert_eq!(keys.session_token.expose(), "dG9rZW4=");
        assert_eq!(keys.expires, parse_utc("2026-11-21T10:30:15Z").unwrap());

        let no_expiry = xml.replace("<Expiration>2026-11-21T10:30:15Z</Expiration>", "");
        let keys = parse_answer(&no_expiry, UNIX_EPOCH).unwrap();
        assert_eq!(keys.expires, UNIX_EPOCH + SHORTEST_SESSION);

        let err = parse_answer(
            "<ErrorResponse><Error><Code>x</Code></Error></ErrorResponse>",
            UNIX_EPOCH,
        );
        assert!(err.is_err());
    }
}
