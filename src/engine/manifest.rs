//! What the runs wrote into a `DEST_DIR`, so a rerun skips a file only when it is known to be
//! the same object: one hidden file, `DEST_DIR/.mrsi-manifest`.
//!
//! Its first line is a header; every other line is one JSON entry: the file's path, the source
//! URI (as shown in messages: no secret), the key, size and version (ETag, or what the source
//! gives instead) of the object, and the (inode, mtime) of the file this program renamed into
//! place. A file is skipped only when all of them still match: a new version of the object
//! (same size, new ETag), a file replaced by someone else (new inode or mtime), or a source
//! that gives no version at all, means a download.
//!
//! Each run starts a fresh manifest (temporary name + rename) holding the entries it kept,
//! then appends one line per file it completes (one write in append mode), so a run that
//! fails or is stopped still vouches for the files it finished. It holds at most the entries
//! of two plans, and one larger than `LIMIT`, or foreign, or with a line that is not an entry,
//! is ignored: everything is downloaded again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Planned;
use super::{Identity, dest, identity, reopen};
use crate::error::Error;

/// The manifest's name in `DEST_DIR`; no object may land there.
pub(crate) const NAME: &str = ".mrsi-manifest";
/// A manifest larger than this is ignored (about 200 bytes an entry: 300,000 files).
pub(crate) const LIMIT: u64 = 64 << 20;
const HEADER: &str = "mrsi-manifest v1";

/// One file a run wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    path: String,
    uri: String,
    key: String,
    size: u64,
    version: String,
    ino: u64,
    mtime: (i64, i64),
}

impl Entry {
    /// The entry for `planned`, just written to `path` (open as `file`); `None` when the source
    /// gave no version or size, so the file can never be known to be the same object.
    pub(crate) fn of(planned: &Planned, uri: &str, file: &File) -> Option<Entry> {
        let meta = file.metadata().ok()?;
        Some(Entry {
            path: planned.path().to_str()?.to_string(),
            uri: uri.to_string(),
            key: planned.key.to_string(),
            size: planned.size()?,
            version: planned.etag.as_deref()?.to_string(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        })
    }

    /// Whether the file at `path` is still what this entry says for `planned` from `uri`.
    fn vouches_for(&self, planned: &Planned, uri: &str, path: &Path) -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        meta.is_file()
            && self.uri == uri
            && *self.key == *planned.key
            && Some(self.size) == planned.size()
            && Some(self.version.as_str()) == planned.etag.as_deref()
            && meta.len() == self.size
            && meta.ino() == self.ino
            && (meta.mtime(), meta.mtime_nsec()) == self.mtime
    }
}

/// The entries a readable manifest in `dest` holds, by path; empty when there is none, or it
/// is not one (foreign, corrupt, too large, not a plain file of one name).
pub(crate) fn read(dest: &Path) -> HashMap<String, Entry> {
    let path = dest.join(NAME);
    let plain = std::fs::symlink_metadata(&path)
        .is_ok_and(|m| m.is_file() && m.nlink() == 1 && m.len() <= LIMIT);
    let mut text = String::new();
    if !plain
        || File::open(&path)
            .and_then(|f| f.take(LIMIT).read_to_string(&mut text))
            .is_err()
    {
        return HashMap::new();
    }
    let mut lines = text.split_inclusive('\n');
    if lines.next() != Some(&format!("{HEADER}\n")) {
        log::debug!("{} is not this program's manifest: ignored", path.display());
        return HashMap::new();
    }
    let mut entries = HashMap::new();
    for line in lines {
        // A run stopped mid-append leaves a partial last line: only that is skipped.
        if !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(entry) => {
                entries.insert(entry.path.clone(), entry);
            }
            Err(_) => {
                log::debug!("{} is corrupt: ignored", path.display());
                return HashMap::new();
            }
        }
    }
    entries
}

/// Whether `known` vouches that the file at `path` is `planned` from `uri`.
pub(crate) fn vouches(
    known: &HashMap<String, Entry>,
    planned: &Planned,
    uri: &str,
    path: &Path,
) -> Option<Entry> {
    let entry = known.get(planned.path().to_str()?)?;
    entry.vouches_for(planned, uri, path).then(|| entry.clone())
}

/// This run's manifest, open for appending.
pub(crate) struct Manifest {
    path: PathBuf,
    made: Identity,
}

impl Manifest {
    /// Replaces the manifest in `dest` with one holding `kept` (temporary name, flushed, then
    /// renamed: a crash leaves the old one or the new one).
    pub(crate) fn start(dest: &Path, kept: &[Entry]) -> Result<Manifest, Error> {
        let path = dest.join(NAME);
        let temp = dest::temp_path(&path);
        let mut text = format!("{HEADER}\n");
        for entry in kept {
            text.push_str(&line(entry));
        }
        let mut file = dest::create_fresh(&temp)?;
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io("write", &temp, e))?;
        dest::sync_file(&file, &temp)?;
        let made = identity(&file, &temp)?;
        std::fs::rename(&temp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        Ok(Manifest { path, made })
    }

    /// Notes one more file as written: one write in append mode, so lines never interleave.
    pub(crate) fn add(&self, entry: &Entry) -> Result<(), Error> {
        reopen(&self.path, self.made, OpenOptions::new().append(true))?
            .write_all(line(entry).as_bytes())
            .map_err(|e| Error::io("write", &self.path, e))
    }
}

fn line(entry: &Entry) -> String {
    let mut line = serde_json::to_string(entry).expect("an entry always serializes");
    line.push('\n');
    line
}
