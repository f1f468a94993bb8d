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
//! of two plans, and one larger than `LIMIT`, or foreign, or with a line that is not an entry
//! or longer than `MAX_LINE`, is ignored: everything is downloaded again.
//!
//! A rerun reads it once, a line at a time, and keeps 16 bytes a line (`Known`: a hash of the
//! path and where the line is); the line of a planned file is read back from the file and
//! checked field by field, and a line that vouched is copied into the next manifest.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Planned;
use super::{Identity, dest, identity, reopen};
use crate::error::Error;

/// The manifest's name in `DEST_DIR`; no object may land there.
pub(crate) const NAME: &str = ".mrsi-manifest";
/// A manifest larger than this is ignored (about 200 bytes an entry: 300,000 files).
pub(crate) const LIMIT: u64 = 64 << 20;
/// The longest line a manifest may hold, newline included: one is read at a time. An entry
/// longer (a key or URI of hundreds of KiB) is not written, and its file is fetched again.
const MAX_LINE: usize = 1 << 20;
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

/// An earlier run's manifest, read once line by line: each path's entry is kept as where its
/// line lies in the file (open here), not as the entry, 16 bytes a line. A rerun of 200,000
/// files held the manifest's text and strings twice over before (187 MiB peak).
pub(crate) struct Known {
    file: Option<File>,
    // Sorted by the hash of the entry's path, one line per hash: the last line for a path, as
    // it was written last. Two paths with one hash lose one entry: that file is downloaded
    // again, never taken for another, as a line is read back whole and checked field by field
    // before it vouches.
    lines: Vec<Line>,
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Line {
    hash: u64,
    // Within `LIMIT` (64 MiB) both fit in a u32.
    offset: u32,
    // The length, and `KEPT` once the line vouched for a planned file.
    len: u32,
}

/// A line of `Known` that vouched for a file.
pub(crate) struct Vouching(usize);

// In `Line::len`: the line is copied into the next manifest. Lines are at most `MAX_LINE`.
const KEPT: u32 = 1 << 31;

/// The manifest in `dest`; empty when there is none, or it is not one (foreign, corrupt, too
/// large, a line longer than `MAX_LINE`, not a plain file of one name).
pub(crate) fn read(dest: &Path) -> Known {
    let hasher = RandomState::new();
    let path = dest.join(NAME);
    let (file, lines) = match index(&path, &hasher) {
        Ok(Some((file, lines))) => (Some(file), lines),
        Ok(None) => (None, Vec::new()),
        Err(why) => {
            log::debug!("{} is {why}: ignored", path.display());
            (None, Vec::new())
        }
    };
    Known {
        file,
        lines,
        hasher,
    }
}

// Reads the manifest at `path` once, in order, one line in memory at a time; `None` when
// there is none, or why it is not taken.
fn index(path: &Path, hasher: &RandomState) -> Result<Option<(File, Vec<Line>)>, &'static str> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(None);
    };
    if !meta.is_file() || meta.nlink() != 1 || meta.len() > LIMIT {
        return Err("not a plain file of one name within the size limit");
    }
    let file = File::open(path).map_err(|_| "unreadable")?;
    let mut reader = BufReader::new((&file).take(LIMIT));
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut offset = 0;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|_| "unreadable")?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE {
            return Err("corrupt (a line is too long)");
        }
        if line.last() != Some(&b'\n') {
            // A run stopped mid-append leaves a partial last line: only that is skipped.
            break;
        }
        if offset == 0 {
            if line != format!("{HEADER}\n").as_bytes() {
                return Err("not this program's manifest");
            }
        } else {
            let entry: Entry = serde_json::from_slice(&line).map_err(|_| "corrupt")?;
            lines.push(Line {
                hash: hasher.hash_one(&entry.path),
                offset,
                len: line.len() as u32,
            });
        }
        offset += line.len() as u32;
    }
    drop(reader);
    // Stable: of one path's lines, the last stays.
    lines.sort_by_key(|l| l.hash);
    lines.dedup_by(|later, earlier| {
        let same = later.hash == earlier.hash;
        if same {
            *earlier = *later;
        }
        same
    });
    lines.shrink_to_fit();
    Ok(Some((file, lines)))
}

impl Known {
    /// Whether the manifest vouches that the file at `path` is `planned` from `uri`: the line
    /// that does, to `keep` if the file is kept.
    pub(crate) fn vouches(&self, planned: &Planned, uri: &str, path: &Path) -> Option<Vouching> {
        let relative = planned.path().to_str()?;
        let hash = self.hasher.hash_one(relative);
        let i = self.lines.binary_search_by_key(&hash, |l| l.hash).ok()?;
        let entry: Entry = serde_json::from_slice(&self.line(self.lines[i])?).ok()?;
        (entry.path == relative && entry.vouches_for(planned, uri, path)).then_some(Vouching(i))
    }

    /// Carries a line that vouched into the next manifest (`Manifest::start`).
    pub(crate) fn keep(&mut self, Vouching(i): Vouching) {
        self.lines[i].len |= KEPT;
    }

    // The bytes of a line read earlier.
    fn line(&self, line: Line) -> Option<Vec<u8>> {
        let mut bytes = vec![0; (line.len & !KEPT) as usize];
        let file = self.file.as_ref()?;
        file.read_exact_at(&mut bytes, u64::from(line.offset))
            .ok()?;
        Some(bytes)
    }
}

/// This run's manifest, open for appending.
pub(crate) struct Manifest {
    path: PathBuf,
    made: Identity,
}

impl Manifest {
    /// Replaces the manifest in `dest` with one holding the lines of `known` that vouched
    /// (temporary name, flushed, then renamed: a crash leaves the old one or the new one).
    pub(crate) fn start(dest: &Path, known: &Known) -> Result<Manifest, Error> {
        let path = dest.join(NAME);
        let temp = dest::temp_path(&path);
        let file = dest::create_fresh(&temp)?;
        let mut out = BufWriter::new(&file);
        let write = |e| Error::io("write", &temp, e);
        out.write_all(format!("{HEADER}\n").as_bytes())
            .map_err(write)?;
        for line in known.lines.iter().filter(|l| l.len & KEPT != 0) {
            // The line vouched a moment ago; should it not read back now, its file is only
            // downloaded again next time.
            if let Some(bytes) = known.line(*line) {
                out.write_all(&bytes).map_err(write)?;
            }
        }
        out.flush().map_err(write)?;
        drop(out);
        dest::sync_file(&file, &temp)?;
        let made = identity(&file, &temp)?;
        std::fs::rename(&temp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        Ok(Manifest { path, made })
    }

    /// Notes one more file as written: one write in append mode, so lines never interleave.
    pub(crate) fn add(&self, entry: &Entry) -> Result<(), Error> {
        let line = line(entry);
        if line.len() > MAX_LINE {
            // A rerun would take the whole manifest for corrupt; this file alone is fetched
            // again instead.
            log::debug!(
                "{} is not noted in the manifest: its line is too long",
                entry.path
            );
            return Ok(());
        }
        reopen(&self.path, self.made, OpenOptions::new().append(true))?
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("write", &self.path, e))
    }
}

fn line(entry: &Entry) -> String {
    let mut line = serde_json::to_string(entry).expect("an entry always serializes");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::plan;
    use crate::fetch::Object;

    #[test]
    fn a_line_vouches_only_for_its_own_path() {
        let dir = std::env::temp_dir().join(format!("mrsi-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let object = Object {
            key: "a.bin".into(),
            size: Some(1),
            etag: Some("e".into()),
            ranges: true,
            md5: None,
            sha256: None,
        };
        let planned = plan("", vec![object]).unwrap().remove(0);
        let path = dir.join("a.bin");
        std::fs::write(&path, b"x").unwrap();
        let entry = Entry::of(&planned, "mem://", &File::open(&path).unwrap()).unwrap();
        // The same entry but for its path, found under a.bin's hash (as if b.bin's hash were
        // a.bin's): read back, it vouches only when its path is a.bin's.
        for (named, vouches) in [("a.bin", true), ("b.bin", false)] {
            let entry = Entry {
                path: named.into(),
                ..entry.clone()
            };
            std::fs::write(dir.join(NAME), format!("{HEADER}\n{}", line(&entry))).unwrap();
            let mut known = read(&dir);
            known.lines[0].hash = known.hasher.hash_one("a.bin");
            let found = known.vouches(&planned, "mem://", &path);
            assert_eq!(found.is_some(), vouches, "{named}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
