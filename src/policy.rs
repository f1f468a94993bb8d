//! The policy an artifact URI from the registry must pass before anything is fetched. Pure.
//!
//! The registry is input: a poisoned entry must not make the init container fetch node
//! credentials from a cloud metadata endpoint, whatever `ALLOWED_ARTIFACT_URI_PREFIXES` says.
//! Blocked always: IPv4 link-local `169.254.0.0/16` (in dotted, integer or hex form, and
//! IPv4-mapped IPv6), IPv6 link-local `fe80::/10`, `fd00:ec2::254`, and
//! `metadata.google.internal`. With the allow list set, the URI must also start with one of its
//! prefixes (a plain string prefix, as upstream reads it). A local artifact (`file://` or a
//! path) is refused unless the allow list is set and allows it, and never holds `..`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, redact_url};
use crate::uri::{host_of, percent_decode};

/// Checks an artifact URI; the error names its scheme and host, never its query.
pub(crate) fn check(uri: &str, allowed_prefixes: Option<&[String]>) -> Result<(), Error> {
    let (scheme, host) = match uri.split_once("://") {
        Some((scheme, rest)) => (scheme, host_of(rest)),
        None => ("", ""),
    };
    let shown = if scheme.is_empty() {
        "a local path".to_string()
    } else {
        format!("{scheme}://{host}")
    };
    if is_blocked_host(host) {
        return Err(Error::Refused {
            uri: shown,
            reason: "it points at a link-local or cloud metadata address".into(),
        });
    }
    // The pod's own files (`/var/run/secrets/...`) are not the registry's to name: a local
    // artifact needs the allow list to say so, and may not climb out of what it allows.
    if scheme.is_empty() || scheme.eq_ignore_ascii_case("file") {
        let shown = redact_url(uri);
        let allowed = allowed_prefixes
            .is_some_and(|prefixes| prefixes.iter().any(|p| uri.starts_with(p.as_str())));
        if !allowed {
            return Err(Error::Refused {
                uri: shown,
                reason: "the registry may not name a local file unless ALLOWED_ARTIFACT_URI_PREFIXES allows it".into(),
            });
        }
        let decoded = percent_decode(uri).unwrap_or_else(|_| uri.to_string());
        if decoded.split(['/', '\\']).any(|segment| segment == "..") {
            return Err(Error::Refused {
                uri: shown,
                reason: "a local path from the registry may not contain '..'".into(),
            });
        }
    }
    if let Some(prefixes) = allowed_prefixes
        && !prefixes.iter().any(|p| uri.starts_with(p.as_str()))
    {
        return Err(Error::Refused {
            uri: shown,
            reason: format!(
                "it starts with none of ALLOWED_ARTIFACT_URI_PREFIXES ({})",
                prefixes.join(", ")
            ),
        });
    }
    Ok(())
}

/// Whether a host is a metadata or link-local address in any spelling.
pub(crate) fn is_blocked_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "metadata.google.internal" || host == "metadata" {
        return true;
    }
    match parse_ip(&host) {
        Some(IpAddr::V4(v4)) => v4.is_link_local(),
        Some(IpAddr::V6(v6)) => {
            let seg = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_link_local();
            }
            // fe80::/10, and AWS's IPv6 metadata endpoint.
            (seg[0] & 0xffc0) == 0xfe80 || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
        None => false,
    }
}

// IP literals as URL parsers (and so HTTP clients) read them: dotted quads, a single integer
// (`2852039166`), hex (`0xa9fea9fe`), and IPv6.
fn parse_ip(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let n = match host.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => host.parse::<u32>().ok()?,
    };
    Some(IpAddr::V4(Ipv4Addr::from(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_are_always_refused() {
        let allow_all = vec!["http".to_string(), "s3".to_string()];
        for uri in [
            "http://169.254.169.254/latest/meta-data/iam/",
            "http://169.254.1.2:8080/x",
            "http://[fd00:ec2::254]/latest",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./x",
            "http://2852039166/latest",
            "http://0xa9fea9fe/latest",
            "http://[::ffff:169.254.169.254]/x",
            "http://[fe80::1]/x",
            "https://user:pw@169.254.169.254/x",
        ] {
            let err = check(uri, Some(&allow_all)).unwrap_err();
            assert!(
                err.to_string().contains("link-local or cloud metadata"),
                "{uri}: {err}"
            );
            assert!(check(uri, None).is_err(), "{uri}");
        }
    }

    #[test]
    fn ordinary_hosts_pass_without_a_list() {
        for uri in [
            "s3://models/iris",
            "http://169.253.0.1/x",
            "https://example.com/m.joblib",
        ] {
            assert!(check(uri, None).is_ok(), "{uri}");
        }
    }

    #[test]
    fn local_artifacts_need_the_allow_list_and_no_dot_dot() {
        let list = vec!["file:///models/".to_string()];
        assert!(check("file:///models/iris", Some(&list)).is_ok());
        for uri in [
            "file:///var/run/secrets/kubernetes.io/serviceaccount/",
            "FILE:///models/iris",
            "/models/iris",
        ] {
            assert!(check(uri, None).is_err(), "{uri}");
            assert!(check(uri, Some(&list)).is_err(), "{uri}");
        }
        for uri in ["file:///models/../etc", "file:///models/%2e%2E/etc"] {
            let err = check(uri, Some(&list)).unwrap_err().to_string();
            assert!(err.ends_with("may not contain '..'"), "{err}");
        }
    }

    #[test]
    fn allow_list_is_a_prefix_match_and_the_error_hides_the_query() {
        let list = vec!["s3://models/".to_string(), "gs://team-a/".to_string()];
        assert!(check("s3://models/iris/v1", Some(&list)).is_ok());
        let err = check("https://evil.example.com/m?sig=s3cr3t", Some(&list)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing artifact URI 'https://evil.example.com': it starts with none of ALLOWED_ARTIFACT_URI_PREFIXES (s3://models/, gs://team-a/)"
        );
        // A sibling bucket that merely shares the text before the '/' is not allowed.
        assert!(check("s3://models-other/x", Some(&list)).is_err());
    }
}
