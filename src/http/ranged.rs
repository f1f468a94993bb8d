//! The resumable download: a GET of a whole body or a byte range that survives dropped
//! connections and servers that ignore `Range`.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::ops::Range;
use std::thread;
use std::time::Duration;

use ureq::http::{HeaderMap, Response};
use ureq::{Agent, Body};

use super::retry::{ATTEMPTS, backoff, gave_up, header, is_retryable, retry_after, send};
use super::status::{Failure, StatusError};
use crate::error::{Error, one_line, redact_url};

/// Bytes of a response body gathered before they are written: with N workers, downloads
/// hold N of these, plus ureq's own buffers (`INPUT_BUFFER` and `OUTPUT_BUFFER`) per
/// connection. Larger blocks mean fewer direct writes, each of which waits for the disk and
/// costs a virtio notification whatever its size: 512 KiB rather than 256 cut the client's
/// CPU per GiB by about 13% and its context switches by 40% (one core, the static S3 bench
/// server), but 16 workers over TLS then peaked at 18 MiB RSS, past the 16 MiB this program
/// keeps to; 384 KiB (with ureq's 32 KiB reads) peaks at 15 MiB.
pub(crate) const BUFFER_SIZE: usize = 384 * 1024;

/// Each write of a body but the last starts at a multiple of this in the object and holds a
/// multiple of it, from memory aligned to it: what a file opened for direct I/O (`O_DIRECT`)
/// takes as it is, straight to disk.
pub(crate) const ALIGN: usize = 4096;

// Bytes written since the attempt count last started over that start it over again.
const PROGRESS: u64 = 1 << 20;

/// Request headers as owned name and value pairs.
pub type Headers = Vec<(String, String)>;

/// Writes the bytes of `range` of `url` (all of it for `None`) to `out`.
///
/// Dropped connections, timeouts, 429 and 5xx are retried with backoff; each retry asks for
/// the bytes not yet written. A server that answers a ranged request with the whole body (200)
/// is read from the start, skipping what was already written. The attempt count starts over
/// whenever the attempts since it last did wrote 1 MiB, so a long download on a flaky link
/// keeps going, and one that trickles (a byte per connection) does not.
///
/// `headers` is asked again for each attempt, with the `Range` value that attempt sends: a
/// signature made for the first attempt may be too old for a retry after a long, slow
/// transfer (S3 accepts a signed request for 15 minutes), and Azure's Shared Key signs the
/// range itself.
pub fn get_resumable(
    agent: &Agent,
    url: &str,
    headers: &dyn Fn(Option<&str>) -> Result<Headers, Error>,
    range: Option<Range<u64>>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    get_resumable_seeing(agent, url, headers, range, out, &mut |_| {})
}

/// `get_resumable`, showing `seen` the headers of each response whose body it is about to
/// write (S3 learns from them what its ETag and checksums mean).
pub(crate) fn get_resumable_seeing(
    agent: &Agent,
    url: &str,
    headers: &dyn Fn(Option<&str>) -> Result<Headers, Error>,
    range: Option<Range<u64>>,
    out: &mut dyn Write,
    seen: &mut dyn FnMut(&HeaderMap),
) -> Result<(), Failure> {
    let mut transfer = Transfer {
        agent,
        url,
        headers,
        seen,
        pos: range.as_ref().map_or(0, |r| r.start),
        end: range.map(|r| r.end),
        buf: BUFFER.take().unwrap_or_else(Aligned::allocate),
        out,
    };
    let mut attempt = 1;
    // Where the attempt count last started over.
    let mut mark = transfer.pos;
    loop {
        let (wait, cause) = match transfer.attempt() {
            Outcome::Done => return Ok(()),
            Outcome::Fatal(failure) => return Err(failure),
            Outcome::RetryAfter(wait, cause) => (wait.unwrap_or_else(|| backoff(attempt)), cause),
        };
        // Only real progress starts the count over: a server that sends a byte per
        // connection must not keep the run going forever.
        if transfer.pos - mark >= PROGRESS {
            attempt = 1;
            mark = transfer.pos;
        }
        if attempt == ATTEMPTS {
            return Err(gave_up(&cause));
        }
        log::warn!(
            "GET {}: {cause}; retrying from byte {} (attempt {} of {ATTEMPTS})",
            redact_url(url),
            transfer.pos,
            attempt + 1
        );
        thread::sleep(wait);
        attempt += 1;
    }
}

// What one attempt came to.
enum Outcome {
    // Every byte asked for is written.
    Done,
    // Worth another try, after the server's `Retry-After` (`None`: the usual backoff).
    RetryAfter(Option<Duration>, String),
    // Trying again cannot help.
    Fatal(Failure),
}

// A download under way: where its next byte comes from and where it goes.
struct Transfer<'a> {
    agent: &'a Agent,
    url: &'a str,
    headers: &'a dyn Fn(Option<&str>) -> Result<Headers, Error>,
    seen: &'a mut dyn FnMut(&HeaderMap),
    // The next byte to write, and the end of the range asked for (exclusive): with a range,
    // every request says `Range`, even from byte 0.
    pos: u64,
    end: Option<u64>,
    buf: Aligned,
    out: &'a mut dyn Write,
}

// The buffer goes back to its thread when the download ends.
impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        BUFFER.set(Some(std::mem::take(&mut self.buf)));
    }
}

thread_local! {
    // Each thread's buffer, kept from one download to the next: a fresh one per GET meant
    // allocating and zeroing 260 KiB, 3% of the CPU on 64 KiB objects.
    static BUFFER: Cell<Option<Aligned>> = const { Cell::new(None) };
}

// `BUFFER_SIZE` bytes starting at a multiple of `ALIGN` in memory (empty by default: a
// placeholder while the buffer is away).
#[derive(Default)]
struct Aligned {
    vec: Vec<u8>,
    at: usize,
}

impl Aligned {
    fn allocate() -> Aligned {
        let vec = vec![0u8; BUFFER_SIZE + ALIGN];
        let at = vec.as_ptr().align_offset(ALIGN);
        Aligned { vec, at }
    }
}

impl Transfer<'_> {
    // One GET for the bytes not yet written.
    fn attempt(&mut self) -> Outcome {
        let pos = self.pos;
        let range = match self.end {
            Some(end) if end == pos => return Outcome::Done,
            Some(end) => Some(format!("bytes={pos}-{}", end - 1)),
            None if pos == 0 => None,
            None => Some(format!("bytes={pos}-")),
        };
        let headers = match (self.headers)(range.as_deref()) {
            Ok(headers) => headers,
            Err(e) => return Outcome::Fatal(Failure::Headers(Box::new(e))),
        };
        let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let all: Vec<_> = pairs
            .chain(range.as_deref().map(|value| ("Range", value)))
            .collect();
        let response = match send(self.agent, self.url, &all) {
            Ok(response) => response,
            Err(sent) => {
                return match sent.retry_cause(self.agent, self.url) {
                    Ok(cause) => Outcome::RetryAfter(None, cause),
                    Err(failure) => Outcome::Fatal(failure),
                };
            }
        };
        match response.status().as_u16() {
            200 => {
                if pos > 0 {
                    let shown = redact_url(self.url);
                    log::debug!("GET {shown}: the server ignored Range; skipping {pos} bytes");
                }
                (self.seen)(response.headers());
                self.write_body(response, pos)
            }
            206 => {
                let start = header(&response, "content-range").and_then(content_range);
                if start.map(|(start, _)| start) != Some(pos) {
                    return Outcome::Fatal(Failure::Other(format!(
                        "asked for bytes from {pos}, the server sent a different range"
                    )));
                }
                (self.seen)(response.headers());
                self.write_body(response, 0)
            }
            416 if self.end.is_none() && pos > 0 => Outcome::Done,
            code if is_retryable(code) => {
                Outcome::RetryAfter(retry_after(&response), format!("HTTP {code}"))
            }
            _ => Outcome::Fatal(Failure::Status(StatusError::read(response))),
        }
    }

    // Copies the body to `out`: drops its first `skip` bytes (already written), advances `pos`
    // by what was written, and stops at `end`. A body that ends short is worth another try.
    // Bytes are gathered into whole buffers before they are written (fewer, larger writes);
    // a buffer that would start off an `ALIGN` boundary (after a retry) is cut short to reach
    // the next one.
    fn write_body(&mut self, response: Response<Body>, mut skip: u64) -> Outcome {
        let mut body = response.into_body().into_reader();
        let Aligned { vec, at } = &mut self.buf;
        let buf = &mut vec[*at..*at + BUFFER_SIZE];
        let mut filled = 0;
        let mut wanted = 0;
        let failed = loop {
            if filled == 0 {
                let off = (self.pos % ALIGN as u64) as usize;
                wanted = if off == 0 { BUFFER_SIZE } else { ALIGN - off };
                if let Some(end) = self.end {
                    // A server that sends more than was asked (a 200 for a part) is cut at `end`.
                    wanted = wanted.min((end - self.pos) as usize);
                }
            }
            let n = match body.read(&mut buf[filled..wanted]) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => break Some(one_line(&e.to_string())),
            };
            let dropped = skip.min(n as u64) as usize;
            skip -= dropped as u64;
            if dropped > 0 {
                buf.copy_within(filled + dropped..filled + n, filled);
            }
            filled += n - dropped;
            if filled == wanted {
                if let Err(e) = self.out.write_all(&buf[..filled]) {
                    return Outcome::Fatal(Failure::Other(format!("writing failed: {e}")));
                }
                self.pos += filled as u64;
                filled = 0;
                if self.end == Some(self.pos) {
                    return Outcome::Done;
                }
            }
        };
        // What arrived before the body ended or broke is kept.
        if let Err(e) = self.out.write_all(&buf[..filled]) {
            return Outcome::Fatal(Failure::Other(format!("writing failed: {e}")));
        }
        self.pos += filled as u64;
        let cause = match (failed, self.end) {
            (Some(cause), _) => cause,
            (None, Some(end)) if self.pos < end => {
                format!("the connection closed at byte {} of {end}", self.pos)
            }
            _ if skip > 0 => "the body is shorter than what was already written".into(),
            _ => return Outcome::Done,
        };
        Outcome::RetryAfter(None, cause)
    }
}

/// Parses `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`): the first byte sent,
/// and the total size when the server knows it.
pub(crate) fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match span.trim() {
        "*" => total?,
        s => s.split_once('-')?.0.trim().parse().ok()?,
    };
    Some((start, total))
}
