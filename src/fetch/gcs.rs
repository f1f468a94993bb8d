//! GCS source: `gs://BUCKET[/PREFIX]` through the Cloud Storage JSON API, over the one HTTP
//! stack (no Google SDK).
//!
//! - Listing: `GET /storage/v1/b/BUCKET/o?prefix=...&pageToken=...`, 1,000 names a page. As
//!   for S3, a prefix without a trailing `/` is listed as the object of that exact name plus
//!   everything under `PREFIX/`, so siblings are never listed. `size` is a string in the API.
//! - Reading: `GET /storage/v1/b/BUCKET/o/NAME?alt=media`, the name percent-encoded whole (`/`
//!   as `%2F`), with `Range` for parts and resume.
//! - Integrity: `md5Hash` (absent on composite objects) becomes the engine's MD5, checked
//!   when an object arrives in one piece. `crc32c` is not checked: the engine has one hash.
//! - Auth, in KServe's order: `STORAGE_EMULATOR_HOST` means no auth at all (Google's own
//!   convention); else `GOOGLE_APPLICATION_CREDENTIALS`; else the metadata server (workload
//!   identity), asked once with a short limit; else anonymous (public buckets). The log says
//!   which. Tokens are cached (`credentials::Cache`) and renewed five minutes before they
//!   expire; every download attempt takes the current one.

use std::io::Write;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use ureq::Agent;

use crate::error::{Error, quote};
use crate::fetch::credentials::{Cache, bearer};
use crate::fetch::gauth::{self, Credentials, DEFAULT_METADATA_HOST};
use crate::fetch::{
    HINT_TLS, Object, Page, Source, Vocabulary, Words, bucket_uri, failed, get_listing,
    list_by_pages, md5_of_base64,
};
use crate::http::{self, Failure, Headers, StatusError, Trust};
use crate::settings::{GcsSettings, Secret, Settings};
use crate::uri::percent_encode;

const PUBLIC_ENDPOINT: &str = "https://storage.googleapis.com";
// Tokens are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

const HINT_AUTH: &str = "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key that may read the bucket, or run with workload identity";
const HINT_DENIED: &str =
    "the credentials may not read this bucket: check its IAM (roles/storage.objectViewer)";

/// One bucket.
pub(crate) struct GcsSource {
    agent: Agent,
    endpoint: String,
    bucket: String,
    auth: Auth,
}

enum Auth {
    Anonymous,
    Tokens {
        credentials: Credentials,
        tokens: Cache<Secret>,
    },
}

/// The JSON API's base URL, and whether requests are authenticated.
fn endpoint(gcs: &GcsSettings) -> (String, bool) {
    match (&gcs.emulator, &gcs.endpoint) {
        (Some(emulator), _) => (emulator.clone(), false),
        (None, Some(endpoint)) => (endpoint.clone(), true),
        (None, None) => (PUBLIC_ENDPOINT.to_string(), true),
    }
}

impl GcsSource {
    /// Sets up the endpoint and credentials for the bucket of `uri`. The metadata server, when
    /// it is the candidate, is asked now, so the log says at once which auth is used.
    pub(crate) fn open(uri: &str, settings: &Settings) -> Result<(GcsSource, String), Error> {
        let (bucket, name) = bucket_uri(uri, "gs")?;
        let gcs = &settings.gcs;
        let agent = http::agent(&settings.tls, Trust::Usual(&[]))?;
        let (endpoint, authenticated) = endpoint(gcs);
        // Tokens from `credentials`, starting with `first` when one is at hand.
        let tokens = |credentials: Credentials, first| {
            let name = format!("a GCS access token from {}", credentials.describe());
            let tokens = Cache::new(name, RENEW_BEFORE, first);
            Auth::Tokens {
                credentials,
                tokens,
            }
        };
        let auth = match (&gcs.credentials_file, authenticated) {
            (_, false) => {
                log::info!("GCS emulator {endpoint} (STORAGE_EMULATOR_HOST): no authentication");
                Auth::Anonymous
            }
            (Some(path), true) => {
                let credentials = gauth::load(path).map_err(|reason| {
                    let reason = format!("{}: {reason}", quote(&path.to_string_lossy()));
                    Error::env("GOOGLE_APPLICATION_CREDENTIALS", reason)
                })?;
                log::info!(
                    "GCS {endpoint}: authenticating as {}",
                    credentials.describe()
                );
                tokens(credentials, None)
            }
            (None, true) => {
                let host = gcs.metadata_host.as_deref();
                let host = host.unwrap_or(DEFAULT_METADATA_HOST).into();
                let credentials = Credentials::Metadata { host };
                match gauth::token(&agent, &credentials) {
                    Ok(token) => {
                        log::info!(
                            "GCS {endpoint}: authenticating through {}",
                            credentials.describe()
                        );
                        tokens(credentials, Some(token))
                    }
                    Err(why) => {
                        log::info!(
                            "GCS {endpoint}: anonymous requests (no GOOGLE_APPLICATION_CREDENTIALS; {why})"
                        );
                        Auth::Anonymous
                    }
                }
            }
        };
        let source = GcsSource {
            agent,
            endpoint,
            bucket,
            auth,
        };
        Ok((source, name))
    }

    // `Authorization` for the next request, renewing the token when it is about to expire.
    fn headers(&self, what: &str) -> Result<Headers, Error> {
        let Auth::Tokens {
            credentials,
            tokens,
        } = &self.auth
        else {
            return Ok(Vec::new());
        };
        let token = tokens.get(SystemTime::now(), || gauth::token(&self.agent, credentials));
        let hint = Some(HINT_AUTH);
        let why = |reason| failed("get a GCS access token for", what, (reason, hint));
        Ok(vec![bearer(&token.map_err(why)?.value)])
    }

    fn page(&self, prefix: &str, token: Option<&str>, max: Option<usize>) -> Result<Page, Error> {
        let max = max.unwrap_or(1000);
        let what = format!("gs://{}/{prefix}", self.bucket);
        let mut url = format!(
            "{}/storage/v1/b/{}/o?prefix={}&maxResults={max}&fields=items(name,size,md5Hash),nextPageToken",
            self.endpoint,
            percent_encode(&self.bucket),
            percent_encode(prefix)
        );
        if let Some(token) = token {
            url.push_str("&pageToken=");
            url.push_str(&percent_encode(token));
        }
        let headers = self.headers(&what)?;
        let page = get_listing(&self.agent, &url, &headers, |f| {
            self.error("list", &what, f)
        })?;
        parse_page(&page).map_err(|reason| WORDS.not_a_listing(&what, reason))
    }

    // A failure in GCS's terms.
    fn error(&self, action: &'static str, what: &str, failure: Failure) -> Error {
        let anonymous = matches!(self.auth, Auth::Anonymous);
        let listing = action == "list";
        let table = |s: &StatusError| status_words(s, &self.bucket, listing, anonymous);
        failed(action, what, WORDS.explain(&self.endpoint, failure, &table))
    }
}

impl Source for GcsSource {
    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error> {
        let what = format!("gs://{}/{key}", self.bucket);
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.endpoint,
            percent_encode(&self.bucket),
            percent_encode(key)
        );
        let headers = |_: Option<&str>| self.headers(&what);
        http::get_resumable(&self.agent, &url, &headers, range, out)
            .map_err(|f| f.or_else(|f| self.error("download", &what, f)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>, Error> {
        let what = format!("gs://{}", self.bucket);
        list_by_pages(prefix, &what, |p, token, max| self.page(p, token, max))
    }
}

// GCS in the sentences every store shares; its statuses are its own (`status_words`).
const WORDS: Vocabulary = Vocabulary {
    store: "GCS",
    tls_hint: HINT_TLS,
    endpoint_hint: "check STORAGE_EMULATOR_HOST or CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE, and HTTPS_PROXY/NO_PROXY",
    listing: "a JSON API object list",
};

// What GCS's statuses mean, and what to check. `listing`: a 404 then means the bucket is
// missing, not the object.
fn status_words(status: &StatusError, bucket: &str, listing: bool, anonymous: bool) -> Words {
    let said = status.to_string();
    match status.status {
        404 if listing => (
            format!("the bucket {} does not exist: {said}", quote(bucket)),
            Some("check the bucket name (and STORAGE_EMULATOR_HOST when it is an emulator)"),
        ),
        404 => (
            format!("the object is gone (listed, then not found): {said}"),
            None,
        ),
        401 | 403 if anonymous => (
            format!("access denied to anonymous requests: {said}"),
            Some(HINT_AUTH),
        ),
        401 => (
            format!("the access token was refused: {said}"),
            Some(HINT_AUTH),
        ),
        403 => (format!("access denied: {said}"), Some(HINT_DENIED)),
        _ => (said, None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAnswer {
    #[serde(default)]
    items: Vec<Item>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: String,
    size: String,
    md5_hash: Option<String>,
    // Composite objects have no MD5: their generation is their version.
    generation: Option<String>,
}

pub(crate) fn parse_page(json: &str) -> Result<Page, String> {
    let answer: ListAnswer = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut objects = Vec::with_capacity(answer.items.len());
    for item in answer.items {
        let size = item
            .size
            .parse()
            .map_err(|_| format!("the size of {} is {}", quote(&item.name), quote(&item.size)))?;
        let md5 = item.md5_hash.as_deref().and_then(md5_of_base64);
        objects.push(Object {
            key: item.name,
            size: Some(size),
            etag: item
                .md5_hash
                .or_else(|| item.generation.map(|g| format!("generation:{g}"))),
            ranges: true,
            md5,
            sha256: None,
        });
    }
    Ok(Page {
        objects,
        next: answer.next_page_token.filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let (bucket, key) = bucket_uri("gs://models/iris/v1", "gs").unwrap();
        assert_eq!((bucket.as_str(), key.as_str()), ("models", "iris/v1"));
        let (bucket, key) = bucket_uri("GS://models", "gs").unwrap();
        assert_eq!((bucket.as_str(), key.as_str()), ("models", ""));
        assert!(bucket_uri("gs://", "gs").is_err());
        assert!(bucket_uri("gs://a:b/c", "gs").is_err());
        assert!(bucket_uri("s3://b/k", "gs").is_err());
    }

    #[test]
    fn endpoints() {
        let mut gcs = GcsSettings::default();
        assert_eq!(endpoint(&gcs), (PUBLIC_ENDPOINT.to_string(), true));
        gcs.endpoint = Some("https://storage-psc.p.googleapis.com".into());
        assert!(endpoint(&gcs).1);
        gcs.emulator = Some("http://127.0.0.1:4443".into());
        assert_eq!(endpoint(&gcs), ("http://127.0.0.1:4443".into(), false));
    }

    #[test]
    fn pages() {
        let json = r#"{"kind":"storage#objects","nextPageToken":"CgVpcmlz",
            "items":[{"name":"iris/a b+é.json","size":"12","md5Hash":"sCYyTGkEsqnLS4jW1hyB0Q=="},
                     {"name":"iris/composite.bin","size":"1073741824"}]}"#;
        let page = parse_page(json).unwrap();
        assert_eq!(page.objects[0].key, "iris/a b+é.json");
        assert_eq!(page.objects[0].size, Some(12));
        assert_eq!(page.objects[0].md5.unwrap()[0], 0xb0);
        assert_eq!(page.objects[1].md5, None);
        assert_eq!(page.objects[1].size, Some(1 << 30));
        assert_eq!(page.next.as_deref(), Some("CgVpcmlz"));
        let empty = parse_page(r#"{"kind":"storage#objects"}"#).unwrap();
        assert_eq!(empty.objects, vec![]);
        assert!(parse_page(r#"{"items":[{"name":"a","size":"big"}]}"#).is_err());
        assert!(parse_page("<html>").is_err());
    }

    #[test]
    fn errors_in_gcs_terms() {
        let status = |code| {
            Failure::Status(StatusError {
                status: code,
                code: None,
                message: Some("m".into()),
            })
        };
        let e = |f, listing, anonymous| {
            let table = |s: &StatusError| status_words(s, "models", listing, anonymous);
            WORDS.explain("https://e", f, &table)
        };
        assert_eq!(
            e(status(404), true, false).0,
            "the bucket 'models' does not exist: HTTP 404 Not Found (server said: m)"
        );
        assert_eq!(e(status(404), false, false).1, None);
        assert_eq!(e(status(403), true, true).1, Some(HINT_AUTH));
        assert_eq!(e(status(403), true, false).1, Some(HINT_DENIED));
        assert_eq!(e(status(401), true, false).1, Some(HINT_AUTH));
    }
}
