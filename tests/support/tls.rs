//! TLS in front of the replay server, with a CA made at test time.
//!
//! `openssl` makes a throwaway CA and a server certificate for 127.0.0.1; a small Python
//! TLS-terminating proxy (stdlib `ssl`, one thread per connection) forwards each connection to
//! the plain replay server. Nothing trusted is ever committed: keys live in the test's temp dir.
//! The proxy can also require a client certificate signed by a given CA (as an API server
//! does), and `client_cert` makes one, its key in each PEM form a kubeconfig may hold.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A CA certificate and a server certificate/key signed by it, for IP 127.0.0.1.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the CA and server certificate in `dir`.
pub fn make_certs(dir: &Path) -> Certs {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mr-storage-initializer test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// How a client key is written: the PEM forms `client-key(-data)` may hold.
#[derive(Clone, Copy, Debug)]
pub enum KeyForm {
    /// RSA, `BEGIN PRIVATE KEY`.
    Pkcs8,
    /// RSA, `BEGIN RSA PRIVATE KEY`.
    Pkcs1,
    /// P-256, `BEGIN EC PRIVATE KEY`.
    Sec1,
}

/// A client certificate for `cn` signed by `ca`'s CA, its key in `form`: (certificate, key),
/// both in `dir`.
pub fn client_cert(dir: &Path, ca: &Certs, cn: &str, form: KeyForm) -> (PathBuf, PathBuf) {
    let (cert, key, csr) = (
        format!("{cn}.pem"),
        format!("{cn}.key"),
        format!("{cn}.csr"),
    );
    match form {
        KeyForm::Pkcs8 => openssl(dir, &["genpkey", "-algorithm", "RSA", "-out", &key]),
        KeyForm::Pkcs1 => openssl(dir, &["genrsa", "-traditional", "-out", &key, "2048"]),
        KeyForm::Sec1 => openssl(
            dir,
            &[
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
                &key,
            ],
        ),
    }
    let subject = format!("/CN={cn}/O=system:masters");
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
    );
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    let ca_key = ca.ca.with_file_name("ca.key");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca.ca.display().to_string(),
            "-CAkey",
            &ca_key.display().to_string(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.cnf",
            "-out",
            &cert,
        ],
    );
    (dir.join(cert), dir.join(key))
}

const PROXY: &str = r#"
import socket, ssl, sys, threading
cert, key, upstream_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if len(sys.argv) > 4:
    # A client certificate signed by this CA, or no connection.
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(sys.argv[4])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)

def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def handle(raw):
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        raw.close()
        return
    up = socket.create_connection(("127.0.0.1", upstream_port))
    threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
    pipe(conn, up)

while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

/// A TLS proxy on 127.0.0.1 in front of `upstream_port`; killed (by pid) when dropped.
pub struct TlsProxy {
    child: Child,
    pub port: u16,
}

impl TlsProxy {
    pub fn start(certs: &Certs, upstream_port: u16) -> TlsProxy {
        TlsProxy::spawn(certs, upstream_port, None)
    }

    /// The same, accepting only clients with a certificate signed by `client_ca`.
    pub fn start_requiring_client_cert(
        certs: &Certs,
        upstream_port: u16,
        client_ca: &Path,
    ) -> TlsProxy {
        TlsProxy::spawn(certs, upstream_port, Some(client_ca))
    }

    fn spawn(certs: &Certs, upstream_port: u16, client_ca: Option<&Path>) -> TlsProxy {
        let mut child = Command::new("python3")
            .args(["-c", PROXY])
            .arg(&certs.cert)
            .arg(&certs.key)
            .arg(upstream_port.to_string())
            .args(client_ca)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed for the TLS tests");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the TLS proxy did not start (printed {line:?})")
        });
        TlsProxy { child, port }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
