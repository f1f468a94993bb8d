//! Progress while transferring, and the summary after.
//!
//! Workers call `add` after each write; no thread of its own. To a log, a line goes out at
//! each tenth of the total and at least every 5 s; to a terminal, one line is redrawn at most
//! five times a second instead. Byte counts are what this run transferred (a resumed or
//! skipped file's bytes already on disk are not counted).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(5);
const DRAW_EVERY: Duration = Duration::from_millis(200);

/// Shared by the workers of one download.
pub struct Progress {
    total: u64,
    files_total: usize,
    bytes: AtomicU64,
    files: AtomicUsize,
    start: Instant,
    // Milliseconds since `start` of the last line written.
    last_ms: AtomicU64,
    // The last tenth of `total` reported.
    last_tenth: AtomicU64,
    tty: bool,
}

impl Progress {
    /// `total` bytes to transfer (known sizes only) in `files_total` files.
    pub fn new(total: u64, files_total: usize) -> Progress {
        Progress {
            total,
            files_total,
            bytes: AtomicU64::new(0),
            files: AtomicUsize::new(0),
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            last_tenth: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal() && log::log_enabled!(log::Level::Info),
        }
    }

    /// Counts `n` bytes written; may report.
    pub fn add(&self, n: u64) {
        let done = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if self.tty {
            if now - last >= DRAW_EVERY.as_millis() as u64 && self.claim(last, now) {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[K{}", self.line(done, now));
                let _ = err.flush();
            }
            return;
        }
        // The last tenth is the summary's to report.
        let tenth = (done * 10).checked_div(self.total).unwrap_or(0);
        let prev = self.last_tenth.load(Ordering::Relaxed);
        let tenth_due = tenth > prev
            && tenth < 10
            && self
                .last_tenth
                .compare_exchange(prev, tenth, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        let time_due = now - last >= LOG_EVERY.as_millis() as u64 && self.claim(last, now);
        if tenth_due || time_due {
            self.last_ms.store(now, Ordering::Relaxed);
            log::info!("{}", self.line(done, now));
        }
    }

    /// Counts one finished file.
    pub fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    /// Files finished so far.
    pub fn files(&self) -> usize {
        self.files.load(Ordering::Relaxed)
    }

    /// Bytes transferred so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Seconds since the transfer started.
    pub fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Clears the live line, if one was drawn.
    pub fn finish(&self) {
        if self.tty && self.last_ms.load(Ordering::Relaxed) > 0 {
            eprint!("\r\x1b[K");
        }
    }

    // Only one worker reports a given moment.
    fn claim(&self, last: u64, now: u64) -> bool {
        self.last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn line(&self, done: u64, now_ms: u64) -> String {
        let rate = mib_per_s(done, now_ms as f64 / 1000.0);
        let percent = (done * 100).checked_div(self.total).unwrap_or(0);
        format!(
            "progress: {} of {} ({percent}%), {rate:.1} MiB/s, {} of {} files",
            human(done),
            human(self.total),
            self.files(),
            self.files_total
        )
    }
}

/// Bytes per second in MiB/s; 0 for no time at all.
pub fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / (1024.0 * 1024.0) / seconds
    } else {
        0.0
    }
}

/// `1.5 GiB`, `312.0 KiB`, `17 B`.
pub fn human(bytes: u64) -> String {
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
pub fn peak_rss_kib() -> Option<u64> {
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

    #[test]
    fn rates() {
        assert_eq!(mib_per_s(10 << 20, 2.0), 5.0);
        assert_eq!(mib_per_s(1, 0.0), 0.0);
    }
}
