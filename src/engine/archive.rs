//! Archives: when a download yields exactly one `.tar`, `.tar.gz`/`.tgz` or `.zip`, it is
//! extracted into `DEST_DIR` and removed, as KServe does; and the tar streams of a source's
//! layers (`extract_layer`: plain, gzip or zstd, read as they arrive) are extracted by the same
//! rules, with only what is below one folder kept and whiteouts handed back, not written.
//!
//! Extraction follows the download's rules: every entry path passes `plan::safe_relative`
//! (no `..`, no absolute paths), folders are created through `dest::prepare` (never through a
//! link), files are written under a temporary name, flushed to disk and renamed (a node crash
//! never leaves a zero-filled entry under its final name), an entry the stream ends inside is
//! an error, and a symbolic link must point inside `DEST_DIR`. The folders written into are
//! flushed once each, at the end, before the archive is removed: one flush per folder rather
//! than per entry. Hard links must name an earlier entry. Memory stays bounded: tar, gzip and
//! zstd are read as streams; a zip's central directory is read, then each entry is streamed.
//! Names are capped at `MAX_NAME` bytes and a tar's PAX headers at `MAX_PAX`. What an archive
//! expands to is bounded (`MAX_RATIO`, `MIN_EXPANSION`, `MAX_ENTRIES`) by the sizes its entries
//! declare, before each is written; tar reads exactly those sizes, and the zip crate fails an
//! entry that holds more than it declares.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use crate::engine::dest;
use crate::engine::plan::safe_relative;
use crate::error::Error;
use crate::fetch::Compression;

/// The most bytes an entry's name, a link's target or a GNU long name may have: Linux's PATH_MAX.
const MAX_NAME: u64 = 4096;
/// The most bytes of one PAX header (the records for one entry, or global ones).
const MAX_PAX: u64 = 64 * 1024;
/// The most bytes the tar crate may read to reach one entry: the last one's padding, up to four
/// headers, two long names, one PAX header and some GNU sparse blocks. It reads a long name or
/// PAX header whole, whatever size it declares, so this is what bounds its memory.
const MAX_HEADERS: usize = 96 * 1024;
/// The extracted total may reach this many times the archive's size: model weights barely
/// compress, and a zero-padded checkpoint may reach 10:1.
const MAX_RATIO: u64 = 100;
/// ...or this much, whichever is more, so that a small archive of small files always passes.
const MIN_EXPANSION: u64 = 1 << 30;
/// The most entries an archive may have.
const MAX_ENTRIES: u64 = 1_000_000;
/// The most characters of hostile text (a name, a link target) an error quotes.
const QUOTED: usize = 200;

/// The archive formats extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Tar,
    TarGz,
    Zip,
}

impl Format {
    /// The format a file name says, if it names an archive.
    pub(crate) fn of(name: &Path) -> Option<Format> {
        let name = name.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Format::TarGz)
        } else if name.ends_with(".tar") {
            Some(Format::Tar)
        } else if name.ends_with(".zip") {
            Some(Format::Zip)
        } else {
            None
        }
    }
}

/// Extracts `archive` (a file in `dest`) into `dest`, then removes it. Returns the number of
/// files written.
pub(crate) fn extract(archive: &Path, kind: Format, dest: &Path) -> Result<usize, Error> {
    let bad = |reason: String| Error::Archive {
        path: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(|e| Error::io("open", archive, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("inspect", archive, e))?
        .len();
    let mut out = Extractor::new(dest, archive, size, None);
    let extracted = match kind {
        Format::Tar => out.stream(&mut { file }, Compression::None),
        Format::TarGz => out.stream(&mut { file }, Compression::Gzip),
        Format::Zip => zip::ZipArchive::new(file)
            .map_err(|e| bad(e.to_string()))
            .and_then(|mut zip| out.zip(&mut zip)),
    };
    // The entries complete before a failure are kept, as a download's files are.
    let flushed = out.flush();
    extracted?;
    flushed?;
    // The renames and links are on disk before the archive goes: a crash before this leaves
    // the archive, to be extracted again.
    for folder in &out.folders {
        dest::sync_folder(folder)?;
    }
    std::fs::remove_file(archive).map_err(|e| Error::io("remove", archive, e))?;
    Ok(out.files)
}

/// What a layer says to remove from the layers applied before it, below `DEST_DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Whiteout {
    /// `.wh.NAME`: this file or folder.
    Path(PathBuf),
    /// `.wh..wh..opq`: everything in this folder (`""`: everything).
    Opaque(PathBuf),
}

/// Extracts the tar stream `reader` (`size` bytes as sent, compressed as `compression`) into
/// `dest` as a layer: only entries below `within` (a relative folder, `""` for all) land, with
/// that prefix removed, and whiteouts are returned rather than written. `shown` names the
/// stream in errors. Returns the number of files written and the whiteouts, in order.
///
/// Every file is flushed to disk before it is renamed, as an archive's entries are; `dest` is a
/// staging folder whose files the caller moves into place, so it flushes the folders it moves
/// them into. On failure nothing is flushed: the caller discards the staging folder.
pub(crate) fn extract_layer(
    reader: &mut dyn Read,
    compression: Compression,
    size: u64,
    within: &Path,
    shown: &Path,
    dest: &Path,
) -> Result<(usize, Vec<Whiteout>), Error> {
    let mut out = Extractor::new(dest, shown, size, Some(within));
    out.stream(reader, compression)?;
    out.flush()?;
    Ok((out.files, out.whiteouts))
}

struct Extractor<'a> {
    dest: &'a Path,
    archive: &'a Path,
    files: usize,
    entries: u64,
    /// The bytes the entries so far declare, and the most they may.
    expanded: u64,
    limit: u64,
    /// The folders entries were renamed or linked into, to flush at the end.
    folders: HashSet<PathBuf>,
    /// Files written under their temporary name, to flush and rename (`flush`).
    pending: Vec<Pending>,
    /// For a layer: the folder whose contents land, and the whiteouts seen.
    within: Option<&'a Path>,
    whiteouts: Vec<Whiteout>,
}

// An entry written under its temporary name, not yet flushed.
struct Pending {
    file: File,
    temp: PathBuf,
    path: PathBuf,
}

/// Entries flushed together: one flush per entry costs 4 to 5 ms on a virtual disk (10,000
/// small files: 45 s instead of 1), but flushes running at once share the file system's journal
/// commits.
const BATCH: usize = 64;
/// Threads flushing a batch.
const FLUSHERS: usize = 16;

impl<'a> Extractor<'a> {
    fn new(dest: &'a Path, archive: &'a Path, size: u64, within: Option<&'a Path>) -> Self {
        Extractor {
            dest,
            archive,
            files: 0,
            entries: 0,
            expanded: 0,
            limit: size.saturating_mul(MAX_RATIO).max(MIN_EXPANSION),
            folders: HashSet::new(),
            pending: Vec::new(),
            within,
            whiteouts: Vec::new(),
        }
    }

    // For a layer: an entry's path below `within`, `None` when it lies elsewhere (or is
    // `within` itself); a whiteout is noted and `None`. For an archive: the path as it is.
    fn landing(&mut self, name: &str, relative: PathBuf) -> Result<Option<PathBuf>, Error> {
        let Some(within) = self.within else {
            return Ok(Some(relative));
        };
        let file = relative.file_name().and_then(|f| f.to_str()).unwrap_or("");
        if let Some(removed) = file.strip_prefix(".wh.") {
            let parent = relative.parent().unwrap_or(Path::new(""));
            let whiteout = if removed == ".wh..opq" {
                opaque_below(within, parent)
            } else if matches!(removed, "" | "." | "..") {
                return Err(self.bad(name, "a whiteout that names no file"));
            } else {
                let gone = parent.join(removed);
                match gone.strip_prefix(within) {
                    Ok(r) if r != Path::new("") => Some(Whiteout::Path(r.to_path_buf())),
                    // `within` itself, or a folder above it: all that was below is gone.
                    _ if within.starts_with(&gone) => Some(Whiteout::Opaque(PathBuf::new())),
                    _ => None,
                }
            };
            self.whiteouts.extend(whiteout);
            return Ok(None);
        }
        Ok(match relative.strip_prefix(within) {
            Ok(r) if r != Path::new("") => Some(r.to_path_buf()),
            _ => None,
        })
    }

    fn bad(&self, entry: &str, reason: &str) -> Error {
        Error::Archive {
            path: self.archive.to_path_buf(),
            reason: format!("entry '{}': {reason}", clip(entry)),
        }
    }

    fn broken(&self, e: impl std::fmt::Display) -> Error {
        Error::Archive {
            path: self.archive.to_path_buf(),
            reason: clip(&crate::error::one_line(&e.to_string())),
        }
    }

    /// Counts an entry and the bytes it declares, before any is written.
    fn admit(&mut self, name: &str, size: u64) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(self.broken(format!("more than {MAX_ENTRIES} entries")));
        }
        self.expanded = self.expanded.saturating_add(size);
        if self.expanded > self.limit {
            let reason = format!(
                "its {size} bytes would take the extracted total past {} bytes \
                 ({MAX_RATIO} times the archive's size, at least {} GiB)",
                self.limit,
                MIN_EXPANSION >> 30
            );
            return Err(self.bad(name, &reason));
        }
        Ok(())
    }

    // The entry's path below `dest`, checked; `None` for the archive's root (`./`).
    fn entry_path(&self, name: &str) -> Result<Option<PathBuf>, Error> {
        if name.len() as u64 > MAX_NAME {
            let reason = format!("a name of {} bytes (the limit is {MAX_NAME})", name.len());
            return Err(self.bad(name, &reason));
        }
        let trimmed = name.trim_end_matches('/');
        let mut relative = trimmed;
        while let Some(rest) = relative.strip_prefix("./") {
            relative = rest;
        }
        if relative.is_empty() || relative == "." {
            return Ok(None);
        }
        safe_relative(relative)
            .map(Some)
            .map_err(|reason| self.bad(name, &reason))
    }

    // A tar stream, decompressed as it is read.
    fn stream(&mut self, reader: &mut dyn Read, compression: Compression) -> Result<(), Error> {
        let reader = BufReader::new(reader);
        match compression {
            Compression::None => self.tar(&mut { reader }),
            // Every gzip member, not just the first: pigz and others write several.
            Compression::Gzip => self.tar(&mut flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => self.tar(&mut Zstd {
                source: reader,
                frame: ruzstd::decoding::FrameDecoder::new(),
                open: false,
            }),
        }
    }

    // One `&mut dyn Read` for every stream: the tar reader is compiled once, not once per
    // decoder (which cost ~60 KiB of the static binary).
    fn tar(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let headers = Rc::new(RefCell::new(Headers::default()));
        let mut archive = tar::Archive::new(Watched {
            inner: reader,
            headers: Rc::clone(&headers),
        });
        let mut entries = archive.entries().map_err(|e| self.broken(e))?;
        loop {
            headers.borrow_mut().watch();
            let next = entries.next();
            headers.borrow_mut().check().map_err(|e| self.broken(e))?;
            let Some(entry) = next else {
                return Ok(());
            };
            let mut entry = entry.map_err(|e| self.broken(e))?;
            self.tar_entry(&mut entry)?;
            // What is left of a skipped entry is read here, not while the headers are watched.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| self.broken(e))?;
        }
    }

    fn tar_entry(&mut self, entry: &mut tar::Entry<'_, impl Read>) -> Result<(), Error> {
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| self.broken("an entry name is not UTF-8"))?;
        self.admit(&name, entry.size())?;
        let Some(relative) = self.entry_path(&name)? else {
            return Ok(());
        };
        let Some(relative) = self.landing(&name, relative)? else {
            return Ok(());
        };
        let mode = entry.header().mode().ok();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            self.dir(&relative)?;
        } else if kind.is_file() {
            let size = entry.size();
            self.file(&name, &relative, entry, size, mode)?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .ok_or_else(|| self.bad(&name, "a link without a target"))?;
            if kind.is_symlink() {
                self.symlink(&name, &relative, &target)?;
            } else {
                self.hard_link(&name, &relative, &target)?;
            }
        } else {
            log::warn!(
                "{}: skipping entry '{}' ({kind:?})",
                self.archive.display(),
                clip(&name)
            );
        }
        Ok(())
    }

    fn zip(&mut self, zip: &mut zip::ZipArchive<File>) -> Result<(), Error> {
        if zip.len() as u64 > MAX_ENTRIES {
            return Err(self.broken(format!("more than {MAX_ENTRIES} entries")));
        }
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| self.broken(e))?;
            let name = entry.name().map_err(|e| self.broken(e))?.into_owned();
            self.admit(&name, entry.size())?;
            let Some(relative) = self.entry_path(&name)? else {
                continue;
            };
            let mode = entry.unix_mode();
            if entry.is_dir() {
                self.dir(&relative)?;
            } else if entry.is_symlink() {
                let mut target = String::new();
                // A link target is a path: one byte past the limit is enough to refuse it.
                entry
                    .by_ref()
                    .take(MAX_NAME + 1)
                    .read_to_string(&mut target)
                    .map_err(|e| self.broken(e))?;
                self.symlink(&name, &relative, &target)?;
            } else {
                let size = entry.size();
                self.file(&name, &relative, &mut entry, size, mode)?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, relative: &Path) -> Result<(), Error> {
        self.flush()?;
        dest::make_dirs(self.dest, relative)
    }

    fn file(
        &mut self,
        name: &str,
        relative: &Path,
        reader: &mut dyn Read,
        size: u64,
        mode: Option<u32>,
    ) -> Result<(), Error> {
        let path = dest::prepare(self.dest, relative)?;
        if path == self.archive {
            return Err(self.bad(name, "it would overwrite the archive itself"));
        }
        // The same name twice (a later entry replaces an earlier one): the first goes in first.
        if self.pending.iter().any(|p| p.path == path) {
            self.flush()?;
        }
        let temp = dest::temp_path(&path);
        // Created afresh: a file or link planted at the temporary name is never written through.
        let mut file = dest::create_fresh(&temp)?;
        let copied = io::copy(reader, &mut file).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            self.bad(name, &crate::error::one_line(&e.to_string()))
        })?;
        // The tar reader ends an entry quietly where the archive ends: a cut archive must not
        // leave a cut file under the entry's name.
        if copied != size {
            let _ = std::fs::remove_file(&temp);
            let reason = format!("the archive ends {copied} bytes into its {size} bytes");
            return Err(self.bad(name, &reason));
        }
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            // Keep the execute bits; never set-id or sticky bits, and always owner-writable.
            let perms = std::fs::Permissions::from_mode((mode & 0o777) | 0o600);
            file.set_permissions(perms)
                .map_err(|e| Error::io("set permissions", &temp, e))?;
        }
        self.pending.push(Pending { file, temp, path });
        self.files += 1;
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    // Flushes the pending entries to disk, on several threads at once, then renames each into
    // place in the archive's order: no entry appears under its name before its bytes are on
    // disk. Also before any entry that is not a plain file: a link or a folder may name them.
    fn flush(&mut self) -> Result<(), Error> {
        let pending = std::mem::take(&mut self.pending);
        let chunk = pending.len().div_ceil(FLUSHERS).max(1);
        std::thread::scope(|scope| {
            let flushers: Vec<_> = pending
                .chunks(chunk)
                .map(|some| {
                    scope.spawn(move || {
                        some.iter()
                            .try_for_each(|p| dest::sync_file(&p.file, &p.temp))
                    })
                })
                .collect();
            flushers
                .into_iter()
                .try_for_each(|f| f.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
        for p in pending {
            drop(p.file);
            std::fs::rename(&p.temp, &p.path)
                .map_err(|e| Error::io("rename into place", &p.path, e))?;
            self.note_folder(&p.path);
        }
        Ok(())
    }

    fn note_folder(&mut self, path: &Path) {
        if let Some(folder) = path.parent()
            && !self.folders.contains(folder)
        {
            self.folders.insert(folder.to_path_buf());
        }
    }

    fn symlink(&mut self, name: &str, relative: &Path, target: &str) -> Result<(), Error> {
        self.flush()?;
        if target.len() as u64 > MAX_NAME {
            let reason = format!("a link target of more than {MAX_NAME} bytes");
            return Err(self.bad(name, &reason));
        }
        if let Err(why) = link_stays_inside(relative, target) {
            return Err(self.bad(name, &format!("a link to '{}' {why}", clip(target))));
        }
        let path = dest::prepare(self.dest, relative)?;
        remove_existing(&path)?;
        std::os::unix::fs::symlink(target, &path)
            .map_err(|e| Error::io("create link", &path, e))?;
        self.note_folder(&path);
        Ok(())
    }

    fn hard_link(&mut self, name: &str, relative: &Path, target: &str) -> Result<(), Error> {
        self.flush()?;
        let Some(target_rel) = self.entry_path(target)? else {
            return Err(self.bad(name, "a hard link to the archive's root"));
        };
        let target_rel = match self.within {
            Some(within) => match target_rel.strip_prefix(within) {
                Ok(r) if r != Path::new("") => r.to_path_buf(),
                _ => return Err(self.bad(name, "a hard link to a file outside the folder kept")),
            },
            None => target_rel,
        };
        let original = dest::prepare(self.dest, &target_rel)?;
        if !std::fs::symlink_metadata(&original).is_ok_and(|m| m.is_file()) {
            return Err(self.bad(
                name,
                &format!("a hard link to '{target}', which is not a file extracted before it"),
            ));
        }
        let path = dest::prepare(self.dest, relative)?;
        remove_existing(&path)?;
        std::fs::hard_link(&original, &path).map_err(|e| Error::io("create link", &path, e))?;
        self.note_folder(&path);
        self.files += 1;
        Ok(())
    }
}

/// Hostile text quoted in an error: at most `QUOTED` characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTED) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// What the tar crate read to reach the latest entry, kept so the sizes its GNU long names and
/// PAX headers declare can be checked; at most `MAX_HEADERS` bytes.
#[derive(Default)]
struct Headers {
    /// Bytes of the tar stream read so far.
    pos: u64,
    watching: bool,
    /// Where the bytes watched start in the tar stream.
    start: u64,
    bytes: Vec<u8>,
    /// Whether a read was refused for going past `MAX_HEADERS`.
    full: bool,
}

impl Headers {
    fn watch(&mut self) {
        self.watching = true;
        self.start = self.pos;
        self.bytes.clear();
    }

    /// Stops watching; walks the headers read (they start at the first 512-byte boundary) and
    /// refuses the first long name or PAX header that declares more than its limit.
    fn check(&mut self) -> Result<(), String> {
        use tar::EntryType::{GNULongLink, GNULongName, XGlobalHeader, XHeader};
        self.watching = false;
        let mut at = self.start.next_multiple_of(512) - self.start;
        while let Some(block) = self.bytes.get(at as usize..at as usize + 512) {
            let header = tar::Header::from_byte_slice(block);
            let (what, limit) = match header.entry_type() {
                GNULongName => ("GNU long name", MAX_NAME),
                GNULongLink => ("GNU long link name", MAX_NAME),
                XHeader | XGlobalHeader => ("PAX header", MAX_PAX),
                _ => break,
            };
            let size = header.entry_size().unwrap_or(u64::MAX);
            if size > limit {
                let at = self.start + at;
                return Err(format!(
                    "a {what} at byte {at} declares {size} bytes (the limit is {limit})"
                ));
            }
            at += 512 + size.next_multiple_of(512);
        }
        if self.full {
            return Err(format!(
                "more than {} KiB of headers before one entry",
                MAX_HEADERS / 1024
            ));
        }
        Ok(())
    }
}

/// The tar stream, with what is read while `Headers` watches kept and capped.
struct Watched<R> {
    inner: R,
    headers: Rc<RefCell<Headers>>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut headers = self.headers.borrow_mut();
        let mut room = buf.len();
        if headers.watching {
            room = room.min(MAX_HEADERS - headers.bytes.len());
            if room == 0 && !buf.is_empty() {
                headers.full = true;
                return Err(io::Error::other("too many header bytes"));
            }
        }
        let n = self.inner.read(&mut buf[..room])?;
        if headers.watching {
            headers.bytes.extend_from_slice(&buf[..n]);
        }
        headers.pos += n as u64;
        Ok(n)
    }
}

// What `.wh..wh..opq` in `folder` removes below `within`.
fn opaque_below(within: &Path, folder: &Path) -> Option<Whiteout> {
    if within.starts_with(folder) {
        return Some(Whiteout::Opaque(PathBuf::new()));
    }
    let below = folder.strip_prefix(within).ok()?;
    Some(Whiteout::Opaque(below.to_path_buf()))
}

/// A zstd stream of one or more frames (skippable frames skipped), decoded as it is read.
/// ruzstd refuses windows over 128 MiB, which bounds its memory whatever the stream says.
struct Zstd<R> {
    source: R,
    frame: ruzstd::decoding::FrameDecoder,
    open: bool,
}

impl<R: io::BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::BlockDecodingStrategy;
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        loop {
            if self.open {
                while self.frame.can_collect() == 0 && !self.frame.is_finished() {
                    self.frame
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(io::Error::other)?;
                }
                let n = self.frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.open = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.frame.reset(&mut self.source) {
                Ok(()) => self.open = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(io::Error::other("a skippable zstd frame is cut short"));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

fn remove_existing(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            std::fs::remove_file(path).map_err(|e| Error::io("replace", path, e))
        }
        _ => Ok(()),
    }
}

/// Whether a symbolic link at `relative` (below `DEST_DIR`) pointing at `target` stays inside
/// `DEST_DIR`, read lexically; if not, why. `..` may only begin the target: the link's folder
/// and those above it are real folders (`dest::prepare` never passes a link), so leading `..`
/// climb where the text says, but after a name `..` climbs out of whatever that name is on disk
/// (`x -> .`, then `l -> x/..` is DEST_DIR's parent). Names after the `..` may be links, each
/// checked the same way. Extraction never writes through a link.
pub(crate) fn link_stays_inside(relative: &Path, target: &str) -> Result<(), &'static str> {
    const OUTSIDE: &str = "would point outside DEST_DIR";
    if target.is_empty() || target.starts_with('/') {
        return Err(OUTSIDE);
    }
    // Depth of the folder holding the link, then walk the target.
    let mut depth = relative.components().count() as i64 - 1;
    let mut named = false;
    for part in Path::new(target).components() {
        match part {
            Component::Normal(_) => {
                depth += 1;
                named = true;
            }
            Component::ParentDir if named => {
                return Err("puts '..' after a name, which could climb out through another link");
            }
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(OUTSIDE);
                }
            }
            Component::CurDir => {}
            _ => return Err(OUTSIDE),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_kinds_by_name() {
        assert_eq!(Format::of(Path::new("/d/m.tar.gz")), Some(Format::TarGz));
        assert_eq!(Format::of(Path::new("m.TGZ")), Some(Format::TarGz));
        assert_eq!(Format::of(Path::new("m.tar")), Some(Format::Tar));
        assert_eq!(Format::of(Path::new("m.zip")), Some(Format::Zip));
        assert_eq!(Format::of(Path::new("m.onnx")), None);
        assert_eq!(Format::of(Path::new("m.gz")), None);
    }

    #[test]
    fn entries_are_counted() {
        let mut out = Extractor::new(Path::new("/d"), Path::new("/d/m.tar"), 0, None);
        for _ in 0..MAX_ENTRIES {
            out.admit("f", 0).unwrap();
        }
        assert_eq!(
            out.admit("f", 0).unwrap_err().to_string(),
            "cannot extract '/d/m.tar': more than 1000000 entries"
        );
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(match name.ends_with('/') {
                true => tar::EntryType::Directory,
                false => tar::EntryType::Regular,
            });
            // Written raw: `set_path` refuses `..`, which a hostile layer holds.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn layers_keep_one_folder_and_hand_back_whiteouts() {
        let dest = std::env::temp_dir().join(format!("mrsi-layer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::create_dir_all(&dest).unwrap();
        let tar = tar_of(&[
            ("./etc/passwd", b"root"),
            ("models/", b""),
            ("models/a.txt", b"a"),
            ("models/sub/.wh.old.bin", b""),
            ("models/gone/.wh..wh..opq", b""),
            ("etc/.wh.models", b""),
            ("usr/.wh.x", b""),
            (".wh..wh..opq", b""),
        ]);
        // Two zstd frames with a skippable frame between them: decoded as one stream.
        let (one, two) = tar.split_at(700);
        let mut zst =
            ruzstd::encoding::compress_to_vec(one, ruzstd::encoding::CompressionLevel::Fastest);
        zst.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        zst.extend(ruzstd::encoding::compress_to_vec(
            two,
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let shown = Path::new("layer");
        let (files, whiteouts) = extract_layer(
            &mut zst.as_slice(),
            Compression::Zstd,
            zst.len() as u64,
            Path::new("models"),
            shown,
            &dest,
        )
        .unwrap();
        assert_eq!(files, 1);
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"a");
        assert!(!dest.join("etc").exists());
        assert_eq!(
            whiteouts,
            [
                Whiteout::Path("sub/old.bin".into()),
                Whiteout::Opaque("gone".into()),
                Whiteout::Opaque("".into()),
            ]
        );
        std::fs::remove_dir_all(&dest).unwrap();

        // A layer that climbs out of DEST_DIR, and one that declares more than it may expand to.
        let evil = tar_of(&[("models/../../evil", b"x")]);
        let e = extract_layer(
            &mut evil.as_slice(),
            Compression::None,
            1024,
            Path::new(""),
            shown,
            &dest,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot extract 'layer': entry 'models/../../evil'"),
            "{e}"
        );
        let mut header = tar::Header::new_gnu();
        header.set_path("bomb").unwrap();
        header.set_size(2 << 30);
        header.set_cksum();
        let e = extract_layer(
            &mut header.as_bytes().as_slice(),
            Compression::None,
            512,
            Path::new(""),
            shown,
            &dest,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("would take the extracted total past 1073741824 bytes"),
            "{e}"
        );
        assert!(!dest.exists() || std::fs::read_dir(&dest).unwrap().next().is_none());
    }

    #[test]
    fn a_layer_cut_inside_an_entry_is_an_error() {
        let dest = std::env::temp_dir().join(format!("mrsi-cut-layer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::create_dir_all(&dest).unwrap();
        let tar = tar_of(&[("whole.bin", &[1; 10]), ("cut.bin", &[2; 1000])]);
        // The second entry's header and 300 of its 1000 bytes.
        let cut = &tar[..512 * 3 + 300];
        let e = extract_layer(
            &mut { cut },
            Compression::None,
            cut.len() as u64,
            Path::new(""),
            Path::new("layer"),
            &dest,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot extract 'layer': entry 'cut.bin': the archive ends 300 bytes into its 1000 bytes"
        );
        // Nothing of the cut entry under any name, and the whole one not renamed either: a
        // failed layer is not flushed, and the caller discards its staging folder.
        let names: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [".whole.bin.mrsi-part"]);
        std::fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn links_must_stay_inside() {
        let inside = |l: &str, t: &str| link_stays_inside(Path::new(l), t).is_ok();
        assert!(inside("a/l", "b"));
        assert!(inside("a/l", "../b"));
        assert!(inside("a/b/l", "../../c/./d/"));
        assert!(inside("l", "."));
        assert!(!inside("l", "../x"));
        assert!(!inside("a/l", "../../x"));
        assert!(!inside("a/l", "/etc/passwd"));
        assert!(!inside("a/l", "b/../../../x"));
        assert!(!inside("l", ""));
        // `..` after a name climbs out of what the name is on disk, maybe a link.
        assert!(!inside("l", "x/.."));
        assert!(!inside("a/b/l", "../c/../d"));
    }
}
