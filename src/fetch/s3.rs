//! S3 source: `s3://BUCKET[/PREFIX]` on AWS, MinIO, Ceph or any S3-compatible server.
//!
//! rust-s3 signs (SigV4 in the Authorization header, through its request type's `headers()`,
//! never its `response()`); ureq sends. So S3 shares the one HTTP stack with every other
//! backend (CA bundles, proxies, timeouts, retries, ranged and resumed reads), and no second
//! HTTP client or crypto provider does any work. Header signing rather than presigned URLs:
//! it is what the SDKs send, so every S3 server's main path; servers spend less on it (s3rver
//! served small files 25% faster); and no replayable URL can reach a proxy's log. The `Range`
//! header is left unsigned, so a retry can resume from any byte.
//!
//! - Addressing (`endpoint`): path-style when an endpoint is set (MinIO, Ceph, on-prem),
//!   virtual-hosted on AWS, unless `S3_USER_VIRTUAL_BUCKET` says otherwise.
//! - Listing: ListObjectsV2, page by page through continuation tokens. A prefix that does not
//!   end in `/` is listed as the object of that exact name plus everything under `PREFIX/`,
//!   so siblings such as `model2/` are never even listed. Keys are not asked for URL-encoded
//!   (`encoding-type=url`): some S3 servers echo the parameter without encoding, which turns
//!   `+` into a space; the cost is that a key with characters XML cannot carry fails the
//!   listing with a clear error.
//! - Credentials (`Signer`): keys, web identity (IRSA, through STS, cached and renewed before
//!   they expire by `credentials::Cache`), or none (unsigned requests).
//! - Integrity (`Verifier`): a whole-object GET asks for S3's own checksums
//!   (`x-amz-checksum-mode: ENABLED`) and checks the first that applies to the bytes as a
//!   whole: `x-amz-checksum-sha256`, `-sha1` or `-crc32` (not a `COMPOSITE` one, a checksum of
//!   the parts' checksums); else the ETag, when it is known to be the MD5 (32 hex digits, and
//!   the answer says neither SSE-KMS nor SSE-C, whose ETags are not); else nothing. CRC32C and
//!   CRC64NVME are not checked: no crate for them is in the tree. The listing alone cannot
//!   tell an MD5 ETag, so the answer to each GET decides, and the engine gets no MD5 from S3.
//!   Ranged parts are not checked (S3 gives no checksum of a range).
//! - Errors: S3's error codes become one sentence with a hint naming the variables to check.
//!   The Authorization header is never logged; URLs carry no credentials.

use std::cell::RefCell;
use std::io::Write;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use s3::command::Command;
use s3::creds::Credentials;
use s3::request::Request;
use s3::request::blocking::AttoRequest;
use s3::{Bucket, Region};
use serde::Deserialize;
use ureq::Agent;
use ureq::http::{HeaderMap, HeaderValue};

use crate::digest::{Algorithm, Digest, from_hex, hex};
use crate::error::{Error, one_line, quote};
use crate::fetch::credentials::{Cache, Expiring};
use crate::fetch::{
    Object, Page, Source, Vocabulary, Words, bucket_uri, failed, get_listing, list_by_pages, sts,
};
use crate::http::{self, Failure, Headers, StatusError, Trust};
use crate::settings::{S3Credentials, S3Settings, Settings};

// Temporary keys are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 60);

const HINT_KEYS: &str = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys); the region (AWS_REGION or AWS_DEFAULT_REGION) is signed too";
const HINT_NO_CREDENTIALS: &str = "no S3 credentials are set: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE";
const HINT_ANONYMOUS: &str = "awsAnonymousCredential=true sends unsigned requests: the bucket must allow public reads, or unset it and give credentials";
const HINT_DENIED: &str = "the credentials may not read this bucket or prefix: check the bucket policy or the role's permissions";
const HINT_REGION: &str = "set AWS_REGION (or AWS_DEFAULT_REGION) to the bucket's region";
const HINT_TLS: &str = "trust the endpoint's CA with AWS_CA_BUNDLE (for S3 it replaces the trust store), or set S3_VERIFY_SSL=0 to skip verification";
const HINT_STS: &str = "check AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ENDPOINT_URL_STS";

/// One bucket, and how to sign for it.
pub(crate) struct S3Source {
    agent: Agent,
    bucket: String,
    endpoint: Endpoint,
    // Builds URLs; signs nothing.
    unsigned: Box<Bucket>,
    signer: Signer,
}

// Deliberately not `Debug`: rust-s3's `Bucket` holds the keys.
enum Signer {
    /// Unsigned requests: `awsAnonymousCredential=true` or no credentials at all.
    None { chosen: bool },
    /// Fixed keys.
    Keys(Box<Bucket>),
    /// Keys from STS for a web identity, renewed as they near their expiry.
    WebIdentity {
        identity: Box<sts::WebIdentity>,
        /// A bucket signing with the current keys.
        keys: Cache<Box<Bucket>>,
    },
}

/// Where a bucket's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]` of the S3 API (without the bucket).
    pub(crate) url: String,
    /// The region signatures are made for.
    pub(crate) region: String,
    /// `ENDPOINT/BUCKET/KEY` rather than `BUCKET.ENDPOINT/KEY`.
    pub(crate) path_style: bool,
}

/// The endpoint, region and addressing for `bucket` (README, S3: addressing).
pub(crate) fn endpoint(s3: &S3Settings, bucket: &str) -> Endpoint {
    let region = s3.region.clone().unwrap_or_else(|| "us-east-1".into());
    if let Some(url) = &s3.endpoint {
        return Endpoint {
            url: url.clone(),
            region,
            path_style: !s3.virtual_hosted.unwrap_or(false),
        };
    }
    if s3.accelerate {
        // Transfer Acceleration has one global, virtual-hosted endpoint.
        return Endpoint {
            url: "https://s3-accelerate.amazonaws.com".into(),
            region,
            path_style: false,
        };
    }
    Endpoint {
        url: aws_endpoint("s3", &region),
        // A dotted bucket name cannot match AWS's wildcard certificate as a subdomain: the
        // SDKs fall back to path-style for it, and so does this.
        path_style: s3.virtual_hosted.map_or(bucket.contains('.'), |v| !v),
        region,
    }
}

/// AWS's regional endpoint of `service` (`s3`; `sts`, unless `AWS_ENDPOINT_URL_STS` names
/// another): `https://SERVICE.REGION.amazonaws.com`, `.com.cn` in China's regions.
pub(crate) fn aws_endpoint(service: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

// The error for a request rust-s3 could not build or sign.
fn sign_failed(what: &str) -> impl Fn(s3::error::S3Error) -> Error + '_ {
    move |e| failed("sign a request for", what, (one_line(&e.to_string()), None))
}

// rust-s3's view of a bucket: it builds URLs and, given keys (id, secret, session token),
// signs requests for them.
fn rust_s3_bucket(
    name: &str,
    endpoint: &Endpoint,
    keys: Option<(&str, &str, Option<&str>)>,
) -> Result<Box<Bucket>, String> {
    let region = Region::Custom {
        region: endpoint.region.clone(),
        endpoint: endpoint.url.clone(),
    };
    let bucket = match keys {
        None => Box::new(Bucket::new_public(name, region).map_err(|e| e.to_string())?),
        Some((id, secret, token)) => {
            let credentials = Credentials::new(Some(id), Some(secret), None, token, None)
                .map_err(|e| e.to_string())?;
            Bucket::new(name, region, credentials).map_err(|e| e.to_string())?
        }
    };
    Ok(match endpoint.path_style {
        true => bucket.with_path_style(),
        false => bucket,
    })
}

// How requests were signed, for the hint on an access-denied answer.
#[derive(Debug, Clone, Copy)]
enum Signing {
    Unsigned { chosen: bool },
    Signed,
}

// S3 in the sentences every store shares; its error codes are its own (`status_words`).
const WORDS: Vocabulary = Vocabulary {
    store: "S3",
    tls_hint: HINT_TLS,
    endpoint_hint: "check AWS_ENDPOINT_URL (or S3_ENDPOINT and S3_USE_HTTPS), and HTTPS_PROXY/NO_PROXY",
    listing: "ListObjectsV2 XML",
};

// What S3's error codes mean, and which variables to check.
fn status_words(status: &StatusError, bucket: &str, signing: Signing) -> Words {
    let said = status.to_string();
    match (status.code.as_deref(), status.status) {
        (Some("NoSuchBucket"), _) => (
            format!("the bucket {} does not exist: {said}", quote(bucket)),
            Some("check the bucket name, and AWS_ENDPOINT_URL (or S3_ENDPOINT) when the bucket is not on AWS"),
        ),
        (Some("NoSuchKey"), _) => (
            format!("the object is gone (listed, then not found): {said}"),
            None,
        ),
        (
            Some(
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken"
                | "TokenRefreshRequired" | "InvalidSecurity"
                // s3s-based servers say this for an unknown access key id.
                | "NotSignedUp",
            ),
            _,
        ) => (
            format!("the S3 server refused the credentials: {said}"),
            Some(HINT_KEYS),
        ),
        (Some("AuthorizationHeaderMalformed" | "PermanentRedirect"), _) | (None, 301) => (
            format!("the bucket is in another region or at another endpoint: {said}"),
            Some(HINT_REGION),
        ),
        (Some("AccessDenied" | "AllAccessDisabled"), _) | (None, 401 | 403) => {
            let hint = match signing {
                Signing::Unsigned { chosen: false } => HINT_NO_CREDENTIALS,
                Signing::Unsigned { chosen: true } => HINT_ANONYMOUS,
                Signing::Signed => HINT_DENIED,
            };
            (format!("access denied: {said}"), Some(hint))
        }
        _ => (said, None),
    }
}

impl S3Source {
    /// Sets up addressing, trust and credentials for the bucket of `uri`; nothing is sent yet.
    pub(crate) fn open(uri: &str, settings: &Settings) -> Result<(S3Source, String), Error> {
        let (bucket, key) = bucket_uri(uri, "s3")?;
        let s3 = &settings.s3;
        if s3.accelerate && s3.endpoint.is_some() {
            log::warn!("S3_USE_ACCELERATE is ignored: an endpoint is set");
        }
        let endpoint = endpoint(s3, &bucket);
        let trust = match (&s3.ca_bundle, s3.verify_tls) {
            (_, false) => {
                log::warn!("S3_VERIFY_SSL is off: the S3 endpoint's certificate is not checked");
                Trust::Unverified
            }
            (Some(bundle), true) => Trust::Only(bundle),
            (None, true) => Trust::Usual(&[]),
        };
        let agent = http::agent(&settings.tls, trust)?;
        let setup = |e: String| Error::uri(uri, format!("cannot set up S3 for it: {e}"));
        let unsigned = rust_s3_bucket(&bucket, &endpoint, None).map_err(setup)?;
        let (signer, signed_with) = match &s3.credentials {
            S3Credentials::None => (
                Signer::None { chosen: false },
                "unsigned (no credentials set)",
            ),
            S3Credentials::Anonymous => (
                Signer::None { chosen: true },
                "unsigned (awsAnonymousCredential)",
            ),
            S3Credentials::Keys {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let keys = (
                    access_key_id.expose(),
                    secret_access_key.expose(),
                    session_token.as_ref().map(|t| t.expose()),
                );
                let signed = rust_s3_bucket(&bucket, &endpoint, Some(keys)).map_err(setup)?;
                (Signer::Keys(signed), "signed with AWS_ACCESS_KEY_ID")
            }
            S3Credentials::WebIdentity {
                role_arn,
                token_file,
                session_name,
            } => {
                let sts_endpoint = s3.sts_endpoint.clone();
                let identity = sts::WebIdentity {
                    role_arn: role_arn.clone(),
                    token_file: token_file.clone(),
                    session_name: session_name.clone(),
                    endpoint: sts_endpoint.unwrap_or_else(|| aws_endpoint("sts", &endpoint.region)),
                    agent: sts::agent(&settings.tls, s3.ca_bundle.as_deref())?,
                };
                let name = format!("temporary S3 keys for {role_arn} from STS");
                let keys = Cache::new(name, RENEW_BEFORE, None);
                let signed_with = "signed with web identity keys (AWS_ROLE_ARN)";
                (
                    Signer::WebIdentity {
                        identity: Box::new(identity),
                        keys,
                    },
                    signed_with,
                )
            }
        };
        log::info!(
            "S3 endpoint {} ({}, region {}), requests {signed_with}",
            endpoint.url,
            if endpoint.path_style {
                "path-style"
            } else {
                "virtual-hosted"
            },
            endpoint.region
        );
        let source = S3Source {
            agent,
            bucket,
            endpoint,
            unsigned,
            signer,
        };
        Ok((source, key))
    }

    // The URL of a GET of `path` (`/` for the bucket, `/KEY` for an object). It does not
    // depend on the credentials, so the unsigned bucket builds it.
    fn url(&self, path: &str, command: Command<'_>, what: &str) -> Result<String, Error> {
        let request = AttoRequest::new(&self.unsigned, path, command).map_err(sign_failed(what))?;
        Ok(request.url().map_err(sign_failed(what))?.to_string())
    }

    // The headers of that GET: signed in the Authorization header (SigV4, as the AWS SDKs send
    // it), or none when requests go unsigned. They hold credentials: sent, never shown.
    fn headers(&self, path: &str, command: Command<'_>, what: &str) -> Result<Headers, Error> {
        // A GET asks for S3's own checksums of the object; the header is signed, as every
        // x-amz-* header must be.
        let get = matches!(command, Command::GetObject);
        let sign = |bucket: &Bucket| -> Result<Headers, Error> {
            let asking;
            let bucket = if get {
                let mut extra = bucket.extra_headers.clone();
                extra.insert(CHECKSUM_MODE.0, HeaderValue::from_static(CHECKSUM_MODE.1));
                asking = bucket
                    .with_extra_headers(extra)
                    .map_err(sign_failed(what))?;
                &asking
            } else {
                bucket
            };
            let request =
                AttoRequest::new(bucket, path, command.clone()).map_err(sign_failed(what))?;
            Ok(request
                .headers()
                .map_err(sign_failed(what))?
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
                })
                .collect())
        };
        match &self.signer {
            Signer::None { .. } if get => {
                let (name, value) = CHECKSUM_MODE;
                Ok(vec![(name.to_string(), value.to_string())])
            }
            Signer::None { .. } => Ok(Vec::new()),
            Signer::Keys(bucket) => sign(bucket),
            Signer::WebIdentity { identity, keys } => {
                let current = keys.get(SystemTime::now(), || {
                    let keys = identity.keys()?;
                    let temporary = (
                        keys.access_key_id.expose(),
                        keys.secret_access_key.expose(),
                        Some(keys.session_token.expose()),
                    );
                    let value = rust_s3_bucket(&self.bucket, &self.endpoint, Some(temporary))?;
                    let expires = keys.expires;
                    Ok(Expiring { value, expires })
                });
                let why = |reason| failed("get S3 credentials for", what, (reason, Some(HINT_STS)));
                sign(&current.map_err(why)?.value)
            }
        }
    }

    // One ListObjectsV2 page.
    fn page(&self, prefix: &str, token: Option<&str>, max: Option<usize>) -> Result<Page, Error> {
        let what = format!("s3://{}/{prefix}", self.bucket);
        let command = Command::ListObjectsV2 {
            prefix: prefix.to_string(),
            delimiter: None,
            continuation_token: token.map(String::from),
            start_after: None,
            max_keys: max,
        };
        let url = self.url("/", command.clone(), &what)?;
        let headers = self.headers("/", command, &what)?;
        let page = get_listing(&self.agent, &url, &headers, |f| {
            self.error("list", &what, f)
        })?;
        parse_page(&page).map_err(|reason| WORDS.not_a_listing(&what, reason))
    }

    // A failure in S3's terms.
    fn error(&self, action: &'static str, what: &str, failure: Failure) -> Error {
        let signing = match self.signer {
            Signer::None { chosen } => Signing::Unsigned { chosen },
            _ => Signing::Signed,
        };
        let table = |s: &StatusError| status_words(s, &self.bucket, signing);
        let endpoint = &self.endpoint.url;
        failed(action, what, WORDS.explain(endpoint, failure, &table))
    }
}

impl Source for S3Source {
    fn list(&self, prefix: &str) -> Result<Vec<Object>, Error> {
        let what = format!("s3://{}", self.bucket);
        list_by_pages(prefix, &what, |p, token, max| self.page(p, token, max))
    }

    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error> {
        let what = format!("s3://{}/{key}", self.bucket);
        // Signed without a Range (the download code sets its own, and changes it to resume),
        // and again for each attempt: a signature is good for 15 minutes.
        let path = format!("/{key}");
        let url = self.url(&path, Command::GetObject, &what)?;
        let sign = |_: Option<&str>| self.headers(&path, Command::GetObject, &what);
        let error = |f: Failure| f.or_else(|f| self.error("download", &what, f));
        if range.is_some() {
            return http::get_resumable(&self.agent, &url, &sign, range, out).map_err(error);
        }
        // The whole object: checked as it streams through.
        let verifier = RefCell::new(Verifier::default());
        let mut seen = |headers: &HeaderMap| verifier.borrow_mut().seen(headers);
        let mut checking = Checking {
            out,
            verifier: &verifier,
        };
        http::get_resumable_seeing(&self.agent, &url, &sign, None, &mut checking, &mut seen)
            .map_err(error)?;
        verifier
            .into_inner()
            .verdict(&what)
            .map_err(|reason| failed("download", &what, (reason, None)))
    }
}

// Asks S3 to send the object's checksums with a GET.
const CHECKSUM_MODE: (&str, &str) = ("x-amz-checksum-mode", "ENABLED");

// What the bytes of an object are checked against, from the answer to its GET.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    algorithm: Algorithm,
    // Where the value came from: a header's name, or "the ETag".
    from: &'static str,
    // The value as S3 sent it (base64 for checksums, hex for an ETag).
    value: String,
    expected: Vec<u8>,
}

// The whole-object checksums this program can compute, in order of preference.
const CHECKSUMS: [(&str, Algorithm, usize); 3] = [
    ("x-amz-checksum-sha256", Algorithm::Sha256, 32),
    ("x-amz-checksum-sha1", Algorithm::Sha1, 20),
    ("x-amz-checksum-crc32", Algorithm::Crc32, 4),
];

/// What the answer to a whole-object GET says its bytes must hash to: S3's own whole-object
/// checksum, else the ETag when it is known to be the MD5, else nothing.
fn check_of(headers: &HeaderMap) -> Option<Check> {
    let get = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let composite = get("x-amz-checksum-type").is_some_and(|t| t.eq_ignore_ascii_case("COMPOSITE"));
    if !composite {
        for (from, algorithm, len) in CHECKSUMS {
            let Some(value) = get(from) else { continue };
            match STANDARD.decode(value) {
                Ok(expected) if expected.len() == len => {
                    let value = value.to_string();
                    return Some(Check {
                        algorithm,
                        from,
                        value,
                        expected,
                    });
                }
                // A composite checksum ("...-N") sent without its type, or garbage.
                _ => continue,
            }
        }
    }
    // SSE-KMS (and DSSE-KMS) and SSE-C objects have ETags that are not the MD5 of their bytes
    // (AWS's documentation of the ETag); SSE-S3 (AES256) ones have.
    let kms = get("x-amz-server-side-encryption")
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("aws:kms"));
    if kms || get("x-amz-server-side-encryption-customer-algorithm").is_some() {
        return None;
    }
    let etag = get("etag")?.trim_matches('"');
    let md5 = md5_of_etag(etag)?;
    Some(Check {
        algorithm: Algorithm::Md5,
        from: "the ETag",
        value: etag.to_string(),
        expected: md5.to_vec(),
    })
}

// The check of one whole-object GET: decided by the first answer, fed the bytes in order
// (a resumed GET's included).
#[derive(Default)]
struct Verifier {
    answered: bool,
    etag: Option<String>,
    check: Option<(Check, Digest)>,
    // The ETags of two answers that differ: the object changed while it was read.
    changed: Option<(String, String)>,
}

impl Verifier {
    fn seen(&mut self, headers: &HeaderMap) {
        let etag = headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|e| e.trim().trim_matches('"').to_string());
        if !self.answered {
            self.answered = true;
            self.check = check_of(headers).map(|c| {
                let digest = Digest::new(c.algorithm);
                (c, digest)
            });
            self.etag = etag;
        } else if etag != self.etag && self.changed.is_none() {
            let shown = |e: &Option<String>| e.clone().unwrap_or_else(|| "none".into());
            self.changed = Some((shown(&self.etag), shown(&etag)));
        }
    }

    fn verdict(self, what: &str) -> Result<(), String> {
        if let Some((before, after)) = self.changed {
            return Err(format!(
                "the object changed while it was read (ETag {before}, then {after})"
            ));
        }
        let Some((check, digest)) = self.check else {
            log::debug!("{what}: no checksum or MD5 ETag to check the bytes against");
            return Ok(());
        };
        let actual = digest.finish();
        if actual == check.expected {
            log::debug!("{what}: {} matches {}", check.algorithm.name(), check.from);
            return Ok(());
        }
        let actual = match check.algorithm {
            Algorithm::Md5 => hex(&actual),
            _ => STANDARD.encode(&actual),
        };
        Err(format!(
            "the bytes' {} is {actual}, {} says {}",
            check.algorithm.name(),
            check.from,
            check.value
        ))
    }
}

// The writer of a whole-object GET: passes the bytes on and hashes what was written.
struct Checking<'a> {
    out: &'a mut dyn Write,
    verifier: &'a RefCell<Verifier>,
}

impl Write for Checking<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some((_, digest)) = &mut self.verifier.borrow_mut().check {
            digest.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
    #[serde(default)]
    contents: Vec<Contents>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    size: u64,
    #[serde(rename = "ETag")]
    etag: Option<String>,
}

pub(crate) fn parse_page(xml: &str) -> Result<Page, String> {
    let result: ListBucketResult = quick_xml::de::from_str(xml).map_err(|e| e.to_string())?;
    let objects = result
        .contents
        .into_iter()
        .map(|c| {
            let etag = c.etag.map(|e| e.trim_matches('"').to_string());
            Object {
                // Only the answer to the GET can tell an MD5 ETag (`check_of`).
                md5: None,
                key: c.key,
                size: Some(c.size),
                etag,
                ranges: true,
                sha256: None,
            }
        })
        .collect();
    let next = match (result.is_truncated, result.next_continuation_token) {
        (true, Some(token)) if !token.is_empty() => Some(token),
        (true, _) => return Err("a truncated page without a NextContinuationToken".into()),
        (false, _) => None,
    };
    Ok(Page { objects, next })
}

/// The MD5 of an object's bytes, when its ETag is one: a single-part upload's ETag is the hex
/// MD5 of the object; a multipart upload's has a `-N` suffix and is not.
pub(crate) fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    from_hex(etag.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(
        endpoint: Option<&str>,
        region: Option<&str>,
        virtual_hosted: Option<bool>,
    ) -> S3Settings {
        S3Settings {
            endpoint: endpoint.map(String::from),
            region: region.map(String::from),
            virtual_hosted,
            verify_tls: true,
            ..S3Settings::default()
        }
    }

    #[test]
    fn addressing() {
        let e = endpoint(&s3(Some("http://minio:9000"), None, None), "models");
        assert_eq!(e.url, "http://minio:9000");
        assert_eq!(e.region, "us-east-1");
        assert!(e.path_style, "a custom endpoint is path-style by default");
        let e = endpoint(&s3(Some("http://minio:9000"), None, Some(true)), "models");
        assert!(!e.path_style);

        let e = endpoint(&s3(None, Some("eu-west-1"), None), "models");
        assert_eq!(e.url, "https://s3.eu-west-1.amazonaws.com");
        assert!(!e.path_style, "AWS is virtual-hosted by default");
        assert!(endpoint(&s3(None, None, Some(false)), "models").path_style);
        assert!(endpoint(&s3(None, None, None), "my.models").path_style);
        assert!(!endpoint(&s3(None, None, Some(true)), "my.models").path_style);
        assert_eq!(
            endpoint(&s3(None, Some("cn-north-1"), None), "b").url,
            "https://s3.cn-north-1.amazonaws.com.cn"
        );
        let accelerated = S3Settings {
            accelerate: true,
            ..s3(None, Some("eu-west-1"), Some(false))
        };
        let e = endpoint(&accelerated, "models");
        assert_eq!(e.url, "https://s3-accelerate.amazonaws.com");
        assert!(!e.path_style);
    }

    #[test]
    fn pages() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>models</Name><Prefix>iris/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>iris/a+b%2Bc &amp; d.json</Key><Size>12</Size><ETag>&quot;0123456789abcdef0123456789ABCDEF&quot;</ETag></Contents>
  <Contents><Key>iris/big.bin</Key><Size>1073741824</Size><ETag>"d41d8cd98f00b204e9800998ecf8427e-64"</ETag></Contents>
  <Contents><Key>iris/ lead</Key><Size>0</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let page = parse_page(xml).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["iris/a+b%2Bc & d.json", "iris/big.bin", "iris/ lead"]
        );
        assert_eq!(page.objects[0].size, Some(12));
        assert_eq!(
            page.objects[0].etag.as_deref(),
            Some("0123456789abcdef0123456789ABCDEF")
        );
        assert!(
            page.objects.iter().all(|o| o.md5.is_none()),
            "the GET's answer decides whether an ETag is an MD5"
        );
        assert_eq!(page.objects[1].size, Some(1 << 30));
        assert!(page.objects.iter().all(|o| o.ranges));
        assert_eq!(
            page.next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );

        let last = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>";
        assert_eq!(parse_page(last).unwrap().next, None);

        let empty = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert!(parse_page(empty).unwrap().objects.is_empty());

        let broken = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert!(parse_page(broken).is_err());
        assert!(parse_page("<html>").is_err());
    }

    #[test]
    fn errors_in_s3_terms() {
        let status = |code: Option<&str>, status| {
            Failure::Status(StatusError {
                status,
                code: code.map(String::from),
                message: Some("m".into()),
            })
        };
        let signed = Signing::Signed;
        let table = |s: &StatusError| status_words(s, "models", signed);
        let e = |f| WORDS.explain("http://h:9000", f, &table);
        let (reason, hint) = e(status(Some("PermanentRedirect"), 301));
        assert_eq!(
            reason,
            "the bucket is in another region or at another endpoint: HTTP 301 Moved Permanently (server said: PermanentRedirect: m)"
        );
        assert_eq!(hint, Some(HINT_REGION));
        assert_eq!(e(status(None, 301)).1, Some(HINT_REGION));
        assert_eq!(
            e(status(Some("AuthorizationHeaderMalformed"), 400)).1,
            Some(HINT_REGION)
        );
        assert_eq!(e(status(Some("ExpiredToken"), 400)).1, Some(HINT_KEYS));
        assert_eq!(e(status(None, 403)).1, Some(HINT_DENIED));
        assert_eq!(
            e(status(Some("NoSuchKey"), 404)).0,
            "the object is gone (listed, then not found): HTTP 404 Not Found (server said: NoSuchKey: m)"
        );
        let slow_down = "HTTP 503 Service Unavailable (server said: SlowDown: m)".to_string();
        assert_eq!(e(status(Some("SlowDown"), 503)), (slow_down, None));
        let unsigned = |chosen| {
            let signing = Signing::Unsigned { chosen };
            let table = |s: &StatusError| status_words(s, "b", signing);
            WORDS
                .explain("e", status(Some("AccessDenied"), 403), &table)
                .1
        };
        assert_eq!(unsigned(false), Some(HINT_NO_CREDENTIALS));
        assert_eq!(unsigned(true), Some(HINT_ANONYMOUS));
        let tls = "TLS with the S3 endpoint http://h:9000 failed: bad cert".to_string();
        assert_eq!(e(Failure::Tls("bad cert".into())), (tls, Some(HINT_TLS)));
    }

    #[test]
    fn etags_as_md5() {
        assert!(md5_of_etag("\"d41d8cd98f00b204e9800998ecf8427e\"").is_some());
        assert!(md5_of_etag("d41d8cd98f00b204e9800998ecf8427e-2").is_none());
        assert!(md5_of_etag("zz1d8cd98f00b204e9800998ecf8427e").is_none());
        assert!(md5_of_etag("").is_none());
    }
}
