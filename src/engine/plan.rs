//! What lands where: from a listing to the files to write under `DEST_DIR`. Pure, no I/O.
//!
//! The rules (README, "What lands in `DEST_DIR`"):
//! - the prefix ends at a `/` boundary: prefix `model` takes the object `model` (saved under its
//!   basename) and everything under `model/`, never `model2/...` or `model.bak`; a prefix that
//!   ends in `/` takes what is below it; the empty prefix (a bucket root) takes everything;
//! - keys ending in `/` are folder markers and are skipped; zero-byte objects are real files;
//! - a key whose path would leave `DEST_DIR` (`..`, absolute, NUL, `.` or empty segments) fails
//!   the whole plan, so nothing is written before the run fails;
//! - two keys that would land on the same path, or a file where another key needs a folder, fail
//!   the plan too: one would silently overwrite the other.

use std::path::{Path, PathBuf};

use crate::error::quote;
use crate::fetch::Object;

/// One file to write: where it comes from and where it goes. Kept small (72 bytes, and the key,
/// ETag and a listed SHA-256 on the heap): a run holds one per file, and a model may have
/// 200,000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The object's key in the source.
    pub(crate) key: Box<str>,
    // Where the path relative to `DEST_DIR` starts in `key`: it is always a suffix of the key,
    // so it is not stored twice.
    path_start: u32,
    // Size in bytes (`size()`), when the source knows it (`sized`): apart, so the flag packs
    // beside `ranges` instead of padding an `Option<u64>` to 16 bytes.
    size: u64,
    sized: bool,
    /// Checksum or ETag, when the source gives one; a resumed file must still match it.
    pub(crate) etag: Option<Box<str>>,
    /// The source can read byte ranges of this object (parts, resume).
    pub(crate) ranges: bool,
    /// The MD5 of the bytes, when the source knows it.
    pub(crate) md5: Option<[u8; 16]>,
    /// The SHA-256 of the bytes, when the source knows it (the Hub's LFS files): boxed, as
    /// few files have one and the rest would carry 33 bytes for nothing.
    pub(crate) sha256: Option<Box<[u8; 32]>>,
}

impl Planned {
    /// Size in bytes, when the source knows it.
    pub(crate) fn size(&self) -> Option<u64> {
        self.sized.then_some(self.size)
    }

    /// Where it goes, relative to `DEST_DIR`; always a safe relative path.
    pub(crate) fn path(&self) -> &Path {
        Path::new(self.relative())
    }

    fn relative(&self) -> &str {
        &self.key[self.path_start as usize..]
    }
}

/// Why a listing cannot be planned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlanError {
    /// The offending key.
    pub(crate) key: String,
    /// Why, as a phrase: "a '..' segment would leave DEST_DIR".
    pub(crate) reason: String,
}

/// Maps a listing of everything whose key starts with `prefix` to the files to write, sorted
/// by path.
pub(crate) fn plan(prefix: &str, objects: Vec<Object>) -> Result<Vec<Planned>, PlanError> {
    let mut planned = Vec::with_capacity(objects.len());
    for object in objects {
        let Some(relative) = relative_key(prefix, &object.key) else {
            continue;
        };
        if relative.is_empty() || relative.ends_with('/') {
            continue; // a folder marker
        }
        check_relative(relative).map_err(|reason| PlanError {
            key: object.key.clone(),
            reason,
        })?;
        // A key longer than 4 GiB cannot come in a listing page (16 MiB at most).
        let Ok(path_start) = u32::try_from(object.key.len() - relative.len()) else {
            let reason = "the key is longer than 4 GiB".to_string();
            return Err(PlanError {
                key: object.key,
                reason,
            });
        };
        planned.push(Planned {
            key: object.key.into_boxed_str(),
            path_start,
            size: object.size.unwrap_or(0),
            sized: object.size.is_some(),
            etag: object.etag.map(String::into_boxed_str),
            ranges: object.ranges,
            md5: object.md5,
            sha256: object.sha256,
        });
    }
    // Stable: of two keys on one path, the one listed first stays first and the other is named.
    planned.sort_by(|a, b| a.relative().cmp(b.relative()));
    if let Some(pair) = planned
        .windows(2)
        .find(|pair| pair[0].relative() == pair[1].relative())
    {
        return Err(PlanError {
            key: pair[1].key.to_string(),
            reason: format!("it would land on the same path as {}", quote(&pair[0].key)),
        });
    }
    // A file at `a` and another at `a/b`: `a` cannot be both.
    let find = |path: &str| {
        let found = planned.binary_search_by(|p| p.relative().cmp(path));
        found.ok().map(|i| &planned[i])
    };
    for p in &planned {
        let path = p.relative();
        for (i, _) in path.match_indices('/') {
            if let Some(file) = find(&path[..i]) {
                return Err(PlanError {
                    key: p.key.to_string(),
                    reason: format!(
                        "it needs a folder where the object {} is a file",
                        quote(&file.key)
                    ),
                });
            }
        }
    }
    Ok(planned)
}

/// The part of `key` that names a path below `prefix`, or `None` when the key is not under the
/// prefix at a `/` boundary (a sibling such as `model2/x` for prefix `model`).
pub(crate) fn relative_key<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    if prefix.is_empty() {
        return Some(key);
    }
    if prefix.ends_with('/') {
        return key.strip_prefix(prefix);
    }
    let rest = key.strip_prefix(prefix)?;
    if rest.is_empty() {
        // The prefix names one object: it keeps its basename.
        return key.rsplit('/').next();
    }
    rest.strip_prefix('/')
}

/// Checks that `relative` (segments separated by `/`) stays inside the folder it is joined to,
/// and turns it into a path. Used for object keys and for archive entries alike.
pub(crate) fn safe_relative(relative: &str) -> Result<PathBuf, String> {
    check_relative(relative)?;
    Ok(PathBuf::from(relative))
}

// `safe_relative`'s check alone.
fn check_relative(relative: &str) -> Result<(), String> {
    if relative.contains('\0') {
        return Err("a NUL byte cannot be in a file name".into());
    }
    if relative.starts_with('/') {
        return Err("an absolute path would leave DEST_DIR".into());
    }
    for segment in relative.split('/') {
        match segment {
            ".." => return Err("a '..' segment would leave DEST_DIR".into()),
            "." | "" => {
                return Err(
                    "'.' and empty segments are refused: two keys could name one file".into(),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> Object {
        Object {
            key: key.into(),
            size: Some(size),
            etag: None,
            ranges: true,
            md5: None,
            sha256: None,
        }
    }

    fn paths(prefix: &str, keys: &[&str]) -> Vec<String> {
        let objects = keys.iter().map(|k| obj(k, 1)).collect();
        let planned = plan(prefix, objects).unwrap().into_iter();
        planned.map(|p| p.path().to_string_lossy().into()).collect()
    }

    const STORE: &[&str] = &[
        "model",
        "model/",
        "model/config.json",
        "model/weights/part-1.bin",
        "model/weights/",
        "model2/config.json",
        "model.bak",
        "other/x",
    ];

    #[test]
    fn the_prefix_ends_at_a_slash() {
        // `model` is both an object and a folder here: the object keeps its basename, and the
        // siblings `model2/` and `model.bak` never leak in (KServe's issue #3776).
        let below = ["config.json", "weights/part-1.bin"];
        assert_eq!(paths("model", &STORE[1..]), below);
        assert_eq!(paths("model/", STORE), below);
        assert_eq!(paths("model.bak", STORE), ["model.bak"]);
        let key = "models/iris/v1/model.onnx";
        assert_eq!(paths(key, &[key]), ["model.onnx"]);
    }

    #[test]
    fn a_bucket_root_takes_everything_but_markers() {
        assert_eq!(
            paths("", &STORE[1..]),
            vec![
                "model.bak",
                "model/config.json",
                "model/weights/part-1.bin",
                "model2/config.json",
                "other/x"
            ]
        );
    }

    #[test]
    fn zero_byte_objects_are_files_and_markers_are_not() {
        let planned = plan("m/", vec![obj("m/", 0), obj("m/empty", 0), obj("m/d/", 0)]).unwrap();
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].path(), Path::new("empty"));
        assert_eq!(planned[0].size(), Some(0));
    }

    #[test]
    fn keys_that_would_leave_dest_fail_the_plan() {
        let cases = [
            ("m/../../etc/passwd", "a '..' segment would leave DEST_DIR"),
            ("m/a/..", "a '..' segment would leave DEST_DIR"),
            ("m//etc/passwd", "an absolute path would leave DEST_DIR"),
            ("m/a//b", "'.' and empty segments are refused"),
            ("m/./x", "'.' and empty segments are refused"),
            ("m/a\0b", "a NUL byte cannot be in a file name"),
        ];
        for (key, reason) in cases {
            let err = plan("m", vec![obj("m/ok", 1), obj(key, 1)]).unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.reason.starts_with(reason), "{key}: {}", err.reason);
        }
        let err = plan("", vec![obj("/etc/passwd", 1)]).unwrap_err();
        assert_eq!(err.reason, "an absolute path would leave DEST_DIR");
    }

    #[test]
    fn collisions_fail_the_plan() {
        // `model` maps to `model` by basename; `model/model` maps to `model` too.
        let err = plan("model", vec![obj("model", 1), obj("model/model", 1)]).unwrap_err();
        assert!(err.reason.contains("same path"), "{}", err.reason);
        let err = plan("", vec![obj("a", 1), obj("a/b", 1)]).unwrap_err();
        assert_eq!(err.key, "a/b");
        assert!(err.reason.contains("needs a folder"), "{}", err.reason);
        // `a.b` sorts between `a` and `a/b`: still caught.
        let err = plan("", vec![obj("a", 1), obj("a.b", 1), obj("a/b", 1)]).unwrap_err();
        assert_eq!(err.key, "a/b");
    }

    #[test]
    fn a_planned_file_stays_small() {
        // One per file of a run: 200,000 of them must fit a small pod with the rest.
        assert!(size_of::<Planned>() <= 72, "{}", size_of::<Planned>());
    }

    #[test]
    fn sizes_and_etags_carry_over() {
        let planned = plan(
            "p/",
            vec![Object {
                key: "p/w.bin".into(),
                size: Some(42),
                etag: Some("\"abc\"".into()),
                ranges: false,
                md5: Some([7; 16]),
                sha256: Some(Box::new([9; 32])),
            }],
        )
        .unwrap();
        assert_eq!(
            planned,
            vec![Planned {
                key: "p/w.bin".into(),
                path_start: 2,
                size: 42,
                sized: true,
                etag: Some("\"abc\"".into()),
                ranges: false,
                md5: Some([7; 16]),
                sha256: Some(Box::new([9; 32])),
            }]
        );
    }
}
