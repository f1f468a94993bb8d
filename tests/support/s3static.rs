//! A read-only S3 endpoint over a folder, for the benchmark's one-core case: path-style
//! `ListObjectsV2` (prefix, delimiter, pages) and `GET`/`HEAD` of objects with `Range`. It
//! sends object bytes with `std::io::copy` from the file to the socket, which Linux turns into
//! `sendfile`, and answers from a thread per connection; so it costs a small part of what any
//! client spends per GiB, and the client's own CPU decides the speed. s3rver (node, one
//! thread) cannot: it spends more per GiB than the clients do, and bounds them all alike.
//!
//! No authentication: the signature is not checked. ETags are the MD5 of each file, as S3
//! gives for single-part uploads. Faithful as far as s5cmd (the AWS SDK for Go), curl and this
//! program go: the benchmark checks every file each of them downloaded from it.
//!
//! The folder's first level is the buckets. The benchmark runs it in a process of its own, so
//! it can be pinned to a CPU like s3rver; `s3::the_static_s3_server_is_faithful_to_s5cmd_and_us`
//! proves it with s5cmd.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// One object: where its bytes are, its size and its quoted MD5 ETag.
struct Object {
    path: PathBuf,
    size: u64,
    etag: String,
}

// Every object, by bucket and key.
type Index = BTreeMap<(String, String), Object>;

const LAST_MODIFIED: &str = "Thu, 01 Jan 2026 00:00:00 GMT";
const LAST_MODIFIED_ISO: &str = "2026-01-01T00:00:00.000Z";

/// A running server; stops when dropped.
pub struct S3Static {
    server: super::server::Server,
}

impl S3Static {
    /// Indexes (and hashes) every file under `root`, then serves them on `addr` (a loopback
    /// address; port 0 for a free one).
    pub fn start(root: &Path, addr: &str) -> S3Static {
        let index = Arc::new(index(root));
        let server = super::server::Server::start(addr, move |stream| connection(stream, &index));
        S3Static { server }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }
}

// Walks `root`: each folder of its first level is a bucket, every file below one an object.
fn index(root: &Path) -> Index {
    let mut index = Index::new();
    for bucket in std::fs::read_dir(root).unwrap().flatten() {
        let name = bucket.file_name().to_string_lossy().into_owned();
        let mut pending = vec![bucket.path()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_type().unwrap().is_dir() {
                    pending.push(path);
                    continue;
                }
                let key = path.strip_prefix(bucket.path()).unwrap();
                let key = key.to_string_lossy().into_owned();
                let bytes = std::fs::read(&path).unwrap();
                let etag = format!("\"{:x}\"", md5::compute(&bytes));
                let size = bytes.len() as u64;
                index.insert((name.clone(), key), Object { path, size, etag });
            }
        }
    }
    index
}

// Answers requests on one kept-alive connection until the client closes it.
fn connection(stream: TcpStream, index: &Index) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let mut range = None;
        let mut length = 0u64;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let Some((name, value)) = h.trim_end().split_once(':') else {
                break;
            };
            match name.to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_string()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        // A body (none expected) is read and dropped so the next request starts clean.
        if length > 0
            && std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).is_err()
        {
            return;
        }
        if answer(&mut out, index, method, target, range.as_deref()).is_err() {
            return;
        }
    }
}

fn answer(
    out: &mut TcpStream,
    index: &Index,
    method: &str,
    target: &str,
    range: Option<&str>,
) -> std::io::Result<()> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = decode(path.trim_start_matches('/'));
    let (bucket, key) = path.split_once('/').unwrap_or((&path, ""));
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    if key.is_empty() {
        if params.contains_key("list-type") {
            let body = list(index, bucket, &params);
            return respond(out, "200 OK", "application/xml", &body, method);
        }
        // HeadBucket, GetBucketLocation and the like: the bucket is there.
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></LocationConstraint>";
        return respond(out, "200 OK", "application/xml", body, method);
    }
    let Some(object) = index.get(&(bucket.to_string(), key.to_string())) else {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        return respond(out, "404 Not Found", "application/xml", body, method);
    };
    let (status, start, end) = match range.and_then(|r| parse_range(r, object.size)) {
        Some((start, end)) => ("206 Partial Content", start, end),
        None => ("200 OK", 0, object.size),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nETag: {}\r\nLast-Modified: {LAST_MODIFIED}\r\nAccept-Ranges: bytes\r\n",
        end - start,
        object.etag
    );
    if status.starts_with("206") {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{}\r\n",
            end - 1,
            object.size
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut file = File::open(&object.path)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))?;
    // File to socket: std copies this with sendfile on Linux.
    let sent = std::io::copy(&mut file.take(end - start), out)?;
    assert_eq!(sent, end - start, "s3static: {} changed under it", key);
    Ok(())
}

// `bytes=A-B` or `bytes=A-` as a half-open span inside `size`; `None` for anything else
// (answered whole).
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => size,
        b => b.parse::<u64>().ok()?.saturating_add(1).min(size),
    };
    (start < end).then_some((start, end))
}

// A ListObjectsV2 page: keys after the continuation token (or `start-after`) under the
// prefix, rolled up at the delimiter, at most `max-keys` (1,000) entries.
fn list(index: &Index, bucket: &str, params: &BTreeMap<String, String>) -> String {
    let empty = String::new();
    let prefix = params.get("prefix").unwrap_or(&empty);
    let delimiter = params.get("delimiter").filter(|d| !d.is_empty());
    let after = params
        .get("continuation-token")
        .or(params.get("start-after"))
        .unwrap_or(&empty);
    let max: usize = params
        .get("max-keys")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let mut contents = String::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut count = 0;
    let mut next = None;
    let mut last = String::new();
    for ((b, key), object) in index.range((bucket.to_string(), prefix.clone())..) {
        if b != bucket || !key.starts_with(prefix.as_str()) {
            break;
        }
        // Past the token: a key after it, and not under it when it is a rolled-up prefix.
        if key.as_str() <= after.as_str()
            || (delimiter.is_some_and(|d| after.ends_with(d.as_str()))
                && key.starts_with(after.as_str()))
        {
            continue;
        }
        let rolled = delimiter.and_then(|d| {
            let rest = &key[prefix.len()..];
            rest.find(d.as_str())
                .map(|i| key[..prefix.len() + i + d.len()].to_string())
        });
        if let Some(common) = &rolled
            && prefixes.last() == Some(common)
        {
            continue;
        }
        if count == max {
            next = Some(());
            break;
        }
        count += 1;
        last = rolled.clone().unwrap_or(key.clone());
        match rolled {
            Some(common) => prefixes.push(common),
            None => contents.push_str(&format!(
                "<Contents><Key>{}</Key><LastModified>{LAST_MODIFIED_ISO}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                xml(key),
                xml(&object.etag),
                object.size
            )),
        }
    }
    // The token is the last key or rolled-up prefix returned: the next page starts after it.
    let mut page = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{count}</KeyCount><MaxKeys>{max}</MaxKeys><IsTruncated>{}</IsTruncated>",
        xml(bucket),
        xml(prefix),
        next.is_some()
    );
    if next.is_some() {
        page.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            xml(&last)
        ));
    }
    page.push_str(&contents);
    for p in prefixes {
        page.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            xml(&p)
        ));
    }
    page.push_str("</ListBucketResult>");
    page
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
    method: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    Ok(())
}

fn decode(text: &str) -> String {
    mr_storage_initializer::percent_decode(&text.replace('+', " ")).unwrap_or(text.to_string())
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
