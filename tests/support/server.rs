//! The accept loop the test servers share: listen on a loopback address, hand each connection
//! to a thread of its own, and stop (joining the loop) when dropped or asked to.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// A running accept loop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (a loopback address; port 0 for a free one) and calls `handle` for
    /// every connection, each on its own thread.
    pub fn start(addr: &str, handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("test server cannot bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let handle = handle.clone();
                        thread::spawn(move || handle(stream));
                    }
                }
            })
        };
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the loop to end; connections already taken finish.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server that speaks only plain HTTP, as a registry or file server on a laptop does: every
/// request gets a 404, and a TLS ClientHello is met the way such servers meet it, by closing
/// the connection, or (`answer_tls`) by answering it in HTTP with a 400, as Go's and Python's
/// servers do. Stops when dropped.
pub struct PlainHttp {
    server: Server,
    hellos: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl PlainHttp {
    pub fn start(answer_tls: bool) -> PlainHttp {
        let hellos = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let server = {
            let (hellos, requests) = (hellos.clone(), requests.clone());
            Server::start("127.0.0.1:0", move |mut stream| {
                let mut head = [0u8; 5];
                if stream.read_exact(&mut head).is_err() {
                    return;
                }
                if head[0] == 0x16 {
                    // A TLS handshake record: read it whole, so that closing sends a FIN
                    // (end of file), not a reset.
                    let mut record = vec![0; u16::from_be_bytes([head[3], head[4]]).into()];
                    let _ = stream.read_exact(&mut record);
                    hellos.fetch_add(1, Ordering::SeqCst);
                    if answer_tls {
                        let _ = stream.write_all(
                            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                    return;
                }
                let mut seen = head.to_vec();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&seen);
                let method_and_target: Vec<&str> = text.split(' ').take(2).collect();
                requests.lock().unwrap().push(method_and_target.join(" "));
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            })
        };
        PlainHttp {
            server,
            hellos,
            requests,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        self.server.addr().to_string()
    }

    /// How many TLS ClientHellos arrived.
    pub fn hellos(&self) -> usize {
        self.hellos.load(Ordering::SeqCst)
    }

    /// `METHOD TARGET` of each plain request.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Answers with a JSON body and closes the connection (the Kubernetes and registry stand-ins).
pub fn respond_json(stream: &TcpStream, code: u16, body: &serde_json::Value) {
    let text = body.to_string();
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = out.flush();
}

/// A request's head: method, target, and headers with lowercased names. `None` when the
/// connection closed before a request line (the accept loop's own wake-up call).
pub fn read_head(stream: &TcpStream) -> Option<(String, String, HashMap<String, String>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    Some((method, target, headers))
}

/// A whole request: method, target, headers with lowercased names, and the body.
pub type Request = (String, String, HashMap<String, String>, Vec<u8>);

/// Reads a whole request, its body as long as its `Content-Length` says. `None` when the
/// connection closed before a request line.
pub fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, target, headers, body))
}

// A POSTed form, decoded; `None` for a connection that sent no request.
pub fn read_form(stream: &TcpStream) -> Option<HashMap<String, String>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if !line.starts_with("POST ") {
        return None;
    }
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let decode = |s: &str| mr_storage_initializer::percent_decode(&s.replace('+', " ")).unwrap();
    Some(
        String::from_utf8(body)
            .ok()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect(),
    )
}
