//! The resumable download: a GET of a whole body or a byte range that survives dropped
//! connections by asking again for only the bytes not yet written (`Range`), and skips what it
//! already wrote when the server ignores ranges.

use std::io::{Read, Write};
use std::ops::Range;
use std::thread;

use ureq::Agent;

use super::redirect::send;
use super::retry::{ATTEMPTS, backoff, gave_up, is_retryable, retry_after};
use super::status::{Failure, StatusError};
use crate::error::{Error, one_line, redact_url};

/// Bytes read from a response body at a time: with N workers, downloads hold N of these,
/// plus ureq's own buffers (`INPUT_BUFFER` and `OUTPUT_BUFFER`) per connection.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Request headers as owned name and value pairs.
pub type Headers = Vec<(String, String)>;

/// Writes the bytes of `range` of `url` (all of it for `None`) to `out`.
///
/// Dropped connections, timeouts, 429 and 5xx are retried with backoff; each retry asks for
/// the bytes not yet written. A server that answers a ranged request with the whole body (200)
/// is read from the start, skipping what was already written. The attempt count starts over
/// whenever an attempt made progress, so a long download on a flaky link keeps going.
///
/// `headers` is asked again for each attempt, with the `Range` value that attempt sends: a
/// signature made for the first attempt may be too old for a retry after a long, slow
/// transfer (S3 accepts a signed request for 15 minutes), and Azure's Shared Key signs the
/// range itself.
pub fn download(
    agent: &Agent,
    url: &str,
    headers: &dyn Fn(Option<&str>) -> Result<Headers, Error>,
    range: Option<Range<u64>>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let shown = redact_url(url);
    let ranged = range.is_some();
    let (mut pos, end) = match range {
        Some(r) => (r.start, Some(r.end)),
        None => (0, None),
    };
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut attempt = 1;
    loop {
        if end == Some(pos) {
            return Ok(());
        }
        let from = pos;
        let range_header = match end {
            _ if !ranged && pos == 0 => None,
            Some(end) => Some(format!("bytes={pos}-{}", end - 1)),
            None => Some(format!("bytes={pos}-")),
        };
        let headers =
            headers(range_header.as_deref()).map_err(|e| Failure::Headers(Box::new(e)))?;
        let mut all_headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(value) = &range_header {
            all_headers.push(("Range", value));
        }
        let outcome = match send(agent, url, &all_headers) {
            Err(sent) => Err((sent.retry_cause(agent, url)?, backoff(attempt))),
            Ok(response) => {
                let status = response.status();
                match status.as_u16() {
                    200 | 206 => {
                        let skip = if status.as_u16() == 206 {
                            let start = response
                                .headers()
                                .get("content-range")
                                .and_then(|v| v.to_str().ok())
                                .and_then(content_range)
                                .map(|(start, _)| start);
                            if start != Some(pos) {
                                return Err(Failure::Other(format!(
                                    "asked for bytes from {pos}, the server sent a different range"
                                )));
                            }
                            0
                        } else {
                            if pos > 0 {
                                log::debug!(
                                    "GET {shown}: the server ignored Range; skipping {pos} bytes"
                                );
                            }
                            pos
                        };
                        let mut body = response.into_body().into_reader();
                        match stream(&mut body, skip, &mut pos, end, &mut buf, out) {
                            Ok(()) => Ok(()),
                            Err(Streamed::Read(cause)) => Err((cause, backoff(attempt))),
                            Err(Streamed::Write(e)) => {
                                return Err(Failure::Other(format!("writing failed: {e}")));
                            }
                        }
                    }
                    416 if end.is_none() && pos > 0 => Ok(()),
                    code if is_retryable(code) => {
                        let wait = retry_after(&response).unwrap_or_else(|| backoff(attempt));
                        Err((format!("HTTP {code}"), wait))
                    }
                    _ => return Err(Failure::Status(StatusError::read(response))),
                }
            }
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err((cause, wait)) => {
                if pos > from {
                    attempt = 1;
                }
                if attempt == ATTEMPTS {
                    return Err(gave_up(&cause));
                }
                log::warn!(
                    "GET {shown}: {cause}; retrying from byte {pos} (attempt {} of {ATTEMPTS})",
                    attempt + 1
                );
                thread::sleep(wait);
                attempt += 1;
            }
        }
    }
}
// How streaming a body stopped short.
enum Streamed {
    // The connection broke or the body ended early: worth a retry.
    Read(String),
    // The writer failed: final.
    Write(std::io::Error),
}

// Copies a body to `out`: drops the first `skip` bytes (already written), advances `pos` by
// what was written, and stops at `end`. A body that ends before `end` is a `Read` failure.
fn stream(
    body: &mut dyn Read,
    mut skip: u64,
    pos: &mut u64,
    end: Option<u64>,
    buf: &mut [u8],
    out: &mut dyn Write,
) -> Result<(), Streamed> {
    loop {
        let n = match body.read(buf) {
            Ok(0) => {
                return match end {
                    Some(end) if *pos < end => Err(Streamed::Read(format!(
                        "the connection closed at byte {pos} of {end}"
                    ))),
                    _ if skip > 0 => Err(Streamed::Read(
                        "the body is shorter than what was already written".into(),
                    )),
                    _ => Ok(()),
                };
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Streamed::Read(one_line(&e.to_string()))),
        };
        let mut chunk = &buf[..n];
        let dropped = skip.min(chunk.len() as u64);
        chunk = &chunk[dropped as usize..];
        skip -= dropped;
        if let Some(end) = end {
            // A server that sends more than was asked (a 200 for a part) is cut at `end`.
            let room = end - *pos;
            if (chunk.len() as u64) > room {
                chunk = &chunk[..room as usize];
            }
        }
        out.write_all(chunk).map_err(Streamed::Write)?;
        *pos += chunk.len() as u64;
        if end == Some(*pos) {
            return Ok(());
        }
    }
}

/// Parses `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`): the first byte sent,
/// and the total size when the server knows it.
pub fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
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
