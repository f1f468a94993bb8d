//! The journal of a file fetched in ranged parts (`.NAME.mrsi-parts`): which byte ranges are
//! on disk, so that a rerun after a kill fetches only the rest.
//!
//! A worker records its part's progress every `CHECKPOINT` bytes and at the part's end, and
//! only once `fdatasync` on the temporary file has returned: a range in the journal is on
//! disk whatever stopped the run (SIGKILL, a node crash). A rerun therefore fetches at most
//! `CHECKPOINT` bytes again for each part that was in flight. The journal itself is not
//! flushed: a lost line costs only its bytes again.
//!
//! Format: a header naming the object (`mrsi-parts v2 size=N etag=E`), then one `START END`
//! line (END exclusive) per range done, each appended in one write so that lines from
//! workers recording at once never interleave. Only whole lines inside the object count.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

use super::{Identity, reopen};
use crate::error::Error;

/// Bytes of a part written between two records in its journal.
pub(crate) const CHECKPOINT: u64 = 8 << 20;

// A journal larger than this is not one this program wrote (a line per 8 MiB: 1 TiB of
// object is about 3 MB of journal), and is ignored rather than read into memory.
const MAX_JOURNAL: u64 = 16 << 20;

/// The journal's first line: a journal from another object (size or ETag differ) is not
/// trusted.
pub(crate) fn header(size: u64, etag: Option<&str>) -> String {
    format!("mrsi-parts v2 size={size} etag={}", etag.unwrap_or("-"))
}

/// The ranges of `0..size` the journal at `path` says are on disk, sorted and merged; none
/// unless its header is `header`.
pub(crate) fn read(path: &Path, header: &str, size: u64) -> Vec<Range<u64>> {
    let mut text = String::new();
    let read = File::open(path).and_then(|f| f.take(MAX_JOURNAL + 1).read_to_string(&mut text));
    if read.is_err() || text.len() as u64 > MAX_JOURNAL {
        return Vec::new();
    }
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some(header) {
        return Vec::new();
    }
    let mut done: Vec<Range<u64>> = lines
        .filter_map(|line| {
            // A run killed mid-write leaves a partial last line.
            let (start, end) = line.strip_suffix('\n')?.split_once(' ')?;
            Some(start.parse().ok()?..end.parse().ok()?)
        })
        .filter(|r: &Range<u64>| r.start < r.end && r.end <= size)
        .collect();
    done.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(done.len());
    for r in done {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// What is left of `0..size` once `done` (sorted, merged) is taken away, cut where the parts
/// of `part_size` end, so that no task is longer than a part.
pub(crate) fn missing(size: u64, part_size: u64, done: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut gaps = Vec::new();
    let mut at = 0;
    for r in done.iter().chain(std::iter::once(&(size..size))) {
        let mut start = at;
        while start < r.start {
            let end = ((start / part_size + 1) * part_size).min(r.start);
            gaps.push(start..end);
            start = end;
        }
        at = at.max(r.end);
    }
    gaps
}

/// A part's progress as it is recorded: where the bytes not yet in the journal start.
pub(crate) struct Progress<'a> {
    path: &'a Path,
    made: Identity,
    journal: Option<File>,
    recorded: u64,
}

impl<'a> Progress<'a> {
    /// The progress of a part starting at `start`, recorded in the journal at `path`.
    pub(crate) fn new(path: &'a Path, made: Identity, start: u64) -> Progress<'a> {
        Progress {
            path,
            made,
            journal: None,
            recorded: start,
        }
    }

    /// Records the bytes up to `pos` once `CHECKPOINT` of them are not yet recorded, or
    /// whatever there is with `all` (the part is done). `file` is flushed to disk first.
    pub(crate) fn checkpoint(
        &mut self,
        file: &File,
        temp: &Path,
        pos: u64,
        all: bool,
    ) -> Result<(), Error> {
        if pos <= self.recorded || (!all && pos - self.recorded < CHECKPOINT) {
            return Ok(());
        }
        file.sync_data()
            .map_err(|e| Error::io("flush to disk", temp, e))?;
        let journal = match &mut self.journal {
            Some(journal) => journal,
            None => self.journal.insert(reopen(
                self.path,
                self.made,
                OpenOptions::new().append(true),
            )?),
        };
        let line = format!("{} {pos}\n", self.recorded);
        journal
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("write", self.path, e))?;
        self.recorded = pos;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ranges written as (start, end) pairs.
    type Pairs = &'static [(u64, u64)];

    fn ranges(pairs: &[(u64, u64)]) -> Vec<Range<u64>> {
        pairs.iter().map(|&(a, b)| a..b).collect()
    }

    #[test]
    fn missing_ranges_are_the_gaps_cut_at_part_ends() {
        let cases: &[(Pairs, Pairs)] = &[
            // (done, missing) of 25 bytes in parts of 10
            (&[], &[(0, 10), (10, 20), (20, 25)]),
            (&[(0, 25)], &[]),
            (&[(3, 8)], &[(0, 3), (8, 10), (10, 20), (20, 25)]),
            (&[(0, 12), (15, 20)], &[(12, 15), (20, 25)]),
            (&[(5, 10), (10, 24)], &[(0, 5), (24, 25)]),
        ];
        for (done, gaps) in cases {
            assert_eq!(
                missing(25, 10, &ranges(done)),
                ranges(gaps),
                "done {done:?}"
            );
        }
    }

    #[test]
    fn only_whole_lines_of_the_same_object_inside_it_count() {
        let dir = std::env::temp_dir().join(format!("mrsi-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j");
        let head = header(100, Some("\"e\""));
        let cases: &[(&str, Pairs)] = &[
            ("0 10\n10 20\n50 60\n", &[(0, 20), (50, 60)]),
            ("50 60\n0 10\n5 30\n", &[(0, 30), (50, 60)]),
            // A partial last line, an empty range, one past the end, junk.
            ("0 10\n20 3", &[(0, 10)]),
            ("7 7\n90 101\nx y\n1\n", &[]),
        ];
        for (body, expected) in cases {
            std::fs::write(&path, format!("{head}\n{body}")).unwrap();
            assert_eq!(read(&path, &head, 100), ranges(expected), "{body:?}");
        }
        std::fs::write(&path, "mrsi-parts v2 size=100 etag=\"other\"\n0 10\n").unwrap();
        assert!(read(&path, &head, 100).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
