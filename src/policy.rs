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
use crate::settings::canonical;
use crate::uri::{host_of, percent_decode};

/// Checks an artifact URI; the error names its scheme and host, never its query.
pub(crate) fn check(uri: &str, allowed_prefixes: Option<&[String]>) -> Result<(), Error> {
    let (scheme, host) = match uri.split_once("://") {
        // An hf:// URI names a repository on HF_ENDPOINT, not a host: its owner is no address.
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("hf") => (scheme, ""),
        Some((scheme, rest)) => (scheme, host_of(rest)),
        None => ("", ""),
    };
    let shown = if scheme.is_empty() {
        "a local path".to_string()
    } else if host.is_empty() {
        redact_url(uri)
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
    parse_ip(&host).is_some_and(is_blocked_ip)
}

/// Whether an address is link-local or a cloud metadata endpoint: `169.254.0.0/16`,
/// `fe80::/10`, `fd00:ec2::254`, and IPv4 ones written as IPv6 (`::ffff:a.b.c.d`,
/// `::a.b.c.d`).
pub(crate) fn is_blocked_ip(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// A host as the system resolver reads it when it is an address: IPv6 (bracketed or not),
/// and IPv4 as `inet_aton` does: one to four parts, each decimal, octal (`0251`) or hex
/// (`0xa9`), the last part filling the bytes left (`169.254.43518`, `127.1`, `2852039166`).
pub(crate) fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(v6) = bare {
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<u64> = host.split('.').map(inet_aton_part).collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&p| p > 0xff) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, &p)| acc | p << (24 - 8 * i as u32));
    Some(IpAddr::V4(Ipv4Addr::from((high | last) as u32)))
}

// One part of an `inet_aton` address: `0x..` hex, `0..` octal, else decimal.
fn inet_aton_part(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() && radix == 16 {
        return Some(0);
    }
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|&n| n <= u32::MAX as u64)
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
            "http://0251.0376.0251.0376/latest",
            "http://169.254.43518/latest",
            "http://0xa9.0xfe.0xa9.0xfe/latest",
            "http://0xA9.254.0xa9fe/latest",
            "http://[::169.254.169.254]/latest",
            "http://[::ffff:a9fe:a9fe]/latest",
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
    fn numeric_hosts_are_read_as_the_system_resolver_reads_them() {
        for (host, ip) in [
            ("0177.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("169.254.43518", "169.254.169.254"),
            ("0251.0376.0251.0376", "169.254.169.254"),
            ("[::1]", "::1"),
        ] {
            assert_eq!(parse_ip(host), Some(ip.parse().unwrap()), "{host}");
        }
        for host in [
            "example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "08.1.1.1",
            "1.2.3.256",
        ] {
            assert_eq!(parse_ip(host), None, "{host}");
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
    fn an_hf_owner_is_no_host() {
        // `metadata` is a blocked host name, and a fine Hub owner.
        assert!(check("hf://metadata/model:main", None).is_ok());
        let list = vec!["hf://my-org/".to_string()];
        assert!(check("hf://my-org/llm:v1", Some(&list)).is_ok());
        let err = check("hf://other/llm", Some(&list)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing artifact URI 'hf://other/llm': it starts with none of ALLOWED_ARTIFACT_URI_PREFIXES (hf://my-org/)"
        );
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
