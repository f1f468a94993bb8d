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
//!    manifest. Byte ranges flushed to disk are noted in a journal next to the temporary
//!    file (`part`), so a rerun fetches only what a large object is missing.
//! 5. After success, temporary files a killed run left for this plan's files are removed; no
//!    object may have a temporary name, so those names are this program's alone.
//!
//! Memory is bounded by workers × `http::BUFFER_SIZE` (plus ureq's buffers per connection),
//! whatever the object sizes.
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
pub(crate) mod part;
pub(crate) mod plan;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use crate::error::Error;
use crate::fetch::{Source, failed};
use crate::http::ALIGN;
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
        if let Some(name) = p.path.iter().find(|n| dest::is_temp_name(n)) {
            return Err(Error::UnsafeKey {
                uri: uri.to_string(),
                key: p.key.clone(),
                reason: format!(
                    "'{}' is named like this program's temporary files (.NAME{}, .NAME{})",
                    name.to_string_lossy(),
                    dest::TEMP_SUFFIX,
                    dest::JOURNAL_SUFFIX
                ),
            });
        }
        if p.path.as_os_str() == manifest::NAME {
            return Err(Error::UnsafeKey {
                uri: uri.to_string(),
                key: p.key.clone(),
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
    let paths: Vec<PathBuf> = planned.iter().map(|p| p.path.clone()).collect();
    if options.dry_run {
        watch.plan(&planned, dest);
        return Ok(Summary {
            paths,
            ..Summary::default()
        });
    }

    dest::create_root(dest)?;
    let known = manifest::read(dest);
    let mut kept = Vec::new();
    let mut jobs = Vec::new();
    let mut tasks = Vec::new();
    let mut skipped = 0;
    for p in planned {
        let path = dest::prepare(dest, &p.path)?;
        if let Some(entry) = manifest::vouches(&known, &p, uri, &path) {
            log::debug!("{} is complete, skipping", path.display());
            kept.push(entry);
            skipped += 1;
            continue;
        }
        let (job, ranges) = FileJob::prepare(p, path, uri, options.part_size)?;
        let index = jobs.len();
        tasks.extend(
            ranges
                .into_iter()
                .enumerate()
                .map(|(ordinal, range)| (ordinal, Task { job: index, range })),
        );
        jobs.push(job);
    }
    if skipped > 0 {
        log::info!("{skipped} file(s) already complete in {}", dest.display());
    }
    let manifest = manifest::Manifest::start(dest, &kept)?;

    // First parts of every file, then second parts, and so on: workers spread over several
    // large files rather than crowding one (writers to one file queue on its inode lock), and
    // small files, all first parts, go first.
    tasks.sort_by_key(|(ordinal, _)| *ordinal);
    let tasks: Vec<Task> = tasks.into_iter().map(|(_, task)| task).collect();
    // A part counts its length; a file fetched in one piece, its listed size (if known).
    let total = tasks
        .iter()
        .filter_map(|t| match &t.range {
            Some(r) => Some(r.end - r.start),
            None => jobs[t.job].planned.size,
        })
        .sum();
    let started = std::time::Instant::now();
    watch.start(total, jobs.len());
    let tally = Tally {
        watch,
        bytes: AtomicU64::new(0),
        files: AtomicUsize::new(0),
    };
    // Files with nothing left to fetch (empty, or every part done by an earlier run).
    for job in jobs
        .iter()
        .filter(|j| j.remaining.load(Ordering::Relaxed) == 0)
    {
        job.finish(None, &tally, &manifest)?;
    }
    transfer(source, &jobs, &tasks, options.jobs, &tally, &manifest)?;

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

// One file being written. Its temporary file is open only while a task writes it, so open
// files stay within the number of workers however many files a model has.
struct FileJob {
    planned: Planned,
    // The source URI, for messages.
    uri: String,
    path: PathBuf,
    temp: PathBuf,
    // A parted file's temporary file, made when the job is prepared: its (device, inode),
    // checked whenever a part opens it. None: the task that fetches the file creates it.
    made: Option<Identity>,
    // Which byte ranges are on disk (the journal's identity), for objects fetched in parts.
    journal: Option<Identity>,
    // Tasks not yet finished.
    remaining: AtomicUsize,
    // Bytes written, for a stream of unknown size.
    written: AtomicU64,
}

// A file's (device, inode): the same name may later hold another file.
pub(crate) type Identity = (u64, u64);

// What is left to fetch of a file: ranged parts, or one whole stream (`None`).
type Pending = Vec<Option<Range<u64>>>;

// A piece of work: one part of a file, or a whole stream (`range` None).
struct Task {
    job: usize,
    range: Option<Range<u64>>,
}

impl FileJob {
    // Opens the temporary file and decides what is left to fetch: ranged parts for large
    // objects (skipping those an earlier run finished, when its journal matches this object),
    // one stream otherwise.
    fn prepare(
        planned: Planned,
        path: PathBuf,
        uri: &str,
        part_size: u64,
    ) -> Result<(FileJob, Pending), Error> {
        let temp = dest::temp_path(&path);
        let journal_path = dest::journal_path(&path);
        let mut ranges: Pending = Vec::new();
        let mut made = None;
        let mut journal = None;
        match (planned.size, planned.ranges) {
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
                match found.filter(|_| !done.is_empty()) {
                    Some((temp_id, journal_id)) => {
                        log::info!(
                            "resuming {}: {} of {size} bytes already on disk",
                            path.display(),
                            done.iter().map(|r| r.end - r.start).sum::<u64>()
                        );
                        made = Some(temp_id);
                        journal = Some(journal_id);
                    }
                    None => {
                        let file = dest::create_fresh(&temp)?;
                        file.set_len(size)
                            .map_err(|e| Error::io("allocate", &temp, e))?;
                        made = Some(identity(&file, &temp)?);
                        let mut j = dest::create_fresh(&journal_path)?;
                        writeln!(j, "{header}")
                            .map_err(|e| Error::io("write", &journal_path, e))?;
                        journal = Some(identity(&j, &journal_path)?);
                    }
                }
                ranges.extend(part::missing(size, part_size, &done).into_iter().map(Some));
            }
            (Some(0), _) => {}
            // One plain GET for anything not split: a Range header on a whole object only
            // makes servers and proxies take their slower path. The size is checked at the end.
            _ => ranges.push(None),
        }
        let job = FileJob {
            planned,
            uri: uri.to_string(),
            path,
            temp,
            made,
            journal,
            remaining: AtomicUsize::new(ranges.len()),
            written: AtomicU64::new(0),
        };
        Ok((job, ranges))
    }

    // The source broke its promise about this object (a short part, a wrong size).
    fn broken(&self, reason: String) -> Error {
        let what = format!("'{}' of '{}'", self.planned.key, self.uri);
        failed("download", &what, (reason, None))
    }

    // Opens the temporary file for one task. A file fetched in one piece is created by the
    // worker that fetches it: creating thousands up front would put that cost (slow on a busy
    // ext4) before the first byte, on one thread.
    fn open(&self) -> Result<File, Error> {
        match self.made {
            Some(made) => reopen(&self.temp, made, OpenOptions::new().write(true)),
            None => dest::create_fresh(&self.temp),
        }
    }

    // The temporary file of a parted file opened for direct I/O: whole aligned blocks go
    // from the buffer to the disk, with no copy into the page cache, no page to allocate and
    // none to write back (measured: about half the kernel time of buffered writes). None
    // where the file system refuses it (tmpfs before Linux 6.6, some FUSE file systems).
    fn open_direct(&self) -> Option<File> {
        let mut options = OpenOptions::new();
        options.write(true).custom_flags(libc::O_DIRECT);
        reopen(&self.temp, self.made?, &options).ok()
    }

    // All tasks done: check the size, flush to disk, rename into place, flush the folder (the
    // rename), and note the file in the manifest. `file` is the last task's, if any.
    fn finish(
        &self,
        file: Option<File>,
        tally: &Tally<'_>,
        manifest: &manifest::Manifest,
    ) -> Result<(), Error> {
        let file = match file {
            Some(file) => file,
            None => self.open()?,
        };
        let expected = match self.planned.size {
            Some(size) => size,
            None => {
                let written = self.written.load(Ordering::Relaxed);
                file.set_len(written)
                    .map_err(|e| Error::io("truncate", &self.temp, e))?;
                written
            }
        };
        let actual = file
            .metadata()
            .map_err(|e| Error::io("inspect", &self.temp, e))?
            .len();
        if actual != expected {
            return Err(self.broken(format!(
                "wrote {actual} bytes, the source listed {expected}"
            )));
        }
        dest::sync_file(&file, &self.temp)?;
        std::fs::rename(&self.temp, &self.path)
            .map_err(|e| Error::io("rename into place", &self.path, e))?;
        if self.journal.is_some() {
            let journal = dest::journal_path(&self.path);
            std::fs::remove_file(&journal).map_err(|e| Error::io("remove", &journal, e))?;
        }
        dest::sync_parent(&self.path)?;
        log::debug!("wrote {} (flushed to disk)", self.path.display());
        if let Some(entry) = manifest::Entry::of(&self.planned, &self.uri, &file) {
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
                    let job = &jobs[task.job];
                    // The file closes when its task ends, or with the last task's `finish`.
                    let result = run_task(source, job, task, &stop, tally).and_then(|file| {
                        if job.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                            job.finish(Some(file), tally, manifest)
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
    job: &FileJob,
    task: &Task,
    stop: &AtomicBool,
    tally: &Tally<'_>,
) -> Result<File, Error> {
    let start = task.range.as_ref().map_or(0, |r| r.start);
    match &task.range {
        Some(r) => log::debug!(
            "fetching '{}' of '{}' bytes {}-{}",
            job.planned.key,
            job.uri,
            r.start,
            r.end - 1
        ),
        None => log::debug!("fetching '{}' of '{}'", job.planned.key, job.uri),
    }
    // An object that arrives in one piece is hashed on the way, when its MD5 is known; the
    // parts of a large object arrive out of order, and hashing them would mean reading the
    // whole file again.
    let whole = start == 0
        && task
            .range
            .as_ref()
            .is_none_or(|r| Some(r.end) == job.planned.size);
    let file = job.open()?;
    let journal_path = dest::journal_path(&job.path);
    let mut writer = PartWriter {
        file: &file,
        direct: task.range.as_ref().and_then(|_| job.open_direct()),
        temp: &job.temp,
        pos: start,
        // A whole file of known size ends there too: a source that sends more must not fill
        // the disk before the size is checked.
        end: task.range.as_ref().map(|r| r.end).or(job.planned.size),
        overrun: false,
        stop,
        tally,
        failed: None,
        md5: job
            .planned
            .md5
            .filter(|_| whole)
            .map(|_| md5::Context::new()),
        // A part of a journalled file records its progress as it goes.
        progress: job
            .journal
            .filter(|_| task.range.is_some())
            .map(|made| part::Progress::new(&journal_path, made, start)),
    };
    let result = source.read(&job.planned.key, task.range.clone(), &mut writer);
    // The writer's own failure is the cause; the source only saw its symptom.
    if writer.overrun {
        return Err(job.broken(match &task.range {
            Some(r) => format!(
                "the source sent more than the part {}..{} holds",
                r.start, r.end
            ),
            None => format!(
                "the source sent more than the {} bytes it listed",
                writer.end.unwrap_or_default()
            ),
        }));
    }
    if let Some(e) = writer.failed.take() {
        return Err(e);
    }
    result?;
    if let (Some(context), Some(expected)) = (writer.md5.take(), job.planned.md5) {
        let actual = context.finalize().0;
        if actual != expected {
            return Err(job.broken(format!(
                "the bytes' MD5 is {}, the source listed {} (ETag {})",
                hex(&actual),
                hex(&expected),
                job.planned.etag.as_deref().unwrap_or("-")
            )));
        }
    }
    match &task.range {
        Some(range) if writer.pos != range.end => {
            return Err(job.broken(format!(
                "the source stopped at byte {} of the part {}..{}",
                writer.pos, range.start, range.end
            )));
        }
        Some(range) => {
            if let Some(progress) = &mut writer.progress {
                progress.checkpoint(&file, &job.temp, range.end, true)?;
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
    // The running MD5 of an object written in one piece.
    md5: Option<md5::Context>,
    progress: Option<part::Progress<'a>>,
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
            md5.consume(buf);
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
        let fits =
            aligned(buf.as_ptr() as usize) && aligned(buf.len()) && aligned(self.pos as usize);
        if let Some(direct) = self.direct.as_ref().filter(|_| fits) {
            match direct.write_all_at(buf, self.pos) {
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    log::debug!("{}: no direct I/O ({e})", self.temp.display());
                    self.direct = None;
                }
                done => return done,
            }
        }
        self.file.write_all_at(buf, self.pos)
    }
}
