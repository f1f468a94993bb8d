//! Azure Blob downloads by the real binary against Azurite on 127.0.0.1 (Shared Key, SAS,
//! connection strings, paging, a large blob in ranged parts), and the token flows against a
//! local token endpoint and a Blob API stub that demands the bearer token.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::azure::{Azurite, KEY};
use crate::support::replay::Replay;
use crate::support::server::{Server, read_form, read_head};
use crate::support::{Run, TempDir, bytes, files, run_env, tree};

const URI: &str = "https://devstoreaccount1.blob.core.windows.net/models";

fn shared_key(az: &Azurite) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_STORAGE_ACCESS_KEY", KEY.to_string()),
        ("AZURE_STORAGE_BLOB_ENDPOINT", az.endpoint()),
        (
            "RUST_LOG",
            "mr_storage_initializer::fetch=debug,mr_storage_initializer::engine=debug".into(),
        ),
    ]
}

fn assert_hidden(out: &Run, sas: &str) {
    let sig = sas
        .split('&')
        .find(|p| p.starts_with("sig="))
        .unwrap_or("sig=");
    for secret in [
        KEY,
        &KEY[..20],
        sig,
        "mrsi-azure-token",
        "mrsi-client-secret",
        "mrsi-federated",
    ] {
        assert!(!out.stderr.contains(secret), "{secret} shown: {out:#?}");
    }
}

#[test]
fn shared_key_lists_a_nested_prefix_over_several_pages_without_its_siblings() {
    let az = Azurite::start();
    let names: Vec<String> = (0..1100)
        .map(|i| format!("iris/v1/shard-{:02}/part {i:04}+é.bin", i % 7))
        .collect();
    let mut blobs: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    blobs.push(("iris/v10/sibling", b"no"));
    blobs.push(("iris/v1.bak", b"no"));
    let sas = az.seed("models", &blobs);
    let tmp = TempDir::new("az-pages");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &[&format!("{URI}/iris/v1"), dest.to_str().unwrap()],
        &shared_key(&az),
    );
    out.expect_code(0);
    let got = tree(&dest);
    assert_eq!(got.len(), 1100);
    assert_eq!(
        got["shard-03/part 0017+é.bin"],
        b"iris/v1/shard-03/part 0017+\xc3\xa9.bin"
    );
    assert!(
        out.stderr.contains("1100 object(s) in 2 page(s)"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("the account key (Shared Key)"),
        "{out:#?}"
    );
    assert_hidden(&out, &sas);
}

#[test]
fn a_large_blob_arrives_byte_exact_in_signed_ranged_parts() {
    let az = Azurite::start();
    let big = bytes(130 << 20, 5);
    let sas = az.seed(
        "models",
        &[("llm/model.safetensors", &big), ("llm/config.json", b"{}")],
    );
    let tmp = TempDir::new("az-large");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &[&format!("{URI}/llm"), dest.to_str().unwrap()],
        &shared_key(&az),
    );
    out.expect_code(0);
    assert!(
        std::fs::read(dest.join("model.safetensors")).unwrap() == big,
        "the large blob differs"
    );
    let parts = out
        .stderr
        .lines()
        .filter(|l| l.contains("fetching 'llm/model.safetensors'") && l.contains(" bytes "))
        .count();
    assert_eq!(parts, 3, "{out:#?}");
    assert_hidden(&out, &sas);
}

#[test]
fn a_sas_token_in_the_uri_or_a_connection_string_works_and_stays_hidden() {
    let az = Azurite::start();
    let sas = az.seed(
        "models",
        &[("iris/model.json", b"{}"), ("iris/x y.bin", b"xy")],
    );
    let tmp = TempDir::new("az-sas");
    let want = files(&[("model.json", b"{}"), ("x y.bin", b"xy")]);

    let dest = tmp.path().join("sas");
    let uri = format!("{URI}/iris?{sas}");
    let env = [("AZURE_STORAGE_BLOB_ENDPOINT", az.endpoint())];
    let out = run_env(&[&uri, dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), want);
    assert!(out.stderr.contains("a SAS token in the URI"), "{out:#?}");
    assert_hidden(&out, &sas);

    let dest = tmp.path().join("connection-key");
    let env = [("AZURE_STORAGE_CONNECTION_STRING", az.connection_string())];
    let out = run_env(&[&format!("{URI}/iris"), dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), want);
    assert_hidden(&out, &sas);

    let dest = tmp.path().join("connection-sas");
    let conn = format!("BlobEndpoint={};SharedAccessSignature={sas}", az.endpoint());
    let out = run_env(
        &[&format!("{URI}/iris"), dest.to_str().unwrap()],
        &[("AZURE_STORAGE_CONNECTION_STRING", conn)],
    );
    out.expect_code(0);
    assert_eq!(tree(&dest), want);
    assert!(
        out.stderr.contains("the connection string's SAS token"),
        "{out:#?}"
    );
    assert_hidden(&out, &sas);
}

#[test]
fn wrong_keys_bad_sas_and_missing_containers_are_one_line_each() {
    let az = Azurite::start();
    let sas = az.seed("models", &[("iris/model.json", b"{}")]);
    let tmp = TempDir::new("az-wrong");
    let dest = tmp.path().join("dest");
    let uri = format!("{URI}/iris");

    let env = [
        (
            "AZURE_STORAGE_ACCESS_KEY",
            "d3Jvbmcta2V5LW1yc2k=".to_string(),
        ),
        ("AZURE_STORAGE_BLOB_ENDPOINT", az.endpoint()),
    ];
    let out = run_env(&[&uri, dest.to_str().unwrap()], &env);
    out.expect_code(1);
    assert!(
        out.last_line().starts_with(&format!(
            "error: cannot list {uri}: the storage account refused the credentials: HTTP 403 Forbidden"
        )),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("hint: check AZURE_STORAGE_ACCESS_KEY"),
        "{out:#?}"
    );

    let forged = sas.replace("sig=", "sig=AAAA");
    let env = [("AZURE_STORAGE_BLOB_ENDPOINT", az.endpoint())];
    let out = run_env(&[&format!("{uri}?{forged}"), dest.to_str().unwrap()], &env);
    out.expect_code(1);
    assert!(
        out.last_line()
            .contains(": the SAS token was refused: HTTP 403 Forbidden"),
        "{out:#?}"
    );
    assert!(
        out.last_line()
            .starts_with(&format!("error: cannot list {uri}: ")),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("hint: the SAS token in the URI may be wrong"),
        "{out:#?}"
    );
    assert_hidden(&out, &forged);

    let out = run_env(
        &[
            &format!("{URI}-gone/iris").replace("/models-gone", "/nocontainer"),
            dest.to_str().unwrap(),
        ],
        &shared_key(&az),
    );
    out.expect_code(1);
    assert!(
        out.last_line().contains(
            ": the container does not exist: HTTP 404 Not Found (server said: ContainerNotFound"
        ),
        "{out:#?}"
    );
    assert!(!dest.exists());
}

#[test]
fn a_registry_artifact_on_azure_downloads_end_to_end() {
    // The `azure-artifact` scenario resolves model-registry://iris to
    // https://devstoreaccount1.blob.core.windows.net/models/iris/v1/.
    let registry = Replay::start("azure-artifact");
    let az = Azurite::start();
    az.seed(
        "models",
        &[
            ("iris/v1/model.joblib", &bytes(30_000, 4)),
            ("iris/v2/model.joblib", b"other"),
        ],
    );
    let tmp = TempDir::new("az-e2e");
    let dest = tmp.path().join("models");
    let mut env = shared_key(&az);
    env.push(("MODEL_REGISTRY_BASE_URL", registry.authority()));
    let out = run_env(&["model-registry://iris", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.joblib", &bytes(30_000, 4))]));
}

/// Every form a stand-in was sent.
type Forms = Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>;

/// A token endpoint for tenant `t1` that gives `mrsi-azure-token` to client `c1` proving
/// itself with `mrsi-client-secret` or the federated token `mrsi-federated-jwt`; keeps the
/// forms.
fn token_endpoint() -> (Server, Forms) {
    let forms = Arc::new(Mutex::new(Vec::new()));
    let log = forms.clone();
    let server = Server::start("127.0.0.1:0", move |stream| {
        let Some(form) = read_form(&stream) else {
            return;
        };
        let get = |k: &str| form.get(k).map(String::as_str);
        let ok = get("grant_type") == Some("client_credentials")
            && get("client_id") == Some("c1")
            && get("scope") == Some("https://storage.azure.com/.default")
            && (get("client_secret") == Some("mrsi-client-secret")
                || (get("client_assertion") == Some("mrsi-federated-jwt")
                    && get("client_assertion_type")
                        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")));
        log.lock().unwrap().push(form.clone());
        let (status, body) = match ok {
            true => (
                "200 OK",
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"mrsi-azure-token"}"#,
            ),
            false => (
                "401 Unauthorized",
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
            ),
        };
        let _ = write!(
            &stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    (server, forms)
}

/// A Blob API stand-in that lists `iris/model.json` and serves it, only to the bearer token
/// `mrsi-azure-token` with an `x-ms-version`.
fn blob_api() -> Server {
    Server::start("127.0.0.1:0", |stream| {
        let Some((_, target, headers)) = read_head(&stream) else {
            return;
        };
        let authorized = headers.get("authorization").map(String::as_str)
            == Some("Bearer mrsi-azure-token")
            && headers.contains_key("x-ms-version");
        let (status, body) = if !authorized {
            ("403 Forbidden", "<?xml version=\"1.0\"?><Error><Code>AuthorizationFailure</Code><Message>no</Message></Error>".to_string())
        } else if target.starts_with("/acct/models?") {
            let blobs = if target.contains("prefix=iris%2F&") {
                "<Blob><Name>iris/model.json</Name><Properties><Content-Length>2</Content-Length></Properties></Blob>"
            } else {
                ""
            };
            (
                "200 OK",
                format!(
                    "<EnumerationResults><Blobs>{blobs}</Blobs><NextMarker/></EnumerationResults>"
                ),
            )
        } else if target == "/acct/models/iris/model.json" {
            ("200 OK", "{}".to_string())
        } else {
            (
                "404 Not Found",
                "<Error><Code>BlobNotFound</Code></Error>".to_string(),
            )
        };
        let _ = write!(
            &stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    })
}

#[test]
fn service_principal_and_workload_identity_tokens_reach_the_blob_api() {
    let (tokens, forms) = token_endpoint();
    let api = blob_api();
    let tmp = TempDir::new("az-token");
    let federated = tmp.path().join("token");
    std::fs::write(&federated, "mrsi-federated-jwt\n").unwrap();
    let base = vec![
        ("AZURE_AUTHORITY_HOST", format!("http://{}", tokens.addr())),
        (
            "AZURE_STORAGE_BLOB_ENDPOINT",
            format!("http://{}/acct", api.addr()),
        ),
        ("AZURE_TENANT_ID", "t1".to_string()),
    ];
    let cases = [
        (
            vec![
                ("AZURE_CLIENT_ID", "c1".to_string()),
                ("AZURE_CLIENT_SECRET", "mrsi-client-secret".to_string()),
            ],
            "a service principal",
        ),
        (
            vec![
                // KServe's legacy names.
                ("AZ_CLIENT_ID", "c1".to_string()),
                ("AZ_CLIENT_SECRET", "mrsi-client-secret".to_string()),
            ],
            "a service principal",
        ),
        (
            vec![
                ("AZURE_CLIENT_ID", "c1".to_string()),
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    federated.to_str().unwrap().to_string(),
                ),
            ],
            "workload identity",
        ),
    ];
    for (i, (extra, said)) in cases.into_iter().enumerate() {
        let dest = tmp.path().join(format!("dest{i}"));
        let mut env = base.clone();
        env.extend(extra);
        let out = run_env(
            &[
                "https://acct.blob.core.windows.net/models/iris",
                dest.to_str().unwrap(),
            ],
            &env,
        );
        out.expect_code(0);
        assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
        assert!(out.stderr.contains(said), "{out:#?}");
        assert_hidden(&out, "");
    }
    assert_eq!(forms.lock().unwrap().len(), 3, "one token per run");

    // A wrong secret: the token endpoint's own words, and which variables to check.
    let mut env = base;
    env.push(("AZURE_CLIENT_ID", "c1".into()));
    env.push(("AZURE_CLIENT_SECRET", "wrong".into()));
    let out = run_env(
        &[
            "https://acct.blob.core.windows.net/models/iris",
            tmp.path().join("d").to_str().unwrap(),
        ],
        &env,
    );
    out.expect_code(1);
    assert!(
        out.last_line().starts_with("error: cannot get an Azure access token for https://acct.blob.core.windows.net/models: http://")
            && out.last_line().contains("/t1/oauth2/v2.0/token refused: HTTP 401 Unauthorized"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("hint: check AZURE_CLIENT_ID"),
        "{out:#?}"
    );
}
