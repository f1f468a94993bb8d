//! Hugging Face Hub source: `hf://OWNER/REPO[:REVISION]` through the Hub's HTTP API, over the
//! one HTTP stack (no Python, no Xet client).
//!
//! - The URI, in KServe's grammar: exactly `OWNER/REPO`, then an optional `:REVISION` (a
//!   branch, tag or commit; `main` when absent). Anything else is refused before a request.
//! - The revision is resolved to a commit once, when the source opens (model info,
//!   `GET /api/models/OWNER/REPO/revision/REV`, its `sha`), and every later request names
//!   that commit: a push during the download cannot mix two revisions.
//! - Listing: the tree API, `GET /api/models/OWNER/REPO/tree/COMMIT?recursive=true`, pages
//!   followed through the `Link: <...>; rel="next"` header (the Hub pages at 1,000 entries)
//!   with the caps every store has (`list_by_pages`). A next page on another origin is
//!   refused: the token goes with it.
//! - Reading: `GET /OWNER/REPO/resolve/COMMIT/PATH`, with `Range` for parts and resume. The
//!   Hub answers LFS and Xet files with a redirect to a storage host, followed hop by hop
//!   with the range; the token is sent to the Hub's origin only (`http::get_with_retry`).
//! - Integrity: an LFS or Xet file's `lfs.oid` is the SHA-256 of its bytes: the engine checks
//!   it. A regular (git) file is checked by size. The manifest's version of a file is that
//!   SHA-256 or its git blob id, so a rerun skips the files whose bytes are the same.
//! - Auth, as `huggingface_hub` reads it: `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`,
//!   else `HF_HOME/token`); else anonymous. The Hub's `X-Error-Code` (`RepoNotFound`,
//!   `RevisionNotFound`, `GatedRepo`) words what went wrong.

use std::io::Write;
use std::ops::Range;

use serde::Deserialize;
use ureq::Agent;
use ureq::http::Response;

use crate::digest::from_hex;
use crate::error::{Error, clip, one_line, quote, redact_url};
use crate::fetch::{HINT_TLS, Object, Page, Source, Words, failed, list_by_pages, unreachable};
use crate::http::{self, Failure, StatusError, Trust};
use crate::settings::{HfSettings, Secret, Settings};
use crate::uri::percent_encode;

const HINT_AUTH: &str = "set HF_TOKEN or request access to the gated repository (a token file: HF_TOKEN_PATH, or HF_HOME/token)";
const HINT_ENDPOINT: &str =
    "check HF_ENDPOINT (default https://huggingface.co), and HTTPS_PROXY/NO_PROXY";
const HINT_REVISION: &str = "name a branch, tag or commit that exists: hf://OWNER/REPO:REVISION";

/// Whether `uri` is an `hf://` URI (well-formed or not).
pub(crate) fn is_hf_uri(uri: &str) -> bool {
    uri.split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("hf"))
}

/// What `--resolve` prints for an `hf://` URI: the commit its revision names now, and the
/// URI that pins it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Pinned {
    pub(crate) uri: String,
    pub(crate) endpoint: String,
    pub(crate) repo: String,
    pub(crate) revision: String,
    pub(crate) commit: String,
    pub(crate) pinned_uri: String,
}

/// Resolves the revision of an `hf://` URI to its commit, downloading nothing.
pub(crate) fn pin(uri: &str, settings: &Settings) -> Result<Pinned, Error> {
    let (source, _) = HfSource::open(uri, settings)?;
    let revision = HfUri::parse(uri)?.revision;
    Ok(Pinned {
        uri: uri.to_string(),
        pinned_uri: format!("hf://{}:{}", source.repo, source.commit),
        endpoint: source.endpoint,
        repo: source.repo,
        revision: revision.unwrap_or_else(|| DEFAULT_REVISION.into()),
        commit: source.commit,
    })
}

// KServe's grammar, for messages.
const GRAMMAR: &str = "hf://OWNER/REPO[:REVISION]";

/// The revision `huggingface_hub` takes when none is given.
const DEFAULT_REVISION: &str = "main";

/// `hf://OWNER/REPO[:REVISION]`, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HfUri {
    /// `OWNER/REPO`.
    pub(crate) repo: String,
    /// The revision written, if any.
    pub(crate) revision: Option<String>,
}

impl HfUri {
    /// Parses KServe's grammar: after `hf://`, exactly two `/`-separated parts, the second
    /// split at its first `:` into the name and the revision (empty: none).
    pub(crate) fn parse(uri: &str) -> Result<HfUri, Error> {
        // A query or a password is a secret to no one's benefit here: the line shows neither.
        let invalid = |reason: String| Err(Error::uri(redact_url(uri), reason));
        let rest = match uri.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("hf") => rest,
            _ => return invalid("not an hf:// URI".into()),
        };
        // Checked before the parts are quoted, since they would quote the secret.
        if rest.contains(['?', '#']) {
            return invalid(format!("a query or fragment is not part of {GRAMMAR}"));
        }
        if rest
            .split('/')
            .next()
            .is_some_and(|owner| owner.contains('@'))
        {
            return invalid(format!(
                "a user or password is not part of {GRAMMAR} (the Hub's token goes in HF_TOKEN)"
            ));
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let [owner, model] = parts.as_slice() else {
            return invalid(format!(
                "expected {GRAMMAR} (one '/'), got {} part(s) after hf://",
                parts.len()
            ));
        };
        let (name, revision) = model.split_once(':').unwrap_or((model, ""));
        if owner.is_empty() {
            return invalid("the repository owner is empty".into());
        }
        if name.is_empty() {
            return invalid("the repository name is empty".into());
        }
        for (what, part) in [("owner", owner), ("name", &name)] {
            if let Err(why) = check_name(part) {
                return invalid(format!("the repository {what} {why}"));
            }
        }
        if revision.chars().any(char::is_control) {
            return invalid("the revision holds a control character".into());
        }
        Ok(HfUri {
            repo: format!("{owner}/{name}"),
            revision: (!revision.is_empty()).then(|| revision.to_string()),
        })
    }
}

// The Hub's rule for a repository's owner and name (`huggingface_hub`'s `validate_repo_id`):
// letters, digits, `-`, `_` and `.`, at most 96, no `--` or `..`, not starting or ending with
// `-` or `.`. It also keeps `..` and `/` out of the API's paths.
fn check_name(part: &str) -> Result<(), String> {
    let shown = quote(part);
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("{shown} holds {}", quote(&c.to_string())));
    }
    if part.len() > 96 {
        return Err(format!("{shown} is longer than 96 characters"));
    }
    if part.contains("--") || part.contains("..") {
        return Err(format!("{shown} holds '--' or '..'"));
    }
    if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
        return Err(format!("{shown} starts or ends with '-' or '.'"));
    }
    Ok(())
}

/// One repository at one commit.
pub(crate) struct HfSource {
    agent: Agent,
    /// `HF_ENDPOINT`, without a trailing `/`.
    endpoint: String,
    /// `OWNER/REPO`.
    repo: String,
    /// The URI as written, for messages.
    shown: String,
    /// The commit the revision resolved to.
    commit: String,
    token: Option<Secret>,
}

impl HfSource {
    /// Finds the token, and resolves the URI's revision to a commit.
    pub(crate) fn open(uri: &str, settings: &Settings) -> Result<(HfSource, String), Error> {
        let parsed = HfUri::parse(uri)?;
        let hf = &settings.hf;
        let agent = http::agent(&settings.tls, Trust::Usual(&[]))?;
        let (token, from) = token(hf)?;
        match from {
            Some(from) => log::info!("Hub {}: sending the token from {from}", hf.endpoint),
            None => log::info!("Hub {}: anonymous requests (no HF_TOKEN)", hf.endpoint),
        }
        let mut source = HfSource {
            agent,
            endpoint: hf.endpoint.clone(),
            repo: parsed.repo,
            shown: uri.to_string(),
            commit: String::new(),
            token,
        };
        let revision = parsed.revision.as_deref().unwrap_or(DEFAULT_REVISION);
        source.commit = source.resolve(revision)?;
        log::info!(
            "{uri}: revision {} is commit {}",
            quote(revision),
            source.commit
        );
        Ok((source, String::new()))
    }

    fn headers(&self) -> Vec<(&str, String)> {
        let mut headers = vec![("Accept", "application/json".to_string())];
        if let Some(token) = &self.token {
            headers.push(("Authorization", format!("Bearer {}", token.expose())));
        }
        headers
    }

    // GETs an API URL: the response when it is a 200, else the Hub's refusal in words.
    fn api(&self, action: &'static str, url: &str) -> Result<Response<ureq::Body>, Error> {
        let headers = self.headers();
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = http::get_with_retry(&self.agent, url, &pairs)
            .map_err(|f| self.error(action, &self.shown, f, None))?;
        if response.status().as_u16() == 200 {
            return Ok(response);
        }
        let header = |name| http::header(&response, name).map(str::to_string);
        let said = HubSaid {
            code: header("x-error-code"),
            message: header("x-error-message"),
        };
        let status = StatusError::read(response);
        Err(self.error(action, &self.shown, Failure::Status(status), Some(said)))
    }

    // The commit `revision` names (model info's `sha`).
    fn resolve(&self, revision: &str) -> Result<String, Error> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint,
            self.repo,
            percent_encode(revision)
        );
        let mut response = self.api("resolve", &url)?;
        #[derive(Deserialize)]
        struct Info {
            sha: Option<String>,
        }
        let info: Info = read_json(&mut response)
            .map_err(|why| self.malformed("resolve", &format!("model info: {why}")))?;
        match info.sha {
            // The commit goes into every URL and the manifest: only a hash is taken.
            Some(sha) if is_commit(&sha) => Ok(sha),
            Some(sha) => Err(self.malformed(
                "resolve",
                &format!("model info's sha {} is not a commit hash", quote(&sha)),
            )),
            None => Err(self.malformed("resolve", "model info has no sha")),
        }
    }

    // One page of the tree: the first (`next` None) or the one a `Link` header named.
    fn page(&self, next: Option<&str>) -> Result<Page, Error> {
        let url = match next {
            Some(url) => url.to_string(),
            None => format!(
                "{}/api/models/{}/tree/{}?recursive=true&expand=false",
                self.endpoint, self.repo, self.commit
            ),
        };
        let mut response = self.api("list", &url)?;
        let next = http::header(&response, "link").and_then(next_link);
        if let Some(next) = &next
            && !same_origin(next, &self.endpoint)
        {
            let reason = format!(
                "the Hub's next page is on another origin ({}): the token would go there",
                clip(&redact_url(next))
            );
            return Err(failed("list", &self.shown, (reason, Some(HINT_ENDPOINT))));
        }
        let entries: Vec<TreeEntry> = read_json(&mut response)
            .map_err(|why| self.malformed("list", &format!("tree listing: {why}")))?;
        let objects = objects(entries).map_err(|why| self.malformed("list", &why))?;
        Ok(Page { objects, next })
    }

    fn malformed(&self, action: &'static str, why: &str) -> Error {
        let reason = format!("the Hub's answer is not what its API gives: {why}");
        failed(action, &self.shown, (reason, Some(HINT_ENDPOINT)))
    }

    // A failure of `action` on `what` in the Hub's terms; `said` holds its error headers,
    // when they were read.
    fn error(
        &self,
        action: &'static str,
        what: &str,
        failure: Failure,
        said: Option<HubSaid>,
    ) -> Error {
        let whom = format!("the Hub at {}", self.endpoint);
        let words = match failure {
            Failure::Status(status) => {
                let said = said.unwrap_or_default();
                status_words(&status, &said, &self.repo, action, self.token.is_some())
            }
            Failure::Tls(_) => (unreachable(&whom, &failure), Some(HINT_TLS)),
            Failure::Transport(_) | Failure::PlainHttp(_) => {
                (unreachable(&whom, &failure), Some(HINT_ENDPOINT))
            }
            Failure::Other(cause) => (cause, None),
            Failure::Headers(e) => (e.to_string(), e.hint()),
        };
        failed(action, what, words)
    }
}

impl Source for HfSource {
    fn list(&self, _prefix: &str) -> Result<Vec<Object>, Error> {
        // The whole repository: the URI names no path inside it.
        let what = format!("{}@{}", self.shown, self.commit);
        list_by_pages("", &what, |_, next, _| self.page(next))
    }

    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error> {
        let path: Vec<String> = key.split('/').map(percent_encode).collect();
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            self.repo,
            self.commit,
            path.join("/")
        );
        let headers = |_: Option<&str>| {
            let headers = self.headers().into_iter();
            Ok(headers.map(|(k, v)| (k.to_string(), v)).collect())
        };
        let what = format!("{} of {} at {}", quote(key), self.shown, self.commit);
        http::get_resumable(&self.agent, &url, &headers, range, out)
            .map_err(|f| f.or_else(|f| self.error("download", &what, f, None)))
    }
}

// The token and where it came from: `HF_TOKEN`, else the token file. A file a variable named
// that cannot be read is an error; the default place may hold none.
fn token(hf: &HfSettings) -> Result<(Option<Secret>, Option<String>), Error> {
    if let Some(token) = &hf.token {
        return Ok((Some(token.clone()), Some("HF_TOKEN".into())));
    }
    let Some((path, named)) = &hf.token_file else {
        return Ok((None, None));
    };
    let shown = path.to_string_lossy();
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok((
            Some(Secret::new(text.trim())),
            Some(format!("the token file {}", quote(&shown))),
        )),
        Ok(_) => Ok((None, None)),
        Err(e) if *named => {
            let reason = format!("cannot read {}: {e}", quote(&shown));
            Err(Error::env("HF_TOKEN_PATH", reason))
        }
        Err(_) => Ok((None, None)),
    }
}

/// What the Hub said about an error in its headers.
#[derive(Debug, Default)]
struct HubSaid {
    code: Option<String>,
    message: Option<String>,
}

// What a Hub status means, in `action` ("resolve", "list", "download") on `repo`.
fn status_words(
    status: &StatusError,
    said: &HubSaid,
    repo: &str,
    action: &str,
    token: bool,
) -> Words {
    let code = said.code.as_deref().or(status.code.as_deref());
    // The Hub's own message is in a header; its body's is `{"error": "..."}`.
    let shown = StatusError {
        status: status.status,
        code: None,
        message: said
            .message
            .as_deref()
            .map(|m| clip(&one_line(m)))
            .or(status.message.clone()),
    }
    .to_string();
    let repo = quote(repo);
    match (status.status, code) {
        (_, Some("RevisionNotFound")) => (
            format!("the revision does not exist in the repository {repo}: {shown}"),
            Some(HINT_REVISION),
        ),
        (_, Some("GatedRepo")) => (
            format!("the repository {repo} is gated and this pod may not read it: {shown}"),
            Some(HINT_AUTH),
        ),
        // Without a token the Hub says a private repository is not found.
        (_, Some("RepoNotFound")) if !token => (
            format!(
                "the repository {repo} does not exist, or is private (no token was sent): {shown}"
            ),
            Some(HINT_AUTH),
        ),
        (_, Some("RepoNotFound")) => (
            format!("the repository {repo} does not exist, or the token may not read it: {shown}"),
            Some("check OWNER/REPO in the URI, and that the token's account may read it"),
        ),
        (404, _) if action == "download" => (
            format!("the file is gone from the commit (listed, then not found): {shown}"),
            None,
        ),
        (404, _) => (
            format!("the repository {repo} or its revision was not found: {shown}"),
            Some(HINT_REVISION),
        ),
        (401, _) if token => (
            format!("the Hub refused the token: {shown}"),
            Some(HINT_AUTH),
        ),
        (401 | 403, _) => (
            format!("access denied (a gated or private repository): {shown}"),
            Some(HINT_AUTH),
        ),
        _ => (shown, None),
    }
}

#[derive(Deserialize)]
pub(crate) struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: Option<u64>,
    oid: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    oid: String,
    size: u64,
}

// The files of a tree page (folders are implied by their files).
pub(crate) fn objects(entries: Vec<TreeEntry>) -> Result<Vec<Object>, String> {
    let mut objects = Vec::with_capacity(entries.len());
    for entry in entries.into_iter().filter(|e| e.kind == "file") {
        let path = quote(&entry.path);
        let (size, etag, sha256) = match entry.lfs {
            Some(lfs) => {
                let sha256 = from_hex(&lfs.oid)
                    .ok_or_else(|| format!("the LFS oid of {path} is not a SHA-256"))?;
                if entry.size.is_some_and(|s| s != lfs.size) {
                    return Err(format!("{path} has two sizes"));
                }
                (lfs.size, Some(lfs.oid), Some(Box::new(sha256)))
            }
            None => {
                let size = entry.size.ok_or_else(|| format!("{path} has no size"))?;
                (size, entry.oid, None)
            }
        };
        objects.push(Object {
            key: entry.path,
            size: Some(size),
            etag,
            ranges: true,
            md5: None,
            sha256,
        });
    }
    Ok(objects)
}

fn read_json<T: serde::de::DeserializeOwned>(
    response: &mut Response<ureq::Body>,
) -> Result<T, String> {
    // A page of 1,000 entries with their LFS metadata is well under this.
    const LIMIT: u64 = 16 << 20;
    let text = http::read_text(response, LIMIT).map_err(|e| http::describe(&e))?;
    serde_json::from_str(&text).map_err(|e| one_line(&e.to_string()))
}

// A git commit id: 40 hex digits (64 in SHA-256 repositories).
fn is_commit(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

// The `rel="next"` URL of a `Link` header: `<URL>; rel="next", <URL>; rel="last"`.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.trim().split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        next.then(|| url.to_string())
    })
}

// Whether `url` is on the origin (scheme and authority) of `endpoint`.
fn same_origin(url: &str, endpoint: &str) -> bool {
    let origin = |u: &str| {
        let (scheme, rest) = u.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        Some((scheme.to_ascii_lowercase(), authority.to_ascii_lowercase()))
    };
    origin(url).is_some() && origin(url) == origin(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kserve_grammar() {
        let ok = |uri: &str, repo: &str, revision: Option<&str>| {
            let parsed = HfUri::parse(uri).unwrap();
            assert_eq!(parsed.repo, repo, "{uri}");
            assert_eq!(parsed.revision.as_deref(), revision, "{uri}");
        };
        ok("hf://facebook/opt-125m", "facebook/opt-125m", None);
        ok("HF://a/b:v1.0", "a/b", Some("v1.0"));
        ok("hf://a/b:", "a/b", None);
        ok("hf://a/b:x:y", "a/b", Some("x:y"));
        let line = |uri: &str| HfUri::parse(uri).unwrap_err().to_string();
        assert_eq!(
            line("hf://a/b/c"),
            "invalid URI 'hf://a/b/c': expected hf://OWNER/REPO[:REVISION] (one '/'), got 3 part(s) after hf://"
        );
        assert_eq!(
            line("hf://a"),
            "invalid URI 'hf://a': expected hf://OWNER/REPO[:REVISION] (one '/'), got 1 part(s) after hf://"
        );
        assert_eq!(
            line("hf:///b"),
            "invalid URI 'hf:///b': the repository owner is empty"
        );
        assert_eq!(
            line("hf://a/:main"),
            "invalid URI 'hf://a/:main': the repository name is empty"
        );
        assert!(line("hf://a/b/").contains("got 3 part(s)"));
        assert!(line("hf://../b").contains("owner '..' holds '--' or '..'"));
        assert_eq!(
            line("hf://a/b?x=1"),
            "invalid URI 'hf://a/b?<redacted>': a query or fragment is not part of hf://OWNER/REPO[:REVISION]"
        );
        assert!(line("hf://u:pw@a/b").starts_with("invalid URI 'hf://u:<redacted>@a/b': a user"));
        assert!(
            line("hf://pw@a/b:main").starts_with("invalid URI 'hf://<redacted>@a/b:main': a user")
        );
        assert!(line("hf://a/-b").contains("starts or ends"));
    }

    #[test]
    fn tree_pages() {
        let json = r#"[
            {"type":"directory","oid":"d","size":0,"path":"1_Pooling"},
            {"type":"file","oid":"e7b0","size":612,"path":"config.json"},
            {"type":"file","oid":"a1b2","size":90868376,"path":"model.safetensors",
             "lfs":{"oid":"53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db","size":90868376,"pointerSize":135},
             "xetHash":"ff"}]"#;
        let entries: Vec<TreeEntry> = serde_json::from_str(json).unwrap();
        let files = objects(entries).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].key, "config.json");
        assert_eq!(files[0].etag.as_deref(), Some("e7b0"));
        assert_eq!(files[0].sha256, None);
        assert_eq!(files[1].size, Some(90868376));
        assert_eq!(files[1].sha256.as_ref().unwrap()[..2], [0x53, 0xaa]);
        let bad = r#"[{"type":"file","oid":"x","size":1,"path":"w","lfs":{"oid":"abc","size":1}}]"#;
        let entries: Vec<TreeEntry> = serde_json::from_str(bad).unwrap();
        assert_eq!(
            objects(entries).unwrap_err(),
            "the LFS oid of 'w' is not a SHA-256"
        );
    }

    #[test]
    fn links_and_origins() {
        let link = r#"<https://huggingface.co/api/models/a/b/tree/c?recursive=true&cursor=ZXl>; rel="next""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://huggingface.co/api/models/a/b/tree/c?recursive=true&cursor=ZXl")
        );
        assert_eq!(next_link(r#"<https://h/x>; rel="last""#), None);
        assert_eq!(
            next_link(r#"<https://h/1>; rel="prev", <https://h/2>; rel=next"#).as_deref(),
            Some("https://h/2")
        );
        assert!(same_origin("https://HF.co/api/x", "https://hf.co"));
        assert!(same_origin(
            "http://127.0.0.1:9/a",
            "http://127.0.0.1:9/mirror"
        ));
        assert!(!same_origin("http://127.0.0.1:8/a", "http://127.0.0.1:9"));
        assert!(!same_origin("https://hf.co.evil/a", "https://hf.co"));
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("../../0123456789abcdef0123456789abcdef0123"));
    }

    #[test]
    fn errors_in_hub_terms() {
        let status = |code: u16| StatusError {
            status: code,
            code: None,
            message: None,
        };
        let said = |code: &str| HubSaid {
            code: Some(code.into()),
            message: Some("Repository not found".into()),
        };
        let (reason, hint) =
            status_words(&status(401), &said("RepoNotFound"), "a/b", "resolve", false);
        assert_eq!(
            reason,
            "the repository 'a/b' does not exist, or is private (no token was sent): HTTP 401 Unauthorized (server said: Repository not found)"
        );
        assert_eq!(hint, Some(HINT_AUTH));
        let (_, hint) = status_words(&status(404), &said("RepoNotFound"), "a/b", "resolve", true);
        assert_ne!(hint, Some(HINT_AUTH));
        let (reason, hint) = status_words(
            &status(404),
            &said("RevisionNotFound"),
            "a/b",
            "resolve",
            true,
        );
        assert!(
            reason.starts_with("the revision does not exist"),
            "{reason}"
        );
        assert_eq!(hint, Some(HINT_REVISION));
        let (_, hint) = status_words(&status(403), &HubSaid::default(), "a/b", "download", true);
        assert_eq!(hint, Some(HINT_AUTH));
        let (_, hint) = status_words(&status(403), &said("GatedRepo"), "a/b", "download", true);
        assert_eq!(hint, Some(HINT_AUTH));
        // A header as long as a hostile server likes is cut in the error line.
        let long = HubSaid {
            code: None,
            message: Some("x".repeat(10_000)),
        };
        let (reason, _) = status_words(&status(500), &long, "a/b", "resolve", false);
        assert!(reason.len() < 300, "{reason}");
    }
}
