//! Debian's `docker-registry` (the CNCF distribution registry) on 127.0.0.1, one per test,
//! stopped by pid when dropped or restarted; content pushed by ORAS's Python SDK.
//!
//! Content is pushed while the registry is open (plain HTTP, no auth); the test then restarts
//! it on the same storage with what it checks: htpasswd, token auth pointed at a stub token
//! server, or TLS with a CA made at test time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::servers_dir;
use super::tls::Certs;
use super::{TempDir, closed_port};

pub const ORAS: &str = "oras-py-0.2.43";
const REGISTRY: &str = "/usr/bin/docker-registry";

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
}

impl Registry {
    /// An open registry (plain HTTP, anonymous) on an empty storage folder.
    pub fn start() -> Registry {
        let mut registry = Registry {
            child: None,
            port: 0,
            dir: TempDir::new("oci-registry"),
        };
        registry.restart("", None);
        registry
    }

    /// Stops the running server and starts another on the same storage, a new port, with
    /// `extra` (YAML at the top level: `auth:`), and TLS with `certs` when given.
    pub fn restart(&mut self, extra: &str, certs: Option<&Certs>) {
        self.stop();
        assert!(
            Path::new(REGISTRY).is_file(),
            "{REGISTRY} is not installed: run `bash .ci/install-test-servers` (the Debian package docker-registry)"
        );
        self.port = closed_port();
        let root = self.dir.path();
        let tls = match certs {
            Some(certs) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certs.cert.display(),
                certs.key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{}\n{tls}{extra}",
            root.join("data").display(),
            self.port
        );
        let path = root.join("config.yml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("registry.log")).unwrap())
            .spawn()
            .expect("cannot start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `files` (name, bytes) with ORAS as `REPO:TAG`; returns the manifest's digest
    /// (`sha256:...`).
    pub fn push_files(&self, target: &str, files: &[(&str, &[u8])]) -> String {
        let work = TempDir::new("oras-push");
        let mut names = Vec::new();
        for (name, bytes) in files {
            std::fs::write(work.path().join(name), bytes).unwrap();
            names.push(format!("{name:?}"));
        }
        let script = format!(
            "import oras.client\nc = oras.client.OrasClient(hostname={host:?}, insecure=True)\nr = c.push(target={target:?}, files=[{files}], disable_path_validation=True)\nprint(r.headers['Docker-Content-Digest'])\n",
            host = self.host(),
            target = format!("{}/{target}", self.host()),
            files = names.join(", ")
        );
        let out = Command::new("python3")
            .current_dir(work.path())
            .env("PYTHONPATH", servers_dir().join(ORAS))
            .args(["-c", &script])
            .output()
            .expect("python3 runs oras");
        assert!(
            out.status.success(),
            "oras push failed (is {ORAS} installed? run `bash .ci/install-test-servers`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Where the registry keeps the blob `sha256:HEX`.
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let dir = self.dir.path().join("data/docker/registry/v2/blobs/sha256");
        dir.join(&hex[..2]).join(hex).join("data")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The SHA-256 of `bytes` as `sha256:HEX`.
pub fn digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An htpasswd file with one bcrypt entry (`htpasswd` from apache2-utils).
pub fn htpasswd(path: &Path, user: &str, password: &str) {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("htpasswd (the Debian package apache2-utils) must be installed: run `bash .ci/install-test-servers`");
    assert!(out.status.success());
    std::fs::write(path, out.stdout).unwrap();
}
