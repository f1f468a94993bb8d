//! OCI registry source: `oci://REGISTRY[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]` over the
//! distribution API, on the one HTTP stack.
//!
//! - The reference's grammar is `reference`'s; credentials and challenges are `auth`'s.
//! - Opening resolves the reference to one manifest: `GET /v2/REPO/manifests/REF` accepting
//!   OCI image manifests and indexes and Docker schema 2 manifests and lists. Its bytes are
//!   hashed and checked against the digest the URI names (or the index entry that pointed at
//!   it), so every later byte is pinned by content address. What the bytes say is
//!   `read_manifest`'s (pure: fuzzed as `oci_manifest`). From an index, the manifest for
//!   `OCI_PLATFORM` (else the running platform, linux/amd64 here) is taken; an index of
//!   artifacts without platforms must hold exactly one.
//! - Listing: each layer with an `org.opencontainers.image.title` annotation (ORAS, ModelPack
//!   raw files) is one object at that path, its digest as the SHA-256 the engine checks
//!   while streaming (or reads back after ranged parts), so a tampered blob never lands.
//! - Tar layers (a media type ending in `tar`, `tar+gzip`/`tar.gzip`, `tar+zstd`/`tar.zstd`:
//!   ModelPack and KitOps layers even with a title, ORAS directories, untitled tars) are the
//!   engine's `Layer`s, extracted after the files. A container image (its config is an image
//!   config: a "modelcar") is all layers, applied in order, and only `OCI_MODEL_DIR` of it
//!   lands.
//! - Reading: `GET /v2/REPO/blobs/sha256:HEX` with `Range` for parts and resume. A blob
//!   redirect to storage is followed hop by hop without the `Authorization` header.
//! - Auth as registries do it: anonymous first; a `401` with a `Bearer` challenge gets a
//!   token from its realm (with the Docker config's credentials, if any, else anonymous), a
//!   `Basic` challenge gets the credentials. A token that expires mid-download is fetched
//!   again and the read resumes where it was. Tokens and passwords are `Secret`s.
//! - `https://` always, except for the registries `OCI_INSECURE_REGISTRIES` names.

mod auth;
mod reference;

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::sync::Mutex;

use serde::Deserialize;
use ureq::Agent;
use ureq::http::Response;

use crate::digest::{Sha256, hex, sha256};
use crate::error::{Error, clip, one_line, quote};
use crate::fetch::{
    Compression, HINT_TLS, Layer as Stream, Object, Source, Words, failed, unreachable,
};
use crate::http::{self, Failure, StatusError, Trust};
use crate::settings::{Secret, Settings};
use crate::uri::percent_encode;

pub(crate) use reference::Reference;

use auth::{Challenge, Credentials};

const HINT_AUTH: &str = "give the registry's credentials in a Docker config: REGISTRY_AUTH_FILE, DOCKER_CONFIG (config.json, or a mounted .dockerconfigjson secret) or KSERVE_OCI_DOCKER_CONFIG";
const HINT_REGISTRY: &str = "check the registry in the URI; a registry that speaks plain HTTP must be in OCI_INSECURE_REGISTRIES";
const HINT_REFERENCE: &str =
    "name a tag or digest that exists: oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]";
const HINT_PLATFORM: &str = "OCI_PLATFORM (os/arch[/variant]) picks a manifest of an image index";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const TITLE: &str = "org.opencontainers.image.title";
// ORAS marks a directory it pushed as a tar+gzip layer with this annotation.
const ORAS_UNPACK: &str = "io.deis.oras.content.unpack";
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
// Media types whose tar layers carry a title and are still tars (one per file or folder).
const PACKED: [&str; 2] = ["application/vnd.cncf.model.", "application/vnd.kitops."];

// The distribution registry refuses manifests over 4 MiB.
const MANIFEST_LIMIT: u64 = 4 << 20;
// An index pointing at an index is allowed once; deeper nesting is refused.
const MAX_DEPTH: usize = 2;

/// One OCI artifact or image at one manifest.
pub(crate) struct OciSource {
    agent: Agent,
    /// `scheme://host[:port]`.
    base: String,
    reference: Reference,
    /// The URI as written, for messages.
    shown: String,
    credentials: Option<(Credentials, String)>,
    /// The `Authorization` value requests carry, once a challenge asked for one.
    authorization: Mutex<Option<Secret>>,
    /// The last `Bearer` challenge, to fetch a fresh token when one expires.
    bearer: Mutex<Option<Challenge>>,
    /// The SHA-256 of the manifest the files come from.
    manifest_digest: Sha256,
    /// The SHA-256 of the index the reference named, when it named one.
    index_digest: Option<Sha256>,
    files: Vec<Layer>,
    /// Tar layers, extracted after the files in order.
    streams: Vec<Stream>,
}

/// A file of an artifact: a title-annotated layer.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    path: String,
    digest: Sha256,
    size: u64,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    fn shown(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// What `--resolve` prints for an `oci://` URI: the manifest its tag (or digest) names now,
/// and the URI that pins it. Through an index, the manifest chosen for the platform is the one
/// pinned, and the index's digest is given too.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Pinned {
    pub(crate) uri: String,
    pub(crate) registry: String,
    pub(crate) repository: String,
    /// The tag or digest the URI names (`latest` when it names neither).
    pub(crate) reference: String,
    pub(crate) manifest_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) index_digest: Option<String>,
    /// The platform an index entry was chosen for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<String>,
    pub(crate) pinned_uri: String,
}

/// Whether `uri` is an `oci://` URI (well-formed or not).
pub(crate) fn is_oci_uri(uri: &str) -> bool {
    uri.split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("oci"))
}

/// Resolves an `oci://` URI to the manifest whose layers would land, downloading no blob.
pub(crate) fn pin(uri: &str, settings: &Settings) -> Result<Pinned, Error> {
    let (source, _) = OciSource::open(uri, settings)?;
    let reference = source.reference;
    let manifest_digest = format!("sha256:{}", hex(&source.manifest_digest));
    let platform = source.index_digest.map(|_| {
        settings
            .oci
            .platform
            .clone()
            .unwrap_or_else(running_platform)
    });
    Ok(Pinned {
        uri: uri.to_string(),
        pinned_uri: format!(
            "oci://{}/{}@{manifest_digest}",
            reference.registry, reference.repository
        ),
        reference: reference.manifest_ref(),
        registry: reference.registry,
        repository: reference.repository,
        manifest_digest,
        index_digest: source.index_digest.map(|d| format!("sha256:{}", hex(&d))),
        platform,
    })
}

impl OciSource {
    /// Finds credentials, and resolves the reference to the manifest whose layers are
    /// listed.
    pub(crate) fn open(uri: &str, settings: &Settings) -> Result<(OciSource, String), Error> {
        let reference = Reference::parse(uri)?;
        let oci = &settings.oci;
        let scheme = match oci.insecure.contains(&reference.registry) {
            true => "http",
            false => "https",
        };
        let credentials = auth::find(&reference.registry, &oci.auth_files)?;
        match &credentials {
            Some((c, from)) => log::info!(
                "registry {}: credentials of {} from {}",
                reference.registry,
                quote(&c.user),
                quote(from)
            ),
            None => log::info!(
                "registry {}: no credentials in a Docker config, anonymous",
                reference.registry
            ),
        }
        let mut source = OciSource {
            agent: http::agent(&settings.tls, Trust::Usual(&[]))?,
            base: format!("{scheme}://{}", reference.registry),
            shown: uri.to_string(),
            reference,
            credentials,
            authorization: Mutex::new(None),
            bearer: Mutex::new(None),
            manifest_digest: [0; 32],
            index_digest: None,
            files: Vec::new(),
            streams: Vec::new(),
        };
        let platform = oci.platform.clone().unwrap_or_else(running_platform);
        let (index, digest, files, streams) = source.resolve(&platform, &oci.model_dir)?;
        log::info!("{uri}: manifest sha256:{}", hex(&digest));
        source.manifest_digest = digest;
        source.index_digest = index;
        (source.files, source.streams) = (files, streams);
        Ok((source, String::new()))
    }

    // The manifest the reference names, through at most `MAX_DEPTH` indexes: the digest of
    // the index the reference named (if it named one), the manifest's digest, its files and
    // its tar layers.
    #[allow(clippy::type_complexity)]
    fn resolve(
        &self,
        platform: &str,
        model_dir: &str,
    ) -> Result<(Option<Sha256>, Sha256, Vec<Layer>, Vec<Stream>), Error> {
        let mut wanted = (self.reference.manifest_ref(), self.reference.digest);
        let mut index = None;
        for _ in 0..MAX_DEPTH {
            let (text, content_type, digest) = self.manifest(&wanted.0, wanted.1)?;
            match read_manifest(&text, content_type, platform, model_dir, &self.shown)? {
                Next::Contents(files, streams) => return Ok((index, digest, files, streams)),
                Next::Entry(name, entry) => {
                    index.get_or_insert(digest);
                    log::info!("{}: index entry {name} chosen", self.shown);
                    wanted = (name, Some(entry));
                }
            }
        }
        Err(self.malformed("resolve", "indexes nest deeper than an index of indexes"))
    }

    // One manifest's bytes by tag or digest, checked against `expected`, with the media type
    // the answer gave and their digest.
    fn manifest(
        &self,
        what: &str,
        expected: Option<Sha256>,
    ) -> Result<(String, Option<String>, Sha256), Error> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base,
            self.reference.repository,
            percent_encode(what)
        );
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
        let mut response = self.get("resolve", &url, &accept)?;
        let status = response.status().as_u16();
        if status != 200 {
            let words = self.status_words(status_of(response), "resolve");
            return Err(failed("resolve", &self.shown, words));
        }
        let content_type = http::header(&response, "content-type")
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_string());
        let text = http::read_text(&mut response, MANIFEST_LIMIT).map_err(|e| {
            self.malformed(
                "resolve",
                &format!("reading the manifest: {}", http::describe(&e)),
            )
        })?;
        let digest = sha256(text.as_bytes());
        if let Some(expected) = expected
            && expected != digest
        {
            let reason = format!(
                "digest mismatch: the manifest's bytes hash to sha256:{}, the reference names sha256:{}",
                hex(&digest),
                hex(&expected)
            );
            return Err(failed("resolve", &self.shown, (reason, None)));
        }
        Ok((text, content_type, digest))
    }

    // A GET that answers the registry's challenge once: the response, whatever its status.
    fn get(
        &self,
        action: &'static str,
        url: &str,
        accept: &str,
    ) -> Result<Response<ureq::Body>, Error> {
        let mut challenged = false;
        loop {
            let authorization = self.authorization();
            let mut headers = vec![("Accept", accept)];
            if let Some(value) = &authorization {
                headers.push(("Authorization", value.expose()));
            }
            let response = http::get_with_retry(&self.agent, url, &headers)
                .map_err(|f| self.error(action, f))?;
            if response.status().as_u16() != 401 || challenged {
                return Ok(response);
            }
            let Some(challenge) =
                http::header(&response, "www-authenticate").and_then(auth::challenge)
            else {
                return Ok(response);
            };
            challenged = true;
            self.answer(action, challenge)?;
        }
    }

    fn authorization(&self) -> Option<Secret> {
        self.authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    // Sets the `Authorization` a challenge asks for.
    fn answer(&self, action: &'static str, challenge: Challenge) -> Result<(), Error> {
        let value = match &challenge {
            Challenge::Basic => match &self.credentials {
                Some((c, _)) => c.basic(),
                None => {
                    let reason = "unauthorized: the registry asks for a user name and password, and no Docker config has them".to_string();
                    return Err(failed(action, &self.shown, (reason, Some(HINT_AUTH))));
                }
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let token = self.token(action, realm, service.as_deref(), scope.as_deref())?;
                *self.bearer.lock().unwrap_or_else(|p| p.into_inner()) = Some(challenge.clone());
                Secret::new(format!("Bearer {}", token.expose()))
            }
        };
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    // A token from the challenge's realm, for pulling this repository.
    fn token(
        &self,
        action: &'static str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Secret, Error> {
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            let reason = format!(
                "the registry's token realm {} is not an http(s) URL",
                quote(&clip(realm))
            );
            return Err(failed(action, &self.shown, (reason, None)));
        }
        let pull = format!("repository:{}:pull", self.reference.repository);
        let mut query = vec![("scope", scope.unwrap_or(&pull))];
        query.extend(service.map(|s| ("service", s)));
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{separator}{}", query.join("&"));
        let basic = self.credentials.as_ref().map(|(c, _)| c.basic());
        let mut headers = vec![("Accept", "application/json")];
        if let Some(basic) = &basic {
            headers.push(("Authorization", basic.expose()));
        }
        let whom = format!(
            "the token server {}",
            clip(&crate::error::redact_url(realm))
        );
        let mut response = http::get_with_retry(&self.agent, &url, &headers).map_err(|f| {
            let reason = unreachable(&whom, &f);
            failed(action, &self.shown, (reason, Some(HINT_TLS)))
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            // Token servers answer in the distribution API's error shape, as registries do.
            let error = status_of(response);
            let reason = match &self.credentials {
                Some((c, from)) => format!(
                    "unauthorized: {whom} refused the credentials of {} from {}: {error}",
                    quote(&c.user),
                    quote(from)
                ),
                None => format!("unauthorized: {whom} refused anonymous access: {error}"),
            };
            return Err(failed(action, &self.shown, (reason, Some(HINT_AUTH))));
        }
        let body = http::read_text(&mut response, 1 << 20).unwrap_or_default();
        auth::token_of(&body).ok_or_else(|| {
            let reason = format!("{whom} answered without a token");
            failed(action, &self.shown, (reason, None))
        })
    }

    fn malformed(&self, action: &'static str, why: &str) -> Error {
        malformed(&self.shown, action, why)
    }

    fn error(&self, action: &'static str, failure: Failure) -> Error {
        let whom = format!("the registry {}", self.base);
        let words = match failure {
            Failure::Status(status) => self.status_words(status, action),
            Failure::Tls(_) => (unreachable(&whom, &failure), Some(HINT_TLS)),
            Failure::Transport(_) | Failure::PlainHttp(_) => {
                (unreachable(&whom, &failure), Some(HINT_REGISTRY))
            }
            Failure::Other(cause) => (cause, None),
            Failure::Headers(e) => (e.to_string(), e.hint()),
        };
        failed(action, &self.shown, words)
    }

    // A registry's error status in words: its `{"errors":[{"code","message"}]}` body.
    fn status_words(&self, status: StatusError, action: &str) -> Words {
        let shown = status.to_string();
        let code = status.code.as_deref().unwrap_or_default();
        let repo = quote(&self.reference.repository);
        let what = quote(&self.reference.manifest_ref());
        match (status.status, code) {
            (404, "NAME_UNKNOWN") => (
                format!("repository unknown: the registry has no repository {repo}: {shown}"),
                Some(HINT_REFERENCE),
            ),
            (404, _) if action == "resolve" => (
                format!("manifest unknown: the repository {repo} has no manifest {what}: {shown}"),
                Some(HINT_REFERENCE),
            ),
            (404, _) => (
                format!("blob unknown: listed in the manifest, not in the registry: {shown}"),
                None,
            ),
            (401, _) | (403, _) => {
                let sent = match &self.credentials {
                    Some((c, from)) => {
                        format!("the credentials of {} from {}", quote(&c.user), quote(from))
                    }
                    None => "no credentials".into(),
                };
                (
                    format!("unauthorized: the registry refused {sent}: {shown}"),
                    Some(HINT_AUTH),
                )
            }
            _ => (shown, None),
        }
    }
}

// An error response in the distribution API's words: `{"errors":[{"code","message"}]}`.
fn status_of(mut response: Response<ureq::Body>) -> StatusError {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<Said>,
    }
    #[derive(Deserialize)]
    struct Said {
        code: Option<String>,
        message: Option<String>,
    }
    let status = response.status().as_u16();
    let body = http::read_text(&mut response, 64 * 1024).unwrap_or_default();
    match serde_json::from_str::<Errors>(&body).map(|e| e.errors.into_iter().next()) {
        Ok(Some(said)) => StatusError {
            status,
            code: said.code.map(|c| clip(&one_line(&c))),
            message: said.message.map(|m| clip(&one_line(&m))),
        },
        _ => StatusError::parse(status, &body),
    }
}

/// What a manifest's bytes say (`read_manifest`).
pub(crate) enum Next {
    /// An index: the entry for the platform, as written and read.
    Entry(String, Sha256),
    /// A manifest: its files and tar layers.
    Contents(Vec<Layer>, Vec<Stream>),
}

/// What one manifest's bytes come to (pure): the entry of an index for `platform`, or the
/// files and tar layers of a manifest. `content_type` is the media type the registry's answer
/// gave; `uri` is for messages.
pub(crate) fn read_manifest(
    text: &str,
    content_type: Option<String>,
    platform: &str,
    model_dir: &str,
    uri: &str,
) -> Result<Next, Error> {
    let manifest = parse_manifest(text, content_type, uri)?;
    let media_type = manifest.media_type.as_deref().unwrap_or_default();
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_LIST
        || (media_type.is_empty() && !manifest.manifests.is_empty());
    if !is_index {
        let (files, streams) = contents(&manifest, model_dir, uri)?;
        return Ok(Next::Contents(files, streams));
    }
    let chosen =
        choose(&manifest.manifests, platform).map_err(|words| failed("resolve", uri, words))?;
    let digest = reference::parse_digest(&chosen.digest)
        .map_err(|why| malformed(uri, "resolve", &format!("an index entry: {why}")))?;
    Ok(Next::Entry(chosen.digest.clone(), digest))
}

// A manifest's bytes, checked to be a media type this source reads; `content_type` is taken
// when the manifest names none.
fn parse_manifest(text: &str, content_type: Option<String>, uri: &str) -> Result<Manifest, Error> {
    let mut manifest: Manifest = serde_json::from_str(text).map_err(|e| {
        malformed(
            uri,
            "resolve",
            // serde quotes a string it did not expect whole: clipped, as hostile text is.
            &format!("the manifest: {}", clip(&one_line(&e.to_string()))),
        )
    })?;
    if manifest.media_type.is_none() {
        manifest.media_type = content_type;
    }
    let media_type = manifest.media_type.as_deref().unwrap_or_default();
    if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, ""].contains(&media_type) {
        let reason = format!(
            "unsupported media type {} for a manifest",
            quote(media_type)
        );
        return Err(failed("resolve", uri, (reason, None)));
    }
    Ok(manifest)
}

// The files and tar layers a manifest's layers are; an image's are all tar layers, of which
// only `model_dir` lands.
fn contents(
    manifest: &Manifest,
    model_dir: &str,
    uri: &str,
) -> Result<(Vec<Layer>, Vec<Stream>), Error> {
    let config = manifest.config.as_ref().map(|c| c.media_type.as_str());
    let image = config.is_some_and(|c| IMAGE_CONFIGS.contains(&c));
    let (mut files, mut streams) = (Vec::new(), Vec::new());
    for layer in &manifest.layers {
        let title = layer.annotations.get(TITLE);
        let shown = title.map_or(layer.digest.as_str(), String::as_str);
        let digest = reference::parse_digest(&layer.digest).map_err(|why| {
            malformed(
                uri,
                "resolve",
                &format!("the layer {}: {why}", quote(shown)),
            )
        })?;
        let tar = tar_compression(&layer.media_type);
        // A titled tar is still a tar when its media type or ORAS says it was packed.
        let packed = tar.is_some()
            && (layer
                .annotations
                .get(ORAS_UNPACK)
                .is_some_and(|v| v == "true")
                || PACKED.iter().any(|p| layer.media_type.starts_with(p)));
        match (title, tar) {
            (Some(title), _) if !image && !packed => files.push(Layer {
                path: title.clone(),
                digest,
                size: layer.size,
            }),
            (_, Some(compression)) => streams.push(Stream {
                key: layer.digest.clone(),
                size: layer.size,
                sha256: digest,
                compression,
                within: match image {
                    true => model_dir.to_string(),
                    false => String::new(),
                },
            }),
            (None, None) => {
                let reason = format!(
                    "unsupported media type {} for a layer: neither a tar nor a file named by an {TITLE} annotation",
                    quote(&layer.media_type)
                );
                return Err(failed("resolve", uri, (reason, None)));
            }
            (Some(_), None) => {
                let reason = format!(
                    "unsupported media type {} for a layer of an image: only tar layers are applied",
                    quote(&layer.media_type)
                );
                return Err(failed("resolve", uri, (reason, None)));
            }
        }
    }
    Ok((files, streams))
}

/// An artifact's files as the engine lists objects: each pinned by its layer's digest.
pub(crate) fn objects(files: &[Layer]) -> Vec<Object> {
    files
        .iter()
        .map(|l| Object {
            key: l.path.clone(),
            size: Some(l.size),
            etag: Some(format!("sha256:{}", hex(&l.digest))),
            ranges: true,
            md5: None,
            sha256: Some(Box::new(l.digest)),
        })
        .collect()
}

fn malformed(uri: &str, action: &'static str, why: &str) -> Error {
    let reason = format!("the registry's answer is not what the distribution API gives: {why}");
    failed(action, uri, (reason, Some(HINT_REGISTRY)))
}

// How a tar layer's media type says it is compressed; `None` for what is not a tar.
fn tar_compression(media_type: &str) -> Option<Compression> {
    let t = media_type.to_ascii_lowercase();
    if t.ends_with("tar+gzip") || t.ends_with("tar.gzip") {
        Some(Compression::Gzip)
    } else if t.ends_with("tar+zstd") || t.ends_with("tar.zstd") {
        Some(Compression::Zstd)
    } else if t.ends_with(".tar") || t.ends_with("+tar") || t.ends_with(".diff.tar") {
        Some(Compression::None)
    } else {
        None
    }
}

// `linux/ARCH` of this process, in Go's architecture names.
fn running_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

// The entry of an index for `platform` (`os/arch[/variant]`), or the only entry of an index
// of artifacts (entries without a platform).
fn choose<'a>(entries: &'a [Descriptor], platform: &str) -> Result<&'a Descriptor, Words> {
    let matches = |p: &Platform| {
        let mut parts = platform.split('/');
        parts.next() == Some(p.os.as_str())
            && parts.next() == Some(p.architecture.as_str())
            && parts.next().is_none_or(|v| p.variant.as_deref() == Some(v))
    };
    if let Some(entry) = entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(matches))
    {
        return Ok(entry);
    }
    let unplatformed: Vec<_> = entries.iter().filter(|e| e.platform.is_none()).collect();
    if let [only] = unplatformed.as_slice() {
        return Ok(only);
    }
    let found: Vec<String> = entries
        .iter()
        .map(|e| e.platform.as_ref().map_or("(none)".into(), Platform::shown))
        .collect();
    let reason = format!(
        "the image index has no manifest for {platform} (it has: {})",
        clip(&found.join(", "))
    );
    Err((reason, Some(HINT_PLATFORM)))
}

impl Source for OciSource {
    fn list(&self, _prefix: &str) -> Result<Vec<Object>, Error> {
        Ok(objects(&self.files))
    }

    fn layers(&self) -> &[Stream] {
        &self.streams
    }

    fn resolved_digest(&self) -> Option<String> {
        Some(format!("sha256:{}", hex(&self.manifest_digest)))
    }

    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error> {
        let tar = self.streams.iter().find(|l| l.key == key).map(|l| Layer {
            path: l.key.clone(),
            digest: l.sha256,
            size: l.size,
        });
        let Some(layer) = tar.or_else(|| self.files.iter().find(|l| l.path == key).cloned()) else {
            return Err(failed(
                "download",
                &self.shown,
                (format!("{} is not in the manifest", quote(key)), None),
            ));
        };
        let layer = &layer;
        let url = format!(
            "{}/v2/{}/blobs/sha256:{}",
            self.base,
            self.reference.repository,
            hex(&layer.digest)
        );
        let headers = |_: Option<&str>| {
            let mut headers = vec![("Accept".to_string(), "*/*".to_string())];
            if let Some(value) = self.authorization() {
                headers.push(("Authorization".into(), value.expose().to_string()));
            }
            Ok(headers)
        };
        let mut counted = Counted { out, written: 0 };
        let start = range.as_ref().map_or(0, |r| r.start);
        let end = range.as_ref().map_or(layer.size, |r| r.end);
        let mut refreshed = 0;
        loop {
            let left =
                (counted.written > 0 || range.is_some()).then(|| start + counted.written..end);
            let failure = match http::get_resumable(&self.agent, &url, &headers, left, &mut counted)
            {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            // A token that expired during a long download: a fresh one, and on from there.
            let challenge = self
                .bearer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match (&failure, challenge) {
                (Failure::Status(s), Some(challenge)) if s.status == 401 && refreshed < 2 => {
                    refreshed += 1;
                    log::info!(
                        "{}: the registry token expired, fetching another",
                        self.shown
                    );
                    self.answer("download", challenge)?;
                }
                _ => {
                    return Err(failure.or_else(|f| {
                        let mut e = self.error("download", f);
                        if let Error::Fetch { url, .. } = &mut e {
                            *url = format!("{} of {}", quote(key), self.shown);
                        }
                        e
                    }));
                }
            }
        }
    }
}

// A writer that counts what went through, so a read can resume after a fresh token.
struct Counted<'a> {
    out: &'a mut dyn Write,
    written: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: Option<(&str, &str, Option<&str>)>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            annotations: BTreeMap::new(),
            platform: platform.map(|(os, architecture, variant)| Platform {
                os: os.into(),
                architecture: architecture.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn index_entries() {
        let entries = [
            entry(Some(("linux", "arm64", Some("v8"))), "a"),
            entry(Some(("linux", "amd64", None)), "b"),
            entry(Some(("unknown", "unknown", None)), "c"),
        ];
        assert_eq!(choose(&entries, "linux/amd64").unwrap().digest, "b");
        assert_eq!(choose(&entries, "linux/arm64").unwrap().digest, "a");
        assert_eq!(choose(&entries, "linux/arm64/v8").unwrap().digest, "a");
        let (reason, hint) = choose(&entries, "linux/s390x").err().unwrap();
        assert_eq!(
            reason,
            "the image index has no manifest for linux/s390x (it has: linux/arm64/v8, linux/amd64, unknown/unknown)"
        );
        assert_eq!(hint, Some(HINT_PLATFORM));
        let artifacts = [entry(None, "x")];
        assert_eq!(choose(&artifacts, "linux/amd64").unwrap().digest, "x");
        assert!(choose(&[entry(None, "x"), entry(None, "y")], "linux/amd64").is_err());
    }

    #[test]
    fn what_a_manifest_comes_to() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let artifact = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[
            {{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3,
              "annotations":{{"{TITLE}":"sub/w.bin"}}}},
            {{"mediaType":"application/vnd.cncf.model.weight.v1.tar+zstd","digest":"{}","size":9,
              "annotations":{{"{TITLE}":"packed"}}}}]}}"#,
            d('a'),
            d('b')
        );
        let read = read_manifest(&artifact, None, "linux/amd64", "models", "oci://r/m");
        let Ok(Next::Contents(files, streams)) = read else {
            panic!("not contents");
        };
        let objects = objects(&files);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].key, "sub/w.bin");
        assert_eq!(objects[0].sha256.as_deref(), Some(&[0xaa; 32]));
        assert_eq!(streams.len(), 1);
        assert_eq!(
            (streams[0].compression, streams[0].within.as_str()),
            (Compression::Zstd, "")
        );

        // An index named only by the answer's Content-Type: the platform's entry.
        let index = format!(
            r#"{{"manifests":[{{"digest":"{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            d('c')
        );
        let read = read_manifest(
            &index,
            Some(OCI_INDEX.into()),
            "linux/amd64",
            "m",
            "oci://r/m",
        );
        let Ok(Next::Entry(name, digest)) = read else {
            panic!("not an entry");
        };
        assert_eq!((name, digest), (d('c'), [0xcc; 32]));

        // A long string where the manifest should be (found by fuzzing): serde quotes it
        // whole, the line is clipped.
        let long = format!("\"{}\"", "\u{fffd}".repeat(900));
        let e = read_manifest(&long, None, "linux/amd64", "m", "oci://r/m").err();
        let line = e.unwrap().to_string();
        assert!(line.len() < 1024 && line.contains("… ("), "{line}");

        let other = r#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#;
        let e = read_manifest(other, None, "linux/amd64", "m", "oci://r/m").err();
        assert_eq!(
            e.unwrap().to_string(),
            "cannot resolve oci://r/m: unsupported media type 'application/vnd.oci.artifact.manifest.v1+json' for a manifest"
        );

        // A layer that is neither a tar nor a titled file, and a file layer in an image: each
        // named with its media type.
        let layer = |config: &str, title: bool| {
            let annotations = match title {
                true => r#","annotations":{"org.opencontainers.image.title":"w.bin"}"#,
                false => "",
            };
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{config}","digest":"{}","size":1}},"layers":[{{"mediaType":"application/x-weird","digest":"{}","size":1{annotations}}}]}}"#,
                d('a'),
                d('b')
            )
        };
        let artifact = layer("application/vnd.cncf.model.config.v1+json", false);
        let e = read_manifest(&artifact, None, "linux/amd64", "m", "oci://r/m").err();
        assert_eq!(
            e.unwrap().to_string(),
            "cannot resolve oci://r/m: unsupported media type 'application/x-weird' for a layer: neither a tar nor a file named by an org.opencontainers.image.title annotation"
        );
        let image = layer("application/vnd.oci.image.config.v1+json", true);
        let e = read_manifest(&image, None, "linux/amd64", "m", "oci://r/m").err();
        assert_eq!(
            e.unwrap().to_string(),
            "cannot resolve oci://r/m: unsupported media type 'application/x-weird' for a layer of an image: only tar layers are applied"
        );
    }
}
