//! What the user sees of a download: the dry run's plan on stdout, progress while
//! transferring, and the summary after. The engine reports through `engine::Watch`; this is
//! the face's way of showing it.
//!
//! Workers report each write; no thread of its own. To a log, a line goes out at
//! each tenth of the total and at least every 5 s; to a terminal, one line is redrawn at most
//! five times a second instead. Byte counts are what this run transferred (a resumed or
//! skipped file's bytes already on disk are not counted).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine::plan::Planned;
use crate::engine::{Filter, Summary, Watch};
use crate::error::escape_controls;

const LOG_EVERY: Duration = Duration::from_secs(5);
const DRAW_EVERY: Duration = Duration::from_millis(200);

/// Shared by the workers of a download; `start` begins each one afresh.
pub struct Progress {
    total: AtomicU64,
    files_total: AtomicUsize,
    bytes: AtomicU64,
    files: AtomicUsize,
    created: Instant,
    // Milliseconds since `created` at which the current transfer started.
    started_ms: AtomicU64,
    // Milliseconds since `started_ms` of the last line written.
    last_ms: AtomicU64,
    // The last tenth of `total` reported.
    last_tenth: AtomicU64,
    tty: bool,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            total: AtomicU64::new(0),
            files_total: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            files: AtomicUsize::new(0),
            created: Instant::now(),
            started_ms: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            last_tenth: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal() && log::log_enabled!(log::Level::Info),
        }
    }
}

impl Watch for Progress {
    fn plan(&self, planned: &[Planned], dest: &Path) {
        let mut out = std::io::stdout().lock();
        for p in planned {
            let size = p.size().map_or("?".to_string(), |s| s.to_string());
            // The path holds a key from a listing: its control characters are escaped.
            let path = dest.join(p.path());
            let _ = writeln!(out, "{size}\t{}", escape_controls(&path.to_string_lossy()));
        }
        let known: u64 = planned.iter().filter_map(|p| p.size()).sum();
        log::info!(
            "dry run: {} file(s), {} bytes ({}) would be written to {}; nothing written",
            planned.len(),
            known,
            human(known),
            dest.display()
        );
    }

    fn left_out(&self, filter: &Filter, listed: usize, paths: &[String]) {
        // The first names say what the patterns did; all of them at debug.
        const SHOWN: usize = 10;
        let mut names: Vec<String> = paths.iter().take(SHOWN).map(|p| format!("'{p}'")).collect();
        if paths.len() > SHOWN {
            names.push(format!("and {} more", paths.len() - SHOWN));
        }
        log::info!(
            "{} leave out {} of {listed} listed file(s): {}",
            filter.describe(),
            paths.len(),
            names.join(", ")
        );
        for path in paths.iter().skip(SHOWN) {
            log::debug!("left out by the patterns: '{path}'");
        }
    }

    fn start(&self, bytes: u64, files: usize) {
        self.total.store(bytes, Ordering::Relaxed);
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.files.store(0, Ordering::Relaxed);
        self.last_ms.store(0, Ordering::Relaxed);
        self.last_tenth.store(0, Ordering::Relaxed);
        let now = self.created.elapsed().as_millis() as u64;
        self.started_ms.store(now, Ordering::Relaxed);
    }

    fn wrote(&self, n: u64) {
        let done = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let now = (self.created.elapsed().as_millis() as u64)
            .saturating_sub(self.started_ms.load(Ordering::Relaxed));
        let last = self.last_ms.load(Ordering::Relaxed);
        if self.tty {
            if now.saturating_sub(last) >= DRAW_EVERY.as_millis() as u64 && self.claim(last, now) {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[K{}", self.line(done, now));
                let _ = err.flush();
            }
            return;
        }
        // The last tenth is the summary's to report.
        let total = self.total.load(Ordering::Relaxed);
        let tenth = (done * 10).checked_div(total).unwrap_or(0);
        let prev = self.last_tenth.load(Ordering::Relaxed);
        let tenth_due = tenth > prev
            && tenth < 10
            && self
                .last_tenth
                .compare_exchange(prev, tenth, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        let time_due =
            now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64 && self.claim(last, now);
        if tenth_due || time_due {
            self.last_ms.store(now, Ordering::Relaxed);
            log::info!("{}", self.line(done, now));
        }
    }

    fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self, summary: &Summary) {
        // Clear the live line, if one was drawn.
        if self.tty && self.last_ms.load(Ordering::Relaxed) > 0 {
            eprint!("\r\x1b[K");
        }
        log::info!(
            "downloaded {} file(s), {} bytes ({}) in {:.2} s ({:.1} MiB/s){}",
            summary.written,
            summary.bytes,
            human(summary.bytes),
            summary.seconds,
            mib_per_s(summary.bytes, summary.seconds),
            match summary.skipped {
                0 => String::new(),
                n => format!("; {n} already complete"),
            }
        );
    }
}

impl Progress {
    // Only one worker reports a given moment.
    fn claim(&self, last: u64, now: u64) -> bool {
        self.last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn line(&self, done: u64, now_ms: u64) -> String {
        let rate = mib_per_s(done, now_ms as f64 / 1000.0);
        let total = self.total.load(Ordering::Relaxed);
        let percent = (done * 100).checked_div(total).unwrap_or(0);
        format!(
            "progress: {} of {} ({percent}%), {rate:.1} MiB/s, {} of {} files",
            human(done),
            human(total),
            self.files.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed)
        )
    }
}

/// Bytes per second in MiB/s; 0 for no time at all.
pub(crate) fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / (1024.0 * 1024.0) / seconds
    } else {
        0.0
    }
}

/// `1.5 GiB`, `312.0 KiB`, `17 B`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The process's peak resident memory in KiB (`VmHWM`), on Linux.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(17), "17 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(256 << 20), "256.0 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    // Another thread may note a later draw between this thread's clock reading and its load of
    // `last_ms` (and `start` may run on a clock behind `created`): the subtraction must not
    // underflow, which panicked in debug builds (8 of 16 threads seen).
    #[test]
    fn a_draw_noted_ahead_of_this_threads_clock_does_not_underflow() {
        for tty in [false, true] {
            let progress = Progress {
                tty,
                ..Progress::default()
            };
            progress.start(100, 1);
            progress.last_ms.store(u64::MAX / 2, Ordering::Relaxed);
            progress.started_ms.store(u64::MAX / 2, Ordering::Relaxed);
            progress.wrote(1);
            assert_eq!(progress.bytes.load(Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn rates() {
        assert_eq!(mib_per_s(10 << 20, 2.0), 5.0);
        assert_eq!(mib_per_s(1, 0.0), 0.0);
    }
}
