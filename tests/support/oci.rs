//! Debian's `docker-registry` (the CNCF distribution registry) on 127.0.0.1, one per test,
//! stopped by pid when dropped or restarted; content pushed by ORAS's Python SDK, and images
//! built and pushed by Debian's `buildah` (`Buildah`: vfs storage in a folder of the test's,
//! no container is ever run).
//!
//! Content is pushed while the registry is open (plain HTTP, no auth); the test then restarts
//! it on the same storage with what it checks: htpasswd, token auth pointed at a stub token
//! server, or TLS with a CA made at test time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::s3::servers_dir;
use super::tls::Certs;
use super::{TempDir, closed_port};

pub const ORAS: &str = "oras-py-0.2.43";
/// modelpack-client (PyPI): a CNCF ModelPack client on ORAS, laying artifacts out as modctl.
pub const MODELPACK: &str = "modelpack-py-0.1.0";
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
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{}\n{tls}{extra}",
            root.join("data").display(),
            self.port
        );
        let path = root.join("config.yml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&path)
            // The access log: one line per request, appended across restarts.
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(root.join("access.log"))
                    .unwrap(),
            )
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
        let typed: Vec<_> = files.iter().map(|(n, b)| (*n, "", *b)).collect();
        self.push_typed(target, &typed)
    }

    /// `push_files` with each layer's media type (`""`: ORAS's default).
    pub fn push_typed(&self, target: &str, files: &[(&str, &str, &[u8])]) -> String {
        let work = TempDir::new("oras-push");
        let mut names = Vec::new();
        for (name, media_type, bytes) in files {
            std::fs::write(work.path().join(name), bytes).unwrap();
            match media_type.is_empty() {
                true => names.push(format!("{name:?}")),
                false => names.push(format!("{:?}", format!("{name}:{media_type}"))),
            }
        }
        let script = format!(
            "import oras.client\nc = oras.client.OrasClient(hostname={host:?}, insecure=True)\nr = c.push(target={target:?}, files=[{files}], disable_path_validation=True)\nprint(r.headers['Docker-Content-Digest'])\n",
            host = self.host(),
            target = format!("{}/{target}", self.host()),
            files = names.join(", ")
        );
        self.oras(&work, &script)
    }

    /// The blob GETs the registry answered so far, as `sha256:HEX` each, in order (its
    /// access log).
    pub fn blob_gets(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split("\"GET /v2/").nth(1))
            .filter_map(|l| l.split(' ').next()?.split("/blobs/").nth(1))
            .map(str::to_string)
            .collect()
    }

    /// Pushes an artifact with ORAS as `REPO:TAG`: `artifact_type`, a config (name, media
    /// type, bytes) and layers (name, media type, bytes, annotations besides the title ORAS
    /// gives each); returns the manifest's digest. oras-py's `push` has no artifact type
    /// option (the oras CLI's `--artifact-type`): it is set on the manifest as oras-py
    /// uploads it.
    pub fn push_artifact(
        &self,
        target: &str,
        artifact_type: &str,
        config: (&str, &str, &[u8]),
        layers: &[ArtifactLayer<'_>],
    ) -> String {
        let work = TempDir::new("oras-artifact");
        std::fs::write(work.path().join(config.0), config.2).unwrap();
        let mut names = Vec::new();
        let mut annotations = serde_json::Map::new();
        for (name, media_type, bytes, extra) in layers {
            std::fs::write(work.path().join(name), bytes).unwrap();
            names.push(format!("{:?}", format!("{name}:{media_type}")));
            let extra: serde_json::Map<_, _> = extra
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect();
            annotations.insert(name.to_string(), extra.into());
        }
        let annotation_file = work.path().join("annotations.json");
        std::fs::write(
            &annotation_file,
            serde_json::Value::from(annotations).to_string(),
        )
        .unwrap();
        let script = format!(
            "import oras.client, oras.provider\n\
             upload = oras.provider.Registry.upload_manifest\n\
             def typed(self, manifest, container):\n    manifest['artifactType'] = {artifact_type:?}\n    return upload(self, manifest, container)\n\
             oras.provider.Registry.upload_manifest = typed\n\
             c = oras.client.OrasClient(hostname={host:?}, insecure=True)\n\
             r = c.push(target={target:?}, files=[{files}], manifest_config={config:?}, annotation_file={annotations:?}, disable_path_validation=True)\n\
             print(r.headers['Docker-Content-Digest'])\n",
            host = self.host(),
            target = format!("{}/{target}", self.host()),
            files = names.join(", "),
            config = format!("{}:{}", config.0, config.1),
            annotations = annotation_file.to_str().unwrap(),
        );
        self.oras(&work, &script)
    }

    /// Pushes the files and folders `layers` (path below `root`, ModelPack media type) with
    /// modelpack-client as `REPO:TAG` (a folder becomes a tar layer, compressed as its media
    /// type says); returns the manifest's digest.
    pub fn push_modelpack(&self, target: &str, root: &Path, layers: &[(&str, &str)]) -> String {
        let layers: Vec<String> = layers
            .iter()
            .map(|(path, media_type)| {
                format!("ModelLayer(path={path:?}, media_type={media_type:?})")
            })
            .collect();
        let script = format!(
            "from modelpack_client import *\n\
             c = ModelPackClient(insecure=True)\n\
             config = ModelPackConfig(ModelDescriptor(name='iris', version='v1'), ModelTechnicalConfig(format='safetensors'))\n\
             print(c.push({target:?}, [{layers}], config).digest)\n",
            target = format!("{}/{target}", self.host()),
            layers = layers.join(", "),
        );
        self.python(MODELPACK, root, &script)
    }

    /// Pulls `REPO:TAG` with modelpack-client into `dest`, its tar layers unpacked.
    pub fn pull_modelpack(&self, target: &str, dest: &Path) {
        let script = format!(
            "from modelpack_client import *\nModelPackClient(insecure=True).pull({target:?}, {dest:?})\n",
            target = format!("{}/{target}", self.host()),
            dest = dest.to_str().unwrap(),
        );
        self.python(MODELPACK, dest, &script);
    }

    fn oras(&self, work: &TempDir, script: &str) -> String {
        self.python(ORAS, work.path(), script)
    }

    // Runs `script` with the Python packages in `folder` of the test servers, in `dir`.
    fn python(&self, folder: &str, dir: &Path, script: &str) -> String {
        let out = Command::new("python3")
            .current_dir(dir)
            .env("PYTHONPATH", servers_dir().join(folder))
            .args(["-c", script])
            .output()
            .expect("python3 runs oras");
        assert!(
            out.status.success(),
            "{folder} failed (is it installed? run `bash .ci/install-test-servers`): {}",
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

/// One layer `Registry::push_artifact` pushes: file name, media type, bytes, annotations.
pub type ArtifactLayer<'a> = (&'a str, &'a str, &'a [u8], &'a [(&'a str, &'a str)]);

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

const BUILDAH: &str = "/usr/bin/buildah";

/// Debian's buildah with its own storage (vfs) in a temporary folder.
pub struct Buildah {
    dir: TempDir,
}

/// One layer of an image: files written (path in the image, bytes), then paths removed.
pub struct Step<'a> {
    pub write: &'a [(&'a str, &'a [u8])],
    pub remove: &'a [&'a str],
}

impl Buildah {
    pub fn new() -> Buildah {
        assert!(
            Path::new(BUILDAH).is_file(),
            "{BUILDAH} is not installed: run `bash .ci/install-test-servers` (the Debian package buildah)"
        );
        Buildah {
            dir: TempDir::new("buildah"),
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        let root = self.dir.path();
        let out = Command::new(BUILDAH)
            .arg("--storage-driver=vfs")
            .arg(format!("--root={}", root.join("root").display()))
            .arg(format!("--runroot={}", root.join("run").display()))
            .args(args)
            .output()
            .expect("buildah runs");
        assert!(
            out.status.success(),
            "buildah {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Builds the image `name` from scratch, one layer per step (a commit after each), for
    /// `arch`.
    pub fn image(&self, name: &str, arch: &str, steps: &[Step<'_>]) {
        let mut from = "scratch".to_string();
        for step in steps {
            let container = self.run(&["from", "--arch", arch, &from]);
            let root = PathBuf::from(self.run(&["mount", &container]));
            for (path, bytes) in step.write {
                let at = root.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::write(at, bytes).unwrap();
            }
            for path in step.remove {
                let at = root.join(path.trim_start_matches('/'));
                match at.is_dir() {
                    true => std::fs::remove_dir_all(at).unwrap(),
                    false => std::fs::remove_file(at).unwrap(),
                }
            }
            self.run(&["umount", &container]);
            self.run(&["config", "--arch", arch, &container]);
            self.run(&["commit", "-q", &container, name]);
            self.run(&["rm", &container]);
            from = name.to_string();
        }
    }

    /// Pushes `name` (an image or a manifest list) to `registry` as `target`, with `extra`
    /// options (`--compression-format=zstd`); returns the manifest's digest.
    /// `verb` is `["push"]` for an image, `["manifest", "push", "--all"]` for a list.
    pub fn push(
        &self,
        verb: &[&str],
        name: &str,
        registry: &Registry,
        target: &str,
        extra: &[&str],
    ) -> String {
        let digest = self.dir.path().join("digest");
        let dest = format!("docker://{}/{target}", registry.host());
        let file = format!("--digestfile={}", digest.display());
        let mut args = verb.to_vec();
        args.extend(["-q", "--tls-verify=false", &file]);
        args.extend(extra);
        args.extend([name, &dest]);
        self.run(&args);
        std::fs::read_to_string(digest).unwrap().trim().to_string()
    }
}
