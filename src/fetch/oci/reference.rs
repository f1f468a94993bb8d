//! The `oci://REGISTRY[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]` grammar (pure): the
//! distribution spec's rules for repository names, tags and digests, so that nothing a URI
//! holds can change the shape of a request path.

use crate::digest::{Sha256, from_hex};
use crate::error::{Error, quote};

/// The tag taken when a reference names neither a tag nor a digest.
pub(crate) const DEFAULT_TAG: &str = "latest";

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// `host[:port]`, lowercased.
    pub(crate) registry: String,
    /// `a/b/c`: the repository path.
    pub(crate) repository: String,
    /// The tag written (`latest` when neither a tag nor a digest is).
    pub(crate) tag: Option<String>,
    /// The manifest digest written: it wins over the tag.
    pub(crate) digest: Option<Sha256>,
}

impl Reference {
    pub(crate) fn parse(uri: &str) -> Result<Reference, Error> {
        let invalid = |reason: String| Err(Error::uri(uri, reason));
        let bad = |reason: String| Error::uri(uri, reason);
        let rest = match uri.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("oci") => rest,
            _ => return invalid("not an oci:// URI".into()),
        };
        let Some((registry, rest)) = rest.split_once('/') else {
            return invalid("expected oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]".into());
        };
        check_registry(registry).map_err(bad)?;
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(parse_digest(digest).map_err(bad)?)),
            None => (rest, None),
        };
        let last = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last..].split_once(':') {
            Some((_, tag)) => (&name[..name.len() - tag.len() - 1], Some(tag)),
            None => (name, None),
        };
        check_repository(repository).map_err(bad)?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(bad)?;
        }
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Reference {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What the manifest is asked for by: the digest when written, else the tag.
    pub(crate) fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("sha256:{}", crate::digest::hex(d)),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.into(),
        }
    }
}

/// `sha256:<64 hex>`; any other algorithm is named in the refusal.
pub(crate) fn parse_digest(text: &str) -> Result<Sha256, String> {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return Err(format!("the digest {} has no algorithm", quote(text)));
    };
    if algorithm != "sha256" {
        return Err(format!(
            "the digest algorithm {} is not supported (only sha256)",
            quote(algorithm)
        ));
    }
    if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "the digest {} is not 64 lowercase hex digits",
            quote(text)
        ));
    }
    from_hex(hex)
        .ok_or_else(|| format!("the digest {} is not 64 lowercase hex digits", quote(text)))
}

// A host name or IPv4 address, and an optional port.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = registry.split_once(':').unwrap_or((registry, ""));
    let host_ok = !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !host_ok {
        return Err(format!(
            "the registry {} is not a host name",
            quote(registry)
        ));
    }
    if registry.contains(':')
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "the registry {} has no valid port",
            quote(registry)
        ));
    }
    Ok(())
}

// Path components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository is empty".into());
    }
    if repository.len() > 255 {
        return Err("the repository is longer than 255 characters".into());
    }
    for component in repository.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = !bytes.is_empty()
            && alnum(bytes[0])
            && alnum(bytes[bytes.len() - 1])
            && bytes
                .iter()
                .all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
            && !component.contains("..")
            && !component.contains("___")
            && !component.contains("._")
            && !component.contains("_.")
            && !component.contains(".-")
            && !component.contains("-.")
            && !component.contains("_-")
            && !component.contains("-_");
        if !ok {
            return Err(format!(
                "the repository component {} is not lowercase letters and digits joined by '.', '_', '__' or '-'",
                quote(component)
            ));
        }
    }
    Ok(())
}

// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    match ok {
        true => Ok(()),
        false => Err(format!("the tag {} is not a valid tag", quote(tag))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5b0b0a0e2a6c9f8e3e8b1e6f1d7c6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f";

    #[test]
    fn references() {
        let r = Reference::parse("oci://Reg.example:5000/a/b-c").unwrap();
        assert_eq!(r.registry, "reg.example:5000");
        assert_eq!(r.repository, "a/b-c");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.manifest_ref(), "latest");
        let r = Reference::parse("oci://localhost/m:v1.0").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("m", Some("v1.0"))
        );
        let r = Reference::parse(&format!("oci://h/m@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), format!("sha256:{HEX}"));
        let r = Reference::parse(&format!("oci://h/m:t@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.manifest_ref(), format!("sha256:{HEX}"), "the digest wins");
        let line = |uri: &str| Reference::parse(uri).unwrap_err().to_string();
        assert_eq!(
            line("oci://h"),
            "invalid URI 'oci://h': expected oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]"
        );
        assert_eq!(
            line("oci://h/m@sha512:00"),
            "invalid URI 'oci://h/m@sha512:00': the digest algorithm 'sha512' is not supported (only sha256)"
        );
        assert!(line("oci://h/M").contains("component 'M'"));
        assert!(line("oci://h/a/../b").contains("component '..'"));
        assert!(line("oci://h/a//b").contains("component ''"));
        assert!(line("oci://h/m:").contains("tag ''"));
        assert!(line("oci://h/m:-x").contains("tag '-x'"));
        assert!(line("oci://h/m?x=1").contains("'m?x=1'"));
        assert!(line("oci://u@h/m").contains("registry 'u@h'"));
        assert!(line("oci://h:x/m").contains("no valid port"));
        assert!(line("oci://h/m@sha256:ABC").contains("64 lowercase hex"));
        assert!(line("oci:///m").contains("not a host name"));
    }
}
