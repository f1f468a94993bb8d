//! The one error type of the program, and how it is shown to a person.
//!
//! Every variant says what was being done to what; `Display` writes the whole sentence on one
//! line, because KServe turns the tail of the log into the pod's termination message
//! (`FallbackToLogsOnError`). Hints for the user are separate (`Error::hint`) and are printed
//! before the error line, which is always the last line on stderr.
//!
//! Nothing here may hold a secret: URLs put into errors are stripped of their query string
//! (`redact_url`), and tokens never reach an error at all.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::http::PLAIN_HTTP;

/// Everything that can make a run fail.
#[derive(Debug)]
pub enum Error {
    /// The command line could not be understood (exit status 2).
    Usage(String),
    /// A source URI is malformed.
    Uri { uri: String, reason: String },
    /// An environment variable has a value the program cannot use.
    Env { var: String, reason: String },
    /// A `model-registry://` URI could not be resolved to an artifact.
    Resolve {
        /// The registered model's name as written in the URI.
        model: String,
        /// The version name, or `None` for "the newest version".
        version: Option<String>,
        /// The registry's base URL (scheme, host and path prefix).
        registry: String,
        /// The URI named the registry (a host, or `?namespace=`) rather than taking the default.
        registry_in_uri: bool,
        /// Why it failed (boxed: it is the largest payload, and errors travel in `Result`s).
        why: Box<Lookup>,
    },
    /// The artifact URI the registry gave is refused by the URI policy.
    Refused { uri: String, reason: String },
    /// A storage request failed: an error status, no answer, a TLS failure, or an answer
    /// that breaks the protocol (a short body, a wrong range).
    Fetch {
        /// What was being done: "list", "download".
        action: &'static str,
        /// The URL or URI, without its query string.
        url: String,
        reason: String,
        /// What the user can change, in the backend's own terms (which variables).
        hint: Option<&'static str>,
    },
    /// The source URI names nothing to download.
    Empty { uri: String },
    /// The file patterns leave none of the listed files.
    Filtered {
        uri: String,
        /// The patterns as set (`STORAGE_ALLOW_PATTERNS ["*.json"]`).
        patterns: String,
        /// How many files they left out.
        left_out: usize,
    },
    /// The downloaded files are not the ones pinned (`VERIFICATION_DIGEST`, the digest
    /// manifest), or the listing cannot be checked against the pins.
    Verify {
        uri: String,
        /// The file, relative to `DEST_DIR`, when the failure is one file's.
        path: Option<String>,
        reason: String,
    },
    /// An object's key cannot be written under `DEST_DIR` (it would leave it, or collide).
    UnsafeKey {
        uri: String,
        key: String,
        reason: String,
    },
    /// An archive could not be extracted, or holds an entry that would leave `DEST_DIR`.
    Archive { path: PathBuf, reason: String },
    /// `DEST_DIR`, or a folder above it (`file`), is a file.
    NotAFolder { dest: PathBuf, file: PathBuf },
    /// A signal (SIGTERM, SIGINT: the kubelet stopping the pod) stopped the run; the exit
    /// status is 128 + the signal's number.
    Interrupted(i32),
    /// A local file could not be read or written.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The controller: a call to the Kubernetes API or the registry's write side got no answer
    /// (`status` None) or an answer the caller does not handle.
    Call {
        /// "Kubernetes API" or "model registry".
        service: &'static str,
        method: &'static str,
        /// Without query string or userinfo.
        url: String,
        status: Option<u16>,
        reason: String,
    },
}

/// Why a registry lookup failed. Each variant is a failure a user must be able to tell apart.
#[derive(Debug)]
pub enum Lookup {
    /// No answer at all (connection refused, DNS, timeout, TLS), after retries.
    Unreachable { url: String, cause: String },
    /// The request could not be sent, and never will be: the URL is not one (a raw space or
    /// DEL from `MODEL_REGISTRY_BASE_URL`, a URL too long). Not retried.
    Unsendable { url: String, reason: String },
    /// The TLS handshake failed: the certificate is not trusted or not for this host.
    Tls { url: String, cause: String },
    /// The TLS handshake failed and the same host and port answer plain HTTP.
    PlainHttp { url: String, evidence: String },
    /// 401 or 403.
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    /// `findRegisteredModel` said 404.
    ModelNotFound { message: String },
    /// `findModelVersion` said 404.
    VersionNotFound { message: String },
    /// The model has no versions, or only archived ones.
    NoVersions { archived: usize },
    /// The version has no usable artifact of type `model-artifact`.
    NoModelArtifact { seen: usize, skipped: usize },
    /// The newest model artifact has no URI.
    EmptyArtifactUri { artifact_id: String },
    /// The artifact URI names a scheme this program cannot fetch.
    UnsupportedScheme { uri: String },
    /// Any other error status from the registry.
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The registry answered 2xx with something that is not what the API promises.
    Malformed { url: String, reason: String },
}

impl Error {
    /// Builds an `Io` error; used as `.map_err(|e| Error::io("create directory", &dir, e))`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds a `Uri` error: "invalid URI 'URI': REASON".
    pub(crate) fn uri(uri: impl Into<String>, reason: impl Into<String>) -> Error {
        let (uri, reason) = (uri.into(), reason.into());
        Error::Uri { uri, reason }
    }

    /// Builds an `Env` error: "invalid value in VAR: REASON".
    pub(crate) fn env(var: impl Into<String>, reason: impl Into<String>) -> Error {
        let (var, reason) = (var.into(), reason.into());
        Error::Env { var, reason }
    }

    /// The process exit status for this error: 2 for a bad command line, 1 for the rest.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            // As a shell reports a process a signal ended: 143 for SIGTERM, 130 for SIGINT.
            Error::Interrupted(signal) => u8::try_from(128 + signal).unwrap_or(1),
            _ => 1,
        }
    }

    /// A suggestion printed as `hint: ...` before the error line, where one helps.
    pub(crate) fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Resolve {
                why,
                registry_in_uri,
                ..
            } => match **why {
                // Only the default registry comes from MODEL_REGISTRY_BASE_URL; a host or a
                // namespace in the URI already says where the registry is.
                Lookup::Unreachable { .. } if !registry_in_uri => Some(
                    "check MODEL_REGISTRY_BASE_URL, or put the registry's host:port in the URI",
                ),
                Lookup::PlainHttp { .. } => Some(
                    "use http:// for this registry: in MODEL_REGISTRY_BASE_URL, or MODEL_REGISTRY_SCHEME=http when no scheme is written",
                ),
                Lookup::Tls { .. } => Some(
                    "trust the registry's CA with MODEL_REGISTRY_CA_FILE, SSL_CERT_FILE or KServe's CA bundle (CA_BUNDLE_CONFIGMAP_NAME)",
                ),
                Lookup::Unauthorized { .. } => Some(
                    "set MODEL_REGISTRY_TOKEN or MODEL_REGISTRY_TOKEN_FILE to a token the registry accepts",
                ),
                Lookup::UnsupportedScheme { .. } => Some(crate::fetch::SCHEMES_HINT),
                _ => None,
            },
            Error::Refused { .. } => Some(
                "ALLOWED_ARTIFACT_URI_PREFIXES lists the artifact URI prefixes this pod may fetch",
            ),
            Error::Fetch { hint, .. } => *hint,
            Error::Filtered { .. } => Some(
                "the patterns are matched whole against each path below the URI, with * crossing '/': '*.json', not 'config'",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::Uri { uri, reason } => write!(f, "invalid URI {}: {reason}", quote(uri)),
            Error::Env { var, reason } => write!(f, "invalid value in {var}: {reason}"),
            Error::Resolve {
                model,
                version,
                registry,
                why,
                ..
            } => {
                write!(f, "cannot resolve model {}", quote(model))?;
                match version {
                    Some(v) => write!(f, " version {}", quote(v))?,
                    None => write!(f, " (newest version)")?,
                }
                write!(f, " in model registry {}: {why}", clip(registry))
            }
            Error::Refused { uri, reason } => {
                write!(f, "refusing artifact URI {}: {reason}", quote(uri))
            }
            Error::Fetch {
                action,
                url,
                reason,
                ..
            } => write!(f, "cannot {action} {}: {reason}", clip(url)),
            Error::Empty { uri } => {
                write!(f, "nothing to download: no objects under {}", quote(uri))
            }
            Error::Filtered {
                uri,
                patterns,
                left_out,
            } => write!(
                f,
                "nothing to download: {patterns} leave none of the {left_out} file(s) under {}",
                quote(uri)
            ),
            Error::Verify {
                uri,
                path: Some(path),
                reason,
            } => write!(
                f,
                "verification failed for {} of {}: {reason}",
                quote(path),
                quote(uri)
            ),
            Error::Verify {
                uri,
                path: None,
                reason,
            } => write!(f, "verification failed for {}: {reason}", quote(uri)),
            Error::UnsafeKey { uri, key, reason } => {
                write!(
                    f,
                    "refusing object {} of {}: {reason}",
                    quote(key),
                    quote(uri)
                )
            }
            Error::Archive { path, reason } => {
                write!(f, "cannot extract {}: {reason}", quote_path(path))
            }
            Error::NotAFolder { dest, file } if dest == file => {
                write!(f, "DEST_DIR {} is a file, not a folder", quote_path(dest))
            }
            Error::NotAFolder { dest, file } => write!(
                f,
                "DEST_DIR {} cannot be created: {} is a file, not a folder",
                quote_path(dest),
                quote_path(file)
            ),
            Error::Interrupted(signal) => match signal_name(*signal) {
                Some(name) => write!(f, "interrupted by {name}"),
                None => write!(f, "interrupted by signal {signal}"),
            },
            Error::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", quote_path(path)),
            Error::Call {
                service,
                method,
                url,
                status,
                reason,
            } => {
                write!(f, "{service} {method} {}: ", clip(url))?;
                match status {
                    Some(status) if reason.is_empty() => write!(f, "HTTP {status}"),
                    Some(status) => write!(f, "HTTP {status}: {}", clip(reason)),
                    None => f.write_str(reason),
                }
            }
        }
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Unreachable { url, cause } => {
                write!(f, "registry unreachable: GET {}: {cause}", clip(url))
            }
            Lookup::Unsendable { url, reason } => {
                write!(f, "cannot send GET {}: {reason}", clip(url))
            }
            Lookup::Tls { url, cause } => write!(f, "TLS failure: GET {}: {cause}", clip(url)),
            Lookup::PlainHttp { url, evidence } => {
                write!(f, "{PLAIN_HTTP} GET {}: {evidence}", clip(url))
            }
            Lookup::Unauthorized {
                url,
                status,
                message,
            } => write!(
                f,
                "unauthorized (HTTP {status}) on GET {}{}",
                clip(url),
                said(message)
            ),
            Lookup::ModelNotFound { message } => {
                write!(f, "registered model not found{}", said(message))
            }
            Lookup::VersionNotFound { message } => {
                write!(f, "model version not found{}", said(message))
            }
            Lookup::NoVersions { archived: 0 } => write!(f, "the model has no versions"),
            Lookup::NoVersions { archived } => write!(
                f,
                "the model has no live versions ({archived} archived version(s) skipped)"
            ),
            Lookup::NoModelArtifact { seen, skipped } => write!(
                f,
                "the version has no model artifact ({seen} artifact(s) listed, {skipped} of them model artifacts in state DELETED, MARKED_FOR_DELETION or ABANDONED)"
            ),
            Lookup::EmptyArtifactUri { artifact_id } => {
                write!(f, "model artifact {} has an empty URI", clip(artifact_id))
            }
            Lookup::UnsupportedScheme { uri } => write!(
                f,
                "artifact URI {} has a storage scheme this program cannot fetch",
                quote(&redact_url(uri))
            ),
            Lookup::Status {
                url,
                status,
                message,
            } => write!(
                f,
                "registry answered HTTP {status} on GET {}{}",
                clip(url),
                said(message)
            ),
            Lookup::Malformed { url, reason } => {
                write!(
                    f,
                    "malformed registry response to GET {}: {reason}",
                    clip(url)
                )
            }
        }
    }
}

// The signals the face stops on, by name.
fn signal_name(signal: i32) -> Option<&'static str> {
    match signal {
        2 => Some("SIGINT"),
        15 => Some("SIGTERM"),
        _ => None,
    }
}

// The server's own `message` must reach the user; an empty one adds nothing.
fn said(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" (registry said: {})", clip(message))
    }
}

fn quote_path(path: &std::path::Path) -> String {
    quote(&path.to_string_lossy())
}

// `Display` already carries each cause, so `source()` stays empty: a chain printer would
// otherwise show it twice.
impl std::error::Error for Error {}

/// A URL without the text of its query string or fragment, for errors and logs: presigned
/// and SAS query strings are credentials. Each keeps its own mark (`?<redacted>`,
/// `#<redacted>`), so the log still shows what was written.
pub(crate) fn redact_url(url: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, _)) => (rest, "#<redacted>"),
        None => (url, ""),
    };
    let (base, query) = match rest.split_once('?') {
        Some((base, _)) => (base, "?<redacted>"),
        None => (rest, ""),
    };
    format!("{}{query}{fragment}", redact_password(base))
}

// `scheme://user:password@host/...` keeps the user and hides the password; a user alone is
// hidden whole, since that is where a token goes (`https://TOKEN@host/...`).
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}{path}"),
            None => format!("{scheme}://<redacted>@{host}{path}"),
        },
        None => url.to_string(),
    }
}

/// Folds a foreign message onto one line: server messages and library errors may hold
/// newlines, and the last stderr line must say everything by itself. Other control
/// characters (C0, DEL, C1: an ESC from a key or a URI would drive the terminal) are written
/// as `\u{..}`.
pub(crate) fn one_line(s: &str) -> String {
    escape_controls(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The most characters of the error line after `error: `, and of the hint line: several quoted
/// values (a model name, and the URL that holds it again) must not add up to a line no log
/// viewer shows whole.
pub(crate) const MAX_LINE: usize = 400;

/// `line` on one line (`one_line`) of at most `MAX_LINE` characters: a longer one keeps its
/// beginning (what failed, and where) and its end (why), and says how much was left out between.
pub(crate) fn bounded_line(line: &str) -> String {
    let line = one_line(line);
    let count = line.chars().count();
    if count <= MAX_LINE {
        return line;
    }
    const TAIL: usize = MAX_LINE * 2 / 5;
    let marker = |n: usize| format!(" …[{n} characters cut]… ");
    // How many are cut depends on the marker's length, which depends on how many are cut.
    let mut cut = count;
    for _ in 0..2 {
        cut = count - TAIL - (MAX_LINE - TAIL - marker(cut).chars().count());
    }
    let head = count - TAIL - cut;
    let cut = marker(cut);
    let head_end = line.char_indices().nth(head).map_or(line.len(), |(i, _)| i);
    let tail_start = line
        .char_indices()
        .nth(count - TAIL)
        .map_or(line.len(), |(i, _)| i);
    format!("{}{cut}{}", &line[..head_end], &line[tail_start..])
}

/// How many characters of a value an error quotes before cutting it (`quote`, `clip`).
pub(crate) const SHOWN: usize = 120;

/// A user- or server-provided value quoted in an error: `'value'`, control characters
/// escaped, and cut at `SHOWN` characters with its whole length when longer
/// (`'model-registry://aaaa…' (102400 bytes)`): a 100 KB URI must not make a 100 KB line.
pub(crate) fn quote(value: &str) -> String {
    match cut(value) {
        (shown, false) => format!("'{shown}'"),
        (shown, true) => format!("'{shown}…' ({} bytes)", value.len()),
    }
}

/// `quote` without the quotes, for URLs and messages written bare:
/// `https://host/aaaa… (102400 bytes)`.
pub(crate) fn clip(value: &str) -> String {
    match cut(value) {
        (shown, false) => shown,
        (shown, true) => format!("{shown}… ({} bytes)", value.len()),
    }
}

// The first `SHOWN` characters, escaped and with any URL password hidden, and whether anything
// was left out.
fn cut(value: &str) -> (String, bool) {
    let value = redact_password(value);
    let value = value.as_str();
    match value.char_indices().nth(SHOWN) {
        Some((end, _)) => (escape_controls(&value[..end]), true),
        None => (escape_controls(value), false),
    }
}

/// Writes each control character (C0 with tab and newline, DEL, C1) as `\u{..}`, the rest as
/// is: for the error line, every log line and the dry run's plan, since keys, names and URIs
/// come from listings and servers, and an ESC or BEL would drive the terminal.
pub(crate) fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(version: Option<&str>, why: Lookup) -> Error {
        Error::Resolve {
            model: "iris".into(),
            version: version.map(Into::into),
            registry: "http://mr:8080".into(),
            registry_in_uri: false,
            why: Box::new(why),
        }
    }

    #[test]
    fn resolve_errors_name_model_version_and_registry() {
        let message = "no model version found".into();
        let e = resolve(Some("v1"), Lookup::VersionNotFound { message });
        assert_eq!(
            e.to_string(),
            "cannot resolve model 'iris' version 'v1' in model registry http://mr:8080: model version not found (registry said: no model version found)"
        );
        let e = resolve(None, Lookup::NoVersions { archived: 2 });
        assert_eq!(
            e.to_string(),
            "cannot resolve model 'iris' (newest version) in model registry http://mr:8080: the model has no live versions (2 archived version(s) skipped)"
        );
    }

    #[test]
    fn unsupported_scheme_hides_the_query() {
        let uri = "hdfs://nn/models?token=s3cr3t".into();
        let e = resolve(None, Lookup::UnsupportedScheme { uri });
        let text = e.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("'hdfs://nn/models?<redacted>'"), "{text}");
    }

    #[test]
    fn redaction_keeps_the_query_and_fragment_marks() {
        let cases = [
            ("https://h/f?sig=s3cr3t", "https://h/f?<redacted>"),
            ("https://h/f#part", "https://h/f#<redacted>"),
            (
                "https://h/f?sig=s3cr3t#part",
                "https://h/f?<redacted>#<redacted>",
            ),
            // A '?' after the '#' is in the fragment, not a query.
            ("https://h/f#a?b", "https://h/f#<redacted>"),
            ("s3://b/k", "s3://b/k"),
            (
                "https://u:pw@h/f?x=1",
                "https://u:<redacted>@h/f?<redacted>",
            ),
            ("https://u:p@w@h:8/f", "https://u:<redacted>@h:8/f"),
            ("https://tok3n@h/f", "https://<redacted>@h/f"),
            ("https://h/a@b:c", "https://h/a@b:c"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn the_base_url_hint_only_for_the_default_registry() {
        let unreachable = || Lookup::Unreachable {
            url: "http://mr:8080/x".into(),
            cause: "refused".into(),
        };
        assert!(resolve(None, unreachable()).hint().is_some());
        let mut named = resolve(None, unreachable());
        if let Error::Resolve {
            registry_in_uri, ..
        } = &mut named
        {
            *registry_in_uri = true;
        }
        assert_eq!(named.hint(), None);
    }

    #[test]
    fn only_usage_errors_exit_2() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::uri("x", "y").exit_code(), 1);
        assert_eq!(Error::Interrupted(15).exit_code(), 143);
        assert_eq!(Error::Interrupted(2).exit_code(), 130);
        assert_eq!(Error::Interrupted(15).to_string(), "interrupted by SIGTERM");
        assert_eq!(Error::Interrupted(2).to_string(), "interrupted by SIGINT");
    }

    #[test]
    fn one_line_folds_newlines() {
        assert_eq!(one_line("a\n  b\r\nc "), "a b c");
        assert_eq!(
            one_line("k\u{1b}[31m\u{7}\u{7f}\u{9b}"),
            "k\\u{1b}[31m\\u{7}\\u{7f}\\u{9b}"
        );
    }

    #[test]
    fn escape_controls_keeps_spaces_and_escapes_line_ends() {
        assert_eq!(escape_controls("a  b"), "a  b");
        assert_eq!(escape_controls("a\nb\tc\u{85}"), "a\\u{a}b\\u{9}c\\u{85}");
    }

    #[test]
    fn lines_are_bounded_and_keep_both_ends() {
        assert_eq!(bounded_line("short\nline"), "short line");
        let long = format!("what {} why", "x".repeat(10_000));
        let line = bounded_line(&long);
        assert!(line.chars().count() <= MAX_LINE, "{line}");
        assert!(line.starts_with("what xxx"), "{line}");
        assert!(line.ends_with("xxx why"), "{line}");
        assert!(line.contains(" …[9634 characters cut]… "), "{line}");
        let wide = "é".repeat(1000);
        assert!(bounded_line(&wide).chars().count() <= MAX_LINE);
    }

    #[test]
    fn quoted_values_are_cut_with_their_length() {
        assert_eq!(quote("iris"), "'iris'");
        assert_eq!(quote("a\u{1b}b"), "'a\\u{1b}b'");
        let long = format!("model-registry://{}", "é".repeat(50_000));
        let shown = format!("'model-registry://{}…' (100017 bytes)", "é".repeat(103));
        assert_eq!(quote(&long), shown);
        assert_eq!(clip(&long), shown[1..].replace("…'", "…"));
        assert_eq!(clip(&"x".repeat(SHOWN)), "x".repeat(SHOWN));
    }

    #[test]
    fn error_stays_small() {
        assert!(size_of::<Error>() < 128);
    }
}
