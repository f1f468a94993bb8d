//! A CONNECT proxy on 127.0.0.1 (the kind `HTTPS_PROXY`/`HTTP_PROXY` name): it records each
//! target and pipes bytes both ways. `start_mapped` sends some targets elsewhere: in-cluster
//! names (`svc.ns.svc.cluster.local:8080`) reach a server on 127.0.0.1.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::server::{Server, read_head};

/// A running proxy; stops when dropped.
pub struct Proxy {
    server: Server,
    targets: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start() -> Proxy {
        Proxy::start_mapped(&[])
    }

    /// A proxy that connects a CONNECT to `from` (host:port) with `to` instead.
    pub fn start_mapped(map: &[(&str, String)]) -> Proxy {
        let map: std::collections::HashMap<String, String> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let server = {
            let targets = targets.clone();
            Server::start("127.0.0.1:0", move |client| {
                let Some((method, target, _)) = read_head(&client) else {
                    return;
                };
                targets.lock().unwrap().push(format!("{method} {target}"));
                let mut client_w = &client;
                let address = map.get(&target).unwrap_or(&target);
                let ("CONNECT", Ok(upstream)) = (method.as_str(), TcpStream::connect(address))
                else {
                    let _ = client_w
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
                    return;
                };
                let _ = client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut c_read, mut u_write) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let up = thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut u_write);
                    let _ = u_write.shutdown(Shutdown::Write);
                });
                let (mut u_read, mut c_write) = (upstream, client);
                let _ = std::io::copy(&mut u_read, &mut c_write);
                let _ = c_write.shutdown(Shutdown::Write);
                let _ = up.join();
            })
        };
        Proxy { server, targets }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// `CONNECT host:port` for each connection so far.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}
