//! `/healthz`, `/readyz` and `/metrics` over plain HTTP/1.1 (`Connection: close`): the probes
//! on `--health-probe-bind-address`, `/metrics` on `--metrics-bind-address` (nowhere when it is
//! `0`; one listener for both when the addresses are the same). `/healthz` is 200 while every
//! thread lives, else 500 naming the dead one; `/readyz` is 200 once every watched scope has
//! listed (or while standing by for the Lease), else 503 with the reason; `/metrics` is
//! Prometheus text. Each connection is answered on its own thread (16 at most), so a client
//! that connects and says nothing holds up no kubelet probe.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::Shared;
use super::cli::Flags;
use crate::error::Error;

/// What the probes report.
#[derive(Default)]
pub(crate) struct Health {
    lists_expected: AtomicUsize,
    lists_done: Mutex<std::collections::HashSet<String>>,
    ready_anyway: AtomicBool,
    dead: Mutex<Option<String>>,
    /// Why not ready, when something says (RBAC, a missing CRD).
    problem: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn expect_lists(&self, n: usize) {
        self.lists_expected.store(n, Ordering::SeqCst);
    }

    /// A scope's list completed.
    pub(crate) fn listed(&self, scope: &str) {
        self.lists_done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope.to_string());
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Ready whatever the lists say: probes-only mode, or standing by for the Lease.
    pub(crate) fn ready_anyway(&self) {
        self.ready_anyway.store(true, Ordering::SeqCst);
    }

    /// Work started (the Lease is held): readiness follows the lists again.
    pub(crate) fn working(&self) {
        self.ready_anyway.store(false, Ordering::SeqCst);
    }

    pub(crate) fn problem(&self, why: String) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub(crate) fn died(&self, thread: &str) {
        *self.dead.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread.to_string());
    }

    fn healthz(&self) -> (u16, String) {
        match &*self.dead.lock().unwrap_or_else(|e| e.into_inner()) {
            None => (200, "ok".into()),
            Some(t) => (500, format!("thread '{t}' has stopped")),
        }
    }

    fn readyz(&self) -> (u16, String) {
        if self.ready_anyway.load(Ordering::SeqCst) {
            return (200, "ok".into());
        }
        let done = self
            .lists_done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let expected = self.lists_expected.load(Ordering::SeqCst);
        if done >= expected {
            return (200, "ok".into());
        }
        let problem = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        let why = match &*problem {
            Some(p) => p.clone(),
            None => format!("{done} of {expected} InferenceService list(s) done"),
        };
        (503, format!("not ready: {why}"))
    }
}

/// How many connections are answered at once; one more is closed unanswered. A probe is
/// answered in microseconds, so only clients that connect and say nothing fill these.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its request head, or to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What one listener answers.
#[derive(Clone, Copy)]
struct Paths {
    probes: bool,
    metrics: bool,
}

/// Binds the probe address, and the metrics one when metrics are on, and serves them on
/// threads. The same address for both is one listener serving both; metrics off
/// (`--metrics-bind-address=0`) means no `/metrics` anywhere. Both addresses are bound before
/// either serves, so a busy one stops the start, naming its flag.
pub(crate) fn serve(
    flags: &Flags,
    health: Arc<Health>,
    shared: Option<Arc<Shared>>,
) -> Result<(), Error> {
    let probe = flags.probe_address.as_str();
    let metrics = flags.metrics_address.as_deref();
    let shared_address = metrics.is_some_and(|m| socket_address(m) == socket_address(probe));
    let mut wanted = vec![(
        "listen for --health-probe-bind-address on",
        probe,
        Paths {
            probes: true,
            metrics: shared_address,
        },
    )];
    if let Some(m) = metrics.filter(|_| !shared_address) {
        wanted.push((
            "listen for --metrics-bind-address on",
            m,
            Paths {
                probes: false,
                metrics: true,
            },
        ));
    }
    let mut bound = Vec::new();
    for (action, address, paths) in wanted {
        let listener = TcpListener::bind(socket_address(address))
            .map_err(|e| Error::io(action, address, e))?;
        bound.push((listener, address, paths));
    }
    for (listener, address, paths) in bound {
        let names = match (paths.probes, paths.metrics) {
            (true, true) => "/healthz, /readyz, /metrics",
            (true, false) => "/healthz, /readyz",
            (false, _) => "/metrics",
        };
        log::info!("serving {names} on {address}");
        let (health, shared) = (health.clone(), shared.clone());
        thread::Builder::new()
            .name(format!("probes {address}"))
            .spawn(move || accept(listener, &health, shared.as_ref(), paths))
            .map_err(|e| Error::io("start thread", "probes", e))?;
    }
    Ok(())
}

/// `:PORT` is every interface, as in Go.
fn socket_address(address: &str) -> String {
    match address.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => address.to_string(),
    }
}

// Each connection on its own short-lived thread, so one that stalls delays no other probe;
// at most MAX_CONNECTIONS at once.
fn accept(listener: TcpListener, health: &Arc<Health>, shared: Option<&Arc<Shared>>, paths: Paths) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming().flatten() {
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            log::debug!(
                "probe listener: {MAX_CONNECTIONS} connections open; one closed unanswered"
            );
            continue;
        }
        // Frees the connection's place however its thread ends (or fails to start).
        struct Place(Arc<AtomicUsize>);
        impl Drop for Place {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let place = Place(open.clone());
        let (health, shared) = (health.clone(), shared.cloned());
        let _ = thread::Builder::new().name("probe".into()).spawn(move || {
            let _place = place;
            answer(stream, &health, shared.as_deref(), paths);
        });
    }
}

fn answer(stream: TcpStream, health: &Health, shared: Option<&Shared>, paths: Paths) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The rest of the head, unread, is dropped with the connection.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, body, content_type) = match path {
        "/healthz" if paths.probes => {
            let (s, b) = health.healthz();
            (s, b, "text/plain")
        }
        "/readyz" if paths.probes => {
            let (s, b) = health.readyz();
            (s, b, "text/plain")
        }
        "/metrics" if paths.metrics => {
            let text = match shared {
                Some(s) => s.metrics.render(s.queue.depth()),
                None => String::new(),
            };
            (200, text, "text/plain; version=0.0.4")
        }
        _ => (404, "not found".into(), "text/plain"),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let mut out = &stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Instant;

    // No input makes a controller thread end (each loops for ever, and the release build
    // aborts on a panic), so this is checked here rather than end to end: a thread started
    // as main() starts them that returns turns /healthz into a 500 naming it.
    #[test]
    fn healthz_is_500_naming_a_thread_that_stopped() {
        let health = Arc::new(Health::default());
        assert_eq!(health.healthz(), (200, "ok".to_string()));
        super::super::spawn(&health, "worker 0".into(), || {}).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while health.healthz().0 == 200 {
            assert!(Instant::now() < deadline, "/healthz still 200");
            thread::sleep(Duration::from_millis(10));
        }
        // As the kubelet sees it.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            answer(
                stream,
                &health,
                None,
                Paths {
                    probes: true,
                    metrics: false,
                },
            );
        });
        let mut client = TcpStream::connect(address).unwrap();
        client
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        server.join().unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{reply}"
        );
        assert!(
            reply.ends_with("\r\n\r\nthread 'worker 0' has stopped"),
            "{reply}"
        );
    }
}
