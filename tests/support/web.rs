//! A std-only static file server on 127.0.0.1 for download tests and the quickstart.
//!
//! Serves the files under a folder, one request per connection, one thread per connection
//! (ranged parts arrive in parallel). Each behaviour a download must cope with is a switch:
//! ranges honoured or ignored, Content-Length sent or not, a connection cut partway through
//! the first response for a path or every response, a body trickled byte by byte or paced, redirects. Every request is recorded,
//! and every body byte sent is counted.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::server::{Server, read_head};

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Answer `Range` with 206 (else ignore it and send 200 with the whole file).
    pub ranges: bool,
    /// Send `Content-Length` (else end the body by closing the connection).
    pub content_length: bool,
    /// Close the connection after this many body bytes, once per path (only longer bodies,
    /// and never the answer to a `bytes=0-0` probe).
    pub cut_after: Option<u64>,
    /// `path -> Location`: answer 302.
    pub redirects: HashMap<String, String>,
    /// Send the body one byte at a time, this long apart.
    pub trickle: Option<Duration>,
    /// Pause this long after each 64 KiB of a body: a slow link, still fast enough for the
    /// program's low-speed limit.
    pub pace: Option<Duration>,
    /// Close every connection after this many body bytes.
    pub bytes_per_connection: Option<u64>,
    /// Bytes sent after the file in a whole-file (200) answer, counted in its Content-Length:
    /// a server that sends more than the probe listed.
    pub extra: u64,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            ranges: true,
            content_length: true,
            cut_after: None,
            redirects: HashMap::new(),
            trickle: None,
            pace: None,
            bytes_per_connection: None,
            extra: 0,
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
}

struct State {
    root: PathBuf,
    behaviour: Behaviour,
    cut_done: Vec<String>,
    seen: Vec<Seen>,
    sent: u64,
}

/// A running server; stops when dropped.
pub struct Web {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl Web {
    /// Serves `root` on 127.0.0.1 at a free port.
    pub fn start(root: &Path, behaviour: Behaviour) -> Web {
        let state = Arc::new(Mutex::new(State {
            root: root.to_path_buf(),
            behaviour,
            cut_done: Vec::new(),
            seen: Vec::new(),
            sent: 0,
        }));
        let server = {
            let state = state.clone();
            Server::start("127.0.0.1:0", move |stream| serve(stream, &state))
        };
        Web { server, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Body bytes written to the sockets so far (some may still be in flight).
    pub fn sent(&self) -> u64 {
        self.state.lock().unwrap().sent
    }

    /// Every request so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Some((_, target, headers)) = read_head(&stream) else {
        return;
    };
    let path = target.split('?').next().unwrap_or("/").to_string();
    let (behaviour, root) = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            path: path.clone(),
            headers: headers.clone(),
        });
        (s.behaviour.clone(), s.root.clone())
    };
    let mut out = &stream;
    if let Some(location) = behaviour.redirects.get(&path) {
        let _ = write!(
            out,
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    let file_path = root.join(path.trim_start_matches('/'));
    let Ok(mut file) = std::fs::File::open(&file_path).and_then(|f| {
        if f.metadata()?.is_file() {
            Ok(f)
        } else {
            Err(std::io::Error::other("not a file"))
        }
    }) else {
        let body = "no such file";
        let _ = write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    };
    let size = file.metadata().unwrap().len();
    let range = headers
        .get("range")
        .filter(|_| behaviour.ranges)
        .and_then(|r| parse_range(r, size));
    let (status, start, end) = match range {
        Some((start, end)) if start >= size => {
            let _ = write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = end;
            return;
        }
        Some((start, end)) => (206, start, end.min(size - 1) + 1),
        None => (200, 0, size),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        }
    );
    if behaviour.ranges {
        // Like nginx: the version of the file is its mtime and size.
        let meta = file.metadata().unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        head.push_str(&format!(
            "Accept-Ranges: bytes\r\nETag: \"{:x}.{:x}-{size:x}\"\r\n",
            mtime.as_secs(),
            mtime.subsec_nanos()
        ));
    }
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{size}\r\n",
            end - 1
        ));
    }
    let probe = headers.get("range").is_some_and(|r| r == "bytes=0-0");
    let extra = if status == 200 && !probe {
        behaviour.extra
    } else {
        0
    };
    if behaviour.content_length {
        head.push_str(&format!("Content-Length: {}\r\n", end - start + extra));
    }
    head.push_str("\r\n");
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    file.seek(SeekFrom::Start(start)).unwrap();
    let mut left = end - start;
    // Only a body longer than the cut is cut, once per path, and never the answer to the
    // one-byte probe (which a server without ranges answers with the whole body).
    if let Some(cut) = behaviour.cut_after.filter(|&n| left > n && !probe) {
        let mut s = state.lock().unwrap();
        if !s.cut_done.contains(&path) {
            s.cut_done.push(path.clone());
            left = cut;
        }
    }
    if let Some(n) = behaviour.bytes_per_connection {
        left = left.min(n);
    }
    if let Some(pause) = behaviour.trickle {
        let mut byte = [0u8; 1];
        while left > 0 && file.read_exact(&mut byte).is_ok() && out.write_all(&byte).is_ok() {
            left -= 1;
            std::thread::sleep(pause);
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want]).unwrap_or(0);
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
        state.lock().unwrap().sent += n as u64;
        left -= n as u64;
        if let Some(pause) = behaviour.pace {
            std::thread::sleep(pause);
        }
    }
    let mut extra = extra;
    while extra > 0 {
        let n = extra.min(buf.len() as u64) as usize;
        buf[..n].fill(b'x');
        if out.write_all(&buf[..n]).is_err() {
            break;
        }
        extra -= n as u64;
    }
    let _ = out.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

// `bytes=START-END` or `bytes=START-` (inclusive END); suffix ranges are not needed here.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = match end.trim() {
        "" => size.saturating_sub(1),
        e => e.parse().ok()?,
    };
    Some((start, end))
}
