//! Pinned digests (`VERIFICATION_DIGEST`, the digest manifest) and the JSON result written to
//! `MRSI_RESULT_FILE` (the termination message file) and printed with `--json`.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::replay::{artifacts_dir, with_artifacts};
use crate::support::web::{Behaviour, Web};
use crate::support::{TempDir, bytes, run_bounded, run_env, tree};

fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn result_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.len() <= 4096, "{} bytes", text.len());
    serde_json::from_str(&text).unwrap()
}

// A lone archive is pinned before extraction, and the result says what the registry resolved.
#[test]
fn a_pinned_archive_from_the_registry_and_the_result() {
    let (_files, registry) = with_artifacts("quickstart");
    let tmp = TempDir::new("result-registry");
    let dest = tmp.path().join("models");
    let result = tmp.path().join("termination-log");
    let archive = std::fs::read(artifacts_dir().join("iris/v2/iris-model.tar.gz")).unwrap();
    let env = [
        ("MODEL_REGISTRY_BASE_URL", registry.authority()),
        (
            "VERIFICATION_DIGEST",
            format!("sha256:{}", sha256_hex(&archive)),
        ),
        ("MRSI_RESULT_FILE", result.to_str().unwrap().to_string()),
    ];
    let out = run_env(
        &["--json", "model-registry://iris", dest.to_str().unwrap()],
        &env,
    );
    out.expect_code(0);
    let written = result_file(&result);
    assert_eq!(out.json(), written, "--json prints what the file holds");
    assert_eq!(written["status"], "succeeded");
    assert!(written.get("error").is_none());
    let d = &written["downloads"][0];
    assert_eq!(d["source"], "model-registry://iris");
    assert_eq!(d["dest"], dest.to_str().unwrap());
    let mr = &d["model_registry"];
    assert_eq!(
        (&mr["model_name"], &mr["version_name"]),
        (&json!("iris"), &json!("v2"))
    );
    assert!(
        mr["artifact_uri"]
            .as_str()
            .unwrap()
            .ends_with("/iris/v2/iris-model.tar.gz")
    );
    for id in ["model_id", "version_id", "artifact_id"] {
        assert!(mr[id].is_string(), "{id}: {mr}");
    }
    assert_eq!(
        (d["files"].as_u64(), d["extracted"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(d["bytes"].as_u64(), Some(archive.len() as u64));
    let line = format!("iris-model.tar.gz\0{}\n", sha256_hex(&archive));
    assert_eq!(
        d["digest"],
        format!("sha256:{}", sha256_hex(line.as_bytes()))
    );
    assert_eq!(d["sha256"]["iris-model.tar.gz"], sha256_hex(&archive));
    // Extracted, and the archive removed.
    assert_eq!(tree(&dest).len(), 2);

    // Another digest: the run fails and no archive, no extracted file, stays.
    let dest = tmp.path().join("other");
    let mut env = env.clone();
    env[1].1 = format!("sha256:{}", "ab".repeat(32));
    let out = run_env(&["model-registry://iris", dest.to_str().unwrap()], &env);
    out.expect_code(1);
    let uri = mr["artifact_uri"].as_str().unwrap();
    let want = format!(
        "error: verification failed for 'iris-model.tar.gz' of '{uri}': the bytes' SHA-256 is {}, VERIFICATION_DIGEST pins sha256:{}",
        sha256_hex(&archive),
        "ab".repeat(32)
    );
    assert_eq!(out.last_line(), want);
    assert!(tree(&dest).is_empty(), "{:?}", tree(&dest).keys());
    let failed = result_file(&result);
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        format!("error: {}", failed["error"].as_str().unwrap()),
        want
    );
    assert_eq!(
        failed["downloads"][0]["model_registry"]["model_name"],
        "iris"
    );
}

#[test]
fn one_digest_cannot_pin_several_files() {
    let tmp = TempDir::new("result-several");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    std::fs::write(src.join("b"), b"b").unwrap();
    let dest = tmp.path().join("dest");
    let out = run_env(
        &[src.to_str().unwrap(), dest.to_str().unwrap()],
        &[(
            "VERIFICATION_DIGEST",
            format!("sha256:{}", sha256_hex(b"a")),
        )],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: verification failed for '{}': VERIFICATION_DIGEST pins a single file or archive, and the source lists 2 files (pin each in MRSI_DIGEST_MANIFEST)",
            src.display()
        )
    );
    assert!(!dest.exists());
}

// A manifest fails closed: a file it does not name, a name the source lacks, other bytes.
// A large file over http comes in ranged parts and is read back once to be hashed.
#[test]
fn a_digest_manifest_fails_closed() {
    let tmp = TempDir::new("result-manifest");
    let root = tmp.path().join("web");
    std::fs::create_dir_all(&root).unwrap();
    // Past the 64 MiB part size: two ranged parts.
    let big = bytes((64 << 20) + 4099, 5);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let web = Web::start(&root, Behaviour::default());
    let uri = format!("{}/big.bin", web.url());
    let dest = tmp.path().join("dest");
    let result = tmp.path().join("result.json");
    let manifest = tmp.path().join("manifest.json");
    let run_with = |manifest_json: Value| {
        std::fs::write(&manifest, manifest_json.to_string()).unwrap();
        run_env(
            &[&uri, dest.to_str().unwrap()],
            &[
                (
                    "MRSI_DIGEST_MANIFEST_FILE",
                    manifest.to_str().unwrap().into(),
                ),
                ("MRSI_RESULT_FILE", result.to_str().unwrap().into()),
            ],
        )
    };
    let good = format!("sha256:{}", sha256_hex(&big));
    let wrong = format!("sha256:{}", sha256_hex(b"other"));

    let out = run_with(json!({ "big.bin": wrong }));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: verification failed for 'big.bin' of '{uri}': the bytes' SHA-256 is {}, MRSI_DIGEST_MANIFEST pins {wrong}",
            sha256_hex(&big)
        )
    );
    // Nothing under the final name, and no temporary file or journal left to resume from.
    assert!(tree(&dest).is_empty(), "{:?}", tree(&dest).keys());

    let out = run_with(json!({ "big.bin": good, "tokenizer.json": good }));
    out.expect_code(1);
    assert!(
        out.last_line().ends_with(
            "MRSI_DIGEST_MANIFEST pins 1 file(s) the source does not list, 'tokenizer.json' among them"
        ),
        "{out:#?}"
    );
    let out = run_with(json!({ "other.bin": good }));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: verification failed for 'big.bin' of '{uri}': the source lists it, and MRSI_DIGEST_MANIFEST does not pin it"
        )
    );

    let out = run_with(json!({ "big.bin": good }));
    out.expect_code(0);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    let d = &result_file(&result)["downloads"][0];
    assert_eq!(d["sha256"]["big.bin"], sha256_hex(&big));
    assert_eq!(
        (d["written"].as_u64(), d["skipped"].as_u64()),
        (Some(1), Some(0))
    );

    // A rerun keeps the file, hashed again from disk, and reports it the same.
    let out = run_with(json!({ "big.bin": good }));
    out.expect_code(0);
    let again = &result_file(&result)["downloads"][0];
    assert_eq!(
        (again["written"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(again["digest"], d["digest"]);
}

// A failure's result strips credentials from the URI, as the log does.
#[test]
fn a_failed_result_holds_the_error_line_and_no_credentials() {
    let tmp = TempDir::new("result-failed");
    let web = Web::start(tmp.path(), Behaviour::default());
    let result = tmp.path().join("result.json");
    let port = web.port();
    let uri = format!("http://user:hunter2@127.0.0.1:{port}/missing.bin?X-Amz-Signature=SECRET");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["--json", &uri, dest.to_str().unwrap()],
        &[("MRSI_RESULT_FILE", result.to_str().unwrap().into())],
    );
    out.expect_code(1);
    let text = std::fs::read_to_string(&result).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("SECRET"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(out.json(), v);
    assert_eq!(v["status"], "failed");
    assert_eq!(
        v["downloads"][0]["source"],
        format!("http://user:<redacted>@127.0.0.1:{port}/missing.bin?<redacted>")
    );
    assert_eq!(
        format!("error: {}", v["error"].as_str().unwrap()),
        out.last_line()
    );
}

// Many files: the digests listed fit in 4 KiB, the others are counted; the digest of the
// whole download covers them all.
#[test]
fn a_large_result_fits_the_termination_message() {
    let tmp = TempDir::new("result-cap");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut lines = Vec::new();
    for i in 0..300 {
        let name = format!("shard-{i:04}-of-0300.safetensors");
        let body = format!("shard {i}");
        lines.push(format!("{name}\0{}\n", sha256_hex(body.as_bytes())));
        std::fs::write(src.join(&name), body).unwrap();
    }
    lines.sort();
    let result = tmp.path().join("result.json");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &[src.to_str().unwrap(), dest.to_str().unwrap()],
        &[
            ("MRSI_SHA256", "true".into()),
            ("MRSI_RESULT_FILE", result.to_str().unwrap().into()),
        ],
    );
    out.expect_code(0);
    let v = result_file(&result);
    let d = &v["downloads"][0];
    let listed = d["sha256"].as_object().unwrap().len();
    let omitted = d["sha256_omitted"].as_u64().unwrap() as usize;
    assert!(listed > 10, "{listed}");
    assert_eq!(listed + omitted, 300);
    assert_eq!(v["files"], 300);
    let all = lines.concat();
    assert_eq!(
        d["digest"],
        format!("sha256:{}", sha256_hex(all.as_bytes()))
    );
}

// The result file is the pod spec's path; what is there decides how it is written. A FIFO
// nobody reads must not hang the finished run (an init container that never ends), and the
// run's own outcome and last line stand; a symbolic link is followed, as a shell's `>` does:
// whoever can put a link there could write the file itself.
#[test]
fn a_result_file_that_is_a_fifo_or_a_link_does_not_change_the_run() {
    let tmp = TempDir::new("result-fifo");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    let dest = tmp.path().join("dest");
    let fifo = tmp.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let missing = tmp.path().join("missing");
    for (source, code) in [(&src, 0), (&missing, 1)] {
        let out = run_bounded(
            &[source.to_str().unwrap(), dest.to_str().unwrap()],
            &[("MRSI_RESULT_FILE", fifo.to_str().unwrap())],
            std::time::Duration::from_secs(60),
        );
        out.expect_code(code);
        assert!(
            out.stderr.contains(&format!(
                "warn: cannot write the result to {}: ",
                fifo.display()
            )),
            "{out:#?}"
        );
        if code == 1 {
            assert!(
                out.last_line()
                    .starts_with("error: cannot read local source"),
                "{out:#?}"
            );
        }
    }

    let target = tmp.path().join("target.json");
    let link = tmp.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run_bounded(
        &[src.to_str().unwrap(), dest.to_str().unwrap()],
        &[("MRSI_RESULT_FILE", link.to_str().unwrap())],
        std::time::Duration::from_secs(60),
    );
    out.expect_code(0);
    assert_eq!(result_file(&target)["status"], "succeeded");
}

// A command line the run cannot start with fails the container too: the termination message
// says why, as for any failure.
#[test]
fn a_usage_error_is_a_failed_result_too() {
    let tmp = TempDir::new("result-usage");
    let result = tmp.path().join("result.json");
    let out = run_env(
        &["--no-such-option", "s3://b/m", "/tmp/x"],
        &[("MRSI_RESULT_FILE", result.to_str().unwrap().into())],
    );
    out.expect_code(2);
    let v = result_file(&result);
    assert_eq!(v["status"], "failed");
    assert_eq!(
        format!("error: {}", v["error"].as_str().unwrap()),
        out.last_line()
    );
    assert_eq!(v["downloads"], json!([]));
}
