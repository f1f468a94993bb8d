//! Layers: the tar streams a source holds besides its objects (an OCI artifact's tar layers, a
//! container image's layers), applied to `DEST_DIR` one after another as a container runtime
//! applies an image.
//!
//! Each layer streams from the source (`Source::read`, one thread) through a bounded pipe into
//! `archive::extract_layer` (the archive rules: no escapes, bounded expansion, names capped),
//! hashed on the way. It is extracted into a hidden staging folder in `DEST_DIR`; only when the
//! whole stream is read and its SHA-256 is the one the source listed are its whiteouts applied
//! to what earlier layers left and its files renamed into place: each file flushed to disk
//! before it was staged, each folder flushed after the renames into it. A tampered or cut layer
//! leaves nothing of itself under a final name. Memory stays bounded by the pipe (`DEPTH`
//! chunks) and the decoders, whatever the layer's size. `STORAGE_ALLOW_PATTERNS` and
//! `STORAGE_IGNORE_PATTERNS` apply to the files as they move into place.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::digest::{Sha256, hex};
use crate::engine::archive::{self, Whiteout};
use crate::engine::{Filter, dest, manifest};
use crate::error::Error;
use crate::fetch::{Layer, Source};

/// The staging folder in `DEST_DIR`: a temporary name, so no object may land there and a
/// killed run's is recognised and removed.
const STAGING: &str = ".layer.mrsi-part";
/// Chunks in flight between the thread reading a layer and the extraction.
const DEPTH: usize = 16;

/// Extracts `layers` of `source` into `dest`, in order; returns the files written. `uri` is
/// for messages.
pub(crate) fn apply(
    source: &dyn Source,
    layers: &[Layer],
    uri: &str,
    dest: &Path,
    filter: &Filter,
) -> Result<usize, Error> {
    dest::create_root(dest)?;
    let staging = dest.join(STAGING);
    let mut files = 0;
    for (i, layer) in layers.iter().enumerate() {
        clear(&staging)?;
        std::fs::create_dir(&staging).map_err(|e| Error::io("create folder", &staging, e))?;
        let result = one(source, layer, uri, dest, &staging, filter);
        clear(&staging)?;
        let n = result?;
        log::info!(
            "layer {}/{} ({}, {} bytes): {n} file(s)",
            i + 1,
            layers.len(),
            layer.key,
            layer.size
        );
        files += n;
    }
    Ok(files)
}

fn one(
    source: &dyn Source,
    layer: &Layer,
    uri: &str,
    dest: &Path,
    staging: &Path,
    filter: &Filter,
) -> Result<usize, Error> {
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
            let mut out = Chunks(tx.clone());
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
        for whiteout in &whiteouts {
            remove(dest, whiteout)?;
        }
        let mut moved = 0;
        merge(staging, dest, Path::new(""), filter, &mut moved)?;
        Ok(moved)
    })
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
                !dest::is_temp_name(&name) && name != manifest::NAME
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
// left there; counts the files. The files were flushed before they were staged
// (`archive::extract_layer`); each folder renamed into is flushed once, as an archive's are.
fn merge(
    staging: &Path,
    dest: &Path,
    relative: &Path,
    filter: &Filter,
    moved: &mut usize,
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
        if kind.is_file() {
            *moved += 1;
        }
    }
    if renamed {
        dest::sync_folder(&dest.join(relative))?;
    }
    Ok(())
}

// Removes a staging folder, a killed run's included.
fn clear(staging: &Path) -> Result<(), Error> {
    remove_path(staging)
}

/// The reading thread's end of the pipe: `None` says the read failed.
struct Chunks(SyncSender<Option<Vec<u8>>>);

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(Some(buf.to_vec()))
            .map_err(|_| io::Error::other("the extraction stopped"))?;
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
