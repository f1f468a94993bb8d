//! The download engine: from a source and a prefix to complete files under `DEST_DIR`.
//! Its parts: `filter` (pure: the file patterns), `plan` (pure: listing → files), `verify`
//! (pure: pinned digests), `dest` (safe writes, temporary names), `part` (the journal of a
//! file fetched in parts), `archive` (extracting a lone archive, or a layer's tar stream),
//! `layers` (a source's layers, several fetched at once, applied in order, skipped on a rerun
//! when their files are untouched).
//! It knows nothing about protocols; every backend plugs in through `fetch::Source`.
//!
//! 1. List, filter (`filter`: `STORAGE_ALLOW_PATTERNS`, `STORAGE_IGNORE_PATTERNS`) and plan
//!    (`plan`): the whole listing is checked before a byte is written, and so is the plan
//!    against the pinned digests (`verify`).
//! 2. Skip files a run wrote from the same object (`manifest`: same source URI, key, size and
//!    ETag, and the file untouched since); anything else is downloaded again.
//! 3. Cut the rest into tasks: objects larger than a part are fetched as ranged parts written
//!    at their offsets; the rest are one stream each. N worker threads take tasks in order.
//! 4. Each file is written under a hidden temporary name, flushed to disk and renamed once its
//!    size matches (its folder is flushed soon after: `Tally::renamed_into`): neither a
//!    failure nor a node crash leaves a partial (or zero-filled) file under a final name.
//!    Each file renamed is noted in the manifest. Byte ranges flushed to disk are noted in a journal next to the temporary
//!    file (`part`, every 8 MiB of a part), so a rerun fetches only what a large object is
//!    missing. The whole aligned blocks of a part go straight to disk (`O_DIRECT`), the rest
//!    through the page cache, and all of a file that is read back to be hashed (step 5).
//! 5. A file's SHA-256 is computed before its rename, at most once, when something expects
//!    one: the source (`Object::sha256`, the Hub's LFS files) or a pin, or when digests are
//!    asked for (then every file's, for the result). It is hashed while it streams when it
//!    arrives in one piece, in the same pass as its MD5; by reading it back once, in order,
//!    when it came in ranged parts (they arrive out of order, from several workers) or was
//!    kept from an earlier run (whose direct writes it sees: the kernel drops the cached
//!    pages a direct write covers). A mismatch leaves no file under the final name, and
//!    neither the temporary file nor its journal.
//! 6. After success, temporary files a killed run left for this plan's files are removed; no
//!    object may have a temporary name, so those names are this program's alone.
//!
//! Memory is bounded by workers × `http::BUFFER_SIZE` (plus ureq's buffers per connection),
//! whatever the object sizes, plus about 100 bytes and the key per file: a file's paths
//! (final, temporary, journal) and the source URI are derived when needed, not stored per file.
//!
//! A signal (SIGTERM, SIGINT) the face notes in `INTERRUPTED` stops the transfers as a failure
//! does: the temporary files and journals stay for a rerun, and `download` returns
//! `Error::Interrupted`.
//!
//! The engine prints nothing: what the user sees of a plan, progress and the summary goes
//! through the `Watch` the caller hands down.

pub(crate) mod archive;
pub(crate) mod dest;
pub(crate) mod filter;
pub(crate) mod layers;
pub(crate) mod manifest;
pub(crate) mod part;
pub(crate) mod plan;
pub(crate) mod verify;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::digest::{Algorithm, Digest, Sha256, hex, sha256_of_file};
use crate::error::Error;
use crate::fetch::{Source, failed};
use crate::http::ALIGN;
pub use filter::Filter;
use plan::Planned;
use verify::Pin;
pub use verify::Pins;

/// Parallel transfers when `-j` is not given: enough requests in flight to keep an object
/// store busy on many small files (measured: 8 left s3rver idle between requests, 32 gained
/// nothing more), at about 450 KiB of buffers each, more over TLS (`http::BUFFER_SIZE` and
/// ureq's).
pub(crate) const DEFAULT_JOBS: usize = 16;
/// Objects larger than this are fetched as ranged parts of this size: large enough that the
/// cost of a request (signing, the server's lookup) is noise, small enough that a 1 GiB file
/// still keeps 16 workers busy.
pub(crate) const DEFAULT_PART_SIZE: u64 = 64 << 20;

/// The number of the signal that asked the process to stop (SIGTERM, SIGINT), 0 while none
/// has. The face's signal handlers set it; the workers and writers stop when they see it.
pub(crate) static INTERRUPTED: AtomicUsize = AtomicUsize::new(0);

/// The signal that asked the process to stop, if one has.
pub(crate) fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal as i32),
    }
}

/// How to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Worker threads.
    pub jobs: usize,
    /// Print the plan, write nothing.
    pub dry_run: bool,
    /// Size of the ranged parts of large objects.
    pub part_size: u64,
    /// Which listed files to download (`STORAGE_ALLOW_PATTERNS`, `STORAGE_IGNORE_PATTERNS`).
    pub filter: Filter,
    /// The digests the files must have, and whether to compute them.
    pub pins: Pins,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            jobs: DEFAULT_JOBS,
            dry_run: false,
            part_size: DEFAULT_PART_SIZE,
            filter: Filter::default(),
            pins: Pins::default(),
        }
    }
}

/// What a download did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Every file of the plan, relative to `DEST_DIR`.
    pub paths: Vec<PathBuf>,
    /// Files written by this run.
    pub written: usize,
    /// Files already complete, left as they were.
    pub skipped: usize,
    /// Bytes transferred by this run.
    pub bytes: u64,
    /// Wall time of the transfer.
    pub seconds: f64,
    /// Every file's SHA-256, by path relative to `DEST_DIR`, sorted, when digests were
    /// computed (pinned, or `MRSI_SHA256`); empty otherwise.
    pub sha256: Vec<(String, [u8; 32])>,
}

/// What the engine tells whoever shows its work to the user (the face's progress line); the
/// engine itself prints nothing. Every method does nothing by default: `&()` watches nothing.
pub trait Watch: Sync {
    /// A dry run's plan, in order, for files under `dest`.
    fn plan(&self, _planned: &[Planned], _dest: &Path) {}
    /// `filter` left out these `paths` (relative to what the URI names, sorted) of `listed`
    /// files; called before the plan, dry run or not.
    fn left_out(&self, _filter: &Filter, _listed: usize, _paths: &[String]) {}
    /// The transfer starts: `bytes` to move (known sizes only) in `files` files.
    fn start(&self, _bytes: u64, _files: usize) {}
    /// `n` more bytes are on disk.
    fn wrote(&self, _n: u64) {}
    /// One more file is complete under its final name.
    fn file_done(&self) {}
    /// The transfer is over.
    fn end(&self, _summary: &Summary) {}
}

impl Watch for () {}

// How long the folders of finished files may wait to be flushed (`Tally::renamed_into`).
const FOLDER_FLUSHES: Duration = Duration::from_secs(5);

// What the workers count, passed on to the watch as it happens.
struct Tally<'a> {
    watch: &'a dyn Watch,
    bytes: AtomicU64,
    files: AtomicUsize,
    // The SHA-256 of each file done, when digests are computed.
    sha256: Mutex<Vec<(String, Sha256)>>,
    // Folders a file was renamed into, not flushed since, and when folders were last
    // flushed (`renamed_into`).
    unflushed: Mutex<(BTreeSet<PathBuf>, Instant)>,
}

impl Tally<'_> {
    fn digest(&self, path: String, digest: Sha256) {
        let mut all = self.sha256.lock().unwrap_or_else(|p| p.into_inner());
        all.push((path, digest));
    }

    fn wrote(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.watch.wrote(n);
    }

    fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.watch.file_done();
    }

    // Notes that a file was renamed into its folder. Folders are flushed (so that the renames
    // survive a crash) together: every 5 s, at once after a file fetched in parts (a rename
    // worth its cost), and when the transfers end (`flush_folders`). A file's bytes were
    // flushed before its rename, so a crash before its folder's flush can lose a name, whose
    // file a rerun fetches again, never leave one over unwritten blocks. Flushing each folder
    // after every rename instead cost 11% of the CPU (2,000 files of 64 KiB in 20 folders,
    // one core, ext4).
    fn renamed_into(&self, path: &Path, now: bool) -> Result<(), Error> {
        let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let due = {
            let mut unflushed = self.unflushed.lock().unwrap_or_else(|p| p.into_inner());
            unflushed.0.insert(folder);
            now || unflushed.1.elapsed() >= FOLDER_FLUSHES
        };
        if due { self.flush_folders() } else { Ok(()) }
    }

    // Flushes every folder noted since the last flush: all of them, even after one fails.
    fn flush_folders(&self) -> Result<(), Error> {
        let folders = {
            let mut unflushed = self.unflushed.lock().unwrap_or_else(|p| p.into_inner());
            unflushed.1 = Instant::now();
            std::mem::take(&mut unflushed.0)
        };
        let mut first = None;
        for folder in &folders {
            if let Err(e) = dest::sync_folder(folder) {
                first.get_or_insert(e);
            }
        }
        log::debug!("flushed the {} folder(s) files went into", folders.len());
        first.map_or(Ok(()), Err)
    }
}

/// Downloads everything `prefix` names in `source` into `dest`, telling `watch` as it goes.
/// `uri` is only for messages (and must hold no secret).
pub fn download(
    source: &dyn Source,
    prefix: &str,
    uri: &str,
    dest: &Path,
    options: &Options,
    watch: &dyn Watch,
) -> Result<Summary, Error> {
    let objects = source.list(prefix)?;
    let listed = objects.len();
    let relative = |p: &str, k: &str| plan::relative_key(p, k).map(str::to_string);
    let (objects, left_out) = options.filter.apply(prefix, objects, relative);
    if !left_out.is_empty() {
        watch.left_out(&options.filter, listed, &left_out);
    }
    let planned = plan::plan(prefix, objects).map_err(|e| Error::UnsafeKey {
        uri: uri.to_string(),
        key: e.key,
        reason: e.reason,
    })?;
    // No object may land under a temporary name: its file would be taken for a leftover.
    for p in &planned {
        if let Some(name) = p.path().iter().find(|n| dest::is_temp_name(n)) {
            return Err(Error::UnsafeKey {
                uri: uri.to_string(),
                key: p.key.to_string(),
                reason: format!(
                    "'{}' is named like this program's temporary files (.NAME{}, .NAME{})",
                    name.to_string_lossy(),
                    dest::TEMP_SUFFIX,
                    dest::JOURNAL_SUFFIX
                ),
            });
        }
        if [manifest::NAME, layers::RECORD]
            .map(OsStr::new)
            .contains(&p.path().as_os_str())
        {
            return Err(Error::UnsafeKey {
                uri: uri.to_string(),
                key: p.key.to_string(),
                reason: match p.path().as_os_str() == manifest::NAME {
                    true => format!(
                        "'{}' is this program's manifest in DEST_DIR",
                        manifest::NAME
                    ),
                    false => format!(
                        "'{}' is this program's layer record in DEST_DIR",
                        layers::RECORD
                    ),
                },
            });
        }
    }
    if planned.is_empty() && !left_out.is_empty() {
        return Err(Error::Filtered {
            uri: uri.to_string(),
            patterns: options.filter.describe(),
            left_out: left_out.len(),
        });
    }
    if planned.is_empty() {
        return Err(Error::Empty {
            uri: uri.to_string(),
        });
    }
    // Only pins need every path at once, to check them against the whole plan (a dry run
    // included) before a byte is fetched; unpinned, nothing per file is held beside the plan.
    let pins = match options.pins.pinned() {
        true => {
            let shown: Vec<String> = planned.iter().map(shown).collect();
            let expected = options.pins.expected(&shown);
            expected.map_err(|(path, reason)| Error::Verify {
                uri: uri.to_string(),
                path,
                reason,
            })?
        }
        false => Vec::new(),
    };
    let hashing = options.pins.hashing();
    if options.dry_run {
        watch.plan(&planned, dest);
        let paths = planned.iter().map(|p| p.path().to_path_buf()).collect();
        return Ok(Summary {
            paths,
            ..Summary::default()
        });
    }

    dest::create_root(dest)?;
    let at = At {
        dest,
        uri,
        part_size: options.part_size,
    };
    let mut known = manifest::read(dest);
    let mut skipped = 0;
    let mut jobs = Vec::with_capacity(planned.len());
    let mut tasks = Vec::new();
    let mut sha256 = Vec::new();
    // Empty when nothing is pinned: each file's pin is then None.
    let mut pins = pins.into_iter();
    // A plan that cannot go on gives back the space it reserved for its fresh files: nothing
    // was fetched into them, and they must not hold the disk while the pod restarts.
    let prepared = (|| {
        for p in planned {
            let pin = pins.next().flatten();
            let path = dest::prepare(dest, p.path())?;
            if let Some(line) = known.vouches(&p, uri, &path) {
                // A file an earlier run wrote is hashed again when digests count: it was not
                // hashed on its way in, or not against these pins. Otherwise the manifest vouches
                // for it, the source's SHA-256 included (it was checked before the rename).
                let digest = match hashing {
                    true => Some(hash_kept(&path, p.size())?),
                    false => None,
                };
                let wrong = digest.and_then(|actual| {
                    source_mismatch(&p, &actual).or_else(|| {
                        pin.filter(|pin| pin.digest != actual)
                            .map(|pin| pin.mismatch(&actual))
                    })
                });
                match wrong {
                    Some(why) => {
                        log::warn!(
                            "{} is complete but not the expected file ({why}): downloading it again",
                            path.display(),
                        );
                    }
                    None => {
                        log::debug!("{} is complete, skipping", path.display());
                        sha256.extend(digest.map(|d| (shown(&p), d)));
                        known.keep(line);
                        skipped += 1;
                        jobs.push(FileJob::kept(p));
                        continue;
                    }
                }
            }
            let (mut job, parts) = FileJob::prepare(p, &path, options.part_size)?;
            if hashing || job.planned.sha256.is_some() {
                job.check = Some(Box::new(Check {
                    record: hashing,
                    pin,
                    streamed: Mutex::new(None),
                }));
            }
            let index = u32::try_from(jobs.len()).expect("a listing holds fewer than 2^32 files");
            tasks.extend(parts.into_iter().map(|part| Task { job: index, part }));
            jobs.push(job);
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        for job in jobs
            .iter()
            .filter(|j| j.parted.as_ref().is_some_and(|p| p.resumed.is_none()))
        {
            let _ = dest::remove_temporaries(&job.path(&at));
        }
        return Err(e);
    }
    if skipped > 0 {
        log::info!("{skipped} file(s) already complete in {}", dest.display());
    }
    let manifest = manifest::Manifest::start(dest, &known)?;
    drop(known);

    // First parts of every file, then second parts, and so on: workers spread over several
    // large files rather than crowding one (writers to one file queue on its inode lock), and
    // small files, all first parts, go first.
    tasks.sort_by_key(|task| task.part);
    // A part counts its length; a file fetched in one piece, its listed size (if known).
    let total = tasks
        .iter()
        .filter_map(|t| {
            let job = &jobs[t.job as usize];
            match job.range(t.part, at.part_size) {
                Some(r) => Some(r.end - r.start),
                None => job.planned.size(),
            }
        })
        .sum();
    let started = Instant::now();
    watch.start(total, jobs.len() - skipped);
    let tally = Tally {
        watch,
        bytes: AtomicU64::new(0),
        files: AtomicUsize::new(0),
        sha256: Mutex::new(sha256),
        // DEST_DIR too: the manifest was renamed into it.
        unflushed: Mutex::new((BTreeSet::from([dest.to_path_buf()]), Instant::now())),
    };
    let done = (|| {
        // Files with nothing left to fetch (empty, or every part done by an earlier run).
        for job in jobs
            .iter()
            .filter(|j| !j.kept && j.remaining.load(Ordering::Relaxed) == 0)
        {
            job.finish(&at, None, &tally, &manifest)?;
        }
        transfer(source, &at, &jobs, &tasks, options.jobs, &tally, &manifest)
    })();
    let flushed = tally.flush_folders();
    done?;
    flushed?;
    drop(tasks);

    // The jobs end here: the paths are all that is left of them.
    let paths: Vec<PathBuf> = jobs
        .into_iter()
        .map(|j| j.planned.path().to_path_buf())
        .collect();
    let mut stale = 0;
    for path in &paths {
        stale += dest::remove_temporaries(&dest.join(path))?;
    }
    if stale > 0 {
        log::info!("removed {stale} temporary file(s) an earlier run left");
    }
    let mut sha256 = tally.sha256.into_inner().unwrap_or_else(|p| p.into_inner());
    sha256.sort();
    let summary = Summary {
        paths,
        written: tally.files.load(Ordering::Relaxed),
        skipped,
        bytes: tally.bytes.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        sha256,
    };
    watch.end(&summary);
    Ok(summary)
}

// What every file of one download shares, so no file stores it: where files go, the source
// URI (for messages) and the part size.
struct At<'a> {
    dest: &'a Path,
    uri: &'a str,
    part_size: u64,
}

// One file of the plan. Its temporary file is open only while a task writes it, so open
// files stay within the number of workers however many files a model has.
struct FileJob {
    planned: Planned,
    // Set for a file fetched in parts: its temporary file and journal, made (or checked) when
    // the job is prepared. None: the task that fetches the file creates its temporary file.
    parted: Option<Box<Parted>>,
    // Tasks not yet finished.
    remaining: AtomicU32,
    // The manifest vouches for the file on disk: nothing to fetch.
    kept: bool,
    // Bytes written, for a stream of unknown size.
    written: AtomicU64,
    // Set when the file is hashed (`Check`); boxed, as most runs hash nothing.
    check: Option<Box<Check>>,
}

// A file that is hashed: when digests are computed for the result (`record`, under its path
// relative to DEST_DIR), or because its source listed a SHA-256 (`planned.sha256`).
struct Check {
    record: bool,
    // What the bytes must hash to, if pinned.
    pin: Option<Pin>,
    // The SHA-256 of a file that arrived in one piece, hashed as it streamed.
    streamed: Mutex<Option<Sha256>>,
}

// A parted file's temporary file and journal, (device, inode) each, checked whenever a part
// opens them.
struct Parted {
    made: Identity,
    journal: Identity,
    // The byte ranges still missing when an earlier run left some on disk (cut where parts
    // end): a task's `part` numbers one of them. None for a fresh file, whose parts are all
    // missing and derived from their number.
    resumed: Option<Box<[Range<u64>]>>,
    // Taken around each write that goes through the page cache, so that the file's parts
    // take turns here rather than on the kernel's lock of the inode, which every such write
    // holds: under one CPU, 16 workers contending there cost 2.0-2.4 CPU s for 2 GiB into
    // tmpfs, taking turns here 1.5-1.6. Direct writes do not take it: they wait for the disk,
    // and into reserved space (`reserve`) the kernel lets them run side by side.
    writing: Mutex<()>,
}

// A file's (device, inode): the same name may later hold another file.
pub(crate) type Identity = (u64, u64);

// A piece of work: part `part` of a file fetched in parts (the `part`-th missing range of a
// resumed one), or (part 0) a whole stream. Small: a run holds one per file.
struct Task {
    job: u32,
    part: u32,
}

impl FileJob {
    // A file the manifest vouches for.
    fn kept(planned: Planned) -> FileJob {
        FileJob {
            planned,
            parted: None,
            remaining: AtomicU32::new(0),
            kept: true,
            written: AtomicU64::new(0),
            check: None,
        }
    }

    // Opens the temporary file and decides what is left to fetch: the parts (by number) of a
    // large object (only the ranges an earlier run did not flush to disk, when its journal
    // matches this object), or one stream (part 0) otherwise.
    fn prepare(
        planned: Planned,
        path: &Path,
        part_size: u64,
    ) -> Result<(FileJob, Vec<u32>), Error> {
        let temp = dest::temp_path(path);
        let journal_path = dest::journal_path(path);
        let mut pending = Vec::new();
        let mut parted = None;
        match (planned.size(), planned.ranges) {
            (Some(size), true) if size > part_size => {
                let header = part::header(size, planned.etag.as_deref());
                // A journal counts only beside its temporary file, at full length, and only
                // when both are plain files with no other name: a link (symbolic or hard)
                // would send the writes elsewhere.
                let own = |p: &Path| {
                    std::fs::symlink_metadata(p)
                        .ok()
                        .filter(|m| m.is_file() && m.nlink() == 1)
                };
                let found = own(&temp)
                    .filter(|m| m.len() == size)
                    .zip(own(&journal_path))
                    .map(|(t, j)| ((t.dev(), t.ino()), (j.dev(), j.ino())));
                let done =
                    found.map_or_else(Vec::new, |_| part::read(&journal_path, &header, size));
                let Ok(parts) = u32::try_from(size.div_ceil(part_size)) else {
                    let reason = format!("{size} bytes are more than 2^32 parts of {part_size}");
                    return Err(Error::io("plan", path, io::Error::other(reason)));
                };
                parted = Some(Box::new(match found.filter(|_| !done.is_empty()) {
                    Some((made, journal)) => {
                        log::info!(
                            "resuming {}: {} of {size} bytes already on disk",
                            path.display(),
                            done.iter().map(|r| r.end - r.start).sum::<u64>()
                        );
                        let missing = part::missing(size, part_size, &done);
                        // At most a gap per part and one per range read (a journal is capped).
                        let gaps = u32::try_from(missing.len()).unwrap_or(u32::MAX);
                        pending.extend(0..gaps);
                        let resumed = Some(missing.into_boxed_slice());
                        Parted {
                            made,
                            journal,
                            resumed,
                            writing: Mutex::new(()),
                        }
                    }
                    None => {
                        // The journal first: after a crash between the two, an old journal
                        // must not vouch for ranges of the fresh (zero-filled) file.
                        let mut j = dest::create_fresh(&journal_path)?;
                        writeln!(j, "{header}")
                            .map_err(|e| Error::io("write", &journal_path, e))?;
                        let journal = identity(&j, &journal_path)?;
                        let file = dest::create_fresh(&temp)?;
                        if let Err(e) = reserve(&file, &temp, size) {
                            // Nothing to resume: neither is left behind.
                            let _ = dest::remove_temporaries(path);
                            return Err(e);
                        }
                        let made = identity(&file, &temp)?;
                        pending.extend(0..parts);
                        Parted {
                            made,
                            journal,
                            resumed: None,
                            writing: Mutex::new(()),
                        }
                    }
                }));
            }
            (Some(0), _) => {}
            // One plain GET for anything not split: a Range header on a whole object only
            // makes servers and proxies take their slower path. The size is checked at the end.
            _ => pending.push(0),
        }
        let job = FileJob {
            planned,
            parted,
            remaining: AtomicU32::new(pending.len() as u32),
            kept: false,
            written: AtomicU64::new(0),
            check: None,
        };
        Ok((job, pending))
    }

    // The bytes part `part` covers; None for a file fetched in one piece.
    fn range(&self, part: u32, part_size: u64) -> Option<Range<u64>> {
        if let Some(missing) = &self.parted.as_ref()?.resumed {
            return missing.get(part as usize).cloned();
        }
        let size = self.planned.size()?;
        let start = u64::from(part) * part_size;
        Some(start..(start + part_size).min(size))
    }

    fn path(&self, at: &At<'_>) -> PathBuf {
        at.dest.join(self.planned.path())
    }

    fn temp(&self, at: &At<'_>) -> PathBuf {
        dest::temp_path(&self.path(at))
    }

    // The source broke its promise about this object (a short part, a wrong size).
    fn broken(&self, at: &At<'_>, reason: String) -> Error {
        let what = format!("'{}' of '{}'", self.planned.key, at.uri);
        failed("download", &what, (reason, None))
    }

    // Opens the temporary file for one task. A file fetched in one piece is created by the
    // worker that fetches it: creating thousands up front would put that cost (slow on a busy
    // ext4) before the first byte, on one thread.
    fn open(&self, temp: &Path) -> Result<File, Error> {
        match &self.parted {
            Some(parted) => reopen(temp, parted.made, OpenOptions::new().write(true)),
            None => dest::create_fresh(temp),
        }
    }

    // The temporary file of a parted file opened for direct I/O (`open_direct`).
    fn open_direct(&self, temp: &Path) -> Option<File> {
        open_direct(temp, self.parted.as_ref()?.made)
    }

    // All tasks done: check the size, flush to disk, rename into place (its folder is flushed
    // soon after: `Tally::renamed_into`), and note the file in the manifest. `file` is the
    // last task's, if any.
    fn finish(
        &self,
        at: &At<'_>,
        file: Option<File>,
        tally: &Tally<'_>,
        manifest: &manifest::Manifest,
    ) -> Result<(), Error> {
        let path = self.path(at);
        let temp = dest::temp_path(&path);
        let file = match file {
            Some(file) => file,
            None => self.open(&temp)?,
        };
        let expected = match self.planned.size() {
            Some(size) => size,
            None => {
                let written = self.written.load(Ordering::Relaxed);
                file.set_len(written)
                    .map_err(|e| Error::io("truncate", &temp, e))?;
                written
            }
        };
        let actual = file
            .metadata()
            .map_err(|e| Error::io("inspect", &temp, e))?
            .len();
        if actual != expected {
            return Err(self.broken(
                at,
                format!("wrote {actual} bytes, the source listed {expected}"),
            ));
        }
        if let Some(check) = &self.check {
            let digest = self.digest(at, check, &file, actual)?;
            // The source's promise first: bytes that break it are a bad transfer, whatever
            // the pins say.
            let wrong = match source_mismatch(&self.planned, &digest) {
                Some(reason) => Some(self.broken(at, reason)),
                None => check
                    .pin
                    .filter(|pin| pin.digest != digest)
                    .map(|pin| Error::Verify {
                        uri: at.uri.to_string(),
                        path: Some(shown(&self.planned)),
                        reason: pin.mismatch(&digest),
                    }),
            };
            if let Some(e) = wrong {
                // Not these bytes, not under any name; and the journal goes with the
                // temporary file, or a rerun would take the bad parts for done ones.
                dest::remove_temporaries(&path)?;
                return Err(e);
            }
            if check.record {
                tally.digest(shown(&self.planned), digest);
            }
        }
        dest::sync_file(&file, &temp)?;
        std::fs::rename(&temp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        let renamed = tally.renamed_into(&path, self.parted.is_some());
        if self.parted.is_some() {
            let journal = dest::journal_path(&path);
            std::fs::remove_file(&journal).map_err(|e| Error::io("remove", &journal, e))?;
        }
        renamed?;
        log::debug!("wrote {} (flushed to disk)", path.display());
        if let Some(entry) = manifest::Entry::of(&self.planned, at.uri, &file) {
            manifest.add(&entry)?;
        }
        tally.file_done();
        Ok(())
    }
}

impl FileJob {
    // The SHA-256 of the complete temporary file (`file`, `len` bytes): as it streamed, or
    // read back once in order (ranged parts, a file with nothing left to fetch).
    fn digest(&self, at: &At<'_>, check: &Check, file: &File, len: u64) -> Result<Sha256, Error> {
        let streamed = check
            .streamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(digest) = streamed {
            return Ok(digest);
        }
        // `file` is open for writing only; the name is reopened and must be the same file.
        let temp = self.temp(at);
        let reader = File::open(&temp).map_err(|e| Error::io("open", &temp, e))?;
        if identity(&reader, &temp)? != identity(file, &temp)? {
            let why = io::Error::other("the temporary file was replaced during the run");
            return Err(Error::io("read", &temp, why));
        }
        // Said at debug level: a second read of the same file in one run would be a waste
        // worth seeing.
        log::debug!("reading {} back to hash it", self.path(at).display());
        sha256_of_file(&reader, len).map_err(|e| Error::io("read", &temp, e))
    }
}

// A file's path relative to DEST_DIR as pins and the result name it.
fn shown(planned: &Planned) -> String {
    planned.path().to_string_lossy().into_owned()
}

// Why bytes that hash to `actual` are not the object the source listed, when it listed a
// SHA-256.
fn source_mismatch(planned: &Planned, actual: &Sha256) -> Option<String> {
    let listed = planned
        .sha256
        .as_deref()
        .filter(|listed| *listed != actual)?;
    Some(format!(
        "the bytes' SHA-256 is {}, the source listed {}",
        hex(actual),
        hex(listed)
    ))
}

// The SHA-256 of a file an earlier run completed.
fn hash_kept(path: &Path, size: Option<u64>) -> Result<Sha256, Error> {
    log::debug!("reading {} back to hash it", path.display());
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = match size {
        Some(size) => size,
        None => file
            .metadata()
            .map_err(|e| Error::io("inspect", path, e))?
            .len(),
    };
    sha256_of_file(&file, len).map_err(|e| Error::io("read", path, e))
}

// Gives the fresh temporary file of a parted file its `size`, with the space reserved where
// the file system can (`fallocate`). Two gains: a disk too small for the file fails here,
// before any byte is fetched, and ext4 lets aligned direct writes into reserved space run
// side by side, where a write into a hole takes the file's lock for the whole disk write
// (one core, 2 GiB model folder: 1,320 against 1,070 MiB/s). Where it is not supported (some
// network and FUSE file systems), the file is made sparse instead. Only fresh files: a
// resumed one keeps the blocks it has.
fn reserve(file: &File, temp: &Path, size: u64) -> Result<(), Error> {
    use rustix::io::Errno;
    // A size past what is free fails without trying: fallocate fills the disk before it
    // gives up, and other writers (this run's own parts, the node's other pods) would meet
    // the full disk meanwhile. What is free to anyone (f_bavail), not the blocks kept for
    // root: a kubelet evicts pods before those are touched. A file system that reports no
    // size (some FUSE ones) is not judged.
    if let Ok(fs) = rustix::fs::fstatvfs(file)
        && fs.f_blocks > 0
        && fs.f_frsize > 0
    {
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if free < size {
            let why = io::Error::new(
                io::ErrorKind::StorageFull,
                format!("No space left on device: {size} bytes needed, {free} free"),
            );
            return Err(Error::io("allocate", temp, why));
        }
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::NOSPC || e == Errno::DQUOT || e == Errno::FBIG => {
            // What it reserved before it gave up is given back.
            let _ = file.set_len(0);
            Err(Error::io("allocate", temp, e.into()))
        }
        Err(e) => {
            log::debug!("{}: no space reserved ({e})", temp.display());
            file.set_len(size)
                .map_err(|e| Error::io("allocate", temp, e))
        }
    }
}

fn identity(file: &File, path: &Path) -> Result<Identity, Error> {
    let meta = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    Ok((meta.dev(), meta.ino()))
}

// `temp` (made by this run, or checked) opened for direct I/O: whole aligned blocks go from
// the buffer to the disk, with no copy into the page cache, no page to allocate and none to
// write back (measured: about half the kernel time of buffered writes). None where the file
// system refuses it (tmpfs before Linux 6.6, some FUSE file systems) or only pretends (tmpfs
// since): the page cache then.
fn open_direct(temp: &Path, made: Identity) -> Option<File> {
    let mut options = OpenOptions::new();
    options.write(true).custom_flags(libc::O_DIRECT);
    let file = reopen(temp, made, &options).ok()?;
    // tmpfs (since Linux 6.6) takes O_DIRECT and copies into its page cache all the same; its
    // writes are then the kind that take turns (`Parted::writing`).
    let tmpfs = rustix::fs::fstatfs(&file).is_ok_and(|fs| fs.f_type == libc::TMPFS_MAGIC);
    (!tmpfs).then_some(file)
}

// Opens a file this run made (or checked) earlier; refuses one replaced since, or given a
// second name, which would send the writes elsewhere.
pub(crate) fn reopen(path: &Path, made: Identity, options: &OpenOptions) -> Result<File, Error> {
    let file = options.open(path).map_err(|e| Error::io("open", path, e))?;
    let meta = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    if (meta.dev(), meta.ino()) != made || meta.nlink() != 1 {
        let why = io::Error::other("the temporary file was replaced during the run");
        return Err(Error::io("write", path, why));
    }
    Ok(file)
}

// Runs the tasks on `workers` threads. The first error stops the others (their writers refuse
// further bytes) and is the one returned.
fn transfer(
    source: &dyn Source,
    at: &At<'_>,
    jobs: &[FileJob],
    tasks: &[Task],
    workers: usize,
    tally: &Tally<'_>,
    manifest: &manifest::Manifest,
) -> Result<(), Error> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        stop.store(true, Ordering::SeqCst);
        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    };
    let workers = workers.clamp(1, tasks.len().max(1));
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Some(signal) = interrupted() {
                        fail(Error::Interrupted(signal));
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(task) = tasks.get(i) else {
                        return;
                    };
                    let job = &jobs[task.job as usize];
                    // The file closes when its task ends, or with the last task's `finish`.
                    let result = run_task(source, at, job, task, &stop, tally).and_then(|file| {
                        if job.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                            job.finish(at, Some(file), tally, manifest)
                        } else {
                            Ok(())
                        }
                    });
                    if let Err(e) = result {
                        // The source only saw the writer refuse bytes: the signal is the cause.
                        fail(interrupted().map_or(e, Error::Interrupted));
                    }
                }
            });
        }
    });
    let first_error = first_error.into_inner().unwrap_or_else(|p| p.into_inner());
    first_error.map_or(Ok(()), Err)
}

fn run_task(
    source: &dyn Source,
    at: &At<'_>,
    job: &FileJob,
    task: &Task,
    stop: &AtomicBool,
    tally: &Tally<'_>,
) -> Result<File, Error> {
    let range = job.range(task.part, at.part_size);
    let start = range.as_ref().map_or(0, |r| r.start);
    match &range {
        Some(r) => log::debug!(
            "fetching '{}' of '{}' bytes {}-{}",
            job.planned.key,
            at.uri,
            r.start,
            r.end - 1
        ),
        None => log::debug!("fetching '{}' of '{}'", job.planned.key, at.uri),
    }
    // An object that arrives in one piece is hashed on the way, when its MD5 is known or its
    // SHA-256 is wanted; the parts of a large object arrive out of order, and hashing them
    // means reading the whole file again (`finish` does so for a SHA-256).
    let whole = start == 0
        && range
            .as_ref()
            .is_none_or(|r| Some(r.end) == job.planned.size());
    let temp = job.temp(at);
    let file = job.open(&temp)?;
    // A part of a journalled file records its progress as it goes.
    let journal = (job.parted.as_ref())
        .filter(|_| range.is_some())
        .map(|parted| (dest::journal_path(&job.path(at)), parted.journal));
    let mut writer = PartWriter {
        file: &file,
        // Not for a file read back to be hashed: bytes written directly are not in the page
        // cache, and reading a GiB back from disk cost 2.7 CPU s against 0.86 from the cache
        // (`benches/checks.rs`), far more than the 0.1 CPU s O_DIRECT saves on writing it.
        direct: (range.as_ref())
            .filter(|_| job.check.is_none())
            .and_then(|_| job.open_direct(&temp)),
        temp: &temp,
        pos: start,
        // A whole file of known size ends there too: a source that sends more must not fill
        // the disk before the size is checked.
        end: range.as_ref().map(|r| r.end).or(job.planned.size()),
        overrun: false,
        stop,
        tally,
        failed: None,
        md5: job
            .planned
            .md5
            .filter(|_| whole)
            .map(|_| Digest::new(Algorithm::Md5)),
        sha256: (whole && job.check.is_some()).then(|| Digest::new(Algorithm::Sha256)),
        progress: (journal.as_ref()).map(|(path, made)| part::Progress::new(path, *made, start)),
        turn: job.parted.as_ref().map(|parted| &parted.writing),
    };
    let result = source.read(&job.planned.key, range.clone(), &mut writer);
    // The writer's own failure is the cause; the source only saw its symptom.
    if writer.overrun {
        return Err(job.broken(
            at,
            match &range {
                Some(r) => format!(
                    "the source sent more than the part {}..{} holds",
                    r.start, r.end
                ),
                None => format!(
                    "the source sent more than the {} bytes it listed",
                    writer.end.unwrap_or_default()
                ),
            },
        ));
    }
    if let Some(e) = writer.failed.take() {
        return Err(e);
    }
    result?;
    if let (Some(digest), Some(check)) = (writer.sha256.take(), &job.check) {
        let digest = digest.finish().try_into().expect("SHA-256 is 32 bytes");
        *check.streamed.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
    }
    if let (Some(context), Some(expected)) = (writer.md5.take(), job.planned.md5) {
        let actual = context.finish();
        if actual != expected {
            return Err(job.broken(
                at,
                format!(
                    "the bytes' MD5 is {}, the source listed {} (ETag {})",
                    hex(&actual),
                    hex(&expected),
                    job.planned.etag.as_deref().unwrap_or("-")
                ),
            ));
        }
    }
    match &range {
        Some(range) if writer.pos != range.end => {
            return Err(job.broken(
                at,
                format!(
                    "the source stopped at byte {} of the part {}..{}",
                    writer.pos, range.start, range.end
                ),
            ));
        }
        Some(range) => {
            if let Some(progress) = &mut writer.progress {
                progress.checkpoint(&file, &temp, range.end, true)?;
            }
        }
        None => job.written.store(writer.pos, Ordering::Relaxed),
    }
    Ok(file)
}

// Writes a part at its offset in the shared temporary file.
struct PartWriter<'a> {
    file: &'a File,
    // The same file for direct I/O, used for writes that meet its alignment.
    direct: Option<File>,
    temp: &'a Path,
    pos: u64,
    end: Option<u64>,
    // The source sent past `end`.
    overrun: bool,
    stop: &'a AtomicBool,
    tally: &'a Tally<'a>,
    // Why writing (or recording progress) failed.
    failed: Option<Error>,
    // The running MD5 of an object written in one piece, when the source gave one to check.
    md5: Option<Digest>,
    // Its running SHA-256, when the file is hashed (`FileJob::hashes`).
    sha256: Option<Digest>,
    // The progress of a part of a journalled file.
    progress: Option<part::Progress<'a>>,
    // A parted file's turn to write through the page cache (`Parted::writing`).
    turn: Option<&'a Mutex<()>>,
}

impl Write for PartWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopped: another transfer failed"));
        }
        if let Some(signal) = interrupted() {
            return Err(io::Error::other(format!(
                "stopped: {}",
                Error::Interrupted(signal)
            )));
        }
        if self
            .end
            .is_some_and(|end| self.pos + buf.len() as u64 > end)
        {
            self.overrun = true;
            return Err(io::Error::other(
                "the source sent more bytes than it listed",
            ));
        }
        if let Err(e) = self.write_at(buf) {
            let kind = e.kind();
            self.failed = Some(Error::io("write", self.temp, e));
            return Err(io::Error::new(kind, "writing failed"));
        }
        if let Some(md5) = &mut self.md5 {
            md5.update(buf);
        }
        if let Some(sha256) = &mut self.sha256 {
            sha256.update(buf);
        }
        self.pos += buf.len() as u64;
        if let Some(progress) = &mut self.progress
            && let Err(e) = progress.checkpoint(self.file, self.temp, self.pos, false)
        {
            self.failed = Some(e);
            return Err(io::Error::other("recording progress failed"));
        }
        self.tally.wrote(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartWriter<'_> {
    // Writes `buf` at `pos`: straight to disk when it is whole blocks from aligned memory
    // (`http::get_resumable` writes in such blocks), else through the page cache. A file
    // system that refuses a direct write (EINVAL) gets buffered writes from then on.
    fn write_at(&mut self, buf: &[u8]) -> io::Result<()> {
        let aligned = |n: usize| n.is_multiple_of(ALIGN);
        let fits = aligned(buf.as_ptr() as usize)
            && aligned(buf.len())
            && self.pos.is_multiple_of(ALIGN as u64);
        if let Some(direct) = self.direct.as_ref().filter(|_| fits) {
            match direct.write_all_at(buf, self.pos) {
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    log::debug!("{}: no direct I/O ({e})", self.temp.display());
                    self.direct = None;
                }
                done => return done,
            }
        }
        let _turn = self
            .turn
            .map(|turn| turn.lock().unwrap_or_else(PoisonError::into_inner));
        self.file.write_all_at(buf, self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    // A folder of its own under the system's temporary folder, for one test.
    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mrsi-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    // `len` bytes of `byte` starting at a multiple of `ALIGN` in memory, as
    // `http::get_resumable` hands them over.
    fn aligned(len: usize, byte: u8) -> (Vec<u8>, usize) {
        let vec = vec![byte; len + ALIGN];
        let at = vec.as_ptr().align_offset(ALIGN);
        (vec, at)
    }

    // Writes `blocks` in order from byte 0 of `file` through a part's writer, with `direct`
    // as its direct handle; whether the writer still holds it afterwards.
    fn write_part(file: &File, temp: &Path, direct: Option<File>, blocks: &[&[u8]]) -> bool {
        let stop = AtomicBool::new(false);
        let tally = Tally {
            watch: &(),
            bytes: AtomicU64::new(0),
            files: AtomicUsize::new(0),
            sha256: Mutex::new(Vec::new()),
            unflushed: Mutex::new((BTreeSet::new(), Instant::now())),
        };
        let mut writer = PartWriter {
            file,
            direct,
            temp,
            pos: 0,
            end: None,
            overrun: false,
            stop: &stop,
            tally: &tally,
            failed: None,
            md5: None,
            sha256: None,
            progress: None,
            turn: None,
        };
        for block in blocks {
            writer.write_all(block).unwrap();
        }
        assert!(writer.failed.is_none());
        writer.direct.is_some()
    }

    #[test]
    fn tmpfs_gets_page_cache_writes_a_disk_direct_ones() {
        // tmpfs takes O_DIRECT since Linux 6.6 but copies into its page cache anyway: its
        // writes must take turns (`Parted::writing`), so no direct handle is given out.
        // /dev/shm is tmpfs wherever this runs (Debian, containers); the temporary folder
        // of the tests is on a disk.
        let disk = folder("direct-or-not");
        for (dir, direct) in [(Path::new("/dev/shm"), false), (disk.as_path(), true)] {
            let path = dir.join(format!("mrsi-direct-{}", std::process::id()));
            let file = File::create(&path).unwrap();
            let made = identity(&file, &path).unwrap();
            let got = open_direct(&path, made).is_some();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(got, direct, "{}", dir.display());
        }
        std::fs::remove_dir(&disk).unwrap();
    }

    #[test]
    fn a_parted_file_gets_its_space_reserved_or_a_clear_refusal() {
        let dir = folder("reserve");
        let path = dir.join("reserved");
        let file = File::create(&path).unwrap();
        let size = 48 << 20;
        reserve(&file, &path, size).unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), size);
        // Blocks of 512 bytes: all of it reserved, where a sparse file would have none.
        assert!(meta.blocks() * 512 >= size, "{} blocks", meta.blocks());
        // More than the disk holds: refused before any block is taken.
        let fs = rustix::fs::fstatvfs(&file).unwrap();
        let huge = fs.f_blocks.saturating_mul(fs.f_frsize).saturating_mul(2);
        let other = dir.join("too-large");
        let file = File::create(&other).unwrap();
        let e = reserve(&file, &other, huge).unwrap_err().to_string();
        assert!(e.contains("No space left on device"), "{e}");
        assert!(e.contains("too-large"), "{e}");
        assert_eq!(file.metadata().unwrap().blocks(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bytes_written_directly_are_what_the_read_back_sees() {
        // The file's old bytes are in the page cache when the direct write comes: the
        // read-back that hashes the file (a resumed part, a kept file) must not see them.
        let dir = folder("direct");
        let temp = dir.join(".f.mrsi-part");
        std::fs::write(&temp, vec![0x11; 3 << 20]).unwrap();
        assert_eq!(std::fs::read(&temp).unwrap(), vec![0x11; 3 << 20]);
        let file = OpenOptions::new().write(true).open(&temp).unwrap();
        let made = identity(&file, &temp).unwrap();
        let direct = open_direct(&temp, made);
        assert!(
            direct.is_some(),
            "{} refuses O_DIRECT: run the tests where TMPDIR takes it",
            dir.display()
        );
        let (one, at) = aligned(1 << 20, 0x22);
        let (two, at2) = aligned(1 << 20, 0x33);
        // Two whole aligned blocks go straight to disk, a short tail through the page cache.
        let blocks: [&[u8]; 3] = [
            &one[at..at + (1 << 20)],
            &two[at2..at2 + (1 << 20)],
            &[0x44; 1000],
        ];
        assert!(
            write_part(&file, &temp, direct, &blocks),
            "a direct write was refused"
        );
        let mut expected = vec![0x22; 1 << 20];
        expected.extend(vec![0x33; 1 << 20]);
        expected.extend(vec![0x44; 1000]);
        expected.extend(vec![0x11; (1 << 20) - 1000]);
        let reader = File::open(&temp).unwrap();
        assert_eq!(sha256_of_file(&reader, 3 << 20).unwrap(), sha256(&expected));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_refusing_direct_io_is_written_through_the_page_cache() {
        // procfs refuses O_DIRECT at open, and a write of bytes that are not a number to
        // `coredump_filter` fails with EINVAL, as a direct write refused by the file system.
        let refusing = Path::new("/proc/self/coredump_filter");
        let meta = std::fs::metadata(refusing).unwrap();
        assert!(open_direct(refusing, (meta.dev(), meta.ino())).is_none());
        let dir = folder("refused");
        let temp = dir.join(".f.mrsi-part");
        let file = dest::create_fresh(&temp).unwrap();
        let (block, at) = aligned(256 << 10, b'x');
        let block = &block[at..at + (256 << 10)];
        let einval = OpenOptions::new().write(true).open(refusing).unwrap();
        let kept = write_part(&file, &temp, Some(einval), &[block, block]);
        assert!(!kept, "the handle refusing direct writes was kept");
        assert_eq!(std::fs::read(&temp).unwrap(), vec![b'x'; 512 << 10]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
