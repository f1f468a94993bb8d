//! `gs://` downloads by the real binary: against fake-gcs-server on 127.0.0.1 (paging, names,
//! large objects, the emulator convention), and against small local stand-ins where auth must
//! be seen: a token endpoint that verifies the JWT with the test key's public half, a metadata
//! server, and a JSON API stub that demands the bearer token.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::support::gcs::FakeGcs;
use crate::support::replay::Replay;
use crate::support::server::{Server, read_form, read_head};
use crate::support::{Run, TempDir, bytes, closed_port, files, run_env, tree};

fn emulator(gcs: &FakeGcs) -> Vec<(&'static str, String)> {
    vec![
        ("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{}", gcs.port)),
        (
            "RUST_LOG",
            "mr_storage_initializer::fetch=debug,mr_storage_initializer::engine=debug".into(),
        ),
    ]
}

#[test]
fn a_nested_prefix_arrives_over_several_pages_without_its_siblings() {
    let names: Vec<String> = (0..1200)
        .map(|i| format!("iris/v1/shard-{:02}/part {i:04}.bin", i % 9))
        .collect();
    let mut objects: Vec<(&str, &str, &[u8])> = names
        .iter()
        .map(|n| ("models", n.as_str(), n.as_bytes()))
        .collect();
    objects.push(("models", "iris/v10/sibling", b"no"));
    objects.push(("models", "iris/v1.bak", b"no"));
    let gcs = FakeGcs::start(&objects);
    let tmp = TempDir::new("gcs-pages");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["gs://models/iris/v1", dest.to_str().unwrap()],
        &emulator(&gcs),
    );
    out.expect_code(0);
    let got = tree(&dest);
    assert_eq!(got.len(), 1200);
    assert_eq!(
        got["shard-03/part 0012.bin"],
        b"iris/v1/shard-03/part 0012.bin"
    );
    assert!(
        out.stderr
            .contains("listed gs://models/iris/v1/: 1200 object(s) in 2 page(s)"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("no authentication"), "{out:#?}");
}

#[test]
fn names_that_need_encoding_and_single_objects() {
    let odd = "iris/v1/c++ & 50% #1?é 模型.json";
    let gcs = FakeGcs::start(&[
        ("models", odd, b"odd"),
        ("models", "iris/v1/model.joblib", b"weights"),
        ("models", "iris/v1/model.joblib.sig", b"no"),
    ]);
    let tmp = TempDir::new("gcs-names");
    let dest = tmp.path().join("all");
    let out = run_env(
        &["gs://models/iris/v1/", dest.to_str().unwrap()],
        &emulator(&gcs),
    );
    out.expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[
            ("c++ & 50% #1?é 模型.json", b"odd"),
            ("model.joblib", b"weights"),
            ("model.joblib.sig", b"no"),
        ])
    );
    let dest = tmp.path().join("one");
    let out = run_env(
        &["gs://models/iris/v1/model.joblib", dest.to_str().unwrap()],
        &emulator(&gcs),
    );
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.joblib", b"weights")]));
}

#[test]
fn a_large_object_arrives_byte_exact_in_ranged_parts() {
    let big = bytes(150 << 20, 11);
    let gcs = FakeGcs::start(&[("models", "llm/model.safetensors", &big)]);
    let tmp = TempDir::new("gcs-large");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["gs://models/llm/", dest.to_str().unwrap()],
        &emulator(&gcs),
    );
    out.expect_code(0);
    assert!(
        std::fs::read(dest.join("model.safetensors")).unwrap() == big,
        "the large object differs"
    );
    let parts = out
        .stderr
        .lines()
        .filter(|l| l.contains("fetching 'llm/model.safetensors' of 'gs://models/llm/' bytes "))
        .count();
    assert_eq!(parts, 3, "{out:#?}");
}

#[test]
fn a_missing_bucket_or_object_is_one_line() {
    let gcs = FakeGcs::start(&[("models", "iris/model.json", b"{}")]);
    let tmp = TempDir::new("gcs-missing");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["gs://nobucket/iris", dest.to_str().unwrap()],
        &emulator(&gcs),
    );
    out.expect_code(1);
    assert!(
        out.last_line().starts_with(
            "error: cannot list gs://nobucket/iris: the bucket 'nobucket' does not exist: HTTP 404"
        ),
        "{out:#?}"
    );
    let out = run_env(
        &["gs://models/iris/none.bin", dest.to_str().unwrap()],
        &emulator(&gcs),
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: nothing to download: no objects under 'gs://models/iris/none.bin'"
    );
    assert!(!dest.exists());
}

#[test]
fn a_registry_artifact_on_gcs_downloads_end_to_end() {
    // The `iris` scenario resolves model-registry://iris/v1 to gs://models/iris/v1/.
    let registry = Replay::start("iris");
    let gcs = FakeGcs::start(&[
        ("models", "iris/v1/model.joblib", &bytes(40_000, 2)),
        ("models", "iris/v2/model.joblib", b"newer"),
    ]);
    let tmp = TempDir::new("gcs-e2e");
    let dest = tmp.path().join("models");
    let mut env = emulator(&gcs);
    env.push(("MODEL_REGISTRY_BASE_URL", registry.authority()));
    let out = run_env(&["model-registry://iris/v1", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.joblib", &bytes(40_000, 2))]));
}

/// A stand-in for the JSON API that serves `iris/model.json` only to `Bearer <token>` (any
/// bearer when `token` is `None`, and none at all is refused with 403), and keeps every
/// Authorization header it saw.
struct Api {
    server: Server,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Api {
    fn start(token: Option<&'static str>) -> Api {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = Server::start("127.0.0.1:0", move |stream| {
            let Some((_, target, headers)) = read_head(&stream) else {
                return;
            };
            let auth = headers.get("authorization").cloned();
            log.lock().unwrap().push(auth.clone());
            let allowed = match (token, &auth) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(t), Some(a)) => a == &format!("Bearer {t}"),
            };
            let (status, body) = if !allowed {
                (
                    "403 Forbidden",
                    r#"{"error":{"code":403,"message":"Anonymous caller does not have storage.objects.list access"}}"#.to_string(),
                )
            } else if target.starts_with("/storage/v1/b/models/o?") {
                let items = if target.contains("prefix=iris%2F&") {
                    r#"[{"name":"iris/model.json","size":"2"}]"#
                } else {
                    "[]"
                };
                ("200 OK", format!(r#"{{"items":{items}}}"#))
            } else if target == "/storage/v1/b/models/o/iris%2Fmodel.json?alt=media" {
                ("200 OK", "{}".to_string())
            } else {
                (
                    "404 Not Found",
                    r#"{"error":{"code":404,"message":"no"}}"#.into(),
                )
            };
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        Api { server, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/storage/v1/", self.server.addr())
    }
}

/// A throwaway RSA key: the PKCS#8 PEM, and the public half as DER RSAPublicKey for `ring`.
fn rsa_key(dir: &Path) -> (String, Vec<u8>) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl must be installed for the GCS auth tests");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "key.pem",
    ]);
    openssl(&[
        "rsa",
        "-in",
        "key.pem",
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        "pub.der",
    ]);
    (
        std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        std::fs::read(dir.join("pub.der")).unwrap(),
    )
}

/// A token endpoint: a JWT bearer grant whose RS256 signature verifies with `public_der`, or a
/// refresh-token grant for `1//mrsi-refresh`, gets `ya29.mrsi-token`. Keeps the claims of
/// every JWT it verified.
struct TokenEndpoint {
    server: Server,
    claims: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl TokenEndpoint {
    fn start(public_der: Vec<u8>) -> TokenEndpoint {
        let claims = Arc::new(Mutex::new(Vec::new()));
        let log = claims.clone();
        let server = Server::start("127.0.0.1:0", move |stream| {
            let Some(form) = read_form(&stream) else {
                return;
            };
            let ok = match form.get("grant_type").map(String::as_str) {
                Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                    let jwt = form.get("assertion").cloned().unwrap_or_default();
                    let parts: Vec<&str> = jwt.split('.').collect();
                    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
                    let signed = format!("{}.{}", parts[0], parts[1]);
                    let key = ring::signature::UnparsedPublicKey::new(
                        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                        &public_der,
                    );
                    let verified = key.verify(signed.as_bytes(), &signature).is_ok();
                    if verified {
                        let body = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
                        log.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                    }
                    verified
                }
                Some("refresh_token") => {
                    form.get("refresh_token").map(String::as_str) == Some("1//mrsi-refresh")
                }
                _ => false,
            };
            let (status, body) = match ok {
                true => (
                    "200 OK",
                    r#"{"access_token":"ya29.mrsi-token","expires_in":3599,"token_type":"Bearer"}"#,
                ),
                false => (
                    "400 Bad Request",
                    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                ),
            };
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        TokenEndpoint { server, claims }
    }

    fn url(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }
}

fn assert_hidden(out: &Run) {
    for secret in [
        "ya29.mrsi-token",
        "PRIVATE KEY",
        "mrsi-refresh",
        "mrsi-client-secret",
    ] {
        assert!(!out.stderr.contains(secret), "{secret} shown: {out:#?}");
    }
}

#[test]
fn a_service_account_key_signs_a_jwt_whose_token_reaches_the_api() {
    let tmp = TempDir::new("gcs-sa");
    let (pem, public_der) = rsa_key(tmp.path());
    let tokens = TokenEndpoint::start(public_der);
    let api = Api::start(Some("ya29.mrsi-token"));
    let key_file = tmp.path().join("sa.json");
    let sa = serde_json::json!({
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "reader@p.iam.gserviceaccount.com",
        "token_uri": tokens.url(),
    });
    std::fs::write(&key_file, sa.to_string()).unwrap();
    let dest = tmp.path().join("dest");
    let env = [
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            key_file.to_str().unwrap().to_string(),
        ),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", api.url()),
    ];
    let out = run_env(&["gs://models/iris", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
    assert!(
        out.stderr
            .contains("authenticating as service account reader@p.iam.gserviceaccount.com"),
        "{out:#?}"
    );
    let claims = tokens.claims.lock().unwrap().clone();
    assert_eq!(claims.len(), 1, "one token serves the run");
    assert_eq!(claims[0]["iss"], "reader@p.iam.gserviceaccount.com");
    assert_eq!(claims[0]["aud"], tokens.url());
    assert_eq!(
        claims[0]["scope"],
        "https://www.googleapis.com/auth/devstorage.read_only"
    );
    let seen = api.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|a| a.as_deref() == Some("Bearer ya29.mrsi-token")),
        "{seen:?}"
    );
    assert_hidden(&out);

    // A key the token endpoint does not know: its signature fails, and the line says where.
    let other = TempDir::new("gcs-sa-other");
    let (other_pem, _) = rsa_key(other.path());
    let mut wrong = sa;
    wrong["private_key"] = other_pem.into();
    std::fs::write(&key_file, wrong.to_string()).unwrap();
    let out = run_env(
        &["gs://models/iris", tmp.path().join("d2").to_str().unwrap()],
        &env,
    );
    out.expect_code(1);
    assert!(
        out.last_line().starts_with(&format!(
            "error: cannot get a GCS access token for gs://models/iris: {} refused: HTTP 400 Bad Request",
            tokens.url()
        )),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("hint: set GOOGLE_APPLICATION_CREDENTIALS"),
        "{out:#?}"
    );
    assert_hidden(&out);
}

#[test]
fn user_credentials_refresh_their_token() {
    let tmp = TempDir::new("gcs-user");
    let tokens = TokenEndpoint::start(Vec::new());
    let api = Api::start(Some("ya29.mrsi-token"));
    let file = tmp.path().join("adc.json");
    let adc = serde_json::json!({
        "type": "authorized_user",
        "client_id": "c.apps.googleusercontent.com",
        "client_secret": "mrsi-client-secret",
        "refresh_token": "1//mrsi-refresh",
        "token_uri": tokens.url(),
    });
    std::fs::write(&file, adc.to_string()).unwrap();
    let dest = tmp.path().join("dest");
    let env = [
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            file.to_str().unwrap().to_string(),
        ),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", api.url()),
    ];
    let out = run_env(&["gs://models/iris", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
    assert_hidden(&out);

    std::fs::write(&file, r#"{"type":"external_account"}"#).unwrap();
    let out = run_env(&["gs://models/iris", dest.to_str().unwrap()], &env);
    out.expect_code(1);
    assert!(
        out.last_line()
            .starts_with("error: invalid value in GOOGLE_APPLICATION_CREDENTIALS: ")
            && out
                .last_line()
                .contains("\"external_account\" is not supported"),
        "{out:#?}"
    );
}

/// A metadata server handing out `ya29.mrsi-token`, valid for `expires_in` seconds, only to
/// requests with `Metadata-Flavor: Google`; counts the requests.
fn metadata_server(expires_in: u64) -> (Server, Arc<Mutex<usize>>) {
    let count = Arc::new(Mutex::new(0));
    let log = count.clone();
    let server = Server::start("127.0.0.1:0", move |stream| {
        let Some((_, target, headers)) = read_head(&stream) else {
            return;
        };
        *log.lock().unwrap() += 1;
        let ok = target == "/computeMetadata/v1/instance/service-accounts/default/token"
            && headers.get("metadata-flavor").map(String::as_str) == Some("Google");
        let (status, body) = match ok {
            true => (
                "200 OK",
                format!(
                    r#"{{"access_token":"ya29.mrsi-token","expires_in":{expires_in},"token_type":"Bearer"}}"#
                ),
            ),
            false => ("403 Forbidden", "missing Metadata-Flavor".to_string()),
        };
        let _ = write!(
            &stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    (server, count)
}

#[test]
fn the_metadata_server_token_is_used_when_no_key_is_set() {
    let tmp = TempDir::new("gcs-metadata");
    // A token good for an hour serves the run; one that expires within the renewal margin
    // is fetched again before each request.
    for (expires_in, fetches) in [(3599, 1), (60, 4)] {
        let (metadata, count) = metadata_server(expires_in);
        let api = Api::start(Some("ya29.mrsi-token"));
        let dest = tmp.path().join(format!("dest-{expires_in}"));
        let env = [
            ("GCE_METADATA_HOST", metadata.addr().to_string()),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", api.url()),
        ];
        let out = run_env(&["gs://models/iris", dest.to_str().unwrap()], &env);
        out.expect_code(0);
        assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
        assert!(
            out.stderr
                .contains("authenticating through the metadata server"),
            "{out:#?}"
        );
        // Requests: the probe at start, then two listings and one download.
        assert_eq!(*count.lock().unwrap(), fetches, "expires_in {expires_in}");
        assert_hidden(&out);
    }
}

#[test]
fn no_key_and_no_metadata_server_means_anonymous_and_a_clear_denial() {
    let api = Api::start(None);
    let tmp = TempDir::new("gcs-anon");
    let env = [
        ("GCE_METADATA_HOST", format!("127.0.0.1:{}", closed_port())),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", api.url()),
    ];
    let out = run_env(
        &["gs://models/iris", tmp.path().join("d").to_str().unwrap()],
        &env,
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("anonymous requests (no GOOGLE_APPLICATION_CREDENTIALS; the metadata server at 127.0.0.1:"),
        "{out:#?}"
    );
    assert!(
        out.last_line().starts_with(
            "error: cannot list gs://models/iris: access denied to anonymous requests: HTTP 403 Forbidden"
        ),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("hint: set GOOGLE_APPLICATION_CREDENTIALS"),
        "{out:#?}"
    );
    assert_eq!(
        api.seen.lock().unwrap()[0],
        None,
        "no Authorization was sent"
    );
}
