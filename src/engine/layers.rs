//! Layers: the tar streams a source holds besides its objects (an OCI artifact's tar layers, a
//! container image's layers), applied to `DEST_DIR` in order as a container runtime applies an
//! image, several fetched at once, and skipped on a rerun when an earlier run applied them.
//!
//! - Several at once: up to `jobs` (at most `AT_ONCE`) layers stream at a time, each from the
//!   source (`Source::read`, one thread) through a bounded pipe into
//!   `archive::extract_layer` (the archive rules: no escapes, bounded expansion, names capped),
//!   hashed on the way, into a hidden staging folder of its own in `DEST_DIR`. Only when its
//!   whole stream is read and its SHA-256 is the one the source listed, and every layer before
//!   it is in place, are its whiteouts applied to what earlier layers left and its files renamed
//!   into place: each file flushed to disk before it was staged, each folder flushed after the
//!   renames into it. So the order of a container runtime holds whatever order the layers
//!   arrive in, and a tampered or cut layer leaves nothing of itself under a final name (the
//!   verified layers before it stay). Memory stays bounded by the layers in flight: each holds
//!   its pipe (`DEPTH` chunks of at most `http::BUFFER_SIZE`) and its decoder (a zstd window of
//!   at most 128 MiB), whatever the layers' sizes.
//! - Reruns: `DEST_DIR/.mrsi-layers` (`RECORD`) notes, per layer position, the layer applied
//!   there (its digest, the model folder, the file patterns) and the files it left, each with
//!   its size, inode and mtime, as `manifest` notes a downloaded file. A layer is skipped when
//!   its note is for the same layer and every file it left is still there, untouched; anything
//!   else applies it again. A layer that removed paths (whiteouts), or whose files a later
//!   layer replaced or removed, is "entangled": applying it again applies every later layer
//!   again too, so the result is the image's whatever was touched. The record is rewritten
//!   (temporary name, flushed, renamed) after each layer lands, so a stopped run vouches for
//!   the layers it finished. One over `manifest::LIMIT`, foreign or corrupt is ignored. It is
//!   read whole, and a run holds about 100 bytes and the path of each file the layers left.
//! - A layer holding this program's own names at its top (the record, the manifest, a
//!   temporary name) is refused before any of it moves.
//! - Progress: the bytes of the layers fetched go to the `Watch`, each layer counting as a
//!   file.
//!
//! `STORAGE_ALLOW_PATTERNS` and `STORAGE_IGNORE_PATTERNS` apply to the files as they move into
//! place.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};

use crate::digest::{Sha256, hex};
use crate::engine::archive::{self, Whiteout};
use crate::engine::{Filter, Watch, dest, manifest};
use crate::error::Error;
use crate::fetch::{Layer, Source};

/// What the runs applied, in `DEST_DIR`; no object or layer entry may land there.
pub(crate) const RECORD: &str = ".mrsi-layers";
const HEADER: &str = "mrsi-layers v1";
/// Chunks in flight between the thread reading a layer and the extraction.
const DEPTH: usize = 16;
/// The most layers streaming at once, whatever `jobs` says: each may hold a zstd window of up
/// to 128 MiB.
pub(crate) const AT_ONCE: usize = 4;

/// What applying the layers came to.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Files the layers left in `DEST_DIR`, those of skipped layers included.
    pub(crate) files: usize,
    /// Layers an earlier run applied, left as they were.
    pub(crate) skipped: usize,
    /// Bytes fetched.
    pub(crate) bytes: u64,
}

/// The record's note of the layer at one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Note {
    digest: String,
    within: String,
    filter: String,
    /// Applying it again means applying the later layers again.
    entangled: bool,
    files: Vec<Left>,
}

/// A file a layer left, as it was when it was renamed into place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Left {
    path: String,
    size: u64,
    ino: u64,
    mtime: (i64, i64),
}

impl Left {
    fn of(path: String, meta: &std::fs::Metadata) -> Left {
        Left {
            path,
            size: meta.len(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    fn still_there(&self, dest: &Path) -> bool {
        std::fs::symlink_metadata(dest.join(&self.path)).is_ok_and(|m| {
            m.is_file()
                && m.len() == self.size
                && m.ino() == self.ino
                && (m.mtime(), m.mtime_nsec()) == self.mtime
        })
    }
}

// What the layers' files are as they land: which position left each path, and which positions
// are entangled or in place.
struct Ledger {
    owner: HashMap<String, (usize, Left)>,
    entangled: Vec<bool>,
    done: Vec<bool>,
}

impl Ledger {
    // Paths at or below `path` (`""`: all) are gone: their layers are entangled.
    fn disown(&mut self, path: &str) {
        let below = |k: &str| {
            path.is_empty() || k == path || k.strip_prefix(path).is_some_and(|r| r.starts_with('/'))
        };
        let entangled = &mut self.entangled;
        self.owner.retain(|k, (by, _)| {
            let gone = below(k);
            if gone {
                entangled[*by] = true;
            }
            !gone
        });
    }

    fn notes(&self, layers: &[Layer], filter: &str) -> Vec<Option<Note>> {
        let mut files: Vec<Vec<Left>> = vec![Vec::new(); layers.len()];
        for (by, left) in self.owner.values() {
            files[*by].push(left.clone());
        }
        layers
            .iter()
            .zip(files)
            .enumerate()
            .map(|(i, (layer, mut files))| {
                files.sort_by(|a, b| a.path.cmp(&b.path));
                self.done[i].then(|| Note {
                    digest: hex(&layer.sha256),
                    within: layer.within.clone(),
                    filter: filter.to_string(),
                    entangled: self.entangled[i],
                    files,
                })
            })
            .collect()
    }
}

// Whose turn it is to land, and the first layer that failed (in order).
struct Turn {
    next: usize,
    failed: Option<(usize, Error)>,
    ledger: Ledger,
}

/// Extracts `layers` of `source` into `dest`, in order, skipping those an earlier run left
/// complete, fetching up to `jobs` (at most `AT_ONCE`) at once. `uri` is for messages.
pub(crate) fn apply(
    source: &dyn Source,
    layers: &[Layer],
    uri: &str,
    dest: &Path,
    filter: &Filter,
    jobs: usize,
    watch: &dyn Watch,
) -> Result<Applied, Error> {
    dest::create_root(dest)?;
    let described = filter.describe();
    let record = read_record(dest);
    let mut ledger = Ledger {
        owner: HashMap::new(),
        entangled: vec![false; layers.len()],
        done: vec![false; layers.len()],
    };
    // In order: once a layer must be applied again and it is entangled (or unknown), so are
    // all after it.
    let mut todo = Vec::new();
    let mut force = false;
    for (i, layer) in layers.iter().enumerate() {
        let note = record.get(i).and_then(Option::as_ref).filter(|n| {
            n.digest == hex(&layer.sha256) && n.within == layer.within && n.filter == described
        });
        match note {
            Some(note) if !force && note.files.iter().all(|f| f.still_there(dest)) => {
                log::info!(
                    "layer {}/{} ({}): already applied, its {} file(s) untouched",
                    i + 1,
                    layers.len(),
                    layer.key,
                    note.files.len()
                );
                ledger.done[i] = true;
                ledger.entangled[i] = note.entangled;
                for left in &note.files {
                    ledger.owner.insert(left.path.clone(), (i, left.clone()));
                }
            }
            _ => {
                force |= note.is_none_or(|n| n.entangled);
                todo.push(i);
            }
        }
    }
    drop(record);
    // A killed run's staging folders, this version's and the one before's (one folder).
    clear(&dest.join(format!(".layer{}", dest::TEMP_SUFFIX)))?;
    for i in 0..layers.len() {
        clear(&staging(dest, i))?;
    }
    let mut applied = Applied {
        skipped: layers.len() - todo.len(),
        ..Applied::default()
    };
    let total = todo.iter().map(|&i| layers[i].size).sum();
    watch.start(total, todo.len());
    let turn = Mutex::new(Turn {
        next: 0,
        failed: None,
        ledger,
    });
    let landed = Condvar::new();
    let taken = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let workers = jobs.clamp(1, AT_ONCE).min(todo.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    // Every layer taken goes through its turn, so the ones after it never
                    // wait for a turn that does not come; only one after a layer that failed
                    // (in order) is dropped, as all after that one are.
                    let k = taken.fetch_add(1, Ordering::SeqCst);
                    let lock = || turn.lock().unwrap_or_else(|p| p.into_inner());
                    if k >= todo.len() || lock().failed.as_ref().is_some_and(|(f, _)| *f < k) {
                        return;
                    }
                    let i = todo[k];
                    let layer = &layers[i];
                    let staged = staging(dest, i);
                    let fetched = std::fs::create_dir(&staged)
                        .map_err(|e| Error::io("create folder", &staged, e))
                        .and_then(|()| fetch(source, layer, uri, &staged, watch, &bytes));
                    let mut t = lock();
                    while t.next != k && t.failed.as_ref().is_none_or(|(f, _)| *f > k) {
                        t = landed.wait(t).unwrap_or_else(|p| p.into_inner());
                    }
                    let earlier_failed = t.failed.as_ref().is_some_and(|(f, _)| *f < k);
                    if !earlier_failed {
                        let placed = fetched.and_then(|whiteouts| {
                            place(dest, &staged, i, &whiteouts, filter, &mut t.ledger).and_then(
                                |n| {
                                    t.ledger.done[i] = true;
                                    write_record(dest, &t.ledger.notes(layers, &described))
                                        .map(|()| n)
                                },
                            )
                        });
                        match placed {
                            Ok(n) => {
                                log::info!(
                                    "layer {}/{} ({}, {} bytes): {n} file(s)",
                                    i + 1,
                                    layers.len(),
                                    layer.key,
                                    layer.size
                                );
                                watch.file_done();
                                t.next += 1;
                            }
                            Err(e) => t.failed = Some((k, e)),
                        }
                    }
                    landed.notify_all();
                    drop(t);
                    // The staging folder of a layer that landed is empty; of one that did not,
                    // nothing of it may stay. Should it fail to go, the next run removes it.
                    let _ = clear(&staged);
                }
            });
        }
    });
    let turn = turn.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some((_, e)) = turn.failed {
        return Err(e);
    }
    applied.files = turn.ledger.owner.len();
    applied.bytes = bytes.load(Ordering::Relaxed);
    Ok(applied)
}

fn staging(dest: &Path, i: usize) -> PathBuf {
    dest.join(format!(".layer{i}{}", dest::TEMP_SUFFIX))
}

// Streams one layer into `staging`, checks its digest: its whiteouts.
fn fetch(
    source: &dyn Source,
    layer: &Layer,
    uri: &str,
    staging: &Path,
    watch: &dyn Watch,
    bytes: &AtomicU64,
) -> Result<Vec<Whiteout>, Error> {
    let shown = PathBuf::from(format!("layer {} of {uri}", layer.key));
    let (tx, rx) = sync_channel(DEPTH);
    let mut pipe = Pipe {
        rx,
        chunk: Vec::new(),
        at: 0,
        hash: ring::digest::Context::new(&ring::digest::SHA256),
        read: 0,
        size: layer.size,
        broken: false,
    };
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut out = Chunks {
                tx: tx.clone(),
                watch,
                bytes,
            };
            let result = source.read(&layer.key, None, &mut out);
            if result.is_err() {
                // Tells the extraction the stream broke, rather than ended.
                let _ = tx.send(None);
            }
            result
        });
        let extracted = extract(&mut pipe, layer, &shown, staging);
        let broken = pipe.broken;
        let digest = pipe.finish();
        drop(pipe);
        let read = reader.join().expect("the layer reader does not panic");
        let whiteouts = match (extracted, read) {
            (_, Err(e)) if broken => return Err(e),
            (Err(e), _) => return Err(e),
            (Ok(_), Err(e)) => return Err(e),
            (Ok(whiteouts), Ok(())) => whiteouts,
        };
        if digest != layer.sha256 {
            return Err(Error::Verify {
                uri: uri.to_string(),
                path: Some(format!("layer {}", layer.key)),
                reason: format!(
                    "the bytes' SHA-256 is {}, the source listed {}",
                    hex(&digest),
                    hex(&layer.sha256)
                ),
            });
        }
        Ok(whiteouts)
    })
}

// Lands the verified layer at position `i` staged in `staging`: its whiteouts, then its files;
// the files moved.
fn place(
    dest: &Path,
    staging: &Path,
    i: usize,
    whiteouts: &[Whiteout],
    filter: &Filter,
    ledger: &mut Ledger,
) -> Result<usize, Error> {
    // Before anything moves: a layer holding this program's own names lands nowhere.
    let top = std::fs::read_dir(staging).map_err(|e| Error::io("read folder", staging, e))?;
    for entry in top {
        let name = entry
            .map_err(|e| Error::io("read folder", staging, e))?
            .file_name();
        if is_own(&name) {
            let reason = format!(
                "the layer holds '{}', a name of this program's own files in DEST_DIR",
                name.to_string_lossy()
            );
            return Err(Error::io(
                "extract",
                dest.join(&name),
                io::Error::other(reason),
            ));
        }
    }
    for whiteout in whiteouts {
        ledger.entangled[i] = true;
        let gone = match whiteout {
            Whiteout::Path(path) | Whiteout::Opaque(path) => path,
        };
        ledger.disown(&gone.to_string_lossy());
        remove(dest, whiteout)?;
    }
    let mut moved = 0;
    merge(
        staging,
        dest,
        Path::new(""),
        filter,
        &mut |relative, meta| {
            let path = relative.to_string_lossy().into_owned();
            match meta {
                Some(meta) => {
                    // A file an earlier layer left here is replaced: that layer is entangled.
                    ledger.disown(&path);
                    ledger.owner.insert(path.clone(), (i, Left::of(path, meta)));
                    moved += 1;
                }
                None => ledger.disown(&path),
            }
        },
    )?;
    Ok(moved)
}

// Extracts the stream, then reads what follows the tar's end, so every byte is hashed.
fn extract(
    pipe: &mut Pipe,
    layer: &Layer,
    shown: &Path,
    staging: &Path,
) -> Result<Vec<Whiteout>, Error> {
    let within = Path::new(&layer.within);
    let (_, whiteouts) =
        archive::extract_layer(pipe, layer.compression, layer.size, within, shown, staging)?;
    io::copy(pipe, &mut io::sink()).map_err(|e| Error::Archive {
        path: shown.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(whiteouts)
}

// Removes what a whiteout names below `dest`, never through a link; this program's own
// files (temporary names, the manifest) stay.
fn remove(dest: &Path, whiteout: &Whiteout) -> Result<(), Error> {
    let (folder, only) = match whiteout {
        Whiteout::Path(path) => (path.parent().unwrap_or(Path::new("")), Some(path)),
        Whiteout::Opaque(folder) => (folder.as_path(), None),
    };
    // A folder that is missing, or not a folder (a link, a file), holds nothing to remove.
    let mut at = dest.to_path_buf();
    for part in folder.components() {
        at.push(part);
        if !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
    }
    let names: Vec<PathBuf> = match only {
        Some(path) => vec![dest.join(path)],
        None => std::fs::read_dir(&at)
            .map_err(|e| Error::io("read folder", &at, e))?
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                !is_own(&name)
            })
            .map(|e| e.path())
            .collect(),
    };
    for path in names {
        remove_path(&path)?;
    }
    Ok(())
}

fn remove_path(path: &Path) -> Result<(), Error> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
    removed.map_err(|e| Error::io("remove", path, e))
}

// Moves what `staging/relative` holds to `dest/relative`, replacing what earlier layers
// left there; tells `moved` of each path that changed (with the metadata of a file put
// there, `None` for anything else). The files were flushed before they were staged
// (`archive::extract_layer`); each folder renamed into is flushed once, as an archive's are.
fn merge(
    staging: &Path,
    dest: &Path,
    relative: &Path,
    filter: &Filter,
    moved: &mut dyn FnMut(&Path, Option<&std::fs::Metadata>),
) -> Result<(), Error> {
    let from = staging.join(relative);
    let entries = std::fs::read_dir(&from).map_err(|e| Error::io("read folder", &from, e))?;
    let mut renamed = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read folder", &from, e))?;
        let relative = relative.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| Error::io("inspect", entry.path(), e))?;
        let target = dest.join(&relative);
        let existing = std::fs::symlink_metadata(&target).ok();
        if kind.is_dir() {
            // A lower layer's file or link where this layer has a folder gives way.
            if existing.is_some_and(|m| !m.is_dir()) {
                remove_path(&target)?;
                moved(&relative, None);
            }
            dest::make_dirs(dest, &relative)?;
            merge(staging, dest, &relative, filter, moved)?;
            continue;
        }
        if !filter.keeps(&relative.to_string_lossy()) {
            continue;
        }
        if existing.is_some_and(|m| m.is_dir()) {
            remove_path(&target)?;
        }
        std::fs::rename(entry.path(), &target)
            .map_err(|e| Error::io("rename into place", &target, e))?;
        renamed = true;
        let meta = match kind.is_file() {
            true => Some(
                std::fs::symlink_metadata(&target).map_err(|e| Error::io("inspect", &target, e))?,
            ),
            false => None,
        };
        moved(&relative, meta.as_ref());
    }
    if renamed {
        dest::sync_folder(&dest.join(relative))?;
    }
    Ok(())
}

// This program's names in `DEST_DIR`: the manifest, the record, temporary names.
fn is_own(name: &std::ffi::OsStr) -> bool {
    dest::is_temp_name(name) || name == manifest::NAME || name == RECORD
}

// Removes a staging folder, a killed run's included.
fn clear(staging: &Path) -> Result<(), Error> {
    remove_path(staging)
}

// The record in `dest`, one note (or none) per layer position; empty when there is none, or
// it is not one.
fn read_record(dest: &Path) -> Vec<Option<Note>> {
    let path = dest.join(RECORD);
    let read = || -> Option<Vec<Option<Note>>> {
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.nlink() != 1 || meta.len() > manifest::LIMIT {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let mut lines = text.lines();
        (lines.next()? == HEADER).then_some(())?;
        lines.map(|l| serde_json::from_str(l).ok()).collect()
    };
    read().unwrap_or_else(|| {
        if path.exists() {
            log::debug!("{} is not a layer record: ignored", path.display());
        }
        Vec::new()
    })
}

// Replaces the record in `dest` (temporary name, flushed, renamed).
fn write_record(dest: &Path, notes: &[Option<Note>]) -> Result<(), Error> {
    let path = dest.join(RECORD);
    let temp = dest::temp_path(&path);
    let _ = std::fs::remove_file(&temp);
    let file = dest::create_fresh(&temp)?;
    let mut out = io::BufWriter::new(&file);
    let write = |e| Error::io("write", &temp, e);
    writeln!(out, "{HEADER}").map_err(write)?;
    for note in notes {
        let line = serde_json::to_string(note).expect("a note always serializes");
        writeln!(out, "{line}").map_err(write)?;
    }
    out.flush().map_err(write)?;
    drop(out);
    dest::sync_file(&file, &temp)?;
    std::fs::rename(&temp, &path).map_err(|e| Error::io("rename into place", &path, e))
}

/// The reading thread's end of the pipe: `None` says the read failed. Counts what passes for
/// the watch.
struct Chunks<'a> {
    tx: SyncSender<Option<Vec<u8>>>,
    watch: &'a dyn Watch,
    bytes: &'a AtomicU64,
}

impl Write for Chunks<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .send(Some(buf.to_vec()))
            .map_err(|_| io::Error::other("the extraction stopped"))?;
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.watch.wrote(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The extraction's end: hashes what passes, and refuses more than the layer's size.
struct Pipe {
    rx: Receiver<Option<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    hash: ring::digest::Context,
    read: u64,
    size: u64,
    broken: bool,
}

impl Pipe {
    fn finish(&mut self) -> Sha256 {
        let hash = std::mem::replace(
            &mut self.hash,
            ring::digest::Context::new(&ring::digest::SHA256),
        );
        hash.finish().as_ref().try_into().expect("32 bytes")
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Some(chunk)) => {
                    self.read += chunk.len() as u64;
                    if self.read > self.size {
                        return Err(io::Error::other(format!(
                            "the layer holds more than the {} bytes listed",
                            self.size
                        )));
                    }
                    self.hash.update(&chunk);
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(None) => {
                    self.broken = true;
                    return Err(io::Error::other("the download broke off"));
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
