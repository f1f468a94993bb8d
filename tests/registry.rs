//! Resolution of `model-registry://` URIs by the real binary against the replay server:
//! exit code, stdout JSON, the exact last stderr line, and the exact sequence of requests.

use serde_json::json;

use crate::support::replay::{Replay, normalize};
use crate::support::server::PlainHttp;
use crate::support::{Run, TempDir, closed_port, run, tls};

const API: &str = "/api/model_registry/v1alpha3";
const TOKEN: &str = "t0ken-for-tests";

fn find_model(name: &str) -> String {
    format!("GET {API}/registered_model?name={name}")
}
fn find_version(name: &str, model_id: &str) -> String {
    normalize(&format!(
        "GET {API}/model_version?name={name}&parentResourceId={model_id}"
    ))
}
fn versions(model_id: &str, token: &str) -> String {
    let token = if token.is_empty() {
        String::new()
    } else {
        format!("&nextPageToken={token}")
    };
    normalize(&format!(
        "GET {API}/registered_models/{model_id}/versions?orderBy=CREATE_TIME&sortOrder=DESC&pageSize=50{token}"
    ))
}
fn artifacts(version_id: &str) -> String {
    normalize(&format!(
        "GET {API}/model_versions/{version_id}/artifacts?artifactType=model-artifact&orderBy=CREATE_TIME&sortOrder=DESC&pageSize=50"
    ))
}
const PROBE: &str = "GET /api/model_registry/v1alpha3/registered_models?pageSize=1";

/// `--resolve URI` with the replay server as the default registry.
fn resolve(replay: &Replay, uri: &str, env: &[(&str, &str)]) -> Run {
    let base = replay.authority();
    let mut all = vec![("MODEL_REGISTRY_BASE_URL", base.as_str())];
    all.extend_from_slice(env);
    run(&["--resolve", uri], &all)
}

fn resolution(
    registry: &str,
    model: (&str, &str),
    version: (&str, &str),
    artifact: (&str, &str),
) -> serde_json::Value {
    json!({
        "registry_url": registry,
        "model_name": model.0, "model_id": model.1,
        "version_name": version.0, "version_id": version.1,
        "artifact_id": artifact.0, "artifact_uri": artifact.1,
    })
}

#[test]
fn newest_version_is_by_create_time_and_skips_archived() {
    let mr = Replay::start("iris");
    let out = resolve(&mr, "model-registry://iris", &[]);
    out.expect_code(0);
    // v3 is newer but archived; v1 has the highest id but is the oldest.
    assert_eq!(
        out.json(),
        resolution(
            &mr.url(),
            ("iris", "1"),
            ("v2", "2"),
            ("12", "s3://models/iris/v2/")
        )
    );
    assert_eq!(
        mr.keys(),
        [find_model("iris"), versions("1", ""), artifacts("2")]
    );
    for req in mr.requests() {
        assert_eq!(req.header("accept"), Some("application/json"));
        assert!(
            req.header("user-agent")
                .is_some_and(|ua| ua.starts_with("mr-storage-initializer/")),
            "{req:?}"
        );
        assert_eq!(
            req.header("authorization"),
            None,
            "no token configured: {req:?}"
        );
    }
    assert!(
        out.stderr
            .contains("newest version is 'v2' (id 2) of 3 listed, 1 archived skipped"),
        "{}",
        out.stderr
    );
}

#[test]
fn model_and_version_after_a_failed_probe() {
    let mr = Replay::start("iris");
    // `iris` could be a host: the bounded probe finds nothing there (no such name).
    let out = resolve(&mr, "model-registry://iris/v1", &[]);
    out.expect_code(0);
    assert_eq!(
        out.json(),
        resolution(
            &mr.url(),
            ("iris", "1"),
            ("v1", "7"),
            ("11", "gs://models/iris/v1/")
        )
    );
    assert_eq!(
        mr.keys(),
        [find_model("iris"), find_version("v1", "1"), artifacts("7")]
    );
    assert!(
        out.stderr.contains(
            "'iris' is not a reachable model registry: reading the URI as model 'iris', version 'v1'"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn host_and_port_in_the_uri_beat_the_base_url() {
    let mr = Replay::start("iris");
    let dead = format!("127.0.0.1:{}", closed_port());
    let env = [("MODEL_REGISTRY_BASE_URL", dead.as_str())];

    let out = run(
        &[
            "--resolve",
            &format!("model-registry://{}/iris", mr.authority()),
        ],
        &env,
    );
    out.expect_code(0);
    assert_eq!(
        out.json(),
        resolution(
            &mr.url(),
            ("iris", "1"),
            ("v2", "2"),
            ("12", "s3://models/iris/v2/")
        )
    );

    let out = run(
        &[
            "--resolve",
            &format!("model-registry://{}/iris/v1", mr.authority()),
        ],
        &env,
    );
    out.expect_code(0);
    assert_eq!(out.json()["version_id"], "7");

    assert_eq!(
        mr.keys(),
        [
            find_model("iris"),
            versions("1", ""),
            artifacts("2"),
            find_model("iris"),
            find_version("v1", "1"),
            artifacts("7"),
        ]
    );
}

#[test]
fn base_url_with_a_path_prefix() {
    let mr = Replay::start_prefixed("iris", "/mr");
    let base = format!("{}/mr/", mr.url());
    let out = run(
        &["--resolve", "model-registry://iris"],
        &[("MODEL_REGISTRY_BASE_URL", base.as_str())],
    );
    out.expect_code(0);
    assert_eq!(out.json()["registry_url"], format!("{}/mr", mr.url()));
    assert_eq!(
        mr.keys(),
        [
            find_model("iris").replace("GET /api", "GET /mr/api"),
            versions("1", "").replace("GET /api", "GET /mr/api"),
            artifacts("2").replace("GET /api", "GET /mr/api"),
        ]
    );
}

#[test]
fn namespace_targets_the_namespaced_service() {
    let mr = Replay::start("iris");
    let port = mr.authority().rsplit(':').next().unwrap().to_string();
    // `<service>.<namespace>.<domain>:<port of the base URL>` spells 127.0.0.1 here, while the
    // base URL says localhost: the Host header tells which one was asked.
    let base = format!("localhost:{port}");
    let env = [
        ("MODEL_REGISTRY_BASE_URL", base.as_str()),
        ("MODEL_REGISTRY_SERVICE_NAME", "127.0"),
        ("MODEL_REGISTRY_CLUSTER_DOMAIN", "1"),
    ];
    let out = run(&["--resolve", "model-registry://iris/v1?namespace=0"], &env);
    out.expect_code(0);
    assert_eq!(
        out.json(),
        resolution(
            &mr.url(),
            ("iris", "1"),
            ("v1", "7"),
            ("11", "gs://models/iris/v1/")
        )
    );
    // With a host in the URI too, the host is dropped, not taken as the model name.
    let out = run(
        &[
            "--resolve",
            "model-registry://elsewhere:9999/iris/v1?namespace=0",
        ],
        &env,
    );
    out.expect_code(0);
    assert_eq!(out.json()["model_name"], "iris");
    assert_eq!(out.json()["version_id"], "7");

    let requests = mr.requests();
    assert_eq!(requests.len(), 6);
    for req in &requests {
        assert_eq!(req.header("host"), Some(mr.authority().as_str()), "{req:?}");
    }
    assert_eq!(requests[1].key, find_version("v1", "1"));
}

#[test]
fn doc_artifact_newer_than_the_model_artifact() {
    let mr = Replay::start("doc-artifact-newer");
    let out = resolve(&mr, "model-registry://iris", &[]);
    out.expect_code(0);
    assert_eq!(out.json()["artifact_id"], "20");
    assert_eq!(
        out.json()["artifact_uri"],
        "s3://models/iris/v1/model.joblib"
    );
    assert_eq!(
        mr.keys(),
        [find_model("iris"), versions("1", ""), artifacts("2")]
    );
}

#[test]
fn server_that_ignores_the_artifact_type_filter() {
    let mr = Replay::start("ignores-artifact-type");
    let out = resolve(&mr, "model-registry://iris", &[]);
    out.expect_code(0);
    // Newer metric, parameter, dataset and DELETED / MARKED_FOR_DELETION model artifacts are
    // passed over.
    assert_eq!(out.json()["artifact_id"], "31");
    assert_eq!(out.json()["artifact_uri"], "s3://models/iris/live/");
}

#[test]
fn versions_over_several_pages() {
    let mr = Replay::start("paged-versions");
    let out = resolve(&mr, "model-registry://big", &[]);
    out.expect_code(0);
    assert_eq!(out.json()["version_name"], "v50");
    assert_eq!(out.json()["version_id"], "1050");
    assert_eq!(
        mr.keys(),
        [
            find_model("big"),
            versions("5", ""),
            versions("5", "cGFnZTI="),
            versions("5", "cGFnZTM="),
            artifacts("1050"),
        ]
    );
}

#[test]
fn a_503_twice_then_success() {
    let mr = Replay::start("flaky");
    let out = resolve(&mr, "model-registry://iris", &[]);
    out.expect_code(0);
    assert_eq!(out.json()["artifact_id"], "26");
    assert_eq!(
        mr.keys(),
        [
            find_model("iris"),
            find_model("iris"),
            find_model("iris"),
            versions("1", ""),
            artifacts("2"),
        ]
    );
    assert_eq!(
        out.stderr.matches("HTTP 503, attempt").count(),
        2,
        "{}",
        out.stderr
    );
}

#[test]
fn bearer_token_from_the_environment_and_from_a_file() {
    let mr = Replay::start("auth");
    let out = resolve(
        &mr,
        "model-registry://iris",
        &[("MODEL_REGISTRY_TOKEN", TOKEN), ("RUST_LOG", "trace")],
    );
    out.expect_code(0);
    assert_eq!(out.json()["artifact_id"], "25");
    assert!(
        !out.stderr.contains(TOKEN),
        "the token reached the log:\n{}",
        out.stderr
    );

    let dir = TempDir::new("token");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let out = resolve(
        &mr,
        "model-registry://iris",
        &[("MODEL_REGISTRY_TOKEN_FILE", file.to_str().unwrap())],
    );
    out.expect_code(0);
    assert_eq!(out.json()["artifact_id"], "25");

    let requests = mr.requests();
    assert_eq!(requests.len(), 6);
    for req in requests {
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[test]
fn unauthorized_without_a_token() {
    let mr = Replay::start("auth");
    let out = resolve(&mr, "model-registry://iris", &[]);
    out.expect_code(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines[lines.len() - 2],
        "hint: set MODEL_REGISTRY_TOKEN or MODEL_REGISTRY_TOKEN_FILE to a token the registry accepts"
    );
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve model 'iris' (newest version) in model registry {0}: unauthorized (HTTP 401) on GET {0}{API}/registered_model?name=iris (registry said: missing or invalid bearer token)",
            mr.url()
        )
    );
    // 401 is an answer, not a transient failure: one request, no retries.
    assert_eq!(mr.keys(), [find_model("iris")]);
}

#[test]
fn registry_down() {
    let port = closed_port();
    let base = format!("127.0.0.1:{port}");
    let out = run(
        &["--resolve", "model-registry://iris"],
        &[("MODEL_REGISTRY_BASE_URL", base.as_str())],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve model 'iris' (newest version) in model registry http://{base}: registry unreachable: GET http://{base}{API}/registered_model?name=iris: Connection refused (os error 111) (after 4 attempts)"
        )
    );
    assert!(out.stderr.contains(
        "hint: check MODEL_REGISTRY_BASE_URL, or put the registry's host:port in the URI"
    ));
}

/// Runs `uri` against `scenario` and checks the exit code, the last stderr line and the
/// requests made.
fn fails(scenario: &str, uri: &str, why: &str, requests: &[String]) {
    let mr = Replay::start(scenario);
    let out = resolve(&mr, uri, &[]);
    out.expect_code(1);
    assert_eq!(out.stdout, "", "nothing on stdout on failure");
    let what = match uri.trim_start_matches("model-registry://").split_once('/') {
        Some((model, version)) => format!("model '{model}' version '{version}'"),
        None => format!(
            "model '{}' (newest version)",
            uri.trim_start_matches("model-registry://")
        ),
    };
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve {what} in model registry {}: {why}",
            mr.url()
        )
        .replace("{url}", &mr.url()),
        "scenario {scenario}"
    );
    assert_eq!(mr.keys(), requests, "scenario {scenario}");
}

#[test]
fn model_not_found() {
    fails(
        "model-not-found",
        "model-registry://nosuch",
        "registered model not found (registry said: no registered models found for name=nosuch, externalId=: not found)",
        &[find_model("nosuch")],
    );
}

#[test]
fn version_not_found() {
    fails(
        "version-not-found",
        "model-registry://iris/v9",
        "model version not found (registry said: no model versions found for name=1:v9, externalId=: not found)",
        &[find_model("iris"), find_version("v9", "1")],
    );
}

#[test]
fn no_versions() {
    fails(
        "no-versions",
        "model-registry://iris",
        "the model has no versions",
        &[find_model("iris"), versions("1", "")],
    );
}

#[test]
fn only_archived_versions() {
    fails(
        "only-archived",
        "model-registry://iris",
        "the model has no live versions (2 archived version(s) skipped)",
        &[find_model("iris"), versions("1", "")],
    );
}

#[test]
fn no_model_artifact() {
    fails(
        "no-model-artifact",
        "model-registry://iris",
        "the version has no model artifact (1 artifact(s) listed, 0 of them model artifacts in state DELETED, MARKED_FOR_DELETION or ABANDONED)",
        &[find_model("iris"), versions("1", ""), artifacts("2")],
    );
}

#[test]
fn artifact_with_an_empty_uri() {
    fails(
        "empty-uri",
        "model-registry://iris",
        "model artifact 22 has an empty URI",
        &[find_model("iris"), versions("1", ""), artifacts("2")],
    );
}

#[test]
fn unsupported_storage_scheme() {
    // The artifact URI's query is not shown: it may hold a token.
    fails(
        "unsupported-scheme",
        "model-registry://iris",
        "artifact URI 'hdfs://namenode:8020/models/iris?<redacted>' has a storage scheme this program cannot fetch",
        &[find_model("iris"), versions("1", ""), artifacts("2")],
    );
}

#[test]
fn registry_answering_html() {
    fails(
        "not-json",
        "model-registry://iris",
        &format!(
            "malformed registry response to GET {{url}}{API}/registered_model?name=iris: expected value at line 1 column 1 (body starts: <!DOCTYPE html> <html><head><title>Welcome</title></head> <body><h1>It works!</h1></body></html>)"
        ),
        &[find_model("iris")],
    );
}

#[test]
fn metadata_address_is_refused_whatever_the_allow_list() {
    let mr = Replay::start("metadata-uri");
    let out = resolve(
        &mr,
        "model-registry://iris",
        &[("ALLOWED_ARTIFACT_URI_PREFIXES", "http://,s3://")],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: refusing artifact URI 'http://169.254.169.254': it points at a link-local or cloud metadata address"
    );
    let out = resolve(&mr, "model-registry://iris", &[]);
    out.expect_code(1);
    assert!(
        out.last_line().contains("link-local or cloud metadata"),
        "{out:#?}"
    );
}

#[test]
fn allow_list_refuses_other_prefixes() {
    let mr = Replay::start("iris");
    let out = resolve(
        &mr,
        "model-registry://iris",
        &[(
            "ALLOWED_ARTIFACT_URI_PREFIXES",
            "gs://approved/, s3://approved/",
        )],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: refusing artifact URI 's3://models': it starts with none of ALLOWED_ARTIFACT_URI_PREFIXES (gs://approved/, s3://approved/)"
    );
    let out = resolve(
        &mr,
        "model-registry://iris",
        &[("ALLOWED_ARTIFACT_URI_PREFIXES", "s3://models/iris/")],
    );
    out.expect_code(0);
}

// The probe of a host without a port goes to port 80: this test binds 127.0.0.1:80, which
// needs root or CAP_NET_BIND_SERVICE (CI runs as root). Both probe answers that mean
// "a registry" are checked here, one after the other, so the port is never contended.
#[test]
fn probe_reads_a_bare_host_as_a_registry() {
    let dead = format!("127.0.0.1:{}", closed_port());
    // The host named in the URI is listed, so it gets the token.
    let env = [
        ("MODEL_REGISTRY_BASE_URL", dead.as_str()),
        ("MODEL_REGISTRY_TOKEN", TOKEN),
        ("MODEL_REGISTRY_TOKEN_HOSTS", "127.0.0.1"),
    ];
    {
        // 200 with a list body.
        let mr = Replay::start_at("127.0.0.1:80", "iris");
        let out = run(&["--resolve", "model-registry://127.0.0.1/iris"], &env);
        out.expect_code(0);
        assert_eq!(
            out.json(),
            resolution(
                "http://127.0.0.1",
                ("iris", "1"),
                ("v2", "2"),
                ("12", "s3://models/iris/v2/")
            )
        );
        let requests = mr.requests();
        assert_eq!(
            mr.keys(),
            [
                PROBE.to_string(),
                find_model("iris"),
                versions("1", ""),
                artifacts("2")
            ]
        );
        assert_eq!(
            requests[0].header("authorization"),
            None,
            "the probe sends no credentials"
        );
        assert_eq!(
            requests[1].header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(out.stderr.contains(
            "'127.0.0.1' answers as a model registry: reading the URI as host '127.0.0.1', model 'iris'"
        ));
    }
    {
        // 401 to the probe (it carries no token): still a registry.
        let mr = Replay::start_at("127.0.0.1:80", "auth");
        let out = run(&["--resolve", "model-registry://127.0.0.1/iris"], &env);
        out.expect_code(0);
        assert_eq!(out.json()["artifact_id"], "25");
        assert_eq!(
            mr.keys(),
            [
                PROBE.to_string(),
                find_model("iris"),
                versions("1", ""),
                artifacts("2")
            ]
        );
    }
}

#[test]
fn https_registry_with_a_private_ca() {
    let mr = Replay::start("iris");
    let dir = TempDir::new("tls");
    let certs = tls::make_certs(dir.path());
    let upstream: u16 = mr.authority().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = tls::TlsProxy::start(&certs, upstream);
    let base = format!("https://127.0.0.1:{}", proxy.port);

    // Trusted through MODEL_REGISTRY_CA_FILE.
    let ca = certs.ca.to_str().unwrap();
    let out = run(
        &["--resolve", "model-registry://iris"],
        &[
            ("MODEL_REGISTRY_BASE_URL", base.as_str()),
            ("MODEL_REGISTRY_CA_FILE", ca),
        ],
    );
    out.expect_code(0);
    assert_eq!(out.json()["registry_url"], base);
    assert_eq!(out.json()["artifact_id"], "12");

    // Not trusted: a clear one-line failure naming the certificate problem.
    let out = run(
        &["--resolve", "model-registry://iris"],
        &[("MODEL_REGISTRY_BASE_URL", base.as_str())],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve model 'iris' (newest version) in model registry {base}: TLS failure: GET {base}{API}/registered_model?name=iris: invalid peer certificate: UnknownIssuer"
        )
    );
    assert!(
        out.stderr
            .contains("hint: trust the registry's CA with MODEL_REGISTRY_CA_FILE"),
        "{out:#?}"
    );
    // A certificate problem is final: no retries.
    assert!(!out.stderr.contains("attempt 1 of"), "{out:#?}");
    // The failed handshake reached the registry zero times; the trusted run three.
    assert_eq!(mr.keys().len(), 3);
}

/// An `https://` base URL on a registry that speaks plain HTTP, both ways such a server meets a
/// ClientHello (closing, or answering 400 in HTTP): said plainly, with a hint, and not retried.
#[test]
fn https_base_url_on_a_plain_http_registry() {
    for answer_tls in [false, true] {
        let server = PlainHttp::start(answer_tls);
        let base = format!("https://{}", server.authority());
        let out = run(
            &["--resolve", "model-registry://iris"],
            &[("MODEL_REGISTRY_BASE_URL", base.as_str())],
        );
        out.expect_code(1);
        // An HTTP answer to the ClientHello is proof in itself; a closed connection is checked
        // with one plain request.
        let evidence = if answer_tls {
            "received corrupt message of type InvalidContentType: the server's first bytes were not TLS".to_string()
        } else {
            format!(
                "unexpected end of file; http://{}/ answers without TLS",
                server.authority()
            )
        };
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot resolve model 'iris' (newest version) in model registry {base}: TLS handshake failed: is the server plain HTTP? GET {base}{API}/registered_model?name=iris: {evidence}"
            )
        );
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(
            lines[lines.len() - 2],
            "hint: use http:// for this registry: in MODEL_REGISTRY_BASE_URL, or MODEL_REGISTRY_SCHEME=http when no scheme is written"
        );
        // One handshake, then at most one plain request to check: no retries.
        assert!(!out.stderr.contains("attempt 1 of"), "{out:#?}");
        assert_eq!(server.hellos(), 1);
        let checks: &[&str] = if answer_tls { &[] } else { &["GET /"] };
        assert_eq!(server.requests(), checks);
    }
}

#[test]
fn a_port_that_is_not_a_port_is_refused_before_any_request() {
    for (base, why) in [
        ("host:xyz", "the port 'xyz' in 'host:xyz' is not a number"),
        ("https://host:/mr", "the port in 'host:' is empty"),
        (
            "host:0",
            "the port 0 in 'host:0' is not between 1 and 65535",
        ),
        (
            "host:65536",
            "the port 65536 in 'host:65536' is not between 1 and 65535",
        ),
    ] {
        let out = run(
            &["--resolve", "model-registry://iris"],
            &[("MODEL_REGISTRY_BASE_URL", base)],
        );
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!("error: invalid value in MODEL_REGISTRY_BASE_URL: {why}"),
            "{base}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    }
    let uri = "model-registry://host:xyz/iris/v1";
    let out = run(&["--resolve", uri], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!("error: invalid URI '{uri}': the port 'xyz' in 'host:xyz' is not a number")
    );
}

/// The URI already names the registry's host:port: the hint to put one there is not shown.
#[test]
fn an_unreachable_host_in_the_uri_gets_no_base_url_hint() {
    let dead = format!("127.0.0.1:{}", closed_port());
    let out = run(
        &["--resolve", &format!("model-registry://{dead}/iris")],
        &[],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve model 'iris' (newest version) in model registry http://{dead}: registry unreachable: GET http://{dead}{API}/registered_model?name=iris: Connection refused (os error 111) (after 4 attempts)"
        )
    );
    assert!(!out.stderr.contains("hint:"), "{out:#?}");
}

/// `RUST_LOG=debug` raises this program's level only; ureq's lines come when asked for by name.
#[test]
fn rust_log_debug_leaves_dependencies_at_info() {
    let mr = Replay::start("iris");
    let ours = format!("debug: GET {}{API}/registered_model?name=iris", mr.url());
    // Lines ureq and ureq-proto write at debug for every request.
    let theirs = ["debug: Connected TcpStream to ", "debug: Call<Prepare>"];

    let out = resolve(&mr, "model-registry://iris", &[("RUST_LOG", "debug")]);
    out.expect_code(0);
    assert!(out.stderr.contains(&ours), "{}", out.stderr);
    for line in theirs {
        assert!(!out.stderr.contains(line), "{line}: {}", out.stderr);
    }

    for rust_log in ["ureq=debug", "debug,ureq=debug"] {
        let out = resolve(&mr, "model-registry://iris", &[("RUST_LOG", rust_log)]);
        out.expect_code(0);
        for line in theirs {
            assert!(
                out.stderr.contains(line),
                "{rust_log}: {line}: {}",
                out.stderr
            );
        }
        assert_eq!(out.stderr.contains(&ours), rust_log.starts_with("debug"));
        assert!(out.stderr.contains("info: resolving model-registry://iris"));
    }
}

#[test]
fn the_token_goes_only_to_the_configured_registry_or_a_listed_host() {
    let mr = Replay::start("iris");
    let dead = format!("127.0.0.1:{}", closed_port());
    let named = format!("model-registry://{}/iris", mr.authority());
    let bearer = format!("Bearer {TOKEN}");

    // A host named in the URI is input, not configuration: no token for it.
    let env = [
        ("MODEL_REGISTRY_BASE_URL", dead.as_str()),
        ("MODEL_REGISTRY_TOKEN", TOKEN),
    ];
    run(&["--resolve", &named], &env).expect_code(0);
    let requests = mr.requests();
    assert_eq!(requests.len(), 3);
    for req in &requests {
        assert_eq!(req.header("authorization"), None, "{req:?}");
    }

    // Listed by the operator: it gets the token.
    let listed = mr.authority();
    let env = [
        ("MODEL_REGISTRY_BASE_URL", dead.as_str()),
        ("MODEL_REGISTRY_TOKEN", TOKEN),
        ("MODEL_REGISTRY_TOKEN_HOSTS", listed.as_str()),
    ];
    run(&["--resolve", &named], &env).expect_code(0);
    // The configured registry gets it too.
    resolve(
        &mr,
        "model-registry://iris",
        &[("MODEL_REGISTRY_TOKEN", TOKEN)],
    )
    .expect_code(0);
    let requests = mr.requests();
    assert_eq!(requests.len(), 9);
    for req in &requests[3..] {
        assert_eq!(
            req.header("authorization"),
            Some(bearer.as_str()),
            "{req:?}"
        );
    }
}

/// A registry URL that cannot be sent (a raw space in MODEL_REGISTRY_BASE_URL) says so, is not
/// retried, and is not called "unreachable": no request was made. The words are the storage
/// side's (`an_unsendable_url_is_not_retried`).
#[test]
fn an_unsendable_registry_url_says_what_is_wrong_and_is_not_retried() {
    let port = closed_port();
    let base = format!("http://127.0.0.1:{port}/a b");
    let out = run(
        &["--resolve", "model-registry://iris"],
        &[("MODEL_REGISTRY_BASE_URL", &base)],
    );
    out.expect_code(1);
    assert!(!out.stderr.contains("attempt"), "{out:#?}");
    assert!(!out.stderr.contains("hint:"), "{out:#?}");
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve model 'iris' (newest version) in model registry {base}: cannot send GET {base}/api/model_registry/v1alpha3/registered_model?name=iris: not a valid request URL (http: invalid uri character); write special characters as %XX"
        )
    );
}
