//! The whole job end to end: a `model-registry://` URI resolved by the replayed registry, its
//! artifact downloaded over http(s):// or copied from file://, archives extracted. And the
//! quickstart example, run as a user runs it.

use std::path::Path;
use std::process::Command;

use crate::support::replay::{Replay, artifacts_dir, with_artifacts};
use crate::support::web::{Behaviour, Web};
use crate::support::{TempDir, run, tls};

/// The files of the stand-in model (fixtures/artifacts/iris/v1), name → contents.
fn iris_files() -> Vec<(String, Vec<u8>)> {
    listing(&artifacts_dir().join("iris/v1"))
}

/// Regular files directly in `dir` but the program's manifest, sorted; panics on anything else
/// (a link, a folder).
fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter(|e| {
            e.as_ref()
                .map_or(true, |e| e.file_name() != ".mrsi-manifest")
        })
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            assert!(
                meta.is_file(),
                "{} is not a regular file",
                e.path().display()
            );
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn newest_version_over_http_is_downloaded_and_extracted() {
    let (files, registry) = with_artifacts("quickstart");
    let tmp = TempDir::new("e2e-http");
    let dest = tmp.path().join("models");
    let out = run(
        &["model-registry://iris", dest.to_str().unwrap()],
        &[("MODEL_REGISTRY_BASE_URL", &registry.authority())],
    );
    out.expect_code(0);
    assert_eq!(listing(&dest), iris_files());
    let paths: Vec<String> = files.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        vec!["/iris/v2/iris-model.tar.gz", "/iris/v2/iris-model.tar.gz"]
    );
    assert_eq!(registry.keys().len(), 3);
}

#[test]
fn a_named_version_with_a_single_file() {
    let (_files, registry) = with_artifacts("quickstart");
    let tmp = TempDir::new("e2e-v1");
    let dest = tmp.path().join("models");
    run(
        &["model-registry://iris/v1", dest.to_str().unwrap()],
        &[("MODEL_REGISTRY_BASE_URL", &registry.authority())],
    )
    .expect_code(0);
    let model = iris_files().into_iter().find(|(n, _)| n == "model.json");
    assert_eq!(listing(&dest), vec![model.unwrap()]);
}

#[test]
fn an_https_artifact_with_a_private_ca() {
    let files = Web::start(&artifacts_dir(), Behaviour::default());
    let tmp = TempDir::new("e2e-https");
    let certs = tls::make_certs(tmp.path());
    let proxy = tls::TlsProxy::start(&certs, files.port());
    let registry = Replay::start("quickstart");
    registry.set(
        "artifact_server",
        &format!("https://127.0.0.1:{}", proxy.port),
    );
    let dest = tmp.path().join("models");
    run(
        &["model-registry://iris", dest.to_str().unwrap()],
        &[
            ("MODEL_REGISTRY_BASE_URL", &registry.authority()),
            ("SSL_CERT_FILE", certs.ca.to_str().unwrap()),
        ],
    )
    .expect_code(0);
    assert_eq!(listing(&dest), iris_files());
}

/// `MODEL_REGISTRY_CA_FILE` vouches for the registry only: the same CA in front of the artifact
/// server is not trusted for the download, and the hint says which settings are.
#[test]
fn the_registry_ca_file_is_not_trusted_for_downloads() {
    let files = Web::start(&artifacts_dir(), Behaviour::default());
    let tmp = TempDir::new("e2e-registry-ca");
    let certs = tls::make_certs(tmp.path());
    let artifacts = tls::TlsProxy::start(&certs, files.port());
    let registry = Replay::start("quickstart");
    let upstream: u16 = registry
        .authority()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let registry_tls = tls::TlsProxy::start(&certs, upstream);
    registry.set(
        "artifact_server",
        &format!("https://127.0.0.1:{}", artifacts.port),
    );
    let dest = tmp.path().join("models");
    let out = run(
        &["model-registry://iris", dest.to_str().unwrap()],
        &[
            (
                "MODEL_REGISTRY_BASE_URL",
                &format!("https://127.0.0.1:{}", registry_tls.port),
            ),
            ("MODEL_REGISTRY_CA_FILE", certs.ca.to_str().unwrap()),
        ],
    );
    out.expect_code(1);
    // The registry answered over TLS (its CA was trusted), then the download was refused.
    assert!(registry.requests().len() >= 3, "{:?}", registry.requests());
    let last = out.last_line();
    assert!(
        last.starts_with("error: ") && last.contains("UnknownIssuer"),
        "{last}"
    );
    assert!(
        out.stderr
            .contains("MODEL_REGISTRY_CA_FILE is trusted for the registry only"),
        "{}",
        out.stderr
    );
    assert!(!dest.join("iris-model.tar.gz").exists());
}

#[test]
fn a_file_artifact_is_copied_not_linked() {
    let (_files, registry) = with_artifacts("local-artifact");
    let tmp = TempDir::new("e2e-file");
    let dest = tmp.path().join("models");
    // A file:// artifact from the registry is refused unless the allow list names its folder.
    let allowed = format!("file://{}/", artifacts_dir().display());
    let out = run(
        &["model-registry://iris", dest.to_str().unwrap()],
        &[
            ("MODEL_REGISTRY_BASE_URL", &registry.authority()),
            ("ALLOWED_ARTIFACT_URI_PREFIXES", &allowed),
        ],
    );
    out.expect_code(0);
    // `listing` refuses links: these are copies.
    assert_eq!(listing(&dest), iris_files());
}

#[test]
fn pairs_run_in_order_and_stop_at_the_first_failure() {
    let files = Web::start(&artifacts_dir(), Behaviour::default());
    let tmp = TempDir::new("e2e-pairs");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let good = format!("{}/iris/v1/model.json", files.url());
    let missing = format!("{}/iris/v9/model.json", files.url());
    let out = run(
        &[
            &good,
            a.to_str().unwrap(),
            &missing,
            b.to_str().unwrap(),
            &good,
            c.to_str().unwrap(),
        ],
        &[],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!("error: cannot download {missing}: HTTP 404 Not Found")
    );
    assert!(a.join("model.json").is_file());
    assert!(!b.exists() && !c.exists());
}

/// `cargo run --example quickstart`, as README says: the example is built by `cargo test`.
#[test]
fn the_quickstart_downloads_into_models() {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/integration-HASH → target/<profile>/examples/quickstart
    let example = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/quickstart");
    assert!(
        example.is_file(),
        "{} is missing: build it with `cargo build --examples` (cargo test does)",
        example.display()
    );
    let tmp = TempDir::new("quickstart");
    let out = Command::new(&example)
        .current_dir(tmp.path())
        .env_clear()
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(listing(&tmp.path().join("models")), iris_files());
    assert!(
        stderr.contains("info: newest version is 'v2' (id 3)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("GET /iris/v2/iris-model.tar.gz (bytes=0-0)"),
        "{stdout}"
    );
}

/// More files than the open-file limit allows at once: each temporary file is open only
/// while a worker writes it (5,000 files under `ulimit -n 256`, 16 workers).
#[test]
fn more_files_than_the_open_file_limit() {
    let tmp = TempDir::new("e2e-nofile");
    let src = tmp.path().join("src");
    for i in 0..5000 {
        let dir = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.bin")), format!("object {i}")).unwrap();
    }
    let dest = tmp.path().join("dest");
    // The soft limit is lowered by the shell that then becomes the binary.
    let out = Command::new("/bin/sh")
        .env_clear()
        .env("RUST_BACKTRACE", "0")
        .args(["-c", "ulimit -n 256 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_mr-storage-initializer"))
        .args([&src, &dest])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "last line: {}",
        stderr.lines().last().unwrap_or("")
    );
    assert!(
        stderr.contains("info: downloaded 5000 file(s), "),
        "{stderr}"
    );
    let copied = crate::support::tree(&dest);
    assert_eq!(copied.len(), 5000);
    assert_eq!(copied["d7/f4997.bin"], b"object 4997");
}

#[test]
fn a_registry_cannot_point_the_pod_at_its_own_files() {
    // A folder standing in for /var/run/secrets: the registry's file:// URI names
    // `<tmp>/iris/v1/`, which holds a sentinel file.
    let secrets = TempDir::new("e2e-pod-files");
    let folder = secrets.path().join("iris/v1");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("token"), b"sentinel").unwrap();
    let registry = Replay::start("local-artifact");
    registry.set("artifacts", &secrets.path().display().to_string());
    let tmp = TempDir::new("e2e-pod-files-dest");
    let dest = tmp.path().join("models");
    let base = registry.authority();
    let out = run(
        &["model-registry://iris", dest.to_str().unwrap()],
        &[("MODEL_REGISTRY_BASE_URL", &base)],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: refusing artifact URI 'file://{}/iris/v1/': the registry may not name a local file unless ALLOWED_ARTIFACT_URI_PREFIXES allows it",
            secrets.path().display()
        )
    );
    assert!(
        !dest.exists(),
        "something was written to {}",
        dest.display()
    );

    // A `..` cannot climb out of an allowed folder.
    let allowed = format!("file://{}/iris/", secrets.path().display());
    let climbing = Replay::start("local-artifact");
    climbing.set(
        "artifacts",
        &format!("{}/iris/%2E%2E", secrets.path().display()),
    );
    let base = climbing.authority();
    let out = run(
        &["model-registry://iris", dest.to_str().unwrap()],
        &[
            ("MODEL_REGISTRY_BASE_URL", base.as_str()),
            ("ALLOWED_ARTIFACT_URI_PREFIXES", allowed.as_str()),
        ],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: refusing artifact URI 'file://{}/iris/%2E%2E/iris/v1/': a local path from the registry may not contain '..'",
            secrets.path().display()
        )
    );
    assert!(
        !dest.exists(),
        "something was written to {}",
        dest.display()
    );
}

/// A local model folder whose weights were rewritten in place at the same size: a rerun
/// copies the new bytes (the file's mtime is its version); one with nothing changed skips.
#[test]
fn a_rerun_copies_a_local_file_rewritten_at_the_same_size() {
    let tmp = TempDir::new("e2e-local-rerun");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("weights.bin"), b"old weights").unwrap();
    std::fs::write(src.join("config.json"), b"{}").unwrap();
    let dest = tmp.path().join("dest");
    let args = [src.to_str().unwrap(), dest.to_str().unwrap()];
    run(&args, &[]).expect_code(0);
    std::fs::write(src.join("weights.bin"), b"new weights").unwrap();
    let out = run(&args, &[]);
    out.expect_code(0);
    assert_eq!(
        std::fs::read(dest.join("weights.bin")).unwrap(),
        b"new weights"
    );
    assert!(
        out.stderr.contains("1 file(s) already complete"),
        "{out:#?}"
    );
    let out = run(&args, &[]);
    assert!(
        out.stderr.contains("2 file(s) already complete"),
        "{out:#?}"
    );
}

/// A finished file is flushed to disk before its rename, and its folder after, so a node crash
/// cannot leave a file of zeros under a final name. What the disk does is not observable here:
/// the debug log says the path ran, for every file.
#[test]
fn finished_files_are_flushed_to_disk() {
    let tmp = TempDir::new("e2e-sync");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("weights.bin"), b"weights").unwrap();
    std::fs::write(src.join("sub/config.json"), b"{}").unwrap();
    std::fs::write(src.join("sub/tokenizer.json"), b"{}").unwrap();
    let dest = tmp.path().join("dest");
    let out = run(
        &[src.to_str().unwrap(), dest.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    out.expect_code(0);
    let mut last = 0;
    for name in ["weights.bin", "sub/config.json", "sub/tokenizer.json"] {
        let line = format!(
            "debug: wrote {} (flushed to disk)",
            dest.join(name).display()
        );
        let at = out.stderr.find(&line);
        assert!(at.is_some(), "{line}\n{out:#?}");
        last = last.max(at.unwrap());
    }
    // Each folder once, after the last rename: not once per file.
    let flushed = "debug: flushed the 2 folder(s) files went into";
    assert!(out.stderr.find(flushed) > Some(last), "{out:#?}");
    assert_eq!(out.stderr.matches("debug: flushed the").count(), 1);
}
