//! Local source: `file://` URIs and plain paths, copied (never symlinked) by the same engine.
//!
//! A file is one object named by its basename; a directory is every file below it, keys
//! relative to it. Symbolic links to files are followed (a ConfigMap volume is made of them);
//! links to directories are not, so a loop cannot make the walk endless.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::fetch::{Object, Source, failed};
use crate::uri::percent_decode;

/// A local file or directory.
pub(crate) struct LocalSource {
    root: PathBuf,
    // The root is a file: its one key is its name.
    single: bool,
}

impl LocalSource {
    /// Reads `file:///path`, `file://localhost/path` or a plain path.
    pub(crate) fn open(uri: &str) -> Result<LocalSource, Error> {
        let root = local_path(uri).map_err(|reason| Error::uri(uri, reason))?;
        let meta =
            std::fs::metadata(&root).map_err(|e| Error::io("read local source", &root, e))?;
        Ok(LocalSource {
            single: !meta.is_dir(),
            root,
        })
    }

    fn path_of(&self, key: &str) -> PathBuf {
        if self.single {
            self.root.clone()
        } else {
            self.root.join(key)
        }
    }
}

/// The path a `file://` URI or a plain path names.
pub(crate) fn local_path(uri: &str) -> Result<PathBuf, String> {
    let Some(rest) = uri.strip_prefix("file://") else {
        if uri.is_empty() {
            return Err("an empty path".into());
        }
        return Ok(PathBuf::from(uri));
    };
    let path = match rest.find('/') {
        Some(0) => rest,
        Some(i) if rest[..i].eq_ignore_ascii_case("localhost") => &rest[i..],
        _ => {
            return Err(
                "a file:// URI must name an absolute path on this machine (file:///path)".into(),
            );
        }
    };
    Ok(PathBuf::from(percent_decode(path)?))
}

impl Source for LocalSource {
    fn list(&self, _prefix: &str) -> Result<Vec<Object>, Error> {
        if self.single {
            let name = self
                .root
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| {
                    let uri = self.root.display().to_string();
                    Error::uri(uri, "the path has no UTF-8 file name")
                })?;
            let meta = std::fs::metadata(&self.root)
                .map_err(|e| Error::io("read local source", &self.root, e))?;
            return Ok(vec![object(name.to_string(), &meta)]);
        }
        let mut objects = Vec::new();
        walk(&self.root, "", &mut objects)?;
        Ok(objects)
    }

    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error> {
        let path = self.path_of(key);
        let mut file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let (start, len) = match range {
            Some(r) => (r.start, r.end - r.start),
            None => (0, u64::MAX),
        };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io("read", &path, e))?;
        let mut reader = file.take(len);
        let mut buf = vec![0u8; crate::http::BUFFER_SIZE];
        let mut copied = 0u64;
        let what = path.display().to_string();
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Error::io("read", &path, e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| failed("copy", &what, (format!("writing failed: {e}"), None)))?;
            copied += n as u64;
        }
        if len != u64::MAX && copied != len {
            let shrank =
                format!("the file shrank while being copied ({copied} of {len} bytes read)");
            return Err(failed("copy", &what, (shrank, None)));
        }
        Ok(())
    }
}

// A local file's version is its (device, inode, mtime): a file rewritten or replaced since a
// run copied it is copied again, even at the same size.
fn object(key: String, meta: &std::fs::Metadata) -> Object {
    use std::os::unix::fs::MetadataExt;
    Object {
        key,
        size: Some(meta.len()),
        etag: Some(format!(
            "{}-{}-{}.{:09}",
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec()
        )),
        ranges: true,
        md5: None,
        sha256: None,
    }
}

// Files below `dir`, keys prefixed with `prefix`, in a stable order.
fn walk(dir: &Path, prefix: &str, objects: &mut Vec<Object>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut entries: Vec<_> = entries
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io("list", dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            let uri = path.display().to_string();
            return Err(Error::uri(uri, "the file name is not UTF-8"));
        };
        let key = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(|e| Error::io("list", &path, e))?;
        if kind.is_dir() {
            walk(&path, &format!("{key}/"), objects)?;
        } else if kind.is_file() {
            let meta = entry.metadata().map_err(|e| Error::io("list", &path, e))?;
            objects.push(object(key, &meta));
        } else if kind.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => objects.push(object(key, &meta)),
                Ok(_) => log::debug!("skipping {}: a link to a directory", path.display()),
                Err(e) => return Err(Error::io("follow link", &path, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        for (uri, path) in [
            ("file:///mnt/m%20x", "/mnt/m x"),
            ("file://localhost/m", "/m"),
            ("./models", "./models"),
        ] {
            assert_eq!(local_path(uri).unwrap(), PathBuf::from(path), "{uri}");
        }
        assert!(local_path("file://server/share").is_err());
        assert!(local_path("file://").is_err());
    }
}
