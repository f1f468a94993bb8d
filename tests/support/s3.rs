//! Real S3 servers on 127.0.0.1, one per test, stopped (by pid) when dropped.
//!
//! - `S3rver` (node, npm `s3rver`): fast; anonymous reads and writes; TLS; ETags are MD5s.
//!   It checks no SigV4 signature, so it proves nothing about signing.
//! - `S3sFs` (Rust, `s3s-fs`): checks SigV4 signatures strictly; a bucket is a folder and an
//!   object a file, so seeding is writing files.
//!
//! `.ci/install-test-servers` installs both once per machine and links `target/test-servers/`
//! to them. A test that cannot find one fails, naming that script: it never skips itself into a
//! green run.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mr_storage_initializer::TlsSettings;
use mr_storage_initializer::{Trust, agent};

use super::TempDir;
use super::tls::Certs;

/// Where `.ci/install-test-servers` links the servers (a cache shared by every clone).
pub fn servers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-servers")
}

/// The path of an installed test server, or a panic that says how to install it.
pub fn installed(relative: &str) -> PathBuf {
    let path = servers_dir().join(relative);
    assert!(
        path.is_file(),
        "{} is not installed: run `bash .ci/install-test-servers` (the README's test command does)",
        path.display()
    );
    path
}

// A server process and the folder it serves from.
struct Process {
    child: Child,
    name: &'static str,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command, port: u16) -> Process {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut process = Process { child, name };
        process.wait_for(port);
        process
    }

    // Until the port accepts connections; a server that exits or takes over 20 s fails.
    fn wait_for(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited at start: {status}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on port {port}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// s3rver on 127.0.0.1 (HTTP, or HTTPS with `certs`), serving from a temporary folder.
pub struct S3rver {
    _process: Process,
    pub dir: TempDir,
    pub port: u16,
    scheme: &'static str,
    agent: ureq::Agent,
}

impl S3rver {
    pub fn start() -> S3rver {
        S3rver::launch(None)
    }

    pub fn start_tls(certs: &Certs) -> S3rver {
        S3rver::launch(Some(certs))
    }

    fn launch(certs: Option<&Certs>) -> S3rver {
        let bin = installed("node_modules/s3rver/bin/s3rver.js");
        let dir = TempDir::new("s3rver");
        let port = super::closed_port();
        let mut cmd = Command::new("node");
        // Node 20 lacks the cipher s3rver's page tokens use unless the legacy provider is on.
        cmd.env("NODE_OPTIONS", "--openssl-legacy-provider")
            .arg(bin)
            .arg("-d")
            .arg(dir.path())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--silent"]);
        if let Some(c) = certs {
            cmd.arg("--key").arg(&c.key).arg("--cert").arg(&c.cert);
        }
        let process = Process::spawn("s3rver", &mut cmd, port);
        let trust = match certs {
            Some(c) => Trust::Only(&c.ca),
            None => Trust::Usual(&[]),
        };
        let agent = agent(&TlsSettings::default(), trust).unwrap();
        S3rver {
            _process: process,
            dir,
            port,
            scheme: if certs.is_some() { "https" } else { "http" },
            agent,
        }
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// The server's process id (the benchmark pins it to CPUs; no test needs it).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self._process.child.id()
    }

    /// Creates a bucket (an anonymous PUT: s3rver allows it).
    pub fn bucket(&self, name: &str) -> &S3rver {
        let r = self
            .agent
            .put(format!("{}/{name}", self.endpoint()))
            .send_empty()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "create bucket {name}");
        self
    }

    /// Stores an object (the key percent-encoded on the wire, except `/`).
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> &S3rver {
        let url = format!("{}/{bucket}/{}", self.endpoint(), encode_key(key));
        let r = self
            .agent
            .put(&url)
            .content_type("application/octet-stream")
            .send(body)
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "put {key}");
        self
    }

    /// Where s3rver keeps an object's bytes; its ETag (an MD5) is stored apart from them.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir
            .path()
            .join(bucket)
            .join(format!("{key}._S3rver_object"))
    }
}

/// s3s-fs on 127.0.0.1, checking signatures made with `AK`/`SK`, or anonymous when `keys` is
/// `None`.
pub struct S3sFs {
    _process: Process,
    pub dir: TempDir,
    pub port: u16,
}

/// The access key id s3s-fs accepts in the tests.
pub const ACCESS_KEY: &str = "AKIAMRSITEST";
/// The secret key s3s-fs accepts; distinctive, so the tests can look for it in output.
pub const SECRET_KEY: &str = "mrsi-s3cr3t-9f8e7d6c5b4a";

impl S3sFs {
    pub fn start() -> S3sFs {
        let bin = installed("bin/s3s-fs");
        let dir = TempDir::new("s3s-fs");
        let port = super::closed_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path());
        let process = Process::spawn("s3s-fs", &mut cmd, port);
        S3sFs {
            _process: process,
            dir,
            port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stores an object by writing its file.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> &S3sFs {
        let path = self.dir.path().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
        self
    }

    /// The environment that signs for this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }
}

fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How the stub S3 answers a GET of its one object.
#[derive(Clone, Default)]
pub struct StubObject {
    /// The object's bytes.
    pub body: Vec<u8>,
    /// Its ETag, listed and sent (without quotes).
    pub etag: String,
    /// More response headers for the GET (`x-amz-server-side-encryption: aws:kms`, checksums).
    pub headers: Vec<(&'static str, String)>,
}

/// A stub S3 where no real server can show it: one bucket `b` holding `m/object.bin`, answered
/// with the ETag and headers of `object` (an SSE-KMS object whose ETag is not its MD5, a
/// checksum). It records the headers of each object GET. Anonymous requests only.
pub struct StubS3 {
    server: super::server::Server,
    gets: std::sync::Arc<std::sync::Mutex<Vec<std::collections::HashMap<String, String>>>>,
}

impl StubS3 {
    pub fn start(object: StubObject) -> StubS3 {
        use std::io::Write;
        let gets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = gets.clone();
        let server = super::server::Server::start("127.0.0.1:0", move |stream| {
            let Some((_, target, headers)) = super::server::read_head(&stream) else {
                return;
            };
            let mut head = String::from("HTTP/1.1 200 OK\r\nConnection: close\r\n");
            let body = if target.contains("list-type=2") {
                format!(
                    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>m/object.bin</Key><Size>{}</Size><ETag>\"{}\"</ETag></Contents></ListBucketResult>",
                    object.body.len(),
                    object.etag
                )
                .into_bytes()
            } else {
                seen.lock().unwrap().push(headers);
                head.push_str(&format!("ETag: \"{}\"\r\n", object.etag));
                for (name, value) in &object.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                object.body.clone()
            };
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut stream = &stream;
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        });
        StubS3 { server, gets }
    }

    /// The environment that points the binary at the stub, unsigned.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://{}", self.server.addr())),
            ("awsAnonymousCredential", "true".into()),
        ]
    }

    /// The request headers of each object GET, names lowercased.
    pub fn gets(&self) -> Vec<std::collections::HashMap<String, String>> {
        self.gets.lock().unwrap().clone()
    }
}
