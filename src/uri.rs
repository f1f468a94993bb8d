//! Source URIs: what a `SRC_URI` argument or a registry artifact URI names. Pure, no I/O.
//!
//! `model-registry://[HOST[:PORT]/]MODEL[/VERSION][?namespace=NS]` is parsed into a
//! `RegistryUri`. The grammar is ambiguous for two segments (`host/model` or `model/version`);
//! the parser decides what it can without the network and leaves the rest to the registry
//! stage as `Target::HostOrModel`:
//!
//! - three segments: the first is the host;
//! - two segments: the first is a host when it carries a port (`name:8080`, `[::1]:8080`); it is
//!   the model when it cannot be a host name at all (`my model`, `Iris_v2`) or when `?namespace=`
//!   already names the registry; otherwise the registry stage probes it;
//! - one segment: the model.
//!
//! Segments are percent-decoded after splitting, so `%2F` puts a `/` inside a name. Empty
//! segments, trailing slashes, more than three segments and fragments are errors, never lookups
//! of an empty or truncated name; so is a host's port that is empty, not a number, 0 or above
//! 65535.
//!
//! Every other URI is the storage side's (`fetch`) to classify. The `host[:port]`
//! grammar (`split_port`, `port_text`, `check_port`) and a registry's `BaseUrl` live here too.

use crate::error::{Error, quote};

/// The scheme of registry URIs.
pub(crate) const REGISTRY_SCHEME: &str = "model-registry://";

/// Whether `uri` starts with `model-registry://` (in any case).
pub(crate) fn is_registry_uri(uri: &str) -> bool {
    strip_prefix_ignore_case(uri, REGISTRY_SCHEME).is_some()
}

/// A parsed `model-registry://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryUri {
    /// Which registry, and which model and version in it.
    pub(crate) target: Target,
    /// `?namespace=NS`: the registry is `<service>.<NS>.<domain>:<port>`.
    pub(crate) namespace: Option<String>,
}

/// The path part of a registry URI, as far as it can be decided without the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `MODEL[/VERSION]` at the default (or namespaced) registry.
    Default {
        model: String,
        version: Option<String>,
    },
    /// `HOST/MODEL[/VERSION]`: the registry is named in the URI.
    Host {
        host: String,
        model: String,
        version: Option<String>,
    },
    /// `A/B` where `A` could be a host name: `A` is a registry host (model `B`, newest
    /// version) when a probe of `A` finds a registry, else the model (version `B`).
    HostOrModel { first: String, second: String },
}

impl RegistryUri {
    /// Parses a URI that starts with `model-registry://` (any case).
    pub(crate) fn parse(uri: &str) -> Result<RegistryUri, Error> {
        let bad = |reason: &str| Error::uri(uri, reason);
        let rest = strip_prefix_ignore_case(uri, REGISTRY_SCHEME)
            .ok_or_else(|| bad("not a model-registry:// URI"))?;
        if rest.contains('#') {
            return Err(bad(
                "a '#' is not allowed; write %23 for a '#' inside a name",
            ));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let namespace = match query {
            Some(q) => parse_query(q).map_err(|r| bad(&r))?,
            None => None,
        };

        if path.is_empty() {
            return Err(bad("no model name after model-registry://"));
        }
        if path.ends_with('/') {
            return Err(bad("trailing '/' (an empty model or version name)"));
        }
        let raw: Vec<&str> = path.split('/').collect();
        if raw.len() > 3 {
            return Err(bad(
                "more than three segments; write %2F for a '/' inside a model or version name",
            ));
        }
        if raw.iter().any(|s| s.is_empty()) {
            return Err(bad("empty segment between '/'"));
        }
        let seg = |i: usize| percent_decode(raw[i]).map_err(|r| bad(&r));

        let target = match raw.len() {
            1 => Target::Default {
                model: seg(0)?,
                version: None,
            },
            3 => {
                // `user:password@host` would put a secret in every log line and error that
                // names the registry; the registry's credentials come from the environment.
                if raw[0].contains('@') {
                    return Err(bad(
                        "a registry host takes no user or password (set MODEL_REGISTRY_TOKEN)",
                    ));
                }
                check_port(raw[0]).map_err(|r| bad(&r))?;
                Target::Host {
                    host: raw[0].to_string(),
                    model: seg(1)?,
                    version: Some(seg(2)?),
                }
            }
            _ => {
                let first = raw[0];
                // Digits after the colon make it a host (`llama:7b` stays a model name), so
                // `h:0` and `h:99999` are refused rather than looked up as models.
                let digits = port_text(first)
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                if digits {
                    check_port(first).map_err(|r| bad(&r))?;
                    Target::Host {
                        host: first.to_string(),
                        model: seg(1)?,
                        version: None,
                    }
                } else if namespace.is_some() || !could_be_host(first) {
                    Target::Default {
                        model: seg(0)?,
                        version: Some(seg(1)?),
                    }
                } else {
                    Target::HostOrModel {
                        first: first.to_string(),
                        second: seg(1)?,
                    }
                }
            }
        };
        Ok(RegistryUri { target, namespace })
    }
}

// `?namespace=NS` is the only parameter; others are ignored as upstream does (the caller
// warns about them: `unknown_parameters`).
fn parse_query(query: &str) -> Result<Option<String>, String> {
    let mut namespace = None;
    for (key, value) in query_pairs(query) {
        if key != "namespace" {
            continue;
        }
        let value = percent_decode(value)?;
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "namespace {} must match ^[a-zA-Z0-9_-]+$",
                quote(&value)
            ));
        }
        if namespace.replace(value).is_some() {
            return Err("namespace given more than once".into());
        }
    }
    Ok(namespace)
}

/// The query parameters of a `model-registry://` URI that it ignores (all but `namespace`).
pub(crate) fn unknown_parameters(uri: &str) -> Vec<&str> {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    query_pairs(query)
        .map(|(key, _)| key)
        .filter(|key| *key != "namespace")
        .collect()
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

// A segment that could be a DNS host name (RFC 1123 letters, digits, '-' and '.'), so worth a
// probe. Anything else is a model name.
fn could_be_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Decodes `%XX` escapes; a malformed escape or bytes that are not UTF-8 are errors.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in {}", quote(s)))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{} does not decode to UTF-8", quote(s)))
}

/// Encodes a string for a URL query value or path segment: everything but RFC 3986
/// unreserved characters is escaped.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host of an absolute URL (`scheme://host...`), or "" when it has no `://`.
pub(crate) fn url_host(url: &str) -> &str {
    url.split_once("://").map_or("", |(_, rest)| host_of(rest))
}

/// The host part of the text after `scheme://` (no user info, no port).
pub(crate) fn host_of(after_scheme: &str) -> &str {
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    split_port(authority).0
}

/// The registry's API path below the base URL.
pub(crate) const API_PREFIX: &str = "/api/model_registry/v1alpha3";

/// A registry base URL: scheme, `host[:port]` and an optional path prefix (a gateway's `/mr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    /// `http` or `https`.
    pub(crate) scheme: String,
    /// `host`, `host:port` or `[v6]:port`, as written.
    pub(crate) authority: String,
    /// Empty, or a path starting with `/` and not ending with one.
    pub(crate) path_prefix: String,
}

impl BaseUrl {
    /// Parses `host[:port]` (taking `default_scheme`) or `scheme://host[:port][/prefix]`.
    pub(crate) fn parse(value: &str, default_scheme: &str) -> Result<BaseUrl, String> {
        let (scheme, rest) = match value.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => (default_scheme.to_string(), value),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme {} is not http or https", quote(&scheme)));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("{} names no host", quote(value)));
        }
        if authority.contains(['?', '#', '@', ' ']) {
            return Err(format!("{} is not host[:port] or a URL", quote(value)));
        }
        check_port(authority)?;
        Ok(BaseUrl {
            scheme,
            authority: authority.to_string(),
            path_prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The port written in the authority, if any.
    pub(crate) fn port(&self) -> Option<u16> {
        split_port(&self.authority).1
    }

    /// `scheme://authority/prefix`, the registry's URL as shown to users.
    pub(crate) fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path_prefix)
    }

    /// The URL of an API path such as `/registered_model?name=iris`.
    pub(crate) fn api(&self, path_and_query: &str) -> String {
        format!("{}{API_PREFIX}{path_and_query}", self.url())
    }
}

/// Splits `host:port` or `[v6]:port` into host and a numeric port; anything else has no port.
pub(crate) fn split_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// The port text of `host:port` or `[v6]:port` as written (maybe empty or not a number), or
/// `None` when there is no port. A bare IPv6 address (`::1`) has no port.
pub(crate) fn port_text(authority: &str) -> Option<&str> {
    if authority.starts_with('[') {
        return authority.split_once("]:").map(|(_, port)| port);
    }
    match authority.split_once(':') {
        Some((_, port)) if !port.contains(':') => Some(port),
        _ => None,
    }
}

/// Refuses a port that is written but unusable (empty, not a number, 0, above 65535): without
/// this check `host:xyz` fails much later as a DNS error that does not mention the port.
pub(crate) fn check_port(authority: &str) -> Result<(), String> {
    let Some(port) = port_text(authority) else {
        return Ok(());
    };
    if port.is_empty() {
        return Err(format!("the port in {} is empty", quote(authority)));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the port {} in {} is not a number",
            quote(port),
            quote(authority)
        ));
    }
    match port.parse::<u32>() {
        Ok(1..=65535) => Ok(()),
        _ => Err(format!(
            "the port {port} in {} is not between 1 and 65535",
            quote(authority)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(model: &str, version: Option<&str>) -> Target {
        Target::Default {
            model: model.into(),
            version: version.map(Into::into),
        }
    }
    fn h(host: &str, model: &str, version: Option<&str>) -> Target {
        Target::Host {
            host: host.into(),
            model: model.into(),
            version: version.map(Into::into),
        }
    }
    fn probe(first: &str, second: &str) -> Target {
        Target::HostOrModel {
            first: first.into(),
            second: second.into(),
        }
    }

    // Edge cases of upstream's URI grammar (kubeflow/hub cmd/csi), each with our decided
    // outcome. Err(text) is the reason in the error message.
    #[test]
    fn upstream_edge_case_table() {
        let ns = |t: Target, n: &str| {
            Ok(RegistryUri {
                target: t,
                namespace: Some(n.to_string()),
            })
        };
        let plain = |t: Target| {
            Ok(RegistryUri {
                target: t,
                namespace: None,
            })
        };
        let trailing = "trailing '/' (an empty model or version name)";
        let cases: Vec<(&str, Result<RegistryUri, &str>)> = vec![
            ("iris", plain(d("iris", None))),
            // No port: the registry stage probes `iris` (bounded) and falls back to model/version.
            ("iris/v1", plain(probe("iris", "v1"))),
            // A port makes it a host: no probe, no misreading when the host is down or says 401.
            ("h:9090/iris", plain(h("h:9090", "iris", None))),
            ("h:9090/iris/v1", plain(h("h:9090", "iris", Some("v1")))),
            // Upstream takes version 'v1/rc/2'; we ask for %2F instead of guessing.
            (
                "h/iris/v1/rc/2",
                Err("more than three segments; write %2F for a '/' inside a model or version name"),
            ),
            ("h/iris/v1%2Frc%2F2", plain(h("h", "iris", Some("v1/rc/2")))),
            // Three segments: the first is the host, as the grammar says.
            ("iris/v1/extra", plain(h("iris", "v1", Some("extra")))),
            ("iris/v1/", Err(trailing)),
            ("iris/", Err(trailing)),
            ("", Err("no model name after model-registry://")),
            ("/iris/v1", Err("empty segment between '/'")),
            ("iris//v1", Err("empty segment between '/'")),
            (
                "iris/v1?namespace=team-a",
                ns(d("iris", Some("v1")), "team-a"),
            ),
            // Upstream looks up a model named 'h:8080'; the registry stage drops the host instead.
            (
                "h:8080/iris/v1?namespace=team-a",
                ns(h("h:8080", "iris", Some("v1")), "team-a"),
            ),
            // Upstream silently ignores a bad namespace and uses the base registry.
            (
                "h/iris/v1?namespace=a.b",
                Err("namespace 'a.b' must match ^[a-zA-Z0-9_-]+$"),
            ),
            // Cannot be a host name: no probe.
            ("my model/v1", plain(d("my model", Some("v1")))),
            // Upstream sends the literal 'my%20model'; we decode.
            ("my%20model/v1", plain(d("my model", Some("v1")))),
            // A port must be a usable number wherever the first segment is a host.
            (
                "h:xyz/iris/v1",
                Err("the port 'xyz' in 'h:xyz' is not a number"),
            ),
            ("h:/iris/v1", Err("the port in 'h:' is empty")),
            (
                "h:0/iris",
                Err("the port 0 in 'h:0' is not between 1 and 65535"),
            ),
            (
                "h:65536/iris",
                Err("the port 65536 in 'h:65536' is not between 1 and 65535"),
            ),
            // Two segments without digits after the colon: a model name, as before.
            ("llama:7b/v1", plain(d("llama:7b", Some("v1")))),
            (
                "iris/v1#x",
                Err("a '#' is not allowed; write %23 for a '#' inside a name"),
            ),
            ("iris/v1?foo=bar", plain(probe("iris", "v1"))),
        ];
        for (rest, want) in cases {
            let uri = &format!("{REGISTRY_SCHEME}{rest}");
            let got = RegistryUri::parse(uri).map_err(|e| match e {
                Error::Uri { reason, .. } => reason,
                other => panic!("{uri}: unexpected error kind {other:?}"),
            });
            assert_eq!(got, want.map_err(String::from), "{uri}");
        }
    }

    // The upstream unit test TestParseModelVersion (kubeflow/hub cmd/csi): model and version
    // for its seven success cases, and an error for its five failure cases.
    #[test]
    fn upstream_unit_cases() {
        let ok = [
            ("iris", "iris", None),
            ("iris/v1", "iris", Some("v1")),
            ("localhost:8080/iris", "iris", None),
            ("localhost:8080/iris/v1", "iris", Some("v1")),
            ("iris?namespace=profile-alpha", "iris", None),
            ("iris/v1?namespace=profile-alpha", "iris", Some("v1")),
            (
                "localhost:8080/iris/v1?namespace=profile-alpha",
                "iris",
                Some("v1"),
            ),
        ];
        for (rest, model, version) in ok {
            let uri = &format!("{REGISTRY_SCHEME}{rest}");
            let parsed = RegistryUri::parse(uri).unwrap();
            let (m, v) = match parsed.target {
                Target::Default { model, version } | Target::Host { model, version, .. } => {
                    (model, version)
                }
                // The probe fails for `iris` in upstream's test: model/version.
                Target::HostOrModel { first, second } => (first, Some(second)),
            };
            assert_eq!((m.as_str(), v.as_deref()), (model, version), "{uri}");
        }
        for rest in [
            "",
            "/iris",
            "localhost:8080/",
            "iris/",
            "localhost:8080/iris/",
        ] {
            let uri = &format!("{REGISTRY_SCHEME}{rest}");
            assert!(RegistryUri::parse(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn ipv6_host_with_port() {
        let parsed = RegistryUri::parse("model-registry://[::1]:8080/iris").unwrap();
        assert_eq!(parsed.target, h("[::1]:8080", "iris", None));
    }

    #[test]
    fn names_not_hosts_are_not_probed() {
        let parsed = RegistryUri::parse("model-registry://Iris_v2/v1").unwrap();
        assert_eq!(parsed.target, d("Iris_v2", Some("v1")));
    }

    #[test]
    fn unknown_parameters_are_all_but_namespace() {
        let uri = "model-registry://iris?namespace=a&x=1&y";
        assert_eq!(unknown_parameters(uri), ["x", "y"]);
        assert!(unknown_parameters("model-registry://iris").is_empty());
    }

    #[test]
    fn bad_escapes_are_errors() {
        for uri in [
            "model-registry://iris%zz",
            "model-registry://iris%2",
            "model-registry://%FF",
        ] {
            assert!(RegistryUri::parse(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn percent_round_trip() {
        let name = "my model/v1 ü?&=";
        assert_eq!(percent_decode(&percent_encode(name)).unwrap(), name);
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn host_of_strips_userinfo_and_port() {
        assert_eq!(host_of("user:pw@h.example:9000/x"), "h.example");
        assert_eq!(host_of("[fd00:ec2::254]/x"), "fd00:ec2::254");
        assert_eq!(host_of("h?x=1"), "h");
    }

    #[test]
    fn base_url_forms() {
        let cases = [
            ("mr:8080", "http", "http://mr:8080", Some(8080)),
            ("mr", "https", "https://mr", None),
            (
                "https://gw.example.com/mr/",
                "http",
                "https://gw.example.com/mr",
                None,
            ),
            (
                "HTTP://[::1]:9000",
                "https",
                "http://[::1]:9000",
                Some(9000),
            ),
        ];
        for (value, scheme, url, port) in cases {
            let b = BaseUrl::parse(value, scheme).unwrap();
            assert_eq!(b.url(), url, "{value}");
            assert_eq!(b.port(), port, "{value}");
        }
        let b = BaseUrl::parse("https://gw.example.com/mr", "http").unwrap();
        assert_eq!(
            b.api("/registered_model?name=iris"),
            "https://gw.example.com/mr/api/model_registry/v1alpha3/registered_model?name=iris"
        );
        assert!(BaseUrl::parse("ftp://x", "http").is_err());
        for (value, reason) in [
            ("h:xyz", "the port 'xyz' in 'h:xyz' is not a number"),
            (
                "https://h:8o8o/mr",
                "the port '8o8o' in 'h:8o8o' is not a number",
            ),
            ("h:", "the port in 'h:' is empty"),
            ("h:0", "the port 0 in 'h:0' is not between 1 and 65535"),
            (
                "h:65536",
                "the port 65536 in 'h:65536' is not between 1 and 65535",
            ),
            ("[::1]:+80", "the port '+80' in '[::1]:+80' is not a number"),
        ] {
            assert_eq!(BaseUrl::parse(value, "http"), Err(reason.into()), "{value}");
        }
        assert!(BaseUrl::parse("h:65535", "http").is_ok());
        assert!(BaseUrl::parse("https:///mr", "http").is_err());
    }

    #[test]
    fn split_port_cases() {
        assert_eq!(split_port("h:9090"), ("h", Some(9090)));
        assert_eq!(split_port("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(split_port("[::1]"), ("::1", None));
        assert_eq!(split_port("h"), ("h", None));
        assert_eq!(split_port("h:abc"), ("h:abc", None));
        assert_eq!(split_port("::1"), ("::1", None));
    }
}
