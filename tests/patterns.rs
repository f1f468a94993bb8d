//! `STORAGE_ALLOW_PATTERNS` / `STORAGE_IGNORE_PATTERNS` on the listings of real servers (S3 on
//! s3rver, GCS on fake-gcs-server), a local folder, an http(s) file and a registry artifact:
//! applied once, before the plan, to the path below the URI.

use crate::support::gcs::FakeGcs;
use crate::support::replay::with_artifacts;
use crate::support::s3::S3rver;
use crate::support::{TempDir, files, run, run_env, tree};

// A model folder as a Hub repository looks: what a tokenizer-only pod wants is the JSON.
const MODEL: &[(&str, &[u8])] = &[
    ("config.json", b"{\"a\":1}"),
    ("tokenizer.json", b"{\"t\":2}"),
    ("model.safetensors", b"weights"),
    ("ckpt/optimizer.pt", b"state"),
    ("ckpt/trainer_state.json", b"{}"),
];

#[test]
fn patterns_filter_an_s3_listing() {
    let s3 = S3rver::start();
    s3.bucket("models");
    for (key, body) in MODEL {
        s3.put("models", &format!("llm/{key}"), body);
    }
    // A sibling the prefix boundary keeps out whatever the patterns say.
    s3.put("models", "llm2/config.json", b"no");
    let tmp = TempDir::new("patterns-s3");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["s3://models/llm", dest.to_str().unwrap()],
        &[
            ("AWS_ENDPOINT_URL", s3.endpoint()),
            (
                "STORAGE_ALLOW_PATTERNS",
                r#"["*.json","*.safetensors"]"#.into(),
            ),
            ("STORAGE_IGNORE_PATTERNS", r#"["ckpt/*"]"#.into()),
        ],
    );
    out.expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[
            ("config.json", b"{\"a\":1}"),
            ("model.safetensors", b"weights"),
            ("tokenizer.json", b"{\"t\":2}"),
        ])
    );
    assert!(
        out.stderr.contains(
            r#"info: STORAGE_ALLOW_PATTERNS ["*.json","*.safetensors"] and STORAGE_IGNORE_PATTERNS ["ckpt/*"] leave out 2 of 5 listed file(s): 'ckpt/optimizer.pt', 'ckpt/trainer_state.json'"#
        ),
        "{out:#?}"
    );
}

#[test]
fn patterns_filter_a_gcs_listing() {
    let objects: Vec<(&str, String, &[u8])> = MODEL
        .iter()
        .map(|(k, v)| ("models", format!("llm/{k}"), *v))
        .collect();
    let objects: Vec<(&str, &str, &[u8])> = objects
        .iter()
        .map(|(b, k, v)| (*b, k.as_str(), *v))
        .collect();
    let gcs = FakeGcs::start(&objects);
    let tmp = TempDir::new("patterns-gcs");
    let dest = tmp.path().join("dest");
    // KServe's other format, a comma list; `*` crosses `/`, so `*.json` takes ckpt's too.
    let out = run_env(
        &["gs://models/llm/", dest.to_str().unwrap()],
        &[
            ("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{}", gcs.port)),
            ("STORAGE_ALLOW_PATTERNS", "*.json, *.pt".into()),
            ("STORAGE_IGNORE_PATTERNS", "[!c]*.json".into()),
        ],
    );
    out.expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[
            ("ckpt/optimizer.pt", b"state"),
            ("ckpt/trainer_state.json", b"{}"),
            ("config.json", b"{\"a\":1}"),
        ])
    );
}

// A local folder of MODEL, under `tmp/src`.
fn local_model(tmp: &TempDir) -> std::path::PathBuf {
    let src = tmp.path().join("src");
    for (path, body) in MODEL {
        let path = src.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    src
}

#[test]
fn patterns_filter_a_local_folder_and_the_dry_run_shows_them() {
    let tmp = TempDir::new("patterns-local");
    let src = local_model(&tmp);
    let dest = tmp.path().join("dest");
    let env = [("STORAGE_IGNORE_PATTERNS", r#""*.safetensors""#)];
    let args = [src.to_str().unwrap(), dest.to_str().unwrap()];
    let dry = run(&["--dry-run", args[0], args[1]], &env);
    dry.expect_code(0);
    let planned: Vec<&str> = dry.stdout.lines().collect();
    let d = dest.display();
    assert_eq!(
        planned,
        [
            format!("5\t{d}/ckpt/optimizer.pt"),
            format!("2\t{d}/ckpt/trainer_state.json"),
            format!("7\t{d}/config.json"),
            format!("7\t{d}/tokenizer.json"),
        ]
    );
    assert!(
        dry.stderr.contains(
            r#"STORAGE_IGNORE_PATTERNS ["*.safetensors"] leave out 1 of 5 listed file(s): 'model.safetensors'"#
        ),
        "{dry:#?}"
    );
    assert!(!dest.exists());
    run(&args, &env).expect_code(0);
    assert_eq!(tree(&dest).len(), 4);
    assert!(!dest.join("model.safetensors").exists());
}

#[test]
fn patterns_that_leave_nothing_fail_naming_them() {
    let tmp = TempDir::new("patterns-none");
    let src = local_model(&tmp);
    let dest = tmp.path().join("dest");
    let out = run(
        &[src.to_str().unwrap(), dest.to_str().unwrap()],
        &[("STORAGE_ALLOW_PATTERNS", r#"["*.gguf", "Q4_*"]"#)],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            r#"error: nothing to download: STORAGE_ALLOW_PATTERNS ["*.gguf","Q4_*"] leave none of the 5 file(s) under '{}'"#,
            src.display()
        )
    );
    assert!(out.stderr.contains("hint: the patterns are matched whole"));
    assert!(!dest.exists());
}

#[test]
fn a_bad_pattern_list_names_the_variable() {
    let out = run(
        &["/nonexistent", "/tmp/x"],
        &[("STORAGE_IGNORE_PATTERNS", r#"["*.bin", 3]"#)],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: invalid value in STORAGE_IGNORE_PATTERNS: the JSON array holds 3, which is not a string pattern"
    );
}

// KServe ignores the patterns for http(s):// (its #5119 filters listings, and an http URI is
// one file); here they apply to that file's name, as to a one-object S3 URI. And a registry's
// artifact goes through the same filter: `--resolve` shows the patterns it would apply.
#[test]
fn patterns_apply_to_an_http_file_and_a_registry_artifact() {
    let (_files, registry) = with_artifacts("quickstart");
    let tmp = TempDir::new("patterns-http");
    let dest = tmp.path().join("dest");
    let base = registry.authority();
    let env = [
        ("MODEL_REGISTRY_BASE_URL", base.as_str()),
        ("STORAGE_IGNORE_PATTERNS", "*.json"),
    ];
    let resolved = run(&["--resolve", "model-registry://iris/v1"], &env);
    resolved.expect_code(0);
    let json = resolved.json();
    assert_eq!(
        json["storage_ignore_patterns"],
        serde_json::json!(["*.json"])
    );
    assert!(json.get("storage_allow_patterns").is_none());
    let out = run(&["model-registry://iris/v1", dest.to_str().unwrap()], &env);
    out.expect_code(1);
    let uri = json["artifact_uri"].as_str().unwrap();
    assert_eq!(
        out.last_line(),
        format!(
            r#"error: nothing to download: STORAGE_IGNORE_PATTERNS ["*.json"] leave none of the 1 file(s) under '{uri}'"#
        )
    );
    // The same artifact with a pattern that keeps it.
    let env = [
        ("MODEL_REGISTRY_BASE_URL", base.as_str()),
        ("STORAGE_ALLOW_PATTERNS", "model.*"),
    ];
    run(&["model-registry://iris/v1", dest.to_str().unwrap()], &env).expect_code(0);
    assert_eq!(tree(&dest).keys().collect::<Vec<_>>(), vec!["model.json"]);
}
