//! Digest pinning: the SHA-256 the downloaded files must have. Pure, no I/O: the engine hashes
//! (`crate::digest`) and asks here what each file must hash to.
//!
//! - `VERIFICATION_DIGEST=sha256:<hex>`, in KServe's meaning (its PR #6051): the download is a
//!   single file, or a lone archive before extraction, and hashes to it. A download of more
//!   files cannot be pinned by one digest and fails before a byte is fetched.
//! - `MRSI_DIGEST_MANIFEST` (JSON) or `MRSI_DIGEST_MANIFEST_FILE` (a file holding it):
//!   `{"PATH": "sha256:<hex>", ...}`, paths relative to `DEST_DIR` as planned (after the
//!   patterns). It fails closed: a listed file it does not name, or a name the listing lacks,
//!   fails the plan; a file whose bytes differ fails the run.
//! - `MRSI_SHA256=true` hashes every file without pinning anything, for the result.
//!
//! The digest of a whole download (in the result) is the SHA-256 of its files' lines
//! `PATH\0HEX\n`, sorted by path: the same files with the same bytes give the same digest,
//! whatever the order they arrived in.

use std::collections::{BTreeMap, HashSet};

use crate::digest::{Sha256, from_hex, hex, sha256};
use crate::error::quote;

/// What the downloaded files must hash to, and whether to hash them at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// `VERIFICATION_DIGEST`.
    pub(crate) digest: Option<Sha256>,
    /// The manifest: path → digest.
    pub(crate) manifest: Option<BTreeMap<String, Sha256>>,
    /// `MRSI_SHA256`: hash even when nothing is pinned.
    pub(crate) always: bool,
}

/// The variables, for messages.
pub(crate) const DIGEST_VAR: &str = "VERIFICATION_DIGEST";
pub(crate) const MANIFEST_VAR: &str = "MRSI_DIGEST_MANIFEST";

impl Pins {
    /// Whether something is pinned.
    pub(crate) fn pinned(&self) -> bool {
        self.digest.is_some() || self.manifest.is_some()
    }

    /// Whether every file's SHA-256 is computed.
    pub(crate) fn hashing(&self) -> bool {
        self.pinned() || self.always
    }

    /// The digest each of `paths` (planned, in order) must have, or why this plan cannot
    /// pass the pins: the reason, and the path it is about, if one.
    pub(crate) fn expected(
        &self,
        paths: &[String],
    ) -> Result<Vec<Option<Pin>>, (Option<String>, String)> {
        if self.digest.is_some() && paths.len() != 1 {
            return Err((
                None,
                format!(
                    "{DIGEST_VAR} pins a single file or archive, and the source lists {} files (pin each in {MANIFEST_VAR})",
                    paths.len()
                ),
            ));
        }
        if let Some(manifest) = &self.manifest {
            if let Some(extra) = paths.iter().find(|p| !manifest.contains_key(p.as_str())) {
                let reason = format!("the source lists it, and {MANIFEST_VAR} does not pin it");
                return Err((Some(extra.clone()), reason));
            }
            let listed: HashSet<&str> = paths.iter().map(String::as_str).collect();
            let missing: Vec<&String> = manifest
                .keys()
                .filter(|k| !listed.contains(k.as_str()))
                .collect();
            if let Some(first) = missing.first() {
                let reason = format!(
                    "{MANIFEST_VAR} pins {} file(s) the source does not list, {} among them",
                    missing.len(),
                    quote(first)
                );
                return Err((None, reason));
            }
        }
        Ok(paths
            .iter()
            .map(|p| {
                let from_manifest = self.manifest.as_ref().and_then(|m| m.get(p).copied());
                // Both may be set: the one digest then pins the one file, and so must the
                // manifest's entry; a file that passes one and not the other fails.
                match (self.digest, from_manifest) {
                    (Some(d), Some(m)) if d != m => Some(Pin {
                        digest: m,
                        by: "both VERIFICATION_DIGEST and MRSI_DIGEST_MANIFEST (which disagree)",
                    }),
                    (Some(digest), _) => Some(Pin {
                        digest,
                        by: DIGEST_VAR,
                    }),
                    (None, Some(digest)) => Some(Pin {
                        digest,
                        by: MANIFEST_VAR,
                    }),
                    (None, None) => None,
                }
            })
            .collect())
    }
}

/// What one file must hash to, and which variable says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pin {
    pub(crate) digest: Sha256,
    pub(crate) by: &'static str,
}

impl Pin {
    /// The sentence for bytes that hash to `actual` instead.
    pub(crate) fn mismatch(&self, actual: &Sha256) -> String {
        format!(
            "the bytes' SHA-256 is {}, {} pins sha256:{}",
            hex(actual),
            self.by,
            hex(&self.digest)
        )
    }
}

/// Reads `sha256:<64 hex digits>` (either case).
pub(crate) fn parse_digest(text: &str) -> Result<Sha256, String> {
    let text = text.trim();
    let Some((algorithm, value)) = text.split_once(':') else {
        return Err(format!("{} is not sha256:<64 hex digits>", quote(text)));
    };
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(format!(
            "{} is not a supported algorithm (sha256 is)",
            quote(algorithm)
        ));
    }
    from_hex(value).ok_or_else(|| format!("{} is not 64 hex digits", quote(value)))
}

/// Reads a manifest: a JSON object of path → `sha256:<hex>`.
pub(crate) fn parse_manifest(text: &str) -> Result<BTreeMap<String, Sha256>, String> {
    let map: BTreeMap<String, String> = serde_json::from_str(text)
        .map_err(|e| format!("not a JSON object of \"PATH\": \"sha256:<hex>\" ({e})"))?;
    if map.is_empty() {
        return Err("the manifest pins no file".into());
    }
    map.into_iter()
        .map(|(path, digest)| {
            let digest = parse_digest(&digest).map_err(|e| format!("{}: {e}", quote(&path)))?;
            Ok((path, digest))
        })
        .collect()
}

/// The digest of a whole download: SHA-256 over its `PATH\0HEX\n` lines, sorted by path.
pub(crate) fn of_download(files: &[(String, Sha256)]) -> Sha256 {
    let mut sorted: Vec<&(String, Sha256)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = String::new();
    for (path, digest) in sorted {
        text.push_str(path);
        text.push('\0');
        text.push_str(&hex(digest));
        text.push('\n');
    }
    sha256(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn digests_are_read_strictly() {
        assert_eq!(hex(&parse_digest(A).unwrap()), &A[7..]);
        assert_eq!(
            parse_digest(&A.to_uppercase()).unwrap(),
            parse_digest(A).unwrap()
        );
        assert!(parse_digest("md5:900150983cd24fb0d6963f7d28e17f72").is_err());
        assert!(parse_digest(&A[7..]).is_err());
        assert!(parse_digest(&A[..70]).is_err());
        assert!(parse_digest("sha256:zz").is_err());
    }

    #[test]
    fn one_digest_pins_one_file() {
        let pins = Pins {
            digest: Some(parse_digest(A).unwrap()),
            ..Pins::default()
        };
        let pin = pins.expected(&paths(&["m.tar.gz"])).unwrap()[0].unwrap();
        assert_eq!((Some(pin.digest), pin.by), (pins.digest, DIGEST_VAR));
        assert_eq!(
            pin.mismatch(&sha256(b"")),
            format!(
                "the bytes' SHA-256 is e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, VERIFICATION_DIGEST pins {A}"
            )
        );
        let (path, reason) = pins.expected(&paths(&["a", "b"])).unwrap_err();
        assert_eq!(path, None);
        assert!(reason.contains("the source lists 2 files"), "{reason}");
    }

    #[test]
    fn a_manifest_fails_closed() {
        let manifest = parse_manifest(&format!(r#"{{"a": "{A}", "sub/b": "{A}"}}"#)).unwrap();
        let pins = Pins {
            manifest: Some(manifest),
            ..Pins::default()
        };
        assert!(pins.expected(&paths(&["a", "sub/b"])).is_ok());
        let (path, _) = pins.expected(&paths(&["a", "c", "sub/b"])).unwrap_err();
        assert_eq!(path.as_deref(), Some("c"));
        let (path, reason) = pins.expected(&paths(&["a"])).unwrap_err();
        assert_eq!(path, None);
        assert!(
            reason.contains("1 file(s) the source does not list, 'sub/b'"),
            "{reason}"
        );
        assert!(parse_manifest("{}").is_err());
        assert!(
            parse_manifest(r#"{"a": "sha256:00"}"#)
                .unwrap_err()
                .starts_with("'a': ")
        );
        assert!(parse_manifest("[1]").is_err());
    }

    #[test]
    fn the_download_digest_ignores_arrival_order() {
        let d1 = ("b".to_string(), sha256(b"1"));
        let d2 = ("a".to_string(), sha256(b"2"));
        let x = of_download(&[d1.clone(), d2.clone()]);
        assert_eq!(x, of_download(&[d2.clone(), d1.clone()]));
        let want = sha256(format!("a\0{}\nb\0{}\n", hex(&d2.1), hex(&d1.1)).as_bytes());
        assert_eq!(x, want);
    }
}
