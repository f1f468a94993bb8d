//! Azurite (npm `azurite`) on 127.0.0.1, one per test, stopped (by pid) when dropped; seeded,
//! and its SAS tokens minted, by Microsoft's own Python SDK (`azure-storage-blob`), so the
//! signatures the tests rely on are computed independently of the code under test.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::{installed, servers_dir};
use super::{TempDir, closed_port};

/// Azurite's public development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its key, published by Microsoft.
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const SEED: &str = r#"
import json, sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
job = json.load(sys.stdin)
svc = BlobServiceClient.from_connection_string(job["connection_string"])
c = svc.get_container_client(job["container"])
c.create_container()
def put(blob):
    name, path = blob
    with open(path, "rb") as f:
        c.upload_blob(name, f, max_concurrency=4)
with ThreadPoolExecutor(8) as pool:
    list(pool.map(put, job["blobs"]))
print(generate_container_sas(job["account"], job["container"], account_key=job["key"],
    permission=ContainerSasPermissions(read=True, list=True),
    expiry=datetime.now(timezone.utc) + timedelta(hours=1)))
"#;

pub struct Azurite {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = installed("node_modules/azurite/dist/src/blob/main.js");
        let dir = TempDir::new("azurite");
        let port = closed_port();
        let child = Command::new("node")
            .arg(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            // Without --disableTelemetry Azurite tries to reach an outside host.
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start azurite");
        let server = Azurite { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "azurite did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`, for `AZURE_STORAGE_BLOB_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
            self.endpoint()
        )
    }

    /// Creates `container` holding `blobs` (name, bytes); returns a read+list SAS for it.
    pub fn seed(&self, container: &str, blobs: &[(&str, &[u8])]) -> String {
        let files = self.dir.path().join(format!("seed-{container}"));
        std::fs::create_dir_all(&files).unwrap();
        let list: Vec<(String, String)> = blobs
            .iter()
            .enumerate()
            .map(|(i, (name, bytes))| {
                let path = files.join(i.to_string());
                std::fs::write(&path, bytes).unwrap();
                (name.to_string(), path.to_str().unwrap().to_string())
            })
            .collect();
        let job = serde_json::json!({
            "connection_string": self.connection_string(),
            "account": ACCOUNT,
            "key": KEY,
            "container": container,
            "blobs": list,
        });
        let sdk = servers_dir().join("azpy");
        assert!(
            sdk.is_dir(),
            "{} is not installed: run `bash .ci/install-test-servers`",
            sdk.display()
        );
        let mut child = Command::new("python3")
            .args(["-c", SEED])
            .env("PYTHONPATH", sdk)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(job.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "seeding azurite failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
