//! Where bytes come from: the one interface every storage backend implements, the `match`
//! that picks the backend for a URI, and what the object stores share: paged listing, and the
//! words for failures (`Vocabulary`, `unreachable`, the TLS hint). What they share about
//! credentials is in `credentials`.
//!
//! A source does two things: list the objects under a prefix, and write a byte range of one
//! object into a writer. Everything else (path mapping, parallelism, parts, temporary names,
//! resume, progress) is the engine's (`engine`), written once for every backend.

pub(crate) mod azure;
pub(crate) mod credentials;
pub(crate) mod gauth;
pub(crate) mod gcs;
pub(crate) mod hf;
pub(crate) mod local;
pub(crate) mod oci;
pub(crate) mod s3;
pub(crate) mod sts;
pub(crate) mod web;

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, one_line, quote, redact_url};
use crate::http::{Failure, StatusError};
use crate::settings::Settings;
use crate::uri::host_of;

/// One object a source lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The full key (for a directory or a single file: the path below what the URI names).
    pub key: String,
    /// Size in bytes, when the source knows it before reading.
    pub size: Option<u64>,
    /// Checksum or ETag, when the store gives one.
    pub etag: Option<String>,
    /// `read` honours ranges for this object (so it can be split into parts and resumed).
    pub ranges: bool,
    /// The MD5 of the object's bytes, when the store's listing says it: the engine checks it
    /// when the object arrives in one piece (computing it costs nothing extra then). S3 gives
    /// none here: only the answer to a GET tells whether an ETag is an MD5, so S3 checks its
    /// own (`s3::Verifier`).
    pub md5: Option<[u8; 16]>,
    /// The SHA-256 of the object's bytes, when the store's listing says it (the Hub's LFS
    /// and Xet files): the engine checks it on every file, hashing while streaming when the
    /// object arrives in one piece and reading the finished parts back otherwise, since the
    /// store promises these bytes by this hash. Boxed: few objects have one, and a listing
    /// holds every object at once.
    pub sha256: Option<Box<[u8; 32]>>,
}

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A tar stream a source holds besides its objects (an OCI artifact's tar layer, a container
/// image's layer), which the engine extracts into `DEST_DIR` after the objects, layer after
/// layer, honouring whiteouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The key `Source::read` takes for its bytes.
    pub key: String,
    pub size: u64,
    /// What its bytes (as sent, compressed) must hash to.
    pub sha256: [u8; 32],
    pub compression: Compression,
    /// Only the entries below this folder of the layer land, without it (`""`: all).
    pub within: String,
}

/// A storage backend.
pub trait Source: Sync {
    /// Every object whose key starts with `prefix`, as a plain string prefix; the engine
    /// applies the `/` boundary, so a source may leave out keys that cross it (`model2/` for
    /// `model`).
    fn list(&self, prefix: &str) -> Result<Vec<Object>, Error>;

    /// Writes the bytes of `range` of the object `key` (the whole object for `None`) to `out`,
    /// in order, and returns once the last byte is written. A source retries and resumes on its
    /// own; an error from `out` ends the read at once.
    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error>;

    /// The layers to extract after the objects, in order; most sources have none.
    fn layers(&self) -> &[Layer] {
        &[]
    }

    /// The content address the URI resolved to, `sha256:HEX`, when the source has one (an
    /// OCI manifest's digest): the result records it, so a tag is pinned after the fact.
    fn resolved_digest(&self) -> Option<String> {
        None
    }
}

/// `SCHEME://BUCKET[/KEY]` → bucket and key, the key as written (object names are not
/// URL-encoded in these URIs). Shared by the object stores.
pub(crate) fn bucket_uri(uri: &str, scheme: &str) -> Result<(String, String), Error> {
    let invalid = |reason: String| Err(Error::uri(uri, reason));
    let rest = match uri.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case(scheme) => rest,
        _ => return invalid(format!("not a {scheme}:// URI")),
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return invalid(format!("no bucket name after {scheme}://"));
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return invalid(format!(
            "the bucket name {} holds {}",
            quote(bucket),
            quote(&c.to_string())
        ));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// The MD5 a store gives in base64 (Azure's `Content-MD5`, GCS's `md5Hash`), when it is one.
pub(crate) fn md5_of_base64(text: &str) -> Option<[u8; 16]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

/// One page of an object store's listing, and the token of the next page if there is one.
#[derive(Debug, PartialEq)]
pub(crate) struct Page {
    pub(crate) objects: Vec<Object>,
    pub(crate) next: Option<String>,
}

/// The most objects a listing may hold: more than any model has (the largest have thousands
/// of files), and few enough that the listing stays far below a small pod's memory limit
/// (200,000 objects list, plan and prepare in 55 MiB peak RSS, release build).
pub(crate) const MAX_OBJECTS: usize = 250_000;

/// The most pages a listing may take: a store that keeps sending fresh tokens with few or no
/// objects stops here (250,000 objects are 250 pages of 1,000).
pub(crate) const MAX_PAGES: usize = 10_000;

/// Lists `prefix` through `page(prefix, token, max_keys)`, the way every object store is
/// listed here. A prefix that does not end in `/` is the object of that exact name (the first
/// key of a one-key page, since it sorts before every longer key) plus everything under
/// `prefix/`, so siblings such as `model2/` are never listed. Pages are followed until the
/// store gives no token. A listing always ends: a token given on any earlier page is an error
/// rather than a loop, and so is a listing past `MAX_OBJECTS` objects or `MAX_PAGES` pages.
/// `what` names the store in messages (`s3://bucket`).
pub(crate) fn list_by_pages(
    prefix: &str,
    what: &str,
    page: impl Fn(&str, Option<&str>, Option<usize>) -> Result<Page, Error>,
) -> Result<Vec<Object>, Error> {
    let mut objects = Vec::new();
    let below = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        let first = page(prefix, None, Some(1))?;
        objects.extend(first.objects.into_iter().filter(|o| o.key == prefix));
        format!("{prefix}/")
    };
    let listed = format!("{what}/{below}");
    let stop = |reason: String, hint| failed("list", &listed, (reason, hint));
    // The tokens seen, hashed: a hostile store's tokens may be long.
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let next = page(&below, token.as_deref(), None)?;
        pages += 1;
        objects.extend(next.objects);
        if objects.len() > MAX_OBJECTS {
            let reason = format!("more than {MAX_OBJECTS} objects: more than any model holds");
            return Err(stop(reason, Some(HINT_TOO_MANY)));
        }
        let Some(next) = next.next else { break };
        if !seen.insert(hash_of(&next)) {
            let reason = format!(
                "the server sent page {pages}'s token on an earlier page too: the listing would never end"
            );
            return Err(stop(reason, None));
        }
        if pages == MAX_PAGES {
            let reason =
                format!("more than {MAX_PAGES} pages: more than any model's listing takes");
            return Err(stop(reason, Some(HINT_TOO_MANY)));
        }
        token = Some(next);
    }
    log::debug!(
        "listed {listed}: {} object(s) in {pages} page(s)",
        objects.len()
    );
    Ok(objects)
}

const HINT_TOO_MANY: &str =
    "point the URI at one model's folder, not at a bucket or a parent of many models";

fn hash_of(token: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

/// GETs one page of a listing (retried like every GET) and returns its text; a failed request
/// goes through `error`, which words it in the store's terms (`Vocabulary::explain`).
pub(crate) fn get_listing(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(String, String)],
    error: impl Fn(Failure) -> Error,
) -> Result<String, Error> {
    // A page of 1,000 names with their metadata is well under this.
    const LIMIT: u64 = 16 << 20;
    let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let headers: Vec<_> = pairs.collect();
    let mut response = crate::http::get_with_retry(agent, url, &headers).map_err(&error)?;
    if response.status().as_u16() != 200 {
        return Err(error(Failure::Status(StatusError::read(response))));
    }
    crate::http::read_text(&mut response, LIMIT).map_err(|e| {
        let cause = format!("reading the listing: {}", crate::http::describe(&e));
        error(Failure::Transport(cause))
    })
}

/// A reason, and the hint that goes with it.
pub(crate) type Words = (String, Option<&'static str>);

/// What to do when TLS with a download's server fails, for every backend on the usual trust
/// store (S3 has its own). `MODEL_REGISTRY_CA_FILE` is named because it is the CA setting a
/// registry user has at hand, and it does not apply here.
pub(crate) const HINT_TLS: &str = "trust the server's CA with SSL_CERT_FILE or KServe's CA bundle \
    (CA_BUNDLE_CONFIGMAP_NAME); MODEL_REGISTRY_CA_FILE is trusted for the registry only";

/// The sentence for a request that `whom` ("the S3 endpoint URL", "STS at URL") did not
/// answer: the TLS handshake failed, or no answer came (plain HTTP on `https://` included).
pub(crate) fn unreachable(whom: &str, failure: &Failure) -> String {
    match failure {
        Failure::Tls(cause) => format!("TLS with {whom} failed: {cause}"),
        other => format!("cannot reach {whom}: {other}"),
    }
}

/// How an object store words its failures. The sentences every store shares are here, with
/// its name and hints; each store has only its table of error statuses.
pub(crate) struct Vocabulary {
    /// The store's name in sentences: "S3", "GCS", "Azure Blob".
    pub(crate) store: &'static str,
    /// What to check when TLS with the endpoint fails.
    pub(crate) tls_hint: &'static str,
    /// What to check when the endpoint cannot be reached, or answers a listing with something
    /// else: the variables that set it.
    pub(crate) endpoint_hint: &'static str,
    /// What a page of its listing is (`ListObjectsV2 XML`).
    pub(crate) listing: &'static str,
}

// A store's table: what an error status means there.
type Table<'a> = &'a dyn Fn(&StatusError) -> Words;

impl Vocabulary {
    /// `failure` at `endpoint` in words; an error status in the words of the store's table.
    pub(crate) fn explain(&self, endpoint: &str, failure: Failure, table: Table<'_>) -> Words {
        let whom = format!("the {} endpoint {endpoint}", self.store);
        match failure {
            Failure::Status(status) => table(&status),
            Failure::Tls(_) => (unreachable(&whom, &failure), Some(self.tls_hint)),
            // Plain HTTP too: the endpoint's scheme is what to change.
            Failure::Transport(_) | Failure::PlainHttp(_) => {
                (unreachable(&whom, &failure), Some(self.endpoint_hint))
            }
            Failure::Other(cause) => (cause, None),
            // Sources hand their own header errors back with `Failure::or_else`; should one get
            // here, its words still stand.
            Failure::Headers(e) => (e.to_string(), e.hint()),
        }
    }

    /// The error for a listing page the store's parser refused: the endpoint is probably not
    /// this store. Parser errors may span lines; the error line must not.
    pub(crate) fn not_a_listing(&self, what: &str, reason: String) -> Error {
        let reason = one_line(&reason);
        let reason = format!("the server's listing is not {}: {reason}", self.listing);
        failed("list", what, (reason, Some(self.endpoint_hint)))
    }
}

/// The error of `action` on `what` (`list`, `s3://b/k`), in `words`.
pub(crate) fn failed(action: &'static str, what: &str, (reason, hint): Words) -> Error {
    let url = what.to_string();
    Error::Fetch {
        action,
        url,
        reason,
        hint,
    }
}

/// The kind of storage a non-registry URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageKind {
    /// `s3://BUCKET[/PREFIX]`
    S3,
    /// `gs://BUCKET[/PREFIX]`
    Gcs,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER/...` (or `zNN.blob.storage.azure.net`)
    Azure,
    /// `http://` or `https://`: one file
    Http,
    /// `file://` or a plain path
    Local,
    /// `hf://OWNER/REPO[:REVISION]`: a Hugging Face Hub repository
    Hf,
    /// `oci://REGISTRY/REPOSITORY[:TAG|@DIGEST]`: an OCI artifact or image
    Oci,
}

impl StorageKind {
    /// Classifies a storage URI. `None` for a scheme this program cannot fetch. A string
    /// without `://` is a local path.
    pub(crate) fn of(uri: &str) -> Option<StorageKind> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Some(StorageKind::Local);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "s3" => Some(StorageKind::S3),
            "gs" => Some(StorageKind::Gcs),
            "file" => Some(StorageKind::Local),
            "hf" => Some(StorageKind::Hf),
            "oci" => Some(StorageKind::Oci),
            "https" if is_azure_blob_host(host_of(rest)) => Some(StorageKind::Azure),
            "http" | "https" => Some(StorageKind::Http),
            _ => None,
        }
    }
}

fn is_azure_blob_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if let Some(account) = host.strip_suffix(".blob.core.windows.net") {
        return !account.is_empty() && !account.contains('.');
    }
    // Azure's DNS-zone endpoints: ACCOUNT.zNN.blob.storage.azure.net
    if let Some(rest) = host.strip_suffix(".blob.storage.azure.net")
        && let Some((account, zone)) = rest.rsplit_once('.')
    {
        let digits = zone.strip_prefix('z').unwrap_or_default();
        return !account.is_empty()
            && (1..=2).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit());
    }
    false
}

/// Whether this program can fetch what a URI names: the registry side asks before it accepts
/// an artifact URI.
pub(crate) fn can_fetch(uri: &str) -> bool {
    StorageKind::of(uri).is_some()
}

/// The artifact URIs this program fetches, for the hint after a refused one.
pub(crate) const SCHEMES_HINT: &str = "supported artifact URIs: s3://, gs://, https://ACCOUNT.blob.core.windows.net/..., http(s)://, file://, hf://, oci://";

/// Picks and sets up the backend for a storage URI (not a `model-registry://` one): a source
/// ready to be listed, and the prefix its URI names.
pub(crate) fn open(uri: &str, settings: &Settings) -> Result<(Box<dyn Source>, String), Error> {
    fn opened<S: Source + 'static>((source, prefix): (S, String)) -> (Box<dyn Source>, String) {
        (Box::new(source), prefix)
    }
    if let Some(meant) = one_slash_typo(uri) {
        let reason = format!("did you mean {}?", quote(&meant));
        return Err(Error::uri(redact_url(uri), reason));
    }
    Ok(match StorageKind::of(uri) {
        Some(StorageKind::Http) => opened((web::WebSource::open(uri, settings)?, String::new())),
        Some(StorageKind::Local) => opened((local::LocalSource::open(uri)?, String::new())),
        Some(StorageKind::S3) => opened(s3::S3Source::open(uri, settings)?),
        Some(StorageKind::Gcs) => opened(gcs::GcsSource::open(uri, settings)?),
        Some(StorageKind::Azure) => opened(azure::AzureSource::open(uri, settings)?),
        Some(StorageKind::Hf) => opened(hf::HfSource::open(uri, settings)?),
        Some(StorageKind::Oci) => opened(oci::OciSource::open(uri, settings)?),
        None => {
            let reason = "unsupported storage scheme (supported: model-registry://, s3://, gs://, Azure Blob https://, http(s)://, hf://, oci://, file:// or a path)";
            return Err(Error::uri(redact_url(uri), reason));
        }
    })
}

// `s3:/bucket` or `model-registry:iris`, a known scheme with fewer than two slashes, reads as
// a local path that does not exist: the URI that was meant (`file:/p` is `file:///p`).
fn one_slash_typo(uri: &str) -> Option<String> {
    const SCHEMES: [&str; 8] = [
        "model-registry",
        "s3",
        "gs",
        "file",
        "http",
        "https",
        "hf",
        "oci",
    ];
    let (scheme, rest) = uri.split_once(':')?;
    if rest.starts_with("//") || !SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return None;
    }
    let rest = match scheme.eq_ignore_ascii_case("file") {
        true => rest,
        false => rest.trim_start_matches('/'),
    };
    Some(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slash_typos() {
        assert_eq!(one_slash_typo("s3:/b/k").as_deref(), Some("s3://b/k"));
        assert_eq!(one_slash_typo("s3:b").as_deref(), Some("s3://b"));
        assert_eq!(one_slash_typo("file:/m").as_deref(), Some("file:///m"));
        for fine in ["s3://b/k", "/mnt/s3:/x", "models", "c:/x", "./s3:/x"] {
            assert_eq!(one_slash_typo(fine), None, "{fine}");
        }
    }

    #[test]
    fn s3_bucket_uris() {
        let parse = |uri| bucket_uri(uri, "s3");
        for (uri, bucket, key) in [
            ("s3://models/iris/v1", "models", "iris/v1"),
            ("S3://models", "models", ""),
            ("s3://models/", "models", ""),
        ] {
            assert_eq!(parse(uri).unwrap(), (bucket.into(), key.into()), "{uri}");
        }
        let key = parse("s3://b/a%20b?c").unwrap().1;
        assert_eq!(key, "a%20b?c", "keys are taken as written");
        for uri in ["s3://", "s3:///key", "s3://user@host/key", "gs://b/k"] {
            assert!(parse(uri).is_err(), "{uri}");
        }
    }

    fn endless(
        objects: usize,
    ) -> impl Fn(&str, Option<&str>, Option<usize>) -> Result<Page, Error> {
        move |_, token, _| {
            let n: usize = token.map_or(0, |t| t.parse().unwrap());
            let objects = (0..objects)
                .map(|i| Object {
                    key: format!("m/{n}/{i}"),
                    size: Some(1),
                    etag: None,
                    ranges: true,
                    md5: None,
                    sha256: None,
                })
                .collect();
            let next = Some((n + 1).to_string());
            Ok(Page { objects, next })
        }
    }

    #[test]
    fn listings_end() {
        let e = list_by_pages("m/", "s3://b", endless(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot list s3://b/m/: more than 10000 pages: more than any model's listing takes"
        );
        let e = list_by_pages("m/", "s3://b", endless(1000)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot list s3://b/m/: more than 250000 objects: more than any model holds"
        );
        // Tokens 1, 2, 3, 1: the fourth page's token was the first's.
        let cycle = |_: &str, token: Option<&str>, _| {
            let n: usize = token.map_or(0, |t| t.parse().unwrap());
            let next = Some((n % 3 + 1).to_string());
            Ok(Page {
                objects: Vec::new(),
                next,
            })
        };
        let e = list_by_pages("m/", "s3://b", cycle).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot list s3://b/m/: the server sent page 4's token on an earlier page too: the listing would never end"
        );
    }

    #[test]
    fn storage_kinds() {
        use StorageKind::*;
        let cases = [
            ("s3://bucket/key", Some(S3)),
            ("S3://bucket", Some(S3)),
            ("gs://bucket/key", Some(Gcs)),
            ("https://example.com/model", Some(Http)),
            ("http://example.com/model", Some(Http)),
            ("https://acct.blob.core.windows.net/c/p", Some(Azure)),
            ("https://acct.z12.blob.storage.azure.net/c/p", Some(Azure)),
            // Only the host decides, unlike KServe's unanchored regex.
            (
                "https://example.com/?u=acct.blob.core.windows.net/c",
                Some(Http),
            ),
            ("http://acct.blob.core.windows.net/c/p", Some(Http)),
            ("file:///models/iris", Some(Local)),
            ("hf://facebook/opt-125m:main", Some(Hf)),
            ("/mnt/pvc/iris", Some(Local)),
            ("ftp://example.com/model", None),
            ("hdfs://nn/model", None),
            ("oci://registry/model", Some(Oci)),
            ("oci+fetch://registry/model", None),
        ];
        for (uri, want) in cases {
            assert_eq!(StorageKind::of(uri), want, "{uri}");
        }
    }
}
