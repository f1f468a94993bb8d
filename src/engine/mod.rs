//! The download engine: from a source and a prefix to complete files under `DEST_DIR`.
//! Its parts: `plan` (pure: listing → files), `dest` (safe writes, temporary names),
//! `archive` (extracting a lone archive).
//! It knows nothing about protocols; every backend plugs in through `fetch::Source`.
//!
//! 1. List and plan (`plan`): the whole listing is checked before a byte is written.
//! 2. Skip files a run wrote from the same object (`manifest`: same source URI, key, size and
//!    ETag, and the file untouched since); anything else is downloaded again.
//! 3. Cut the rest into tasks: objects larger than a part are fetched as ranged parts written
//!    at their offsets; the rest are one stream each. N worker threads take tasks in order.
//! 4. Each file is written under a hidden temporary name, flushed to disk and renamed once its
//!    size matches, then its folder is flushed: neither a failure nor a node crash leaves a
//!    partial (or zero-filled) file under a final name. Each file renamed is noted in the
//!    manifest. Parts done are noted in a journal next to
//!    the temporary file, so a rerun fetches only the missing parts of a large object.
//! 5. After success, temporary files a killed run left for this plan's files are removed; no
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
pub(crate) mod manifest;
pub(crate) mod plan;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use crate::error::Error;
use crate::fetch::{Source, failed};
use plan::Planned;

/// Parallel transfers when `-j` is not given: enough requests in flight to keep an object
/// store busy on many small files (measured: 8 left s3rver idle between requests, 32 gained
/// nothing more), at about 150 KiB of buffers each.
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
}

impl Default for Options {
    fn default() -> Options {
        Options {
            jobs: DEFAULT_JOBS,
            dry_run: false,
            part_size: DEFAULT_PART_SIZE,
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
}

/// What the engine tells whoever shows its work to the user (the face's progress line); the
/// engine itself prints nothing. Every method does nothing by default: `&()` watches nothing.
pub trait Watch: Sync {
    /// A dry run's plan, in order, for files under `dest`.
    fn plan(&self, _planned: &[Planned], _dest: &Path) {}
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

// What the workers count, passed on to the watch as it happens.
struct Tally<'a> {
    watch: &'a dyn Watch,
    bytes: AtomicU64,
    files: AtomicUsize,
}

impl Tally<'_> {
    fn wrote(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.watch.wrote(n);
    }

    fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.watch.file_done();
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
        if p.path().as_os_str() == manifest::NAME {
            return Err(Error::UnsafeKey {
                uri: uri.to_string(),
                key: p.key.to_string(),
                reason: format!(
                    "'{}' is this program's manifest in DEST_DIR",
                    manifest::NAME
                ),
            });
        }
    }
    if planned.is_empty() {
        return Err(Error::Empty {
            uri: uri.to_string(),
        });
    }
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
    let known = manifest::read(dest);
    let mut kept = Vec::new();
    let mut jobs = Vec::with_capacity(planned.len());
    let mut tasks = Vec::new();
    for p in planned {
        let path = dest::prepare(dest, p.path())?;
        if let Some(entry) = manifest::vouches(&known, &p, uri, &path) {
            log::debug!("{} is complete, skipping", path.display());
            kept.push(entry);
            jobs.push(FileJob::kept(p));
            continue;
        }
        let (job, parts) = FileJob::prepare(p, &path, options.part_size)?;
        let index = u32::try_from(jobs.len()).expect("a listing holds fewer than 2^32 files");
        tasks.extend(parts.into_iter().map(|part| Task { job: index, part }));
        jobs.push(job);
    }
    drop(known);
    let skipped = kept.len();
    if skipped > 0 {
        log::info!("{skipped} file(s) already complete in {}", dest.display());
    }
    let manifest = manifest::Manifest::start(dest, &kept)?;
    drop(kept);

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
                None => job.planned.size,
            }
        })
        .sum();
    let started = std::time::Instant::now();
    watch.start(total, jobs.len() - skipped);
    let tally = Tally {
        watch,
        bytes: AtomicU64::new(0),
        files: AtomicUsize::new(0),
    };
    // Files with nothing left to fetch (empty, or every part done by an earlier run).
    for job in jobs
        .iter()
        .filter(|j| !j.kept && j.remaining.load(Ordering::Relaxed) == 0)
    {
        job.finish(&at, None, &tally, &manifest)?;
    }
    transfer(source, &at, &jobs, &tasks, options.jobs, &tally, &manifest)?;
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
    let summary = Summary {
        paths,
        written: tally.files.load(Ordering::Relaxed),
        skipped,
        bytes: tally.bytes.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
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
}

// A parted file's temporary file and journal, (device, inode) each, checked whenever a part
// opens them.
struct Parted {
    made: Identity,
    journal: Identity,
}

// A file's (device, inode): the same name may later hold another file.
type Identity = (u64, u64);

// A piece of work: part `part` of a file fetched in parts, or (part 0) a whole stream. Small:
// a run holds one per file.
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
        }
    }

    // Opens the temporary file and decides what is left to fetch: the parts (by number) of a
    // large object (skipping those an earlier run finished, when its journal matches this
    // object), or one stream (part 0) otherwise.
    fn prepare(
        planned: Planned,
        path: &Path,
        part_size: u64,
    ) -> Result<(FileJob, Vec<u32>), Error> {
        let temp = dest::temp_path(path);
        let journal_path = dest::journal_path(path);
        let mut pending = Vec::new();
        let mut parted = None;
        match (planned.size, planned.ranges) {
            (Some(size), true) if size > part_size => {
                let header = journal_header(size, part_size, planned.etag.as_deref());
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
                    found.map_or_else(HashSet::new, |_| read_journal(&journal_path, &header));
                parted = Some(Box::new(match found.filter(|_| !done.is_empty()) {
                    Some((made, journal)) => {
                        log::info!(
                            "resuming {}: {} part(s) already fetched",
                            path.display(),
                            done.len()
                        );
                        Parted { made, journal }
                    }
                    None => {
                        let file = dest::create_fresh(&temp)?;
                        file.set_len(size)
                            .map_err(|e| Error::io("allocate", &temp, e))?;
                        let made = identity(&file, &temp)?;
                        let mut j = dest::create_fresh(&journal_path)?;
                        writeln!(j, "{header}")
                            .map_err(|e| Error::io("write", &journal_path, e))?;
                        let journal = identity(&j, &journal_path)?;
                        Parted { made, journal }
                    }
                }));
                let Ok(parts) = u32::try_from(size.div_ceil(part_size)) else {
                    let reason = format!("{size} bytes are more than 2^32 parts of {part_size}");
                    return Err(Error::io("plan", path, io::Error::other(reason)));
                };
                pending.extend((0..parts).filter(|i| !done.contains(&u64::from(*i))));
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
        };
        Ok((job, pending))
    }

    // The bytes part `part` covers; None for a file fetched in one piece.
    fn range(&self, part: u32, part_size: u64) -> Option<Range<u64>> {
        self.parted.as_ref()?;
        let size = self.planned.size?;
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
    fn open(&self, at: &At<'_>) -> Result<File, Error> {
        let temp = self.temp(at);
        match &self.parted {
            Some(parted) => reopen(&temp, parted.made, OpenOptions::new().write(true)),
            None => dest::create_fresh(&temp),
        }
    }

    // All tasks done: check the size, flush to disk, rename into place, flush the folder (the
    // rename), and note the file in the manifest. `file` is the last task's, if any.
    fn finish(
        &self,
        at: &At<'_>,
        file: Option<File>,
        tally: &Tally<'_>,
        manifest: &manifest::Manifest,
    ) -> Result<(), Error> {
        let file = match file {
            Some(file) => file,
            None => self.open(at)?,
        };
        let path = self.path(at);
        let temp = dest::temp_path(&path);
        let expected = match self.planned.size {
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
        dest::sync_file(&file, &temp)?;
        std::fs::rename(&temp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        if self.parted.is_some() {
            let journal = dest::journal_path(&path);
            std::fs::remove_file(&journal).map_err(|e| Error::io("remove", &journal, e))?;
        }
        dest::sync_parent(&path)?;
        log::debug!("wrote {} (flushed to disk)", path.display());
        if let Some(entry) = manifest::Entry::of(&self.planned, at.uri, &file) {
            manifest.add(&entry)?;
        }
        tally.file_done();
        Ok(())
    }
}

fn identity(file: &File, path: &Path) -> Result<Identity, Error> {
    let meta = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    Ok((meta.dev(), meta.ino()))
}

// Opens a file this run made (or checked) earlier; refuses one replaced since, or given a
// second name, which would send the writes elsewhere.
fn reopen(path: &Path, made: Identity, options: &OpenOptions) -> Result<File, Error> {
    let file = options.open(path).map_err(|e| Error::io("open", path, e))?;
    let meta = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    if (meta.dev(), meta.ino()) != made || meta.nlink() != 1 {
        let why = io::Error::other("the temporary file was replaced during the run");
        return Err(Error::io("write", path, why));
    }
    Ok(file)
}

// The journal's first line: a journal from another object (size, part size or ETag differ)
// is not trusted.
fn journal_header(size: u64, part_size: u64, etag: Option<&str>) -> String {
    format!(
        "mrsi-parts v1 size={size} part={part_size} etag={}",
        etag.unwrap_or("-")
    )
}

// Part numbers an earlier run finished, from a journal whose header matches; only whole
// lines count (a run killed mid-write leaves a partial last line).
fn read_journal(path: &Path, header: &str) -> HashSet<u64> {
    let mut text = String::new();
    if File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return HashSet::new();
    }
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some(header) {
        return HashSet::new();
    }
    lines
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| l.trim_end().parse().ok())
        .collect()
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
    // An object that arrives in one piece is hashed on the way, when its MD5 is known; the
    // parts of a large object arrive out of order, and hashing them would mean reading the
    // whole file again.
    let whole = start == 0
        && range
            .as_ref()
            .is_none_or(|r| Some(r.end) == job.planned.size);
    let file = job.open(at)?;
    let mut writer = PartWriter {
        file: &file,
        pos: start,
        // A whole file of known size ends there too: a source that sends more must not fill
        // the disk before the size is checked.
        end: range.as_ref().map(|r| r.end).or(job.planned.size),
        overrun: false,
        stop,
        tally,
        failed: None,
        md5: job
            .planned
            .md5
            .filter(|_| whole)
            .map(|_| md5::Context::new()),
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
        return Err(Error::io("write", job.temp(at), e));
    }
    result?;
    if let (Some(context), Some(expected)) = (writer.md5.take(), job.planned.md5) {
        let actual = context.finalize().0;
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
        Some(_) => {
            if let Some(parted) = &job.parted {
                // One write in append mode: workers finishing parts at once never interleave.
                let path = dest::journal_path(&job.path(at));
                let line = format!("{}\n", task.part);
                reopen(&path, parted.journal, OpenOptions::new().append(true))?
                    .write_all(line.as_bytes())
                    .map_err(|e| Error::io("write", &path, e))?;
            }
        }
        None => job.written.store(writer.pos, Ordering::Relaxed),
    }
    Ok(file)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Writes a part at its offset in the shared temporary file.
struct PartWriter<'a> {
    file: &'a File,
    pos: u64,
    end: Option<u64>,
    // The source sent past `end`.
    overrun: bool,
    stop: &'a AtomicBool,
    tally: &'a Tally<'a>,
    failed: Option<io::Error>,
    // The running MD5 of an object written in one piece.
    md5: Option<md5::Context>,
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
        if let Err(e) = self.file.write_all_at(buf, self.pos) {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        if let Some(md5) = &mut self.md5 {
            md5.consume(buf);
        }
        self.pos += buf.len() as u64;
        self.tally.wrote(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
